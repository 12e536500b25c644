"""The request budget's arithmetic: requests a cycle costs, the intervals the budget really
allows (counts first, metadata with what is left), and the warnings said once per change."""

from __future__ import annotations

import logging

import pytest

from exporter.polling.budget import (
    BudgetWatch,
    effective_interval,
    effective_metadata_interval,
    metadata_room,
    requests_per_cycle,
)
from exporter.polling.targets import Targets
from exporter.settings.schema import Config, DiscoveryConfig, MixpeekConfig, PollConfig
from exporter.state.store import Store


def config(rpm: float = 60, interval: float = 60, source: str = "namespace",
           discovery: bool = False, metadata: float = 600) -> Config:
    return Config(
        mixpeek=MixpeekConfig(max_requests_per_minute=rpm),
        poll=PollConfig(interval_seconds=interval, counts_source=source,  # type: ignore[arg-type]
                        metadata_interval_seconds=metadata),
        discovery=DiscoveryConfig(enabled=discovery, page_size=100,
                                  refresh_interval_seconds=300),
        namespaces=["ns_a"])


@pytest.mark.parametrize(("cfg", "n", "expected"), [
    (config(), 12, 12.0),
    # 3,000 namespaces by batches of 100, metadata every 10 cycles: 30 + 300.
    (config(source="stats_batch"), 3000, 330.0),
    # 250 namespaces listed in 3 pages, a listing every 5 cycles.
    (config(discovery=True), 250, 250 + 3 / 5),
])
def test_requests_per_cycle(cfg: Config, n: int, expected: float) -> None:
    assert requests_per_cycle(cfg, n) == pytest.approx(expected)


def test_effective_interval_is_stretched_only_by_a_budget_too_small() -> None:
    assert effective_interval(config(rpm=120, interval=1), 12) == 6.0
    assert effective_interval(config(rpm=6000, interval=60), 12) == 60.0
    assert effective_interval(config(rpm=0, interval=1), 10_000) == 1.0  # 0: unlimited


def test_the_warning_is_said_once_per_change(caplog: pytest.LogCaptureFixture) -> None:
    watch = BudgetWatch()
    tight = config(rpm=120, interval=1)
    with caplog.at_level(logging.WARNING, logger="exporter.polling.budget"):
        assert [watch.check(tight, 12) for _ in range(3)] == [6.0] * 3
        assert caplog.text.count("request budget cannot poll every namespace") == 1
        watch.check(tight, 24)  # more namespaces: a new figure, said again
        watch.check(config(rpm=6000, interval=1), 24)  # fits: nothing to say
        watch.check(tight, 24)  # stretched again after fitting: said again
    assert caplog.text.count("request budget cannot poll every namespace") == 3
    fields = [r.__dict__["fields"] for r in caplog.records]
    assert fields[0]["requests_per_cycle"] == 12 and fields[0]["effective_interval_seconds"] == 6.0
    assert fields[1]["effective_interval_seconds"] == 12.0


def test_metadata_never_stretches_the_counts_interval() -> None:
    # 10,000 namespaces at 600 a minute, batched: 100 requests bring every count (10 s);
    # metadata wants 1,000 a minute and gets what is left, so it is what stretches.
    cfg = config(rpm=600, source="stats_batch")
    assert effective_interval(cfg, 10_000) == 60.0
    assert metadata_room(600, 60, 100) == pytest.approx(470)
    assert effective_metadata_interval(cfg, 10_000) == pytest.approx(10_000 / 470 * 60)
    # 50,000: 500 batches fill most of the minute; metadata gets the rest, and keeps a floor
    # of 5% of the budget when counts alone need all of it.
    assert effective_interval(cfg, 50_000) == 60.0
    assert metadata_room(600, 60, 500) == pytest.approx(70)
    assert metadata_room(600, 60, 700) == pytest.approx(30)
    # The API's stated limit, when lower than the configured budget, is the one that counts.
    assert effective_interval(cfg, 10_000, rpm=60) == 100.0
    assert metadata_room(None, 60, 100) is None  # unlimited: no bound


def test_the_metadata_warning_is_said_once_per_change(caplog: pytest.LogCaptureFixture) -> None:
    watch = BudgetWatch()
    cfg = config(rpm=600, source="stats_batch")
    with caplog.at_level(logging.WARNING, logger="exporter.polling.budget"):
        for _ in range(3):
            assert watch.check(cfg, 10_000) == 60.0
        watch.check(config(rpm=600, source="stats_batch", metadata=86_400), 10_000)  # fits
    assert caplog.text.count("cannot refresh every namespace's metadata") == 1
    assert "cannot poll every namespace" not in caplog.text
    fields = caplog.records[0].__dict__["fields"]
    assert fields["effective_metadata_interval_seconds"] == round(10_000 / 470 * 60)


def five_hundred(stale: float | None) -> Config:
    return Config(mixpeek=MixpeekConfig(max_requests_per_minute=60),
                  poll=PollConfig(interval_seconds=60, stale_after_seconds=stale),  # type: ignore[arg-type]
                  namespaces=[f"ns_{i:03d}" for i in range(500)])


def test_unset_staleness_follows_the_interval_the_budget_allows() -> None:
    # 500 namespaces at 60 requests a minute: a poll each every 500 s, not every 60 s.
    store = Store([], 300)
    Targets(five_hundred(None), store).apply()
    snap = store.snapshot()
    assert snap.exporter.poll_interval == pytest.approx(500)
    assert snap.stale_after == pytest.approx(2500), "values vanish between two polls"


def test_a_configured_staleness_shorter_than_the_budgets_interval_is_warned_once(
        caplog: pytest.LogCaptureFixture) -> None:
    store = Store([], 400)
    t = Targets(five_hundred(400), store)
    with caplog.at_level(logging.WARNING, logger="exporter.polling.budget"):
        for _ in range(3):
            t.apply()
    assert store.snapshot().stale_after == 400, "what the user wrote"
    assert caplog.text.count("values vanish between polls") == 1
    assert "poll.stale_after_seconds" in caplog.text
