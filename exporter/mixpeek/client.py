"""The Mixpeek HTTP client: one Session, and one boundary per logical request.

``_call`` is that boundary: every attempt inside it (budget, HTTP, size cap, JSON, model)
ends in a ``Result`` with a ``reason`` from a closed set, whatever goes wrong, including
exceptions nobody expected (``exporter_error``). So a hostile or broken API, or a bug, cannot
take a poll thread down or leave a namespace without a verdict. Which outcomes are tried again
is decided by ``exporter.mixpeek.retry``; this module only runs attempts and reports them.

Every answer's ``X-RateLimit-*`` headers, and every 429, are reported to the request budget
(exporter.ratelimit), which paces all requests by them; each request waits there with the
``Priority`` its caller gives (counts before metadata before discovery).

No request holds its worker for long: it does not wait for a budget that will send nothing
for longer than ``budget_wait`` seconds (the API paused the key, or stated a pace that slow),
and a retry does not wait longer than ``RetryPolicy.sleep_max_seconds``; either way the
request ends now as ``rate_limited`` (or the verdict of its last attempt) and the next poll
tries again. A Result's ``duration`` is the time of its attempts and the retry waits between
them: not the time spent waiting for the exporter's own request budget.

A response the API garbles below HTTP (a negative chunk size, a broken status line) is the
API's fault: ``connection``, with the message saying the response was malformed; only faults
of the exporter's own are ``exporter_error``.

Messages quote the API's error type and message (bounded, one line) but never a request
header, so the key cannot reach a log line through this module.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from exporter import __version__
from exporter.mixpeek import limits, retry
from exporter.mixpeek.answer import (
    Attempt,
    MalformedResponse,
    check_deadline,
    error_outcome,
    invalid,
    read_capped,
)
from exporter.mixpeek.auth import Bearer, UnsendableKey
from exporter.mixpeek.deadline import DeadlineAdapter, total_deadline
from exporter.mixpeek.errors import (
    clean,
    error_text,
    short_exception,
)
from exporter.mixpeek.fields import decode_json
from exporter.mixpeek.models import (
    InvalidResponse,
    ListPage,
    NamespaceCounts,
    WrongNamespace,
    check_identity,
    parse_list_page,
    parse_namespace,
    parse_stats_batch,
)
from exporter.mixpeek.result import PollResult, Result, V, failure
from exporter.mixpeek.retry import Outcome, RetryPolicy
from exporter.ratelimit import SLACK, Priority, TokenBucket
from exporter.settings.identifiers import identifier_problem
from exporter.settings.schema import MixpeekConfig
from exporter.settings.secrets import Secret
from exporter.state.stats import RequestStats

log = logging.getLogger(__name__)

USER_AGENT = f"mixpeek-exporter/{__version__} (+https://github.com/mixpeek-exporter)"


class UnsafeIdentifier(ValueError):
    pass


def namespace_path(identifier: str) -> str:
    """The identifier as one opaque path segment: '/', '?', '#' and '%' can't steer it.
    Raises UnsafeIdentifier for what the identifier rule refuses (dot-segments included)."""
    problem = identifier_problem(identifier)
    if problem is not None:
        raise UnsafeIdentifier(f"not requested: the namespace identifier {problem}")
    return "/v1/namespaces/" + quote(identifier, safe="")


class MixpeekClient:
    def __init__(
        self,
        cfg: MixpeekConfig,
        key: Secret,
        bucket: TokenBucket | None = None,
        stats: RequestStats | None = None,
        stop: threading.Event | None = None,
        sleep: Callable[[float], None] | None = None,
        poll_interval: float | None = None,
    ) -> None:
        """``poll_interval`` (seconds, ``poll.interval_seconds``): a retry waits at most a
        quarter of it (and at most ``timeout_seconds``) in the poll's worker."""
        self.cfg = cfg
        sleep_max = cfg.timeout_seconds if poll_interval is None else min(
            cfg.timeout_seconds, poll_interval / 4)
        self.policy = RetryPolicy(cfg.max_retries, cfg.retry_backoff_seconds,
                                  cfg.retry_after_max_seconds, sleep_max)
        self.bucket = bucket or TokenBucket(cfg.max_requests_per_minute, strict=True)
        # The configured budget's own gap between requests is always worth waiting for.
        rpm = cfg.max_requests_per_minute
        self.budget_wait = max(cfg.timeout_seconds, 2 * (60.0 + SLACK) / rpm if rpm > 0 else 0)
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
        self._auth = Bearer(key)
        self.session.auth = self._auth
        self.session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
        if cfg.ca_file is not None:
            self.session.verify = str(cfg.ca_file)
        else:
            self.session.verify = cfg.verify_tls
        # Counts, the metadata lane and a discovery listing each keep connections open.
        adapter = DeadlineAdapter(pool_connections=1,
                                  pool_maxsize=2 * max(cfg.max_concurrency, 1) + 1, max_retries=0)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)

    def __repr__(self) -> str:
        return f"MixpeekClient(base_url={self.cfg.base_url!r})"

    def set_key(self, key: Secret) -> None:
        self._auth = Bearer(key)
        self.session.auth = self._auth

    def close(self) -> None:
        self.session.close()

    # -- the three endpoints ------------------------------------------------------------------

    def get_namespace(self, identifier: str,
                      priority: Priority = Priority.COUNTS) -> PollResult:
        """GET /v1/namespaces/{identifier}; the answer must be about that namespace.
        ``priority``: METADATA when only its metadata is wanted (counts come in batches)."""
        try:
            path = namespace_path(identifier)
        except UnsafeIdentifier as e:
            return failure(identifier, "client_error", str(e))

        def parse(body: Any) -> Any:
            return check_identity(identifier, parse_namespace(body))
        return self._call("GET", path, parse, identifier, priority=priority)

    def list_namespaces_page(self, page_size: int, cursor: str | None = None,
                             offset: int | None = None,
                             priority: Priority = Priority.DISCOVERY) -> Result[ListPage]:
        """One page of POST /v1/namespaces/list; value is a ``ListPage``. Asks for the
        ``summary`` view (API 0.82: no extractors or indexes, ~93% smaller; older APIs ignore
        it): only each namespace's identity is read."""
        params: dict[str, str | int] = {"limit": page_size, "view": "summary"}
        if cursor is not None:
            params["cursor"] = cursor
        if offset:
            params["offset"] = offset
        return self._call("POST", "/v1/namespaces/list", parse_list_page, "namespaces/list",
                          body={}, params=params, priority=priority)

    def stats_batch(self, namespace_ids: list[str]) -> Result[dict[str, NamespaceCounts]]:
        """POST /v1/namespaces/stats/batch (at most 100 ids); value is {id: NamespaceCounts}."""
        return self._call("POST", "/v1/namespaces/stats/batch", parse_stats_batch,
                          "namespaces/stats/batch", body={"namespace_ids": namespace_ids})

    # -- one logical request: the boundary ----------------------------------------------------

    def _call(self, method: str, path: str, parse: Callable[[Any], V], identifier: str,
              body: Any = None, params: dict[str, str | int] | None = None,
              priority: Priority = Priority.COUNTS) -> Result[V]:
        """Budget, attempts, retries, parsing. Never raises: every exception is a Result."""
        attempts = 0
        spent = 0.0  # seconds in attempts and retry waits, not in the budget
        started = time.monotonic()

        def done(reason: str | None, message: str, status: int | None = None,
                 value: V | None = None) -> Result[V]:
            return Result(identifier, value, reason, message, status, attempts,
                          spent + time.monotonic() - started)
        try:
            backoffs = 0
            while True:
                attempts += 1
                if not self.bucket.acquire(stop=self._stop, priority=priority,
                                           max_wait=self.budget_wait):
                    started = time.monotonic()
                    if self._stop.is_set():
                        return done("timeout", "shutting down")
                    attempts -= 1  # not sent
                    return done("rate_limited", self._budget_message())
                started = time.monotonic()
                att = self._attempt(method, path, body, params)
                if att.outcome.reason is None:
                    try:
                        return done(None, "", att.outcome.status, parse(att.body))
                    except WrongNamespace as e:
                        att = invalid(att.outcome.status, f"wrong namespace: {e}")
                    except InvalidResponse as e:
                        att = invalid(att.outcome.status,
                                      f"response does not match the expected schema: {e}")
                d = self.policy.decide(att.outcome, attempts, backoffs, time.time(),
                                       stopping=self._stop.is_set())
                spent += time.monotonic() - started
                started = time.monotonic()
                if d.pause_budget is not None:
                    self.bucket.pause_for(d.pause_budget)
                if not d.retry:
                    return done(att.outcome.reason, att.message + d.note, att.outcome.status)
                backoffs += d.backoff
                if self._sleep is not None:
                    self._sleep(d.wait)
                elif self._stop.wait(d.wait):
                    return done(att.outcome.reason, att.message, att.outcome.status)
                spent += time.monotonic() - started
        except UnsendableKey as e:
            return done("exporter_error", str(e))
        except Exception as e:
            log.debug("unexpected exception in a request", exc_info=True,
                      extra={"fields": {"request": identifier}})
            text = self._auth.redact(str(e))
            return done("exporter_error", clean(f"exporter error: {type(e).__name__}: {text}"))

    def _budget_message(self) -> str:
        return (f"not sent: the API's rate limit lets no request leave for "
                f"{self.bucket.next_slot_in():.0f}s (a pause it asked for, or the pace it "
                f"states), longer than a request waits ({self.budget_wait:g}s); the next poll "
                "tries again")

    # -- one attempt ----------------------------------------------------------------------

    def _attempt(self, method: str, path: str, body: Any = None,
                 params: dict[str, str | int] | None = None) -> Attempt:
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
            return self._transport(retry.TLS, f"TLS error: {short_exception(e)}")
        except requests.exceptions.Timeout as e:
            return self._transport(retry.TIMEOUT, f"no answer within "
                                   f"{self.cfg.timeout_seconds:g}s ({type(e).__name__})")
        except (requests.exceptions.ConnectionError,
                requests.exceptions.ChunkedEncodingError,
                requests.exceptions.ContentDecodingError) as e:
            if time.monotonic() >= deadline:  # the reaper cut the connection
                return self._transport(retry.TIMEOUT, f"no complete answer within "
                                       f"{self.cfg.timeout_seconds:g}s (total deadline)")
            return self._transport(retry.BROKEN, f"connection failed: {short_exception(e)}")
        except requests.exceptions.RequestException as e:
            # Only the type: some of these quote a header value.
            return self._transport(retry.REQUEST, f"request failed: {type(e).__name__}")
        except MalformedResponse as e:
            return self._transport(retry.BROKEN, str(e))
        except OSError as e:  # a socket the reaper shut, or a CA bundle path that is gone
            if time.monotonic() >= deadline:
                return self._transport(retry.TIMEOUT, f"no complete answer within "
                                       f"{self.cfg.timeout_seconds:g}s (total deadline)")
            return self._transport(retry.REQUEST, f"request failed: {short_exception(e)}")

    def _transport(self, kind: str, message: str) -> Attempt:
        reason = "timeout" if kind == retry.TIMEOUT else "connection"
        self.stats.record(reason)
        return Attempt(Outcome(reason, transport=kind), message)

    def _read(self, resp: requests.Response, deadline: float) -> Attempt:
        check_deadline(deadline)
        status = resp.status_code
        self.stats.record(str(status), limits.observe(self.bucket, resp.headers, status))
        if 300 <= status < 400:
            target = urlsplit(resp.headers.get("Location", "")).netloc or self._host
            return invalid(status, f"unexpected redirect (HTTP {status}) to "
                           f"{clean(target, 80)}; not followed, so the API key stays with the "
                           "configured host")
        raw = read_capped(resp, deadline, self.cfg.max_response_bytes)
        if isinstance(raw, Attempt):
            return raw
        try:
            body = self._auth.scrub_json(decode_json(raw), raw) if raw else None
            parse_error = ""
        except (ValueError, RecursionError) as e:  # RecursionError: nested too deeply
            body, parse_error = None, type(e).__name__
        if 200 <= status < 300:
            if parse_error or body is None:
                return invalid(status, f"HTTP {status} body is not JSON "
                                       f"({parse_error or 'empty'})")
            return Attempt(Outcome(None, status), body=body)
        if status == 429:
            limits.refused(self.bucket, resp.headers, body)
        detail = error_text(body, self._auth.redact)
        return Attempt(error_outcome(status, resp.headers, body),
                       f"HTTP {status}" + (f" {detail}" if detail else ""))
