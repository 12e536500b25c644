"""The request budget (exporter.ratelimit) on a fake clock: a budget of N a minute never lets
more than N through in any 60 s window, bursts included; the API's stated limit and its 429s
slow every sender, who leave one at a time after a pause; counts go before metadata; and the
client reports what the API's answers say about the limit."""

from __future__ import annotations

import random
import threading
import time
from collections import deque

import pytest
import requests_mock

from exporter.mixpeek.client import MixpeekClient, namespace_path
from exporter.ratelimit import Priority, TokenBucket
from exporter.settings.schema import MixpeekConfig
from exporter.settings.secrets import Secret
from tests.harness import wait_until


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def greedy(bucket: TokenBucket, clock: Clock, until: float, step: float = 0.01,
           idle: tuple[float, float] | None = None, seed: int = 0,
           most: int = 1000) -> list[float]:
    """Send whenever the bucket allows (``most`` per step), until ``until``, each answered
    without a refusal; with ``idle``, now and then stop sending for a random while (so bursts
    build up). Returns the send times."""
    rnd = random.Random(seed)
    sent: list[float] = []
    while clock.now < until:
        n = 0
        while n < most and bucket.acquire(deadline=clock.now):
            bucket.accepted()
            sent.append(clock.now)
            n += 1
        if idle is not None and rnd.random() < 0.01:
            clock.now += rnd.uniform(*idle)
        clock.now += step
    return sent


def most_in_any_window(times: list[float], window: float = 60.0) -> int:
    """The largest number of ``times`` in any half-open window (t - window, t]."""
    q: deque[float] = deque()
    best = 0
    for t in times:
        q.append(t)
        while q[0] <= t - window:
            q.popleft()
        best = max(best, len(q))
    return best


@pytest.mark.parametrize("per_minute", [1, 7, 60, 600, 6000])
def test_a_budget_of_n_never_exceeds_n_in_any_60s_window(per_minute: int) -> None:
    clock = Clock()
    bucket = TokenBucket(per_minute, clock=clock, strict=True)
    minutes = 6
    sent = greedy(bucket, clock, clock.now + minutes * 60, step=min(0.05, 30 / per_minute),
                  idle=(1, 90))
    assert most_in_any_window(sent) <= per_minute
    # ... and it is a pace, not a trickle: close to N a minute while sending back to back.
    steady = greedy(bucket, clock, clock.now + 300, step=min(0.05, 30 / per_minute))
    assert len(steady) >= 0.9 * per_minute * 5 - 1


def test_an_explicit_burst_is_inside_the_budget_too() -> None:
    clock = Clock()
    bucket = TokenBucket(120, burst=40, clock=clock, strict=True)
    first = greedy(bucket, clock, clock.now + 0.5)
    assert len(first) == 40, "the burst leaves at once"
    sent = first + greedy(bucket, clock, clock.now + 600, idle=(30, 120))
    assert most_in_any_window(sent) <= 120


def test_the_web_bucket_keeps_its_token_bucket_meaning() -> None:
    clock = Clock()
    bucket = TokenBucket(60, burst=10, clock=clock)  # a token a second, 10 saved at most
    assert len(greedy(bucket, clock, clock.now + 0.5)) == 10
    assert len(greedy(bucket, clock, clock.now + 10)) == 10


def test_the_stated_limit_paces_an_unlimited_budget_counting_what_was_used() -> None:
    clock = Clock()
    bucket = TokenBucket(0, clock=clock, strict=True)
    before = greedy(bucket, clock, clock.now + 0.01, most=4)  # sent before any answer
    bucket.observe(limit=30, remaining=26, window=60)
    # Within ten windows of the statement (the API restates it on every answer; unrestated,
    # it is forgotten after that: see the bounds tests below).
    sent = before + greedy(bucket, clock, clock.now + 590)
    assert most_in_any_window(sent) <= 30
    assert len(sent) >= 30 * 9, "paced at about the stated limit"
    assert bucket.limit_per_minute() == 30


def test_remaining_zero_holds_everyone_until_the_reset() -> None:
    clock = Clock()
    bucket = TokenBucket(0, clock=clock, strict=True)
    bucket.observe(limit=1000, remaining=990, reset_after=30, window=60)
    bucket.observe(limit=1000, remaining=0, reset_after=12, window=60)  # others used it up
    assert not bucket.acquire(deadline=clock.now + 11.9)
    clock.now += 12
    assert bucket.acquire(deadline=clock.now)


def test_a_lower_stated_limit_wins_over_a_higher_one_seen_in_between() -> None:
    clock = Clock()
    bucket = TokenBucket(0, clock=clock, strict=True)
    bucket.observe(limit=60)
    bucket.observe(limit=600)  # another route's limit: the lower one stays
    assert bucket.limit_per_minute() == 60
    clock.now += 11 * 60  # the low one not stated again for ten windows: the new one counts
    bucket.observe(limit=600)
    assert bucket.limit_per_minute() == 600


def test_one_429_slows_every_sender_and_releases_them_one_at_a_time() -> None:
    clock = Clock()
    bucket = TokenBucket(0, clock=clock, strict=True)  # no budget, no stated limit
    sent = greedy(bucket, clock, clock.now + 60, step=2, most=1)  # 30 accepted in a minute
    assert len(sent) == 30
    bucket.acquire(deadline=clock.now)  # the 31st ...
    bucket.refused()  # ... is refused
    bucket.pause_for(5)
    # Every sender waits for the Retry-After, not only the one refused.
    assert not bucket.acquire(deadline=clock.now + 4.9, priority=Priority.METADATA)
    clock.now += 5
    # The waiting senders leave at the pace the API accepted, not all at once.
    assert bucket.acquire(deadline=clock.now)
    assert not bucket.acquire(deadline=clock.now)
    later = greedy(bucket, clock, clock.now + 300)
    assert most_in_any_window(sent + later) <= 31  # 30 accepted per minute, give or take one
    assert bucket.limit_per_minute() == 30


def test_a_429_when_nothing_of_ours_got_through_only_pauses() -> None:
    clock = Clock()
    bucket = TokenBucket(0, clock=clock, strict=True)
    bucket.acquire(deadline=clock.now)
    bucket.refused()  # another client of the key used it up: our pace is not the cause
    bucket.pause_for(3)
    clock.now += 3
    assert bucket.limit_per_minute() is None
    assert len(greedy(bucket, clock, clock.now + 0.05, most=100)) == 500


def test_requests_in_flight_when_a_429_comes_are_not_counted_as_accepted() -> None:
    clock = Clock()
    bucket = TokenBucket(0, clock=clock, strict=True)
    for _ in range(4):  # four polls sent at once ...
        assert bucket.acquire(deadline=clock.now)
    for _ in range(4):  # ... all refused: nothing says the API accepts one a minute
        bucket.refused()
    assert bucket.limit_per_minute() is None


def test_an_estimated_limit_is_forgotten_after_ten_quiet_windows() -> None:
    clock = Clock()
    bucket = TokenBucket(0, clock=clock, strict=True)
    greedy(bucket, clock, clock.now + 9, step=1, most=1)  # 9 accepted ...
    bucket.acquire(deadline=clock.now)
    bucket.refused()  # ... the 10th refused
    assert bucket.limit_per_minute() == 9
    clock.now += 10 * 60 + 1
    assert bucket.limit_per_minute() is None


def test_counts_get_the_next_slot_before_metadata_and_discovery() -> None:
    clock = Clock()
    bucket = TokenBucket(0, clock=clock, strict=True)
    bucket.pause_for(100)
    stop = threading.Event()  # never set: makes waiters look at the (fake) clock often
    order: list[str] = []
    lock = threading.Lock()

    def send(name: str, priority: Priority) -> None:
        assert bucket.acquire(stop=stop, priority=priority)
        with lock:
            order.append(name)

    threads = []
    for name, prio in [("discovery", Priority.DISCOVERY), ("metadata 1", Priority.METADATA),
                       ("counts 1", Priority.COUNTS), ("metadata 2", Priority.METADATA),
                       ("counts 2", Priority.COUNTS)]:
        t = threading.Thread(target=send, args=(name, prio), daemon=True)
        t.start()
        threads.append(t)
        wait_until(lambda: len(bucket._waiters) == len(threads), 10, what=f"{name} waiting")
    clock.now += 100
    for t in threads:
        t.join(20)
    assert order == ["counts 1", "counts 2", "metadata 1", "metadata 2", "discovery"]


def test_a_waiter_gives_up_when_stopped() -> None:
    bucket = TokenBucket(0, strict=True)
    bucket.pause_for(3600)
    stop = threading.Event()
    result: list[bool] = []
    t = threading.Thread(target=lambda: result.append(bucket.acquire(stop=stop)), daemon=True)
    t.start()
    wait_until(lambda: len(bucket._waiters) == 1, 10, what="the caller waiting")
    stop.set()
    t.join(10)
    assert result == [False] and not bucket._waiters


# -- what the API says is bounded --------------------------------------------------------------


@pytest.mark.parametrize(("limit", "window", "per_minute"), [
    (1, 1e12, 1.0),  # 1 in 30,000 years: at least one a minute, and the window an hour
    (1, None, 1.0),  # no window stated: 60 s
    (0.001, 60, 1.0),  # under one request: one
    (30, 0.000001, 1800.0),  # a window under a second: a second
    (120, 3600 * 24, 2.0),  # a day: an hour
])
def test_a_stated_limit_is_bounded(limit: float, window: float | None,
                                   per_minute: float) -> None:
    clock = Clock()
    bucket = TokenBucket(0, clock=clock, strict=True)
    bucket.observe(limit, window=window)
    assert bucket.limit_per_minute() == pytest.approx(per_minute)
    # Never restated: forgotten within the hour.
    clock.now += 3600
    assert bucket.limit_per_minute() is None


def test_no_pause_outlasts_an_hour_and_a_pause_ends_a_capped_wait_at_once() -> None:
    clock = Clock()
    bucket = TokenBucket(0, clock=clock, strict=True)
    bucket.observe(100, remaining=0, reset_after=1e11, window=1e12)
    bucket.pause_for(1e300)
    assert not bucket.acquire(deadline=clock.now + 3600)
    assert not bucket.acquire(max_wait=60), "a capped wait gives up at once"
    clock.now += 3601 + 1
    assert bucket.acquire(deadline=clock.now)


def test_a_429_estimate_never_paces_slower_than_one_a_minute() -> None:
    clock = Clock()
    bucket = TokenBucket(0, clock=clock, strict=True)
    bucket.acquire(deadline=clock.now)
    bucket.accepted()
    clock.now += 3000
    bucket.acquire(deadline=clock.now)
    bucket.refused(window=1e9)  # one of ours accepted in "31 years"
    assert bucket.limit_per_minute() == pytest.approx(1.0)


# -- what the client reports from the API's answers --------------------------------------------

BASE = "https://api.mixpeek.test"


def client_over(bucket: TokenBucket) -> MixpeekClient:
    cfg = MixpeekConfig(base_url=BASE, max_requests_per_minute=0, max_retries=0)
    return MixpeekClient(cfg, Secret("sk_test_ratelimit_0000"), bucket)


def test_the_client_reports_the_stated_limit_to_the_budget() -> None:
    clock = Clock()
    bucket = TokenBucket(0, clock=clock, strict=True)
    with requests_mock.Mocker() as m:
        m.get(BASE + namespace_path("ns_a"), json={"namespace_id": "ns_a", "namespace_name": "a"},
              headers={"X-RateLimit-Limit": "30", "X-RateLimit-Remaining": "29",
                       "X-RateLimit-Window": "60",
                       "X-RateLimit-Reset": str(int(time.time()) + 60)})
        assert client_over(bucket).get_namespace("ns_a").ok
    assert bucket.limit_per_minute() == 30


def test_a_429_body_stands_in_for_missing_headers() -> None:
    clock = Clock()
    bucket = TokenBucket(0, clock=clock, strict=True)
    body = {"success": False, "status": 429, "error": {
        "type": "TooManyRequestsError", "message": "Rate limit exceeded",
        "details": {"limit": 20, "window": "1m", "retry_after": 3}}}
    with requests_mock.Mocker() as m:
        m.get(BASE + namespace_path("ns_a"), status_code=429, json=body,
              headers={"Retry-After": "3"})
        r = client_over(bucket).get_namespace("ns_a")
    assert r.reason == "rate_limited"
    assert bucket.limit_per_minute() == 20
    assert not bucket.acquire(deadline=clock.now + 2.9), "every sender waits the Retry-After"
