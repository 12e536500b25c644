"""The simulated API on a loopback port, in a background thread (HTTP, or HTTPS for TLS tests)."""

from __future__ import annotations

import socket
import ssl
import threading
from http.server import ThreadingHTTPServer
from typing import Any

from exporter.simulator.handler import SimHandler
from exporter.simulator.state import DEMO_KEY, SimState, default_namespaces


class _TLSServer(ThreadingHTTPServer):
    """HTTPS for tests of the exporter's TLS checks (e.g. an untrusted certificate)."""

    ssl_context: ssl.SSLContext

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = super().get_request()
        return self.ssl_context.wrap_socket(sock, server_side=True,
                                            do_handshake_on_connect=False), addr

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # failed handshakes are the point of TLS tests; no tracebacks


class Simulator:
    """The fake API. ``kwargs`` go to ``SimState`` (rate_limit_rpm, latency_ms, list_shape,
    stats_batch); ``namespaces`` defaults to the three demo namespaces."""

    def __init__(self, api_key: str = DEMO_KEY, namespaces: list[dict[str, Any]] | None = None,
                 **kwargs: Any) -> None:
        if namespaces is None:
            namespaces = default_namespaces()
        self.state = SimState(api_key, namespaces, **kwargs)
        self._server: ThreadingHTTPServer | None = None

    def start(self, host: str = "127.0.0.1", port: int = 0, certfile: str | None = None,
              keyfile: str | None = None) -> str:
        """Listen on ``host:port`` (0: a free port) and serve; returns the base URL."""
        ctx = None
        if certfile is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(certfile, keyfile)
        base = ThreadingHTTPServer if ctx is None else _TLSServer
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        server_cls = type("SimServer", (base,), {"address_family": family})
        handler = type("Handler", (SimHandler,), {"state": self.state})
        server = server_cls((host, port), handler)
        if isinstance(server, _TLSServer) and ctx is not None:
            server.ssl_context = ctx
        server.daemon_threads = True
        self._server = server
        threading.Thread(target=server.serve_forever, name="simulator", daemon=True).start()
        return self.url

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        scheme = "https" if isinstance(self._server, _TLSServer) else "http"
        shown = f"[{host}]" if ":" in str(host) else host
        return f"{scheme}://{shown}:{port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def grow(self, rates: dict[str, float]) -> None:
        """Documents per second added to each namespace (by id or name)."""
        with self.state.lock:
            for ident, rate in rates.items():
                ns = self.state.lookup(ident)
                if ns is not None:
                    ns.freeze_growth()
                    ns.growth = rate
