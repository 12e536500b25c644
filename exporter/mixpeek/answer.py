"""One HTTP answer of the Mixpeek API read into an ``Attempt``: the body under its size cap and
the total deadline, and the outcome an error status stands for. No budget, no retries, no key:
exporter.mixpeek.client wires these into its request boundary."""

from __future__ import annotations

import http.client
import time
from dataclasses import dataclass
from typing import Any

import requests

from exporter.mixpeek import limits
from exporter.mixpeek.errors import error_details, retry_after_hint, short_exception
from exporter.mixpeek.retry import Outcome


@dataclass(frozen=True, slots=True)
class Attempt:
    """One HTTP exchange: the JSON body on success, else why not (``outcome.reason``)."""

    outcome: Outcome
    message: str = ""
    body: Any = None


def read_capped(resp: requests.Response, deadline: float, cap: int) -> bytes | Attempt:
    """The body, decoded, at most ``cap`` (max_response_bytes) bytes of it: the cap counts
    decompressed bytes, so a small gzip bomb is cut off like a large body. Raises
    MalformedResponse when the API broke HTTP's framing, ConnectionError past ``deadline``."""
    declared = limits.number(resp.headers.get("Content-Length"))
    if declared is not None and declared > cap:
        return invalid(resp.status_code, f"response of {declared:.0f} bytes exceeds "
                                         f"max_response_bytes ({cap})")
    chunks: list[bytes] = []
    size = 0
    body = resp.iter_content(chunk_size=65536)
    while True:
        try:
            chunk = next(body, None)
        except (ValueError, http.client.HTTPException) as e:
            # Raised by the HTTP parser on what the API sent (a chunk size of -5), not a
            # fault of ours: requests wraps only some of these.
            raise MalformedResponse(
                "connection failed: malformed response from the API while reading its "
                f"body ({short_exception(e)})") from None
        if chunk is None:
            break
        size += len(chunk)
        if size > cap:
            return invalid(resp.status_code, f"response exceeds max_response_bytes ({cap})")
        check_deadline(deadline)
        chunks.append(chunk)
    check_deadline(deadline)
    return b"".join(chunks)


class MalformedResponse(Exception):
    """The response broke HTTP's framing; the message says how (no header values)."""


_REASONS = {401: "unauthorized", 403: "forbidden", 404: "not_found", 429: "rate_limited"}


def check_deadline(deadline: float) -> None:
    """Past the deadline, what was read may be cut short where the reaper shut the socket (a
    head without its Content-Length reads as an empty body): it is a timeout, not an answer."""
    if time.monotonic() >= deadline:
        raise requests.exceptions.ConnectionError("total deadline passed")


def invalid(status: int | None, message: str) -> Attempt:
    return Attempt(Outcome("invalid_response", status), message)


def error_outcome(status: int, headers: Any, body: Any) -> Outcome:
    """What a non-2xx, non-3xx answer stands for: its reason, and what it says about retrying
    (Retry-After, the body's own hint, ``details.retryable``)."""
    retryable = error_details(body).get("retryable")
    return Outcome(_REASONS.get(status, "server_error" if status >= 500 else "client_error"),
                   status, retry_after_header=headers.get("Retry-After"),
                   retry_after_hint=retry_after_hint(body),
                   api_retryable=retryable if isinstance(retryable, bool) else None)
