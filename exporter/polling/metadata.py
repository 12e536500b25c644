"""Metadata with ``counts_source: stats_batch``: full Get Namespace calls (jobs, autoscaling,
extractors, info labels), spread over ``metadata_interval_seconds`` and never in front of
counts.

``MetadataSpread`` picks a cycle's share: round robin over the namespaces whose id is known,
so the one refreshed longest ago (or never) goes first, about N x elapsed / metadata_interval
of them (so a metadata interval's work is spread evenly across it), and no more than the
budget leaves after counts (polling.budget.metadata_room). ``MetadataLane`` runs them on
threads of their own, at METADATA priority in the request budget: a poll cycle's counts never
wait for a thread or a slot held by metadata, and the cycle does not wait for metadata to end.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable, Container
from concurrent.futures import Future, ThreadPoolExecutor


class MetadataSpread:
    """Which namespaces get a full Get Namespace this cycle (see the module docstring)."""

    def __init__(self, metadata_interval: float) -> None:
        self.metadata_interval = metadata_interval
        self._order: deque[str] = deque()  # next to refresh at the left
        self._known: set[str] = set()
        self._credit = 0.0
        self._last: float | None = None

    def pick(self, candidates: list[str], fetched: Callable[[str], bool], now: float,
             interval: float, room: float | None, busy: Container[str] = ()) -> list[str]:
        """Up to ``room`` (None: no bound) of ``candidates``, oldest first, about
        len(candidates) x max(interval, seconds since the last pick) / metadata_interval.
        ``fetched(identifier)``: its metadata came in before (new ones that never had it go
        first); ``busy``: still queued from an earlier pick, skipped. ``now``: monotonic
        seconds."""
        current = set(candidates)
        self._known &= current  # gone ones leave the order lazily, when they come up
        new = [c for c in candidates if c not in self._known]
        self._order.extendleft(reversed([c for c in new if not fetched(c)]))
        self._order.extend(c for c in new if fetched(c))
        self._known |= set(new)
        elapsed = interval if self._last is None else max(interval, now - self._last)
        self._last = now
        share = len(current) * elapsed / self.metadata_interval
        # Never more than two cycles' worth saved up (or one namespace, when that is less).
        self._credit = min(self._credit + share, 2 * max(share, 1.0))
        want = math.floor(self._credit)
        if room is not None:
            want = min(want, math.floor(max(room, 0.0)))
        picked: list[str] = []
        chosen: set[str] = set()
        for _ in range(len(self._order)):
            if len(picked) >= want:
                break
            ident = self._order.popleft()
            if ident not in self._known:
                continue
            self._order.append(ident)
            if ident not in busy and ident not in chosen:
                picked.append(ident)
                chosen.add(ident)
        self._credit -= len(picked)
        return picked


class MetadataLane:
    """Runs ``poll(identifier)`` for picked namespaces on ``threads`` threads of its own."""

    def __init__(self, poll: Callable[[str], None], metadata_interval: float,
                 threads: int) -> None:
        self.spread = MetadataSpread(metadata_interval)
        self._poll = poll
        self._threads = threads
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="metadata")
        self._lock = threading.Lock()
        self._busy: set[str] = set()
        self._futures: set[Future[None]] = set()

    @property
    def busy(self) -> int:
        """Namespaces queued or in flight."""
        with self._lock:
            return len(self._busy)

    def queue(self, candidates: list[str], fetched: Callable[[str], bool], now: float,
              interval: float, room: float | None) -> list[str]:
        """Pick this cycle's share (``MetadataSpread.pick``; ``room`` less what is still
        queued) and queue it; returns the identifiers queued."""
        with self._lock:
            busy = set(self._busy)
        if room is not None:
            room -= len(busy)
        picked = self.spread.pick(candidates, fetched, now, interval, room, busy)
        for ident in picked:
            with self._lock:
                self._busy.add(ident)
            try:
                fut = self._executor.submit(self._run, ident)
            except RuntimeError:  # shut down underneath us
                with self._lock:
                    self._busy.discard(ident)
                break
            with self._lock:
                self._futures.add(fut)
            fut.add_done_callback(self._done)
        return picked

    def _run(self, ident: str) -> None:
        try:
            self._poll(ident)
        finally:
            with self._lock:
                self._busy.discard(ident)

    def _done(self, fut: Future[None]) -> None:
        with self._lock:
            self._futures.discard(fut)

    def pending(self) -> list[Future[None]]:
        """Futures of the calls queued or in flight now."""
        with self._lock:
            return list(self._futures)

    def resize(self, threads: int) -> None:
        """A new thread count (a reload); queued calls finish on the old threads."""
        if threads != self._threads:
            old, self._threads = self._executor, threads
            self._executor = ThreadPoolExecutor(max_workers=threads,
                                                thread_name_prefix="metadata")
            old.shutdown(wait=False)

    def shutdown(self) -> None:
        """Cancel what is queued; calls in flight end on their own (the client stops too)."""
        self._executor.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            self._busy.clear()
