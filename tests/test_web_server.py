"""The HTTP server in-process, over real loopback sockets: what a hostile or careless client can
make it hold, and how requests are framed.

Endpoints are plain functions here (``ready`` can be made to block, ``reload`` counts its
calls); the server, its accept loop and its handlers are the real ones. Limits are made small
(a head deadline of a second, a few handlers) so that each bound is reached quickly; every wait
is on an event (a reply, a close) with a generous timeout, never a measured duration.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trustme

from exporter import __version__
from exporter.web import bind
from exporter.web.listener import PROBE_SLOTS
from exporter.web.server import MetricsServer
from tests.harness import wait_until
from tests.web_harness import (
    GET_HEALTHZ,
    GET_READYZ,
    SMUGGLED,
    Hooks,
    Servers,
    answer,
    closed_by_server,
    connect,
    exchange,
    statuses,
)

Start = Callable[..., MetricsServer]


@pytest.fixture
def hooks() -> Hooks:
    return Hooks()


@pytest.fixture
def start(hooks: Hooks) -> Iterator[Start]:
    with Servers(hooks) as servers:
        yield servers.make


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


L = len(SMUGGLED)
CHUNKED = b"%x\r\n" % L + SMUGGLED + b"\r\n0\r\n\r\n"
GET = b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
# (what a front proxy may frame differently, status, what the answer names). Each once made
# the server answer twice and run the smuggled reload (attack probe p08).
AMBIGUOUS = {
    "space before the colon": (GET + b"Content-Length : %d\r\n\r\n" % L + SMUGGLED, 400,
                               b"whitespace between header field 'Content-Length'"),
    "tab before the colon": (GET + b"Content-Length\t: %d\r\n\r\n" % L + SMUGGLED, 400,
                             b"whitespace between header field"),
    "Transfer-Encoding with a space before the colon":
        (GET + b"Transfer-Encoding : chunked\r\n\r\n" + CHUNKED, 400, b"whitespace"),
    "obs-fold continuing a field": (GET + b"X-A: 1\r\n Content-Length: %d\r\n\r\n" % L
                                    + SMUGGLED, 400, b"starts with whitespace"),
    "obs-fold holding Transfer-Encoding's value":
        (GET + b"Transfer-Encoding:\r\n chunked\r\n\r\n" + CHUNKED, 400, b"starts with"),
    "a tab-indented line": (GET + b"\tContent-Length: %d\r\n\r\n" % L + SMUGGLED, 400,
                            b"starts with whitespace"),
    "a bare CR inside a line": (b"GET /healthz HTTP/1.1\r\nHost: x\rContent-Length: %d\r\n\r\n"
                                % L + SMUGGLED, 400, b"control character"),
    "NUL after the value": (GET + b"Content-Length: %d\x00\r\n\r\n" % L + SMUGGLED, 400,
                            b"control character"),
    "NUL in the name": (GET + b"Content-Length\x00: %d\r\n\r\n" % L + SMUGGLED, 400,
                        b"is not a token"),
    "HTTP/1.0 keep-alive, space before the colon":
        (b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length : %d\r\n\r\n"
         % L + SMUGGLED, 400, b"whitespace"),
    "two Content-Length fields, same value":
        (GET + b"content-length: %d\r\nContent-Length: %d\r\n\r\n" % (L, L) + SMUGGLED, 400,
         b"more than one Content-Length"),
    "two Content-Length fields, different values":
        (GET + b"Content-Length: 0\r\nContent-Length: %d\r\n\r\n" % L + SMUGGLED, 400,
         b"more than one Content-Length"),
    "a coding that is not chunked": (GET + b"Transfer-Encoding: xchunked\r\nContent-Length: %d"
                                     b"\r\n\r\n" % L + SMUGGLED, 411, b"Transfer-Encoding"),
    "identity coding, lower case": (GET + b"transfer-encoding: identity\r\n\r\n" + SMUGGLED,
                                    411, b"Transfer-Encoding"),
}


@pytest.mark.parametrize("case", list(AMBIGUOUS))
def test_ambiguous_framing_is_refused_and_the_connection_closed(start: Start, hooks: Hooks,
                                                               case: str) -> None:
    data, status, says = AMBIGUOUS[case]
    reply = exchange(start().port, data)
    assert statuses(reply) == [status], reply
    head, _, body = reply.partition(b"\r\n\r\n")
    assert b"\r\nConnection: close" in head and says in body, reply
    assert hooks.reloads == 0


def test_bare_lf_line_ends_frame_the_same_body(start: Start, hooks: Hooks) -> None:
    """RFC 9112 lets a server take LF alone as a line end: the body is still a body."""
    data = b"GET /healthz HTTP/1.1\nHost: x\nContent-Length: %d\n\n" % L + SMUGGLED
    assert statuses(exchange(start().port, data)) == [200]
    assert hooks.reloads == 0


@pytest.mark.parametrize(("data", "status"), [
    (b"GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),  # the HTTP/2 connection preface
    (b"GET /healthz HTTP/0.9\r\n\r\n", 505),
    (b"GET /healthz HTTP/x.y\r\nHost: x\r\n\r\n", 400),
    (b"GET /healthz\r\n\r\n", 400),  # HTTP/0.9's request line
    (b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03", 400),  # a TLS hello on plain HTTP
])
def test_other_protocols_get_an_http_1_1_status_line(start: Start, data: bytes,
                                                     status: int) -> None:
    """Once answered HTTP/0.9 style: an HTML page without a status line."""
    with connect(start().port) as s:
        s.sendall(data)  # no half-close: the answer must not wait for more input
        reply = answer(s)
    assert reply.startswith(b"HTTP/1.1 %d " % status), reply
    assert b"\r\nConnection: close\r\n" in reply


def test_expect_100_continue_is_answered_before_the_body(start: Start) -> None:
    with connect(start().port) as s:
        s.sendall(b"POST /-/reload HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                  b"Content-Length: 5\r\n\r\n")
        assert s.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(b"hello" + GET_HEALTHZ)
        assert statuses(rest(s)) == [200, 200]


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


def slow_reader(port: int, data: bytes) -> socket.socket:
    """A client with the smallest receive buffer that sends ``data`` and never reads."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)
    s.settimeout(5)
    s.connect(("127.0.0.1", port))
    s.sendall(data)
    return s


def test_clients_that_never_read_their_answers_hold_no_handler(start: Start,
                                                               hooks: Hooks) -> None:
    """Attack probe p06: clients pipelining requests for a large answer and never reading it
    held a handler each (in sendall, 30 s per request), probe places included for those that
    started with GET /healthz; then neither a probe nor a scrape was answered."""
    hooks.body = "r" * (1 << 20)
    handlers = 2
    port = start(max_connections=handlers).port
    held = [slow_reader(port, (GET_HEALTHZ if i < PROBE_SLOTS else b"") + GET_READYZ * 20)
            for i in range(handlers + PROBE_SLOTS + 4)]
    try:
        wait_until(lambda: hooks.calls >= len(held), 10,
                   what="an answer under way to every client that does not read")
        for _ in range(3):
            assert statuses(exchange(port, GET_HEALTHZ)) == [200]
            reply = exchange(port, GET_READYZ)
            assert statuses(reply) == [200] and reply.endswith(hooks.body.encode() + b"\n")
    finally:
        for s in held:
            s.close()


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_a_slow_reader_gets_every_byte_of_its_answers(start: Start, hooks: Hooks,
                                                      tls: bool) -> None:
    """What the client does not take at once is sent by the accept loop as it reads: the
    answers arrive whole and in order, over TLS too."""
    hooks.body = "".join(f"{i:07d}\n" for i in range(256 * 1024))  # 2 MiB, every line unique
    ctx = client = None
    if tls:
        ca = trustme.CA()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ca.issue_cert("127.0.0.1").configure_cert(ctx)
        client = ssl.create_default_context()
        ca.configure_trust(client)
    port = start(tls=lambda: ctx).port
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.settimeout(10)
    raw.connect(("127.0.0.1", port))
    s = client.wrap_socket(raw, server_hostname="127.0.0.1") if client is not None else raw
    with s:
        s.sendall(GET_READYZ + GET_HEALTHZ + GET_READYZ)
        got = b""
        while got.count(hooks.body.encode()) < 2 or not got.endswith(b"\n\n"):
            chunk = s.recv(4096)  # a little at a time: the server's writes stall again and again
            assert chunk, got[-200:]
            got += chunk
    assert statuses(got) == [200, 200, 200]
    body = hooks.body.encode() + b"\n"
    assert got.partition(b"\r\n\r\n")[2].startswith(body) and got.endswith(body)
    assert got.count(body) == 2


def test_pipelining_does_not_extend_the_answer_deadline(start: Start, hooks: Hooks) -> None:
    """The answers to requests pipelined behind one another share one deadline: a client
    that never reads is closed when it passes, not given it again for every request."""
    hooks.body = "r" * (1 << 20)
    port = start(response_seconds=1.0).port
    s = slow_reader(port, GET_READYZ * 30)

    def gone() -> bool:
        try:
            s.send(b"\r\n")  # empty lines between requests: ignored by a live server
        except OSError:
            return True
        time.sleep(0.1)
        return False
    try:
        wait_until(gone, 15, interval=0, what="the connection closed at its answer deadline")
    finally:
        s.close()
    assert statuses(exchange(port, GET_HEALTHZ)) == [200]


def rest(s: socket.socket) -> bytes:
    """Half-close, then everything the server sends until it closes."""
    s.shutdown(socket.SHUT_WR)
    out = b""
    while chunk := s.recv(65536):
        out += chunk
    return out


def test_only_a_bare_probe_gets_a_probe_place(start: Start, hooks: Hooks) -> None:
    """The places kept for liveness probes go to GET or HEAD /healthz without a body and with
    nothing pipelined behind it, never to a probe that brings more work with it."""
    port = start(max_connections=2).port
    hooks.hold.set()  # /readyz now blocks in its handler
    busy = [connect(port) for _ in range(2)]
    not_bare = {
        "pipelined work behind it": GET_HEALTHZ + GET_READYZ,
        "a body": b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
        "another method": b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    }
    waiting = {name: connect(port, timeout=30) for name in not_bare}
    try:
        for s in busy:
            s.sendall(GET_READYZ)
        wait_until(lambda: hooks.waiting == 2, 5, what="both handlers busy")
        for name, s in waiting.items():
            s.sendall(not_bare[name])
        for _ in range(5):
            assert statuses(exchange(port, GET_HEALTHZ)) == [200]
        unanswered = [name for name, s in waiting.items() if closed_by_server(s) is None]
        assert unanswered == list(not_bare)
        hooks.release.set()
        assert {name: statuses(rest(s)) for name, s in waiting.items()} == {
            "pipelined work behind it": [200, 200], "a body": [200], "another method": [405]}
    finally:
        for s in [*busy, *waiting.values()]:
            s.close()


def test_a_slow_request_body_holds_no_handler(start: Start) -> None:
    """Attack probe p07: GET /healthz announcing a 64 KiB body, then a byte a second. The body
    was read in a handler (probe places first), so probes and scrapes went unanswered."""
    handlers = 2
    port = start(max_connections=handlers).port
    slow = [connect(port) for _ in range(handlers + PROBE_SLOTS + 4)]
    try:
        for s in slow:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 65536\r\n\r\na")
        for _ in range(3):
            assert statuses(exchange(port, GET_HEALTHZ)) == [200]
            assert statuses(exchange(port, GET_READYZ)) == [200]
            for s in slow:
                s.sendall(b"a")
        assert all(closed_by_server(s) is None for s in slow)  # still being read, not refused
    finally:
        for s in slow:
            s.close()


def test_a_trickled_body_is_cut_at_the_head_deadline(start: Start, hooks: Hooks) -> None:
    port = start(head_seconds=1.0).port
    with connect(port) as s:
        s.sendall(b"POST /-/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")

        def cut() -> bytes | None:
            try:
                s.sendall(b"a")
            except OSError:
                return b"<closed>"
            time.sleep(0.2)
            return closed_by_server(s)
        reply = wait_until(cut, 20, interval=0, what="the server to cut the slow body")
    assert reply.startswith(b"HTTP/1.1 408 "), reply
    assert hooks.reloads == 0


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
    monkeypatch.setattr(bind.socket, "has_dualstack_ipv6", lambda: False)
    server = start(host="")
    assert server.server_address[0] == "0.0.0.0"
    assert _answers("127.0.0.1", server.port)


def test_a_specific_address_listens_there_only(start: Start) -> None:
    port = start(host="127.0.0.1").port
    assert _answers("127.0.0.1", port)
    if socket.has_dualstack_ipv6():
        with pytest.raises(OSError):
            _answers("::1", port)
