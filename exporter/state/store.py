"""The Store: the one place poll results are written and snapshots are read.

The poller hands each ``PollResult`` to ``Store.apply``, which replaces that namespace's
``NamespaceState`` whole (never mutating it) and bumps a version. ``Store.snapshot()`` freezes
the current states into a ``Snapshot`` (exporter.state.snapshot), at most once per version;
renderers only ever see snapshots, so a scrape can never observe a half-applied poll.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import replace

from exporter.mixpeek.models import COUNT_API_FIELDS, NamespaceCounts, NamespaceValues
from exporter.mixpeek.result import PollResult
from exporter.state.snapshot import ExporterValues, NamespaceState, Snapshot, Transition
from exporter.state.stats import RequestStats

__all__ = ["Store", "Transition"]


def _add_error(errors: tuple[tuple[str, int], ...], reason: str) -> tuple[tuple[str, int], ...]:
    d = dict(errors)
    d[reason] = d.get(reason, 0) + 1
    return tuple(sorted(d.items()))


def _unique_series(states: Iterable[NamespaceState]) -> tuple[NamespaceState, ...]:
    """One state per (namespace_id, namespace_name): a namespace configured by name and by id
    answers to both with the same labels, and duplicate series would fail the whole scrape
    (OpenMetrics parsers reject them). The first configured one wins."""
    seen: set[tuple[str, str]] = set()
    out = []
    for st in states:
        key = (st.namespace_id, st.namespace_name)
        if key not in seen:
            seen.add(key)
            out.append(st)
    return tuple(out)


class Store:
    """Namespace states keyed by identifier, exporter-wide values, and a version bumped (and
    ``changed`` notified) on every write. Thread-safe; writers never block on readers."""

    def __init__(self, identifiers: Iterable[str], stale_after: float,
                 stats: RequestStats | None = None) -> None:
        self._lock = threading.Lock()
        self.changed = threading.Condition(self._lock)
        self._states: dict[str, NamespaceState] = {
            i: NamespaceState.initial(i) for i in identifiers}
        self._stale_after = stale_after
        self.stats = stats or RequestStats()
        self._version = 0
        self._cached: Snapshot | None = None
        self._cycle_duration: float | None = None
        self._cycles = 0
        self._reload_ok = True
        self._reload_time: float | None = time.time()
        self._exporter = ExporterValues()

    # -- writers ---------------------------------------------------------------------------

    def _bump(self) -> None:
        self._version += 1
        self.changed.notify_all()

    def apply(self, result: PollResult, now: float | None = None) -> Transition | None:
        now = time.time() if now is None else now
        with self._lock:
            prev = self._states.get(result.identifier)
            if prev is None:  # removed by a reload while the poll was in flight
                return None
            if result.ok and result.values is not None:
                v = result.values
                state = replace(
                    prev, values=v, up=True, last_success=now, poll_duration=result.duration,
                    reason=None, message="", metadata_at=now,
                    namespace_id=v.namespace_id or prev.namespace_id,
                    namespace_name=v.namespace_name or prev.namespace_name,
                )
            else:
                reason = result.reason or "invalid_response"
                state = replace(
                    prev, up=False, poll_duration=result.duration, reason=reason,
                    message=result.message, errors=_add_error(prev.errors, reason),
                    # A 404 means the namespace is gone: its values must go at once, not
                    # linger until they are stale.
                    values=None if reason == "not_found" else prev.values,
                )
            self._states[result.identifier] = state
            self._bump()
        if prev.up != state.up or prev.reason != state.reason:
            return Transition(state, prev)
        return None

    def apply_counts(self, identifier: str, counts: NamespaceCounts, duration: float,
                     now: float | None = None) -> Transition | None:
        """Counts from stats/batch: replace the four counts, keep the metadata we have."""
        now = time.time() if now is None else now
        with self._lock:
            prev = self._states.get(identifier)
            if prev is None:
                return None
            base = prev.values or NamespaceValues(
                namespace_id=prev.namespace_id, namespace_name=prev.namespace_name,
                documents=None, buckets=None, collections=None, objects=None,
                max_concurrent_jobs=None, autoscaling_enabled=None,
                auto_create_indexes_enabled=None, feature_extractors=None,
                payload_indexes=None, created_timestamp=None, updated_timestamp=None,
                compute_tier="", cluster_id="", namespace_type="", mode="")
            # The counts' own fields replace theirs; invalid names of the other (metadata)
            # fields stay until the next full Get Namespace says otherwise.
            kept = tuple(f for f in base.invalid_fields if f not in COUNT_API_FIELDS)
            values = replace(base, documents=counts.documents, buckets=counts.buckets,
                             collections=counts.collections, objects=counts.objects,
                             document_count_complete=counts.document_count_complete,
                             invalid_fields=kept + counts.invalid_fields)
            state = replace(prev, values=values, up=True, last_success=now,
                            poll_duration=duration, reason=None, message="")
            self._states[identifier] = state
            self._bump()
        if prev.up != state.up or prev.reason != state.reason:
            return Transition(state, prev)
        return None

    def set_namespaces(self, identifiers: Iterable[str],
                       labels: dict[str, tuple[str, str]] | None = None,
                       ) -> tuple[list[str], list[str]]:
        """Keep the state of namespaces still wanted; returns (added, removed).

        ``labels`` gives (namespace_id, namespace_name) for identifiers that discovery
        already knows both of, so new series start with full labels.
        """
        wanted = list(dict.fromkeys(identifiers))
        labels = labels or {}
        with self._lock:
            if wanted == list(self._states):
                # Called before every cycle: an unchanged set must not force a re-render.
                return [], []
            added = [i for i in wanted if i not in self._states]
            keep = set(wanted)
            removed = [i for i in self._states if i not in keep]
            self._states = {i: self._states.get(i) or NamespaceState.initial(i, labels.get(i))
                            for i in wanted}
            self._bump()
        return added, removed

    def fill_labels(self, labels: dict[str, tuple[str, str]]) -> None:
        """Labels (namespace_id, namespace_name) from a listing: they replace the ones guessed
        from the configured identifier until the namespace has answered; after that they only
        fill a label still empty."""
        with self._lock:
            changed = False
            for ident, (ns_id, name) in labels.items():
                st = self._states.get(ident)
                if st is None:
                    continue
                if st.values is None:
                    new_id, new_name = ns_id or st.namespace_id, name or st.namespace_name
                else:
                    new_id, new_name = st.namespace_id or ns_id, st.namespace_name or name
                if (new_id, new_name) == (st.namespace_id, st.namespace_name):
                    continue
                self._states[ident] = replace(st, namespace_id=new_id, namespace_name=new_name)
                changed = True
            if changed:
                self._bump()

    def set_stale_after(self, seconds: float) -> None:
        with self._lock:
            if seconds != self._stale_after:  # asked before every cycle
                self._stale_after = seconds
                self._bump()

    def cycle_done(self, duration: float) -> None:
        with self._lock:
            self._cycle_duration = duration
            self._cycles += 1
            self._bump()

    def reload_done(self, ok: bool, now: float | None = None) -> None:
        with self._lock:
            self._reload_ok = ok
            if ok:
                self._reload_time = time.time() if now is None else now
            self._bump()

    def set_exporter(self, **values: float | int | bool | str | None) -> None:
        """Update exporter-wide values by ExporterValues field name (TypeError if unknown)."""
        with self._lock:
            new = replace(self._exporter, **values)
            if new != self._exporter:
                self._exporter = new
                self._bump()

    # -- readers ---------------------------------------------------------------------------

    @property
    def version(self) -> int:
        return self._version

    def identifiers(self) -> list[str]:
        with self._lock:
            return list(self._states)

    def state(self, identifier: str) -> NamespaceState | None:
        with self._lock:
            return self._states.get(identifier)

    def snapshot(self) -> Snapshot:
        api, remaining = self.stats.snapshot()
        with self._lock:
            cached = self._cached
            if (cached is not None and cached.version == self._version
                    and cached.api_requests == api
                    and cached.rate_limit_remaining == remaining):
                return cached
            snap = Snapshot(
                version=self._version,
                namespaces=_unique_series(self._states.values()),
                stale_after=self._stale_after,
                api_requests=api,
                rate_limit_remaining=remaining,
                cycle_duration=self._cycle_duration,
                cycles_completed=self._cycles,
                reload_ok=self._reload_ok,
                reload_success_time=self._reload_time,
                exporter=self._exporter,
            )
            self._cached = snap
            return snap
