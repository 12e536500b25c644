"""Which namespaces this exporter polls, and their labels: the configured ones, plus (when
enabled) every namespace the key can list that passes the include/exclude filters, minus those
that belong to other shards.

A listing (exporter.polling.listing) also completes the labels of configured namespaces: with
``counts_source: stats_batch`` a configured name needs its id before its counts can come in a
batch, and a configured id needs its name before its series are published, so one listing
resolves all of them (not a Get Namespace each). Discovery listings run beside the cycles,
behind counts and metadata in the request budget, and apply at the next cycle: a slow or broken
list endpoint never holds up the namespaces already known (only when none is known, there is
nothing to hold up, and the first listing runs before the cycle). A failed listing is tried
again after a backoff that doubles from ``interval_seconds`` up to
``refresh_interval_seconds``.
"""

from __future__ import annotations

import hashlib
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from exporter.mixpeek.client import MixpeekClient
from exporter.polling.budget import BudgetWatch
from exporter.polling.listing import DiscoveryError, Listing, list_all
from exporter.settings.identifiers import identifier_labels
from exporter.settings.schema import Config
from exporter.state.store import Store

log = logging.getLogger(__name__)

Labels = tuple[str, str]  # (namespace_id, namespace_name); "" where not known


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


def select(cfg: Config, discovered: list[Labels] | tuple[Labels, ...] | None,
           shard: int = 0, total_shards: int = 1,
           resolved: Mapping[str, Labels] | None = None) -> list[Target]:
    """Configured namespaces first, then discovered ones not already configured; one shard's
    share of them. A configured namespace takes its labels from the listing (``discovered``,
    or ``resolved``: configured identifier -> labels) where it is there. The shard key is the
    namespace_id where known before any listing, else the identifier, so a listing never
    moves a namespace to another shard."""
    configured = set(cfg.namespaces)
    labels: dict[str, Labels] = dict(resolved or {})
    found: list[Target] = []
    for ns_id, name in sorted(discovered or []):
        if ns_id in configured or name in configured:
            labels.setdefault(ns_id if ns_id in configured else name, (ns_id, name))
            continue
        if cfg.discovery.matches(ns_id, name):
            found.append(Target(ns_id or name, ns_id, name))
    keyed = [(identifier_labels(i)[0] or i, Target(i, *labels.get(i, identifier_labels(i))))
             for i in cfg.namespaces]
    keyed += [(t.namespace_id or t.identifier, t) for t in found]
    if total_shards > 1:
        keyed = [(k, t) for k, t in keyed if shard_of(k, total_shards) == shard]
    seen: set[str] = set()
    unique = []
    for _, t in keyed:
        if t.identifier not in seen:
            seen.add(t.identifier)
            unique.append(t)
    return unique


class Targets:
    """The set being polled, kept in the store: lists again when discovery is due, resolves
    configured namespaces' labels, and says what changed. A listing failing for any reason
    keeps the last known set."""

    def __init__(self, cfg: Config, store: Store, shard: int = 0, total_shards: int = 1,
                 stop: threading.Event | None = None,
                 on_found: Callable[[], None] | None = None) -> None:
        self.cfg = cfg
        self.on_found = on_found  # a background listing changed the set: poll it soon
        self.store = store
        self.shard, self.total_shards = shard, total_shards
        self.budget = BudgetWatch()
        self._stop = stop or threading.Event()
        self._discovered: tuple[Labels, ...] | None = None
        self._last_discovery: float | None = None  # time.monotonic(), success or failure
        self._discovery_backoff: float | None = None  # seconds; set while listings fail
        self._discovery_ok: bool | None = None
        self._error = ""  # why the last listing failed: one bounded line
        self._limit_reached: bool | None = None
        self._skipped = 0
        self._listing: threading.Thread | None = None
        self._resolved: dict[str, Labels] = {}  # configured identifier -> labels, listed
        self._resolve_tried: set[str] = set()
        self._resolve_failed: float | None = None  # time.monotonic() of the last failure
        self._rpm: float | None = None  # the budget's limit, as the bucket last said
        if total_shards > 1:
            store.set_exporter(shard_ordinal=shard, total_shards=total_shards)

    def configure(self, cfg: Config, relist: bool) -> None:
        """A reloaded config: forget discovery when it is off; ``relist`` lists again before
        the next cycle (new filters or paging)."""
        self.cfg = cfg
        self._resolve_tried.clear()
        if not cfg.discovery.enabled:
            self._discovered = None
        elif relist:
            self._last_discovery = self._discovery_backoff = None

    def refresh(self, client: MixpeekClient, wait: bool = False) -> None:
        """Before a cycle: list again when discovery is due (beside the cycle; here and now
        when ``wait`` or when no namespace is known yet), resolve configured labels when
        needed, then apply."""
        self._rpm = client.bucket.limit_per_minute()
        d = self.cfg.discovery
        pause = self._discovery_backoff or d.refresh_interval_seconds
        due = self._last_discovery is None or time.monotonic() - self._last_discovery >= pause
        if d.enabled and due:
            idle = self._listing is None or not self._listing.is_alive()
            if wait or (idle and self._discovered is None and not self.store.identifiers()):
                self.join()
                self._discover(client)
            elif idle:
                self._listing = threading.Thread(target=self._discover, args=(client,),
                                                 name="discovery", daemon=True)
                self._listing.start()
        elif not d.enabled and self._unresolved():
            self._resolve(client)
        self.apply()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for a discovery refresh running beside the cycles; False if still running."""
        listing = self._listing
        if listing is not None:
            listing.join(timeout)
            return not listing.is_alive()
        return True

    # -- listings -------------------------------------------------------------------------

    def _list(self, client: MixpeekClient, what: str) -> Listing | None:
        d = self.cfg.discovery
        try:
            listing = list_all(client, d.page_size, d.max_namespaces)
        except Exception as e:  # any fault, ours included, is a failed listing, not a crash
            if self._stop.is_set():
                return None  # cut short by shutdown: not the API's fault
            # DiscoveryError text is the client's Result message, scrubbed of the key; any
            # other exception is ours, and only its type is shown.
            error = str(e) if isinstance(e, DiscoveryError) else \
                f"exporter error: {type(e).__name__}"
            self._error = error[:300]
            if self._discovery_ok is not False:
                log.error(f"{what} failing; polling the last known set",
                          extra={"fields": {"error": self._error}})
            self._discovery_ok = False
            return None
        if listing.skipped != self._skipped:
            if listing.skipped:
                log.warning("the list endpoint returned namespaces without a usable "
                            "namespace_name; they are not polled", extra={"fields": {
                                "skipped": listing.skipped}})
            else:
                log.info("every listed namespace has a usable namespace_name again")
            self._skipped = listing.skipped
        if self._discovery_ok is False:
            log.info(f"{what} recovered")
        self._discovery_ok = True
        return listing

    def _discover(self, client: MixpeekClient) -> None:
        listing = self._list(client, "namespace discovery")
        d = self.cfg.discovery
        self._last_discovery = time.monotonic()
        if listing is None:
            if not self._stop.is_set():
                first = min(self.cfg.poll.interval_seconds, d.refresh_interval_seconds)
                self._discovery_backoff = min(d.refresh_interval_seconds, max(
                    first, 2 * (self._discovery_backoff or 0.0)))
                self.store.set_exporter(discovery_up=False, discovery_error=self._error)
            return
        self._discovery_backoff = None
        changed = listing.items != self._discovered
        self._discovered = listing.items
        self.store.set_exporter(discovery_up=True, discovery_last_success=time.time(),
                                discovery_limit_reached=listing.limit_reached,
                                discovery_error=None)
        if changed and self.on_found is not None and threading.current_thread() is \
                self._listing:
            self.on_found()
        if listing.limit_reached and self._limit_reached is not True:
            log.warning("namespace discovery stopped at discovery.max_namespaces; namespaces "
                        "listed after that are not polled", extra={"fields": {
                            "max_namespaces": d.max_namespaces}})
        elif not listing.limit_reached and self._limit_reached:
            log.info("namespace discovery lists fewer than discovery.max_namespaces again",
                     extra={"fields": {"namespaces": len(listing.items)}})
        self._limit_reached = listing.limit_reached

    def _unresolved(self) -> set[str]:
        """Configured namespaces whose labels a listing should complete now: only with
        stats_batch (Get Namespace answers with both labels), each tried once per
        configuration, again ``refresh_interval_seconds`` after a failed listing."""
        if self.cfg.poll.counts_source != "stats_batch":
            return set()
        wanted = {i for i in self.cfg.namespaces if i not in self._resolved}
        if self._resolve_failed is not None and time.monotonic() - self._resolve_failed >= \
                self.cfg.discovery.refresh_interval_seconds:
            self._resolve_tried.clear()
        return wanted - self._resolve_tried

    def _resolve(self, client: MixpeekClient) -> None:
        wanted = self._unresolved()
        listing = self._list(client, "listing namespaces to resolve configured names")
        self._resolve_tried |= wanted
        if listing is None:
            self._resolve_failed = time.monotonic()
            return
        self._resolve_failed = None
        folded = {i.casefold(): i for i in wanted}
        for ns_id, name in listing.items:
            for key in (ns_id, name):
                ident = key if key in wanted else folded.get(key.casefold())
                if ident is not None:
                    self._resolved.setdefault(ident, (ns_id, name))
        missing = len(wanted - set(self._resolved))
        if missing:
            log.warning("configured namespaces not found in the listing; they are polled with "
                        "Get Namespace", extra={"fields": {"namespaces": missing}})

    # -- into the store -------------------------------------------------------------------

    def apply(self) -> tuple[list[str], list[str]]:
        """Put the selected set into the store; returns (added, removed) identifiers."""
        targets = select(self.cfg, self._discovered if self.cfg.discovery.enabled else None,
                         self.shard, self.total_shards, self._resolved)
        added, removed = self.store.set_namespaces(
            [t.identifier for t in targets],
            {t.identifier: (t.namespace_id, t.namespace_name) for t in targets})
        configured = set(self.cfg.namespaces)
        self.store.fill_labels({t.identifier: (t.namespace_id, t.namespace_name)
                                for t in targets if t.identifier in configured})
        if added or removed:
            log.info("namespaces to poll changed", extra={"fields": {
                "total": len(targets), "added": len(added), "removed": len(removed)}})
        effective = self.budget.check(self.cfg, len(targets), self._rpm)
        self.store.set_exporter(namespaces=len(targets), poll_interval=effective)
        self.store.set_stale_after(self.budget.stale_after(self.cfg, effective))
        return added, removed
