"""What an answer says about the key's rate limit, for the request budget (exporter.ratelimit).

Documented (rate-limits-quotas): every answer carries ``X-RateLimit-Limit``,
``X-RateLimit-Remaining``, ``X-RateLimit-Reset`` (a Unix timestamp) and ``X-RateLimit-Window``
(seconds); a 429 carries ``Retry-After`` and ``error.details{limit, window: "1m",
retry_after}``. Whatever is absent or unreadable is simply not reported; what is read is
bounded by the budget (exporter.ratelimit: windows at most an hour, paces at least one request
a minute), so no statement of the API's can stop polling for good.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any

from exporter.mixpeek.errors import error_details
from exporter.ratelimit import TokenBucket

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_WINDOW = re.compile(r"([0-9]{1,12})([smh])", re.ASCII)  # str.isdigit() takes "²" too


def number(value: str | None) -> float | None:
    """A header as a finite number; None when absent or not one."""
    if value is None:
        return None
    try:
        f = float(value)
    except ValueError:
        return None
    return f if f == f and abs(f) != float("inf") else None


def reset_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds until ``X-RateLimit-Reset``. Documented as a Unix timestamp; a small number is
    read as seconds from now, as some APIs send it."""
    reset = number(value)
    if reset is None:
        return None
    return reset - (time.time() if now is None else now) if reset > 1e9 else reset


def window_seconds(value: Any) -> float | None:
    """A window as a 429 body gives it: seconds, or ``"1m"``, ``"60s"``, ``"1h"``."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value) if value > 0 else None
    match = _WINDOW.fullmatch(value) if isinstance(value, str) else None
    if match is not None:
        return float(match[1]) * _UNITS[match[2]] or None
    return None


def observe(bucket: TokenBucket, headers: Mapping[str, str], status: int) -> float | None:
    """Report an answer of HTTP ``status`` and its ``X-RateLimit-*`` headers to ``bucket``
    (a 429 counts as refused, see ``refused``, any other as accepted); returns
    ``X-RateLimit-Remaining`` (None when not sent) for the request counters."""
    remaining = number(headers.get("X-RateLimit-Remaining"))
    if status != 429:
        bucket.accepted()
    bucket.observe(number(headers.get("X-RateLimit-Limit")), remaining,
                   reset_after(headers.get("X-RateLimit-Reset")),
                   number(headers.get("X-RateLimit-Window")))
    return remaining


def refused(bucket: TokenBucket, headers: Mapping[str, str], body: Any) -> None:
    """Report a 429 (after ``observe``, which counts no 429 as accepted). Without
    ``X-RateLimit-Limit``, the body's ``error.details.limit`` and ``window`` stand in for it."""
    window = number(headers.get("X-RateLimit-Window"))
    if headers.get("X-RateLimit-Limit") is None:
        details = error_details(body)
        limit = details.get("limit")
        window = window or window_seconds(details.get("window"))
        if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0:
            bucket.observe(float(limit), window=window)
    bucket.refused(window)
