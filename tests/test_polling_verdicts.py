"""A poll always ends in a verdict (issue 10, section 1): whatever raises, at whatever layer,
the namespace ends up down with a reason, never still up with its old values.

An exception is injected at each layer of one poll (transport, body read, JSON, model, store),
for Get Namespace and for stats/batch (where every namespace of the batch gets the verdict);
the named inputs (a body nested 100,000 deep, a key with a byte-order mark) go the same way.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests_mock

from exporter.mixpeek import client as client_module
from exporter.mixpeek.client import MixpeekClient, namespace_path
from exporter.polling.poller import Poller
from exporter.ratelimit import TokenBucket
from exporter.settings.schema import MixpeekConfig
from exporter.settings.secrets import Secret
from exporter.state.store import Store

BASE = "https://api.mixpeek.test"
KEY = "sk_live_verdicts_7a6b5c4d"
IDS = ["ns_a", "ns_b", "ns_c"]
STATS = BASE + "/v1/namespaces/stats/batch"


def doc(ns_id: str) -> dict[str, Any]:
    return {"namespace_id": ns_id, "namespace_name": ns_id[3:], "document_count": 7}


class Injected(Exception):
    """A fault nobody planned for."""


def boom(*a: Any, **kw: Any) -> Any:
    raise Injected("injected")


class RaisingBody:
    """A response body whose read fails: a fault while the body streams in."""

    closed = False

    def read(self, *a: Any, **kw: Any) -> bytes:
        raise Injected("injected while reading")

    def close(self) -> None:
        pass


@pytest.fixture
def api() -> Iterator[requests_mock.Mocker]:
    with requests_mock.Mocker() as m:
        for ns in IDS:
            m.get(BASE + namespace_path(ns), json=doc(ns))
        m.post(STATS, json={"stats": {ns: {"namespace_id": ns, "document_count": 9}
                                      for ns in IDS}})
        yield m


def make(key: str = KEY, counts_source: str = "namespace") -> tuple[Poller, Store]:
    cfg = MixpeekConfig(base_url=BASE, max_requests_per_minute=0, max_retries=1,
                        retry_backoff_seconds=0)
    client = MixpeekClient(cfg, Secret(key), TokenBucket(0), sleep=lambda s: None)
    store = Store(IDS, 600)
    poller = Poller(client, store, interval=60, max_concurrency=2,
                    counts_source=counts_source, metadata_interval=3600)
    return poller, store


def all_up(store: Store) -> bool:
    return all(store.state(i).up for i in IDS)  # type: ignore[union-attr]


def verdicts(store: Store) -> dict[str, tuple[bool | None, str | None]]:
    return {i: (store.state(i).up, store.state(i).reason) for i in IDS}  # type: ignore[union-attr]


Inject = Callable[[requests_mock.Mocker, pytest.MonkeyPatch], None]

LAYERS: dict[str, Inject] = {
    "transport": lambda m, mp: m.get(BASE + namespace_path("ns_a"), exc=Injected("x")),
    "body read": lambda m, mp: m.get(BASE + namespace_path("ns_a"), body=RaisingBody()),
    "json": lambda m, mp: mp.setattr(json, "loads", boom),
    "model": lambda m, mp: mp.setattr(client_module, "parse_namespace", boom),
    "store": lambda m, mp: mp.setattr(Store, "apply", _failing_on_success(Store.apply)),
}


def _failing_on_success(apply: Callable[..., Any]) -> Callable[..., Any]:
    def wrapped(self: Store, result: Any, *a: Any, **kw: Any) -> Any:
        if result.ok:
            raise Injected("injected in the store")
        return apply(self, result, *a, **kw)
    return wrapped


@pytest.mark.parametrize("layer", list(LAYERS))
def test_an_exception_at_any_layer_is_a_verdict(api: requests_mock.Mocker,
                                                monkeypatch: pytest.MonkeyPatch,
                                                layer: str) -> None:
    poller, store = make()
    poller.run_cycle()
    assert all_up(store)
    LAYERS[layer](api, monkeypatch)
    poller.poll_one("ns_a")
    st = store.state("ns_a")
    assert st is not None and st.up is False, layer
    assert st.reason == "exporter_error" and "Injected" in st.message, (layer, st.message)
    assert st.errors == (("exporter_error", 1),)
    assert KEY not in st.message


def test_stats_batch_fault_gives_every_namespace_of_the_batch_the_verdict(
        api: requests_mock.Mocker) -> None:
    poller, store = make(counts_source="stats_batch")
    poller.run_cycle()  # counts in one batch from the first cycle
    poller.run_cycle()
    assert all_up(store) and store.state("ns_b").values.documents == 9  # type: ignore[union-attr]
    api.post(STATS, exc=Injected("x"))
    poller.run_cycle()
    assert verdicts(store) == {i: (False, "exporter_error") for i in IDS}


def test_stats_batch_store_fault_gives_each_namespace_the_verdict(
        api: requests_mock.Mocker, monkeypatch: pytest.MonkeyPatch) -> None:
    poller, store = make(counts_source="stats_batch")
    poller.run_cycle()
    monkeypatch.setattr(Store, "apply_counts", boom)
    poller.run_cycle()
    assert verdicts(store) == {i: (False, "exporter_error") for i in IDS}


def test_stats_batch_answer_that_is_not_json_is_each_namespaces_verdict(
        api: requests_mock.Mocker) -> None:
    poller, store = make(counts_source="stats_batch")
    poller.run_cycle()
    api.post(STATS, content=b"[" * 100_000 + b"]" * 100_000)
    poller.run_cycle()
    assert verdicts(store) == {i: (False, "invalid_response") for i in IDS}


def test_a_body_nested_100000_deep_takes_the_namespace_down(api: requests_mock.Mocker) -> None:
    poller, store = make()
    poller.run_cycle()
    api.get(BASE + namespace_path("ns_b"), content=b"[" * 100_000 + b"]" * 100_000)
    poller.run_cycle()
    assert verdicts(store) == {"ns_a": (True, None), "ns_b": (False, "invalid_response"),
                               "ns_c": (True, None)}
    assert "RecursionError" in store.state("ns_b").message  # type: ignore[union-attr]


def test_a_key_with_a_byte_order_mark_takes_every_namespace_down_without_a_request(
        api: requests_mock.Mocker) -> None:
    poller, store = make(key="\ufeff" + KEY)
    poller.run_cycle()
    assert verdicts(store) == {i: (False, "exporter_error") for i in IDS}
    assert "U+FEFF" in store.state("ns_a").message  # type: ignore[union-attr]
    assert api.call_count == 0
