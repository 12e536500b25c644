"""Accepting connections without giving a slow client a thread.

One loop (a selector) accepts connections, completes TLS handshakes and reads request heads
for every waiting connection; only a connection whose request head is complete gets a handler
thread. So a client that trickles its head (slowloris), opens connections and sends nothing,
or idles between keep-alive requests holds no handler, only a place among ``max_waiting``
waiting connections, and when those are full the longest-waiting one is closed to admit the
newcomer: a scrape that sends its request at once always gets in.

Bounds: the handshake and the head within ``head_seconds`` (10 s; a head that is not complete
by then gets 408), the head within 64 KiB (414/431), an idle keep-alive connection 30 s, at
most ``max_handlers`` requests handled at once plus a few slots kept for ``GET /healthz`` so a
liveness probe is answered even then. After the last answer on a connection it is shut for
writing and drained briefly, so a client never loses the answer to a reset.
"""

from __future__ import annotations

import errno
import logging
import queue
import selectors
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable

from exporter.web.conn import HEAD_MAX, HEAD_SECONDS, Connection

log = logging.getLogger(__name__)

PROBE_SLOTS = 4  # handlers beyond max_handlers, only for GET/HEAD /healthz
LINGER_SECONDS = 2.0  # draining a closed connection so the client reads our answer, not a reset
_LINGER_MAX = 256 * 1024
_WILDCARDS = ("", "0.0.0.0", "::")
_NO_IPV6 = (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL, errno.EPROTONOSUPPORT)

# A handler: serves the requests whose heads are in conn.buf; True keeps the connection open.
Serve = Callable[[Connection], bool]


def listening_socket(host: str, port: int, family: int, backlog: int = 128) -> socket.socket:
    """A bound, listening socket. A wildcard host ('', 0.0.0.0 or ::) listens on IPv6 and IPv4
    at once (IPV6_V6ONLY off), as Go exporters do, falling back to IPv4 alone on a host without
    IPv6. Raises OSError (address in use, not available)."""
    if host in _WILDCARDS and socket.has_dualstack_ipv6():
        try:
            return socket.create_server(("::", port), family=socket.AF_INET6, backlog=backlog,
                                        dualstack_ipv6=True)
        except OSError as e:
            if e.errno not in _NO_IPV6:
                raise
            log.info("no IPv6 on this host; listening on IPv4 only")
    if host in _WILDCARDS:
        host, family = "0.0.0.0", socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=backlog)


def _is_probe(head: bytearray) -> bool:
    return head.startswith((b"GET /healthz ", b"HEAD /healthz ", b"GET /healthz?"))


def _canned(status: int, reason: str) -> bytes:
    body = f"{status} {reason}\n".encode()
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body


class Listener:
    """The accept loop and its bounded handlers; ``serve_forever`` runs it on one thread."""

    def __init__(self, address: tuple[str, int], family: int, serve: Serve,
                 tls: Callable[[], ssl.SSLContext | None] | None = None,
                 max_handlers: int = 64, max_waiting: int = 256,
                 head_seconds: float = HEAD_SECONDS) -> None:
        self.socket = listening_socket(address[0], address[1], family)
        self.socket.setblocking(False)
        self.server_address = self.socket.getsockname()
        self._serve = serve
        self._tls = tls  # asked per connection, so rotated certificates apply at once
        self.max_handlers, self.max_waiting = max_handlers, max_waiting
        self.head_seconds = head_seconds
        self._sel = selectors.DefaultSelector()
        self._waiting: dict[int, Connection] = {}  # by id; insertion order = oldest first
        self._ready: deque[Connection] = deque()
        self._running = 0
        self._done: queue.SimpleQueue[tuple[Connection, bool]] = queue.SimpleQueue()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._stopped.set()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        self._stopped.clear()
        self._sel.register(self.socket, selectors.EVENT_READ, None)
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        log.info("http listening", extra={"fields": {"address": str(self.server_address[0]),
                                                     "port": self.port}})
        try:
            while not self._stop.is_set():
                for key, _ in self._sel.select(min(poll_interval, 0.25)):
                    try:
                        if key.fileobj is self.socket:
                            self._accept()
                        elif key.fileobj is self._wake_r:
                            self._take_done()
                        elif not key.data.closed:
                            self._progress(key.data)
                    except Exception:  # one connection's trouble must not stop the loop
                        log.exception("http accept loop error")
                        if key.data is not None:
                            self._close(key.data)
                self._expire(time.monotonic())
        finally:
            for fileobj in (self.socket, self._wake_r):
                self._sel.unregister(fileobj)
            self._stopped.set()

    def shutdown(self) -> None:
        """Stop the loop and wait for it to end (connections stay until ``server_close``)."""
        self._stop.set()
        self._wake()
        self._stopped.wait()

    def server_close(self) -> None:
        for conn in [*self._waiting.values(), *self._ready]:
            self._forget(conn)
            conn.close()
        self._ready.clear()
        self.socket.close()
        self._sel.close()
        self._wake_r.close()
        self._wake_w.close()

    # -- accepting and waiting --------------------------------------------------------

    def _accept(self) -> None:
        for _ in range(64):  # a bounded batch, so waiting connections get their turn
            try:
                sock, addr = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # out of descriptors, or the client gave up already
                log.debug("accept failed", extra={"fields": {"error": str(e)}})
                return
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                ctx = self._tls() if self._tls is not None else None
                if ctx is not None:
                    sock = ctx.wrap_socket(sock, server_side=True,
                                           do_handshake_on_connect=False)
                sock.setblocking(False)
            except OSError as e:
                log.debug("connection setup failed", extra={"fields": {"error": str(e)}})
                sock.close()
                continue
            self._wait(Connection(sock, addr, time.monotonic(), self.head_seconds))

    def _wait(self, conn: Connection) -> None:
        if len(self._waiting) >= self.max_waiting:
            self._close(next(iter(self._waiting.values())))  # the longest waiting makes room
        self._waiting[id(conn)] = conn
        self._sel.register(conn.sock, selectors.EVENT_READ, conn)
        self._progress(conn)  # TLS may hold decrypted bytes already

    def _forget(self, conn: Connection) -> None:
        if self._waiting.pop(id(conn), None) is not None:
            self._sel.unregister(conn.sock)

    def _close(self, conn: Connection) -> None:
        self._forget(conn)
        conn.close()

    def _progress(self, conn: Connection) -> None:
        events = selectors.EVENT_READ
        try:
            if conn.handshaking:
                conn.sock.do_handshake()  # type: ignore[attr-defined]
                conn.handshaking = False
            while not conn.eof and len(conn.buf) <= HEAD_MAX and conn.drained < _LINGER_MAX:
                data = conn.sock.recv(65536)
                if not data:
                    conn.eof = True
                elif conn.draining:
                    conn.drained += len(data)
                else:
                    conn.received(data, time.monotonic())
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
            pass
        except ssl.SSLWantWriteError:
            events = selectors.EVENT_WRITE
        except (OSError, ValueError) as e:  # reset, TLS failure, closed under us
            log.debug("connection dropped", extra={"fields": {"error": str(e)}})
            self._close(conn)
            return
        if conn.draining or conn.handshaking:
            if conn.eof or conn.drained >= _LINGER_MAX:
                self._close(conn)
            else:
                self._watch(conn, events)
        elif conn.head_complete() or (conn.eof and 0 < len(conn.buf) <= HEAD_MAX):
            # Complete, or all there will be: at end of input the parser says what is wrong.
            self._forget(conn)
            self._ready.append(conn)
            self._start_handlers()
        elif len(conn.buf) > HEAD_MAX:
            too_long = conn.buf.find(b"\n", 0, HEAD_MAX) < 0  # still the request line
            self._answer(conn, 414 if too_long else 431, "URI Too Long" if too_long
                         else "Request Header Fields Too Large")
        elif conn.eof:
            self._close(conn)
        else:
            self._watch(conn, events)

    def _watch(self, conn: Connection, events: int) -> None:
        if self._sel.get_key(conn.sock).events != events:
            self._sel.modify(conn.sock, events, conn)

    def _expire(self, now: float) -> None:
        late = [c for c in self._waiting.values() if c.deadline <= now]
        for conn in late:
            if conn.buf and not conn.draining and not conn.handshaking:
                self._answer(conn, 408, "Request Timeout")
            else:
                self._close(conn)

    def _answer(self, conn: Connection, status: int, reason: str) -> None:
        """A short error answer from the loop itself, then drain and close."""
        try:
            conn.sock.send(_canned(status, reason))
        except (OSError, ValueError):
            pass  # best effort: the socket buffer of a waiting connection is empty
        self._forget(conn)
        self._linger(conn)

    def _linger(self, conn: Connection) -> None:
        """Shut for writing, then read until the client closes (bounded in time and bytes):
        closing with unread input would send a reset that can destroy our answer in flight."""
        if conn.eof:
            conn.close()
            return
        try:
            conn.sock.shutdown(socket.SHUT_WR)
            conn.sock.setblocking(False)
        except (OSError, ValueError):
            conn.close()
            return
        conn.draining, conn.handshaking = True, False
        conn.buf = bytearray()
        conn.deadline = time.monotonic() + LINGER_SECONDS
        self._wait(conn)

    # -- handlers -------------------------------------------------------------------------

    def _start_handlers(self) -> None:
        left: deque[Connection] = deque()
        for conn in self._ready:
            limit = self.max_handlers + (PROBE_SLOTS if _is_probe(conn.buf) else 0)
            if self._running < limit:
                try:
                    threading.Thread(target=self._handle, args=(conn,), name="http-handler",
                                     daemon=True).start()
                except RuntimeError:  # no thread to be had: say so rather than hang
                    self._answer(conn, 503, "Service Unavailable")
                else:
                    self._running += 1
            else:
                left.append(conn)
        while len(left) > self.max_waiting:  # all handlers stuck: refuse rather than pile up
            self._answer(left.pop(), 503, "Service Unavailable")
        self._ready = left

    def _handle(self, conn: Connection) -> None:
        keep = False
        try:
            conn.sock.settimeout(conn.head_seconds)
            keep = self._serve(conn)
        except Exception:
            # A client hanging up mid-answer is routine; never print tracebacks to stderr.
            log.debug("http connection error", exc_info=True)
        finally:
            self._done.put((conn, keep))
            self._wake()

    def _take_done(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        now = time.monotonic()
        while True:
            try:
                conn, keep = self._done.get_nowait()
            except queue.Empty:
                break
            self._running -= 1
            if self._stop.is_set() or conn.closed:
                conn.close()
                continue
            try:
                conn.sock.setblocking(False)
            except (OSError, ValueError):
                conn.close()
                continue
            if keep:
                conn.park(now)
                self._wait(conn)
            else:
                self._linger(conn)
        self._start_handlers()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # already awake (the pipe is full) or closing
