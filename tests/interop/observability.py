"""Observability with real parts: a real Prometheus server scrapes mcp-auth-server's /metrics and an
OTLP receiver built on the official OpenTelemetry protobuf definitions decodes its spans.

Run by tests/run-all.sh (the README's test command) with the interop venv's Python
(target/interop/venv: `requests` and `opentelemetry-proto`) after the workspace is built:

    target/interop/venv/bin/python tests/interop/observability.py

1. Starts an OTLP/HTTP receiver (tests/interop/otlp_receiver.py) on a free loopback port.
2. Starts Prometheus (Debian's `prometheus`, /usr/bin/prometheus; PROMETHEUS_BIN overrides) with a
   generated config: scrape_interval 1s, one job scraping the server's metrics listener with the
   metrics token from a `credentials_file`.
3. Starts mcp-auth-server (target/debug/mcp-auth-server; MCP_AUTH_SERVER_BIN overrides) with two
   API keys, /metrics on 127.0.0.1 behind MCP_METRICS_TOKEN, OTLP export to the receiver, a
   per-principal request limit and a failed-login limit, and sends a known mix of requests
   over streamable HTTP (JSON-RPC; SSE answers parsed), one with a W3C `traceparent`.
   Before that, settings the server must refuse at startup: /metrics off loopback without a
   token, OTLP over gRPC.
4. Waits for a scrape that started after the mix, then checks exact counts through Prometheus's
   HTTP API (PromQL), the metrics listener's own refusals, and that no label carries a key, a
   subject, a session id or an address.
5. Checks the spans: the traced request's `mcp.request` span continues the caller's trace, with
   its attributes, and `store` children; refused requests' spans say deny and why.

Exits 1 naming what failed; prints a summary when everything holds. Every number it expects comes
from the mix it sends (the constants below), never read back from the server. On failure the
temporary directory is kept: the server's and Prometheus's logs, Prometheus's data, and every span
received (spans.jsonl).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from otlp_receiver import OtlpReceiver, ReceivedSpan  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SERVER_BIN = Path(os.environ.get("MCP_AUTH_SERVER_BIN", ROOT / "target" / "debug" / "mcp-auth-server"))
PROMETHEUS_BIN = os.environ.get("PROMETHEUS_BIN", "/usr/bin/prometheus")
JOB = "mcp-auth-server"
PROTOCOL = "2025-11-25"

# The mix. Key A: one session with whoami calls and a refused admin_status, ended by DELETE.
# Key B: a session that runs into the per-principal request limit. Then requests without
# credentials, and a wrong key until the failed-login limit answers 429 (last: from then on
# every request from this address gets 429 until the window ends).
WHOAMI_CALLS = 4  # key A, in its session; the last one carries the traceparent
MISSING_CREDENTIALS = 3  # POST initialize without any credential
REQUEST_LIMIT = 12  # HTTP_RATE_LIMIT_MAX_REQUESTS (per principal and window)
GET_TIME_OVER_LIMIT = 3  # key B's get_time calls past the limit
FAILED_LOGIN_LIMIT = 3  # HTTP_AUTH_FAILURE_LIMIT
WRONG_KEY_REQUESTS = 5  # the first FAILED_LOGIN_LIMIT get 401, the rest 429


class Failure(Exception):
    pass


def check(cond: bool, what: str) -> None:
    if not cond:
        raise Failure(what)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, what: str, timeout: float, **kw) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise Failure(f"{what} exited with status {proc.returncode} while starting")
        try:
            r = requests.get(url, timeout=1, **kw)
            if r.status_code == 200:
                return
            last = f"HTTP {r.status_code}"
        except requests.RequestException as e:
            last = str(e)
        time.sleep(0.1)
    raise Failure(f"{what} not ready at {url} within {timeout}s ({last})")


# ------------------------------------------------------------------------------ MCP over HTTP


class Mcp:
    """JSON-RPC over streamable HTTP, one request at a time, recording what it sent."""

    def __init__(self, url: str):
        self.url = url
        self.http = requests.Session()
        self.next_id = 1
        self.sent: list[tuple[str, int]] = []  # (what, status)

    def post(
        self,
        what: str,
        message: dict,
        key: str | None = None,
        session: str | None = None,
        extra: dict | None = None,
        expect: int | None = None,
    ) -> tuple[requests.Response, Any]:
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
        }
        if key is not None:
            headers["X-API-Key"] = key
        if session is not None:
            headers["Mcp-Session-Id"] = session
            headers["MCP-Protocol-Version"] = PROTOCOL
        headers.update(extra or {})
        if "id" not in message and not message.get("method", "").startswith("notifications/"):
            message = {**message, "id": self.next_id}
            self.next_id += 1
        r = self.http.post(self.url, headers=headers, data=json.dumps(message), timeout=10)
        self.sent.append((what, r.status_code))
        if expect is not None and r.status_code != expect:
            raise Failure(
                f"{what}: expected HTTP {expect}, got {r.status_code} "
                f"{r.headers.get('WWW-Authenticate', '')} {r.text[:300]!r}"
            )
        return r, self._result(r, message.get("id"))

    @staticmethod
    def _result(r: requests.Response, rid: Any) -> Any:
        """The JSON-RPC answer to `rid` (from a JSON body or the `data:` lines of an SSE body)."""
        if r.status_code != 200 or rid is None:
            return None
        ctype = r.headers.get("Content-Type", "")
        messages = []
        if ctype.startswith("text/event-stream"):
            for event in re.split(r"\r?\n\r?\n", r.text):
                data = "\n".join(
                    line[5:].lstrip(" ") for line in event.splitlines() if line.startswith("data:")
                )
                if data.strip():
                    messages.append(json.loads(data))
        elif ctype.startswith("application/json"):
            body = r.json()
            messages = body if isinstance(body, list) else [body]
        for m in messages:
            if isinstance(m, dict) and m.get("id") == rid:
                return m
        raise Failure(f"no JSON-RPC answer to id {rid} in {ctype} body {r.text[:300]!r}")

    def initialize(self, what: str, key: str) -> str:
        r, m = self.post(
            what,
            {
                "jsonrpc": "2.0",
                "method": "initialize",
                "params": {
                    "protocolVersion": PROTOCOL,
                    "capabilities": {},
                    "clientInfo": {"name": "observability-test", "version": "1"},
                },
            },
            key=key,
            expect=200,
        )
        sid = r.headers.get("Mcp-Session-Id")
        check(bool(sid), f"{what}: no Mcp-Session-Id in the initialize answer")
        check("result" in m, f"{what}: initialize failed: {m}")
        self.post(
            f"{what} (notifications/initialized)",
            {"jsonrpc": "2.0", "method": "notifications/initialized"},
            key=key,
            session=sid,
            expect=202,
        )
        return sid

    def call(self, what: str, tool: str, key: str, session: str, expect: int, extra=None) -> Any:
        _, m = self.post(
            what,
            {"jsonrpc": "2.0", "method": "tools/call", "params": {"name": tool, "arguments": {}}},
            key=key,
            session=session,
            extra=extra,
            expect=expect,
        )
        if expect == 200:
            check(
                m is not None and "result" in m and not m["result"].get("isError"),
                f"{what}: tool call failed: {m}",
            )
            return m["result"]
        return None

    def delete(self, what: str, key: str, session: str, expect: int) -> None:
        r = self.http.delete(
            self.url,
            headers={"X-API-Key": key, "Mcp-Session-Id": session, "MCP-Protocol-Version": PROTOCOL},
            timeout=10,
        )
        self.sent.append((what, r.status_code))
        check(r.status_code == expect, f"{what}: expected HTTP {expect}, got {r.status_code}")


# ------------------------------------------------------------------------------ Prometheus


class Prometheus:
    def __init__(self, base: str):
        self.base = base

    def query(self, expr: str) -> list[tuple[dict, float]]:
        r = requests.get(f"{self.base}/api/v1/query", params={"query": expr}, timeout=5)
        body = r.json()
        if r.status_code != 200 or body.get("status") != "success":
            raise Failure(f"PromQL {expr!r}: HTTP {r.status_code} {body}")
        data = body["data"]
        if data["resultType"] == "scalar":
            return [({}, float(data["result"][1]))]
        return [(s["metric"], float(s["value"][1])) for s in data["result"]]

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        if not result:
            return None
        if len(result) > 1:
            raise Failure(f"PromQL {expr!r}: expected one series, got {result}")
        return result[0][1]


# ------------------------------------------------------------------------------ the test


def main() -> int:
    if not SERVER_BIN.is_file():
        print(f"observability: {SERVER_BIN} is missing: build it first (cargo build -p mcp-auth-server)")
        return 1
    if not shutil.which(PROMETHEUS_BIN):
        print(f"observability: {PROMETHEUS_BIN} is missing: apt-get install prometheus")
        return 1
    # A TERM (e.g. a CI timeout) unwinds through the cleanup below like an error does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tmp = Path(tempfile.mkdtemp(prefix="mcp-observability-"))
    procs: list[tuple[str, subprocess.Popen, Path]] = []
    receiver = OtlpReceiver().start()
    failed = True
    try:
        summary = run(tmp, procs, receiver)
        failed = False
        print("observability: OK")
        for line in summary:
            print(f"  {line}")
        return 0
    except Failure as e:
        print(f"observability: FAILED: {e}", file=sys.stderr)
        return 1
    finally:
        for name, proc, log in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if failed and log.exists():
                tail = log.read_text(errors="replace").splitlines()[-40:]
                print(f"--- last lines of {name}'s log ({log}) ---", file=sys.stderr)
                print("\n".join(tail), file=sys.stderr)
        receiver.stop()
        if failed:
            with open(tmp / "spans.jsonl", "w") as f:
                for s in receiver.snapshot():
                    f.write(json.dumps(s.__dict__) + "\n")
            print(f"observability: kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def run(tmp: Path, procs: list, receiver: OtlpReceiver) -> list[str]:
    started = time.monotonic()
    key_a = secrets.token_hex(24)
    key_b = secrets.token_hex(24)
    wrong_key = secrets.token_hex(24)
    metrics_token = secrets.token_urlsafe(24)
    mcp_port, metrics_port, prom_port = free_port(), free_port(), free_port()
    metrics_addr = f"127.0.0.1:{metrics_port}"

    server_dir = tmp / "server"  # its working directory: no .env of the repository there
    server_dir.mkdir()
    base_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp),
        "LOG_LEVEL": "info",
        "MCP_API_KEYS": f"{key_a},{key_b}",
    }

    # ---- settings the server must refuse at startup, naming them
    for extra, names in [
        # metrics off loopback without a token
        ({"MCP_METRICS_ADDR": f"0.0.0.0:{free_port()}"}, ["MCP_METRICS_ADDR", "MCP_METRICS_TOKEN"]),
        # OTLP over gRPC (only http/protobuf is exported)
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            ["OTEL_EXPORTER_OTLP_PROTOCOL"],
        ),
    ]:
        try:
            p = subprocess.run(
                [str(SERVER_BIN), "--port", str(free_port())],
                cwd=server_dir,
                env={**base_env, **extra},
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=10,
            )
        except subprocess.TimeoutExpired:
            raise Failure(f"the server started with {extra} instead of refusing it") from None
        said = p.stdout + p.stderr
        check(
            p.returncode != 0 and all(n in said for n in names),
            f"with {extra} the server should exit with an error naming {names}; "
            f"it exited {p.returncode} saying {said.strip()[-300:]!r}",
        )

    # ---- mcp-auth-server
    server_log = tmp / "server.log"
    env = {
        **base_env,
        "MCP_TOOL_SCOPES": "admin_status=mcp:admin",
        "MCP_METRICS_ADDR": metrics_addr,
        "MCP_METRICS_TOKEN": metrics_token,
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "HTTP_RATE_LIMIT_ENABLED": "true",
        "HTTP_RATE_LIMIT_MAX_REQUESTS": str(REQUEST_LIMIT),
        "HTTP_RATE_LIMIT_WINDOW": "600000",
        "HTTP_AUTH_FAILURE_LIMIT": str(FAILED_LOGIN_LIMIT),
    }
    with open(server_log, "wb") as log:
        server = subprocess.Popen(
            [str(SERVER_BIN), "--port", str(mcp_port)],
            cwd=server_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    procs.append(("mcp-auth-server", server, server_log))
    base = f"http://127.0.0.1:{mcp_port}"
    wait_http(f"{base}/health", server, "mcp-auth-server", 20)
    metrics_url = f"http://{metrics_addr}/metrics"
    wait_http(
        metrics_url, server, "the metrics listener", 10,
        headers={"Authorization": f"Bearer {metrics_token}"},
    )

    # ---- Prometheus, scraping the metrics listener with the token from a file
    prom_dir = tmp / "prometheus"
    prom_dir.mkdir()
    token_file = prom_dir / "metrics-token"
    token_file.write_text(metrics_token)
    token_file.chmod(0o600)
    config = prom_dir / "prometheus.yml"
    config.write_text(
        "global:\n"
        "  scrape_interval: 1s\n"
        "  scrape_timeout: 1s\n"
        "  evaluation_interval: 1s\n"
        "scrape_configs:\n"
        f"  - job_name: {JOB}\n"
        "    metrics_path: /metrics\n"
        "    authorization:\n"
        "      type: Bearer\n"
        f"      credentials_file: {token_file}\n"
        "    static_configs:\n"
        f"      - targets: ['{metrics_addr}']\n"
    )
    prom_log = tmp / "prometheus.log"
    with open(prom_log, "wb") as log:
        prom = subprocess.Popen(
            [
                PROMETHEUS_BIN,
                f"--config.file={config}",
                f"--storage.tsdb.path={prom_dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            cwd=prom_dir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    procs.append(("prometheus", prom, prom_log))
    prom_base = f"http://127.0.0.1:{prom_port}"
    wait_http(f"{prom_base}/-/ready", prom, "prometheus", 30)
    promql = Prometheus(prom_base)

    # ---- the metrics listener itself: its token, its one route, nothing on the MCP port
    r = requests.get(metrics_url, timeout=5)
    check(
        r.status_code == 401,
        f"GET /metrics without the token: expected 401, got {r.status_code} {r.text[:200]!r}",
    )
    check("mcp_auth_" not in r.text, "GET /metrics without the token: the answer shows metrics")
    r = requests.get(metrics_url, headers={"Authorization": f"Bearer {wrong_key}"}, timeout=5)
    check(r.status_code == 401, f"GET /metrics with a wrong token: expected 401, got {r.status_code}")
    r = requests.get(
        f"http://{metrics_addr}/other", headers={"Authorization": f"Bearer {metrics_token}"}, timeout=5
    )
    check(r.status_code == 404, f"GET /other on the metrics listener: expected 404, got {r.status_code}")
    r = requests.post(metrics_url, headers={"Authorization": f"Bearer {metrics_token}"}, timeout=5)
    check(
        r.status_code in (404, 405) and "mcp_auth_" not in r.text,
        f"POST /metrics: expected 404 or 405, got {r.status_code}",
    )
    r = requests.get(
        f"{base}/metrics", headers={"Authorization": f"Bearer {metrics_token}"}, timeout=5
    )
    check(
        "mcp_auth_" not in r.text,
        f"the MCP listener serves the metrics too (GET /metrics: {r.status_code})",
    )

    # ---- the mix
    mcp = Mcp(f"{base}/mcp")
    # Key A: a session, WHOAMI_CALLS whoami calls (the last with a traceparent), a refused
    # admin_status (no mcp:admin: an unnamed key holds no scopes).
    sid_a = mcp.initialize("key A: initialize", key_a)
    trace_id = secrets.token_hex(16)
    caller_span = secrets.token_hex(8)
    traceparent = f"00-{trace_id}-{caller_span}-01"
    subject: str | None = None
    for i in range(WHOAMI_CALLS):
        extra = {"traceparent": traceparent} if i == WHOAMI_CALLS - 1 else None
        result = mcp.call(f"key A: whoami #{i + 1}", "whoami", key_a, sid_a, 200, extra)
        text = "".join(c.get("text", "") for c in result.get("content", []))
        who = json.loads(text) if text.strip().startswith("{") else {}
        subject = who.get("subject") or subject
    check(
        isinstance(subject, str) and subject.startswith("api-key:"),
        f"whoami did not name key A's principal (api-key:<fingerprint>): {subject!r}",
    )
    mcp.call("key A: admin_status (no mcp:admin)", "admin_status", key_a, sid_a, 403)
    key_a_requests = 2 + WHOAMI_CALLS + 1  # initialize, initialized, calls; DELETE below

    # No credentials at all: 401, not a failed login.
    for i in range(MISSING_CREDENTIALS):
        mcp.post(
            f"no credentials #{i + 1}",
            {"jsonrpc": "2.0", "method": "initialize", "params": {
                "protocolVersion": PROTOCOL, "capabilities": {},
                "clientInfo": {"name": "anonymous", "version": "1"}}},
            expect=401,
        )

    # Key B: a session, then get_time until the per-principal request limit answers 429.
    sid_b = mcp.initialize("key B: initialize", key_b)
    get_time_ok = REQUEST_LIMIT - 2  # initialize and initialized count too
    for i in range(get_time_ok):
        mcp.call(f"key B: get_time #{i + 1}", "get_time", key_b, sid_b, 200)
    for i in range(GET_TIME_OVER_LIMIT):
        mcp.call(f"key B: get_time over the limit #{i + 1}", "get_time", key_b, sid_b, 429)
    key_b_requests = 2 + get_time_ok + GET_TIME_OVER_LIMIT

    # Key A ends its session.
    mcp.delete("key A: DELETE its session", key_a, sid_a, 204)
    key_a_requests += 1
    check(key_a_requests <= REQUEST_LIMIT, "the mix is wrong: key A would hit the request limit")

    # A wrong key: FAILED_LOGIN_LIMIT times 401 invalid_token, then 429 (failed logins).
    failed_login_429 = WRONG_KEY_REQUESTS - FAILED_LOGIN_LIMIT
    for i in range(WRONG_KEY_REQUESTS):
        expect = 401 if i < FAILED_LOGIN_LIMIT else 429
        mcp.post(
            f"wrong key #{i + 1}",
            {"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "whoami", "arguments": {}}},
            key=wrong_key,
            expect=expect,
        )
    mix_done = time.time()
    total_requests = len(mcp.sent)
    check(
        total_requests
        == key_a_requests + key_b_requests + MISSING_CREDENTIALS + WRONG_KEY_REQUESTS,
        "the mix's bookkeeping is wrong",
    )

    # ---- what the mix must have counted
    ok_auth = key_a_requests + key_b_requests  # key B's 429s come after authentication
    expected = {
        # authentications by strategy and outcome
        'mcp_auth_authentications_total{strategy="api_key",outcome="ok"}': ok_auth,
        'mcp_auth_authentications_total{strategy="api_key",outcome="missing"}': MISSING_CREDENTIALS,
        'mcp_auth_authentications_total{strategy="api_key",outcome="invalid_token"}': FAILED_LOGIN_LIMIT,
        "sum(mcp_auth_authentications_total)": ok_auth + MISSING_CREDENTIALS + FAILED_LOGIN_LIMIT,
        # tools
        'mcp_auth_tool_calls_total{tool="whoami",outcome="ok"}': WHOAMI_CALLS,
        'mcp_auth_tool_calls_total{tool="admin_status",outcome="refused"}': 1,
        'mcp_auth_tool_calls_total{tool="get_time",outcome="ok"}': get_time_ok,
        'mcp_auth_tool_calls_total{tool="get_time",outcome="error"}': GET_TIME_OVER_LIMIT,
        # the wrong key's 401s are not: a refused caller's body is never read for the
        # metrics, and these requests (2025-11-25 wire) name no tool in a header
        "sum(mcp_auth_tool_calls_total)": WHOAMI_CALLS + 1 + get_time_ok + GET_TIME_OVER_LIMIT,
        # 429s
        'mcp_auth_rate_limited_total{limiter="requests"}': GET_TIME_OVER_LIMIT,
        'mcp_auth_rate_limited_total{limiter="failed_logins"}': failed_login_429,
        "sum(mcp_auth_rate_limited_total)": GET_TIME_OVER_LIMIT + failed_login_429,
        # sessions
        "mcp_auth_sessions_opened_total": 2,
        'mcp_auth_sessions_ended_total{reason="deleted"}': 1,
        "sum(mcp_auth_sessions_ended_total)": 1,
        "mcp_auth_sessions_open": 1,
    }
    ok_requests = key_a_requests + (key_b_requests - GET_TIME_OVER_LIMIT) - 1  # minus the 403
    by_outcome = {
        "ok": ok_requests,
        "unauthorized": MISSING_CREDENTIALS + FAILED_LOGIN_LIMIT,
        "forbidden": 1,
        "rate_limited": GET_TIME_OVER_LIMIT + failed_login_429,
    }
    check(sum(by_outcome.values()) == total_requests, "the mix's outcome bookkeeping is wrong")
    for outcome, n in by_outcome.items():
        expected[f'mcp_auth_http_requests_total{{outcome="{outcome}"}}'] = n
        expected[f'mcp_auth_http_request_duration_seconds_count{{outcome="{outcome}"}}'] = n
    expected["sum(mcp_auth_http_requests_total)"] = total_requests
    expected["sum(mcp_auth_http_request_duration_seconds_count)"] = total_requests
    # The client's own tally of statuses must agree with what the metrics will be checked against.
    statuses: dict[int, int] = {}
    for _, status in mcp.sent:
        statuses[status] = statuses.get(status, 0) + 1
    check(
        sum(n for s, n in statuses.items() if s < 400) == by_outcome["ok"]
        and statuses.get(401, 0) == by_outcome["unauthorized"]
        and statuses.get(403, 0) == 1
        and statuses.get(429, 0) == by_outcome["rate_limited"],
        f"the statuses the mix got do not match its plan: {statuses}",
    )

    # ---- wait for a scrape that started after the mix
    deadline = time.monotonic() + 20
    scraped_at = None
    while time.monotonic() < deadline:
        v = promql.value(f'timestamp(up{{job="{JOB}"}})')
        up = promql.value(f'up{{job="{JOB}"}}')
        if v is not None and v > mix_done + 0.05 and up == 1:
            scraped_at = v
            break
        time.sleep(0.25)
    if scraped_at is None:
        targets = requests.get(f"{prom_base}/api/v1/targets", timeout=5).json()
        raise Failure(f"Prometheus did not scrape the server after the mix within 20s: {targets}")
    # A second look a moment later: counts must have settled (nothing more to count).
    first = {expr: promql.value(expr) for expr in expected}
    time.sleep(1.2)
    mismatches = []
    for expr, want in expected.items():
        got = promql.value(expr)
        if got != first[expr]:
            mismatches.append(f"{expr}: still moving ({first[expr]} then {got})")
        elif got is None or got != want:
            mismatches.append(f"{expr}: expected {want}, Prometheus has {got}")
    # Nothing outside the fixed outcome sets of the mix (a series at 0 counted nothing: the server
    # may register the handles of a fixed label set up front).
    for name, label, allowed in [
        ("mcp_auth_authentications_total", "outcome", {"ok", "missing", "invalid_token"}),
        ("mcp_auth_http_requests_total", "outcome", set(by_outcome)),
        ("mcp_auth_rate_limited_total", "limiter", {"requests", "failed_logins"}),
    ]:
        seen = {m.get(label) for m, v in promql.query(name) if v}
        if seen - allowed:
            mismatches.append(f"{name}: unexpected {label} values {sorted(seen - allowed)}")
    check(not mismatches, "metrics in Prometheus:\n    " + "\n    ".join(mismatches))

    # From here on each part is checked even when an earlier one failed: all that failed is reported.
    problems: list[str] = []

    @contextlib.contextmanager
    def part(name: str):
        try:
            yield
        except Failure as e:
            problems.append(f"{name}: {e}")

    # Store operations: each op's count is its latency histogram's `_count` (every operation, ok or
    # failed), labelled by op alone; a reservation and a commit per session opened, an end for the
    # DELETE. Failures count in mcp_auth_store_errors_total{op}, which has no series until a first
    # error: absent (or 0) here. The old mcp_auth_store_operations_total is gone.
    ops: dict[str, float] = {}
    with part("store metrics"):
        counts = promql.query("mcp_auth_store_operation_duration_seconds_count")
        check(
            counts,
            "mcp_auth_store_operation_duration_seconds_count: no series in Prometheus (is the store metered?)",
        )
        for m, v in counts:
            extra = set(m) - {"__name__", "job", "instance", "op"}
            check("op" in m and not extra, f"mcp_auth_store_operation_duration_seconds_count labels: {m}")
            ops[m["op"]] = ops.get(m["op"], 0) + v
        check(sum(ops.values()) > 0, "mcp_auth_store_operation_duration_seconds_count: all zero")
        for op in ("reserve", "commit", "lookup", "hit", "end"):
            check(
                ops.get(op, 0) > 0,
                f"mcp_auth_store_operation_duration_seconds_count: no {op!r} operation (ops: {ops})",
            )
        check(ops["reserve"] == 2, f"store reserve operations: expected 2 (sessions opened), got {ops['reserve']}")
        check(ops["commit"] == 2, f"store commit operations: expected 2 (sessions opened), got {ops['commit']}")
        check(ops["end"] == 1, f"store end operations: expected 1 (the DELETE), got {ops['end']}")
        check(not ops.get("release"), f"store release operations: expected none, got {ops.get('release')}")
        buckets = promql.query('sum by (op) (mcp_auth_store_operation_duration_seconds_bucket{le="+Inf"})')
        for m, v in buckets:
            check(
                v == ops.get(m["op"]),
                f"mcp_auth_store_operation_duration_seconds_bucket{{op={m['op']!r},le=\"+Inf\"}} = {v}, "
                f"but _count = {ops.get(m['op'])}",
            )
        check({m["op"] for m, _ in buckets} == set(ops), "store histogram: ops of _bucket and _count differ")
        errors = promql.query("mcp_auth_store_errors_total")
        for m, v in errors:
            extra = set(m) - {"__name__", "job", "instance", "op"}
            check("op" in m and not extra, f"mcp_auth_store_errors_total labels: {m}")
        failed = {m["op"]: v for m, v in errors if v}
        check(not failed, f"store operations failed: {failed}")
        old = promql.query("mcp_auth_store_operations_total")
        check(not old, f"mcp_auth_store_operations_total (replaced) is still exported: {old}")

    with part("metric types"):
        meta = requests.get(f"{prom_base}/api/v1/metadata", timeout=5).json().get("data", {})
        wrong_types = []
        for name, kind in [
            ("mcp_auth_http_requests_total", "counter"),
            ("mcp_auth_authentications_total", "counter"),
            ("mcp_auth_http_request_duration_seconds", "histogram"),
            ("mcp_auth_store_operation_duration_seconds", "histogram"),
            ("mcp_auth_sessions_open", "gauge"),
        ]:
            types = {m.get("type") for m in meta.get(name, [])}
            if kind not in types:
                wrong_types.append(f"{name}: Prometheus sees type {sorted(types) or 'none'}, expected {kind}")
        check(not wrong_types, "; ".join(wrong_types))

    secrets_ = {
        "key A": key_a, "key B": key_b, "the wrong key": wrong_key, "the metrics token": metrics_token,
    }
    with part("exposition labels"):
        text = requests.get(
            metrics_url, headers={"Authorization": f"Bearer {metrics_token}"}, timeout=5
        ).text
        for what, s in secrets_.items():
            check(s not in text, f"the metrics text contains {what}")
        label_values = set()
        for line in text.splitlines():
            if line.startswith("#") or "{" not in line:
                continue
            labels = line[line.index("{") + 1 : line.rindex("}")]
            label_values.update(re.findall(r'="((?:[^"\\]|\\.)*)"', labels))
        check(label_values, "no labelled series in the metrics text")
        forbidden = {
            **secrets_, "127.0.0.1": "127.0.0.1", "session A": sid_a, "session B": sid_b,
            "the subject": subject,
        }
        for value in label_values:
            for what, s in forbidden.items():
                check(s not in value, f"a label value of the metrics contains {what}: {value!r}")
        check(
            not any(re.search(r"\d+\.\d+\.\d+\.\d+|:\d{2,5}$", v) for v in label_values),
            f"a label value looks like an address: {sorted(label_values)}",
        )
        # Every metric the server exports is documented in OPERATIONS.md,
        # and everything the dashboard and the alert rules query is a
        # documented metric (or a histogram's series of one).
        docs = (ROOT / "docs" / "OPERATIONS.md").read_text()
        documented = set(re.findall(r"`(mcp_auth_[a-z_]+)`", docs))
        exported = set(re.findall(r"^# TYPE (mcp_auth_[a-z_]+) ", text, re.M))
        check(exported, "no # TYPE lines in the metrics text")
        check(not exported - documented, f"exported but not in OPERATIONS.md: {sorted(exported - documented)}")
        for asset in ("grafana-dashboard.json", "alerts.yml"):
            used = set(re.findall(r"mcp_auth_[a-z_]+", (ROOT / "docs" / "observability" / asset).read_text()))
            bases = {re.sub(r"_(bucket|sum|count)$", "", m) for m in used}
            check(not bases - documented, f"{asset} queries undocumented metrics: {sorted(bases - documented)}")

    # ---- the spans
    def status_of(span: ReceivedSpan) -> int | None:
        v = span.attributes.get("http.response.status_code")
        return int(v) if isinstance(v, (int, str)) and str(v).isdigit() else None

    def traced(spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
        return [
            s for s in spans
            if s.trace_id == trace_id and s.kind == "SPAN_KIND_SERVER"
            and s.attributes.get("mcp.method") == "tools/call"
        ]

    def denied(spans: list[ReceivedSpan], outcome: str) -> list[ReceivedSpan]:
        return [s for s in spans if s.attributes.get("auth.outcome") == outcome]

    def complete(spans: list[ReceivedSpan]) -> bool:
        t = traced(spans)
        return bool(
            t
            and any(s.name == "store" and s.parent_span_id == t[0].span_id for s in spans)
            and denied(spans, "missing")
            and denied(spans, "invalid_token")
        )

    spans = receiver.wait_for(complete, timeout=15)
    check(receiver.requests > 0, "the OTLP receiver got no export request")
    check(not receiver.errors, f"the OTLP receiver could not decode: {receiver.errors}")
    names = sorted({s.name for s in spans})
    mcp_spans = [s for s in spans if s.name == "mcp.request"]
    store_children: list[ReceivedSpan] = []
    child_ops: list[str] = []
    with part("the traced request's span"):
        t = traced(spans)
        check(
            len(t) == 1,
            f"expected one server span of a tools/call in the trace {trace_id} (the traceparent's), "
            f"got {len(t)}; span names received: {names}; server spans: "
            + "; ".join(str(s) for s in spans if s.kind == "SPAN_KIND_SERVER")[:1500],
        )
        req_span = t[0]
        check(req_span.name == "mcp.request", f"it is named {req_span.name!r}, not mcp.request")
        check(
            req_span.parent_span_id == caller_span,
            f"its parent is {req_span.parent_span_id!r}, not the caller's span {caller_span}",
        )
        want_attrs = {
            "mcp.method": "tools/call",
            "mcp.tool": "whoami",
            "auth.decision": "allow",
            "auth.outcome": "ok",
            "auth.strategy": "api_key",
            "http.request.method": "POST",
            "url.path": "/mcp",
            "mcp.session.id": sid_a,
            "enduser.id": subject,
        }
        wrong = {
            k: (req_span.attributes.get(k), v)
            for k, v in want_attrs.items()
            if req_span.attributes.get(k) != v
        }
        check(not wrong, f"attributes (got, expected): {wrong}; all: {req_span.attributes}")
        check(status_of(req_span) == 200, f"http.response.status_code {req_span.attributes}")
        check(
            req_span.resource.get("service.name") == "mcp-auth-server",
            f"service.name of the resource: {req_span.resource.get('service.name')!r}",
        )
        others = [s for s in mcp_spans if s is not req_span]
        check(
            all(s.trace_id != trace_id for s in others),
            "another request's span joined the caller's trace",
        )

        with part("store spans"):
            children = [s for s in spans if s.parent_span_id == req_span.span_id]
            store_children = [s for s in children if s.name == "store"]
            check(
                store_children,
                f"no `store` child span of the traced request's span (its children: "
                f"{[s.name for s in children]}; span names received: {names})",
            )
            for s in store_children:
                check(s.trace_id == trace_id, f"a store child span in another trace: {s}")
                check(s.attributes.get("store.operation"), f"a store span without store.operation: {s}")
            child_ops = sorted({s.attributes["store.operation"] for s in store_children})
            check("lookup" in child_ops, f"the traced request's store spans lack the session lookup: {child_ops}")

    with part("status attribute type"):
        not_int = sorted({
            repr(s.attributes.get("http.response.status_code"))
            for s in mcp_spans
            if not isinstance(s.attributes.get("http.response.status_code"), int)
        })
        check(
            not not_int,
            f"http.response.status_code is exported as {', '.join(not_int)}, not as an int "
            "(OpenTelemetry semantic conventions: int)",
        )

    with part("the other requests' spans"):
        check(
            len(mcp_spans) == total_requests,
            f"{len(mcp_spans)} mcp.request spans for {total_requests} requests",
        )
        check(
            all(s.kind == "SPAN_KIND_SERVER" for s in mcp_spans),
            f"mcp.request spans of another kind: {[s.kind for s in mcp_spans if s.kind != 'SPAN_KIND_SERVER']}",
        )
        for outcome, n in (("missing", MISSING_CREDENTIALS), ("invalid_token", FAILED_LOGIN_LIMIT)):
            d = denied(mcp_spans, outcome)
            check(len(d) == n, f"{len(d)} spans with auth.outcome={outcome}, expected {n}")
            for s in d:
                check(
                    s.attributes.get("auth.decision") == "deny"
                    and status_of(s) == 401
                    and s.attributes.get("auth.strategy") == "api_key"
                    and "enduser.id" not in s.attributes,
                    f"a refused ({outcome}) request's span: {s.attributes}",
                )
        refused_tool = [s for s in mcp_spans if s.attributes.get("mcp.tool") == "admin_status"]
        check(
            len(refused_tool) == 1 and status_of(refused_tool[0]) == 403,
            f"the refused admin_status call's span: {[s.attributes for s in refused_tool]}",
        )
        limited = [s for s in mcp_spans if status_of(s) == 429]
        check(
            len(limited) == GET_TIME_OVER_LIMIT + failed_login_429,
            f"spans of 429 answers: {len(limited)}, expected {GET_TIME_OVER_LIMIT + failed_login_429}",
        )

    with part("secrets in spans"):
        for s in spans:
            for k, v in list(s.attributes.items()) + list(s.resource.items()):
                for what, secret in secrets_.items():
                    check(secret not in str(v), f"span {s.name} attribute {k} contains {what}")
        # Log events are not exported: they carry fields chosen for the log,
        # the client's address among them (a refused key's event did).
        with_events = [(s.name, s.events) for s in spans if s.events]
        check(not with_events, f"spans with events: {with_events[:3]}")
        foreign = sorted({s.name for s in spans} - {"mcp.request", "store", "jwks.fetch", "introspection"})
        check(not foreign, f"spans other than the documented ones exported: {foreign}")

    if problems:
        raise Failure(f"{len(problems)} part(s) failed:\n  - " + "\n  - ".join(problems))

    took = time.monotonic() - started
    return [
        f"mix: {total_requests} requests over HTTP "
        f"({', '.join(f'{n}x {s}' for s, n in sorted(statuses.items()))}), subject {subject}",
        f"Prometheus {prom_base}: {len(expected)} PromQL values exact, "
        f"store ops {', '.join(f'{k}={int(v)}' for k, v in sorted(ops.items()))}",
        "/metrics: 401 without or with a wrong token, no key/subject/session/address in labels; "
        "startup refuses a non-loopback address without a token and OTLP over gRPC",
        f"OTLP: {len(spans)} spans in {receiver.requests} exports; trace {trace_id}: mcp.request "
        f"(parent {caller_span}) with {len(store_children)} store children ({', '.join(child_ops)})",
        f"took {took:.1f}s",
    ]

if __name__ == "__main__":
    sys.exit(main())
