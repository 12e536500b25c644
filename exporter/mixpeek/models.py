"""The Get Namespace response, as much of it as the exporter publishes.

The API drifts (fields removed on 2026-09-10 and 2026-09-26, new fields in API 0.82, nulls
anywhere), so every field is optional and unknown fields are ignored. What is present must
have the documented type: ``"123"`` for a count or ``1`` for a boolean is an invalid response,
not something to coerce, because a silently coerced number is a wrong number on a dashboard.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError

Count = Annotated[StrictInt, Field(ge=0)]
# A label value comes from the API; cap it so a hostile response cannot blow up every scrape.
LabelStr = Annotated[StrictStr, Field(max_length=256)]


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Infrastructure(_Lenient):
    autoscaling_enabled: StrictBool | None = None
    compute_tier: LabelStr | None = None
    max_concurrent_jobs: Count | None = None


class NamespaceResponse(_Lenient):
    namespace_name: LabelStr
    namespace_id: LabelStr | None = None
    namespace_type: LabelStr | None = None
    mode: LabelStr | None = None
    cluster_id: LabelStr | None = None
    infrastructure: Infrastructure | None = None
    feature_extractors: list[Any] | None = None
    payload_indexes: list[Any] | None = None
    payload_index_count: Count | None = None
    document_count: Count | None = None
    document_count_complete: StrictBool | None = None
    bucket_count: Count | None = None
    collection_count: Count | None = None
    object_count: Count | None = None
    auto_create_indexes: StrictBool | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class InvalidResponse(ValueError):
    """The body is not a namespace document we can trust."""


@dataclass(frozen=True, slots=True)
class NamespaceValues:
    """What one good poll tells us, flattened. ``None`` means "the API did not say"."""

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


def _describe(err: ValidationError) -> str:
    parts = []
    for e in err.errors()[:3]:
        loc = ".".join(str(p) for p in e["loc"]) or "body"
        kind = type(e.get("input")).__name__ if "input" in e else ""
        parts.append(f"{loc}: {e['msg']}" + (f" (got {kind})" if kind else ""))
    more = len(err.errors()) - 3
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts)


def _epoch(value: datetime | None) -> float | None:
    if value is None:
        return None
    if value.tzinfo is None:
        # The API writes UTC; a naive timestamp read as local time would shift by the offset.
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def parse_namespace(body: Any) -> NamespaceValues:
    if not isinstance(body, dict):
        raise InvalidResponse(f"expected a JSON object, got {type(body).__name__}")
    try:
        ns = NamespaceResponse.model_validate(body)
    except ValidationError as e:
        raise InvalidResponse(_describe(e)) from None
    infra = ns.infrastructure or Infrastructure()
    documents = ns.document_count
    if ns.document_count_complete is False:
        # The API says the live count timed out: whatever number is there is not a count.
        documents = None
    if ns.payload_indexes is not None:
        payload_indexes: int | None = len(ns.payload_indexes)
    else:
        payload_indexes = ns.payload_index_count
    return NamespaceValues(
        namespace_id=ns.namespace_id or "",
        namespace_name=ns.namespace_name,
        documents=documents,
        buckets=ns.bucket_count,
        collections=ns.collection_count,
        objects=ns.object_count,
        max_concurrent_jobs=infra.max_concurrent_jobs,
        autoscaling_enabled=infra.autoscaling_enabled,
        auto_create_indexes_enabled=ns.auto_create_indexes,
        feature_extractors=(len(ns.feature_extractors)
                            if ns.feature_extractors is not None else None),
        payload_indexes=payload_indexes,
        created_timestamp=_epoch(ns.created_at),
        updated_timestamp=_epoch(ns.updated_at),
        compute_tier=infra.compute_tier or "",
        cluster_id=ns.cluster_id or "",
        namespace_type=ns.namespace_type or "",
        mode=ns.mode or "",
    )


# -- list and stats/batch (discovery and batched counts) -----------------------------------


class _ListItem(_Lenient):
    namespace_name: LabelStr
    namespace_id: LabelStr | None = None


class _Pagination(_Lenient):
    # Schema shape (PaginationResponse) and the documented example's shape: both are seen.
    next_cursor: StrictStr | None = None
    has_more: StrictBool | None = None
    skip: Count | None = None
    limit: Count | None = None


class _ListBody(_Lenient):
    results: list[_ListItem]
    pagination: _Pagination | None = None


@dataclass(frozen=True, slots=True)
class ListPage:
    items: tuple[tuple[str, str], ...]  # (namespace_id or "", namespace_name)
    next_cursor: str | None
    next_offset: int | None


def parse_list_page(body: Any) -> ListPage:
    if not isinstance(body, dict):
        raise InvalidResponse(f"expected a JSON object, got {type(body).__name__}")
    try:
        page = _ListBody.model_validate(body)
    except ValidationError as e:
        raise InvalidResponse(_describe(e)) from None
    items = tuple((i.namespace_id or "", i.namespace_name) for i in page.results)
    pag = page.pagination or _Pagination()
    next_offset = None
    if pag.next_cursor is None and pag.has_more:
        next_offset = (pag.skip or 0) + max(len(items), 1)
    return ListPage(items, pag.next_cursor or None, next_offset)


class _Counts(_Lenient):
    namespace_id: LabelStr | None = None
    document_count: Count | None = None
    document_count_complete: StrictBool | None = None
    bucket_count: Count | None = None
    collection_count: Count | None = None
    object_count: Count | None = None


class _StatsBody(_Lenient):
    stats: dict[str, _Counts]


@dataclass(frozen=True, slots=True)
class NamespaceCounts:
    documents: int | None
    buckets: int | None
    collections: int | None
    objects: int | None


def parse_stats_batch(body: Any) -> dict[str, NamespaceCounts]:
    if not isinstance(body, dict):
        raise InvalidResponse(f"expected a JSON object, got {type(body).__name__}")
    try:
        parsed = _StatsBody.model_validate(body)
    except ValidationError as e:
        raise InvalidResponse(_describe(e)) from None
    return {
        ns_id: NamespaceCounts(
            None if c.document_count_complete is False else c.document_count,
            c.bucket_count, c.collection_count, c.object_count)
        for ns_id, c in parsed.stats.items()
    }
