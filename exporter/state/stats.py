"""Counters of API requests by outcome, written by the client and read by the renderer."""

from __future__ import annotations

import threading


class RequestStats:
    """Counts of API requests by status and the last X-RateLimit-Remaining, for /metrics."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.by_status: dict[str, int] = {}
        self.rate_limit_remaining: float | None = None

    def record(self, status: str, remaining: float | None = None) -> None:
        with self._lock:
            self.by_status[status] = self.by_status.get(status, 0) + 1
            if remaining is not None:
                self.rate_limit_remaining = remaining

    def snapshot(self) -> tuple[tuple[tuple[str, int], ...], float | None]:
        with self._lock:
            return tuple(sorted(self.by_status.items())), self.rate_limit_remaining
