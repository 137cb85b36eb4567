"""A minimal OTLP/HTTP trace receiver built on the official OpenTelemetry protobuf definitions
(PyPI `opentelemetry-proto`).

It listens on a loopback port, accepts `POST /v1/traces` with an `application/x-protobuf`
body (gzip-encoded or not), decodes it as `ExportTraceServiceRequest`, keeps every span and
answers 200 with an empty `ExportTraceServiceResponse`, as an OpenTelemetry collector does.
Anything else gets 404 (another path), 405 (another method) or 415 (JSON, which this receiver
does not decode); a body that is not a valid request gets 400 and is remembered in `errors`.

    with OtlpReceiver() as rx:
        ... point OTEL_EXPORTER_OTLP_ENDPOINT at rx.endpoint ...
        spans = rx.wait_for(lambda spans: any(s.name == "mcp.request" for s in spans), timeout=10)

Used by tests/interop/observability.py; runs on its own for a look at what arrives:
`python tests/interop/otlp_receiver.py [PORT]` prints each span as it comes.
"""

from __future__ import annotations

import gzip
import threading
import time
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan

# Span.SpanKind names by number (SPAN_KIND_SERVER = 2, ...).
KIND_NAMES = {v: k for k, v in PbSpan.SpanKind.items()}


def any_value(v: AnyValue) -> Any:
    """An OTLP AnyValue as a plain Python value."""
    which = v.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, which)


@dataclass
class ReceivedSpan:
    name: str
    trace_id: str  # 32 hex digits
    span_id: str  # 16 hex digits
    parent_span_id: str  # 16 hex digits, "" for a root span
    kind: str  # e.g. SPAN_KIND_SERVER
    attributes: dict[str, Any]
    resource: dict[str, Any] = field(default_factory=dict)
    scope: str = ""
    status_code: int = 0
    # Span events: (name, attributes) each.
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"{self.name} [{self.kind}] trace={self.trace_id} span={self.span_id} "
            f"parent={self.parent_span_id or '-'} {self.attributes}"
        )


class OtlpReceiver:
    """An OTLP/HTTP (protobuf) trace receiver on 127.0.0.1 (a free port unless given)."""

    def __init__(self, port: int = 0, on_span: Callable[[ReceivedSpan], None] | None = None):
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self.spans: list[ReceivedSpan] = []
        self.requests = 0
        self.errors: list[str] = []
        self.content_types: set[str] = set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _answer(self, status: int, body: bytes = b"", ctype: str = "text/plain"):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                self._answer(405 if self.path.split("?")[0] == "/v1/traces" else 404)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if self.path.split("?")[0] != "/v1/traces":
                    self._answer(404)
                    return
                ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
                with receiver._lock:
                    receiver.content_types.add(ctype)
                if ctype != "application/x-protobuf":
                    with receiver._lock:
                        receiver.errors.append(f"unsupported Content-Type {ctype!r}")
                    self._answer(415)
                    return
                encoding = (self.headers.get("Content-Encoding") or "").strip().lower()
                try:
                    if encoding == "gzip":
                        body = gzip.decompress(body)
                    elif encoding == "deflate":
                        body = zlib.decompress(body)
                    elif encoding not in ("", "identity"):
                        raise ValueError(f"unsupported Content-Encoding {encoding!r}")
                    req = ExportTraceServiceRequest()
                    req.ParseFromString(body)
                except (DecodeError, ValueError, OSError, zlib.error) as e:
                    with receiver._lock:
                        receiver.errors.append(f"undecodable export request: {e}")
                    self._answer(400)
                    return
                receiver._keep(req)
                self._answer(
                    200,
                    ExportTraceServiceResponse().SerializeToString(),
                    "application/x-protobuf",
                )

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._on_span = on_span
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _keep(self, req: ExportTraceServiceRequest) -> None:
        got = []
        for rs in req.resource_spans:
            resource = {kv.key: any_value(kv.value) for kv in rs.resource.attributes}
            for ss in rs.scope_spans:
                for s in ss.spans:
                    got.append(
                        ReceivedSpan(
                            name=s.name,
                            trace_id=s.trace_id.hex(),
                            span_id=s.span_id.hex(),
                            parent_span_id=s.parent_span_id.hex(),
                            kind=KIND_NAMES.get(s.kind, str(s.kind)),
                            attributes={kv.key: any_value(kv.value) for kv in s.attributes},
                            resource=resource,
                            scope=ss.scope.name,
                            status_code=s.status.code,
                            events=[
                                (e.name, {kv.key: any_value(kv.value) for kv in e.attributes})
                                for e in s.events
                            ],
                        )
                    )
        with self._cond:
            self.requests += 1
            self.spans.extend(got)
            self._cond.notify_all()
        if self._on_span:
            for s in got:
                self._on_span(s)

    def snapshot(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self.spans)

    def wait_for(
        self, done: Callable[[list[ReceivedSpan]], bool], timeout: float
    ) -> list[ReceivedSpan]:
        """Waits until `done(spans)` holds (or `timeout` seconds pass); returns the spans."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not done(list(self.spans)):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(min(left, 0.2))
            return list(self.spans)

    def start(self) -> "OtlpReceiver":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "OtlpReceiver":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


if __name__ == "__main__":
    import sys

    rx = OtlpReceiver(int(sys.argv[1]) if len(sys.argv) > 1 else 0, on_span=print)
    print(f"OTLP/HTTP receiver: OTEL_EXPORTER_OTLP_ENDPOINT={rx.endpoint}", flush=True)
    rx.start()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        rx.stop()
