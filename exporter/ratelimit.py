"""The request budget: one bucket shared by every request the exporter makes.

Mixpeek counts every request against the key, retries included, so the bucket sits in front
of each attempt, not each poll. Up to three limits pace it, and the strictest wins:

- **configured** (``TokenBucket(n, strict=True)``, ``mixpeek.max_requests_per_minute``): at
  most ``n`` requests in ANY 60-second window, bursts included;
- **stated**: ``X-RateLimit-Limit`` / ``-Window`` of the API's answers (``observe``);
- **estimated**: after a 429, the requests the API answered without refusing (``accepted``)
  in the last window (``refused``); forgotten ten windows after the last 429, so a refusal
  caused by another client of the key does not slow the exporter for good. Requests still in
  flight are not counted: they may be refused too (several sent at once, all refused, must
  not read as "one a minute accepted").

A 429's ``Retry-After`` (``pause_for``) and ``X-RateLimit-Remaining: 0`` (until
``X-RateLimit-Reset``) pause every sender, because the limit is per key. After a pause the
waiting senders leave one at a time at the pace, never all at once.

What the API says is bounded, because one odd answer must not stop polling for good: a window
counts as 1 s to ``MAX_WINDOW`` (an hour), a limit as at least 1 request and never a pace
slower than ``MIN_PER_MINUTE`` (1 a minute, the slowest configurable budget too), a pause as
``MAX_WINDOW`` + ``SLACK`` at most. A stated or estimated limit not heard again is forgotten
after ``FORGET_WINDOWS`` windows, an hour at most; a new bucket (a reload that rebuilds the
client) starts with none. A caller can refuse to wait for a bucket that will send nothing for
longer than it can wait (``acquire(max_wait=...)``): it gets False at once and ends its poll in
a verdict, instead of holding a worker.

It is GCRA: a slot is due every ``interval`` seconds, ``tolerance`` early at most (the burst).
For "at most L in any window W", ``interval = (W + SLACK) / (L + 1 - burst)``: any two sends
i < j then satisfy t_j >= t_i + (j - i) x interval - tolerance, so fewer than
(W + SLACK) / interval + burst = L + 1 of them fit in W + SLACK seconds. SLACK covers the time
between a request leaving here and the API counting it on arrival.

When several callers wait, the slot goes to the lowest ``Priority`` (counts before metadata
before discovery), first come first served within one; only the first in line sleeps until
the slot, so each waiting thread wakes about once per request it sends.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

log = logging.getLogger(__name__)

SLACK = 1.0  # seconds added to every window (see the module docstring)
FORGET_WINDOWS = 10  # an estimated (or a lower stated) limit lasts this many windows
MIN_WINDOW = 1.0  # seconds: a stated window shorter than this counts as this
MAX_WINDOW = 3600.0  # seconds: a stated window longer, a pause longer, counts as this
MIN_PER_MINUTE = 1.0  # the slowest pace the API's statements or 429s can impose
REMEMBERED_SENDS = 4096  # answers kept for estimating a limit; estimates above are capped
POLL = 0.25  # seconds: how often a waiting caller looks at its stop event


class Priority(IntEnum):
    """Who gets the next slot when several wait: the lowest value first."""

    COUNTS = 0
    METADATA = 1
    DISCOVERY = 2


@dataclass(frozen=True, slots=True)
class Limit:
    """At most ``requests`` in any ``window`` seconds."""

    requests: float
    window: float = 60.0

    @property
    def burst(self) -> float:
        """Requests that may leave together: one second's worth, 1 to 5."""
        return float(max(1, min(5, math.floor(self.requests / self.window))))

    @property
    def per_minute(self) -> float:
        return self.requests * 60.0 / self.window


def bounded(requests: float, window: float | None) -> Limit:
    """What the API stated (or its 429s showed) as a ``Limit`` within the bounds above;
    ``window`` None or not positive is 60 s."""
    span = 60.0 if window is None or not window > 0 else min(max(window, MIN_WINDOW),
                                                             MAX_WINDOW)
    return Limit(max(requests, 1.0, MIN_PER_MINUTE * span / 60.0), span)


def _forget_after(limit: Limit) -> float:
    return min(FORGET_WINDOWS * limit.window, MAX_WINDOW)


class _Waiter:
    __slots__ = ("cond", "key")

    def __init__(self, key: tuple[int, int], cond: threading.Condition) -> None:
        self.key = key
        self.cond = cond

    def __lt__(self, other: _Waiter) -> bool:
        return self.key < other.key


class TokenBucket:
    """``per_minute`` 0 is unlimited (until the API states or shows a limit).

    ``strict=False`` (the web server's auth limit) is a plain token bucket: a token every
    60 / ``per_minute`` seconds, ``burst`` of them saved at most. ``strict=True`` (the API
    budget) means at most ``per_minute`` requests in any 60 s window, ``burst`` included.
    """

    def __init__(self, per_minute: float, burst: float | None = None,
                 clock: Callable[[], float] = time.monotonic, strict: bool = False) -> None:
        self._clock = clock
        self.per_minute = per_minute
        self._configured = Limit(per_minute) if strict and per_minute > 0 else None
        self._classic = 60.0 / per_minute if not strict and per_minute > 0 else 0.0
        self._burst = burst
        self._stated: Limit | None = None
        self._stated_seen = 0.0
        self._estimated: Limit | None = None
        self._estimated_until = 0.0
        self._interval = 0.0
        self._tolerance = 0.0
        self._tat = clock()  # theoretical arrival time of the next request
        self._paused_until = 0.0
        self._lock = threading.Lock()
        self._waiters: list[_Waiter] = []
        self._seq = itertools.count()
        self._accepted: deque[float] = deque(maxlen=REMEMBERED_SENDS)
        self._recompute()

    # -- the pace -------------------------------------------------------------------------

    def _limits(self) -> list[Limit]:
        return [lim for lim in (self._configured, self._stated, self._estimated)
                if lim is not None]

    def _recompute(self) -> None:
        limits = self._limits()
        bursts = [lim.burst for lim in limits]
        if self._configured is not None and self._burst is not None:
            bursts[0] = max(1.0, min(self._burst, self._configured.requests))
        if self._classic:
            rate = 1.0 / self._classic  # tokens a second
            bursts.append(max(1.0, self._burst if self._burst is not None else min(rate, 5.0)))
        if not bursts:
            self._interval = self._tolerance = 0.0
            return
        b = min(bursts)
        intervals = [(lim.window + SLACK) / (lim.requests + 1.0 - b) for lim in limits]
        if self._classic:
            intervals.append(self._classic)
        self._interval = max(intervals)
        self._tolerance = (b - 1.0) * self._interval

    @property
    def unlimited(self) -> bool:
        with self._lock:
            return self._interval <= 0

    def limit_per_minute(self) -> float | None:
        """The strictest limit in force, as requests a minute (nominal: the arithmetic of
        the budget uses it); None when nothing limits the exporter."""
        with self._lock:
            self._expire(self._clock())
            rates = [lim.per_minute for lim in self._limits()]
            if self._classic:
                rates.append(60.0 / self._classic)
            return min(rates) if rates else None

    def _expire(self, now: float) -> None:
        if self._stated is not None and now - self._stated_seen >= _forget_after(self._stated):
            log.info("the API has not restated its rate limit for a while; forgetting it",
                     extra={"fields": {"requests_per_minute": round(
                         self._stated.per_minute, 1)}})
            self._stated = None
            self._recompute()
        if self._estimated is not None and now >= self._estimated_until:
            log.info("no 429 for a while; dropping the estimated API rate limit",
                     extra={"fields": {"requests_per_minute": round(
                         self._estimated.per_minute, 1)}})
            self._estimated = None
            self._recompute()

    def _slot(self, now: float) -> float:
        self._expire(now)
        start = max(now, self._paused_until)
        if self._interval <= 0:
            return start
        return max(start, self._tat - self._tolerance)

    def _take(self, now: float) -> None:
        if self._interval > 0:
            self._tat = max(self._tat, now) + self._interval

    # -- what the API said ----------------------------------------------------------------

    def _pause(self, now: float, seconds: float) -> None:
        until = now + min(max(seconds, 0.0), MAX_WINDOW + SLACK)
        self._paused_until = max(self._paused_until, until)
        # Released at the pace from zero, one at a time, not as a saved-up burst.
        self._tat = max(self._tat, until + self._tolerance)
        if self._waiters:  # the first in line looks again: it may not wait that long
            self._waiters[0].cond.notify()

    def pause_for(self, seconds: float) -> None:
        """No request leaves for ``seconds`` (a 429's Retry-After)."""
        with self._lock:
            self._pause(self._clock(), seconds)

    def observe(self, limit: float | None, remaining: float | None = None,
                reset_after: float | None = None, window: float | None = None) -> None:
        """An answer's ``X-RateLimit-Limit``, ``-Remaining``, seconds until ``-Reset`` and
        ``-Window`` (seconds; 60 when absent), each None when not sent."""
        with self._lock:
            now = self._clock()
            span = bounded(1.0, window).window
            if limit is not None and limit > 0:
                self._adopt_stated(bounded(limit, span), remaining, now)
            if remaining is not None and remaining <= 0 and reset_after is not None \
                    and reset_after > 0:
                self._pause(now, min(reset_after, span + SLACK))

    def _adopt_stated(self, new: Limit, remaining: float | None, now: float) -> None:
        cur = self._stated
        if cur == new:
            self._stated_seen = now
            return
        # Per-route limits may differ: keep the lowest until it has not been seen for a while.
        if cur is not None and new.per_minute > cur.per_minute and \
                now - self._stated_seen < _forget_after(cur):
            return
        before = self._interval
        self._stated, self._stated_seen = new, now
        self._recompute()
        log.info("the API states its rate limit; requests are paced to stay under it",
                 extra={"fields": {"limit": new.requests, "window_seconds": new.window}})
        if self._interval > before and remaining is not None:
            # What the window already holds counts as sent just now (the worst case for the
            # windows ahead), so the first minute at the new pace stays under the limit too.
            used = max(0.0, new.requests - remaining)
            self._tat = max(self._tat, now + used * self._interval)

    def accepted(self) -> None:
        """The API answered a request without refusing it (any status but 429)."""
        with self._lock:
            self._accepted.append(self._clock())

    def refused(self, window: float | None = None) -> None:
        """A request was answered 429: pace at what the API accepted from us in the last
        window (``window`` seconds, else the stated one, else 60), when that says anything."""
        with self._lock:
            now = self._clock()
            self._expire(now)
            span = bounded(1.0, window or (
                self._stated.window if self._stated is not None else None)).window
            since = now - span - SLACK
            accepted = sum(1 for t in self._accepted if t > since)
            if accepted < 1:
                return  # nothing of ours got through: the refusal says nothing of our pace
            estimate = bounded(float(accepted), span)
            if self._estimated is None or estimate.per_minute < self._estimated.per_minute:
                self._estimated = estimate
                self._recompute()
                log.warning("the API refused a request (429); pacing at the rate it accepted",
                            extra={"fields": {"requests": estimate.requests,
                                              "window_seconds": span}})
            self._estimated_until = now + _forget_after(estimate)

    # -- taking a slot --------------------------------------------------------------------

    def next_slot_in(self) -> float:
        """Seconds until the bucket sends anything at all (a pause, the pace); 0 if now."""
        with self._lock:
            now = self._clock()
            return max(0.0, self._slot(now) - now)

    def acquire(self, deadline: float | None = None, stop: threading.Event | None = None,
                priority: int = Priority.COUNTS, max_wait: float | None = None) -> bool:
        """Take one slot, waiting as needed. False if ``deadline`` (the bucket's clock) or
        ``stop`` comes first, or, with ``max_wait`` (seconds), as soon as the bucket will
        send nothing to anyone for longer than that (a pause, or a pace that slow): waiting
        behind others who are being sent is not bounded by it. Among waiters the lowest
        ``priority`` goes first."""
        with self._lock:
            now = self._clock()
            if not self._waiters:
                at = self._slot(now)
                if at <= now:
                    self._take(now)
                    return True
                if deadline is not None and at > deadline:
                    return False
                if max_wait is not None and at - now > max_wait:
                    return False
            me = _Waiter((int(priority), next(self._seq)), threading.Condition(self._lock))
            heapq.heappush(self._waiters, me)
            try:
                while True:
                    if stop is not None and stop.is_set():
                        return False
                    now = self._clock()
                    at = self._slot(now)
                    if deadline is not None and (at > deadline or now > deadline):
                        return False
                    if max_wait is not None and at - now > max_wait:
                        return False
                    timeout: float | None = None
                    if self._waiters[0] is me:
                        if at <= now:
                            self._take(now)
                            return True
                        timeout = at - now
                    if stop is not None:
                        timeout = POLL if timeout is None else min(timeout, POLL)
                    if deadline is not None:
                        timeout = max(0.0, min(timeout if timeout is not None else math.inf,
                                               deadline - now))
                    me.cond.wait(timeout)
            finally:
                if self._waiters[0] is me:
                    heapq.heappop(self._waiters)
                else:
                    self._waiters.remove(me)
                    heapq.heapify(self._waiters)
                if self._waiters:
                    self._waiters[0].cond.notify()
