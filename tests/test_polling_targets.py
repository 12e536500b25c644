"""What gets polled: discovery paging (both pagination shapes) and its bounds (page size,
max_namespaces, number of pages), discovery failing for any reason, and the shard partition."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests_mock

from exporter.mixpeek import client as client_module
from exporter.mixpeek.client import MixpeekClient
from exporter.polling.listing import DiscoveryError, list_all, max_pages
from exporter.polling.targets import Targets, select, shard_from_hostname, shard_of
from exporter.ratelimit import TokenBucket
from exporter.settings.load import parse_config
from exporter.settings.schema import Config, DiscoveryConfig, MixpeekConfig
from exporter.settings.secrets import Secret
from exporter.state.store import Store

BASE = "https://api.mixpeek.test"
LIST = BASE + "/v1/namespaces/list"


class FakeList:
    """The list endpoint over ``n`` namespaces, paged as asked, in either documented shape;
    ``oversize`` pads every page beyond the limit asked for; ``endless`` never ends."""

    def __init__(self, n: int, shape: str = "schema", oversize: int = 0,
                 endless: bool = False) -> None:
        self.docs = [{"namespace_id": f"ns_{i:05d}", "namespace_name": f"name_{i:05d}"}
                     for i in range(n)]
        self.shape, self.oversize, self.endless = shape, oversize, endless
        self.pages = 0

    def __call__(self, request: Any, context: Any) -> dict[str, Any]:
        self.pages += 1
        q = request.qs
        limit = int(q["limit"][0])
        offset = int(q.get("cursor", q.get("offset", ["0"]))[0].removeprefix("c_"))
        if self.endless:
            page = [{"namespace_id": f"ns_e{offset}", "namespace_name": f"e{offset}"}]
            return {"results": page, "pagination": {"next_cursor": f"c_{offset + 1}"}}
        page = self.docs[offset: offset + limit + self.oversize]
        more = offset + limit < len(self.docs)
        if self.shape == "legacy":
            pagination: dict[str, Any] = {"has_more": more, "limit": limit, "skip": offset}
        else:
            pagination = {"next_cursor": f"c_{offset + limit}" if more else None}
        return {"results": page, "pagination": pagination, "total_count": len(self.docs)}


@pytest.fixture
def api() -> Iterator[requests_mock.Mocker]:
    with requests_mock.Mocker() as m:
        yield m


def client() -> MixpeekClient:
    cfg = MixpeekConfig(base_url=BASE, max_requests_per_minute=0, max_retries=0)
    return MixpeekClient(cfg, Secret("sk_test_targets_0000"), TokenBucket(0))


@pytest.mark.parametrize("shape", ["schema", "legacy"])
def test_paging_follows_both_shapes(api: requests_mock.Mocker, shape: str) -> None:
    fake = FakeList(23, shape)
    api.post(LIST, json=fake)
    listing = list_all(client(), page_size=7, max_namespaces=10_000)
    assert [i for i, _ in listing.items] == [d["namespace_id"] for d in fake.docs]
    assert listing.limit_reached is False and fake.pages == 4


def test_a_page_larger_than_asked_is_refused(api: requests_mock.Mocker) -> None:
    fake = FakeList(15_000, oversize=14_990)
    api.post(LIST, json=fake)
    with pytest.raises(DiscoveryError, match=r"answered 15000 namespaces on one page; 10 were "
                                             r"asked for \(discovery.page_size\)"):
        list_all(client(), page_size=10, max_namespaces=10_000)
    assert fake.pages == 1


def test_the_listing_stops_at_max_namespaces(api: requests_mock.Mocker) -> None:
    fake = FakeList(50)
    api.post(LIST, json=fake)
    listing = list_all(client(), page_size=7, max_namespaces=20)
    assert len(listing.items) == 20 and listing.limit_reached is True
    assert listing.items[-1][0] == "ns_00019" and fake.pages == 3


@pytest.mark.parametrize(("n", "limited"), [(21, False), (22, True)])
def test_exactly_max_namespaces_is_not_the_limit(api: requests_mock.Mocker, n: int,
                                                 limited: bool) -> None:
    api.post(LIST, json=FakeList(n))
    listing = list_all(client(), page_size=7, max_namespaces=21)
    assert len(listing.items) == 21 and listing.limit_reached is limited


def test_the_number_of_pages_is_bounded(api: requests_mock.Mocker) -> None:
    fake = FakeList(0, endless=True)
    api.post(LIST, json=fake)
    with pytest.raises(DiscoveryError, match="did not finish within 8 pages"):
        list_all(client(), page_size=100, max_namespaces=300)
    assert fake.pages == max_pages(100, 300) == 8


def test_a_page_of_unusable_results_does_not_end_the_listing(
        api: requests_mock.Mocker, caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeList(25, "legacy")
    for d in fake.docs[:10]:  # the whole first page has no usable name
        d["namespace_name"] = None
    api.post(LIST, json=fake)
    listing = list_all(client(), page_size=10, max_namespaces=100)
    assert [i for i, _ in listing.items] == [d["namespace_id"] for d in fake.docs[10:]]
    assert listing.skipped == 10 and fake.pages == 3
    store = Store([], 600)
    t = targets(store)
    with caplog.at_level(logging.INFO, logger="exporter.polling.targets"):
        for _ in range(3):
            t.configure(t.cfg, relist=True)
            t.refresh(client())
            assert t.join(20)
    assert caplog.text.count("without a usable namespace_name") == 1
    assert "skipped=10" in caplog.text or any(
        r.__dict__.get("fields", {}).get("skipped") == 10 for r in caplog.records)


def test_configured_names_and_ids_get_their_labels_from_one_listing(
        api: requests_mock.Mocker) -> None:
    fake = FakeList(30)
    api.post(LIST, json=fake)
    cfg = Config(poll={"counts_source": "stats_batch"},  # type: ignore[arg-type]
                 discovery=DiscoveryConfig(page_size=10),
                 namespaces=["ns_00003", "NAME_00017", "name_unknown"])
    store = Store([], 600)
    t = Targets(cfg, store)
    t.apply()  # at start, before any request: labels as configured
    assert store.state("NAME_00017").namespace_id == ""  # type: ignore[union-attr]
    t.refresh(client())
    assert fake.pages == 3
    labels = {i: (store.state(i).namespace_id, store.state(i).namespace_name)  # type: ignore[union-attr]
              for i in cfg.namespaces}
    assert labels == {"ns_00003": ("ns_00003", "name_00003"),
                      "NAME_00017": ("ns_00017", "name_00017"),
                      "name_unknown": ("", "name_unknown")}
    t.refresh(client())
    assert fake.pages == 3, "resolved once, not every cycle"


def test_a_repeated_cursor_ends_the_listing_as_an_error(api: requests_mock.Mocker) -> None:
    api.post(LIST, json={"results": [{"namespace_name": "a"}],
                         "pagination": {"next_cursor": "same"}})
    with pytest.raises(DiscoveryError, match="same cursor twice"):
        list_all(client(), page_size=10, max_namespaces=100)


# -- Targets: discovery in the store ---------------------------------------------------------


def targets(store: Store, **discovery: Any) -> Targets:
    cfg = Config(discovery=DiscoveryConfig(enabled=True, page_size=7,
                                           refresh_interval_seconds=1, **discovery))
    return Targets(cfg, store)


def test_discovery_limit_reached_is_said_once_and_cleared(api: requests_mock.Mocker,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    store = Store([], 600)
    t = targets(store, max_namespaces=10)
    fake = FakeList(12)
    api.post(LIST, json=fake)
    with caplog.at_level(logging.INFO, logger="exporter.polling.targets"):
        for _ in range(3):
            t.configure(t.cfg, relist=True)  # due now
            t.refresh(client())
            assert t.join(20)
        ex = store.snapshot().exporter
        assert (ex.discovery_up, ex.discovery_limit_reached, ex.namespaces) == (True, True, 10)
        assert len(store.identifiers()) == 10
        assert caplog.text.count("stopped at discovery.max_namespaces") == 1
        fake.docs = fake.docs[:9]
        t.configure(t.cfg, relist=True)
        t.refresh(client())  # lists beside the cycle ...
        assert t.join(20)
        t.refresh(client())  # ... and applies before the next one
    ex = store.snapshot().exporter
    assert (ex.discovery_limit_reached, ex.namespaces) == (False, 9)
    assert "fewer than discovery.max_namespaces again" in caplog.text


@pytest.mark.parametrize("fault", ["http", "exception", "oversize"])
def test_discovery_failing_keeps_the_last_known_set(api: requests_mock.Mocker,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   fault: str) -> None:
    store = Store([], 600)
    t = targets(store)
    api.post(LIST, json=FakeList(5))
    t.refresh(client())
    assert len(store.identifiers()) == 5 and store.snapshot().exporter.discovery_up is True
    if fault == "http":
        api.post(LIST, status_code=500, json={})
    elif fault == "exception":
        def boom(body: Any) -> Any:
            raise RuntimeError("injected")
        monkeypatch.setattr(client_module, "parse_list_page", boom)
    else:
        api.post(LIST, json=FakeList(100, oversize=50))
    t.configure(t.cfg, relist=True)
    t.refresh(client())
    assert t.join(20)
    assert store.snapshot().exporter.discovery_up is False
    assert len(store.identifiers()) == 5


# -- shards -----------------------------------------------------------------------------------


def test_shard_selection_is_a_partition() -> None:
    cfg = parse_config("discovery: {enabled: true}\n", environ={})
    found = [(f"ns_{i:06d}", f"name_{i}") for i in range(1000)]
    for total in (1, 2, 5):
        picked = [t.identifier for s in range(total) for t in select(cfg, found, s, total)]
        assert sorted(picked) == sorted(i for i, _ in found)
    assert shard_of("ns_000001", 7) == shard_of("ns_000001", 7)
    assert shard_from_hostname("mixpeek-exporter-3") == 3
    with pytest.raises(ValueError, match="StatefulSet-style hostname"):
        shard_from_hostname("laptop")


def test_configured_namespaces_come_first_and_win_over_filters() -> None:
    cfg = parse_config("namespaces: [demo_archive]\ndiscovery: {enabled: true, "
                       "exclude: ['^demo_archive$', '_2$']}\n", environ={})
    found = [("ns_3", "demo_archive"), ("ns_2", "name_2"), ("ns_1", "name_1")]
    assert [t.identifier for t in select(cfg, found)] == ["demo_archive", "ns_1"]


def test_a_failing_listing_never_holds_up_the_configured_namespaces(
        api: requests_mock.Mocker) -> None:
    listing = FakeList(0, endless=True)
    release = threading.Event()

    def slow(request: Any, context: Any) -> dict[str, Any]:
        release.wait(20)
        return listing(request, context)
    api.post(LIST, json=slow)
    store = Store([], 600)
    cfg = Config(namespaces=["ns_a"], discovery=DiscoveryConfig(
        enabled=True, page_size=7, max_namespaces=14, refresh_interval_seconds=300))
    t = Targets(cfg, store)
    t.apply()
    refreshed = threading.Event()
    threading.Thread(target=lambda: (t.refresh(client()), refreshed.set()), daemon=True).start()
    try:
        assert refreshed.wait(20), "the cycle waited for the listing"
        assert store.identifiers() == ["ns_a"]
    finally:
        release.set()
    assert t.join(20)
    ex = store.snapshot().exporter
    assert ex.discovery_up is False
    assert ex.discovery_error is not None and "did not finish" in ex.discovery_error
    # A failed listing backs off: the next cycles do not list again at once.
    pages = listing.pages
    for _ in range(3):
        t.refresh(client())
        assert t.join(20)
    assert listing.pages == pages
