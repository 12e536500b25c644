"""The request budget: one bucket shared by every request the exporter makes.

Mixpeek counts every request against the key, retries included, so the bucket sits in front
of each attempt, not each poll. A 429 pauses the whole bucket until its Retry-After, because
the limit is per key: the next namespace would be refused just the same.

It is a token bucket written as GCRA: each caller reserves its own send time under the lock
and sleeps until then, so a waiting thread wakes once instead of on every token.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    def __init__(self, per_minute: float, burst: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.per_minute = per_minute
        rate = per_minute / 60.0
        self._interval = 1.0 / rate if rate > 0 else 0.0
        # A small burst keeps polls spread out instead of front-loading a cycle.
        capacity = max(1.0, burst if burst is not None else min(rate, 5.0))
        self._tolerance = (capacity - 1.0) * self._interval
        self._tat = clock()  # theoretical arrival time of the next request
        self._paused_until = 0.0
        self._lock = threading.Lock()

    @property
    def unlimited(self) -> bool:
        return self._interval <= 0

    def pause_for(self, seconds: float) -> None:
        """No request leaves for ``seconds`` (a 429's Retry-After)."""
        with self._lock:
            until = self._clock() + seconds
            self._paused_until = max(self._paused_until, until)
            # After the pause, pace from zero again rather than release a saved-up burst.
            self._tat = max(self._tat, until + self._tolerance)

    def acquire(self, deadline: float | None = None, stop: threading.Event | None = None) -> bool:
        """Take one slot, waiting as needed. False if ``deadline`` or ``stop`` comes first."""
        while True:
            with self._lock:
                now = self._clock()
                start = max(now, self._paused_until)
                if self.unlimited:
                    at = start
                else:
                    tat = max(self._tat, start)
                    at = max(start, tat - self._tolerance)
                if deadline is not None and at > deadline:
                    return False
                if not self.unlimited:
                    self._tat = tat + self._interval
            wait = at - self._clock()
            if wait > 0:
                if stop is not None:
                    if stop.wait(wait):
                        return False
                else:
                    time.sleep(wait)
            with self._lock:
                # A 429 may have paused the bucket while this caller slept.
                if self._clock() >= self._paused_until:
                    return True
