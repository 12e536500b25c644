"""The simulated API's per-key limit: at most N requests in any 60-second window.

Not a token bucket, on purpose. ``--rate-limit-rpm N`` promises that a client which sends at
most N requests in every 60 seconds is never refused, bursts included, and that request N+1
inside any 60 seconds always is. A token bucket cannot keep both halves: with room for a burst
it lets more than N through in a minute (a full bucket plus a minute of refill), and without one
it refuses two requests sent together. A log of the accepted requests of the last minute keeps
both, so the exporter's budget can be checked against it exactly (issue 11).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

WINDOW_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Verdict:
    """One request's answer: sent as 429 + ``Retry-After`` and ``X-RateLimit-*`` headers."""

    allowed: bool
    limit: int
    remaining: int  # requests still accepted in the current window, after this one
    reset_after: float  # seconds until the oldest counted request leaves the window (0: none)

    @property
    def retry_after(self) -> int:
        """Whole seconds to wait before a retry can be accepted (at least 1)."""
        return max(1, math.ceil(self.reset_after))

    def headers(self, wall_now: float) -> dict[str, str]:
        """The documented ``X-RateLimit-*`` headers (Reset is a Unix timestamp)."""
        return {"X-RateLimit-Limit": str(self.limit),
                "X-RateLimit-Remaining": str(self.remaining),
                "X-RateLimit-Reset": str(math.ceil(wall_now + self.reset_after)),
                "X-RateLimit-Window": f"{WINDOW_SECONDS:g}"}


class MinuteWindow:
    """At most ``limit`` accepted requests in any window of 60 seconds; refusals are counted.

    A refused request does not count against the window (it did no work), as a retry that is
    accepted later does.
    """

    def __init__(self, limit: int, clock: Callable[[], float] = time.monotonic) -> None:
        if limit < 1:
            raise ValueError(f"rate limit must be at least 1 request a minute, got {limit}")
        self.limit = limit
        self.refused = 0
        self._clock = clock
        self._accepted: deque[float] = deque()
        self._lock = threading.Lock()

    def _expire(self, now: float) -> None:
        while self._accepted and self._accepted[0] <= now - WINDOW_SECONDS:
            self._accepted.popleft()

    def _verdict(self, allowed: bool, now: float) -> Verdict:
        reset = self._accepted[0] + WINDOW_SECONDS - now if self._accepted else 0.0
        return Verdict(allowed, self.limit, self.limit - len(self._accepted), max(reset, 0.0))

    def take(self) -> Verdict:
        """Count one request if the window has room; otherwise refuse it."""
        with self._lock:
            now = self._clock()
            self._expire(now)
            if len(self._accepted) < self.limit:
                self._accepted.append(now)
                return self._verdict(True, now)
            self.refused += 1
            return self._verdict(False, now)

    def peek(self) -> Verdict:
        """The window as it stands, counting nothing (for answers that are not charged)."""
        with self._lock:
            now = self._clock()
            self._expire(now)
            return self._verdict(len(self._accepted) < self.limit, now)

    def in_window(self) -> int:
        with self._lock:
            self._expire(self._clock())
            return len(self._accepted)
