"""One client connection: its socket, the bytes read ahead, the answers not yet sent, and the
deadlines that bound it.

The accept loop (``web.listener``) reads into ``buf`` without a thread and takes requests out
of it only when they are whole, head and body (``next_request``); a handler thread writes its
answer into the connection (``write``, ``send_body``) and sends what the socket takes at once
(``flush``); the accept loop sends the rest as the client reads it. So a handler never waits
on a client: not for a request head, not for a body, not for the client to read an answer.
As a handler sees it, a ``Connection`` is the ``wfile`` of ``BaseHTTPRequestHandler``.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

from exporter.web.head import (
    BODY_MAX,
    END_OF_HEAD,
    HEAD_MAX,
    HeadError,
    Request,
    is_tchar,
    parse_head,
)

HEAD_SECONDS = 10.0  # TLS handshake, request head and body, from accept or the first byte
IDLE_SECONDS = 30.0  # keep-alive: waiting for the first byte of the next request
# Answering: from a request until everything it asked for, and every request already sent
# behind it (pipelined), has been taken by the socket. A client that pipelines requests and
# does not read gets no more time for asking more.
RESPONSE_SECONDS = 30.0
# After an answer, the handler waits this long for the next request on the same connection
# before handing it back to the accept loop: a client that asks again at once (a benchmark, a
# pipelining proxy) skips the round trip through the loop; an idle one holds no thread.
NEXT_REQUEST_SECONDS = 0.05
READ_MAX = HEAD_MAX + BODY_MAX  # read ahead at most this much: one whole request
LINGER_MAX = 256 * 1024  # bytes discarded while draining a connection being closed
_RECV = 65536


def _too_long(buf: bytearray) -> HeadError:
    if buf.find(b"\n", 0, HEAD_MAX) < 0:  # still the request line
        return HeadError(414, "URI Too Long", f"the request line is over {HEAD_MAX} bytes")
    return HeadError(431, "Request Header Fields Too Large",
                     f"the request head is over {HEAD_MAX} bytes")


class Connection:
    """A client socket, what has been read from it but not yet taken as a request, and what
    has been answered but not yet sent."""

    def __init__(self, sock: socket.socket, addr: Any, now: float,
                 head_seconds: float = HEAD_SECONDS,
                 response_seconds: float = RESPONSE_SECONDS) -> None:
        self.sock = sock
        self.addr = addr
        self.buf = bytearray()
        self.head_seconds = head_seconds
        self.response_seconds = response_seconds
        self.handshaking = isinstance(sock, ssl.SSLSocket)
        self.eof = False  # the client has half-closed: nothing more will come
        self.closing = False  # close once the output has gone
        self.draining = False  # answered and shut for writing; reading until the client closes
        self.drained = 0  # bytes discarded while draining
        self.closed = False
        self.wants_write = False  # the socket must become writable before we can go on
        self.stalled = False  # output is waiting for the client to read
        self.deadline = now + head_seconds
        self.write_deadline = 0.0  # 0: nothing being answered (see next_request)
        self.request: Request | None = None  # the request a handler answers next
        self.single = False  # the handler answers this request only (a probe place)
        self._head: Request | None = None  # a head whose body is still coming
        self._continued = False  # "100 Continue" sent for _head
        self._scanned = 0  # buf[:_scanned] holds no end of head: each byte is searched once
        self._out: deque[bytes | Iterator[bytes]] = deque()
        self._chunk = memoryview(b"")

    # -- reading ----------------------------------------------------------------------------

    @property
    def mid_request(self) -> bool:
        """Part of a request has come (a head, or a body still short)."""
        return bool(self.buf) or self._head is not None

    def park(self, now: float) -> None:
        """Waiting for the client: idle until a byte comes, then a head deadline."""
        self.deadline = now + (self.head_seconds if self.mid_request else IDLE_SECONDS)

    def received(self, data: bytes, now: float) -> None:
        if not self.mid_request and self.deadline - now > self.head_seconds:
            self.deadline = now + self.head_seconds  # an idle connection started a request
        self.buf += data

    def read_available(self, now: float) -> None:
        """Read what has arrived, without blocking, until ``buf`` holds READ_MAX bytes."""
        try:
            while not self.eof and len(self.buf) < READ_MAX:
                data = self.sock.recv(_RECV)
                if not data:
                    self.eof = True
                else:
                    self.received(data, now)
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
            self.wants_write = False
        except ssl.SSLWantWriteError:
            self.wants_write = True

    def discard_available(self) -> None:
        """While draining: read and drop what has arrived, at most LINGER_MAX in all."""
        try:
            while not self.eof and self.drained < LINGER_MAX:
                data = self.sock.recv(_RECV)
                if not data:
                    self.eof = True
                self.drained += len(data)
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError,
                ssl.SSLWantWriteError):
            pass

    def next_request(self, now: float) -> Request | None:
        """The next whole request in ``buf``, taken out of it (its body dropped); None while
        more must be read. Raises ``HeadError`` for a head that is refused, too long, or cut
        off by the end of input.

        The answer deadline starts with a request and runs on through every request already
        in ``buf`` behind it; it ends only when the connection waits for the client again."""
        if self._head is None:
            self._skip_empty_lines()
            if self.buf and not is_tchar(self.buf[0]):  # binary, or a TLS hello on plain HTTP
                raise HeadError(400, "Bad Request", "this is not an HTTP/1.1 request line")
            end = self._end_of_head()
            if end < 0 or end > HEAD_MAX:
                if len(self.buf) > HEAD_MAX:
                    raise _too_long(self.buf)
                if self.eof and self.buf:
                    raise HeadError(400, "Bad Request", "the request head ended early")
                self.write_deadline = 0.0
                return None
            self._head = parse_head(bytes(self.buf[:end]))
            self._consume(end)
            self._continued = False
        n = self._head.body_length
        if len(self.buf) < n:
            self.write_deadline = 0.0
            return None
        self._consume(n)
        request, self._head = self._head, None
        if not self.write_deadline:
            self.write_deadline = now + self.response_seconds
        return request

    def continue_due(self) -> bool:
        """True once: the client waits for "100 Continue" before sending the body."""
        due = self._head is not None and self._head.expect_continue and not self._continued \
            and not self.eof
        self._continued = self._continued or due
        return due

    def await_request(self, seconds: float = NEXT_REQUEST_SECONDS) -> Request | None:
        """In a handler, after an answer has gone: the next whole request if it comes within
        ``seconds``; else None (what came of it stays in ``buf``). Raises ``HeadError``."""
        deadline = time.monotonic() + seconds
        try:
            while True:
                now = time.monotonic()
                request = self.next_request(now)
                if request is not None or self.eof or len(self.buf) >= READ_MAX \
                        or now >= deadline:
                    return request
                self.sock.settimeout(deadline - now)
                try:
                    data = self.sock.recv(_RECV)
                except (TimeoutError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    return None
                if not data:
                    self.eof = True
                else:
                    self.received(data, time.monotonic())
        finally:
            self.sock.setblocking(False)

    def _skip_empty_lines(self) -> None:
        """Empty lines before a request line are ignored (RFC 9112 §2.2)."""
        i = 0
        while True:
            if self.buf.startswith(b"\r\n", i):
                i += 2
            elif self.buf.startswith(b"\n", i):
                i += 1
            else:
                break
        if i:
            self._consume(i)

    def _end_of_head(self) -> int:
        start = max(0, self._scanned - 2)
        end = END_OF_HEAD.search(self.buf, start)
        if end is None:
            self._scanned = len(self.buf)
            return -1
        return end.end()

    def _consume(self, n: int) -> None:
        del self.buf[:n]
        self._scanned = 0

    # -- answering --------------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Queue ``data`` (the status line and headers); sent by ``flush``."""
        if data:
            self._out.append(bytes(data))
        return len(data)

    def send_body(self, chunks: bytes | bytearray | Iterable[bytes]) -> None:
        """Queue a body; an iterable is drawn on only as the socket takes its chunks, so a slow
        reader makes nobody hold a whole body in memory."""
        if isinstance(chunks, bytes | bytearray):
            self.write(chunks)
        else:
            self._out.append(iter(chunks))

    def flush(self) -> bool:
        """Send queued output without blocking: True once all of it has gone; False when the
        socket takes no more for now (``wants_write`` says whether to wait for it to become
        writable, else readable: TLS). Raises OSError when the client has gone."""
        while True:
            if not self._chunk:
                chunk = self._next_chunk()
                if chunk is None:
                    self.stalled = False
                    return True
                self._chunk = memoryview(chunk)
            try:
                sent = self.sock.send(self._chunk)
            except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError):
                self.wants_write = self.stalled = True
                return False
            except ssl.SSLWantReadError:
                self.wants_write, self.stalled = False, True
                return False
            self._chunk = self._chunk[sent:]

    def _next_chunk(self) -> bytes | None:
        while self._out:
            first = self._out[0]
            if isinstance(first, bytes):
                self._out.popleft()
                return first
            chunk = next(first, None)
            if chunk is None:
                self._out.popleft()
            elif chunk:
                return chunk
        return None

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._out.clear()
            self._chunk = memoryview(b"")
            try:
                self.sock.close()
            except OSError:
                pass
