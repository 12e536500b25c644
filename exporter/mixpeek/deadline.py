"""A total deadline for an HTTP exchange, not just a per-read socket timeout.

requests/urllib3 timeouts bound each socket operation, so a server that drips one byte every
few seconds keeps a request alive forever. One reaper thread holds a heap of deadlines; when
one passes it shuts the connection's socket down, which makes the blocked read in the worker
thread fail at once. urllib3 connections register themselves through ``DeadlineAdapter``.
"""

from __future__ import annotations

import heapq
import itertools
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool


class Reaper:
    """One thread that runs each scheduled action at its deadline, unless cancelled first.

    Only live entries are kept: a fired entry is gone at once, and a cancelled one is dropped
    from the heap when it reaches the top or when cancelled entries outnumber the live ones,
    so neither timed-out nor finished requests leave anything behind.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int]] = []
        self._live: dict[int, Callable[[], None]] = {}
        self._cond = threading.Condition()
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None

    def schedule(self, deadline: float, action: Callable[[], None]) -> int:
        """Run ``action`` at ``deadline`` (time.monotonic()); returns a handle for cancel."""
        with self._cond:
            handle = next(self._seq)
            heapq.heappush(self._heap, (deadline, handle))
            self._live[handle] = action
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="deadline-reaper",
                                                daemon=True)
                self._thread.start()
            self._cond.notify()
            return handle

    def cancel(self, handle: int) -> None:
        """The action will not run; a no-op once it has run."""
        with self._cond:
            if self._live.pop(handle, None) is not None and \
                    len(self._heap) > 2 * len(self._live) + 64:
                self._heap = [e for e in self._heap if e[1] in self._live]
                heapq.heapify(self._heap)

    def pending(self) -> int:
        """Entries held (every live one, and cancelled ones not yet dropped)."""
        with self._cond:
            return len(self._heap)

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    while self._heap and self._heap[0][1] not in self._live:
                        heapq.heappop(self._heap)
                    if not self._heap:
                        self._cond.wait()
                        continue
                    wait = self._heap[0][0] - time.monotonic()
                    if wait <= 0:
                        _, handle = heapq.heappop(self._heap)
                        action = self._live.pop(handle)
                        break
                    self._cond.wait(wait)
            try:
                action()
            except Exception:  # noqa: S110 - a dead socket is the goal; nothing to report
                pass


REAPER = Reaper()
_local = threading.local()


@contextmanager
def total_deadline(deadline: float) -> Iterator[None]:
    """Within this block, connections made or reused by this thread die at ``deadline``."""
    _local.deadline = deadline
    _local.handles = []
    try:
        yield
    finally:
        for h in _local.handles:
            REAPER.cancel(h)
        _local.deadline = None
        _local.handles = []


class _DeadlineMixin:
    sock: socket.socket | None

    def request(self, *args: Any, **kwargs: Any) -> Any:
        deadline = getattr(_local, "deadline", None)
        if deadline is not None:
            _local.handles.append(REAPER.schedule(deadline, self._abort))
        return super().request(*args, **kwargs)  # type: ignore[misc]

    def _abort(self) -> None:
        sock = self.sock
        if sock is not None:
            # The plain socket's shutdown, not SSLSocket's: that one also drops its SSL object,
            # which would race with the reading thread.
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _HTTPConnection(_DeadlineMixin, HTTPConnection):
    pass


class _HTTPSConnection(_DeadlineMixin, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class DeadlineAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}
        self.poolmanager.key_fn_by_scheme = dict(self.poolmanager.key_fn_by_scheme)
