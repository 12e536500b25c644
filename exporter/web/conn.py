"""One client connection: its socket, the bytes read ahead, and the deadlines that bound it.

The accept loop (``web.listener``) reads a request head into ``buf`` without a thread; a
handler thread then reads the head from ``buf`` and anything more (a body) from the socket.
As a handler sees it, a ``Connection`` is both ``rfile`` and ``wfile`` of
``BaseHTTPRequestHandler``: every blocking read and write stops at a deadline for the whole
request, not a timeout per ``recv`` that each trickled byte would restart.
"""

from __future__ import annotations

import re
import socket
import ssl
import time
from typing import Any

HEAD_MAX = 64 * 1024  # bytes: request line and headers together
HEAD_SECONDS = 10.0  # TLS handshake and request head, from accept or the head's first byte
IDLE_SECONDS = 30.0  # keep-alive: waiting for the first byte of the next request
BODY_MAX = 64 * 1024  # bytes of a request body that are read (and discarded)
RESPONSE_SECONDS = 30.0  # handling one request and writing its answer
# After an answer, the handler waits this long for the next request on the same connection
# before handing it back to the accept loop: a client that asks again at once (a benchmark, a
# pipelining proxy) skips the round trip through the loop; an idle one holds no thread.
NEXT_REQUEST_SECONDS = 0.05
_END_OF_HEAD = re.compile(rb"\n\r?\n")


class Connection:
    """A client socket and what has been read from it but not yet parsed."""

    def __init__(self, sock: socket.socket, addr: Any, now: float,
                 head_seconds: float = HEAD_SECONDS) -> None:
        self.sock = sock
        self.addr = addr
        self.buf = bytearray()
        self.head_seconds = head_seconds
        self.handshaking = isinstance(sock, ssl.SSLSocket)
        self.eof = False  # the client has half-closed: nothing more will come
        self.draining = False  # answered and shut for writing; reading until the client closes
        self.drained = 0  # bytes discarded while draining
        self.closed = False
        self.deadline = now + head_seconds
        self.read_deadline = self.write_deadline = 0.0
        self._scanned = 0  # buf[:_scanned] holds no end of head: each byte is searched once

    # -- while waiting in the accept loop -------------------------------------------------

    def park(self, now: float) -> None:
        """Between keep-alive requests: idle until a byte comes, then a head deadline."""
        self.deadline = now + (self.head_seconds if self.buf else IDLE_SECONDS)

    def received(self, data: bytes, now: float) -> None:
        if not self.buf and self.deadline - now > self.head_seconds:
            self.deadline = now + self.head_seconds  # an idle connection started a request
        self.buf += data

    def head_complete(self) -> bool:
        """True when ``buf`` starts with a whole request head of at most HEAD_MAX bytes."""
        start = max(0, self._scanned - 2)
        end = _END_OF_HEAD.search(self.buf, start)
        if end is None:
            self._scanned = len(self.buf)
            return False
        return end.end() <= HEAD_MAX

    def consumed(self, n: int) -> None:
        del self.buf[:n]
        self._scanned = 0

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            try:
                self.sock.close()
            except OSError:
                pass

    # -- in a handler thread: rfile and wfile --------------------------------------------

    def start_request(self, now: float) -> None:
        self.read_deadline = now + self.head_seconds
        self.write_deadline = now + RESPONSE_SECONDS

    def _fill(self) -> bool:
        """Read more into ``buf`` before the read deadline; False at end of input."""
        if self.eof:
            return False
        left = self.read_deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("request not received in time")
        self.sock.settimeout(left)
        data = self.sock.recv(65536)
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def next_head(self, seconds: float = NEXT_REQUEST_SECONDS) -> bool:
        """True once the next request head is complete in ``buf``; False after ``seconds``
        (whatever part of a head came stays in ``buf``), at end of input, or past HEAD_MAX."""
        deadline = time.monotonic() + seconds
        while not self.head_complete():
            left = deadline - time.monotonic()
            if left <= 0 or self.eof or len(self.buf) > HEAD_MAX:
                return False
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                return False
            if not data:
                self.eof = True
            self.buf += data
        return True

    def readline(self, limit: int = -1) -> bytes:
        while True:
            end = self.buf.find(b"\n")
            if end >= 0 and (limit < 0 or end < limit):
                n = end + 1
                break
            if 0 <= limit <= len(self.buf) or not self._fill():
                n = len(self.buf) if limit < 0 else min(limit, len(self.buf))
                break
        line = bytes(self.buf[:n])
        self.consumed(n)
        return line

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            raise ValueError("read() needs a size: a request body is read by Content-Length")
        while len(self.buf) < size and self._fill():
            pass
        data = bytes(self.buf[:size])
        self.consumed(len(data))
        return data

    def write(self, data: bytes | bytearray | memoryview) -> int:
        left = self.write_deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("answer not taken by the client in time")
        if not isinstance(self.sock, ssl.SSLSocket):
            self.sock.settimeout(left)  # for sendall, the timeout is the whole call's
            self.sock.sendall(data)
            return len(data)
        view = memoryview(data)  # SSLSocket.sendall would restart the timeout per send
        sent = 0
        while sent < len(view):
            self.sock.settimeout(left)
            sent += self.sock.send(view[sent:])
            left = self.write_deadline - time.monotonic()
            if left <= 0 and sent < len(view):
                raise TimeoutError("answer not taken by the client in time")
        return sent

    def flush(self) -> None:
        pass  # every write goes straight to the socket
