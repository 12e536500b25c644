"""What the exporter knows at one moment, as immutable values, and the one staleness rule.

``Store`` (exporter.state.store) replaces a namespace's ``NamespaceState`` whole on every poll
result and freezes the current states into a ``Snapshot``; renderers only ever see snapshots,
so a scrape can never observe a half-applied poll.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from exporter import __version__
from exporter.mixpeek.models import NamespaceValues
from exporter.settings.identifiers import identifier_labels


@dataclass(frozen=True, slots=True)
class NamespaceState:
    """One namespace as of its last poll. Times are Unix seconds (wall clock)."""

    identifier: str  # as configured or discovered; the key in the store
    namespace_id: str
    namespace_name: str
    values: NamespaceValues | None = None  # the last good answer; None: none yet, or 404
    up: bool | None = None  # None: never polled yet
    last_success: float | None = None  # last good answer (Get Namespace or batched counts)
    poll_duration: float | None = None  # seconds, retries included
    errors: tuple[tuple[str, int], ...] = ()  # (reason, failed polls), sorted by reason
    reason: str | None = None
    message: str = ""
    metadata_at: float | None = None  # last full Get Namespace (counts may come from batches)

    @classmethod
    def initial(cls, identifier: str, labels: tuple[str, str] | None = None) -> NamespaceState:
        ns_id, ns_name = labels if labels is not None else identifier_labels(identifier)
        return cls(identifier, ns_id, ns_name)

    def fresh_until(self, stale_after: float) -> float | None:
        """THE staleness rule: the last moment (Unix seconds) at which ``values`` may still be
        published, or None when there are no values. Values are fresh while
        ``now <= last_success + stale_after``; renderers and their re-render schedule both
        ask this method, so the two can never disagree."""
        if self.values is None or self.last_success is None:
            return None
        return self.last_success + stale_after

    def fresh_values(self, now: float, stale_after: float) -> NamespaceValues | None:
        """``values`` if they are fresh at ``now``, else None (see ``fresh_until``)."""
        until = self.fresh_until(stale_after)
        return self.values if until is not None and now <= until else None


@dataclass(frozen=True, slots=True)
class Transition:
    """A change worth one log line: up <-> down, or a different failure reason."""

    state: NamespaceState
    previous: NamespaceState


@dataclass(frozen=True, slots=True)
class ExporterValues:
    """Exporter-wide values other components report through ``Store.set_exporter(**fields)``
    (None: not published). The catalogue in exporter.render.families names the family each
    one is published as."""

    namespaces: int | None = None  # namespaces this exporter polls
    poll_interval: float | None = None  # effective seconds between cycles
    discovery_up: bool | None = None
    discovery_last_success: float | None = None  # Unix time
    discovery_limit_reached: bool | None = None  # discovery stopped at max_namespaces
    # Why the last discovery listing failed (one line, at most 300 characters, scrubbed of
    # the key by the client); None while it works. Shown on /status, not a metric.
    discovery_error: str | None = None
    stats_batch_available: bool | None = None
    shard_ordinal: int | None = None
    total_shards: int | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything one exposition shows. ``namespaces`` has one state per label pair."""

    version: int  # the store's version when frozen; equal versions mean equal snapshots
    namespaces: tuple[NamespaceState, ...]
    stale_after: float  # seconds; see NamespaceState.fresh_until
    api_requests: tuple[tuple[str, int], ...] = ()  # (status, requests), sorted
    rate_limit_remaining: float | None = None  # last X-RateLimit-Remaining
    cycle_duration: float | None = None  # seconds, last complete poll cycle
    cycles_completed: int = 0
    reload_ok: bool = True
    reload_success_time: float | None = None  # Unix time
    exporter: ExporterValues = field(default_factory=ExporterValues)
    version_labels: tuple[str, str] = (__version__, sys.version.split()[0])
