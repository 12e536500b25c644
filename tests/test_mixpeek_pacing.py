"""Pacing and retries against what a hostile or broken API can send: no statement about its
rate limit stops polling for good, no wait holds a poll worker for long, and a response that
breaks HTTP is the API's fault. Real sockets on loopback (the fake API counts the requests
that reach it); the budget's clock is faked where an hour has to pass."""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from exporter.mixpeek.client import MixpeekClient
from exporter.polling.poller import Poller
from exporter.ratelimit import TokenBucket
from exporter.settings.schema import MixpeekConfig
from exporter.settings.secrets import Secret
from exporter.state.store import Store
from tests.harness import RawServer

KEY = "sk_live_pacing_0a1b2c3d4e"
Route = Callable[[str], bytes]


def answer(status: int, body: Any, headers: dict[str, str] | None = None,
           raw: bytes | None = None) -> bytes:
    data = json.dumps(body).encode() if raw is None else raw
    head = [f"HTTP/1.1 {status} X", "Content-Type: application/json", "Connection: close"]
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if raw is None:
        head.append(f"Content-Length: {len(data)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + data


def ok(ns: str) -> dict[str, Any]:
    return {"namespace_id": ns, "namespace_name": ns[3:], "document_count": 5}


class FakeAPI(RawServer):
    """A raw-socket HTTP server: ``route(path)`` gives the bytes to answer; it counts the
    requests per path and sets ``event(path)`` as each arrives."""

    def __init__(self, route: Route) -> None:
        self.route = route
        self.hits: dict[str, int] = {}
        self.arrived: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        super().__init__()

    def event(self, path: str) -> threading.Event:
        with self._lock:
            return self.arrived.setdefault(path, threading.Event())

    def serve(self, conn: socket.socket, head: bytes) -> None:
        path = head.split(b" ", 2)[1].decode()
        with self._lock:
            self.hits[path] = self.hits.get(path, 0) + 1
        self.event(path).set()
        conn.sendall(self.route(path))


@pytest.fixture
def api_factory() -> Iterator[Callable[[Route], FakeAPI]]:
    made: list[FakeAPI] = []

    def make(route: Route) -> FakeAPI:
        made.append(FakeAPI(route))
        return made[-1]
    yield make
    for a in made:
        a.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def ns_of(path: str) -> str:
    m = re.fullmatch(r"/v1/namespaces/([^/?]+)", path)
    return m[1] if m else ""


# -- what the API says about its limit is bounded --------------------------------------------

HOUR = 3600.0
POISON = {
    # One good answer stating a limit of 1 in a window of 30,000 years.
    "header": lambda ns: answer(200, ok(ns), {"X-RateLimit-Limit": "1",
                                              "X-RateLimit-Window": "1e12"}),
    # A 429 whose body states 1 in 114,000 years.
    "body429": lambda ns: answer(429, {"error": {"type": "RateLimit", "message": "slow down",
                                                 "details": {"limit": 1,
                                                             "window": "999999999h"}}}),
    # Nothing left until a reset 3,000 years ahead.
    "remaining0": lambda ns: answer(200, ok(ns), {
        "X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "0",
        "X-RateLimit-Window": "1e12", "X-RateLimit-Reset": "1e11"}),
}


@pytest.mark.parametrize("variant", sorted(POISON))
def test_one_absurd_rate_limit_statement_does_not_stop_polling(
        api_factory: Callable[[Route], FakeAPI], variant: str) -> None:
    poisoned = threading.Event()

    def route(path: str) -> bytes:
        if not poisoned.is_set():
            poisoned.set()
            return POISON[variant](ns_of(path))
        return answer(500, {"error": {"type": "Down", "message": "API is down"}})
    api = api_factory(route)
    clock = Clock()
    stop = threading.Event()
    cfg = MixpeekConfig(base_url=api.url, max_requests_per_minute=0, max_retries=0,
                        timeout_seconds=2)
    client = MixpeekClient(cfg, Secret(KEY), TokenBucket(0, clock=clock, strict=True),
                           stop=stop)
    client.get_namespace("ns_a")
    # The budget's pace is never slower than one request a minute (the interval the
    # exporter publishes and plans with follows from it) ...
    assert (client.bucket.limit_per_minute() or 1.0) >= 1.0
    # ... and the next poll ends in a verdict instead of waiting for the budget forever.
    results: list[Any] = []
    t = threading.Thread(target=lambda: results.append(client.get_namespace("ns_b")),
                         daemon=True)
    t.start()
    t.join(20)
    stop.set()
    assert results, "the poll after the statement is still waiting for the request budget"
    r = results[0]
    assert r.reason in ("rate_limited", "server_error"), r
    if r.reason == "rate_limited" and r.status is None:
        assert "rate limit" in r.message and "next poll" in r.message
    # What was learned is forgotten: an hour on, nothing of it holds a request back.
    clock.now += HOUR + 2
    assert client.bucket.acquire(deadline=clock.now)
    assert client.bucket.limit_per_minute() is None


def test_a_paused_budget_ends_the_poll_as_rate_limited_without_a_request(
        api_factory: Callable[[Route], FakeAPI]) -> None:
    api = api_factory(lambda path: answer(200, ok(ns_of(path))))
    cfg = MixpeekConfig(base_url=api.url, max_requests_per_minute=0, timeout_seconds=2)
    stop = threading.Event()
    client = MixpeekClient(cfg, Secret(KEY), TokenBucket(0, strict=True), stop=stop)
    client.bucket.pause_for(600)  # a 429's Retry-After: the whole key waits
    results: list[Any] = []
    t = threading.Thread(target=lambda: results.append(client.get_namespace("ns_a")),
                         daemon=True)
    t.start()
    t.join(20)
    stop.set()
    assert results, "the poll is waiting out the pause in its worker"
    r = results[0]
    assert r.reason == "rate_limited" and r.attempts == 0
    assert "rate limit" in r.message and "next poll tries again" in r.message
    assert api.hits == {}


def test_the_poll_duration_leaves_out_the_wait_for_the_budget(
        api_factory: Callable[[Route], FakeAPI]) -> None:
    api = api_factory(lambda path: answer(200, ok(ns_of(path))))
    cfg = MixpeekConfig(base_url=api.url, max_requests_per_minute=0, timeout_seconds=5)
    client = MixpeekClient(cfg, Secret(KEY), TokenBucket(0, strict=True))
    client.bucket.pause_for(1.5)  # short enough to wait for
    r = client.get_namespace("ns_a")
    assert r.ok and api.hits == {"/v1/namespaces/ns_a": 1}
    # A loopback answer takes milliseconds; the 1.5 s in the budget are not the API's.
    assert r.duration < 1.5


# -- a retry wait never holds the shared poll workers --------------------------------------------


def test_long_retry_after_on_every_worker_does_not_hold_up_another_namespace(
        api_factory: Callable[[Route], FakeAPI]) -> None:
    busy = ["ns_b1", "ns_b2"]

    def route(path: str) -> bytes:
        if ns_of(path) in busy:
            return answer(503, {"error": {"message": "busy"}}, {"Retry-After": "30"})
        return answer(200, ok(ns_of(path)))
    api = api_factory(route)
    stop = threading.Event()
    cfg = MixpeekConfig(base_url=api.url, max_requests_per_minute=0, max_retries=2,
                        timeout_seconds=2, max_concurrency=len(busy),
                        retry_after_max_seconds=30)
    client = MixpeekClient(cfg, Secret(KEY), stop=stop)
    store = Store([*busy, "ns_good"], 600)
    poller = Poller(client, store, 5, len(busy), stop=stop)
    cycle = threading.Thread(target=poller.run_cycle, daemon=True)
    cycle.start()
    try:
        # Every worker got a 503 asking for 30 s; the namespace behind them is still polled.
        assert api.event("/v1/namespaces/ns_good").wait(20), \
            "the healthy namespace waited behind the retry waits"
        cycle.join(20)
        assert not cycle.is_alive()
    finally:
        stop.set()
        poller.stop(5)
    for ns in busy:
        assert api.hits["/v1/namespaces/" + ns] == 1, "retried after sleeping in the worker"
        st = store.state(ns)
        assert st is not None and st.up is False and st.reason == "server_error"
        assert "asked to retry in 30s" in st.message and "next poll" in st.message
    good = store.state("ns_good")
    assert good is not None and good.up is True


# -- a response that breaks HTTP is the API's fault ---------------------------------------------


@pytest.mark.parametrize("chunk", [b"-5", b"zz", b"1" * 200])
def test_a_garbled_chunk_size_is_a_connection_verdict(
        api_factory: Callable[[Route], FakeAPI], chunk: bytes) -> None:
    body = chunk + b"\r\nhello\r\n0\r\n\r\n"
    api = api_factory(lambda path: answer(200, None, {"Transfer-Encoding": "chunked"},
                                          raw=body))
    cfg = MixpeekConfig(base_url=api.url, max_requests_per_minute=0, max_retries=0,
                        timeout_seconds=2)
    r = MixpeekClient(cfg, Secret(KEY)).get_namespace("ns_a")
    assert r.reason == "connection", r
    assert "malformed response from the API" in r.message or "connection failed" in r.message
    assert KEY not in r.message
