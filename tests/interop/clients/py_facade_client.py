"""The official Python MCP SDK logging in through mcp-auth-server's authorization-server facade,
for the interop matrix's `facade` column.

Usage: BROWSER=tests/interop/consent-browser.py py_facade_client.py URL

The SDK's own OAuth flow (OAuthClientProvider) from the 401 alone, with nothing registered
beforehand: protected resource metadata, the server's own RFC 8414 metadata, dynamic
registration at the server, PKCE, `resource`. The browser step is a real loopback redirect, as a
desktop app does it: the client listens on 127.0.0.1 (a free port; its redirect URI) and opens
the authorization URL with $BROWSER. consent-browser.py presses Allow on the server's consent
page and follows on through the upstream provider's login, back through the server's callback,
to this client's listener, which hands the code (and RFC 9207 `iss`) to the SDK.

Prints one JSON line: the tools listed, get_time's answer, whoami's principal, the client ID the
SDK got, whether it came from dynamic registration, and each authorization URL's `scope` and
`resource`. Exits 1 with the error on stderr when the flow breaks.
"""

import asyncio
import builtins
import http.server
import json
import os
import queue
import sys
import threading
import traceback
from urllib.parse import parse_qs, urlsplit

import httpx2
from mcp import ClientSession
from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

LOGIN_TIMEOUT = 60


class MemoryStorage:
    """Tokens and the registered client, for this run only (nothing is registered beforehand)."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None
        self.registrations = 0

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.registrations += 1
        self.client = client_info


class LoopbackCallback:
    """The client's redirect URI: an HTTP listener on 127.0.0.1, a free port."""

    def __init__(self) -> None:
        self.arrived: "queue.Queue[dict[str, str]]" = queue.Queue()
        arrived = self.arrived

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                if url.path != "/callback":
                    self.send_response(404)
                    self.end_headers()
                    return
                arrived.put({k: v[0] for k, v in parse_qs(url.query).items()})
                body = b"Logged in; you can close this window."
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/callback"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class SystemBrowser:
    """Opens the authorization URL with $BROWSER; the code arrives at the loopback callback."""

    def __init__(self, callback: LoopbackCallback) -> None:
        self.command = os.environ["BROWSER"]
        self.callback = callback
        self.authorize_urls: list[str] = []

    async def open(self, url: str) -> None:
        self.authorize_urls.append(url)
        proc = await asyncio.create_subprocess_exec(
            self.command, url, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await asyncio.wait_for(proc.communicate(), LOGIN_TIMEOUT)
        if proc.returncode != 0:
            text = (err or out).decode(errors="replace").strip().splitlines()
            raise RuntimeError(f"the browser ({self.command}) exited {proc.returncode}: {text[-1] if text else 'no output'}")

    async def result(self) -> AuthorizationCodeResult:
        try:
            query = await asyncio.to_thread(self.callback.arrived.get, True, LOGIN_TIMEOUT)
        except queue.Empty:
            raise RuntimeError(f"nothing arrived at {self.callback.url} in {LOGIN_TIMEOUT}s") from None
        if "error" in query:
            raise RuntimeError(f"authorization refused: {query}")
        return AuthorizationCodeResult(code=query["code"], state=query.get("state"), iss=query.get("iss"))


async def with_facade(url: str) -> dict:
    callback = LoopbackCallback()
    try:
        browser = SystemBrowser(callback)
        storage = MemoryStorage()
        provider = OAuthClientProvider(
            server_url=url,
            client_metadata=OAuthClientMetadata(
                client_name="python-sdk-interop",
                redirect_uris=[callback.url],
                grant_types=["authorization_code", "refresh_token"],
                response_types=["code"],
                token_endpoint_auth_method="none",
            ),
            storage=storage,
            redirect_handler=browser.open,
            callback_handler=browser.result,
        )
        async with httpx2.AsyncClient(auth=provider, timeout=30) as http:
            async with streamable_http_client(url, http_client=http) as (read, write):
                async with ClientSession(read, write) as session:
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
            "client_id": storage.client.client_id if storage.client else None,
            "registered": storage.registrations > 0,
            "authorizations": [parse_qs(urlsplit(u).query).get("scope", [""])[0] for u in browser.authorize_urls],
            "resource": [parse_qs(urlsplit(u).query).get("resource", [""])[0] for u in browser.authorize_urls],
        }
    finally:
        callback.close()


if __name__ == "__main__":
    try:
        print(json.dumps(asyncio.run(with_facade(sys.argv[1]))))
    except BaseException as e:  # noqa: BLE001 - report every failure as one line, exit 1
        if isinstance(e, SystemExit):
            raise
        groups = getattr(builtins, "BaseExceptionGroup", ())

        def leaves(x: BaseException):
            if groups and isinstance(x, groups):
                for inner in x.exceptions:
                    yield from leaves(inner)
            else:
                yield x

        traceback.print_exc()
        print("; ".join(f"{type(x).__name__}: {x}" for x in leaves(e)), file=sys.stderr)
        sys.exit(1)
