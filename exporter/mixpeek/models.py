"""What the exporter reads from Mixpeek's namespace endpoints, one field at a time.

The API drifts (fields removed on 2026-09-10 and 2026-09-26, new fields in API 0.82, nulls
anywhere), so every field is optional and unknown fields are ignored. Only the shape of the body
and the identity (``namespace_name``, ``namespace_id``) can make an answer unusable
(``InvalidResponse``). Every published field is read on its own, from the table
``NAMESPACE_FIELDS``: missing or null means "the API did not say" (None); a value of the wrong type
or out of range (``"123"`` or ``true`` for a count, a negative count, ``"0000-00-00"`` for a date)
is dropped and its API field name goes into ``invalid_fields``, so one bad field never takes the
document count down with it. Fields the exporter does not publish (``description``, ...) are never
looked at.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from exporter.mixpeek.fields import (
    InvalidResponse,
    Published,
    count,
    cursor,
    flag,
    json_object,
    label,
    length,
    read_published,
    required,
    timestamp,
)
from exporter.settings.identifiers import identifier_labels

# Every value published from a Get Namespace answer, with the API field it comes from. Adding a
# field is one entry here and one attribute on NamespaceValues; invalid_fields names the API field.
NAMESPACE_FIELDS: tuple[Published, ...] = (
    Published("documents", (("document_count", count),)),
    Published("document_count_complete", (("document_count_complete", flag),)),
    Published("buckets", (("bucket_count", count),)),
    Published("collections", (("collection_count", count),)),
    Published("objects", (("object_count", count),)),
    Published("max_concurrent_jobs", (("infrastructure.max_concurrent_jobs", count),)),
    Published("autoscaling_enabled", (("infrastructure.autoscaling_enabled", flag),)),
    Published("auto_create_indexes_enabled", (("auto_create_indexes", flag),)),
    Published("feature_extractors", (("feature_extractors", length),)),
    # The full list where the answer has it; the summary list view sends only its count.
    Published("payload_indexes", (("payload_indexes", length), ("payload_index_count", count))),
    Published("created_timestamp", (("created_at", timestamp),)),
    Published("updated_timestamp", (("updated_at", timestamp),)),
    Published("expires_timestamp", (("expires_at", timestamp),)),
    Published("namespace_ready", (("namespace_ready", flag),)),
    Published("compute_tier", (("infrastructure.compute_tier", label),), ""),
    Published("cluster_id", (("cluster_id", label),), ""),
    Published("namespace_type", (("namespace_type", label),), ""),
    Published("mode", (("mode", label),), ""),
    Published("clone_status", (("clone_status", label),)),
)

# The stats endpoints carry the same count fields, read the same way.
COUNT_FIELDS: tuple[Published, ...] = tuple(
    f for f in NAMESPACE_FIELDS
    if f.attr in ("documents", "document_count_complete", "buckets", "collections", "objects"))
# Their API names, as they appear in ``invalid_fields``.
COUNT_API_FIELDS: frozenset[str] = frozenset(path for f in COUNT_FIELDS for path, _ in f.sources)


def _read(obj: dict[str, Any], fields: tuple[Published, ...]
          ) -> tuple[dict[str, Any], tuple[str, ...]]:
    values, invalid = read_published(obj, fields)
    if values["document_count_complete"] is False:
        # The API says the live count did not finish: whatever number is there is not a count.
        values["documents"] = None
    return values, invalid


@dataclass(frozen=True, slots=True)
class NamespaceValues:
    """What one good poll tells us, flattened.

    ``None`` (``""`` for the labels compute_tier, cluster_id, namespace_type and mode) means the
    API did not say, or said something unusable; then the API field's name is in
    ``invalid_fields``. NAMESPACE_FIELDS gives the API field of each attribute; timestamps are
    Unix seconds.
    """

    namespace_id: str
    namespace_name: str
    documents: int | None
    buckets: int | None
    collections: int | None
    objects: int | None
    max_concurrent_jobs: int | None
    autoscaling_enabled: bool | None
    auto_create_indexes_enabled: bool | None
    feature_extractors: int | None
    payload_indexes: int | None
    created_timestamp: float | None
    updated_timestamp: float | None
    compute_tier: str
    cluster_id: str
    namespace_type: str
    mode: str
    namespace_ready: bool | None = None
    document_count_complete: bool | None = None
    expires_timestamp: float | None = None  # expires_at, Unix seconds
    clone_status: str | None = None
    invalid_fields: tuple[str, ...] = ()  # published fields of this answer that were unusable


def parse_namespace(body: Any) -> NamespaceValues:
    """A decoded Get Namespace body -> NamespaceValues.

    InvalidResponse if the body is not a JSON object, or ``namespace_name`` (required) or
    ``namespace_id`` (optional) is not a string usable as a label. Every other field is read on
    its own (NAMESPACE_FIELDS) and never fails the answer.
    """
    obj = json_object(body)
    name = required(obj, "namespace_name", label, missing_ok=False)
    ns_id = required(obj, "namespace_id", label) or ""
    values, invalid = _read(obj, NAMESPACE_FIELDS)
    return NamespaceValues(namespace_id=ns_id, namespace_name=name, invalid_fields=invalid,
                           **values)


class WrongNamespace(InvalidResponse):
    """A well-formed answer about another namespace than the one asked for."""


def check_identity(asked: str, values: NamespaceValues) -> NamespaceValues:
    """``values`` if they are for the namespace ``asked``, else WrongNamespace.

    Asked by id (``ns_...``), ``namespace_id`` must be that id; asked by name,
    ``namespace_name`` must be that name, ignoring case. An answer about another namespace would
    otherwise be published under that namespace's labels, hiding its real series.
    """
    asked_id, asked_name = identifier_labels(asked)
    if asked_id:
        if values.namespace_id != asked_id:
            raise WrongNamespace(
                f"asked for namespace_id {asked_id!r}, the answer is for namespace_id "
                f"{values.namespace_id[:80]!r}")
    elif values.namespace_name.casefold() != asked_name.casefold():
        raise WrongNamespace(
            f"asked for namespace_name {asked_name!r}, the answer is for namespace_name "
            f"{values.namespace_name[:80]!r}")
    return values


# -- list and stats/batch (discovery and batched counts) -----------------------------------


@dataclass(frozen=True, slots=True)
class ListPage:
    """One page of the namespace list."""

    items: tuple[tuple[str, str], ...]  # (namespace_id or "", namespace_name)
    next_cursor: str | None
    next_offset: int | None
    # Results without a usable identity (not an object, no namespace_name, a name that cannot
    # be a label): left out, since a namespace cannot be published without its labels.
    skipped: int = 0


def parse_list_page(body: Any) -> ListPage:
    """A decoded list body ``{results: [...], pagination: {...}}`` -> ListPage.

    Only each result's identity is read. InvalidResponse if the body or ``pagination`` is not
    an object, ``results`` is not an array, or a pagination field is unusable: a guess there
    would lose or repeat namespaces. Both pagination shapes are read: the schema's
    ``next_cursor`` and the documented example's ``has_more``/``skip``.
    """
    obj = json_object(body)
    results = obj.get("results")
    if type(results) is not list:
        raise InvalidResponse(f"results: expected an array, got {type(results).__name__}")
    items: list[tuple[str, str]] = []
    for i, item in enumerate(results):
        try:
            where = f"results.{i}."
            item = json_object(item, where)
            items.append((required(item, "namespace_id", label, where) or "",
                          required(item, "namespace_name", label, where, missing_ok=False)))
        except InvalidResponse:
            continue
    pag = obj.get("pagination")
    pag = {} if pag is None else json_object(pag, "pagination: ")
    next_cursor = required(pag, "next_cursor", cursor, "pagination.") or None
    next_offset = None
    if next_cursor is None and required(pag, "has_more", flag, "pagination."):
        skip = required(pag, "skip", count, "pagination.") or 0
        next_offset = skip + max(len(results), 1)
    return ListPage(tuple(items), next_cursor, next_offset, len(results) - len(items))


@dataclass(frozen=True, slots=True)
class NamespaceCounts:
    """The counts of one namespace from ``/stats`` or ``stats/batch``; None as in
    NamespaceValues (same API fields, COUNT_FIELDS)."""

    documents: int | None
    buckets: int | None
    collections: int | None
    objects: int | None
    document_count_complete: bool | None = None
    invalid_fields: tuple[str, ...] = ()


def parse_stats(body: Any, where: str = "") -> NamespaceCounts:
    """A decoded NamespaceStatsResponse -> NamespaceCounts, field by field.

    InvalidResponse if it is not an object or its ``namespace_id`` is not a usable string.
    """
    obj = json_object(body, where)
    required(obj, "namespace_id", label, where)
    values, invalid = _read(obj, COUNT_FIELDS)
    return NamespaceCounts(invalid_fields=invalid, **values)


def parse_stats_batch(body: Any) -> dict[str, NamespaceCounts]:
    """A decoded stats/batch body ``{stats: {namespace_id: NamespaceStatsResponse}}`` ->
    {namespace_id: NamespaceCounts}.

    InvalidResponse if ``stats`` is not an object, or an entry is not an object or names
    another namespace_id than its key: counts about one namespace must not land on another.
    """
    stats = json_object(body).get("stats")
    if type(stats) is not dict:
        raise InvalidResponse(f"stats: expected an object, got {type(stats).__name__}")
    out: dict[str, NamespaceCounts] = {}
    for ns_id, entry in stats.items():
        where = f"stats[{ns_id[:80]!r}]: "
        counts = parse_stats(entry, where)
        inner = entry.get("namespace_id")
        if inner is not None and inner != ns_id:
            raise InvalidResponse(f"{where}namespace_id differs from the key it is listed under")
        out[ns_id] = counts
    return out
