"""Which outcomes of an attempt are tried again, and after how long: a pure function.

The client reports what one attempt produced as an ``Outcome``; ``RetryPolicy.decide`` says
whether to try again, how long to wait first, whether the shared request budget pauses (a 429
limits the whole key), and, when it gives up early, why. Changing which outcomes are retried
means changing this module only. Nothing here sleeps, sends or reads a clock it is not given.

A retry waits in the poll's worker, which the other namespaces share, so no wait is longer
than ``sleep_max_seconds``: when the API asks for more (a Retry-After), the poll ends now with
its verdict and the message says when the API asked to be tried again; the next poll does.
A 429's Retry-After still pauses the shared budget (up to ``retry_after_max_seconds``).
"""

from __future__ import annotations

import email.utils
import math
import random
import re
from collections.abc import Callable
from dataclasses import dataclass

# Transport failures (Outcome.transport), as the client classifies them.
TIMEOUT = "timeout"  # no answer within the per-read timeout or the total deadline
BROKEN = "broken"  # refused, reset, or cut off mid-body: the next attempt may well work
TLS = "tls"  # the handshake failed: the same certificate will fail again
REQUEST = "request"  # the request could not be made at all (bad URL, proxy setup)

_RETRIED_TRANSPORT = frozenset({TIMEOUT, BROKEN})
_RETRIED_STATUS = frozenset({429, 503})
# delta-seconds is ASCII digits (RFC 9110); str.isdigit() also takes "²", which float() refuses.
_DELTA_SECONDS = re.compile(r"[0-9]+", re.ASCII)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt produced, as far as retrying cares. ``reason`` None means success."""

    reason: str | None
    status: int | None = None
    transport: str | None = None  # one of TIMEOUT, BROKEN, TLS, REQUEST; None if HTTP answered
    retry_after_header: str | None = None  # the Retry-After header, verbatim
    retry_after_hint: float | None = None  # error.details.retry_after(_seconds), seconds
    api_retryable: bool | None = None  # error.details.retryable, when the API says


@dataclass(frozen=True, slots=True)
class Decision:
    retry: bool
    wait: float = 0.0  # seconds before the next attempt
    pause_budget: float | None = None  # seconds every request waits (429 with Retry-After)
    note: str = ""  # appended to the failure message when giving up for a policy reason
    backoff: bool = False  # the wait is a jittered backoff (the next one doubles)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait, from delta-seconds or an HTTP date (``now``: Unix seconds); None if
    absent or unreadable (never raises). A date in the past is 0; a huge delay is inf."""
    if not value:
        return None
    value = value.strip(" \t")
    if _DELTA_SECONDS.fullmatch(value):
        return float(value) if len(value) < 300 else math.inf
    try:
        when = email.utils.parsedate_to_datetime(value)
        if when is None or when.tzinfo is None:
            return None
        return max(0.0, when.timestamp() - now)
    except (TypeError, ValueError, IndexError, OverflowError, OSError):
        return None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_retries: int  # attempts after the first
    backoff_seconds: float  # full-jitter ceiling of the first backoff; doubles per backoff
    retry_after_max_seconds: float  # longer Retry-After: give up now; also the backoff cap
    sleep_max_seconds: float = math.inf  # the longest wait in a worker; longer: give up now

    def retried(self, outcome: Outcome) -> bool:
        """Whether this kind of outcome is worth another attempt at all."""
        if outcome.reason is None:
            return False
        if outcome.transport is not None:
            return outcome.transport in _RETRIED_TRANSPORT
        if outcome.status == 429:
            return outcome.api_retryable is not False
        return outcome.status in _RETRIED_STATUS

    def retry_after(self, outcome: Outcome, now: float) -> float | None:
        """Seconds the API asked us to wait: the header wins over the body's hint."""
        if outcome.status not in _RETRIED_STATUS:
            return None
        header = parse_retry_after(outcome.retry_after_header, now)
        if header is not None:
            return header
        return outcome.retry_after_hint if outcome.status == 429 else None

    def decide(self, outcome: Outcome, attempts: int, backoffs: int, now: float,
               stopping: bool = False,
               jitter: Callable[[float, float], float] = random.uniform) -> Decision:
        """After attempt number ``attempts`` (1-based), of which ``backoffs`` earlier waits were
        jittered backoffs: try again, and after how long? ``now`` is Unix seconds (for an
        HTTP-date Retry-After); ``jitter(a, b)`` draws the backoff."""
        after = self.retry_after(outcome, now)
        pause = None
        if outcome.status == 429 and after is not None:
            # The limit is per key: hold every request, not just this one's retry.
            pause = min(after, self.retry_after_max_seconds)
        if not self.retried(outcome) or attempts > self.max_retries or stopping:
            return Decision(False, pause_budget=pause)
        if after is not None:
            if after > self.retry_after_max_seconds:
                return Decision(False, pause_budget=pause,
                                note=f"; Retry-After {after:.0f}s exceeds retry_after_max_seconds "
                                     f"({self.retry_after_max_seconds:g}s)")
            if after > self.sleep_max_seconds:
                return Decision(False, pause_budget=pause,
                                note=f"; the API asked to retry in {after:.0f}s (Retry-After), "
                                     f"longer than a poll waits ({self.sleep_max_seconds:g}s): "
                                     "the next poll tries again")
            return Decision(True, after, pause)
        # Full jitter spreads the retries of requests that failed together.
        ceiling = min(self.backoff_seconds * 2 ** backoffs, self.retry_after_max_seconds)
        if backoffs == 0:
            ceiling = self.backoff_seconds  # as configured, even above the cap
        ceiling = min(ceiling, self.sleep_max_seconds)
        return Decision(True, jitter(0, ceiling), pause, backoff=True)
