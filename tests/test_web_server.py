"""The HTTP server in-process, over real loopback sockets: what a hostile or careless client can
make it hold, and how requests are framed.

Endpoints are plain functions here (``ready`` can be made to block, ``reload`` counts its
calls); the server, its accept loop and its handlers are the real ones. Limits are made small
(a head deadline of a second, a few handlers) so that each bound is reached quickly; every wait
is on an event (a reply, a close) with a generous timeout, never a measured duration.
"""

from __future__ import annotations

import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from exporter import __version__
from exporter.web import listener
from exporter.web.server import Endpoints, MetricsServer, serve
from tests.harness import wait_until


class Hooks:
    """What the endpoints call: ``ready`` blocks while ``hold`` is set; ``reload`` counts."""

    def __init__(self) -> None:
        self.reloads = 0
        self.hold = threading.Event()
        self.release = threading.Event()
        self.waiting = 0

    def ready(self) -> tuple[bool, str]:
        if self.hold.is_set():
            self.waiting += 1
            self.release.wait(30)
        return True, "ready"

    def reload(self) -> tuple[bool, str]:
        self.reloads += 1
        return True, "reloaded"


Start = Callable[..., MetricsServer]


@pytest.fixture
def hooks() -> Hooks:
    return Hooks()


@pytest.fixture
def start(hooks: Hooks) -> Iterator[Start]:
    servers: list[MetricsServer] = []

    def make(lifecycle: bool = True, host: str = "127.0.0.1", **kw: Any) -> MetricsServer:
        endpoints = Endpoints(cache=None, ready=hooks.ready,  # type: ignore[arg-type]
                              reload=hooks.reload if lifecycle else None)
        server = MetricsServer((host, 0), socket.AF_INET, endpoints, **kw)
        serve(server)
        servers.append(server)
        return server

    yield make
    hooks.release.set()
    for s in servers:
        s.shutdown()
        s.server_close()


def exchange(port: int, data: bytes, host: str = "127.0.0.1", timeout: float = 5.0) -> bytes:
    """Send ``data``, half-close, and read until the server closes."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


def statuses(reply: bytes) -> list[int]:
    """The status of each answer in ``reply`` (our bodies end in a newline)."""
    return [int(m) for m in re.findall(rb"(?:^|\n)HTTP/1\.1 (\d{3}) ", reply)]


def closed_by_server(s: socket.socket) -> bytes | None:
    """What the server sent before closing, or None while it keeps the connection open."""
    s.setblocking(False)
    try:
        data = s.recv(65536)
    except BlockingIOError:
        return None
    except ConnectionResetError:
        return b"<reset>"
    finally:
        s.setblocking(True)
    return data if data else b"<closed>"


GET_HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
SMUGGLED = b"POST /-/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"


# -- request framing -------------------------------------------------------------------------


def test_a_body_is_never_read_as_the_next_request(start: Start, hooks: Hooks) -> None:
    port = start().port
    smuggler = (b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                % len(SMUGGLED) + SMUGGLED)
    assert statuses(exchange(port, smuggler)) == [200]
    chunked = (b"GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               + b"%x\r\n" % len(SMUGGLED) + SMUGGLED + b"\r\n0\r\n\r\n")
    reply = exchange(port, chunked)
    assert statuses(reply) == [411] and b"Connection: close" in reply
    both = (b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + SMUGGLED)
    assert statuses(exchange(port, both)) == [411]
    assert hooks.reloads == 0
    # A body that is framed is read and dropped: the connection stays in step.
    assert statuses(exchange(port, b"POST /-/reload HTTP/1.1\r\nHost: x\r\n"
                                   b"Content-Length: 5\r\n\r\nhello" + GET_HEALTHZ)) == [200, 200]
    assert hooks.reloads == 1


@pytest.mark.parametrize(("length", "status"), [
    (b"-5", 400), (b"5, 6", 400), (b"0x10", 400), (b"99999999999999999999", 413),
    (b"%d" % (64 * 1024 + 1), 413)])
def test_unframeable_bodies_are_refused_and_the_connection_closed(
        start: Start, hooks: Hooks, length: bytes, status: int) -> None:
    reply = exchange(start().port, b"POST /-/reload HTTP/1.1\r\nHost: x\r\nContent-Length: "
                     + length + b"\r\n\r\n" + SMUGGLED)
    assert statuses(reply) == [status]
    assert hooks.reloads == 0


def test_a_request_head_is_capped_as_a_whole(start: Start) -> None:
    """50 header lines of 2 KiB: each line is fine, the head (100 KiB) is not."""
    port = start().port
    head = b"GET /healthz HTTP/1.1\r\n" + b"".join(
        b"X-%d: %s\r\n" % (i, b"a" * 2048) for i in range(50)) + b"\r\n"
    assert statuses(exchange(port, head)) == [431]
    assert statuses(exchange(port, b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n")) == [414]
    assert statuses(exchange(port, GET_HEALTHZ)) == [200]


def test_server_header_has_no_stray_space(start: Start) -> None:
    head = exchange(start().port, GET_HEALTHZ).split(b"\r\n\r\n")[0]
    assert f"\r\nServer: mixpeek-exporter/{__version__}\r\n".encode() in head + b"\r\n"
    assert not any(line.endswith((b" ", b"\t")) for line in head.split(b"\r\n")), head


# -- the lifecycle API -----------------------------------------------------------------------


def test_reload_over_http_only_with_the_lifecycle_flag(start: Start, hooks: Hooks) -> None:
    off = start(lifecycle=False).port
    for method in (b"POST", b"GET", b"PUT"):
        reply = exchange(off, method + b" /-/reload HTTP/1.1\r\nHost: x\r\n\r\n")
        assert statuses(reply) == [405], reply
        assert b"\r\nAllow:\r\n" in reply  # no method is allowed while it is off
        assert b"--web.enable-lifecycle" in reply and b"SIGHUP" in reply
    assert hooks.reloads == 0
    on = start(lifecycle=True).port
    assert statuses(exchange(on, b"POST /-/reload HTTP/1.1\r\nHost: x\r\n\r\n")) == [200]
    reply = exchange(on, b"GET /-/reload HTTP/1.1\r\nHost: x\r\n\r\n")
    assert statuses(reply) == [405] and b"\r\nAllow: POST\r\n" in reply
    assert hooks.reloads == 1


# -- slow clients ----------------------------------------------------------------------------


def test_a_trickled_request_head_is_cut_at_its_deadline(start: Start) -> None:
    """One byte every 0.2 s would reset a per-recv timeout forever; the head has a deadline."""
    port = start(head_seconds=1.0).port
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nX-Slow: ")

        def cut() -> bytes | None:
            try:
                s.sendall(b"a")
            except OSError:
                return b"<closed>"
            time.sleep(0.2)
            return closed_by_server(s)
        answer = wait_until(cut, 20, interval=0, what="the server to cut the slow head")
    assert answer.startswith(b"HTTP/1.1 408") or answer in (b"<closed>", b"<reset>"), answer


def test_a_stalled_tls_handshake_is_cut_at_the_same_deadline(start: Start,
                                                             tmp_path: Path) -> None:
    ca = trustme.CA()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    port = start(head_seconds=1.0, tls=lambda: ctx).port
    # The first bytes of a ClientHello, then one more every 0.2 s.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"\x16\x03\x01\x02\x00")

        def cut() -> bytes | None:
            try:
                s.sendall(b"\x00")
            except OSError:
                return b"<closed>"
            time.sleep(0.2)
            return closed_by_server(s)
        wait_until(cut, 20, interval=0, what="the server to cut the stalled handshake")


def test_trickling_clients_hold_no_handler(start: Start) -> None:
    """More tricklers than handlers: requests that arrive whole are still answered."""
    port = start(max_connections=2, max_waiting=64).port
    slow = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(20)]
    try:
        for s in slow:
            s.sendall(b"GET /healthz HTTP/1.1\r\nX-Slow: a")
        for _ in range(10):
            assert statuses(exchange(port, GET_HEALTHZ + b"GET /readyz HTTP/1.1\r\n\r\n"))\
                == [200, 200]
            for s in slow:
                s.sendall(b"a")
        assert all(closed_by_server(s) is None for s in slow)  # waiting, not refused
    finally:
        for s in slow:
            s.close()


def test_waiting_connections_are_bounded_the_longest_waiting_goes(start: Start) -> None:
    port = start(max_waiting=8).port
    idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(8)]
    try:
        wait_until(lambda: all(closed_by_server(s) is None for s in idle), 5,
                   what="eight idle connections held")
        late = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(3)]
        idle += late
        wait_until(lambda: all(closed_by_server(s) for s in idle[:3]), 5,
                   what="the three longest waiting closed")
        assert all(closed_by_server(s) is None for s in idle[3:])
        # A newcomer with a whole request still gets in (another waiting one makes room).
        assert statuses(exchange(port, GET_HEALTHZ)) == [200]
    finally:
        for s in idle:
            s.close()


def test_liveness_is_answered_while_every_handler_is_busy(start: Start, hooks: Hooks) -> None:
    port = start(max_connections=2).port
    hooks.hold.set()  # /readyz now blocks in its handler
    busy = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(3)]
    try:
        for s in busy:
            s.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
        wait_until(lambda: hooks.waiting == 2, 5, what="both handlers busy")
        for _ in range(5):
            assert statuses(exchange(port, GET_HEALTHZ)) == [200]
        assert hooks.waiting == 2  # the third /readyz waits for a handler, not a probe slot
        hooks.release.set()
        for s in busy:
            assert s.recv(4096).startswith(b"HTTP/1.1 200")
    finally:
        for s in busy:
            s.close()


# -- where it listens --------------------------------------------------------------------------


def _answers(host: str, port: int) -> bool:
    return statuses(exchange(port, GET_HEALTHZ, host=host)) == [200]


@pytest.mark.skipif(not socket.has_dualstack_ipv6(), reason="no IPv6 on this host")
@pytest.mark.parametrize("host", ["", "0.0.0.0", "::"])
def test_wildcard_listens_on_ipv6_and_ipv4(start: Start, host: str) -> None:
    port = start(host=host).port
    assert _answers("127.0.0.1", port)
    assert _answers("::1", port)


def test_wildcard_falls_back_to_ipv4_without_ipv6(start: Start,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(listener.socket, "has_dualstack_ipv6", lambda: False)
    server = start(host="")
    assert server.server_address[0] == "0.0.0.0"
    assert _answers("127.0.0.1", server.port)


def test_a_specific_address_listens_there_only(start: Start) -> None:
    port = start(host="127.0.0.1").port
    assert _answers("127.0.0.1", port)
    if socket.has_dualstack_ipv6():
        with pytest.raises(OSError):
            _answers("::1", port)
