"""The response parser, one field at a time: only the body's shape and the namespace's identity
fail an answer; any other published field that is unusable loses only the series built from it
and is named (by its API field) in invalid_fields; unpublished fields never matter."""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, fields
from typing import Any

import pytest
import requests_mock

from exporter.mixpeek.client import MixpeekClient, namespace_path
from exporter.mixpeek.fields import decode_json
from exporter.mixpeek.models import (
    InvalidResponse,
    NamespaceValues,
    parse_list_page,
    parse_namespace,
    parse_stats_batch,
)
from exporter.ratelimit import TokenBucket
from exporter.settings.schema import MixpeekConfig
from exporter.settings.secrets import Secret

GOOD: dict[str, Any] = {
    "namespace_name": "spotify_playlists_dev", "namespace_id": "ns_abc",
    "namespace_type": "standard", "mode": "managed", "cluster_id": "iclstr_1",
    "infrastructure": {"autoscaling_enabled": False, "compute_tier": "shared",
                       "max_concurrent_jobs": 10, "qdrant_collection": "removed_2026_09_26"},
    "document_count": 123, "document_count_complete": True, "bucket_count": 4,
    "collection_count": 5, "object_count": 6, "auto_create_indexes": True,
    "feature_extractors": [{"feature_extractor_name": "a"}], "payload_indexes": [{}, {}],
    "created_at": "2023-11-07T05:31:56Z", "updated_at": "2023-11-08T05:31:56+02:00",
    "expires_at": "2030-01-01T00:00:00", "namespace_ready": True, "clone_status": "ready",
    "description": "a namespace", "vector_inference_map": {"x": "y"},
}
BASE = parse_namespace(GOOD)


def with_field(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    *parents, key = path.split(".")
    node = out
    for p in parents:
        node = node[p]
    node[key] = value
    return out


def changed(v: NamespaceValues) -> dict[str, Any]:
    """The attributes that differ from the good document's."""
    base = asdict(BASE)
    return {k: x for k, x in asdict(v).items() if base[k] != x}


def test_the_good_document_is_read_completely() -> None:
    v = BASE
    assert (v.documents, v.buckets, v.collections, v.objects) == (123, 4, 5, 6)
    assert (v.max_concurrent_jobs, v.autoscaling_enabled, v.auto_create_indexes_enabled) == (
        10, False, True)
    assert (v.feature_extractors, v.payload_indexes) == (1, 2)
    assert v.created_timestamp == 1699335116.0
    assert v.updated_timestamp == 1699335116.0 + 86400 - 7200
    assert v.expires_timestamp == 1893456000.0  # naive: read as UTC, like the API writes it
    assert (v.namespace_ready, v.document_count_complete, v.clone_status) == (True, True, "ready")
    assert (v.compute_tier, v.cluster_id, v.namespace_type, v.mode) == (
        "shared", "iclstr_1", "standard", "managed")
    assert v.invalid_fields == ()


def test_negative_bucket_count_loses_only_the_buckets() -> None:
    v = parse_namespace(with_field(GOOD, "bucket_count", -1))
    assert v.documents == 123
    assert v.buckets is None
    assert v.invalid_fields == ("bucket_count",)
    assert changed(v) == {"buckets": None, "invalid_fields": ("bucket_count",)}


@pytest.mark.parametrize(("path", "value", "attr", "dropped"), [
    ("document_count", "123", "documents", None),
    ("document_count", True, "documents", None),
    ("document_count", 123.0, "documents", None),
    ("document_count", -3, "documents", None),
    ("document_count", 2**53 + 1, "documents", None),
    ("document_count", 10**400, "documents", None),
    ("collection_count", [], "collections", None),
    ("object_count", {"n": 1}, "objects", None),
    ("infrastructure.max_concurrent_jobs", -1, "max_concurrent_jobs", None),
    ("infrastructure.autoscaling_enabled", "yes", "autoscaling_enabled", None),
    ("auto_create_indexes", 1, "auto_create_indexes_enabled", None),
    ("feature_extractors", {"a": 1}, "feature_extractors", None),
    ("created_at", "0000-00-00", "created_timestamp", None),
    ("created_at", "yesterday", "created_timestamp", None),
    # A bare number could be seconds or milliseconds: pydantic guesses by its size; we don't.
    ("created_at", 1699335116, "created_timestamp", None),
    ("updated_at", "1699335116", "updated_timestamp", None),
    ("expires_at", "2030-13-01T00:00:00Z", "expires_timestamp", None),
    ("namespace_ready", "true", "namespace_ready", None),
    ("document_count_complete", "false", "document_count_complete", None),
    ("infrastructure.compute_tier", 5, "compute_tier", ""),
    ("cluster_id", "x" * 257, "cluster_id", ""),
    ("namespace_type", {"v": "standard"}, "namespace_type", ""),
    ("mode", "managed\ud800", "mode", ""),
    ("clone_status", ["cloning"], "clone_status", None),
])
def test_an_unusable_field_loses_only_its_own_value(path: str, value: Any, attr: str,
                                                    dropped: Any) -> None:
    v = parse_namespace(with_field(GOOD, path, value))
    assert changed(v) == {attr: dropped, "invalid_fields": (path,)}


@pytest.mark.parametrize("infra", [5, "shared", [], True])
def test_infrastructure_that_is_not_an_object_is_named_once(infra: Any) -> None:
    v = parse_namespace(with_field(GOOD, "infrastructure", infra))
    assert changed(v) == {"max_concurrent_jobs": None, "autoscaling_enabled": None,
                          "compute_tier": "", "invalid_fields": ("infrastructure",)}


def test_several_unusable_fields_are_each_named_in_table_order() -> None:
    doc = with_field(with_field(GOOD, "created_at", "0000-00-00"), "bucket_count", -1)
    v = parse_namespace(with_field(doc, "infrastructure", 5))
    assert v.invalid_fields == ("bucket_count", "infrastructure", "created_at")
    assert v.documents == 123 and v.collections == 5


def test_missing_and_null_are_absent_not_invalid_and_nothing_is_defaulted() -> None:
    # The SDK fills defaults (max_concurrent_jobs 10, autoscaling true, namespace_ready false,
    # document_count_complete true): published, they would be values the API never gave.
    bare = parse_namespace({"namespace_name": "n"})
    nulls = parse_namespace({k: (None if k != "namespace_name" else "n") for k in GOOD}
                            | {"infrastructure": {"max_concurrent_jobs": None}})
    for v in (bare, nulls):
        assert v.invalid_fields == ()
        assert v.namespace_id == ""
        for f in fields(NamespaceValues):
            if f.name in ("namespace_id", "namespace_name", "invalid_fields"):
                continue
            expected = "" if f.name in ("compute_tier", "cluster_id", "namespace_type",
                                        "mode") else None
            assert getattr(v, f.name) == expected, f.name


def test_incomplete_document_count_is_not_a_count_and_says_why() -> None:
    v = parse_namespace(with_field(GOOD, "document_count_complete", False))
    assert changed(v) == {"documents": None, "document_count_complete": False}


def test_payload_index_count_is_used_when_the_list_is_absent_or_unusable() -> None:
    doc = {k: x for k, x in GOOD.items() if k != "payload_indexes"}
    assert parse_namespace(doc | {"payload_index_count": 7}).payload_indexes == 7
    assert parse_namespace(GOOD | {"payload_index_count": 7}).payload_indexes == 2
    v = parse_namespace(GOOD | {"payload_indexes": "two", "payload_index_count": 7})
    assert v.payload_indexes == 7 and v.invalid_fields == ("payload_indexes",)
    v = parse_namespace(doc | {"payload_index_count": -7})
    assert v.payload_indexes is None and v.invalid_fields == ("payload_index_count",)


@pytest.mark.parametrize(("text", "expected"), [
    ("2023-11-07T05:31:56Z", 1699335116.0),
    ("2023-11-07T05:31:56", 1699335116.0),
    ("2023-11-07 05:31:56", 1699335116.0),
    ("2023-11-07T10:31:56+05:00", 1699335116.0),
    ("2023-11-07T05:31:56.5Z", 1699335116.5),
    ("2023-11-07", 1699315200.0),
])
def test_timestamps_naive_ones_are_utc(text: str, expected: float) -> None:
    v = parse_namespace(GOOD | {"expires_at": text})
    assert v.expires_timestamp == expected and v.invalid_fields == ()


@pytest.mark.parametrize("junk", [
    "\ud800", 5, ["x"], {"a": "\udcff"}, None,
])
def test_unpublished_fields_are_never_looked_at(junk: Any) -> None:
    doc = GOOD | {"description": junk, "vector_inference_map": junk, "brand_new": junk,
                  "feature_extractors": [junk], "payload_indexes": [junk, junk]}
    assert parse_namespace(doc) == BASE


def test_bad_utf8_in_an_unpublished_field_loses_nothing() -> None:
    body = json.dumps(GOOD).encode().replace(b"a namespace", b"caf\xe9 \xff\xfe")
    assert parse_namespace(decode_json(body)) == BASE


def test_bad_utf8_in_a_label_loses_the_label_and_in_the_name_the_answer() -> None:
    body = json.dumps(GOOD).encode()
    v = parse_namespace(decode_json(body.replace(b'"managed"', b'"man\xffaged"')))
    assert changed(v) == {"mode": "", "invalid_fields": ("mode",)}
    with pytest.raises(InvalidResponse, match="namespace_name: not valid Unicode"):
        parse_namespace(decode_json(body.replace(b"spotify", b"spot\xc3ify")))


def test_decode_json_bounds() -> None:
    body = json.dumps(GOOD).encode()
    assert parse_namespace(decode_json(b"\xef\xbb\xbf" + body)) == BASE  # a BOM
    huge = body.replace(b'"object_count": 6', b'"object_count": ' + b"9" * 5000)
    assert changed(parse_namespace(decode_json(huge))) == {
        "objects": None, "invalid_fields": ("object_count",)}
    with pytest.raises(ValueError):
        decode_json(b"{not json")


@pytest.mark.parametrize(("body", "message"), [
    ([GOOD], "expected a JSON object, got list"),
    ("spotify", "expected a JSON object, got str"),
    (None, "expected a JSON object, got NoneType"),
    ({k: x for k, x in GOOD.items() if k != "namespace_name"}, "namespace_name: Field required"),
    (GOOD | {"namespace_name": None}, "namespace_name: Field required"),
    (GOOD | {"namespace_name": 5}, "namespace_name: expected a string, got int"),
    (GOOD | {"namespace_name": "n" * 257}, "namespace_name: longer than 256 characters"),
    (GOOD | {"namespace_name": "n\ud800"}, "namespace_name: not valid Unicode"),
    (GOOD | {"namespace_id": ["ns_abc"]}, "namespace_id: expected a string, got list"),
])
def test_only_shape_and_identity_fail_the_answer(body: Any, message: str) -> None:
    with pytest.raises(InvalidResponse) as e:
        parse_namespace(body)
    assert str(e.value) == message


# -- through the client: the poll succeeds, the series that can be built are there -----------

def _client() -> MixpeekClient:
    conf = MixpeekConfig(base_url="https://api.mixpeek.test", max_requests_per_minute=0)
    return MixpeekClient(conf, Secret("sk_live_unit_models"), TokenBucket(0),
                         sleep=lambda _s: None)


@pytest.mark.parametrize("body", [
    json.dumps(with_field(GOOD, "bucket_count", -1)).encode(),
    json.dumps(GOOD).encode().replace(b"a namespace", b"\xff\xfe not UTF-8"),
    json.dumps(GOOD | {"description": "\ud800"}).encode(),
], ids=["negative-bucket-count", "bad-utf8-description", "lone-surrogate-description"])
def test_a_bad_field_does_not_fail_the_poll(body: bytes) -> None:
    url = "https://api.mixpeek.test" + namespace_path("spotify_playlists_dev")
    with requests_mock.Mocker() as m:
        m.get(url, content=body)
        r = _client().get_namespace("spotify_playlists_dev")
    assert r.ok, r.message
    assert r.values is not None and r.values.documents == 123


# -- list pages -------------------------------------------------------------------------------

def test_list_reads_only_identity_and_skips_results_without_one() -> None:
    page = parse_list_page({"results": [
        {"namespace_name": "a", "namespace_id": "ns_a", "description": "\ud800",
         "document_count": -1, "infrastructure": 5},
        {"namespace_name": "b"},
        {"namespace_id": "ns_c"}, 7, {"namespace_name": "d\ud800"}, {"namespace_name": 5},
    ], "pagination": {"next_cursor": "c2"}})
    assert page.items == (("ns_a", "a"), ("", "b"))
    assert page.skipped == 4
    assert page.next_cursor == "c2" and page.next_offset is None


def test_list_offset_pagination_counts_every_result() -> None:
    page = parse_list_page({"results": [{"namespace_name": "a"}, {}],
                            "pagination": {"has_more": True, "skip": 10, "limit": "ten"}})
    assert page.next_offset == 12 and page.next_cursor is None
    done = parse_list_page({"results": [], "pagination": {"has_more": False, "next_cursor": ""}})
    assert done.next_offset is None and done.next_cursor is None


@pytest.mark.parametrize(("body", "message"), [
    ({"pagination": {}}, "results: expected an array, got NoneType"),
    ({"results": {"a": 1}}, "results: expected an array, got dict"),
    ({"results": [], "pagination": []}, "pagination: expected a JSON object, got list"),
    ({"results": [], "pagination": {"next_cursor": 5}},
     "pagination.next_cursor: expected a string, got int"),
    ({"results": [], "pagination": {"next_cursor": "c" * 4097}},
     "pagination.next_cursor: longer than 4096 characters"),
    ({"results": [], "pagination": {"has_more": "yes"}},
     "pagination.has_more: expected a boolean, got str"),
    ({"results": [], "pagination": {"has_more": True, "skip": 2**60}},
     "pagination.skip: 1152921504606846976 is outside 0..2**53"),
])
def test_list_pagination_is_never_guessed(body: Any, message: str) -> None:
    with pytest.raises(InvalidResponse) as e:
        parse_list_page(body)
    assert str(e.value) == message


# -- stats/batch ------------------------------------------------------------------------------

def test_stats_batch_counts_field_by_field() -> None:
    out = parse_stats_batch({"stats": {
        "ns_a": {"namespace_id": "ns_a", "document_count": 3, "bucket_count": -1,
                 "collection_count": "2", "object_count": 9, "extra": "\ud800"},
        "ns_b": {"namespace_id": "ns_b", "document_count": 0, "document_count_complete": False},
        "ns_c": {},
    }})
    a, b, c = out["ns_a"], out["ns_b"], out["ns_c"]
    assert (a.documents, a.buckets, a.collections, a.objects) == (3, None, None, 9)
    assert a.invalid_fields == ("bucket_count", "collection_count")
    assert b.documents is None and b.document_count_complete is False and b.invalid_fields == ()
    assert (c.documents, c.buckets, c.collections, c.objects, c.invalid_fields) == (
        None, None, None, None, ())


@pytest.mark.parametrize(("body", "message"), [
    ([], "expected a JSON object, got list"),
    ({}, "stats: expected an object, got NoneType"),
    ({"stats": []}, "stats: expected an object, got list"),
    ({"stats": {"ns_a": None}}, "stats['ns_a']: expected a JSON object, got NoneType"),
    ({"stats": {"ns_a": {"namespace_id": "ns_b", "document_count": 1}}},
     "stats['ns_a']: namespace_id differs from the key it is listed under"),
    ({"stats": {"ns_a": {"namespace_id": 7}}},
     "stats['ns_a']: namespace_id: expected a string, got int"),
])
def test_stats_batch_identity(body: Any, message: str) -> None:
    with pytest.raises(InvalidResponse) as e:
        parse_stats_batch(body)
    assert str(e.value) == message
