"""HTTP endpoints: /metrics, /healthz, /readyz, / and POST /-/reload.

A small HTTP/1.1 server (keep-alive, so Prometheus reuses its connection) that only writes
bytes prepared elsewhere. It bounds what a client can make it hold: connections, request-line
and header size, and idle time.
"""

from __future__ import annotations

import html
import logging
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client.exposition import choose_encoder, gzip_accepted

from exporter import __version__
from exporter.render.cache import ExpositionCache

log = logging.getLogger(__name__)


class ListenAddressError(ValueError):
    pass


def parse_listen_address(addr: str) -> tuple[str, int, int]:
    """':10117', '127.0.0.1:10117', '[::1]:10117' -> (host, port, address family)."""
    host, sep, port_s = addr.rpartition(":")
    if not sep:
        raise ListenAddressError(f"--web.listen-address {addr!r}: expected HOST:PORT or :PORT")
    try:
        port = int(port_s)
    except ValueError:
        raise ListenAddressError(f"--web.listen-address {addr!r}: port {port_s!r} is not a "
                                 "number") from None
    if not 0 <= port <= 65535:
        raise ListenAddressError(f"--web.listen-address {addr!r}: port out of range")
    family = socket.AF_INET
    if host.startswith("[") and host.endswith("]"):
        host, family = host[1:-1], socket.AF_INET6
    elif ":" in host:
        raise ListenAddressError(f"--web.listen-address {addr!r}: put IPv6 hosts in brackets")
    return host or "0.0.0.0", port, family


@dataclass
class Endpoints:
    cache: ExpositionCache
    ready: Callable[[], tuple[bool, str]]
    reload: Callable[[], tuple[bool, str]] | None = None
    # (handler) -> None if allowed, else (status, headers, body) to send instead.
    authorize: Callable[[BaseHTTPRequestHandler], tuple[int, dict[str, str], bytes] | None] | None \
        = None


LANDING = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Mixpeek exporter</title></head>
<body><h1>Mixpeek exporter</h1>
<p>Prometheus exporter for Mixpeek namespaces, version {version}.</p>
<ul>
<li><a href="metrics">/metrics</a>: the metrics</li>
<li><a href="healthz">/healthz</a>: process is alive</li>
<li><a href="readyz">/readyz</a>: first poll cycle has finished</li>
</ul></body></html>
"""


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = f"mixpeek-exporter/{__version__}"
    sys_version = ""
    timeout = 30  # idle keep-alive and slow request lines cannot hold a thread for long
    # Headers and body go out in separate sends: with Nagle on, a small body waits for the
    # client's delayed ACK (about 40 ms per keep-alive request).
    disable_nagle_algorithm = True
    endpoints: Endpoints

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http " + format, *args)

    def _send(self, status: int, body: bytes | bytearray,
              content_type: str = "text/plain; charset=utf-8",
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _route(self) -> str:
        return self.path.split("?", 1)[0]

    def _check_auth(self) -> bool:
        auth = self.endpoints.authorize
        if auth is None:
            return True
        denied = auth(self)
        if denied is None:
            return True
        status, headers, body = denied
        self._send(status, body, headers=headers)
        return False

    def do_GET(self) -> None:
        path = self._route()
        if path == "/healthz":
            self._send(200, b"ok\n")
            return
        if not self._check_auth():
            return
        if path == "/metrics":
            self._metrics()
        elif path == "/readyz":
            ok, why = self.endpoints.ready()
            self._send(200 if ok else 503, (why + "\n").encode())
        elif path == "/":
            body = LANDING.format(version=html.escape(__version__)).encode()
            self._send(200, body, "text/html; charset=utf-8")
        elif path == "/-/reload":
            self._send(405, b"use POST\n", headers={"Allow": "POST"})
        else:
            self._send(404, b"not found\n")

    do_HEAD = do_GET

    def do_POST(self) -> None:
        length = self.headers.get("Content-Length")
        if length and length.isdigit() and int(length) <= 65536:
            self.rfile.read(int(length))  # drain so keep-alive stays in sync
        elif length:
            self.close_connection = True
        if not self._check_auth():
            return
        if self._route() == "/-/reload" and self.endpoints.reload is not None:
            ok, msg = self.endpoints.reload()
            self._send(200 if ok else 500, (msg + "\n").encode())
        elif self._route() in ("/metrics", "/healthz", "/readyz", "/"):
            self._send(405, b"method not allowed\n", headers={"Allow": "GET, HEAD"})
        else:
            self._send(404, b"not found\n")

    def _other(self) -> None:
        self._send(405, b"method not allowed\n", headers={"Allow": "GET, HEAD, POST"})

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _other

    def _metrics(self) -> None:
        _, content_type = choose_encoder(self.headers.get("Accept", ""))
        openmetrics = content_type.startswith("application/openmetrics-text")
        gz = gzip_accepted(self.headers.get("Accept-Encoding", ""))
        body = self.endpoints.cache.body(openmetrics, gz)
        headers = {"Vary": "Accept, Accept-Encoding"}
        if gz:
            headers["Content-Encoding"] = "gzip"
        self._send(200, body, content_type, headers)


class MetricsServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], family: int, endpoints: Endpoints,
                 tls: Callable[[], ssl.SSLContext | None] | None = None,
                 max_connections: int = 64) -> None:
        self.address_family = family
        handler = type("BoundHandler", (Handler,), {"endpoints": endpoints})
        self._slots = threading.BoundedSemaphore(max_connections)
        # Asked per connection, so rotated certificate files apply without a restart.
        self._tls = tls
        super().__init__(address, handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = super().get_request()
        ctx = self._tls() if self._tls is not None else None
        if ctx is not None:
            # The handshake happens in the handler thread (do_handshake_on_connect=False) so
            # a slow client cannot stall the accept loop.
            sock = ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            # Over the connection cap: refuse fast instead of queueing threads without bound.
            request.close()
            return
        try:
            super().process_request(request, client_address)
        except Exception:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            if isinstance(request, ssl.SSLSocket):
                request.settimeout(Handler.timeout)
                try:
                    request.do_handshake()
                except (OSError, ssl.SSLError) as e:
                    log.debug("TLS handshake failed", extra={"fields": {"error": str(e)}})
                    self.shutdown_request(request)
                    return
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client hanging up mid-response is routine; never print tracebacks to stderr.
        log.debug("http connection error", exc_info=True)

    @property
    def port(self) -> int:
        return int(self.server_address[1])


def serve(server: MetricsServer) -> threading.Thread:
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                         name="http", daemon=True)
    t.start()
    return t
