"""HTTP endpoints: a route table (path -> methods, handler, whether it needs authorization)
served over HTTP/1.1 with keep-alive, writing bytes prepared elsewhere.

``/healthz`` (never needs auth), ``/metrics``, ``/readyz``, ``/``, the pages for people
``/status`` and ``/config`` (web.status, web.configpage), and ``POST /-/reload``, which
answers only with ``--web.enable-lifecycle`` (as in Prometheus; SIGHUP always reloads).
Connections, request heads and bodies, their deadlines and the sending of answers are
``web.listener``'s (heads are read strictly by ``web.head``); a handler here gets a whole
request and only computes its answer.
"""

from __future__ import annotations

import html
import logging
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.client import HTTPMessage
from http.server import BaseHTTPRequestHandler
from typing import Any, Protocol

from exporter import __version__
from exporter.render.cache import ExpositionCache
from exporter.web.auth import Denied
from exporter.web.configpage import config_page
from exporter.web.conn import Connection
from exporter.web.head import HeadError, Request
from exporter.web.listener import Listener
from exporter.web.negotiate import accepts_gzip, choose_format
from exporter.web.page import HEADERS, Page, PageSource
from exporter.web.status import status_page

log = logging.getLogger(__name__)

class Pieces(Protocol):
    """A body of known length written in pieces (``render.gzip.Body``)."""

    size: int

    def __iter__(self) -> Iterator[bytes]: ...

LIFECYCLE_OFF = (b"the lifecycle API is off: start the exporter with --web.enable-lifecycle to "
                 b"reload over HTTP, or send it SIGHUP\n")


@dataclass
class Endpoints:
    cache: ExpositionCache
    ready: Callable[[], tuple[bool, str]]
    # POST /-/reload; None while the lifecycle API is off (no --web.enable-lifecycle).
    reload: Callable[[], tuple[bool, str]] | None = None
    # (handler) -> None if allowed, else (status, headers, body) to send instead.
    authorize: Callable[[BaseHTTPRequestHandler], Denied | None] | None = None
    # What /status and /config show; None: those pages answer 404.
    pages: PageSource | None = None


LANDING = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Mixpeek exporter</title></head>
<body><h1>Mixpeek exporter</h1>
<p>Prometheus exporter for Mixpeek namespaces, version {version}.</p>
<ul>
<li><a href="status">/status</a>: the state of every namespace at a glance: failing first,
the last error, how old the data is</li>
<li><a href="config">/config</a>: the effective configuration (never the API key)</li>
<li><a href="metrics">/metrics</a>: the metrics</li>
<li><a href="healthz">/healthz</a>: process is alive</li>
<li><a href="readyz">/readyz</a>: first poll cycle has finished</li>
</ul>
<p>In the demo (<code>--demo</code>), the namespace <code>demo_archive</code> has no
<code>mixpeek_namespace_documents</code> series on purpose: the simulated API answers for it as
Mixpeek does when its live count timed out (<code>document_count_complete: false</code>,
<code>document_count: null</code>), and a null count is never published as 0. The metrics show
<code>mixpeek_namespace_document_count_complete 0</code> for it instead, and with the shipped
alert rules the demo fires <code>MixpeekNamespaceDocumentCountDegraded</code> once its
<code>for: 15m</code> has passed: the alert being demonstrated, not a fault.</p>
</body></html>
"""


class Handler(BaseHTTPRequestHandler):
    """The whole requests of one connection, answered one after the other until none is
    left in its buffer."""

    protocol_version = "HTTP/1.1"
    server_version = f"mixpeek-exporter/{__version__}"
    endpoints: Endpoints

    def __init__(self, conn: Connection, endpoints: Endpoints,
                 crowded: Callable[[], bool] = lambda: False) -> None:
        # Not BaseRequestHandler.__init__, which would serve the connection right away.
        self.conn = conn
        self.crowded = crowded  # True: other connections wait for a handler
        self.request = self.connection = conn.sock
        self.client_address = conn.addr
        self.wfile = conn  # type: ignore[assignment]
        self.endpoints = endpoints
        self.close_connection = True

    def serve(self) -> bool:
        """Answer ``conn.request``, then each whole request already behind it or arriving at
        once; True to give the connection back to the accept loop (which sends what the
        client has not taken yet), False to close it after the answers."""
        conn = self.conn
        conn.sock.setblocking(False)
        request = conn.request
        while request is not None:
            self._answer(request)
            if self.close_connection:
                return False
            if conn.single or not conn.flush() or self.crowded():
                # One answer in a probe place; the client is slow to read; or others wait
                # for a handler: this connection's next request goes to the back of the line.
                return True
            try:
                request = conn.await_request()
            except HeadError:
                return True  # the accept loop answers it, after what was sent before
        return True

    def _answer(self, request: Request) -> None:
        self.command, self.path = request.method, request.target
        self.request_version = request.version
        self.requestline = f"{request.method} {request.target} {request.version}"
        self.headers = HTTPMessage()
        for name, value in request.fields:
            self.headers[name] = value
        self.close_connection = not request.keep_alive
        method = getattr(self, "do_" + request.method, None)
        if method is None:
            self._send(501, f"method {request.method} is not supported\n".encode())
        else:
            method()

    def version_string(self) -> str:
        return self.server_version  # the base class appends a space and sys_version

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http " + format, *args)

    def send_header(self, keyword: str, value: str) -> None:
        if value:
            super().send_header(keyword, value)
        else:  # an empty value (Allow) without a trailing space
            self._headers_buffer.append(f"{keyword}:\r\n".encode("latin-1"))

    def _send(self, status: int, body: bytes | bytearray | Pieces,
              content_type: str = "text/plain; charset=utf-8",
              headers: dict[str, str] | None = None) -> None:
        whole = isinstance(body, bytes | bytearray)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body) if whole else body.size))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.conn.send_body(body)

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

    def _dispatch(self) -> None:
        path = self.path.split("?", 1)[0]
        route = ROUTES.get(path)
        if (route is None or not route.public) and not self._check_auth():
            return
        if route is None:
            self._send(404, b"not found\n")
        elif route.lifecycle and self.endpoints.reload is None:
            # Allow is empty: the resource takes no method while lifecycle is off (RFC 9110).
            self._send(405, LIFECYCLE_OFF, headers={"Allow": ""})
        elif self.command not in route.methods:
            self._send(405, b"method not allowed\n", headers={"Allow": ", ".join(route.methods)})
        else:
            route.handler(self)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _dispatch

    # -- the endpoints ----------------------------------------------------------------------

    def _healthz(self) -> None:
        self._send(200, b"ok\n")

    def _readyz(self) -> None:
        ok, why = self.endpoints.ready()
        self._send(200 if ok else 503, (why + "\n").encode())

    def _landing(self) -> None:
        body = LANDING.format(version=html.escape(__version__)).encode()
        self._send(200, body, "text/html; charset=utf-8", HEADERS)

    def _page(self, build: Callable[[PageSource, str], Page]) -> None:
        if self.endpoints.pages is None:
            self._send(404, b"not found\n")
            return
        page = build(self.endpoints.pages, self.path.partition("?")[2])
        self._send(page.status, page.body, page.content_type, page.headers)

    def _status(self) -> None:
        self._page(status_page)

    def _config(self) -> None:
        self._page(config_page)

    def _reload(self) -> None:
        assert self.endpoints.reload is not None  # the route checks it
        ok, msg = self.endpoints.reload()
        self._send(200 if ok else 500, (msg + "\n").encode())

    def _metrics(self) -> None:
        openmetrics, content_type = choose_format(self.headers.get("Accept", ""))
        gz = accepts_gzip(self.headers.get("Accept-Encoding", ""))
        body = self.endpoints.cache.body(openmetrics, gz)
        headers = {"Vary": "Accept, Accept-Encoding"}
        if gz:
            headers["Content-Encoding"] = "gzip"
        self._send(200, body, content_type, headers)


@dataclass(frozen=True)
class Route:
    methods: tuple[str, ...]
    handler: Callable[[Handler], None]
    public: bool = False  # answered without authorization (liveness probes)
    lifecycle: bool = False  # changes the exporter: only with --web.enable-lifecycle


READ = ("GET", "HEAD")
ROUTES: dict[str, Route] = {
    "/healthz": Route(READ, Handler._healthz, public=True),
    "/metrics": Route(READ, Handler._metrics),
    "/readyz": Route(READ, Handler._readyz),
    "/": Route(READ, Handler._landing),
    "/status": Route(READ, Handler._status),
    "/config": Route(READ, Handler._config),
    "/-/reload": Route(("POST",), Handler._reload, lifecycle=True),
}


def is_probe(request: Request) -> bool:
    """A liveness probe: a read of a public route (``/healthz``) without a body."""
    route = ROUTES.get(request.path)
    return route is not None and route.public and request.method in READ \
        and request.body_length == 0


class MetricsServer(Listener):
    """The listener with these endpoints. ``max_connections`` bounds requests handled at once
    (threads); connections waiting for a request, or for the client to read an answer, are
    bounded apart (``max_waiting``)."""

    def __init__(self, address: tuple[str, int], family: int, endpoints: Endpoints,
                 tls: Callable[[], ssl.SSLContext | None] | None = None,
                 max_connections: int = 16,
                 **limits: Any) -> None:
        self.endpoints = endpoints
        super().__init__(address, family, self._serve_connection, tls, max_connections,
                         probe=is_probe, **limits)

    def _serve_connection(self, conn: Connection) -> bool:
        return Handler(conn, self.endpoints, self.crowded).serve()


def serve(server: MetricsServer) -> threading.Thread:
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                         name="http", daemon=True)
    t.start()
    return t
