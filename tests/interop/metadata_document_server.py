"""Serves one client ID metadata document over https on 127.0.0.1, for the interop matrix's
`facade` column (tests/interop/matrix.py): the TypeScript SDK v2 client's client ID is this
document's URL, and mcp-auth-server's authorization-server facade fetches it (with
MCP_PROXY_METADATA_ALLOW_LOOPBACK=true, trusting the test CA through SSL_CERT_FILE).

    python metadata_document_server.py DOCUMENT CERT KEY PORT PATH FETCH_LOG

Answers GET PATH with DOCUMENT as application/json (no-store, so every login fetches it again),
anything else with 404. Appends one line per request to FETCH_LOG: method, path, status,
User-Agent. The TLS handshake happens in the request's thread, so a port probe that connects
and closes stalls nothing. Standard library only.
"""

import http.server
import ssl
import sys
import threading

document_path, cert, key, port, path, fetch_log = sys.argv[1:7]
body = open(document_path, "rb").read()
log_lock = threading.Lock()
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        found = self.path == path
        with log_lock, open(fetch_log, "a") as f:
            f.write(f"GET {self.path} {200 if found else 404} {self.headers.get('User-Agent', '-')}\n")
        if not found:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        print(f"{self.address_string()} {format % args}", flush=True)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def finish_request(self, request, client_address):
        try:
            request = context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as e:
            print(f"{client_address[0]}:{client_address[1]} closed without a TLS handshake ({e}; a port probe does that)", flush=True)
            return
        try:
            super().finish_request(request, client_address)
        finally:
            request.close()


server = Server(("127.0.0.1", int(port)), Handler)
print(f"serving https://127.0.0.1:{port}{path}", flush=True)
server.serve_forever()
