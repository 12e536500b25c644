"""The Mixpeek HTTP client: one Session, a total deadline per attempt, a size cap, and the only
layer that retries.

Every outcome becomes a ``PollResult`` with a ``reason`` from a fixed vocabulary; nothing in
here raises to the caller, so a hostile or broken API cannot take a poll thread down. Error
messages quote the API's error type and message (truncated, control characters removed) but
never a request header, so the key cannot reach a log line through this module.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import requests
from requests.auth import AuthBase

from exporter import __version__
from exporter.mixpeek.deadline import DeadlineAdapter, total_deadline
from exporter.mixpeek.models import (
    InvalidResponse,
    ListPage,
    NamespaceCounts,
    parse_list_page,
    parse_namespace,
    parse_stats_batch,
)
from exporter.mixpeek.result import PollResult, Result, V
from exporter.ratelimit import TokenBucket
from exporter.settings.schema import MixpeekConfig
from exporter.settings.secrets import Secret
from exporter.state.stats import RequestStats

log = logging.getLogger(__name__)

USER_AGENT = f"mixpeek-exporter/{__version__} (+https://github.com/mixpeek-exporter)"

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


class _Bearer(AuthBase):
    """Sets the header per request; as ``session.auth`` it also stops requests from looking
    for ~/.netrc credentials, which would replace the header."""

    def __init__(self, key: Secret) -> None:
        self._key = key

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Authorization"] = "Bearer " + self._key.reveal()
        return r

    def __repr__(self) -> str:
        return "_Bearer(***)"


@dataclass(frozen=True, slots=True)
class _Attempt:
    body: Any = None
    reason: str | None = None
    message: str = ""
    status: int | None = None
    retry_after: float | None = None
    retry: bool = False


def clean(text: object, limit: int = 200) -> str:
    """API-provided text made safe for a log line: one line, bounded."""
    s = _CONTROL.sub(" ", str(text)).strip()
    return s if len(s) <= limit else s[: limit - 3] + "..."


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait, from delta-seconds or an HTTP date; None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class UnsafeIdentifier(ValueError):
    pass


def namespace_path(identifier: str) -> str:
    """The identifier as one opaque path segment: '/', '?', '#' and '%' can't steer it."""
    if not identifier or set(identifier) <= {"."}:
        # '.' and '..' would be dot-segments whatever their encoding: requests normalises
        # %2E back to '.', and the server would resolve the path upwards.
        raise UnsafeIdentifier(f"namespace identifier {identifier!r} cannot be requested safely")
    return "/v1/namespaces/" + quote(identifier, safe="")


def _error_text(body: Any) -> str:
    """The Mixpeek error envelope, the FastAPI 422 shape, or the older detail.error shape."""
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
        return clean(f"{kind or 'error'}: {msg or ''}{extra}")
    detail = body.get("detail")
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):
        d = detail[0]
        loc = ".".join(str(p) for p in d.get("loc", []) if isinstance(p, str | int))
        return clean(f"validation error: {loc}: {d.get('msg', '')}")
    if isinstance(detail, str):
        return clean(detail)
    return ""


class MixpeekClient:
    def __init__(
        self,
        cfg: MixpeekConfig,
        key: Secret,
        bucket: TokenBucket | None = None,
        stats: RequestStats | None = None,
        stop: threading.Event | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.bucket = bucket or TokenBucket(cfg.max_requests_per_minute)
        self.stats = stats or RequestStats()
        self._stop = stop or threading.Event()
        self._sleep = sleep
        self._host = urlsplit(cfg.base_url).netloc
        self.session = requests.Session()
        # Proxy settings are read from the environment once, here: with trust_env requests
        # re-reads them on every request (about a fifth of a poll's CPU), and would also
        # consult ~/.netrc and REQUESTS_CA_BUNDLE behind our back.
        self.session.proxies.update(requests.utils.get_environ_proxies(cfg.base_url))
        self.session.trust_env = False
        self.session.auth = _Bearer(key)
        self.session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
        if cfg.ca_file is not None:
            self.session.verify = str(cfg.ca_file)
        else:
            self.session.verify = cfg.verify_tls
        adapter = DeadlineAdapter(pool_connections=1, pool_maxsize=max(cfg.max_concurrency, 1),
                                  max_retries=0)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)

    def __repr__(self) -> str:
        return f"MixpeekClient(base_url={self.cfg.base_url!r})"

    def set_key(self, key: Secret) -> None:
        self.session.auth = _Bearer(key)

    def close(self) -> None:
        self.session.close()

    # -- requests with retries ----------------------------------------------------------------

    def _call(self, method: str, path: str, parse: Callable[[Any], V], identifier: str,
              body: Any = None, params: dict[str, str | int] | None = None) -> Result[V]:
        """One logical request: budget, attempts, retries, parsing. Never raises."""
        started = time.monotonic()
        attempts = 0
        backoff = self.cfg.retry_backoff_seconds

        def done(att: _Attempt, value: V | None = None, note: str = "") -> Result[V]:
            return Result(identifier, value, att.reason, att.message + note, att.status,
                          attempts, time.monotonic() - started)
        while True:
            attempts += 1
            if not self.bucket.acquire(stop=self._stop):
                return done(_Attempt(reason="timeout", message="shutting down"))
            att = self._attempt(method, path, body, params)
            if att.reason is None:
                try:
                    return done(att, parse(att.body))
                except InvalidResponse as e:
                    att = _Attempt(reason="invalid_response", status=att.status,
                                   message=f"response does not match the expected schema: {e}")
            if att.reason == "rate_limited" and att.retry_after is not None:
                # Per-key limit: hold every request, not just this one's retry.
                self.bucket.pause_for(min(att.retry_after, self.cfg.retry_after_max_seconds))
            if not att.retry or attempts > self.cfg.max_retries or self._stop.is_set():
                return done(att)
            if att.retry_after is not None:
                if att.retry_after > self.cfg.retry_after_max_seconds:
                    return done(att, note=f"; Retry-After {att.retry_after:.0f}s exceeds "
                                f"retry_after_max_seconds ({self.cfg.retry_after_max_seconds:g}s)")
                wait = att.retry_after
            else:
                # Full jitter: spreads retries of requests that failed together.
                wait = random.uniform(0, backoff)
                backoff = min(backoff * 2, self.cfg.retry_after_max_seconds)
            if self._sleep is not None:
                self._sleep(wait)
            elif self._stop.wait(wait):
                return done(att)

    def get_namespace(self, identifier: str) -> PollResult:
        try:
            path = namespace_path(identifier)
        except UnsafeIdentifier as e:
            return PollResult(identifier, None, "client_error", str(e), None, 0, 0.0)
        return self._call("GET", path, parse_namespace, identifier)

    def list_namespaces_page(self, page_size: int, cursor: str | None = None,
                             offset: int | None = None) -> Result[ListPage]:
        """One page of POST /v1/namespaces/list; value is a ``ListPage``."""
        params: dict[str, str | int] = {"limit": page_size}
        if cursor is not None:
            params["cursor"] = cursor
        if offset:
            params["offset"] = offset
        return self._call("POST", "/v1/namespaces/list", parse_list_page, "namespaces/list",
                          body={}, params=params)

    def stats_batch(self, namespace_ids: list[str]) -> Result[dict[str, NamespaceCounts]]:
        """POST /v1/namespaces/stats/batch (at most 100 ids); value is {id: NamespaceCounts}."""
        return self._call("POST", "/v1/namespaces/stats/batch", parse_stats_batch,
                          "namespaces/stats/batch", body={"namespace_ids": namespace_ids})

    def _attempt(self, method: str, path: str, body: Any = None,
                 params: dict[str, str | int] | None = None) -> _Attempt:
        url = self.cfg.base_url + path
        deadline = time.monotonic() + self.cfg.timeout_seconds
        timeout = (min(self.cfg.timeout_seconds, 10.0), self.cfg.timeout_seconds)
        try:
            with total_deadline(deadline):
                # verify passed per request: requests lets REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE
                # override session.verify, which would silently drop mixpeek.ca_file.
                resp = self.session.request(method, url, json=body, params=params,
                                            timeout=timeout, stream=True, allow_redirects=False,
                                            verify=self.session.verify)
                try:
                    return self._read(resp, deadline)
                finally:
                    resp.close()
        except requests.exceptions.SSLError as e:
            self.stats.record("connection")
            return _Attempt(reason="connection", message=f"TLS error: {_short_exc(e)}")
        except requests.exceptions.Timeout as e:
            self.stats.record("timeout")
            return _Attempt(reason="timeout", retry=True,
                            message=f"no answer within {self.cfg.timeout_seconds:g}s "
                                    f"({type(e).__name__})")
        except (requests.exceptions.ConnectionError,
                requests.exceptions.ChunkedEncodingError,
                requests.exceptions.ContentDecodingError) as e:
            if time.monotonic() >= deadline:
                self.stats.record("timeout")
                return _Attempt(reason="timeout", retry=True,
                                message=f"no complete answer within "
                                        f"{self.cfg.timeout_seconds:g}s (total deadline)")
            self.stats.record("connection")
            return _Attempt(reason="connection", retry=True,
                            message=f"connection failed: {_short_exc(e)}")
        except requests.exceptions.RequestException as e:
            self.stats.record("connection")
            return _Attempt(reason="connection", message=f"request failed: {type(e).__name__}")

    def _read(self, resp: requests.Response, deadline: float) -> _Attempt:
        status = resp.status_code
        remaining = _float_header(resp.headers.get("X-RateLimit-Remaining"))
        self.stats.record(str(status), remaining)
        if 300 <= status < 400:
            target = urlsplit(resp.headers.get("Location", "")).netloc or self._host
            return _Attempt(reason="invalid_response", status=status,
                            message=f"unexpected redirect (HTTP {status}) to {clean(target, 80)}; "
                                    "not followed, so the API key stays with the configured host")
        body_bytes = self._read_capped(resp, deadline)
        if isinstance(body_bytes, _Attempt):
            return body_bytes
        try:
            body = json.loads(body_bytes) if body_bytes else None
            parse_error = ""
        except (ValueError, UnicodeDecodeError) as e:
            body, parse_error = None, type(e).__name__
        if 200 <= status < 300:
            if parse_error or body is None:
                return _Attempt(reason="invalid_response", status=status,
                                message=f"HTTP {status} body is not JSON "
                                        f"({parse_error or 'empty'})")
            return _Attempt(body=body, status=status)
        detail = _error_text(body)
        msg = f"HTTP {status}" + (f" {detail}" if detail else "")
        retry_after = parse_retry_after(resp.headers.get("Retry-After"))
        if status == 401:
            return _Attempt(reason="unauthorized", status=status, message=msg)
        if status == 403:
            return _Attempt(reason="forbidden", status=status, message=msg)
        if status == 404:
            return _Attempt(reason="not_found", status=status, message=msg)
        if status == 429:
            retryable = not (isinstance(body, dict) and _details(body).get("retryable") is False)
            if retry_after is None:
                ra = _details(body).get("retry_after_seconds", _details(body).get("retry_after"))
                if isinstance(ra, int | float) and not isinstance(ra, bool) and ra >= 0:
                    retry_after = float(ra)
            return _Attempt(reason="rate_limited", status=status, message=msg,
                            retry_after=retry_after, retry=retryable)
        if status == 503:
            return _Attempt(reason="server_error", status=status, message=msg,
                            retry_after=retry_after, retry=True)
        if status >= 500:
            return _Attempt(reason="server_error", status=status, message=msg)
        return _Attempt(reason="client_error", status=status, message=msg)

    def _read_capped(self, resp: requests.Response, deadline: float) -> bytes | _Attempt:
        cap = self.cfg.max_response_bytes
        declared = _float_header(resp.headers.get("Content-Length"))
        if declared is not None and declared > cap:
            return _Attempt(reason="invalid_response", status=resp.status_code,
                            message=f"response of {declared:.0f} bytes exceeds "
                                    f"max_response_bytes ({cap})")
        chunks: list[bytes] = []
        size = 0
        for chunk in resp.iter_content(chunk_size=65536):
            size += len(chunk)
            if size > cap:
                return _Attempt(reason="invalid_response", status=resp.status_code,
                                message=f"response exceeds max_response_bytes ({cap})")
            if time.monotonic() > deadline:
                raise requests.exceptions.ConnectionError("total deadline passed")
            chunks.append(chunk)
        return b"".join(chunks)


def _details(body: Any) -> dict[str, Any]:
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and isinstance(err.get("details"), dict):
            return err["details"]
    return {}


def _float_header(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        f = float(value)
    except ValueError:
        return None
    return f if f == f and abs(f) != float("inf") else None


def _short_exc(e: BaseException) -> str:
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
