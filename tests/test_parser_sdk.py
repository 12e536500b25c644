"""Mixpeek's own SDK (mixpeek==1.3.783, API 0.82) judges the parser, field by field.

Documents are generated from the SDK's field types and sent as the API would send them (JSON
bytes). For every document the SDK accepts, each value the exporter publishes is the value the
SDK read, where the raw document has that field; where it has not, the exporter publishes
nothing (the SDK fills defaults such as ``max_concurrent_jobs: 10``; the exporter must not). The
exporter is stricter than the SDK in these stated rules only, and then drops the one field and
names it in ``invalid_fields``:

- a count must be in 0..2**53 (the SDK's counts are plain StrictInt: it accepts -5 and 10**400);
- a date-time must be a string that is not a bare number (the SDK, through pydantic, reads
  1699335116 or "1699335116" as Unix seconds, or milliseconds if the number is large);
- a label (and the identity) must be at most 256 characters of valid Unicode; an identity that
  is not fails the answer, as it would be published as a label on every series.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from mixpeek.models import NamespaceModel, NamespaceStatsResponse
from pydantic import ValidationError

from exporter.mixpeek.fields import MAX_COUNT, MAX_LABEL, decode_json
from exporter.mixpeek.models import (
    NAMESPACE_FIELDS,
    InvalidResponse,
    NamespaceValues,
    parse_namespace,
    parse_stats_batch,
)

PROPERTY = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
ABSENT: Any = object()  # the key is left out of the document

# -- strategies, from the SDK's field types ---------------------------------------------------

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8),
                         st.floats(allow_nan=False, allow_infinity=False))
junk = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=6)
# Any text, lone surrogates included: the SDK's StrictStr takes them, a label cannot.
texts = st.one_of(st.text(max_size=20),
                  st.text(st.characters(categories=["Cs", "Ll"]), min_size=1, max_size=3))
names = st.one_of(st.text(min_size=1, max_size=64), st.text(max_size=66), texts)
counts = st.one_of(st.integers(0, 10**6), st.integers(), st.integers(-(2**70), 2**70),
                   st.sampled_from([0, -1, MAX_COUNT, MAX_COUNT + 1, 10**400]))
offsets = st.integers(-(23 * 60 + 59), 23 * 60 + 59).map(
    lambda m: timezone(timedelta(minutes=m)))
naive = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30))
date_times = st.one_of(
    st.builds(lambda d, sep: d.isoformat(sep=sep), naive, st.sampled_from("T ")),
    st.builds(lambda d, tz: d.replace(tzinfo=tz).isoformat(), naive, offsets),
    naive.map(lambda d: d.isoformat() + "Z"),
    naive.map(lambda d: d.date().isoformat()),
    st.integers(-(10**11), 10**11),
    st.integers(-(10**11), 10**11).map(str),
    st.sampled_from(["0000-00-00", "yesterday", "", "2023-02-30T00:00:00Z"]),
)
extractors = st.lists(st.fixed_dictionaries(
    {"feature_extractor_name": st.text(max_size=10), "version": st.text(max_size=3),
     "feature_extractor_id": st.text(max_size=10)},
    optional={"params": st.dictionaries(st.text(max_size=5), json_scalars, max_size=2)}),
    max_size=4)
payload_indexes = st.lists(st.fixed_dictionaries(
    {"field_name": st.text(min_size=1, max_size=20),
     "type": st.sampled_from(["keyword", "integer", "float", "bool", "geo", "datetime", "text",
                              "uuid"])},
    optional={"is_protected": st.booleans()}), max_size=4)


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Absent, null, or a value."""
    return st.one_of(st.just(ABSENT), st.none(), strategy)


infrastructure_fields = st.fixed_dictionaries({}, optional={
    "max_concurrent_jobs": st.one_of(st.none(), st.integers(0, 1001), st.integers(1, 1000),
                                     counts),
    "autoscaling_enabled": st.one_of(st.none(), st.booleans()),
    "compute_tier": st.one_of(st.none(), texts, st.integers()),  # removed 2026-09-10
    "qdrant_collection": st.text(max_size=5),  # removed 2026-09-26
    "ray_dashboard_url": st.text(max_size=5),
})
infrastructure = st.one_of(st.just(ABSENT), st.none(), st.just({}), junk,
                           infrastructure_fields, infrastructure_fields)


@st.composite
def namespace_docs(draw: st.DrawFn) -> dict[str, Any]:
    doc = {
        "namespace_name": draw(st.one_of(names, names, names, junk)),
        "namespace_id": draw(maybe(texts)),
        "namespace_type": draw(maybe(st.sampled_from(["standard", "marketplace"]))),
        "scope": draw(maybe(st.sampled_from(["org", "system"]))),
        "infrastructure": draw(infrastructure),
        "cluster_id": draw(maybe(texts)),
        "description": draw(st.one_of(st.just(ABSENT), texts)),
        "feature_extractors": draw(maybe(extractors)),
        "payload_indexes": draw(maybe(payload_indexes)),
        "payload_index_count": draw(maybe(counts)),
        "document_count": draw(maybe(counts)),
        "document_count_complete": draw(maybe(st.booleans())),
        "bucket_count": draw(maybe(counts)),
        "collection_count": draw(maybe(counts)),
        "object_count": draw(maybe(counts)),
        "auto_create_indexes": draw(maybe(st.booleans())),
        "vector_inference_map": draw(maybe(st.dictionaries(st.text(max_size=5),
                                                                 st.text(max_size=5)))),
        "mode": draw(maybe(texts)),
        "clone_status": draw(maybe(st.one_of(st.sampled_from(["cloning", "ready",
                                                                    "failed"]), texts))),
        "clone_phase": draw(maybe(st.sampled_from(["queued", "copying"]))),
        "namespace_ready": draw(maybe(st.booleans())),
        "created_at": draw(maybe(date_times)),
        "updated_at": draw(maybe(date_times)),
        "expires_at": draw(maybe(date_times)),
        "brand_new_field": draw(st.one_of(st.just(ABSENT), junk)),
    }
    return {k: v for k, v in doc.items() if v is not ABSENT}


def wire(doc: dict[str, Any]) -> bytes:
    """The document as the API sends it: UTF-8 JSON (a lone surrogate as its UTF-8 bytes)."""
    return json.dumps(doc, ensure_ascii=False).encode("utf-8", "surrogatepass")


# -- what the exporter must publish, given the raw document and what the SDK read -------------

def raw_at(raw: dict[str, Any], path: str) -> Any:
    """The raw value at a dotted path; None if absent, null or under a non-object."""
    node: Any = raw
    for part in path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def usable_label(v: Any) -> bool:
    if not isinstance(v, str) or len(v) > MAX_LABEL:
        return False
    try:
        v.encode()
    except UnicodeEncodeError:
        return False
    return True


def epoch(dt: datetime) -> float:
    return (dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)).timestamp()


def bare_number(v: Any) -> bool:
    try:
        float(v)
    except (TypeError, ValueError):
        return False
    return True


def expected_values(raw: dict[str, Any], sdk: NamespaceModel) -> tuple[dict[str, Any], set[str]]:
    """Each published attribute from the SDK's reading, present only where the raw document
    has the field, with the exporter's stated stricter rules; and the fields it must drop."""
    out: dict[str, Any] = {}
    invalid: set[str] = set()
    infra = sdk.infrastructure

    def count(path: str, value: int | None) -> int | None:
        if raw_at(raw, path) is None:
            return None
        assert value is not None
        if 0 <= value <= MAX_COUNT:
            return value
        invalid.add(path)
        return None

    def present(path: str, value: Any) -> Any:
        return value if raw_at(raw, path) is not None else None

    def stamp(path: str, value: datetime | None) -> float | None:
        v = raw_at(raw, path)
        if v is None:
            return None
        if not isinstance(v, str) or bare_number(v):
            invalid.add(path)
            return None
        assert value is not None
        return epoch(value)

    def label_of(path: str, value: Any, absent: Any) -> Any:
        if raw_at(raw, path) is None:
            return absent
        if usable_label(value):
            return value
        invalid.add(path)
        return absent

    out["documents"] = count("document_count", sdk.document_count)
    out["document_count_complete"] = present("document_count_complete",
                                             sdk.document_count_complete)
    if out["document_count_complete"] is False:  # the API says it is not a count
        out["documents"] = None
    out["buckets"] = count("bucket_count", sdk.bucket_count)
    out["collections"] = count("collection_count", sdk.collection_count)
    out["objects"] = count("object_count", sdk.object_count)
    out["max_concurrent_jobs"] = present("infrastructure.max_concurrent_jobs",
                                         infra.max_concurrent_jobs if infra else None)
    out["autoscaling_enabled"] = present("infrastructure.autoscaling_enabled",
                                         infra.autoscaling_enabled if infra else None)
    out["auto_create_indexes_enabled"] = present("auto_create_indexes", sdk.auto_create_indexes)
    extractors = sdk.feature_extractors
    out["feature_extractors"] = present("feature_extractors",
                                        None if extractors is None else len(extractors))
    if raw_at(raw, "payload_indexes") is not None:
        assert sdk.payload_indexes is not None
        out["payload_indexes"] = len(sdk.payload_indexes)
    else:
        out["payload_indexes"] = count("payload_index_count", sdk.payload_index_count)
    out["created_timestamp"] = stamp("created_at", sdk.created_at)
    out["updated_timestamp"] = stamp("updated_at", sdk.updated_at)
    out["expires_timestamp"] = stamp("expires_at", sdk.expires_at)
    out["namespace_ready"] = present("namespace_ready", sdk.namespace_ready)
    # compute_tier was removed from the SDK's model (2026-09-10): the raw value is the reading.
    out["compute_tier"] = label_of("infrastructure.compute_tier",
                                   raw_at(raw, "infrastructure.compute_tier"), "")
    out["cluster_id"] = label_of("cluster_id", sdk.cluster_id, "")
    out["namespace_type"] = label_of("namespace_type",
                                     sdk.namespace_type and sdk.namespace_type.value, "")
    out["mode"] = label_of("mode", sdk.mode, "")
    out["clone_status"] = label_of("clone_status", sdk.clone_status, None)
    return out, invalid


# -- the properties ---------------------------------------------------------------------------

def test_the_expectation_covers_every_published_field() -> None:
    published = {f.attr for f in NAMESPACE_FIELDS}
    raw = {"namespace_name": "n"}
    expected, _ = expected_values(raw, NamespaceModel.from_dict(raw))
    assert set(expected) == published
    assert published | {"namespace_id", "namespace_name", "invalid_fields"} == set(
        NamespaceValues.__dataclass_fields__)


@PROPERTY
@given(namespace_docs())
def test_published_values_are_what_the_sdk_read(doc: dict[str, Any]) -> None:
    body = wire(doc)
    raw = json.loads(body)
    try:
        sdk = NamespaceModel.from_dict(raw)
    except ValidationError:
        sdk = None
    try:
        got = parse_namespace(decode_json(body))
    except InvalidResponse:
        got = None
    if sdk is None:
        # Whatever the SDK refuses, only a bad identity may fail the answer.
        if got is None:
            assert not (usable_label(raw.get("namespace_name"))
                        and (raw.get("namespace_id") is None
                             or usable_label(raw.get("namespace_id"))))
        return
    assert sdk is not None
    identity_ok = usable_label(sdk.namespace_name) and (
        sdk.namespace_id is None or usable_label(sdk.namespace_id))
    if not identity_ok:
        assert got is None
        return
    assert got is not None
    assert got.namespace_name == sdk.namespace_name
    assert got.namespace_id == (sdk.namespace_id or "")
    expected, invalid = expected_values(raw, sdk)
    for attr, value in expected.items():
        assert getattr(got, attr) == value, attr
    assert set(got.invalid_fields) == invalid
    assert len(got.invalid_fields) == len(invalid)


@PROPERTY
@given(namespace_docs(), st.sampled_from(sorted(
    {p for f in NAMESPACE_FIELDS for p, _ in f.sources}
    | {"infrastructure", "description", "vector_inference_map", "scope", "brand_new_field"})),
    junk)
# Found in CI: a usable payload_indexes means payload_index_count is not read at all.
@example({"namespace_name": "0", "payload_index_count": -1}, "payload_indexes", [])
def test_one_bad_field_loses_only_what_is_built_from_it(doc: dict[str, Any], path: str,
                                                        value: Any) -> None:
    try:
        base = parse_namespace(decode_json(wire(doc)))
    except InvalidResponse:
        return
    doc = copy.deepcopy(doc)
    *parents, key = path.split(".")
    node: Any = doc
    for p in parents:
        if not isinstance(node.get(p), dict):
            node[p] = {}
        node = node[p]
    node[key] = value
    got = parse_namespace(decode_json(wire(doc)))  # never fails: the identity is untouched
    affected = {f.attr for f in NAMESPACE_FIELDS
                if any(src == path or src.startswith(path + ".") for src, _ in f.sources)}
    if path == "document_count_complete":
        affected.add("documents")
    for attr in NamespaceValues.__dataclass_fields__:
        if attr not in affected and attr != "invalid_fields":
            assert getattr(got, attr) == getattr(base, attr), attr

    # A value read from the first usable of several API fields (payload_indexes, else
    # payload_index_count) does not look at the others: their state moves with the change.
    siblings = {src for f in NAMESPACE_FIELDS if f.attr in affected for src, _ in f.sources}

    def outside(names: tuple[str, ...]) -> set[str]:
        return {n for n in names if n != path and not n.startswith(path + ".")
                and not path.startswith(n + ".") and n not in siblings}
    assert outside(got.invalid_fields) == outside(base.invalid_fields)


stats_entries = st.fixed_dictionaries(
    {"namespace_id": st.text(min_size=1, max_size=20)},
    optional={"document_count": st.one_of(st.none(), counts),
              "document_count_complete": st.one_of(st.none(), st.booleans()),
              "bucket_count": st.one_of(st.none(), counts),
              "collection_count": st.one_of(st.none(), counts),
              "object_count": st.one_of(st.none(), counts),
              "brand_new_field": junk})


@PROPERTY
@given(stats_entries)
def test_batched_counts_are_what_the_sdk_read(entry: dict[str, Any]) -> None:
    body = wire({"stats": {entry["namespace_id"]: entry}})
    raw = json.loads(body)["stats"][entry["namespace_id"]]
    sdk = NamespaceStatsResponse.from_dict(raw)  # the generator only makes what it accepts
    assert sdk is not None
    got = parse_stats_batch(decode_json(body))[entry["namespace_id"]]
    invalid = set()

    def count(field: str, value: int | None) -> int | None:
        # The SDK reads a missing count as 0; the exporter as "not said".
        if raw.get(field) is None:
            return None
        assert value is not None
        if 0 <= value <= MAX_COUNT:
            return value
        invalid.add(field)
        return None

    complete = sdk.document_count_complete if raw.get("document_count_complete") is not None \
        else None
    documents = count("document_count", sdk.document_count)
    assert got.documents == (None if complete is False else documents)
    assert got.document_count_complete == complete
    assert got.buckets == count("bucket_count", sdk.bucket_count)
    assert got.collections == count("collection_count", sdk.collection_count)
    assert got.objects == count("object_count", sdk.object_count)
    assert set(got.invalid_fields) == invalid
