"""The poller's scheduling, with a stand-in for the client whose answers the test releases:
a cycle at start and then on schedule, trigger and reschedule, one slow namespace never holding
up the others, preparation failing without stopping the cycle, and a bounded stop. With
batched counts: counts from the first cycle, metadata spread over its interval and never in
front of counts (the real client and budget, over a mocked API)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest
import requests_mock

from exporter.mixpeek.client import MixpeekClient, namespace_path
from exporter.mixpeek.models import NamespaceCounts, parse_namespace
from exporter.mixpeek.result import PollResult, Result, failure
from exporter.polling.poller import Poller
from exporter.ratelimit import TokenBucket
from exporter.settings.schema import MixpeekConfig
from exporter.settings.secrets import Secret
from exporter.state.store import Store
from tests.harness import wait_until


class StubClient:
    """Answers Get Namespace at once, except for identifiers in ``hold``, which wait for
    ``release``. Records every call."""

    def __init__(self, hold: tuple[str, ...] = (), batches: bool = False,
                 doc: dict[str, object] | None = None) -> None:
        self.hold = hold
        self.batches = batches  # answer stats/batch (else 404, as an older API)
        self.doc = doc or {}  # more fields of every Get Namespace answer
        self.bucket = TokenBucket(0)
        self.batch_calls: list[list[str]] = []
        self.release = threading.Event()
        self.calls: list[str] = []
        self.held = threading.Event()  # a held poll has started
        self.closed = threading.Event()
        self._lock = threading.Lock()

    def get_namespace(self, identifier: str, priority: int = 0) -> PollResult:
        with self._lock:
            self.calls.append(identifier)
        if identifier in self.hold:
            self.held.set()
            self.release.wait(30)
        values = parse_namespace({"namespace_id": identifier, "namespace_name": identifier[3:],
                                  **self.doc})
        return Result(identifier, values, None, "", 200, 1, 0.0)

    def stats_batch(self, ids: list[str]) -> Result[dict[str, NamespaceCounts]]:
        if not self.batches:
            return failure("namespaces/stats/batch", "not_found", "no batches here", 404)
        with self._lock:
            self.batch_calls.append(list(ids))
        counts = {i: NamespaceCounts(7, 1, 2, 3) for i in ids}
        return Result("namespaces/stats/batch", counts, None, "", 200, 1, 0.0)

    def close(self) -> None:
        self.closed.set()

    def polls(self, identifier: str) -> int:
        with self._lock:
            return self.calls.count(identifier)


@pytest.fixture
def stopping() -> Iterator[list[Poller]]:
    """Pollers to stop at the end, however the test ends."""
    started: list[Poller] = []
    yield started
    for p in started:
        p.stop(grace=5)


def poller(client: StubClient, ids: list[str], interval: float = 3600,
           concurrency: int = 4, **kw: object) -> tuple[Poller, Store]:
    store = Store(ids, 600)
    return Poller(client, store, interval, concurrency, **kw), store  # type: ignore[arg-type]


def test_start_runs_a_cycle_at_once_then_every_interval(stopping: list[Poller]) -> None:
    client = StubClient()
    p, store = poller(client, ["ns_a"], interval=0.2)
    stopping.append(p)
    p.start()
    wait_until(lambda: store.snapshot().cycles_completed >= 3, 20, what="three cycles")
    assert client.polls("ns_a") >= 3


def test_trigger_now_and_reschedule(stopping: list[Poller]) -> None:
    client = StubClient()
    p, store = poller(client, ["ns_a"], interval=3600)
    stopping.append(p)
    p.start()
    wait_until(lambda: store.snapshot().cycles_completed == 1, 20, what="the first cycle")
    p.trigger_now()
    wait_until(lambda: store.snapshot().cycles_completed == 2, 20, what="a triggered cycle")
    p.reschedule(0.1)
    wait_until(lambda: store.snapshot().cycles_completed >= 5, 20, what="the new interval")


def test_a_slow_namespace_does_not_hold_up_the_others() -> None:
    client = StubClient(hold=("ns_slow",))
    p, store = poller(client, ["ns_slow", "ns_b", "ns_c"], concurrency=2)
    done = threading.Thread(target=p.run_cycle)
    done.start()
    try:
        assert client.held.wait(20)
        wait_until(lambda: store.state("ns_b").up and store.state("ns_c").up, 20,  # type: ignore[union-attr]
                   what="the others stored while ns_slow is held")
        assert store.state("ns_slow").up is None  # type: ignore[union-attr]
    finally:
        client.release.set()
        done.join(30)
    assert store.state("ns_slow").up is True  # type: ignore[union-attr]


def test_a_failing_preparation_still_polls_the_known_set(
        caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> None:
        raise RuntimeError("discovery blew up")
    client = StubClient()
    p, store = poller(client, ["ns_a"], before_cycle=broken)
    with caplog.at_level(logging.ERROR, logger="exporter.polling.poller"):
        p.run_cycle()
    assert store.state("ns_a").up is True  # type: ignore[union-attr]
    assert "preparing the poll cycle failed" in caplog.text


def test_stop_cancels_queued_polls_and_is_bounded_by_the_grace() -> None:
    client = StubClient(hold=("ns_0",))
    ids = [f"ns_{i}" for i in range(6)]
    p, store = poller(client, ids, concurrency=1)
    cycle = threading.Thread(target=p.run_cycle)
    cycle.start()
    try:
        assert client.held.wait(20)
        assert p.stop(grace=0.05) is False, "the held poll is still running"
    finally:
        client.release.set()
        cycle.join(30)
    assert client.calls == ["ns_0"], "queued polls were cancelled, not run"
    # An aborted poll at shutdown is not the API's fault: nothing changes in the store.
    assert store.snapshot().cycles_completed == 0
    assert p.stop(grace=5) is True


def test_swapping_the_client_closes_the_old_one_after_the_cycle() -> None:
    old, new = StubClient(hold=("ns_a",)), StubClient()
    p, _ = poller(old, ["ns_a"])
    cycle = threading.Thread(target=p.run_cycle)
    cycle.start()
    try:
        assert old.held.wait(20)
        p.swap_client(new, max_concurrency=2)  # type: ignore[arg-type]
        assert not old.closed.wait(0.2), "closed under the cycle still using it"
    finally:
        old.release.set()
        cycle.join(30)
    assert old.closed.wait(20)
    p.run_cycle()
    assert new.calls == ["ns_a"]


def test_an_overrun_is_logged_once_per_change(caplog: pytest.LogCaptureFixture) -> None:
    client = StubClient()
    p, _ = poller(client, ["ns_a"], interval=60)
    with caplog.at_level(logging.INFO, logger="exporter.polling.poller"):
        p.interval = -1.0  # every cycle overruns
        for _ in range(3):
            p.run_cycle()
        p.interval = 60.0
        for _ in range(3):
            p.run_cycle()
    assert caplog.text.count("poll cycle took longer than the interval") == 1
    assert caplog.text.count("poll cycle fits in the interval again") == 1


# -- batched counts and the metadata spread ---------------------------------------------------


def test_counts_come_in_batches_from_the_first_cycle_and_metadata_is_spread() -> None:
    client = StubClient(batches=True, doc={"document_count": 7})
    ids = [f"ns_{i:03d}" for i in range(100)]
    # 100 namespaces, metadata every 10 intervals: 10 full Get Namespace calls a cycle.
    p, store = poller(client, ids, interval=60, counts_source="stats_batch",
                      metadata_interval=600)
    per_cycle = []
    for cycle in range(10):
        before = len(client.calls)
        p.run_cycle()
        if cycle == 0:
            assert [len(b) for b in client.batch_calls] == [100], "every count, one request"
            assert all(store.state(i).values.documents == 7 for i in ids)  # type: ignore[union-attr]
        assert p.wait_metadata(20)
        per_cycle.append(len(client.calls) - before)
    assert per_cycle == [10] * 10
    # Oldest first: after one metadata interval, each namespace exactly once.
    assert sorted(client.calls) == ids
    assert all(store.state(i).metadata_at is not None for i in ids)  # type: ignore[union-attr]
    assert len(client.batch_calls) == 10


def test_once_polls_every_namespace_in_full() -> None:
    client = StubClient(batches=True)
    p, store = poller(client, ["ns_a", "ns_b"], interval=60, counts_source="stats_batch",
                      metadata_interval=3600)
    p.run_cycle(full=True)
    assert all(store.state(i).metadata_at for i in ("ns_a", "ns_b"))  # type: ignore[union-attr]
    assert sorted(client.calls) == ["ns_a", "ns_b"] and client.batch_calls == []


BASE = "https://api.mixpeek.test"


def test_counts_are_never_queued_behind_metadata() -> None:
    ids = [f"ns_{i:03d}" for i in range(200)]
    cfg = MixpeekConfig(base_url=BASE, max_requests_per_minute=6000, max_retries=0,
                        max_concurrency=4)
    client = MixpeekClient(cfg, Secret("sk_test_priority_0000"),
                           TokenBucket(6000, strict=True))
    store = Store(ids, 600)
    marks: list[int] = []
    with requests_mock.Mocker() as api:
        for i in ids:
            api.get(BASE + namespace_path(i), json={"namespace_id": i, "namespace_name": i[3:]})
        api.post(BASE + "/v1/namespaces/stats/batch", json=lambda req, ctx: {"stats": {
            i: {"namespace_id": i, "document_count": 5} for i in req.json()["namespace_ids"]}})
        # Metadata for all 200 is due in every cycle: far more than a cycle's counts.
        p = Poller(client, store, interval=60, max_concurrency=4,
                   counts_source="stats_batch", metadata_interval=60,
                   before_cycle=lambda: marks.append(len(api.request_history)))
        try:
            p.run_cycle()
            p.run_cycle()  # while the first cycle's metadata is still being fetched
            assert p.wait_metadata(60)
        finally:
            p.stop(grace=5)
        history = [r.method for r in api.request_history]
    assert history.count("GET") >= 200, "the metadata was fetched"
    posts = [i for i, method in enumerate(history) if method == "POST"]
    assert len(posts) == 4
    # The first cycle's two batches go out at once: the budget's burst (5) may let the metadata
    # lane's two threads send a few before them, no more.
    assert posts[1] < marks[0] + 9, history[:12]
    # The second cycle's come while metadata is queued for every slot: they go first, with at
    # most the two metadata calls already holding a slot in between.
    assert posts[2] >= marks[1] and posts[3] < marks[1] + 4, history[marks[1]:marks[1] + 12]


def test_unusable_fields_are_logged_once_per_change(caplog: pytest.LogCaptureFixture) -> None:
    client = StubClient(doc={"created_at": "0000-00-00", "bucket_count": -1})
    p, _ = poller(client, ["ns_a"])
    with caplog.at_level(logging.INFO, logger="exporter.polling.poller"):
        for _ in range(3):
            p.run_cycle()
        client.doc = {}
        for _ in range(2):
            p.run_cycle()
    warned = [r for r in caplog.records if "fields the exporter cannot use" in r.message]
    assert len(warned) == 1
    assert warned[0].__dict__["fields"]["invalid_fields"] == "bucket_count,created_at"
    assert caplog.text.count("no unusable fields any more") == 1


class NamedStub(StubClient):
    """Get Namespace answers from ``answers`` (identifier -> (namespace_id, name)); stats/batch
    answers ``batch_status`` (200: counts of ``documents``, else that status and ``error``)."""

    def __init__(self, answers: dict[str, tuple[str, str]]) -> None:
        super().__init__(batches=True)
        self.answers = answers
        self.batch_status = 200
        self.error = ""
        self.documents = 7

    def get_namespace(self, identifier: str, priority: int = 0) -> PollResult:
        with self._lock:
            self.calls.append(identifier)
        ns_id, name = self.answers[identifier]
        values = parse_namespace({"namespace_id": ns_id, "namespace_name": name,
                                  "document_count": 1})
        return Result(identifier, values, None, "", 200, 1, 0.0)

    def stats_batch(self, ids: list[str]) -> Result[dict[str, NamespaceCounts]]:
        with self._lock:
            self.batch_calls.append(list(ids))
        if self.batch_status != 200:
            reason = "not_found" if self.batch_status == 404 else "server_error"
            message = f"HTTP {self.batch_status}" + (f" {self.error}" if self.error else "")
            return failure("namespaces/stats/batch", reason, message, self.batch_status)
        counts = {i: NamespaceCounts(self.documents, 1, 2, 3) for i in ids}
        return Result("namespaces/stats/batch", counts, None, "", 200, 1, 0.0)


def test_a_namespace_configured_by_name_and_by_id_gets_every_batch_verdict() -> None:
    client = NamedStub({"orders": ("ns_orders", "orders"), "ns_orders": ("ns_orders", "orders")})
    p, store = poller(client, ["orders", "ns_orders"], interval=60,
                      counts_source="stats_batch", metadata_interval=3600)
    p.run_cycle()  # orders has no id yet: a Get Namespace brings it
    client.documents = 42
    p.run_cycle()
    assert client.batch_calls[-1] == ["ns_orders"]
    for ident in ("orders", "ns_orders"):
        assert store.state(ident).values.documents == 42, ident  # type: ignore[union-attr]
    client.batch_status = 500
    p.run_cycle()
    for ident in ("orders", "ns_orders"):
        st = store.state(ident)
        assert st.up is False and st.reason == "server_error", ident  # type: ignore[union-attr]


def test_an_answer_claiming_another_namespaces_id_is_invalid() -> None:
    # Asked by name, "prod" answers with the id of the configured ns_victim ("victim").
    client = NamedStub({"prod": ("ns_victim", "prod"), "ns_victim": ("ns_victim", "victim")})
    p, store = poller(client, ["ns_victim", "prod"], interval=60, metadata_interval=3600)
    p.run_cycle()
    p.run_cycle()  # whichever answered first, both know their names now
    prod = store.state("prod")
    assert prod.up is False and prod.reason == "invalid_response"  # type: ignore[union-attr]
    assert "ns_victim" in prod.message  # type: ignore[union-attr]
    assert store.state("ns_victim").up is True  # type: ignore[union-attr]
    # Batched counts, matched by id, do not reach the impostor either.
    p.counts_source = "stats_batch"
    p.run_cycle()
    assert store.state("prod").reason == "invalid_response"  # type: ignore[union-attr]
    assert store.state("ns_victim").values.documents == 7  # type: ignore[union-attr]


def test_a_missing_stats_batch_endpoint_is_tried_again_later() -> None:
    client = NamedStub({"ns_a": ("ns_a", "a")})
    p, store = poller(client, ["ns_a"], interval=1, counts_source="stats_batch",
                      metadata_interval=2)
    client.batch_status = 404
    p.run_cycle()
    assert store.snapshot().exporter.stats_batch_available is False
    assert store.state("ns_a").up is True, "counted with Get Namespace instead"  # type: ignore[union-attr]
    tries = len(client.batch_calls)
    p.run_cycle()
    assert len(client.batch_calls) == tries, "not tried again at once"
    client.batch_status = 200
    wait_until(lambda: p.run_cycle() is not None and
               store.snapshot().exporter.stats_batch_available is True, 20,
               what="stats/batch tried again")


def test_a_404_naming_a_namespace_does_not_disable_batching() -> None:
    client = NamedStub({"ns_a": ("ns_a", "a"), "ns_b": ("ns_b", "b")})
    p, store = poller(client, ["ns_a", "ns_b"], interval=60, counts_source="stats_batch",
                      metadata_interval=3600)
    client.batch_status, client.error = 404, "NotFound: namespace ns_b not found"
    p.run_cycle()
    assert store.snapshot().exporter.stats_batch_available is True
    client.batch_status = 200
    before = len(client.batch_calls)
    p.run_cycle()
    assert len(client.batch_calls) == before + 1
