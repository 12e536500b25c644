"""One listing of the organization's namespaces (``POST /v1/namespaces/list``), page by page,
following either pagination shape, within bounds.

Everything a listing reads is bounded: a page may not hold more than was asked for, the
listing stops at ``max_namespaces`` (the caller says so), and the number of pages is bounded
too, so a hostile or broken list endpoint costs at most a known number of requests and a known
amount of memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from exporter.mixpeek.client import MixpeekClient


class DiscoveryError(Exception):
    pass


@dataclass(frozen=True)
class Listing:
    items: tuple[tuple[str, str], ...]  # (namespace_id or "", namespace_name), as listed
    limit_reached: bool  # the listing stopped at max_namespaces; there may be more
    skipped: int = 0  # results without a usable identity (ListPage.skipped), left out


def max_pages(page_size: int, max_namespaces: int) -> int:
    """Pages a listing may take: room for pages half full on average, plus an empty last one."""
    return 2 * math.ceil(max_namespaces / page_size) + 2


def list_all(client: MixpeekClient, page_size: int, max_namespaces: int) -> Listing:
    """Every (namespace_id, namespace_name) the key can list, following either pagination,
    up to ``max_namespaces``. Raises DiscoveryError when a page fails or breaks a bound.

    A page whose results were all unusable still moves the listing on: paging follows what the
    API answered (``next_cursor``, or ``has_more`` with results), not what could be used.
    """
    items: list[tuple[str, str]] = []
    skipped = 0
    cursor: str | None = None
    offset: int | None = None
    seen_cursors: set[str] = set()
    pages = max_pages(page_size, max_namespaces)
    for _ in range(pages):
        out = client.list_namespaces_page(page_size, cursor=cursor, offset=offset)
        if not out.ok or out.values is None:
            raise DiscoveryError(f"listing namespaces failed ({out.reason}): {out.message}")
        page = out.values
        answered = len(page.items) + page.skipped
        if answered > page_size:
            raise DiscoveryError(f"the list endpoint answered {answered} namespaces on "
                                 f"one page; {page_size} were asked for (discovery.page_size)")
        skipped += page.skipped
        room = max_namespaces - len(items)
        items.extend(page.items[:room])
        by_offset = page.next_offset is not None and answered > 0
        more = page.next_cursor is not None or by_offset
        if len(page.items) > room or (len(page.items) == room and more):
            return Listing(tuple(items), True, skipped)
        if page.next_cursor is not None:
            if page.next_cursor in seen_cursors:
                raise DiscoveryError("the list endpoint returned the same cursor twice")
            seen_cursors.add(page.next_cursor)
            cursor, offset = page.next_cursor, None
        elif by_offset:
            cursor, offset = None, page.next_offset
        else:
            return Listing(tuple(items), False, skipped)
    raise DiscoveryError(f"the list endpoint did not finish within {pages} pages "
                         f"(discovery.max_namespaces / discovery.page_size allows that many)")
