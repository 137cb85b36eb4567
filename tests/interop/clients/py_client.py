"""The official Python MCP SDK as a client of mcp-auth-server, for the interop matrix.

Usage:
  py_client.py headers URL [Name=value ...]   credentials in headers (API key, bearer token)
  py_client.py oauth URL                      the SDK's own OAuth flow (OAuthClientProvider):
                                              discovery, dynamic registration, PKCE, resource;
                                              then calls admin_status, which needs a scope the
                                              first token lacks (a 403 step-up); a failure of
                                              that step is reported as "step_up_error"

Prints one JSON line: the tools listed, get_time's answer, whoami's principal, and in oauth
mode the authorizations the SDK started and admin_status's answer. Exits non-zero with the
error on stderr when the server refuses the client or the flow breaks.

The "browser" of the OAuth flow is headless: it follows the authorization URL through the
authorization server's (auto-approving) login and consent, keeping cookies, and stops at the
redirect to the callback, whose query it hands to the SDK.
"""

import asyncio
import builtins
import json
import sys
import traceback
from urllib.parse import parse_qs, urlsplit

import httpx2
from mcp import ClientSession
from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

CALLBACK = "http://127.0.0.1:3030/callback"

# Every HTTP status the MCP endpoint answered, reported on failure (the SDK's
# own error for a refused request does not name it).
STATUSES: list[int] = []


async def record_status(response: httpx2.Response) -> None:
    STATUSES.append(response.status_code)


class MemoryStorage:
    """Tokens and the registered client, for this run only."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


class HeadlessBrowser:
    """Follows an authorization URL to the callback and keeps what arrived there."""

    def __init__(self) -> None:
        self.authorize_urls: list[str] = []
        self.results: list[AuthorizationCodeResult] = []

    async def open(self, url: str) -> None:
        self.authorize_urls.append(url)
        async with httpx2.AsyncClient(follow_redirects=False, timeout=30) as http:
            for _ in range(20):
                if url.startswith(CALLBACK):
                    query = parse_qs(urlsplit(url).query)
                    if "error" in query:
                        raise RuntimeError(f"authorization refused: {query}")
                    self.results.append(
                        AuthorizationCodeResult(
                            code=query["code"][0],
                            state=query.get("state", [None])[0],
                            iss=query.get("iss", [None])[0],
                        )
                    )
                    return
                response = await http.get(url)
                if response.status_code not in (301, 302, 303, 307, 308):
                    raise RuntimeError(
                        f"authorization stopped at {url} with HTTP {response.status_code}"
                    )
                url = str(response.url.join(response.headers["location"]))
        raise RuntimeError("authorization did not reach the callback in 20 redirects")

    async def callback(self) -> AuthorizationCodeResult:
        return self.results.pop(0)


async def session_calls(session: ClientSession) -> dict:
    await session.initialize()
    tools = await session.list_tools()
    now = await session.call_tool("get_time", {})
    who = await session.call_tool("whoami", {})
    for result in (now, who):
        if result.is_error:
            raise RuntimeError(f"tool call failed: {result.content}")
    return {
        "tools": sorted(t.name for t in tools.tools),
        "time": now.content[0].text,
        "whoami": json.loads(who.content[0].text),
    }


async def with_headers(url: str, headers: dict[str, str]) -> dict:
    async with httpx2.AsyncClient(headers=headers, timeout=30, event_hooks={"response": [record_status]}) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                return await session_calls(session)


async def with_oauth(url: str) -> dict:
    browser = HeadlessBrowser()
    provider = OAuthClientProvider(
        server_url=url,
        client_metadata=OAuthClientMetadata(
            client_name="python-sdk-interop",
            redirect_uris=[CALLBACK],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage=MemoryStorage(),
        redirect_handler=browser.open,
        callback_handler=browser.callback,
    )
    async with httpx2.AsyncClient(auth=provider, timeout=30) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                out = await session_calls(session)
                # Needs mcp:admin, which the first token lacks: a 403 step-up.
                try:
                    admin = await session.call_tool("admin_status", {})
                    if admin.is_error:
                        raise RuntimeError(f"admin_status failed: {admin.content}")
                    out["admin_status"] = json.loads(admin.content[0].text)
                    who = await session.call_tool("whoami", {})
                    out["whoami_after_step_up"] = json.loads(who.content[0].text)
                except Exception as e:  # noqa: BLE001 - reported in the JSON, judged by the matrix
                    out["step_up_error"] = f"{type(e).__name__}: {e}"
    out["authorizations"] = [
        parse_qs(urlsplit(u).query).get("scope", [""])[0] for u in browser.authorize_urls
    ]
    out["resource"] = [
        parse_qs(urlsplit(u).query).get("resource", [""])[0] for u in browser.authorize_urls
    ]
    return out


async def main(argv: list[str]) -> None:
    mode, url = argv[1], argv[2]
    if mode == "headers":
        out = await with_headers(url, dict(a.split("=", 1) for a in argv[3:]))
    elif mode == "oauth":
        out = await with_oauth(url)
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    print(json.dumps(out))


if __name__ == "__main__":
    try:
        asyncio.run(main(sys.argv))
    except BaseException as e:  # noqa: BLE001 - report every failure as one line, exit 1
        if isinstance(e, SystemExit):
            raise
        # Exception groups from the SDK's task groups hide the cause: show the leaves.
        # Exception groups exist from Python 3.11 on.
        groups = getattr(builtins, "BaseExceptionGroup", ())

        def leaves(x: BaseException):
            if groups and isinstance(x, groups):
                for inner in x.exceptions:
                    yield from leaves(inner)
            else:
                yield x

        traceback.print_exc()
        # Last, so it is the line a caller shows.
        seen = f" (HTTP statuses: {STATUSES})" if STATUSES else ""
        print("; ".join(f"{type(x).__name__}: {x}" for x in leaves(e)) + seen, file=sys.stderr)
        sys.exit(1)
