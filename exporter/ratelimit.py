"""The request budget: one token bucket shared by every request the exporter makes.

Mixpeek counts every request against the key, retries included, so the bucket sits in front
of each attempt, not each poll. A 429 pauses the whole bucket until its Retry-After, because
the limit is per key: the next namespace would be refused just the same.
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
        self._rate = per_minute / 60.0
        # A small burst keeps polls spread out instead of front-loading a cycle.
        self._capacity = max(1.0, burst if burst is not None else min(per_minute / 60.0, 5.0))
        self._tokens = self._capacity
        self._stamp = clock()
        self._paused_until = 0.0
        self._lock = threading.Lock()

    @property
    def unlimited(self) -> bool:
        return self._rate <= 0

    def pause_for(self, seconds: float) -> None:
        """No request leaves for ``seconds`` (a 429's Retry-After)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)
            self._tokens = min(self._tokens, 0.0)

    def acquire(self, deadline: float | None = None, stop: threading.Event | None = None) -> bool:
        """Take one token, waiting as needed. False if ``deadline`` or ``stop`` comes first."""
        while True:
            with self._lock:
                now = self._clock()
                if now < self._paused_until:
                    wait = self._paused_until - now
                elif self.unlimited:
                    return True
                else:
                    self._tokens = min(self._capacity,
                                       self._tokens + (now - self._stamp) * self._rate)
                    self._stamp = now
                    if self._tokens >= 1.0:
                        self._tokens -= 1.0
                        return True
                    wait = (1.0 - self._tokens) / self._rate
            if deadline is not None and self._clock() + wait > deadline:
                return False
            if stop is not None:
                if stop.wait(wait):
                    return False
            else:
                time.sleep(wait)
