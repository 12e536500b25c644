"""The simulated API's routes: auth, the per-key rate limit, and the namespace endpoints.

API routes (SDK 1.3.783, API 0.82), each behind ``Authorization: Bearer <key>`` (401 otherwise):
``GET /v1/namespaces/{id or name}``, ``GET /v1/namespaces/{id or name}/stats``,
``POST /v1/namespaces/list``, ``GET /v1/namespaces``, ``POST /v1/namespaces/stats/batch``; and
``GET /v1/health`` without auth. ``/_sim/...`` is the control API (control.py). Every API answer
carries ``X-RateLimit-*`` headers while a rate limit is set; past it, 429 with ``Retry-After``.
"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from exporter.simulator import control, faults
from exporter.simulator.faults import envelope
from exporter.simulator.limit import Verdict
from exporter.simulator.listing import ListError, list_page
from exporter.simulator.state import SimState

_BAD_JSON = object()


class SimHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "mixpeek-simulator"
    disable_nagle_algorithm = True  # as the exporter's server: no 40 ms delayed-ACK stalls
    sys_version = ""
    state: SimState  # set on the per-server subclass (server.py)

    _api = False  # this request is an API request: statuses counted, rate-limit headers sent
    _verdict: Verdict | None = None

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        # TLS mode: the handshake runs here, in the handler thread, not in the accept loop.
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(10)
            self.request.do_handshake()
        super().setup()

    # -- sending (faults.py and control.py use these too) -------------------------------------

    def start(self, status: int, headers: dict[str, str]) -> None:
        """Status line and headers (plus the rate-limit ones on API answers), then the body."""
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        if self._api:
            with self.state.lock:
                self.state.count(str(status))
            verdict = self._verdict
            if verdict is None and self.state.limiter is not None:
                verdict = self.state.limiter.peek()  # an answer the limit did not charge
            if verdict is not None:
                for k, v in verdict.headers(time.time()).items():
                    self.send_header(k, v)
        self.end_headers()

    def send_raw(self, status: int, data: bytes, headers: dict[str, str] | None = None) -> None:
        self.start(status, {"Content-Type": "application/json",
                            "Content-Length": str(len(data)), **(headers or {})})
        self.wfile.write(data)

    def send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self.send_raw(status, json.dumps(body).encode(), headers)

    def read_json(self) -> Any:
        """The request body parsed; None when empty, ``_BAD_JSON`` when not JSON."""
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return _BAD_JSON

    # -- dispatch -----------------------------------------------------------------------------

    def _begin(self, api: bool) -> tuple[str, dict[str, list[str]]]:
        # One handler serves every request of a keep-alive connection: reset per request.
        self._api, self._verdict = api, None
        url = urlsplit(self.path)
        return url.path, parse_qs(url.query)

    def do_GET(self) -> None:
        path, query = self._begin(api=not self.path.startswith("/_sim/"))
        parts = path.split("/")
        if not self._api:
            control.handle(self, "GET", path, None)
        elif path == "/v1/health":
            self.send_json(200, {"status": "OK"})
        elif path == "/v1/namespaces":
            self._serve("list_get", lambda: self._list({}, query))
        elif len(parts) == 5 and parts[:3] == ["", "v1", "namespaces"] and parts[4] == "stats":
            self._serve("stats", lambda: self._stats_one(unquote(parts[3])))
        elif len(parts) == 4 and parts[:3] == ["", "v1", "namespaces"] and parts[3]:
            self._serve("get_namespace", lambda: self._get_namespace(unquote(parts[3])))
        else:
            self.send_json(404, envelope(404, "Route not found"))

    def do_POST(self) -> None:
        path, query = self._begin(api=not self.path.startswith("/_sim/"))
        body = self.read_json()  # always read: the connection is kept alive
        if not self._api:
            control.handle(self, "POST", path, body)
        elif path == "/v1/namespaces/list":
            self._serve("list", lambda: self._list(body, query))
        elif path == "/v1/namespaces/stats/batch":
            self._serve("stats_batch", lambda: self._stats_batch(body),
                        exists=self.state.stats_batch)
        else:
            self.send_json(404, envelope(404, "Route not found"))

    def _other(self, method: str) -> None:
        path, _ = self._begin(api=not self.path.startswith("/_sim/"))
        body = self.read_json()
        if self._api:
            self.send_json(405, envelope(405, "Method not allowed"))
        else:
            control.handle(self, method, path, body)

    def do_PUT(self) -> None:
        self._other("PUT")

    def do_PATCH(self) -> None:
        self._other("PATCH")

    def do_DELETE(self) -> None:
        self._other("DELETE")

    def _serve(self, route: str, serve: Callable[[], None], exists: bool = True) -> None:
        """Count the request, then auth, then the rate limit, then ``serve``."""
        st = self.state
        with st.lock:
            st.count(route)
            st.in_flight += 1
            st.max_in_flight = max(st.max_in_flight, st.in_flight)
        try:
            if not exists:  # an older API without this route
                self.send_json(404, envelope(404, "Route not found"))
            elif self._authorized() and self._within_limit():
                serve()
        finally:
            with st.lock:
                st.in_flight -= 1

    def _authorized(self) -> bool:
        auth = self.headers.get("Authorization")
        if auth is not None:
            with self.state.lock:
                self.state.auth_headers_seen += 1
        if auth is None:
            self.send_json(401, envelope(401, "Missing API key"))
            return False
        if auth != f"Bearer {self.state.api_key}":
            self.send_json(401, envelope(401, "Invalid API key"))
            return False
        return True

    def _within_limit(self) -> bool:
        limiter = self.state.limiter
        if limiter is None:
            return True
        self._verdict = verdict = limiter.take()
        if verdict.allowed:
            return True
        secs = verdict.retry_after
        self.send_json(429, envelope(429, "Rate limit exceeded",
                                     {"limit": verdict.limit, "window": "1m",
                                      "retry_after": secs}),
                       {"Retry-After": str(secs)})
        return False

    # -- endpoints ----------------------------------------------------------------------------

    def _get_namespace(self, ident: str) -> None:
        st = self.state
        if st.latency:
            time.sleep(st.latency)
        with st.lock:
            ns = st.lookup(ident)
            fail = ns.take_fault() if ns is not None else None
            doc = ns.document() if ns is not None else None
        if fail:
            faults.send(self, fail, doc)
        elif doc is None:
            self.send_json(404, envelope(404, "Namespace not found",
                                         {"id": ident, "resource": "namespace"}))
        else:
            self.send_json(200, doc)

    def _stats_one(self, ident: str) -> None:
        with self.state.lock:
            ns = self.state.lookup(ident)
            fail = ns.take_fault() if ns is not None else None
            stats = ns.stats() if ns is not None else None
        if fail:
            faults.send(self, fail, stats)
        elif stats is None:
            self.send_json(404, envelope(404, "Namespace not found",
                                         {"id": ident, "resource": "namespace"}))
        else:
            self.send_json(200, stats)

    def _list(self, body: Any, query: dict[str, list[str]]) -> None:
        if body is _BAD_JSON or not (body is None or isinstance(body, dict)):
            self.send_json(422, envelope(422, "the request body must be a JSON object"))
            return
        try:
            self.send_json(200, list_page(self.state, body or {}, query))
        except ListError as e:
            self.send_json(422, envelope(422, str(e)))

    def _stats_batch(self, body: Any) -> None:
        ids = body.get("namespace_ids") if isinstance(body, dict) else None
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            self.send_json(422, envelope(422, "namespace_ids must be a list of strings"))
            return
        if len(ids) > 100:
            self.send_json(422, envelope(422, "at most 100 namespace_ids per request"))
            return
        out = {}
        with self.state.lock:
            for i in ids:
                ns = self.state.namespaces.get(i)
                # Unknown ids are omitted ("namespaces the caller cannot see"); so are failing
                # ones, whose faults play out on their own endpoints.
                if ns is not None and not ns.fail:
                    out[i] = ns.stats()
        self.send_json(200, {"stats": out})
