"""Interop matrix: real MCP clients (third-party ones, and this workspace's own example client)
against the real mcp-auth-server binary.

Run by tests/run-all.sh (the README's test command) after the workspace is built, with the
peers it installs: the official Python SDK (this interpreter's venv), the official TypeScript
SDK (v1 `@modelcontextprotocol/sdk` and the v2 client `@modelcontextprotocol/client`) and the
MCP Inspector CLI on Node 22 (tests/interop/clients), oidc-provider as the authorization server
(tests/interop/oidc), moto as AWS Cognito, and the official conformance suite
(tests/interop/conformance). The `facade` column runs mcp-auth-server as the clients'
authorization server (the authorization-server facade, crates/mcp-auth-proxy) in front of an
upstream provider without dynamic registration (tests/interop/oidc/upstream.mjs); the clients log
in with nothing registered beforehand, through the server's consent page
(tests/interop/consent-browser.py presses Allow) and the upstream login. They register themselves
at the server; the TypeScript SDK v2 client logs in both ways, in two fresh runs that must both
pass: once with a client ID metadata document served over https on loopback
(tests/interop/metadata_document_server.py, a test CA made with openssl once per run) to a facade
server of its own that may fetch it (MCP_PROXY_METADATA_ALLOW_LOOPBACK, SSL_CERT_FILE = the CA),
then without the document, registering itself at the column's server. The `facade dpop` column is
the same facade with DPoP required (MCP_DPOP=require, MCP_DPOP_NONCE=true: sender-constrained
tokens, RFC 9449, with server nonces); the rows whose client sends DPoP proofs run there: this
workspace's client, and the TypeScript SDK v2 client, whose OAuth provider in the driver implements
dpop() when asked (DPOP=1); the others are n/a, each with what its installed package does about DPoP.

Two rows are this workspace's example client, mcp-auth-client (crates/mcp-auth-client, the
binary target/debug/mcp-auth-client), one per MCP wire it speaks: mcp-auth-client-2026-07-28
(--protocol 2026-07-28: stateless, server/discover then self-contained requests) and
mcp-auth-client-2025-11-25 (--protocol 2025-11-25: an initialize session). Each of their cells
runs the client in an empty directory with a fresh MCP_AUTH_CLIENT_HOME (its tokens and
registrations, shared only by that cell's runs), and checks from both ends (the client's and the
server's rmcp logs) that every run spoke the row's wire, with no fallback to the other.

    python tests/interop/matrix.py [--only CLIENT[,CLIENT]] [--columns STRATEGY[,STRATEGY]] [--update-docs]

Each cell starts what it needs on free loopback ports, drives one client, and checks what the
client saw (the principal in `whoami`, the scopes after a step-up, the `resource` it asked
for, that a bad credential is refused). Prints the matrix (client x strategy) at the end,
writes it to target/interop/matrix/, and with --update-docs into docs/INTEROP.md. Exits 1 when a
cell fails, or when a cell listed in EXPECTED_FAILURES passes (so the list stays true).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import parse_qs, urlsplit

ROOT = Path(__file__).resolve().parents[2]
INTEROP = ROOT / "tests" / "interop"
CLIENTS = INTEROP / "clients"
OUT = ROOT / "target" / "interop" / "matrix"
SERVER_BIN = Path(os.environ.get("MCP_AUTH_SERVER_BIN", ROOT / "target" / "debug" / "mcp-auth-server"))
OUR_CLIENT = Path(os.environ.get("MCP_AUTH_CLIENT_BIN", ROOT / "target" / "debug" / "mcp-auth-client"))
NODE = CLIENTS / "node_modules" / "node" / "bin" / "node"
PYTHON = sys.executable
MOTO_SERVER = Path(PYTHON).with_name("moto_server")
CLIENT_TIMEOUT = 120

API_KEY = "interop-api-key-0123456789abcdef"
JWT_SECRET = "interop-jwt-secret-0123456789abcdef0123456789"

STRATEGIES = ["none", "api_key", "bearer", "oauth2", "oauth2 step-up", "cognito", "facade", "facade dpop"]

# The facade column's upstream: oidc-provider's one static confidential client (upstream.mjs).
UPSTREAM_CLIENT_ID = "mcp-proxy"
UPSTREAM_CLIENT_SECRET = "mcp-proxy-secret-0123456789abcdef"
UPSTREAM_USER = "octocat"
CONSENT_BROWSER = INTEROP / "consent-browser.py"


def clean_env() -> dict[str, str]:
    """This process's environment without what could change a cell: the server's and the
    Inspector's own settings (MCP_*, COGNITO_*, HTTP_*, LOG_LEVEL, ...) and proxies."""
    drop_prefixes = ("MCP_", "COGNITO_", "HTTP_", "HTTPS_", "AWS_")
    drop = {
        "LOG_LEVEL",
        "HOST",
        "PORT",
        "BROWSER",
        "BROWSER_LOG",
        "CONSENT_LOG",
        "CONSENT_DECISION",
        "CLIENT_METADATA_URL",
        "TS_SDK",
        "DPOP",
        "NODE_OPTIONS",
        "PYTHONPATH",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
    }
    return {
        k: v
        for k, v in os.environ.items()
        if not k.upper().startswith(drop_prefixes)
        and k.upper() not in drop
        and not k.lower().endswith("_proxy")
    }


def versions() -> dict[str, str]:
    try:
        return _versions()
    except (OSError, ValueError, KeyError) as e:
        return {row: f"version unknown ({type(e).__name__})" for row in CLIENT_ROWS}


def _versions() -> dict[str, str]:
    def npm(pkg: str) -> str:
        return json.loads((CLIENTS / "node_modules" / pkg / "package.json").read_text())["version"]

    def conformance() -> str:
        p = INTEROP / "conformance" / "node_modules" / "@modelcontextprotocol" / "conformance" / "package.json"
        return json.loads(p.read_text())["version"]

    def ours() -> str:
        """The version `mcp-auth-client --version` prints (`mcp-auth-client 0.1.0`)."""
        with tempfile.TemporaryDirectory() as cwd:  # no stray .env is read
            out = subprocess.run(
                [str(OUR_CLIENT), "--version"],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                env=clean_env(),
                timeout=30,
                cwd=cwd,
            ).stdout.split()
        if len(out) != 2 or out[0] != "mcp-auth-client":
            raise ValueError(f"mcp-auth-client --version printed {' '.join(out)!r}")
        return out[1]

    import importlib.metadata as md

    mine = ours()
    return {
        "python-sdk": f"mcp {md.version('mcp')} (PyPI)",
        "typescript-sdk-v1": f"@modelcontextprotocol/sdk {npm('@modelcontextprotocol/sdk')}",
        "typescript-sdk-v2": f"@modelcontextprotocol/client {npm('@modelcontextprotocol/client')}",
        "inspector-cli": f"@modelcontextprotocol/inspector {npm('@modelcontextprotocol/inspector')}",
        "conformance": f"@modelcontextprotocol/conformance {conformance()}, server mode",
        **{row: f"mcp-auth-client {mine} (this workspace), --protocol {wire}" for row, wire in OUR_CLIENT_ROWS.items()},
    }


# This workspace's example client (crates/mcp-auth-client), one row per MCP wire it speaks
# (its --protocol): the stateless 2026-07-28 wire, and the 2025-11-25 one with an initialize session.
OUR_CLIENT_ROWS: dict[str, str] = {
    "mcp-auth-client-2026-07-28": "2026-07-28",
    "mcp-auth-client-2025-11-25": "2025-11-25",
}

CLIENT_ROWS = [
    "python-sdk",
    "typescript-sdk-v1",
    "typescript-sdk-v2",
    "inspector-cli",
    "conformance",
    *OUR_CLIENT_ROWS,
]

# Cells known to fail, each with the reason and the text the failure must show (a different
# failure is a failure). Everything else must pass, and these must fail that way.
EXPECTED_FAILURES: dict[tuple[str, str], str] = {
    ("typescript-sdk-v1", "oauth2 step-up"): (
        "on 403 insufficient_scope the v1 SDK refreshes its token instead of re-authorizing; a "
        "refresh cannot widen scope (RFC 6749 section 6), so the retry gets the same 403 and it gives "
        "up ('Server returned 403 after trying upscoping'): "
        "https://github.com/modelcontextprotocol/typescript-sdk/issues/2255, fixed in the v2 "
        "client (row typescript-sdk-v2)"
    ),
}
EXPECTED_FAILURE_TEXT: dict[tuple[str, str], str] = {
    ("typescript-sdk-v1", "oauth2 step-up"): "after trying upscoping",
}

# Cells that do not apply, each with the reason.
NOT_APPLICABLE: dict[tuple[str, str], str] = {
    ("inspector-cli", "oauth2 step-up"): (
        "on its first login the CLI asks for every scope the authorization server advertises "
        "(mcp:admin included), so the scoped tool never answers 403 and no step-up arises"
    ),
    **{
        ("conformance", s): "the suite's server mode sends no credentials; it runs against auth off"
        for s in STRATEGIES
        if s != "none"
    },
    # The facade dpop column: what each installed package does about DPoP (RFC 9449), found by
    # searching it for "dpop" (the SDKs under tests/interop/clients/node_modules/@modelcontextprotocol,
    # the Python SDK in this interpreter's site-packages/mcp).
    ("python-sdk", "facade dpop"): (
        "the Python SDK sends no DPoP proofs: its only DPoP code is two metadata fields "
        "(dpop_signing_alg_values_supported, dpop_bound_access_tokens_required in mcp/shared/auth.py); "
        "no proof creation, no DPoP header, no DPoP error codes"
    ),
    ("typescript-sdk-v1", "facade dpop"): (
        "the v1 SDK sends no DPoP proofs: its only DPoP code is the same two metadata fields in "
        "shared/auth.js (Zod schemas); no proof creation, no DPoP header"
    ),
    ("inspector-cli", "facade dpop"): (
        "the CLI sends no DPoP proofs: it is built on @modelcontextprotocol/client 2.3.1, which signs "
        "proofs only for an OAuth provider that implements dpop() (row typescript-sdk-v2), and the CLI's "
        "provider (BaseOAuthClientProvider) implements none; the CLI has no DPoP code or option at all "
        "(no 'dpop' in clients/cli/build/index.js)"
    ),
    ("conformance", "facade dpop"): (
        "the suite's server mode sends no credentials (it runs against auth off) and 0.1.16 has no DPoP "
        "code; the suite's DPoP scenarios (auth/dpop, auth/dpop-nonce, 0.2.0-alpha.12) are client "
        "scenarios, run against mcp-auth-client by the test command"
    ),
}


@dataclass
class Cell:
    status: str  # pass, FAIL, xfail, XPASS, n/a
    detail: str = ""


@dataclass
class Matrix:
    cells: dict[tuple[str, str], Cell] = field(default_factory=dict)

    def record(self, client: str, strategy: str, ok: bool, detail: str) -> None:
        key = (client, strategy)
        if key in EXPECTED_FAILURES:
            if ok:
                status = "XPASS"
            elif EXPECTED_FAILURE_TEXT[key] in detail:
                status, detail = "xfail", f"{EXPECTED_FAILURES[key]} (saw: {detail})"
            else:
                status, detail = "FAIL", f"failed, but not the expected way ({EXPECTED_FAILURE_TEXT[key]!r}): {detail}"
        else:
            status = "pass" if ok else "FAIL"
        self.cells[key] = Cell(status, detail)
        mark = {"pass": "ok", "xfail": "expected failure", "FAIL": "FAILED", "XPASS": "PASSED, but listed as failing"}
        print(f"  [{mark[status]}] {client} x {strategy}: {detail}", flush=True)

    def failed(self) -> list[tuple[str, str]]:
        return [k for k, c in self.cells.items() if c.status in ("FAIL", "XPASS")]


# ---------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}: {log.read_text()[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"port {port} not listening after {timeout}s: {log.read_text()[-2000:]}")


@contextlib.contextmanager
def process(name: str, argv: list[str], port: int, env: dict[str, str] | None = None, cwd: Path | None = None) -> Iterator[None]:
    OUT.mkdir(parents=True, exist_ok=True)
    log = OUT / f"{name}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env={**clean_env(), **(env or {})}, cwd=cwd
        )
    try:
        wait_for_port(port, proc, log)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def server(name: str, env: dict[str, str], port: int | None = None) -> Iterator[str]:
    port = port or free_port()
    full = {
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "LOG_LEVEL": "info",
        "MCP_SERVER_URL": f"http://127.0.0.1:{port}/mcp",
        **env,
    }
    # process() already drops the developer's own settings; an empty working
    # directory keeps a stray .env from being read.
    with tempfile.TemporaryDirectory() as cwd, process(f"server-{name}", [str(SERVER_BIN)], port, full, Path(cwd)):
        yield full["MCP_SERVER_URL"]


@contextlib.contextmanager
def authorization_server(resource: str) -> Iterator[str]:
    port = free_port()
    with process(
        "oidc-provider",
        [str(NODE), "provider.mjs"],
        port,
        env={"PORT": str(port), "RESOURCE": resource},
        cwd=INTEROP / "oidc",
    ):
        yield f"http://127.0.0.1:{port}"


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self) -> dict:
        lines = [line for line in self.out.splitlines() if line.startswith("{")]
        if not lines:
            raise ValueError(f"no JSON on stdout (exit {self.code}): {self.err.strip()[-600:]}")
        return json.loads(lines[-1])

    def why(self) -> str:
        text = (self.err.strip() or self.out.strip()).splitlines()
        return f"exit {self.code}: {text[-1][:300] if text else 'no output'}"


def run(argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> Run:
    try:
        p = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=CLIENT_TIMEOUT,
            env={**clean_env(), **(env or {})},
            cwd=cwd,
        )
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        result = Run(124, out, f"timed out after {CLIENT_TIMEOUT}s")
    else:
        result = Run(p.returncode, p.stdout, p.stderr)
    with open(OUT / "clients.log", "a") as log:
        log.write(f"$ {' '.join(argv)}\n(exit {result.code})\n{result.out}{result.err}\n")
    return result


# ---------------------------------------------------------------------------- clients


def py_client(*args: str) -> Run:
    return run([PYTHON, str(CLIENTS / "py_client.py"), *args])


def ts_client(version: str, *args: str) -> Run:
    return run([str(NODE), "ts_client.mjs", *args], env={"TS_SDK": version}, cwd=CLIENTS)


def inspector(url: str, *args: str, env: dict[str, str] | None = None, home: str | None = None) -> Run:
    """One Inspector CLI run. A private HOME (the Inspector keeps OAuth state and a catalog under
    ~/.mcp-inspector): a fresh one, removed after, unless `home` is given to share between runs."""
    own = home is None
    home = home or tempfile.mkdtemp(prefix="inspector-home-")
    try:
        return run(
            [str(NODE), str(CLIENTS / "node_modules" / ".bin" / "mcp-inspector"), "--cli", url, "--transport", "http", *args],
            env={"HOME": home, "PATH": f"{NODE.parent}:{os.environ.get('PATH', '')}", **(env or {})},
            cwd=CLIENTS,
        )
    finally:
        if own:
            shutil.rmtree(home, ignore_errors=True)


SDK_CLIENTS: dict[str, Callable[..., Run]] = {
    "python-sdk": py_client,
    "typescript-sdk-v1": lambda *a: ts_client("v1", *a),
    "typescript-sdk-v2": lambda *a: ts_client("v2", *a),
}


# ---------------------------------------------------------------------------- this workspace's client

# How long a run of mcp-auth-client waits for the login to reach its loopback callback, well
# inside CLIENT_TIMEOUT: a login that never arrives ends with the client's own error.
OUR_LOGIN_TIMEOUT = 60

# The client's log filter with -v: rmcp's info lines and the client's own debug lines (the
# client's default with -v, named here since clean_env() drops LOG_LEVEL).
OUR_LOG_LEVEL = "info,mcp_auth_client=debug"

# rmcp's line (at -v, LOG_LEVEL=info) for each connection the client makes, and the server's for
# each it serves (a session, or one request of the stateless wire): the protocol version settled on.
CLIENT_PEER = re.compile(
    r'Service initialized as client peer_info=Some\(ServerPeerInfo \{ protocol_version: ProtocolVersion\("([^"]*)"\)'
)
SERVER_PEER = re.compile(
    r'Service initialized as server peer_info=Some\(InitializeRequestParams \{.*?protocol_version: ProtocolVersion\("([^"]*)"\)'
)


def our_client(
    client: str,
    url: str,
    server_log: Path,
    *args: str,
    home: Path,
    env: dict[str, str] | None = None,
    verbose: bool = True,
) -> tuple[Run, list[str]]:
    """One run of mcp-auth-client (`args`: flags and the command) on the row's wire (--protocol),
    with -v and LOG_LEVEL=OUR_LOG_LEVEL so that stderr has rmcp's line for each connection (unless
    not `verbose`: then stderr is the client's own output, as a user sees it). Tokens and
    registrations are kept in `home` (MCP_AUTH_CLIENT_HOME: the cell's own, shared only by its
    runs); the working directory is empty (no ./.env is read); the login callback takes any free
    port. BROWSER is `false` unless `env` names one, so a run that should not log in fails
    instead of opening a real browser. Returns the run and the lines the column's server's log
    (`server_log`) gained during it."""
    before = log_size(server_log)
    argv = [str(OUR_CLIENT), "--server", url, "--protocol", OUR_CLIENT_ROWS[client], *(["-v"] if verbose else [])]
    argv += ["--callback-port", "0", "--login-timeout", str(OUR_LOGIN_TIMEOUT), *args]
    env = {"MCP_AUTH_CLIENT_HOME": str(home), "LOG_LEVEL": OUR_LOG_LEVEL, "BROWSER": "false", **(env or {})}
    with tempfile.TemporaryDirectory(prefix="mcp-auth-client-cwd-") as cwd:
        r = run(argv, env=env, cwd=Path(cwd))
    return r, log_since(server_log, before)


def our_registrations(home: Path) -> list[dict]:
    """The dynamic client registrations mcp-auth-client keeps in `home` (registrations/, one
    JSON file per authorization server); a file that is not JSON counts as {"unreadable": name}."""
    found = []
    for f in sorted((home / "registrations").glob("*.json")):
        try:
            found.append(json.loads(f.read_text()))
        except ValueError:
            found.append({"unreadable": f.name})
    return found


@contextlib.contextmanager
def our_home() -> Iterator[Path]:
    """A fresh MCP_AUTH_CLIENT_HOME for one cell, removed after."""
    home = Path(tempfile.mkdtemp(prefix="mcp-auth-client-home-"))
    try:
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)


def our_wire(client: str, r: Run, server_lines: list[str]) -> tuple[bool, str]:
    """Whether a run spoke the row's wire, from both ends: every connection the client made
    settled on the row's protocol version (rmcp's `Service initialized as client` lines, at least
    one), every request the server served during the run was of that version, and the server
    created a session only on the 2025-11-25 wire (initialize) and none on the stateless one."""
    want = OUR_CLIENT_ROWS[client]
    spoke = CLIENT_PEER.findall(r.err)
    heard = SERVER_PEER.findall("\n".join(server_lines))
    sessions = sum("create new session" in line for line in server_lines)
    if not spoke:
        return False, "the client logged no 'Service initialized as client': the wire is unknown"
    if set(spoke) != {want}:
        return False, f"the client settled on protocol version {sorted(set(spoke))}, expected only {want}"
    if set(heard) != {want}:
        return False, f"the server saw protocol version {sorted(set(heard))} during the run, expected only {want}"
    if want == "2026-07-28" and sessions:
        return False, f"the server created {sessions} session(s) on the stateless wire"
    if want == "2025-11-25" and not sessions:
        return False, "the server created no session on the 2025-11-25 wire"
    how = "no session" if want == "2026-07-28" else f"{sessions} session(s)"
    return True, f"wire {want} ({len(spoke)} connection(s), server saw {len(heard)} {want} peer(s), {how})"


def our_principal(r: Run) -> tuple[dict, str | None]:
    """The principal `whoami` printed, and None; or {} and why there is none."""
    if r.code != 0:
        return {}, r.why()
    try:
        return r.json(), None
    except ValueError as e:
        return {}, str(e)


def our_whoami(
    client: str, url: str, server_log: Path, strategy: str, subject: str | None, *args: str, home: Path
) -> tuple[bool, str]:
    """`whoami` with `args` (the credentials): the principal of `strategy` (and `subject`),
    on the row's wire."""
    r, server_lines = our_client(client, url, server_log, *args, "whoami", home=home)
    who, problem = our_principal(r)
    if problem:
        return False, problem
    if who.get("strategy") != strategy:
        return False, f"whoami strategy {who.get('strategy')!r}, expected {strategy!r}"
    if subject is not None and who.get("subject") != subject:
        return False, f"whoami subject {who.get('subject')!r}, expected {subject!r}"
    wire = our_wire(client, r, server_lines)
    if not wire[0]:
        return wire
    return True, f"whoami as {who.get('subject')!r} ({strategy}), {wire[1]}"


def our_refused(client: str, url: str, server_log: Path, what: str, *args: str, home: Path) -> tuple[bool, str]:
    """`whoami` with `args` (a bad credential), without -v (whose log lines other threads may
    write after the error): exit 1, nothing on stdout, and on stderr just the one line
    `error: whoami: <reason>` naming the server's 401."""
    r, _ = our_client(client, url, server_log, *args, "whoami", home=home, verbose=False)
    err = r.err.strip().splitlines()
    if r.code != 1:
        return False, f"{what}: expected exit 1, got {r.why()}"
    if r.out.strip() or len(err) != 1 or not err[0].startswith("error: whoami: "):
        return False, f"{what}: expected just the line 'error: whoami: ...' on stderr, got {err} and stdout {r.out[:200]!r}"
    if "401" not in err[0]:
        return False, f"{what}: refused without naming the 401: {err[0]}"
    return True, f"{what} refused (exit 1, {err[0]!r})"


# ---------------------------------------------------------------------------- checks


def check_calls(r: Run, strategy: str, subject: str | None) -> tuple[bool, str]:
    if r.code != 0:
        return False, r.why()
    try:
        out = r.json()
    except ValueError as e:
        return False, str(e)
    if not {"get_time", "whoami"} <= set(out["tools"]):
        return False, f"tools/list gave {out['tools']}"
    who = out["whoami"]
    if who.get("strategy") != strategy:
        return False, f"whoami strategy {who.get('strategy')!r}, expected {strategy!r}"
    if subject is not None and who.get("subject") != subject:
        return False, f"whoami subject {who.get('subject')!r}, expected {subject!r}"
    return True, f"tools/list, get_time, whoami as {who.get('subject')!r} ({strategy})"


def check_refused(r: Run, what: str) -> tuple[bool, str]:
    """The client failed, and because the server answered 401 (not a timeout or a crash): the
    clients name the status or the RFC 6750 error they got."""
    if r.code == 0:
        return False, f"{what} was accepted"
    text = r.out + r.err
    if r.code == 124 or not ("401" in text or "invalid_token" in text):
        return False, f"{what}: the client failed without a 401 ({r.why()})"
    return True, f"{what} refused with 401 ({r.why()})"


def inspector_refused(r: Run, what: str) -> tuple[bool, str]:
    """The Inspector reports a 401 as exit code 3, error `auth_required`."""
    if r.code == 3 and "auth_required" in r.out + r.err:
        return True, f"{what} refused (exit 3, auth_required)"
    return False, f"{what}: expected exit 3 auth_required, got {r.why()}"


def both(a: tuple[bool, str], b: tuple[bool, str]) -> tuple[bool, str]:
    return a[0] and b[0], f"{a[1]}; {b[1]}"


# ---------------------------------------------------------------------------- cells


def cells_none(m: Matrix, rows: list[str]) -> None:
    with server("none", {"MCP_AUTH_STRATEGY": "none"}) as url:
        for client in rows:
            if client in SDK_CLIENTS:
                m.record(client, "none", *check_calls(SDK_CLIENTS[client]("headers", url), "none", None))
            elif client == "inspector-cli":
                r = inspector(url, "--method", "tools/call", "--tool-name", "whoami")
                ok = r.code == 0 and inspector_whoami(r).get("strategy") == "none"
                m.record(client, "none", ok, "tools/call whoami without credentials" if ok else r.why())
            elif client == "conformance":
                m.record(client, "none", *conformance_server(url))
            elif client in OUR_CLIENT_ROWS:
                with our_home() as home:
                    m.record(client, "none", *our_whoami(client, url, OUT / "server-none.log", "none", "anonymous", home=home))


def cells_api_key(m: Matrix, rows: list[str]) -> None:
    with server("api_key", {"MCP_AUTH_STRATEGY": "api_key", "MCP_API_KEYS": API_KEY}) as url:
        for client in rows:
            if client in SDK_CLIENTS:
                c = SDK_CLIENTS[client]
                m.record(
                    client,
                    "api_key",
                    *both(
                        check_calls(c("headers", url, f"X-API-Key={API_KEY}"), "api_key", None),
                        check_refused(c("headers", url, "X-API-Key=wrong-key-0123456789abcdef"), "a wrong key"),
                    ),
                )
            elif client == "inspector-cli":
                good = inspector(url, "--header", f"X-API-Key: {API_KEY}", "--method", "tools/list")
                bad = inspector(url, "--header", "X-API-Key: wrong-key-0123456789abcdef", "--method", "tools/list", "--stored-auth-only")
                ok_good = good.code == 0 and "get_time" in good.out
                m.record(
                    client,
                    "api_key",
                    *both(
                        (ok_good, "tools/list with the key" if ok_good else good.why()),
                        inspector_refused(bad, "a wrong key"),
                    ),
                )
            elif client in OUR_CLIENT_ROWS:
                log = OUT / "server-api_key.log"
                with our_home() as home:
                    m.record(
                        client,
                        "api_key",
                        *both(
                            our_whoami(client, url, log, "api_key", None, "--api-key", API_KEY, home=home),
                            our_refused(client, url, log, "a wrong key", "--api-key", "wrong-key-0123456789abcdef", home=home),
                        ),
                    )


def mint(url: str, subject: str, scope: str) -> str:
    with tempfile.TemporaryDirectory() as cwd:  # no stray .env is read
        r = subprocess.run(
            [str(SERVER_BIN), "token", "--sub", subject, "--scope", scope, "--expires-in", "1h"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env={**clean_env(), "MCP_JWT_SECRET": JWT_SECRET, "MCP_SERVER_URL": url},
            check=True,
            timeout=30,
            cwd=cwd,
        )
    return r.stdout.strip()


def cells_bearer(m: Matrix, rows: list[str]) -> None:
    with server("bearer", {"MCP_AUTH_STRATEGY": "bearer", "MCP_JWT_SECRET": JWT_SECRET}) as url:
        token = mint(url, "alice", "mcp:tools")
        # Same claims, signature of another key: must be refused.
        forged = token.rsplit(".", 1)[0] + "." + ("A" * 43)
        for client in rows:
            if client in SDK_CLIENTS:
                c = SDK_CLIENTS[client]
                m.record(
                    client,
                    "bearer",
                    *both(
                        check_calls(c("headers", url, f"Authorization=Bearer {token}"), "bearer", "alice"),
                        check_refused(c("headers", url, f"Authorization=Bearer {forged}"), "a forged token"),
                    ),
                )
            elif client == "inspector-cli":
                good = inspector(url, "--header", f"Authorization: Bearer {token}", "--method", "tools/list")
                none = inspector(url, "--method", "tools/list", "--stored-auth-only")
                ok_good = good.code == 0 and "get_time" in good.out
                m.record(
                    client,
                    "bearer",
                    *both(
                        (ok_good, "tools/list with the token" if ok_good else good.why()),
                        inspector_refused(none, "a request without a token"),
                    ),
                )
            elif client in OUR_CLIENT_ROWS:
                log = OUT / "server-bearer.log"
                with our_home() as home:
                    m.record(
                        client,
                        "bearer",
                        *both(
                            our_whoami(client, url, log, "bearer", "alice", "--bearer", token, home=home),
                            our_refused(client, url, log, "a forged token", "--bearer", forged, home=home),
                        ),
                    )


def check_oauth(r: Run, url: str, issuer: str) -> tuple[tuple[bool, str], tuple[bool, str]]:
    """(the flow and calls, the 403 step-up) from one oauth run."""
    flow = check_calls(r, "oauth2", "test-user")
    if not flow[0]:
        if r.code == 0:
            return flow, (False, "no flow")
        return flow, (False, "the flow failed first")
    out = r.json()
    who = out["whoami"]
    if who.get("issuer") != issuer:
        return (False, f"whoami issuer {who.get('issuer')!r}, expected {issuer!r}"), (False, "")
    if "mcp:admin" in who.get("scopes", []):
        return (False, "the first token already had mcp:admin: no step-up tested"), (False, "")
    if not out["resource"] or any(res != url for res in out["resource"]):
        return (False, f"authorization requests named resource {out['resource']}, expected {url}"), (False, "")
    flow = (True, f"discovery, registration, PKCE, resource={url}, then calls as 'test-user'")
    if "step_up_error" in out:
        return flow, (False, out["step_up_error"])
    after = out.get("whoami_after_step_up", {}).get("scopes", [])
    if "mcp:admin" not in after or "mcp:tools" not in after or len(out["authorizations"]) < 2:
        return flow, (False, f"after admin_status: scopes {after}, authorizations {out['authorizations']}")
    return flow, (True, f"403 insufficient_scope -> re-authorized with {out['authorizations'][-1]!r} -> admin_status")


def cells_oauth2(m: Matrix, rows: list[str]) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    with authorization_server(url) as issuer:
        env = {
            "MCP_AUTH_STRATEGY": "oauth2",
            "MCP_OAUTH_ISSUER": issuer,
            "MCP_OAUTH_SCOPES_SUPPORTED": "mcp:tools,mcp:admin",
            "MCP_OAUTH_REQUIRED_SCOPES": "mcp:tools",
        }
        # The port is chosen first: the authorization server needs the resource URL.
        with server("oauth2", env, port):
            for client in rows:
                if client in SDK_CLIENTS:
                    flow, step_up = check_oauth(SDK_CLIENTS[client]("oauth", url), url, issuer)
                    m.record(client, "oauth2", *flow)
                    m.record(client, "oauth2 step-up", *step_up)
                elif client == "inspector-cli":
                    m.record(client, "oauth2", *inspector_oauth(url, issuer))
                elif client in OUR_CLIENT_ROWS:
                    login, step_up = our_oauth(client, url, issuer)
                    m.record(client, "oauth2", *login)
                    m.record(client, "oauth2 step-up", *step_up)


def inspector_whoami(r: Run) -> dict:
    """The principal in the Inspector's `tools/call whoami` output ({} when absent)."""
    try:
        result = json.loads(r.out[r.out.index("{") :])
        return result.get("structuredContent") or json.loads(result["content"][0]["text"])
    except (ValueError, KeyError, IndexError, TypeError):
        return {}


def inspector_oauth(url: str, issuer: str) -> tuple[bool, str]:
    log = OUT / "inspector-browser.log"
    log.unlink(missing_ok=True)
    r = inspector(
        url,
        "--method",
        "tools/call",
        "--tool-name",
        "whoami",
        env={
            "MCP_AUTO_OPEN_ENABLED": "true",
            "BROWSER": str(INTEROP / "headless-browser.sh"),
            "BROWSER_LOG": str(log),
        },
    )
    if r.code != 0:
        return False, r.why()
    who = inspector_whoami(r)
    if who.get("issuer") != issuer or who.get("strategy") != "oauth2":
        return False, f"whoami did not show an oauth2 principal of {issuer}: {r.out[-300:]}"
    opened = log.read_text().splitlines() if log.exists() else []
    if len(opened) != 1 or "resource=" not in opened[0]:
        return False, f"the browser was opened {len(opened)} times: {opened}"
    return True, "headless login (MCP_AUTO_OPEN_ENABLED, $BROWSER), then tools/call whoami with the issuer's token"


# What mcp-auth-client prints on stderr when it logs in again mid-operation, and before it opens
# the browser at the authorization URL.
STEP_UP_NOTICE = "the server asks for (more) authorization; logging in again"
LOGIN_NOTICE = "Log in at:"


def our_oauth(client: str, url: str, issuer: str) -> tuple[tuple[bool, str], tuple[bool, str]]:
    """(the login, the step-up) of mcp-auth-client against the oauth2 server, in three runs
    sharing one MCP_AUTH_CLIENT_HOME, the browser headless-browser.sh: (1) `whoami` logs in
    (discovery, dynamic registration, PKCE, resource); (2) `call admin_status` first tries the
    stored token, gets 403 insufficient_scope and logs in again for the union of the held and
    the challenged scopes; (3) `whoami` with the stored stepped-up token, no login."""
    log = OUT / f"oauth2-browser-{client}.log"
    log.unlink(missing_ok=True)
    env = {"BROWSER": str(INTEROP / "headless-browser.sh"), "BROWSER_LOG": str(log)}
    server_log = OUT / "server-oauth2.log"
    with our_home() as home:
        first, first_lines = our_client(client, url, server_log, "whoami", home=home, env=env)
        login = our_oauth_login(client, url, issuer, first, first_lines, lines(log))
        if not login[0]:
            return login, (False, "the login failed first")
        admin, admin_lines = our_client(client, url, server_log, "call", "admin_status", home=home, env=env)
        after, after_lines = our_client(client, url, server_log, "whoami", home=home, env=env)
    step_up = our_oauth_step_up(client, url, (admin, admin_lines), (after, after_lines), lines(log))
    return login, step_up


def our_oauth_login(client: str, url: str, issuer: str, r: Run, server_lines: list[str], opened: list[str]) -> tuple[bool, str]:
    """The first run: a principal of the authorization server without mcp:admin (so that a
    step-up follows), after one login at its authorization endpoint naming resource = `url`."""
    who, problem = our_principal(r)
    if problem:
        return False, problem
    if who.get("strategy") != "oauth2" or who.get("subject") != "test-user":
        return False, f"whoami {who.get('strategy')!r} {who.get('subject')!r}, expected 'oauth2' 'test-user'"
    if who.get("issuer") != issuer:
        return False, f"whoami issuer {who.get('issuer')!r}, expected {issuer!r}"
    if "mcp:admin" in who.get("scopes", []):
        return False, "the first token already had mcp:admin: no step-up tested"
    if len(opened) != 1 or r.err.count(LOGIN_NOTICE) != 1:
        return False, f"the browser was opened {len(opened)} times ({r.err.count(LOGIN_NOTICE)} logins), expected once: {opened}"
    query = parse_qs(urlsplit(opened[0]).query)
    if not opened[0].startswith(f"{issuer}/") or query.get("resource") != [url]:
        return False, f"the browser was opened at {opened[0]!r}, expected {issuer}'s authorization endpoint with resource={url}"
    wire = our_wire(client, r, server_lines)
    if not wire[0]:
        return wire
    return True, (
        f"discovery, registration, PKCE, one login at {issuer} with resource={url} and "
        f"scope={' '.join(query.get('scope', []))!r}, then whoami as 'test-user' with scopes {who.get('scopes')}; {wire[1]}"
    )


def our_oauth_step_up(
    client: str, url: str, admin: tuple[Run, list[str]], after: tuple[Run, list[str]], opened: list[str]
) -> tuple[bool, str]:
    """The second and third runs. `call admin_status`: its first attempt connects with the
    stored token (no login before), the call is refused with insufficient_scope (the client's
    debug log of the failed request), the client says it logs in again, once, and the browser
    opens once more (twice in all): an authorization request for the union of the first login's
    scopes and the challenge's (mcp:admin and mcp:tools), resource = `url`, by the same
    registered client; then admin_status answers. `whoami` then shows both scopes with no login."""
    r, server_lines = admin
    if r.code != 0:
        return False, f"call admin_status: {r.why()}"
    try:
        status = r.json()
    except ValueError as e:
        return False, f"call admin_status: {e}"
    if status.get("server") != "mcp-auth-server":
        return False, f"admin_status answered {status}"
    connected = CLIENT_PEER.search(r.err)
    refused = [line for line in r.err.splitlines() if "MCP request failed" in line and 'error="insufficient_scope"' in line]
    if not connected or not refused or r.err.count(STEP_UP_NOTICE) != 1 or r.err.count(LOGIN_NOTICE) != 1:
        return False, (
            f"call admin_status: expected a connection with the stored token, a refusal for insufficient_scope, "
            f"then one login ({STEP_UP_NOTICE!r}); got connection {bool(connected)}, {len(refused)} refusal(s), "
            f"{r.err.count(STEP_UP_NOTICE)} notice(s), {r.err.count(LOGIN_NOTICE)} login(s)"
        )
    order = [connected.start(), r.err.index(refused[0]), r.err.index(STEP_UP_NOTICE), r.err.index(LOGIN_NOTICE)]
    if order != sorted(order):
        return False, "call admin_status: not connection, refusal, notice, login in this order (the stored token not tried first)"
    if len(opened) != 2:
        return False, f"the browser was opened {len(opened)} times in all, expected twice (whoami, then the step-up): {opened}"
    first, second = (parse_qs(urlsplit(u).query) for u in opened)
    asked = [set(" ".join(q.get("scope", [])).split()) for q in (first, second)]
    if not asked[0] | {"mcp:admin", "mcp:tools"} <= asked[1] or second.get("resource") != [url]:
        return False, (
            f"the step-up asked for scope {sorted(asked[1])} and resource {second.get('resource')}, expected "
            f"the first login's {sorted(asked[0])} plus mcp:admin, and {url}"
        )
    if second.get("client_id") != first.get("client_id"):
        return False, f"the step-up used client {second.get('client_id')}, the first login {first.get('client_id')}"
    wire = our_wire(client, r, server_lines)
    if not wire[0]:
        return False, f"call admin_status: {wire[1]}"
    who, problem = our_principal(after[0])
    if problem:
        return False, f"whoami after the step-up: {problem}"
    if not {"mcp:admin", "mcp:tools"} <= set(who.get("scopes", [])) or LOGIN_NOTICE in after[0].err:
        return False, f"whoami after the step-up: scopes {who.get('scopes')}, logged in again: {LOGIN_NOTICE in after[0].err}"
    wire_after = our_wire(client, *after)
    if not wire_after[0]:
        return False, f"whoami after the step-up: {wire_after[1]}"
    return True, (
        f"call admin_status: the stored token connects, the call is refused (insufficient_scope), one more login "
        f"(same client) with scope {' '.join(second['scope'])!r} -> admin_status; {wire[1]}; then whoami with "
        f"the stored token: scopes {who.get('scopes')}, no login (the browser opened twice in all); {wire_after[1]}"
    )


def cells_cognito(m: Matrix, rows: list[str]) -> None:
    import boto3

    port = free_port()
    with process("moto", [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)], port):
        region = "us-east-1"
        idp = boto3.client(
            "cognito-idp",
            region_name=region,
            endpoint_url=f"http://127.0.0.1:{port}",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )
        pool = idp.create_user_pool(PoolName="interop")["UserPool"]["Id"]
        app = idp.create_user_pool_client(
            UserPoolId=pool, ClientName="interop", ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"]
        )["UserPoolClient"]["ClientId"]
        other = idp.create_user_pool_client(UserPoolId=pool, ClientName="other")["UserPoolClient"]["ClientId"]
        idp.admin_create_user(UserPoolId=pool, Username="carol", MessageAction="SUPPRESS")
        idp.admin_set_user_password(UserPoolId=pool, Username="carol", Password="Interop-Passw0rd-1!", Permanent=True)

        def access_token(client_id: str) -> str:
            r = idp.initiate_auth(
                ClientId=client_id,
                AuthFlow="USER_PASSWORD_AUTH",
                AuthParameters={"USERNAME": "carol", "PASSWORD": "Interop-Passw0rd-1!"},
            )
            return r["AuthenticationResult"]["AccessToken"]

        token, foreign = access_token(app), access_token(other)
        env = {
            "MCP_AUTH_STRATEGY": "cognito",
            "COGNITO_REGION": region,
            "COGNITO_USER_POOL_ID": pool,
            "COGNITO_APP_CLIENT_ID": app,
            "COGNITO_JWKS_URL": f"http://127.0.0.1:{port}/{pool}/.well-known/jwks.json",
        }
        with server("cognito", env) as url:
            for client in rows:
                if client in SDK_CLIENTS:
                    c = SDK_CLIENTS[client]
                    m.record(
                        client,
                        "cognito",
                        *both(
                            check_calls(c("headers", url, f"Authorization=Bearer {token}"), "cognito", None),
                            check_refused(
                                c("headers", url, f"Authorization=Bearer {foreign}"),
                                "a token of another app client",
                            ),
                        ),
                    )
                elif client == "inspector-cli":
                    r = inspector(url, "--header", f"Authorization: Bearer {token}", "--method", "tools/call", "--tool-name", "whoami")
                    bad = inspector(url, "--header", f"Authorization: Bearer {foreign}", "--method", "tools/list", "--stored-auth-only")
                    ok = r.code == 0 and inspector_whoami(r).get("strategy") == "cognito"
                    m.record(
                        client,
                        "cognito",
                        *both(
                            (ok, "tools/call whoami with a moto access token" if ok else r.why()),
                            inspector_refused(bad, "a token of another app client"),
                        ),
                    )
                elif client in OUR_CLIENT_ROWS:
                    log = OUT / "server-cognito.log"
                    with our_home() as home:
                        m.record(
                            client,
                            "cognito",
                            *both(
                                our_whoami(client, url, log, "cognito", None, "--bearer", token, home=home),
                                our_refused(client, url, log, "a token of another app client", "--bearer", foreign, home=home),
                            ),
                        )


@contextlib.contextmanager
def upstream_provider(callback: str, name: str = "upstream-oidc") -> Iterator[str]:
    """oidc-provider as the facade's upstream (tests/interop/oidc/upstream.mjs, OIDC mode): one
    static confidential client whose only redirect URI is `callback`, no registration, logs
    every user in as UPSTREAM_USER without a person."""
    port = free_port()
    with process(
        name,
        [str(NODE), "upstream.mjs"],
        port,
        env={"PORT": str(port), "PROXY_CALLBACK": callback, "UPSTREAM_MODE": "oidc"},
        cwd=INTEROP / "oidc",
    ):
        yield f"http://127.0.0.1:{port}"


def login_logs(client: str) -> tuple[Path, Path]:
    """Where consent-browser.py records the URLs it was opened with and the consent pages it
    answered, for one client's cell (or one login of a cell: `client` is then "<client>-<login>"),
    emptied first."""
    browser, consent = OUT / f"facade-browser-{client}.log", OUT / f"facade-consent-{client}.log"
    browser.unlink(missing_ok=True)
    consent.unlink(missing_ok=True)
    return browser, consent


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def check_facade_login(who: dict, url: str, origin: str, opened: list[str], consents: list[str]) -> str | None:
    """What every facade cell checks after the client's calls: the principal is the upstream's
    user, in a token of this server (issuer = its origin, audience = its MCP URL); the browser was
    opened once, for an authorization request at this server naming resource = its MCP URL, and
    answered the consent page once. None when all hold, else what did not."""
    if who.get("strategy") != "oauth2" or who.get("subject") != UPSTREAM_USER:
        return f"whoami {who.get('strategy')!r} {who.get('subject')!r}, expected 'oauth2' {UPSTREAM_USER!r}"
    if who.get("issuer") != origin:
        return f"whoami issuer {who.get('issuer')!r}, expected the server's origin {origin!r}"
    if who.get("claims", {}).get("aud") != url:
        return f"token audience {who.get('claims', {}).get('aud')!r}, expected {url!r}"
    if len(opened) != 1:
        return f"the browser was opened {len(opened)} times: {opened}"
    query = parse_qs(urlsplit(opened[0]).query)
    if not opened[0].startswith(f"{origin}/oauth/authorize?") or query.get("resource") != [url]:
        return f"the browser was opened at {opened[0]!r}, expected {origin}/oauth/authorize with resource={url}"
    if len(consents) != 1:
        return f"the consent page was answered {len(consents)} times, expected once"
    return None


def facade_sdk_run(
    client: str, url: str, env: dict[str, str] | None = None, login: str | None = None
) -> tuple[Run, Path, Path]:
    """One login and the calls by an SDK client through the facade at `url`, a new process of
    the driver (nothing kept from an earlier run); the run and the browser's and consent page's
    logs (see login_logs; `login` names them apart when a cell logs in more than once)."""
    browser_log, consent_log = login_logs(f"{client}-{login}" if login else client)
    env = {"BROWSER": str(CONSENT_BROWSER), "BROWSER_LOG": str(browser_log), "CONSENT_LOG": str(consent_log), **(env or {})}
    if client == "python-sdk":
        r = run([PYTHON, str(CLIENTS / "py_facade_client.py"), url], env=env)
    else:
        version = client.rsplit("-", 1)[1]
        r = run([str(NODE), "ts_facade_client.mjs", url], env={**env, "TS_SDK": version}, cwd=CLIENTS)
    return r, browser_log, consent_log


def facade_sdk_output(r: Run, url: str, origin: str, browser_log: Path, consent_log: Path) -> tuple[dict, str | None]:
    """What every SDK cell of the facade column checks in the client's output; the output, and
    None when all hold, else what did not."""
    if r.code != 0:
        return {}, r.why()
    try:
        out = r.json()
    except ValueError as e:
        return {}, str(e)
    if not {"get_time", "whoami"} <= set(out["tools"]):
        return out, f"tools/list gave {out['tools']}"
    return out, check_facade_login(out["whoami"], url, origin, lines(browser_log), lines(consent_log))


def log_size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def log_since(path: Path, offset: int) -> list[str]:
    """The lines `path` gained after `offset` bytes (a server's log during one cell)."""
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace").splitlines()


def facade_sdk(client: str, url: str, origin: str, login: str | None = None) -> tuple[bool, str]:
    """A cell (or one login of a cell, named `login`) that logs in by dynamic registration at
    the column's server: the client says it registered, with a client ID, and the server logged
    `client registered` during the run."""
    server_log = OUT / "server-facade.log"
    before = log_size(server_log)
    r, browser_log, consent_log = facade_sdk_run(client, url, login=login)
    out, problem = facade_sdk_output(r, url, origin, browser_log, consent_log)
    if problem:
        return False, problem
    if not out.get("registered") or not out.get("client_id"):
        return False, f"the client did not register dynamically (client_id {out.get('client_id')!r})"
    if not any("client registered" in line for line in log_since(server_log, before)):
        return False, "the client says it registered, but the server logged no 'client registered' during the cell"
    return True, (
        f"dynamic registration at {origin}/oauth/register, consent page (Allow), upstream login, PKCE, "
        f"resource={url}; tools/list, get_time, whoami as {UPSTREAM_USER!r} of {origin}"
    )


# The SDK rows that log in both ways, each way in a fresh run of the driver, and pass only if both
# pass (facade_both_logins): first with a client ID metadata document, on a facade server of
# their own (FACADE_METADATA_SETTINGS), then without it, by dynamic registration at the column's
# server. The other rows register dynamically (python-sdk, typescript-sdk-v1, inspector-cli and
# the two mcp-auth-client rows).
BOTH_LOGINS_CLIENTS = {"typescript-sdk-v2"}

# The facade server of a metadata-document login: documents may be fetched from loopback
# (MCP_PROXY_METADATA_ALLOW_LOOPBACK, development only) over https with the run's test CA
# trusted (SSL_CERT_FILE, added per run). The log shows the fetcher's refusals (mcp_auth_proxy)
# and each outgoing connection with its address (reqwest, hyper_util): the fetch is the one to
# the document server's port.
FACADE_METADATA_SETTINGS = {
    "MCP_PROXY_METADATA_ALLOW_LOOPBACK": "true",
    "LOG_LEVEL": "info,mcp_auth_proxy=debug,reqwest=debug,hyper_util::client::legacy::connect::http=debug",
}


def facade_pki() -> Path:
    """A test CA and a certificate for 127.0.0.1 it signed (openssl, EC P-256, valid 2 days),
    made once per run in target/interop/matrix/facade-pki: ca.pem (the facade server trusts it
    through SSL_CERT_FILE), cert.pem and key.pem (the metadata document server's)."""
    pki = OUT / "facade-pki"
    shutil.rmtree(pki, ignore_errors=True)
    pki.mkdir(parents=True)
    (pki / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    for args in (
        ["req", "-x509", *ec, "-keyout", "ca-key.pem", "-out", "ca.pem", "-days", "2", "-subj", "/CN=mcp-auth interop test CA"],
        ["req", *ec, "-keyout", "key.pem", "-out", "req.pem", "-subj", "/CN=127.0.0.1"],
        ["x509", "-req", "-in", "req.pem", "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-CAcreateserial"]
        + ["-out", "cert.pem", "-days", "2", "-extfile", "ext.cnf"],
    ):
        p = subprocess.run(
            ["openssl", *args], stdin=subprocess.DEVNULL, capture_output=True, text=True, cwd=pki, timeout=60
        )
        if p.returncode != 0:
            raise RuntimeError(f"openssl {args[0]} failed: {p.stderr.strip()[-500:]}")
    return pki


@contextlib.contextmanager
def metadata_document(client: str, pki: Path) -> Iterator[tuple[str, Path]]:
    """`client`'s client ID metadata document served over https on a free loopback port
    (tests/interop/metadata_document_server.py, with the run's test certificate) while the
    context lasts; yields its URL (the client's ID) and the log of the requests it answered."""
    port = free_port()
    path = f"/clients/{client}.json"
    doc_url = f"https://127.0.0.1:{port}{path}"
    doc = OUT / f"facade-metadata-{client}.json"
    doc.write_text(
        json.dumps(
            {
                "client_id": doc_url,
                "client_name": f"{client} (client ID metadata document)",
                # A loopback redirect URI without a port matches the client's listener on any port.
                "redirect_uris": ["http://127.0.0.1/callback"],
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
                "token_endpoint_auth_method": "none",
            },
            indent=2,
        )
    )
    fetches = OUT / f"facade-fetches-{client}.log"
    fetches.unlink(missing_ok=True)
    argv = [PYTHON, str(INTEROP / "metadata_document_server.py"), str(doc)]
    argv += [str(pki / "cert.pem"), str(pki / "key.pem"), str(port), path, str(fetches)]
    with process(f"metadata-document-{client}", argv, port):
        yield doc_url, fetches


def facade_metadata_document(client: str, pki: Path, login: str | None = None) -> tuple[bool, str]:
    """A login with a client ID metadata document (`login` names its browser logs): its own
    facade server (and upstream) with FACADE_METADATA_SETTINGS, the client given the document's
    URL (CLIENT_METADATA_URL). Beyond what every cell checks: the client's ID is the URL and it
    did not register, the authorization request named the URL as client_id, the document server
    answered the server's GET, and the server's log shows no registration and a login finished
    for the URL."""
    name = "facade-metadata"
    with metadata_document(client, pki) as (doc_url, fetches):
        settings = {**FACADE_METADATA_SETTINGS, "SSL_CERT_FILE": str(pki / "ca.pem")}
        with facade_server(name, settings, upstream_name="upstream-oidc-metadata") as (url, origin):
            r, browser_log, consent_log = facade_sdk_run(client, url, {"CLIENT_METADATA_URL": doc_url}, login)
    log = lines(OUT / f"server-{name}.log")
    got = [line for line in lines(fetches) if line.startswith("GET ")]
    out, problem = facade_sdk_output(r, url, origin, browser_log, consent_log)
    if problem:
        if not got:
            problem += "; the document was never fetched"
        refused = [line for line in log if "unusable client" in line or "metadata document refused" in line]
        return False, problem + (f"; server: {refused[-1][:400]}" if refused else "")
    if out.get("client_id") != doc_url or out.get("registered"):
        return False, (
            f"the client used client_id {out.get('client_id')!r} (registered: {out.get('registered')}), "
            f"expected the document URL {doc_url}"
        )
    opened = lines(browser_log)
    if parse_qs(urlsplit(opened[0]).query).get("client_id") != [doc_url]:
        return False, f"the authorization request did not name client_id={doc_url}: {opened[0]}"
    if not any(line.startswith(f"GET {urlsplit(doc_url).path} 200 ") for line in got):
        return False, f"the document server answered no GET for the document: {got}"
    registered = [line for line in log if "client registered" in line or "registered a client" in line]
    if registered:
        return False, f"the server registered a client: {registered[0][:300]}"
    if not any(f"login finished client={doc_url}" in line for line in log):
        return False, f"the server's log has no 'login finished client={doc_url}'"
    return True, (
        f"client ID metadata document {doc_url} (https, test CA; the server fetched it {len(got)}x, "
        f"nothing registered), consent page (Allow), upstream login, PKCE, resource={url}; tools/list, "
        f"get_time, whoami as {UPSTREAM_USER!r} of {origin}"
    )


def facade_both_logins(client: str, url: str, origin: str, pki: Callable[[], Path]) -> tuple[bool, str]:
    """A cell that logs in both ways, in two runs of the driver, each a new process with nothing
    in memory and its own browser and logs: (1) with a client ID metadata document
    (facade_metadata_document, its own server), (2) without one (no CLIENT_METADATA_URL), so
    it registers at the column's server at `url` (facade_sdk: the client reports a registered
    client ID and the server logged `client registered` during the run). The second runs even when
    the first failed; the cell passes only if both pass. `pki` makes (or gives) the run's test CA."""
    started = time.monotonic()
    try:
        metadata = facade_metadata_document(client, pki(), "metadata")
    except Exception as e:  # its own setup (PKI, document server, server): this login only
        traceback.print_exc()
        metadata = False, f"setup failed: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
    middle = time.monotonic()
    registration = facade_sdk(client, url, origin, "registration")
    ended = time.monotonic()
    ok = metadata[0] and registration[0]
    logins = [
        ("with a client ID metadata document", metadata, middle - started),
        ("by dynamic registration", registration, ended - middle),
    ]
    detail = "; ".join(
        f"({n}, {s:.1f} s) {r[1] if r[0] else f'FAILED, the login {how}: {r[1]}'}"
        for n, (how, r, s) in enumerate(logins, 1)
    )
    return ok, f"two logins, each a fresh run, both must pass: {detail}"


def facade_inspector(url: str, origin: str) -> tuple[bool, str]:
    browser_log, consent_log = login_logs("inspector-cli")
    env = {
        "MCP_AUTO_OPEN_ENABLED": "true",
        "BROWSER": str(CONSENT_BROWSER),
        "BROWSER_LOG": str(browser_log),
        "CONSENT_LOG": str(consent_log),
        # Keep the tokens between the two runs (in the private HOME; without a keyring the
        # Inspector keeps secrets in memory only, and the second run would log in again).
        "MCP_INSPECTOR_SECRET_STORE": "file",
    }
    home = tempfile.mkdtemp(prefix="inspector-home-")
    try:
        listed = inspector(url, "--method", "tools/list", env=env, home=home)
        if listed.code != 0 or '"get_time"' not in listed.out or '"whoami"' not in listed.out:
            return False, f"tools/list: {listed.why()}"
        called = inspector(url, "--method", "tools/call", "--tool-name", "whoami", env=env, home=home)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    if called.code != 0:
        return False, f"tools/call whoami: {called.why()}"
    who = inspector_whoami(called)
    problem = check_facade_login(who, url, origin, lines(browser_log), lines(consent_log))
    if problem:
        return False, problem
    return True, (
        "headless login (MCP_AUTO_OPEN_ENABLED, $BROWSER = consent-browser.py): dynamic registration, "
        f"consent page (Allow), upstream login; tools/list, then tools/call whoami as {UPSTREAM_USER!r} "
        f"of {origin} with the stored token"
    )


def our_facade(client: str, url: str, origin: str, dpop: bool = False) -> tuple[bool, str]:
    """mcp-auth-client through the facade, two runs sharing one MCP_AUTH_CLIENT_HOME, the
    browser consent-browser.py: `whoami` logs in (dynamic registration at the server, consent
    page, upstream login), then `list` with the stored token. Beyond check_facade_login (one
    login in all): one registration stored, for the server's issuer, whose client ID the
    authorization request named; the server logged `client registered` during the cell. With
    `dpop` (the facade dpop column: its server's log, browser logs named <client>-dpop), also
    our_dpop_bound: the token is bound to the key the client stored, and the server refused
    nothing."""
    server_log = OUT / ("server-facade-dpop.log" if dpop else "server-facade.log")
    before = log_size(server_log)
    browser_log, consent_log = login_logs(f"{client}-dpop" if dpop else client)
    env = {"BROWSER": str(CONSENT_BROWSER), "BROWSER_LOG": str(browser_log), "CONSENT_LOG": str(consent_log)}
    with our_home() as home:
        called, called_lines = our_client(client, url, server_log, "whoami", home=home, env=env)
        listed, listed_lines = our_client(client, url, server_log, "list", home=home, env=env)
        registrations = our_registrations(home)
        stored = our_stored(home)
    who, problem = our_principal(called)
    if problem:
        return False, f"whoami: {problem}"
    if listed.code != 0:
        return False, f"list: {listed.why()}"
    tools = {line.split()[0] for line in listed.out.splitlines() if line.strip()}
    if not {"get_time", "whoami"} <= tools:
        return False, f"list gave {sorted(tools)}"
    problem = check_facade_login(who, url, origin, lines(browser_log), lines(consent_log))
    if problem:
        return False, problem
    if len(registrations) != 1 or registrations[0].get("issuer") != origin or not registrations[0].get("client_id"):
        return False, f"expected one stored registration with {origin}, got {registrations}"
    client_id = registrations[0]["client_id"]
    if parse_qs(urlsplit(lines(browser_log)[0]).query).get("client_id") != [client_id]:
        return False, f"the authorization request did not name the registered client_id {client_id}"
    if not any("client registered" in line for line in log_since(server_log, before)):
        return False, "the server logged no 'client registered' during the cell"
    runs = (("whoami", called, called_lines), ("list", listed, listed_lines))
    wires = {step: our_wire(client, r, got) for step, r, got in runs}
    for step, (ok, why) in wires.items():
        if not ok:
            return False, f"{step}: {why}"
    detail = (
        f"dynamic registration at {origin} (client {client_id}), consent page (Allow), upstream login, PKCE, "
        f"resource={url}; whoami as {UPSTREAM_USER!r} of {origin} ({wires['whoami'][1]}), then list with the "
        f"stored token, no login ({wires['list'][1]})"
    )
    if not dpop:
        return True, detail
    bound = our_dpop_bound(who, stored, [(step, got) for step, _, got in runs])
    return bound[0], f"{detail}; {bound[1]}" if bound[0] else bound[1]


def our_stored(home: Path) -> dict[str, list]:
    """What mcp-auth-client keeps in `home`'s credentials/: "tokens", each JSON file's content (a
    file that is not JSON counts as {"unreadable": name}), and "keys", each DPoP key file
    (*.dpop.pem) as (name, permission bits, content)."""
    found: dict[str, list] = {"tokens": [], "keys": []}
    for f in sorted((home / "credentials").glob("*.json")):
        try:
            found["tokens"].append(json.loads(f.read_text()))
        except ValueError:
            found["tokens"].append({"unreadable": f.name})
    for f in sorted((home / "credentials").glob("*.dpop.pem")):
        found["keys"].append((f.name, f.stat().st_mode & 0o777, f.read_bytes()))
    return found


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def rfc7638(jwk: dict) -> str:
    """The RFC 7638 thumbprint (SHA-256, base64url), as cnf.jkt carries it, of a public JWK: its
    required members only (EC: crv, kty, x, y; OKP: crv, kty, x; RSA: e, kty, n), sorted, no
    whitespace. Another kty, or a member missing, is a ValueError."""
    required = {"EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x"), "RSA": ("e", "kty", "n")}
    names = required.get(jwk.get("kty"))
    if names is None or any(not isinstance(jwk.get(n), str) for n in names):
        raise ValueError(f"not a public JWK of a known kty with its members: {jwk}")
    members = {n: jwk[n] for n in names}
    return b64url(hashlib.sha256(json.dumps(members, separators=(",", ":"), sort_keys=True).encode()).digest())


def jwk_thumbprint(pem: bytes) -> str | None:
    """The RFC 7638 JWK thumbprint (SHA-256, base64url), as cnf.jkt carries it, of the public half
    of an EC P-256 private key in PEM (the client's DPoP key); None when the cryptography package
    is not installed. A key of another type or curve is a ValueError."""
    try:
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.serialization import load_pem_private_key
    except ImportError:
        return None
    key = load_pem_private_key(pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ValueError(f"not an EC P-256 key: {type(key).__name__}")
    public = key.public_key().public_numbers()
    x, y = (b64url(n.to_bytes(32, "big")) for n in (public.x, public.y))
    return rfc7638({"crv": "P-256", "kty": "EC", "x": x, "y": y})


# The server's debug line for each request it answers 401 or 403 (mcp_auth_transport::auth, on in
# FACADE_DPOP_SETTINGS) and its reason for the two 401s a DPoP client meets without anything
# being wrong: the credential-less request that finds the authorization server (a login's probe,
# and rmcp's discovery before it uses stored tokens), and the nonce challenge (RFC 9449 section 9)
# the client answers by retrying with the nonce.
NOT_AUTHENTICATED = "request not authenticated"
NO_CREDENTIALS = "reason=no credentials"
NONCE_CHALLENGE = "reason=DPoP proof without the current nonce"


def cnf_jkt(who: dict) -> tuple[str | None, str | None]:
    """The cnf.jkt of the whoami principal's claims (a 43-character base64url SHA-256 thumbprint)
    and None; or None and why there is none."""
    cnf = (who.get("claims") or {}).get("cnf")
    jkt = cnf.get("jkt") if isinstance(cnf, dict) else None
    if not isinstance(jkt, str) or not re.fullmatch(r"[A-Za-z0-9_-]{43}", jkt):
        return None, (
            f"the whoami principal's claims carry no cnf.jkt (a SHA-256 thumbprint): the token is not "
            f"DPoP-bound ({who.get('claims')})"
        )
    return jkt, None


def dpop_refusals(runs: list[tuple[str, list[str]]]) -> tuple[str | None, dict[str, int], int]:
    """The server's refusals during a DPoP client's runs (`runs`: each step and the server's log
    lines during it): None, the nonce challenges per step and the number of credential-less
    requests when it refused nothing else; else what it refused."""
    nonces, probes = {}, 0
    for step, got in runs:
        refusals = [line for line in got if NOT_AUTHENTICATED in line]
        for line in refusals:
            if not line.endswith((NO_CREDENTIALS, NONCE_CHALLENGE)):
                return f"{step}: the server refused a request: {line[line.index(NOT_AUTHENTICATED):][:300]}", {}, 0
        nonces[step] = sum(line.endswith(NONCE_CHALLENGE) for line in refusals)
        probes += sum(line.endswith(NO_CREDENTIALS) for line in refusals)
    return None, nonces, probes


def our_dpop_bound(who: dict, stored: dict[str, list], runs: list[tuple[str, list[str]]]) -> tuple[bool, str]:
    """The DPoP part of a facade dpop cell: the whoami principal's claims carry cnf.jkt, the
    RFC 7638 thumbprint of the public half of the one key the client stored (credentials/*.dpop.pem,
    mode 0600); its one stored token is of token_type DPoP (compared case-insensitively, RFC 6749
    section 5.1); during the runs (`runs`: each step and the server's log lines during it) the server
    refused nothing but credential-less requests and nonce challenges, and challenged for a nonce at
    least once (else MCP_DPOP_NONCE was not exercised)."""
    jkt, problem = cnf_jkt(who)
    if problem:
        return False, problem
    if len(stored["keys"]) != 1:
        return False, f"expected one DPoP key file (credentials/*.dpop.pem), found {[k[0] for k in stored['keys']]}"
    name, mode, pem = stored["keys"][0]
    if mode != 0o600:
        return False, f"the DPoP key file {name} has mode {mode:o}, expected 600"
    try:
        thumbprint = jwk_thumbprint(pem)
    except ValueError as e:
        return False, f"the DPoP key file {name}: {e}"
    if thumbprint is None:
        how = "a 43-character base64url string (the cryptography package is not installed: not compared to the key)"
    elif thumbprint != jkt:
        return False, f"cnf.jkt {jkt} is not the thumbprint of the stored key {name} ({thumbprint})"
    else:
        how = f"= the RFC 7638 thumbprint of the stored key ({name}, 0600)"
    if len(stored["tokens"]) != 1:
        return False, f"expected one stored token file (credentials/*.json), found {len(stored['tokens'])}"
    token_type = (stored["tokens"][0].get("token_response") or {}).get("token_type")
    if not isinstance(token_type, str) or token_type.lower() != "dpop":
        return False, f"the stored token's token_type is {token_type!r}, expected DPoP"
    problem, nonces, probes = dpop_refusals(runs)
    if problem:
        return False, problem
    if not sum(nonces.values()):
        return False, "the server sent no use_dpop_nonce challenge: the nonce path was not exercised"
    challenged = ", ".join(f"{step} {n}" for step, n in nonces.items())
    return True, (
        f"DPoP-bound: cnf.jkt {jkt} {how}, stored token_type {token_type!r}; no refusal in the server's log but "
        f"its use_dpop_nonce challenges, each answered ({challenged}), and {probes} credential-less discovery request(s)"
    )


def our_no_dpop_refused(client: str, url: str) -> tuple[bool, str]:
    """mcp-auth-client --no-dpop on the facade dpop server, with a fresh MCP_AUTH_CLIENT_HOME,
    without -v: it logs in (one login, the browser consent-browser.py) and asks for a token without
    a DPoP proof, which the DPoP-only server refuses at its token endpoint (400 invalid_dpop_proof)
    instead of issuing a bearer token: exit 1, nothing on stdout, stderr ending with the one
    `error: ...` line, `error: whoami: <reason>` naming invalid_dpop_proof; no DPoP key made and no
    token stored (credentials/ has neither); in the server's log during the run, the login finished
    for the client the browser named, and no request reached the MCP endpoint with a credential (no
    refusal but the credential-less probe, no MCP request served): no access token was issued to use.
    The server logs nothing at its token endpoint, so the refusal itself is the client's report."""
    server_log = OUT / "server-facade-dpop.log"
    browser_log, consent_log = login_logs(f"{client}-no-dpop")
    env = {"BROWSER": str(CONSENT_BROWSER), "BROWSER_LOG": str(browser_log), "CONSENT_LOG": str(consent_log)}
    with our_home() as home:
        r, server_lines = our_client(client, url, server_log, "--no-dpop", "whoami", home=home, env=env, verbose=False)
        stored = our_stored(home)
    what = "--no-dpop (no DPoP proof)"
    err = r.err.strip().splitlines()
    if r.code != 1:
        return False, f"{what}: expected exit 1, got {r.why()}"
    errors = [line for line in err if line.startswith("error")]
    if r.out.strip() or len(errors) != 1 or not err[-1].startswith("error: whoami: "):
        return False, (
            f"{what}: expected stderr to end with the one line 'error: whoami: ...', got {err} and stdout {r.out[:200]!r}"
        )
    if "invalid_dpop_proof" not in err[-1]:
        return False, f"{what}: refused without naming invalid_dpop_proof (the token endpoint's refusal): {err[-1]}"
    if stored["keys"]:
        return False, f"{what}: the client made a DPoP key ({stored['keys'][0][0]})"
    if stored["tokens"]:
        return False, f"{what}: the client stored {len(stored['tokens'])} token file(s) (credentials/*.json): a token was issued"
    opened = lines(browser_log)
    if len(opened) != 1 or len(lines(consent_log)) != 1:
        return False, f"{what}: expected one login, the browser was opened {len(opened)} times"
    client_id = parse_qs(urlsplit(opened[0]).query).get("client_id", ["?"])[0]
    if not any(f"login finished client={client_id}" in line for line in server_lines):
        return False, f"{what}: the server's log has no 'login finished client={client_id}': the login did not reach the token step"
    refused = [line[line.index(NOT_AUTHENTICATED) :] for line in server_lines if NOT_AUTHENTICATED in line]
    others = [line for line in refused if not line.endswith(NO_CREDENTIALS)]
    if others:
        return False, f"{what}: a request reached the MCP endpoint with a credential and was refused: {others[0][:300]}"
    served = [line for line in server_lines if "Service initialized as server" in line]
    if served:
        return False, f"{what}: the server served {len(served)} MCP connection(s) during the run: {served[0][:200]}"
    return True, (
        f"{what} refused at the token exchange after one login (exit 1, {err[-1]!r}); no token stored, no key "
        f"made; server: login finished for {client_id}, then no MCP request with a credential "
        f"({len(refused)} credential-less probe(s), nothing served)"
    )


# The SDK rows of the facade dpop column: their driver with DPoP on (ts_facade_client.mjs, DPOP=1:
# its provider implements dpop()). The other SDK rows and the Inspector send no DPoP proofs (in
# NOT_APPLICABLE).
DPOP_SDK_CLIENTS = {"typescript-sdk-v2"}


def sdk_dpop_wire(dpop: dict, url: str, origin: str) -> tuple[str | None, str]:
    """What the driver saw on the wire (its `dpop.http`, each request to the server's origin as the
    SDK sent it, retries included): every token request carried a DPoP proof for the token endpoint
    (htm POST, htu its URL) and got its token (200), at least one, or was a use_dpop_nonce refusal
    (400 with a DPoP-Nonce, RFC 9449 section 8) answered by the next request, a token request whose
    proof carries that nonce and that got its token; no request carried a Bearer
    token; every MCP request after the first token carried `Authorization: DPoP` and a proof bound to
    it (htm its method, htu the MCP URL, ath), and the only MCP request without a credential was the
    first (the probe whose 401 starts the login); every 401 to a DPoP request was a use_dpop_nonce
    challenge with a DPoP-Nonce, answered by the next request, the same method and path with a proof
    carrying that nonce, which was not refused; at least one such challenge. None and a summary, or
    what did not hold and ""."""
    http = dpop.get("http")
    if not isinstance(http, list) or not http:
        return "the driver recorded no HTTP request (dpop.http)", ""
    token_url, mcp_path = f"{origin}/oauth/token", urlsplit(url).path
    tokens = [(i, h) for i, h in enumerate(http) if h.get("method") == "POST" and h.get("path") == "/oauth/token"]
    if not tokens:
        return "the driver made no token request", ""
    challenges = 0
    for i, h in tokens:
        proof = h.get("proof") or {}
        if proof.get("htm") != "POST" or proof.get("htu") != token_url:
            return f"a token request without a DPoP proof for {token_url}: {h}", ""
        if h.get("status") == 200:
            continue
        if h.get("status") != 400 or h.get("error") != "use_dpop_nonce" or not h.get("nonce"):
            return f"a token request was refused: {h}", ""
        retry = http[i + 1] if i + 1 < len(http) else {}
        if (retry.get("path"), (retry.get("proof") or {}).get("nonce"), retry.get("status")) != ("/oauth/token", h["nonce"], 200):
            return f"the token endpoint's use_dpop_nonce to request {i} was not answered with its nonce and a token: next {retry or 'nothing'}", ""
        challenges += 1
    bearer = [h for h in http if (h.get("scheme") or "").lower() == "bearer"]
    if bearer:
        return f"the SDK sent a Bearer token: {bearer[0]}", ""
    first_token = tokens[0][0]
    mcp = [(i, h) for i, h in enumerate(http) if h.get("path") == mcp_path]
    probes = [i for i, h in mcp if h.get("scheme") is None]
    if probes != [mcp[0][0]] or probes[0] > first_token:
        return f"MCP requests without a credential other than the first (requests {probes} of {len(http)})", ""
    for i, h in mcp[1:]:
        proof = h.get("proof") or {}
        if h.get("scheme") != "DPoP" or proof.get("htm") != h.get("method") or proof.get("htu") != url or not proof.get("ath"):
            return f"an MCP request without `Authorization: DPoP` and a proof bound to it: {h}", ""
        if h.get("status") != 401:
            continue
        if h.get("error") != "use_dpop_nonce" or not h.get("nonce"):
            return f"an MCP request was refused: {h}", ""
        retry = http[i + 1] if i + 1 < len(http) else {}
        answered = (retry.get("proof") or {}).get("nonce")
        if (retry.get("method"), retry.get("path"), answered) != (h.get("method"), mcp_path, h["nonce"]):
            return f"the use_dpop_nonce challenge to request {i} was not answered with its nonce: next {retry or 'nothing'}", ""
        if retry.get("status") == 401:
            return f"the answer to the use_dpop_nonce challenge was refused: {retry}", ""
        challenges += 1
    if not challenges:
        return "the SDK met no use_dpop_nonce challenge: the nonce path was not exercised", ""
    methods = sorted({h.get("method") for _, h in mcp[1:]})
    return None, (
        f"on the wire: {len(tokens)} token request(s) with a proof (htu {token_url}), {len(mcp) - 1} MCP requests "
        f"({', '.join(methods)}) each `Authorization: DPoP` + a proof with ath, {challenges} use_dpop_nonce "
        f"challenge(s) (token endpoint and MCP), each answered by a retry carrying its nonce, no Bearer"
    )


def facade_sdk_dpop(client: str, url: str, origin: str) -> tuple[bool, str]:
    """An SDK row on the facade dpop server: one run of its driver with DPOP=1 (browser logs named
    <client>-dpop), registering dynamically, checked as facade_sdk checks a login (the facade login,
    a registered client ID, `client registered` in the server's log during the run), and: the whoami
    principal's claims carry cnf.jkt, equal to the RFC 7638 thumbprint (computed here) of the public
    JWK of the SDK's DpopSession, which is also the thumbprint the SDK reports; the saved tokens'
    token_type is DPoP (case-insensitively); the wire as sdk_dpop_wire says; and the server's log
    during the run refused nothing but credential-less requests and nonce challenges, as many
    challenges at the MCP endpoint as the driver met there."""
    server_log = OUT / "server-facade-dpop.log"
    before = log_size(server_log)
    r, browser_log, consent_log = facade_sdk_run(client, url, {"DPOP": "1"}, "dpop")
    server_lines = log_since(server_log, before)
    out, problem = facade_sdk_output(r, url, origin, browser_log, consent_log)
    if problem:
        return False, problem
    if not out.get("registered") or not out.get("client_id"):
        return False, f"the client did not register dynamically (client_id {out.get('client_id')!r})"
    if not any("client registered" in line for line in server_lines):
        return False, "the client says it registered, but the server logged no 'client registered' during the cell"
    dpop = out.get("dpop")
    if not isinstance(dpop, dict):
        return False, "the driver's output has no `dpop` (was DPOP=1 honoured?)"
    jkt, problem = cnf_jkt(out["whoami"])
    if problem:
        return False, problem
    try:
        thumbprint = rfc7638(dpop.get("public_jwk") or {})
    except ValueError as e:
        return False, f"the SDK's DPoP key: {e}"
    if not jkt == thumbprint == dpop.get("thumbprint"):
        return False, (
            f"cnf.jkt {jkt}, the RFC 7638 thumbprint of the SDK's public JWK {thumbprint} and the SDK's own "
            f"{dpop.get('thumbprint')} differ"
        )
    token_type = dpop.get("token_type")
    if not isinstance(token_type, str) or token_type.lower() != "dpop":
        return False, f"the saved tokens' token_type is {token_type!r}, expected DPoP"
    problem, wire = sdk_dpop_wire(dpop, url, origin)
    if problem:
        return False, problem
    problem, nonces, probes = dpop_refusals([("the run", server_lines)])
    if problem:
        return False, problem
    # The MCP endpoint's challenges (401): the ones the server logs.
    met = sum(1 for h in dpop["http"] if h.get("error") == "use_dpop_nonce" and h.get("status") == 401)
    if nonces["the run"] != met:
        return False, f"the server logged {nonces['the run']} nonce challenge(s), the driver met {met}"
    return True, (
        f"DPOP=1 (the provider's dpop(): a DpopSession, {dpop.get('alg')}); dynamic registration at "
        f"{origin}/oauth/register, consent page (Allow), upstream login, PKCE, resource={url}; tools/list, get_time, "
        f"whoami as {UPSTREAM_USER!r} of {origin}; DPoP-bound: cnf.jkt {jkt} = the RFC 7638 thumbprint of the "
        f"SDK's public key, saved token_type {token_type!r}; {wire}; no refusal in the server's log but its "
        f"{met} MCP use_dpop_nonce challenge(s) (as many as the driver met there) and {probes} credential-less request(s)"
    )


@contextlib.contextmanager
def facade_server(name: str, extra: dict[str, str] | None = None, upstream_name: str = "upstream-oidc") -> Iterator[tuple[str, str]]:
    """mcp-auth-server as the authorization server (the facade) in front of its own upstream
    provider, with `extra` settings; yields its MCP URL and origin. The log is server-<name>.log,
    checked afterwards for the upstream client secret (a RuntimeError fails the cells)."""
    # The port is chosen first: the upstream's only redirect URI is the server's callback.
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    url, callback = f"{origin}/mcp", f"{origin}/oauth/callback"
    with upstream_provider(callback, upstream_name) as upstream:
        env = {
            "MCP_AUTH_STRATEGY": "oauth2",
            "MCP_OAUTH_ISSUER": upstream,
            "MCP_OAUTH_CALLBACK_URL": callback,
            "MCP_OAUTH_CLIENT_ID": UPSTREAM_CLIENT_ID,
            "MCP_OAUTH_CLIENT_SECRET": UPSTREAM_CLIENT_SECRET,
            "MCP_OAUTH_SCOPE": "openid email",
            "MCP_OAUTH_PROVIDER_NAME": "oidc-provider",
            "MCP_OAUTH_SCOPES_SUPPORTED": "mcp:tools,mcp:admin",
            **(extra or {}),
        }
        with server(name, env, port):
            yield url, origin


def cells_facade(m: Matrix, rows: list[str]) -> None:
    made: list[Path] = []  # the test CA, made once per run, by the first metadata-document login

    def pki() -> Path:
        if not made:
            made.append(facade_pki())
        return made[0]

    with facade_server("facade") as (url, origin):
        for client in rows:
            if client in BOTH_LOGINS_CLIENTS:
                m.record(client, "facade", *facade_both_logins(client, url, origin, pki))
            elif client in SDK_CLIENTS:
                m.record(client, "facade", *facade_sdk(client, url, origin))
            elif client == "inspector-cli":
                m.record(client, "facade", *facade_inspector(url, origin))
            elif client in OUR_CLIENT_ROWS:
                m.record(client, "facade", *our_facade(client, url, origin))
    for log in (OUT / "server-facade.log", OUT / "server-facade-metadata.log"):
        if log.exists() and UPSTREAM_CLIENT_SECRET in log.read_text():
            for client in rows:
                if (client, "facade") in m.cells:
                    m.record(client, "facade", False, f"the upstream client secret is in the server's log ({log.name})")


# The facade dpop column's server: the facade's settings plus DPoP required, with nonces, and the
# debug line for each refused request (NOT_AUTHENTICATED).
FACADE_DPOP_SETTINGS = {
    "MCP_DPOP": "require",
    "MCP_DPOP_NONCE": "true",
    "LOG_LEVEL": "info,mcp_auth_transport::auth=debug",
}


def cells_facade_dpop(m: Matrix, rows: list[str]) -> None:
    """The facade with DPoP required (FACADE_DPOP_SETTINGS): mcp-auth-client's rows and the SDK
    rows in DPOP_SDK_CLIENTS run (the others are in NOT_APPLICABLE). An mcp-auth-client cell passes
    only if both hold: our_facade with the DPoP checks, and our_no_dpop_refused; an SDK cell is
    facade_sdk_dpop."""
    log = OUT / "server-facade-dpop.log"
    with facade_server("facade-dpop", FACADE_DPOP_SETTINGS, upstream_name="upstream-oidc-dpop") as (url, origin):
        # The port listens before the server logs its settings: wait for its "serving MCP" line.
        deadline = time.monotonic() + 10
        while not any("serving MCP" in line for line in lines(log)) and time.monotonic() < deadline:
            time.sleep(0.1)
        started = [line for line in lines(log) if "DPoP proofs checked" in line]
        if not started or "required=true" not in started[0] or "nonces=true" not in started[0]:
            raise RuntimeError(f"the server did not start with DPoP required and nonces on: {started}")
        for client in rows:
            if client in DPOP_SDK_CLIENTS:
                m.record(client, "facade dpop", *facade_sdk_dpop(client, url, origin))
            elif client in OUR_CLIENT_ROWS:
                bound = our_facade(client, url, origin, dpop=True)
                m.record(client, "facade dpop", *both(bound, our_no_dpop_refused(client, url)))
    if UPSTREAM_CLIENT_SECRET in log.read_text():
        for client in rows:
            if (client, "facade dpop") in m.cells:
                m.record(client, "facade dpop", False, f"the upstream client secret is in the server's log ({log.name})")


def conformance_server(url: str) -> tuple[bool, str]:
    suite = INTEROP / "conformance"
    results = OUT / "conformance-server"
    shutil.rmtree(results, ignore_errors=True)
    r = run(
        [
            str(suite / "node_modules" / ".bin" / "conformance"),
            "server",
            "--url",
            url,
            "--expected-failures",
            "expected-failures.yml",
            "-o",
            str(results),
        ],
        env={"PATH": f"{NODE.parent}:{os.environ.get('PATH', '')}"},
        cwd=suite,
    )
    lines = r.out.splitlines()
    passed = sum(1 for line in lines if line.startswith("✓ "))
    failed = sum(1 for line in lines if line.startswith("✗ "))
    summary = f"{passed} of {passed + failed} scenarios pass"
    (OUT / "conformance-server.log").write_text(r.out + r.err)
    if r.code != 0 or passed == 0:
        return False, f"{r.why()} ({summary}; log in {OUT / 'conformance-server.log'})"
    return True, f"{summary}; the others are exactly the baseline in tests/interop/conformance/expected-failures.yml"


# ---------------------------------------------------------------------------- report


def render(m: Matrix, rows: list[str], columns: list[str], names: dict[str, str]) -> str:
    head = "| client | package | " + " | ".join(columns) + " |"
    table = [head, "|" + "---|" * (len(columns) + 2)]
    for client in rows:
        cells = []
        for s in columns:
            cell = m.cells.get((client, s))
            cells.append(cell.status if cell else ("n/a" if (client, s) in NOT_APPLICABLE else "not run"))
        table.append(f"| {client} | {names.get(client, 'version unknown')} | " + " | ".join(cells) + " |")
    notes = [
        f"- {client} x {s}: {why}"
        for (client, s), why in {**EXPECTED_FAILURES, **NOT_APPLICABLE}.items()
        if client in rows and s in columns
    ]
    if notes:
        notes = ["", "Expected failures and cells that do not apply:", "", *notes]
    return "\n".join(table + notes) + "\n"


def update_docs(table: str) -> None:
    doc = ROOT / "docs" / "INTEROP.md"
    text = doc.read_text()
    start, end = "<!-- matrix:start -->", "<!-- matrix:end -->"
    before, rest = text.split(start, 1)
    _, after = rest.split(end, 1)
    doc.write_text(f"{before}{start}\n{table}{end}{after}")


# Each setup: its label, the function that runs its cells, the columns it fills.
GROUPS: list[tuple[str, Callable[[Matrix, list[str]], None], list[str]]] = [
    ("none", cells_none, ["none"]),
    ("api_key", cells_api_key, ["api_key"]),
    ("bearer", cells_bearer, ["bearer"]),
    ("oauth2 (oidc-provider)", cells_oauth2, ["oauth2", "oauth2 step-up"]),
    ("cognito (moto)", cells_cognito, ["cognito"]),
    ("facade (mcp-auth-server as the authorization server, oidc-provider upstream)", cells_facade, ["facade"]),
    ("facade dpop (the same, MCP_DPOP=require, MCP_DPOP_NONCE=true)", cells_facade_dpop, ["facade dpop"]),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", help="comma-separated client rows to run (default: all)")
    ap.add_argument(
        "--columns",
        help="comma-separated strategy columns to run (default: all; 'oauth2' and 'oauth2 step-up' run together)",
    )
    ap.add_argument("--update-docs", action="store_true", help="write the matrix into docs/INTEROP.md (whole matrix only)")
    args = ap.parse_args()
    rows = args.only.split(",") if args.only else CLIENT_ROWS
    unknown = set(rows) - set(CLIENT_ROWS)
    if unknown:
        ap.error(f"unknown client rows {sorted(unknown)}; known: {', '.join(CLIENT_ROWS)}")
    wanted = [c.strip() for c in args.columns.split(",")] if args.columns else STRATEGIES
    unknown = set(wanted) - set(STRATEGIES)
    if unknown:
        ap.error(f"unknown columns {sorted(unknown)}; known: {', '.join(STRATEGIES)}")
    groups = [g for g in GROUPS if set(g[2]) & set(wanted)]
    columns = [s for s in STRATEGIES if any(s in g[2] for g in groups)]
    if args.update_docs and (rows != CLIENT_ROWS or columns != STRATEGIES):
        ap.error("--update-docs writes the whole matrix: run it without --only and --columns")
    for need in (SERVER_BIN, NODE, MOTO_SERVER, *([OUR_CLIENT] if set(rows) & set(OUR_CLIENT_ROWS) else [])):
        if not Path(need).exists():
            print(f"error: {need} is missing (run tests/run-all.sh, which builds and installs it)", file=sys.stderr)
            return 2
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "clients.log").unlink(missing_ok=True)
    names = versions()
    m = Matrix()
    for name, cells, owned in groups:
        print(f"--- {name}", flush=True)
        started = time.monotonic()
        try:
            cells(m, rows)
        except Exception as e:  # a broken setup fails every cell it owns, and the run
            traceback.print_exc()
            for client in rows:
                for s in owned:
                    if (client, s) not in m.cells and (client, s) not in NOT_APPLICABLE:
                        first = str(e).splitlines()[0] if str(e) else type(e).__name__
                        m.cells[(client, s)] = Cell("FAIL", f"setup failed: {first}")
        print(f"    ({time.monotonic() - started:.0f} s)", flush=True)
    for client in rows:
        for s in columns:
            if (client, s) not in m.cells and (client, s) not in NOT_APPLICABLE:
                m.cells[(client, s)] = Cell("FAIL", "no result")
    table = render(m, rows, columns, names)
    (OUT / "matrix.md").write_text(table)
    (OUT / "results.json").write_text(
        json.dumps({f"{c} x {s}": {"status": v.status, "detail": v.detail} for (c, s), v in m.cells.items()}, indent=2)
    )
    print("\n=== interop matrix (client x strategy) ===\n")
    print(table)
    if args.update_docs:
        update_docs(table)
    failed = m.failed()
    if failed:
        print("failing cells:", file=sys.stderr)
        for key in failed:
            print(f"  {key[0]} x {key[1]}: {m.cells[key].status}: {m.cells[key].detail}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
