"""The client against a real HTTP server on loopback, where requests-mock would hide the
transport: a gzip bomb is cut at max_response_bytes of *decoded* bytes with bounded memory, and
a key that cannot go into an HTTP header becomes a verdict, with no request sent."""

from __future__ import annotations

import gzip
import threading
import tracemalloc
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from exporter.mixpeek.client import MixpeekClient
from exporter.ratelimit import TokenBucket
from exporter.settings.schema import MixpeekConfig
from exporter.settings.secrets import Secret

KEY = "sk_live_wire_5f4e3d2c1b"
MiB = 1 << 20
# 1,024 gzip members of 1 MiB of zeros each: about 1 MiB on the wire, 1 GiB decoded.
BOMB = gzip.compress(b"\0" * MiB, 9) * 1024


class Server:
    """Answers every GET with ``body`` (and ``headers``); records the requests that arrive."""

    def __init__(self, body: bytes, headers: dict[str, str]) -> None:
        self.requests: list[dict[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests.append(dict(self.headers))
                self.send_response(200)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except OSError:  # the client hung up once it had enough
                    pass

            def log_message(self, *a: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def bomb_server() -> Iterator[Server]:
    s = Server(BOMB, {"Content-Type": "application/json", "Content-Encoding": "gzip"})
    yield s
    s.close()


@pytest.fixture
def doc_server() -> Iterator[Server]:
    s = Server(b'{"namespace_id": "ns_wire", "namespace_name": "wire"}',
               {"Content-Type": "application/json"})
    yield s
    s.close()


def client(url: str, key: str = KEY, **cfg: Any) -> MixpeekClient:
    conf = MixpeekConfig(base_url=url, max_requests_per_minute=0, max_retries=0, **cfg)
    return MixpeekClient(conf, Secret(key), TokenBucket(0))


def test_gzip_bomb_is_refused_with_bounded_memory(bomb_server: Server) -> None:
    # The declared (compressed) length passes the cap: only the decoded bytes exceed it.
    c = client(bomb_server.url, max_response_bytes=2 * MiB)
    assert len(BOMB) < 2 * MiB
    tracemalloc.start()
    try:
        r = c.get_namespace("ns_wire")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        c.close()
    assert r.reason == "invalid_response", r
    assert "exceeds max_response_bytes (2097152)" in r.message
    # The cap plus one 64 KiB read and the decoder's buffers; urllib3 before 2.6.0 inflated
    # each read whole (64 KiB of this gzip is 64 MiB of zeros).
    assert peak < 16 * MiB, f"peak {peak / MiB:.1f} MiB while reading a gzip bomb"


@pytest.mark.parametrize(("key", "says"), [
    ("\ufeff" + KEY, "character 1 is U+FEFF"),  # a UTF-8 byte-order mark from an editor
    (KEY[:10] + "é" + KEY[10:], "character 11 is U+00E9"),
    (KEY[:10] + "\n" + KEY[10:], "character 11 is U+000A"),  # http.client would quote it
    (KEY[:10] + " " + KEY[10:], "character 11 is U+0020"),
])
def test_a_key_that_cannot_be_sent_is_a_verdict_not_a_crash(doc_server: Server, key: str,
                                                            says: str) -> None:
    c = client(doc_server.url, key=key)
    try:
        r = c.get_namespace("ns_wire")
    finally:
        c.close()
    assert r.reason == "exporter_error" and r.values is None
    assert "the API key cannot be sent in an HTTP header" in r.message and says in r.message
    assert KEY[:8] not in r.message and KEY[-8:] not in r.message
    assert doc_server.requests == [], "nothing is sent with a broken key"


def test_the_same_server_answers_a_good_key(doc_server: Server) -> None:
    c = client(doc_server.url)
    try:
        r = c.get_namespace("ns_wire")
    finally:
        c.close()
    assert r.ok, r
    assert doc_server.requests[0]["Authorization"] == f"Bearer {KEY}"
