"""Which namespaces this exporter polls: the configured ones, plus (when enabled) every
namespace the key can list that passes the include/exclude filters, minus those that belong
to other shards.
"""

from __future__ import annotations

import hashlib
import logging
import re
import socket
from dataclasses import dataclass

from exporter.mixpeek.client import MixpeekClient
from exporter.settings.schema import Config, identifier_labels

log = logging.getLogger(__name__)

MAX_PAGES = 10_000  # 10,000 pages x 1,000 per page is beyond any real organization


class DiscoveryError(Exception):
    pass


@dataclass(frozen=True)
class Target:
    identifier: str  # what Get Namespace is called with
    namespace_id: str
    namespace_name: str


def shard_of(key: str, total: int) -> int:
    """Stable across processes and versions (unlike hash()): md5 of the key, mod total."""
    digest = hashlib.md5(key.encode("utf-8"), usedforsecurity=False).digest()
    return int.from_bytes(digest[:8], "big") % total


def shard_from_hostname(hostname: str | None = None) -> int:
    """StatefulSet pods are named <set>-<ordinal>; that ordinal is the shard."""
    name = hostname or socket.gethostname()
    m = re.search(r"-(\d+)$", name)
    if not m:
        raise ValueError(f"--shard=auto needs a StatefulSet-style hostname ending in -N, "
                         f"got {name!r}")
    return int(m.group(1))


def list_all(client: MixpeekClient, page_size: int) -> list[tuple[str, str]]:
    """Every (namespace_id, namespace_name) the key can list, following either pagination."""
    items: list[tuple[str, str]] = []
    cursor: str | None = None
    offset: int | None = None
    seen_cursors: set[str] = set()
    for _ in range(MAX_PAGES):
        out = client.list_namespaces_page(page_size, cursor=cursor, offset=offset)
        if not out.ok:
            raise DiscoveryError(f"listing namespaces failed ({out.reason}): {out.message}")
        page = out.values
        items.extend(page.items)
        if page.next_cursor is not None:
            if page.next_cursor in seen_cursors:
                raise DiscoveryError("the list endpoint returned the same cursor twice")
            seen_cursors.add(page.next_cursor)
            cursor, offset = page.next_cursor, None
        elif page.next_offset is not None and page.items:
            cursor, offset = None, page.next_offset
        else:
            return items
    raise DiscoveryError(f"the list endpoint did not finish within {MAX_PAGES} pages")


def select(cfg: Config, discovered: list[tuple[str, str]] | None, shard: int = 0,
           total_shards: int = 1) -> list[Target]:
    """Configured namespaces first, then discovered ones not already configured; one shard's
    share of them. The shard key is the namespace_id where known, else the identifier."""
    targets = [Target(i, *identifier_labels(i)) for i in cfg.namespaces]
    configured = set(cfg.namespaces)
    for ns_id, name in sorted(discovered or []):
        if ns_id in configured or name in configured:
            continue
        if not cfg.discovery.matches(ns_id, name):
            continue
        targets.append(Target(ns_id or name, ns_id, name))
    if total_shards > 1:
        targets = [t for t in targets
                   if shard_of(t.namespace_id or t.identifier, total_shards) == shard]
    seen: set[str] = set()
    unique = []
    for t in targets:
        if t.identifier not in seen:
            seen.add(t.identifier)
            unique.append(t)
    return unique

