"""The HTTP server in-process for tests over real loopback sockets: endpoints as plain functions
(``Hooks``), a factory of running servers (``Servers``), and raw-socket helpers.

The server, its accept loop and its handlers are the real ones; only what the endpoints do is
made controllable (``ready`` can be made to block, ``reload`` counts its calls).
"""

from __future__ import annotations

import re
import socket
import threading
from types import TracebackType
from typing import Any

from exporter.web.server import Endpoints, MetricsServer, serve

GET_HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
GET_READYZ = b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n"
SMUGGLED = b"POST /-/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"


class Hooks:
    """What the endpoints call: ``ready`` blocks while ``hold`` is set and answers ``body``;
    ``reload`` counts."""

    def __init__(self) -> None:
        self.reloads = 0
        self.hold = threading.Event()
        self.release = threading.Event()
        self.waiting = 0  # ready() calls that blocked
        self.calls = 0  # ready() calls
        self.body = "ready"

    def ready(self) -> tuple[bool, str]:
        self.calls += 1
        if self.hold.is_set():
            self.waiting += 1
            self.release.wait(30)
        return True, self.body

    def reload(self) -> tuple[bool, str]:
        self.reloads += 1
        return True, "reloaded"


class Servers:
    """Starts servers on 127.0.0.1 (``make``); ``close`` stops them all and lets go of any
    request still blocked in ``Hooks.ready``."""

    def __init__(self, hooks: Hooks) -> None:
        self.hooks = hooks
        self._servers: list[MetricsServer] = []

    def make(self, lifecycle: bool = True, host: str = "127.0.0.1", authorize: Any = None,
             **kw: Any) -> MetricsServer:
        endpoints = Endpoints(cache=None, ready=self.hooks.ready,  # type: ignore[arg-type]
                              reload=self.hooks.reload if lifecycle else None,
                              authorize=authorize)
        server = MetricsServer((host, 0), socket.AF_INET, endpoints, **kw)
        serve(server)
        self._servers.append(server)
        return server

    def close(self) -> None:
        self.hooks.release.set()
        for s in self._servers:
            s.shutdown()
            s.server_close()

    def __enter__(self) -> Servers:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def connect(port: int, source: str = "127.0.0.1", timeout: float = 5.0) -> socket.socket:
    """A connection to the server from ``source`` (any 127.x.y.z is loopback on Linux, so
    tests can be several clients)."""
    return socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                    source_address=(source, 0))


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


def answer(s: socket.socket) -> bytes:
    """One whole answer with a Content-Length body, read from ``s`` (blocking, its timeout)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    m = re.search(rb"\r\nContent-Length: (\d+)", head)
    want = int(m.group(1)) if m else 0
    while len(body) < want:
        chunk = s.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body
