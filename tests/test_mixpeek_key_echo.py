"""An API that echoes the key back in a value the exporter publishes (a namespace name, a label,
an id) must not put the key, or any 8-character run of it, on /metrics: the client scrubs every
string of a decoded answer at its boundary, before any parser sees it."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests_mock

from exporter.mixpeek.client import MixpeekClient
from exporter.ratelimit import TokenBucket
from exporter.settings.schema import MixpeekConfig
from exporter.settings.secrets import Secret

BASE = "https://api.mixpeek.test"
KEY = "sk_live_echoed_key_5f4e3d2c1b0a"


def client() -> MixpeekClient:
    conf = MixpeekConfig(base_url=BASE, max_requests_per_minute=0, max_retries=0)
    return MixpeekClient(conf, Secret(KEY), TokenBucket(0), sleep=lambda s: None)


def fragments(text: str) -> list[str]:
    return [KEY[i:i + 8] for i in range(len(KEY) - 7) if KEY[i:i + 8] in text]


def doc(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"namespace_name": "orders", "namespace_id": "ns_orders",
                            "document_count": 5,
                            "infrastructure": {"compute_tier": "shared"}}
    base.update(over)
    return base


@pytest.mark.parametrize("echo", [
    {"infrastructure": {"compute_tier": f"tier {KEY}"}},
    {"cluster_id": KEY[3:20]},  # a fragment is enough
    {"mode": f"x{KEY}x"},
    {"clone_status": KEY},
    {"namespace_type": KEY.upper().lower()},
    {"description": KEY, KEY: "as an object key"},
])
def test_a_key_echoed_in_a_published_value_never_reaches_the_values(echo: dict[str, Any]
                                                                    ) -> None:
    with requests_mock.Mocker() as m:
        m.get(f"{BASE}/v1/namespaces/ns_orders", text=json.dumps(doc(**echo)))
        r = client().get_namespace("ns_orders")
    assert r.ok and r.values is not None
    assert r.values.documents == 5  # the rest of the answer is still used
    assert fragments(repr(r.values)) == []


def test_a_name_that_is_the_key_is_redacted_when_asked_by_id() -> None:
    with requests_mock.Mocker() as m:
        m.get(f"{BASE}/v1/namespaces/ns_orders", text=json.dumps(doc(namespace_name=KEY)))
        r = client().get_namespace("ns_orders")
    assert r.ok and r.values is not None and fragments(r.values.namespace_name) == []


def test_listing_and_batched_counts_are_scrubbed_too() -> None:
    page = {"results": [{"namespace_id": "ns_a", "namespace_name": f"team-{KEY}"}],
            "pagination": {"next_cursor": None}, "total_count": 1}
    stats = {"stats": {"ns_a": {"namespace_id": "ns_a", "document_count": 1,
                                "bucket_count": 1, "collection_count": 1, "object_count": 1}},
             KEY: {}}
    with requests_mock.Mocker() as m:
        m.post(f"{BASE}/v1/namespaces/list", text=json.dumps(page))
        m.post(f"{BASE}/v1/namespaces/stats/batch", text=json.dumps(stats))
        c = client()
        listed = c.list_namespaces_page(10)
        counts = c.stats_batch(["ns_a"])
    assert listed.ok and fragments(repr(listed.values)) == []
    assert counts.ok and fragments(repr(counts.values)) == []


def test_a_key_spelled_with_json_escapes_is_scrubbed_too() -> None:
    # "\u0073k_live..." decodes to the key although the key's bytes are nowhere in the body:
    # the quick screen over the raw bytes must not wave such a body through.
    name = "".join(f"\\u{ord(c):04x}" for c in KEY)
    body = '{"namespace_name": "' + name + '", "namespace_id": "ns_orders", "document_count": 5}'
    with requests_mock.Mocker() as m:
        m.get(f"{BASE}/v1/namespaces/ns_orders", text=body)
        r = client().get_namespace("ns_orders")
    assert r.ok and r.values is not None and fragments(r.values.namespace_name) == []
