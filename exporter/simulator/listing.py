"""List Namespaces: ``POST /v1/namespaces/list`` and its alias ``GET /v1/namespaces``.

Parameters as the SDK (API 0.82) sends them: ``limit``/``page_size`` (1-1000), ``offset``
(0-10000), ``page``, ``cursor``/``next_cursor``/``after``, ``include_total`` and ``view``
(``full``|``summary``) in the query; ``limit``, ``page_size``, ``offset``, ``page``,
``filters``, ``search``, ``case_sensitive`` and ``include_total`` in the body, where a body value
wins over the query. The answer is the SDK's ``ListNamespacesResponse``; ``legacy`` pagination is
the shape of the docs' example (``{has_more, limit, skip}``), which real answers have shown too.
"""

from __future__ import annotations

import math
import re
from typing import Any

from exporter.simulator.state import Namespace, SimState

DEFAULT_LIMIT = 100


class ListError(ValueError):
    """A parameter the API would refuse with 422; the message names it."""


def _int(value: Any, name: str, low: int, high: int | None) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ListError(f"{name} must be an integer")
    try:
        n = int(value)
    except ValueError:
        raise ListError(f"{name} must be an integer, got {value!r}") from None
    if n < low or (high is not None and n > high):
        raise ListError(f"{name} must be in {low}..{high if high is not None else 'any'}")
    return n


def _first(body: dict[str, Any], query: dict[str, list[str]], *names: str) -> Any:
    """The body's value for the first name it has, else the query's."""
    for n in names:
        if body.get(n) is not None:
            return body[n]
    for n in names:
        if query.get(n):
            return query[n][0]
    return None


def _matches(value: Any, cond: Any, case: bool) -> bool:
    def norm(v: Any) -> Any:
        return v if case or not isinstance(v, str) else v.lower()
    if not isinstance(cond, dict):
        return bool(norm(value) == norm(cond))
    for op, arg in cond.items():
        if op == "$eq":
            ok = norm(value) == norm(arg)
        elif op == "$ne":
            ok = norm(value) != norm(arg)
        elif op == "$in" and isinstance(arg, list):
            ok = norm(value) in [norm(a) for a in arg]
        elif op == "$regex" and isinstance(arg, str):
            try:
                ok = isinstance(value, str) and re.search(
                    arg, value, 0 if case else re.IGNORECASE) is not None
            except re.error as e:
                raise ListError(f"filters: bad $regex {arg!r}: {e}") from None
        else:
            raise ListError(f"filters: unsupported operator {op!r}")
        if not ok:
            return False
    return True


def _selected(ns: Namespace, filters: dict[str, Any], search: str | None, case: bool) -> bool:
    doc = ns.doc
    if any(not _matches(doc.get(field), cond, case) for field, cond in filters.items()):
        return False
    if search:
        needle = search if case else search.lower()
        hay = [str(doc.get(k) or "") for k in ("namespace_id", "namespace_name", "description")]
        return any(needle in (h if case else h.lower()) for h in hay)
    return True


def list_page(state: SimState, body: dict[str, Any], query: dict[str, list[str]]
              ) -> dict[str, Any]:
    """One page of namespaces; raises ListError for what the API answers with 422."""
    limit = _int(_first(body, query, "limit", "page_size") or DEFAULT_LIMIT, "limit", 1, 1000)
    offset_v = _first(body, query, "offset")
    page_v = _first(body, query, "page")
    if offset_v is not None:
        offset = _int(offset_v, "offset", 0, 10000)
    elif page_v is not None:
        offset = (_int(page_v, "page", 1, None) - 1) * limit
    else:
        offset = 0
    cursor = _first(body, query, "cursor", "next_cursor", "after")
    if cursor is not None:
        # Opaque to clients; here it is the offset, with no 10,000 cap (cursors exist for that).
        if not isinstance(cursor, str) or not re.fullmatch(r"c_\d+", cursor):
            raise ListError(f"invalid cursor {cursor!r}")
        offset = int(cursor[2:])
    include_total = _first(body, query, "include_total") in (True, "true", "True", "1")
    view = _first(body, query, "view") or "full"
    if view not in ("full", "summary"):
        raise ListError("view must be 'full' or 'summary'")
    filters = body.get("filters") or {}
    search = body.get("search")
    if not isinstance(filters, dict) or not (search is None or isinstance(search, str)):
        raise ListError("filters must be an object and search a string")
    case = body.get("case_sensitive") is True

    with state.lock:
        every = state.ordered()
        chosen = every if not filters and not search else \
            [ns for ns in every if _selected(ns, filters, search, case)]
        results = [ns.document(summary=view == "summary")
                   for ns in chosen[offset:offset + limit]]
        shape = state.list_shape
    total = len(chosen)
    more = offset + limit < total
    if shape == "legacy":
        pagination: dict[str, Any] = {"has_more": more, "limit": limit, "skip": offset}
    else:
        pagination = {"total": total if include_total else None,
                      "page": offset // limit + 1, "page_size": limit,
                      "total_pages": math.ceil(total / limit) if include_total else None,
                      "next_page": None, "previous_page": None,
                      "next_cursor": f"c_{offset + limit}" if more else None}
    return {"results": results, "pagination": pagination, "total_count": total,
            "stats": None}
