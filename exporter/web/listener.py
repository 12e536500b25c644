"""Accepting connections, reading requests and sending answers, without giving a slow
client a thread.

One loop (a selector) accepts connections, completes TLS handshakes, reads request heads and
bodies, and sends whatever part of an answer a client has not taken yet. Only a connection
holding a whole request (head and body) gets a handler thread, and only while the answer is
computed: the handler sends what the socket takes at once and leaves the rest to the loop. So
a client that trickles its head or body (slowloris), opens connections and sends nothing,
idles between keep-alive requests, or never reads its answers holds no handler, only a place
among ``max_waiting`` waiting connections; when those are full the longest-waiting one is
closed to admit the newcomer: a scrape that sends its request at once always gets in.

Bounds: the handshake, head and body within ``head_seconds`` (10 s from accept or the
request's first byte; past it 408), the head within 64 KiB (414/431), the body within 64 KiB
(413), an idle keep-alive connection 30 s, the answers taken by the client within 30 s of the
request (requests pipelined behind it share that time), at most ``max_handlers`` requests
handled at once plus a few places kept for a bare liveness probe (``probe``: a request without
a body, alone on its connection, nothing pipelined before or behind it), so a probe is
answered even then. After the last answer on a connection it is shut for writing and drained
briefly, so a client never loses the answer to a reset.
"""

from __future__ import annotations

import logging
import queue
import selectors
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable

from exporter.web.bind import listening_socket
from exporter.web.conn import HEAD_SECONDS, LINGER_MAX, RESPONSE_SECONDS, Connection
from exporter.web.head import HeadError, Request, canned

log = logging.getLogger(__name__)

PROBE_SLOTS = 4  # handlers beyond max_handlers, only for a bare probe
LINGER_SECONDS = 2.0  # draining a closed connection so the client reads our answer, not a reset
_READ, _WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE

# A handler: answers conn.request and any whole requests behind it in conn.buf; True keeps
# the connection open (the loop sends what is left of the answers, then reads on).
Serve = Callable[[Connection], bool]


class Listener:
    """The accept loop and its bounded handlers; ``serve_forever`` runs it on one thread."""

    def __init__(self, address: tuple[str, int], family: int, serve: Serve,
                 tls: Callable[[], ssl.SSLContext | None] | None = None,
                 max_handlers: int = 16, max_waiting: int = 256,
                 head_seconds: float = HEAD_SECONDS,
                 response_seconds: float = RESPONSE_SECONDS,
                 probe: Callable[[Request], bool] | None = None) -> None:
        """``probe`` says which requests may take a probe place (when bare)."""
        self.socket = listening_socket(address[0], address[1], family)
        self.socket.setblocking(False)
        self.server_address = self.socket.getsockname()
        self._serve = serve
        self._tls = tls  # asked per connection, so rotated certificates apply at once
        self.max_handlers, self.max_waiting = max_handlers, max_waiting
        self.head_seconds, self.response_seconds = head_seconds, response_seconds
        self._probe = probe if probe is not None else (lambda request: False)
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

    def crowded(self) -> bool:
        """True while whole requests wait for a handler (read from handler threads): a
        handler then gives its connection back after each answer, so that connections take
        turns instead of one client's stream of requests keeping a handler for itself."""
        return bool(self._ready)

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
            self._wait(Connection(sock, addr, time.monotonic(), self.head_seconds,
                                  self.response_seconds))

    def _wait(self, conn: Connection) -> None:
        """Hold ``conn`` in the loop (if it is not held already) and move it on."""
        if id(conn) not in self._waiting:
            if len(self._waiting) >= self.max_waiting:
                self._close(next(iter(self._waiting.values())))  # the longest waiting goes
            self._waiting[id(conn)] = conn
            self._sel.register(conn.sock, _READ, conn)
        self._progress(conn)  # TLS may hold decrypted bytes already; output may be pending

    def _forget(self, conn: Connection) -> None:
        if self._waiting.pop(id(conn), None) is not None:
            self._sel.unregister(conn.sock)

    def _close(self, conn: Connection) -> None:
        self._forget(conn)
        conn.close()

    def _progress(self, conn: Connection) -> None:
        """Whatever the connection can do now without blocking: finish its handshake, send
        pending output, read, and hand a whole request to a handler."""
        now = time.monotonic()
        try:
            if conn.handshaking:
                conn.sock.do_handshake()  # type: ignore[attr-defined]
                conn.handshaking = False
            if conn.draining:
                conn.discard_available()
                if conn.eof or conn.drained >= LINGER_MAX:
                    self._close(conn)
                else:
                    self._watch(conn, _READ)
                return
            was_stalled = conn.stalled
            if not conn.flush():
                # Not read on while the client does not take its answers: what it pipelined
                # waits in its own socket buffers, not ours.
                conn.deadline = conn.write_deadline or conn.deadline
                self._watch(conn, _WRITE if conn.wants_write else _READ)
                return
            if was_stalled:
                conn.park(now)
            if conn.closing:
                self._linger(conn)
                return
            request = conn.next_request(now)  # here before this turn read anything: pipelined
            pipelined = request is not None
            if request is None:
                conn.read_available(now)
                request = conn.next_request(now)
        except ssl.SSLWantReadError:  # the handshake
            self._watch(conn, _READ)
            return
        except ssl.SSLWantWriteError:
            self._watch(conn, _WRITE)
            return
        except HeadError as e:
            self._refuse(conn, e.status, e.reason, e.why)
            return
        except (OSError, ValueError) as e:  # reset, TLS failure, closed under us
            log.debug("connection dropped", extra={"fields": {"error": str(e)}})
            self._close(conn)
            return
        if request is not None:
            conn.request = request
            conn.single = not pipelined and not conn.buf and self._probe(request)
            self._forget(conn)
            self._ready.append(conn)
            self._start_handlers()
        elif conn.eof:
            self._close(conn)  # nothing more will come; a body cut short is dropped
        elif conn.continue_due():
            conn.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self._progress(conn)
        else:
            self._watch(conn, _WRITE if conn.wants_write else _READ)

    def _watch(self, conn: Connection, events: int) -> None:
        if self._sel.get_key(conn.sock).events != events:
            self._sel.modify(conn.sock, events, conn)

    def _expire(self, now: float) -> None:
        late = [c for c in self._waiting.values() if c.deadline <= now]
        for conn in late:
            if conn.closed:
                continue
            if conn.mid_request and not (conn.closing or conn.draining or conn.handshaking
                                         or conn.write_deadline):
                self._refuse(conn, 408, "Request Timeout",
                             f"the request did not arrive within {conn.head_seconds:g} s")
            else:
                self._close(conn)

    def _refuse(self, conn: Connection, status: int, reason: str, why: str = "",
                headers: tuple[tuple[str, str], ...] = ()) -> None:
        """A short error answer from the loop itself, then drain and close."""
        log.debug("http request refused", extra={"fields": {
            "status": status, "why": why, "remote": str(conn.addr[0]) if conn.addr else ""}})
        conn.write(canned(status, reason, why, headers))
        conn.closing = True
        conn.write_deadline = time.monotonic() + LINGER_SECONDS
        self._wait(conn)

    def _linger(self, conn: Connection) -> None:
        """Shut for writing, then read until the client closes (bounded in time and bytes):
        closing with unread input would send a reset that can destroy our answer in flight."""
        if conn.eof:
            self._close(conn)
            return
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except (OSError, ValueError):
            self._close(conn)
            return
        conn.draining, conn.handshaking = True, False
        conn.buf = bytearray()
        conn.deadline = time.monotonic() + LINGER_SECONDS
        self._wait(conn)

    # -- handlers -------------------------------------------------------------------------

    def _start_handlers(self) -> None:
        left: deque[Connection] = deque()
        ready, self._ready = self._ready, deque()
        for conn in ready:
            limit = self.max_handlers + (PROBE_SLOTS if conn.single else 0)
            if self._running < limit:
                try:
                    threading.Thread(target=self._handle, args=(conn,), name="http-handler",
                                     daemon=True).start()
                except RuntimeError:  # no thread to be had: say so rather than hang
                    self._refuse(conn, 503, "Service Unavailable", "no handler thread",
                                 (("Retry-After", "1"),))
                else:
                    self._running += 1
            else:
                left.append(conn)
        while len(left) > self.max_waiting:  # all handlers stuck: refuse rather than pile up
            self._refuse(left.pop(), 503, "Service Unavailable", "every handler is busy",
                         (("Retry-After", "1"),))
        self._ready.extendleft(reversed(left))

    def _handle(self, conn: Connection) -> None:
        keep = False
        try:
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
            conn.closing = conn.closing or not keep
            conn.park(now)
            self._wait(conn)
        self._start_handlers()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # already awake (the pipe is full) or closing
