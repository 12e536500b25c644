"""A small, faithful fake of the Mixpeek API, for demo mode and the tests.

It speaks what the exporter relies on: Bearer auth, the error envelope
(``{"success": false, "status", "error": {"type", "message", "details"}}``), 404 for unknown
namespaces, 429 with ``Retry-After`` and ``X-RateLimit-*`` headers, Get Namespace, the paginated
list endpoint (both pagination shapes) and stats/batch. Document counts grow over time.

A control API under ``/_sim/`` (no auth; the simulator only ever listens on loopback) lets tests
change counts, inject faults and delete namespaces while the exporter runs::

    python -m exporter.simulator --listen 127.0.0.1:0 --api-key sk_test
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import socket
import ssl
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

DEMO_KEY = "sk_demo_simulated_key_0000"

_ERROR_TYPES = {400: "BadRequestError", 401: "UnauthorizedError", 403: "ForbiddenError",
                404: "NotFoundError", 409: "AlreadyExistsError", 422: "ValidationError",
                429: "TooManyRequestsError", 500: "InternalServerError",
                502: "BadGatewayError", 503: "InferenceServiceUnavailableError"}


def envelope(status: int, message: str, details: dict[str, Any] | None = None,
             kind: str | None = None) -> dict[str, Any]:
    return {"success": False, "status": status,
            "error": {"type": kind or _ERROR_TYPES.get(status, "Error"), "message": message,
                      "details": details}}


def make_namespace(ns_id: str, name: str, documents: int | None = 1000,
                   extractors: int = 1, tier: str = "shared") -> dict[str, Any]:
    return {
        "namespace_id": ns_id,
        "namespace_name": name,
        "description": f"Simulated namespace {name}",
        "namespace_type": "standard",
        "infrastructure": {"autoscaling_enabled": True, "compute_tier": tier,
                           "max_concurrent_jobs": 10},
        "cluster_id": None,
        "feature_extractors": [
            {"feature_extractor_name": f"extractor_{i}", "version": "v1",
             "feature_extractor_id": f"fe_{i}", "params": {}} for i in range(extractors)],
        "payload_indexes": [{"field_name": "title", "type": "text", "is_protected": False}],
        "document_count": documents,
        "document_count_complete": documents is not None,
        "bucket_count": 3,
        "collection_count": 2,
        "object_count": 250,
        "auto_create_indexes": False,
        "vector_inference_map": {},
        "created_at": "2026-01-15T09:30:00Z",
        "updated_at": "2026-11-01T12:00:00Z",
    }


def default_namespaces(n: int = 3, seed: int = 0) -> list[dict[str, Any]]:
    demo = [
        make_namespace("ns_demo0001", "demo_catalog", 12_000, extractors=2),
        make_namespace("ns_demo0002", "demo_media", 480, tier="dedicated_cpu"),
        make_namespace("ns_demo0003", "demo_archive", None),
    ]
    demo[2]["cluster_id"] = "iclstr_demo"
    out = demo[:n]
    rnd = random.Random(seed)
    for i in range(len(out), n):
        out.append(make_namespace(f"ns_{i:08d}", f"sim_namespace_{i:06d}",
                                  rnd.randint(0, 1_000_000)))
    return out


class _Entry:
    __slots__ = ("doc", "fail", "growth", "since")

    def __init__(self, doc: dict[str, Any], growth: float = 0.0) -> None:
        self.doc = doc
        self.fail: dict[str, Any] | None = None
        self.growth = growth
        self.since = time.monotonic()

    def rendered(self) -> dict[str, Any]:
        doc = copy.deepcopy(self.doc)
        if self.growth and isinstance(doc.get("document_count"), int):
            doc["document_count"] += int(self.growth * (time.monotonic() - self.since))
        return doc


class SimState:
    def __init__(self, api_key: str, namespaces: list[dict[str, Any]], rate_limit_rpm: float = 0,
                 latency_ms: float = 0, list_shape: str = "schema",
                 stats_batch: bool = True) -> None:
        self.api_key = api_key
        # Re-entrant: handlers that hold it also send responses, which count under it.
        self.lock = threading.RLock()
        self.entries: dict[str, _Entry] = {}
        self.deleted: set[str] = set()
        for doc in namespaces:
            self.entries[doc["namespace_id"]] = _Entry(doc)
        self.rate_limit_rpm = rate_limit_rpm
        self.latency = latency_ms / 1000.0
        self.list_shape = list_shape
        self.stats_batch = stats_batch
        self.requests: dict[str, int] = {}
        self.auth_headers_seen = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self._tokens = rate_limit_rpm / 60.0 * 5 if rate_limit_rpm else 0.0
        self._stamp = time.monotonic()

    def lookup(self, ident: str) -> _Entry | None:
        e = self.entries.get(ident)
        if e is not None:
            return e
        for e in self.entries.values():
            if e.doc.get("namespace_name") == ident:
                return e
        return None

    def count(self, key: str) -> None:
        self.requests[key] = self.requests.get(key, 0) + 1

    def take_token(self) -> tuple[bool, float, float]:
        """(allowed, remaining, retry_after) under the per-key requests-per-minute limit."""
        if not self.rate_limit_rpm:
            return True, -1, 0.0
        rate = self.rate_limit_rpm / 60.0
        cap = max(1.0, rate * 5)
        now = time.monotonic()
        self._tokens = min(cap, self._tokens + (now - self._stamp) * rate)
        self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True, self._tokens, 0.0
        return False, 0.0, (1.0 - self._tokens) / rate


class SimHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "mixpeek-simulator"
    disable_nagle_algorithm = True  # as the exporter's server: no 40 ms delayed-ACK stalls
    sys_version = ""
    state: SimState

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        # TLS mode: the handshake runs here, in the handler thread, not in the accept loop.
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(10)
            self.request.do_handshake()
        super().setup()

    # -- plumbing -------------------------------------------------------------------------

    def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        with self.state.lock:
            self.state.count(str(status))

    def _body(self) -> Any:
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return None

    def _authorized(self) -> bool:
        auth = self.headers.get("Authorization")
        if auth is not None:
            with self.state.lock:
                self.state.auth_headers_seen += 1
        if auth is None:
            self._json(401, envelope(401, "Missing API key"))
            return False
        if auth != f"Bearer {self.state.api_key}":
            self._json(401, envelope(401, "Invalid API key"))
            return False
        return True

    def _rate_limited(self) -> bool:
        with self.state.lock:
            ok, remaining, retry = self.state.take_token()
        self._rl_headers = {}
        if self.state.rate_limit_rpm:
            self._rl_headers = {"X-RateLimit-Limit": f"{self.state.rate_limit_rpm:g}",
                                "X-RateLimit-Remaining": str(int(max(remaining, 0))),
                                "X-RateLimit-Window": "60"}
        if ok:
            return False
        secs = max(1, int(retry + 0.999))
        self._json(429, envelope(429, "Rate limit exceeded",
                                 {"limit": self.state.rate_limit_rpm, "window": "1m",
                                  "retry_after": secs}),
                   {"Retry-After": str(secs), **self._rl_headers})
        return True

    # -- API ------------------------------------------------------------------------------

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path.startswith("/_sim/"):
            self._control("GET", path)
            return
        if path.startswith("/v1/namespaces/"):
            ident = unquote(path[len("/v1/namespaces/"):])
            self._get_namespace(ident)
            return
        if path == "/v1/health":
            self._json(200, {"status": "OK"})
            return
        self._json(404, envelope(404, "Route not found"))

    def _get_namespace(self, ident: str) -> None:
        with self.state.lock:
            self.state.count("get_namespace")
            self.state.in_flight += 1
            self.state.max_in_flight = max(self.state.max_in_flight, self.state.in_flight)
        try:
            if not self._authorized() or self._rate_limited():
                return
            if self.state.latency:
                time.sleep(self.state.latency)
            with self.state.lock:
                entry = self.state.lookup(ident)
                fail = dict(entry.fail) if entry is not None and entry.fail else None
                doc = entry.rendered() if entry is not None else None
                if fail and isinstance(fail.get("count"), int):
                    entry.fail["count"] -= 1  # type: ignore[union-attr]
                    if entry.fail["count"] <= 0:  # type: ignore[union-attr]
                        entry.fail = None  # type: ignore[union-attr]
            if fail:
                self._fault(fail, doc)
                return
            if doc is None:
                self._json(404, envelope(404, "Namespace not found",
                                         {"id": ident, "resource": "namespace"}))
                return
            self._json(200, doc, self._rl_headers)
        finally:
            with self.state.lock:
                self.state.in_flight -= 1

    def _fault(self, fail: dict[str, Any], doc: dict[str, Any] | None) -> None:
        mode = fail.get("mode")
        status = int(fail.get("status", 500))
        if mode is None:
            headers = {}
            if fail.get("retry_after") is not None:
                headers["Retry-After"] = str(fail["retry_after"])
            if status == 422 and fail.get("shape") == "fastapi":
                body: Any = {"detail": [{"loc": ["path", "namespace_identifier"],
                                         "msg": "field required", "type": "value_error"}]}
            elif status == 422:
                body = envelope(422, "Validation failed", {"validation_errors": [
                    {"type": "value_error", "location": "namespace_identifier",
                     "message": "invalid identifier"}]})
            elif status == 403 and fail.get("kind") == "quota":
                body = envelope(403, "Quota exceeded",
                                {"resource": "namespaces", "current": 2, "limit": 1,
                                 "tier": "free"}, kind="QuotaExceededError")
            else:
                body = envelope(status, fail.get("message", "Simulated failure"))
            self._json(status, body, headers)
            return
        if mode == "hang":
            time.sleep(float(fail.get("seconds", 60)))
            self.close_connection = True
            return
        if mode == "reset":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "5000")
            self.end_headers()
            self.wfile.write(b'{"namespace_name": "par')
            self.wfile.flush()
            # SO_LINGER 0: close with RST, as a crashed proxy would.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.close_connection = True
            return
        if mode == "drip":
            data = json.dumps(doc or {"namespace_name": "drip"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            interval = float(fail.get("interval", 0.5))
            for b in data:
                self.wfile.write(bytes([b]))
                self.wfile.flush()
                time.sleep(interval)
            return
        if mode == "invalid_json":
            raw = b'{"namespace_name": "broken", "document_count": 12'
            self._raw(200, raw)
            return
        if mode == "wrong_shape":
            self._raw(200, json.dumps([1, 2, 3]).encode())
            return
        if mode == "wrong_types":
            bad = dict(doc or {}, document_count="12", namespace_name="x")
            self._raw(200, json.dumps(bad).encode())
            return
        if mode == "huge" and fail.get("chunked"):
            # No Content-Length: the client can only find out by counting what it reads.
            size = int(fail.get("bytes", 5 * 1024 * 1024))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b"x" * 65536
            sent = 0
            try:
                self.wfile.write(b'd\r\n{"padding": "\r\n')
                while sent < size:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    sent += len(chunk)
                self.wfile.write(b"0\r\n\r\n")
            except OSError:
                pass  # the client gave up at its size cap, as it should
            self.close_connection = True
            return
        if mode == "huge":
            size = int(fail.get("bytes", 5 * 1024 * 1024))
            pad = "x" * size
            self._raw(200, json.dumps(dict(doc or {}, padding=pad)).encode())
            return
        if mode == "redirect":
            self.send_response(302)
            self.send_header("Location", str(fail.get("location", "http://127.0.0.2:9/")))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self._json(500, envelope(500, f"unknown simulated fault {mode!r}"))

    def _raw(self, status: int, data: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        if path.startswith("/_sim/"):
            self._control("POST", path)
            return
        body = self._body()
        if path == "/v1/namespaces/list":
            with self.state.lock:
                self.state.count("list")
            if not self._authorized() or self._rate_limited():
                return
            self._list(body if isinstance(body, dict) else {})
            return
        if path == "/v1/namespaces/stats/batch":
            with self.state.lock:
                self.state.count("stats_batch")
            if not self.state.stats_batch:
                self._json(404, envelope(404, "Route not found"))
                return
            if not self._authorized() or self._rate_limited():
                return
            self._stats(body)
            return
        self._json(404, envelope(404, "Route not found"))

    def _list(self, body: dict[str, Any]) -> None:
        q = parse_qs(urlsplit(self.path).query)
        limit = int(body.get("limit") or q.get("limit", ["100"])[0])
        limit = max(1, min(limit, 1000))
        cursor = body.get("cursor") or q.get("cursor", [None])[0]
        offset = int(body.get("offset") or q.get("offset", ["0"])[0] or 0)
        if cursor:
            try:
                offset = int(cursor.removeprefix("c_"))
            except ValueError:
                self._json(422, envelope(422, "invalid cursor"))
                return
        with self.state.lock:
            docs = [e.rendered() for _, e in sorted(self.state.entries.items())]
        page = docs[offset: offset + limit]
        more = offset + limit < len(docs)
        if self.state.list_shape == "legacy":
            pagination: dict[str, Any] = {"has_more": more, "limit": limit, "skip": offset}
        else:
            pagination = {"total": None, "page": offset // limit + 1, "page_size": limit,
                          "total_pages": None, "next_page": None, "previous_page": None,
                          "next_cursor": f"c_{offset + limit}" if more else None}
        self._json(200, {"results": page, "pagination": pagination, "total_count": len(docs),
                         "stats": None}, self._rl_headers)

    def _stats(self, body: Any) -> None:
        ids = body.get("namespace_ids") if isinstance(body, dict) else None
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            self._json(422, envelope(422, "namespace_ids must be a list of strings"))
            return
        if len(ids) > 100:
            self._json(422, envelope(422, "at most 100 namespace_ids per request"))
            return
        out = {}
        with self.state.lock:
            for i in ids:
                e = self.state.entries.get(i)
                if e is None or e.fail:
                    continue
                d = e.rendered()
                out[i] = {"namespace_id": i, "document_count": d.get("document_count"),
                          "document_count_complete": d.get("document_count") is not None,
                          "bucket_count": d.get("bucket_count"),
                          "collection_count": d.get("collection_count"),
                          "object_count": d.get("object_count")}
        self._json(200, {"stats": out}, self._rl_headers)

    # -- control API ----------------------------------------------------------------------

    def do_PUT(self) -> None:
        self._control("PUT", urlsplit(self.path).path)

    def do_PATCH(self) -> None:
        self._control("PATCH", urlsplit(self.path).path)

    def do_DELETE(self) -> None:
        self._control("DELETE", urlsplit(self.path).path)

    def _control(self, method: str, path: str) -> None:
        st = self.state
        body = self._body() if method in ("POST", "PUT", "PATCH") else None
        parts = [unquote(p) for p in path.split("/")[2:]]
        if method == "GET" and parts == ["state"]:
            with st.lock:
                out = {"namespaces": {k: e.rendered() for k, e in st.entries.items()},
                       "faults": {k: e.fail for k, e in st.entries.items() if e.fail},
                       "requests": dict(st.requests),
                       "auth_headers_seen": st.auth_headers_seen,
                       "max_in_flight": st.max_in_flight}
            self._json(200, out)
            return
        if method == "POST" and parts == ["reset"]:
            with st.lock:
                st.requests.clear()
                st.max_in_flight = 0
                st.auth_headers_seen = 0
            self._json(200, {"ok": True})
            return
        if method == "POST" and parts == ["config"] and isinstance(body, dict):
            with st.lock:
                if "rate_limit_rpm" in body:
                    st.rate_limit_rpm = float(body["rate_limit_rpm"])
                if "latency_ms" in body:
                    st.latency = float(body["latency_ms"]) / 1000.0
                if "stats_batch" in body:
                    st.stats_batch = bool(body["stats_batch"])
                if "list_shape" in body:
                    st.list_shape = str(body["list_shape"])
                if "api_key" in body:
                    st.api_key = str(body["api_key"])
            self._json(200, {"ok": True})
            return
        if len(parts) == 2 and parts[0] == "namespaces":
            self._control_namespace(method, parts[1], body)
            return
        self._json(404, {"error": f"no control route {method} {path}"})

    def _control_namespace(self, method: str, ident: str, body: Any) -> None:
        st = self.state
        with st.lock:
            entry = st.lookup(ident)
            if method == "DELETE":
                if entry is None:
                    self._json(404, {"error": "no such namespace"})
                    return
                del st.entries[entry.doc["namespace_id"]]
                self._json(200, {"deleted": ident})
                return
            if not isinstance(body, dict):
                self._json(400, {"error": "JSON object body required"})
                return
            if method == "PUT":
                doc = dict(body)
                doc.setdefault("namespace_id", ident)
                st.entries[doc["namespace_id"]] = _Entry(doc)
                self._json(200, doc)
                return
            if method == "PATCH":
                if entry is None:
                    self._json(404, {"error": "no such namespace"})
                    return
                special = {k: body.pop(k) for k in list(body) if k.startswith("_")}
                if "document_count" in body or "_documents_per_second" in special:
                    # Freeze growth so far into the base count, then apply the change.
                    cur = entry.rendered().get("document_count")
                    entry.doc["document_count"] = cur
                    entry.since = time.monotonic()
                entry.doc.update(body)
                if "_fail" in special:
                    entry.fail = special["_fail"]
                if "_documents_per_second" in special:
                    entry.growth = float(special["_documents_per_second"])
                self._json(200, entry.rendered())
                return
        self._json(405, {"error": f"{method} not supported here"})


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
    """The fake API on a loopback port, in a background thread."""

    def __init__(self, api_key: str = DEMO_KEY, namespaces: list[dict[str, Any]] | None = None,
                 **kwargs: Any) -> None:
        self.state = SimState(api_key, namespaces or default_namespaces(), **kwargs)
        self._server: ThreadingHTTPServer | None = None

    def start(self, host: str = "127.0.0.1", port: int = 0, certfile: str | None = None,
              keyfile: str | None = None) -> str:
        handler = type("Handler", (SimHandler,), {"state": self.state})
        server: ThreadingHTTPServer
        if certfile is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(certfile, keyfile)
            tls = _TLSServer((host, port), handler)
            tls.ssl_context = ctx
            server = tls
        else:
            server = ThreadingHTTPServer((host, port), handler)
        server.daemon_threads = True
        self._server = server
        threading.Thread(target=server.serve_forever, name="simulator", daemon=True).start()
        return self.url

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        scheme = "https" if isinstance(self._server, _TLSServer) else "http"
        return f"{scheme}://{host}:{port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def grow(self, rates: dict[str, float]) -> None:
        with self.state.lock:
            for ident, rate in rates.items():
                e = self.state.lookup(ident)
                if e is not None:
                    e.growth = rate


def _parse_listen(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if host not in ("127.0.0.1", "localhost", "::1", "[::1]"):
        raise argparse.ArgumentTypeError("the simulator listens on loopback only")
    return host.strip("[]"), int(port)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m exporter.simulator",
                                 description="Fake Mixpeek API for demos and tests.")
    ap.add_argument("--listen", type=_parse_listen, default=("127.0.0.1", 0),
                    help="loopback HOST:PORT (default 127.0.0.1:0, a free port)")
    ap.add_argument("--api-key", default=DEMO_KEY, help="the Bearer key it accepts")
    ap.add_argument("--namespaces", type=int, default=3, help="how many namespaces to serve")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rate-limit-rpm", type=float, default=0,
                    help="requests per minute before 429 (0: no limit)")
    ap.add_argument("--latency-ms", type=float, default=0, help="delay per Get Namespace")
    ap.add_argument("--list-shape", choices=["schema", "legacy"], default="schema")
    ap.add_argument("--no-stats-batch", action="store_true",
                    help="answer 404 on stats/batch, like an older API")
    ap.add_argument("--grow", type=float, default=0.0,
                    help="documents per second added to every namespace")
    ap.add_argument("--ready-file", type=Path, help="write the URL here once listening")
    ap.add_argument("--tls-cert", help="serve HTTPS with this PEM certificate (chain)")
    ap.add_argument("--tls-key", help="the PEM key for --tls-cert")
    args = ap.parse_args(argv)
    sim = Simulator(args.api_key, default_namespaces(args.namespaces, args.seed),
                    rate_limit_rpm=args.rate_limit_rpm, latency_ms=args.latency_ms,
                    list_shape=args.list_shape, stats_batch=not args.no_stats_batch)
    if args.grow:
        sim.grow({k: args.grow for k in sim.state.entries})
    url = sim.start(*args.listen, certfile=args.tls_cert, keyfile=args.tls_key)
    print(f"listening on {url}", flush=True)
    if args.ready_file:
        args.ready_file.write_text(url)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
