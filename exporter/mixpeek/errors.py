"""What went wrong with a request, made safe for one log line: an API error answer, or a
transport exception.

Mixpeek answers errors in three shapes: its envelope (``error{type, message, details}``), the
older ``detail.error`` and FastAPI's 422 (``detail[{loc, msg}]``). Text from there is the API's,
so it is cut to one bounded line before it reaches a Result message.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def clean(text: object, limit: int = 200) -> str:
    """API-provided text made safe for a log line: one line, at most ``limit`` characters."""
    # Lone surrogates (undecodable bytes, see fields.decode_json) would make the log write fail.
    s = _CONTROL.sub(" ", str(text)).encode("utf-8", "replace").decode("utf-8").strip()
    return s if len(s) <= limit else s[: limit - 3] + "..."


def error_details(body: Any) -> dict[str, Any]:
    """``error.details`` of the envelope, or {} (e.g. retryable, retry_after_seconds)."""
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and isinstance(err.get("details"), dict):
            return err["details"]
    return {}


# Enough to hold any real message; cut before scrubbing only this far, so that a key echoed
# near the end still has 8+ of its characters inside the window the scrubber sees.
_RAW_LIMIT = 4096


def error_text(body: Any, scrub: Callable[[str], str] = str) -> str:
    """``type: message (location: message)`` from any of the three shapes; "" if none.

    ``scrub`` runs on the text before it is cut to one line: a secret cut in half first
    would leave a fragment the scrubber no longer recognises."""
    raw = _error_raw(body)
    return clean(scrub(raw[:_RAW_LIMIT])) if raw else ""


def _error_raw(body: Any) -> str:
    if not isinstance(body, dict):
        return ""
    err = body.get("error")
    if not isinstance(err, dict) and isinstance(body.get("detail"), dict):
        err = body["detail"].get("error")
    if isinstance(err, dict):
        kind, msg = err.get("type"), err.get("message")
        details = err.get("details")
        extra = ""
        if isinstance(details, dict) and isinstance(details.get("validation_errors"), list):
            first = details["validation_errors"][:1]
            if first and isinstance(first[0], dict):
                extra = f" ({first[0].get('location', '')}: {first[0].get('message', '')})"
        return f"{kind or 'error'}: {msg or ''}{extra}"
    detail = body.get("detail")
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):
        d = detail[0]
        loc = ".".join(str(p) for p in d.get("loc", []) if isinstance(p, str | int))
        return f"validation error: {loc}: {d.get('msg', '')}"
    if isinstance(detail, str):
        return detail
    return ""


def retry_after_hint(body: Any) -> float | None:
    """The body's own wait hint (``details.retry_after_seconds`` or ``retry_after``), seconds."""
    details = error_details(body)
    ra = details.get("retry_after_seconds", details.get("retry_after"))
    if isinstance(ra, int | float) and not isinstance(ra, bool) and 0 <= ra < float("inf"):
        return float(ra)
    return None


def short_exception(e: BaseException) -> str:
    """The innermost cause, without the URL-and-pool noise urllib3 wraps around it."""
    inner: BaseException = e
    while True:
        nxt = inner.__cause__ or inner.__context__
        if nxt is None or nxt is inner:
            break
        inner = nxt
    args = getattr(e, "args", ())
    if args and hasattr(args[0], "reason"):
        inner = args[0].reason or inner
    text = str(inner)
    text = re.sub(r"<urllib3[^>]*>:?\s*", "", text)
    return clean(f"{type(inner).__name__}: {text}", 160)
