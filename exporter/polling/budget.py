"""The request budget against the poll interval: can the budget poll every namespace's counts
within ``interval_seconds`` and refresh its metadata within ``metadata_interval_seconds``, and
if not, what intervals it really gives.

The bucket (exporter.ratelimit) paces every request, counts first; this module does the
arithmetic: how many full Get Namespace calls a cycle may add (``metadata_room``), and says
once per change when the budget stretches an interval, so an operator learns why values are
older than configured. ``rpm`` is the budget's limit in requests a minute: the configured one,
or lower when the API states or shows a lower one; None or 0 is unlimited.
"""

from __future__ import annotations

import logging
import math

from exporter.settings.schema import STALE_AFTER_INTERVALS, Config

log = logging.getLogger(__name__)

BATCH = 100  # stats/batch takes at most 100 ids
HEADROOM = 0.95  # share of the budget planned for counts and metadata; listings, retries: rest
STALE_MAX = 7 * 86_400.0  # poll.stale_after_seconds' bound in the schema
METADATA_FLOOR = 0.05  # share metadata keeps when counts alone exceed the budget


def batched(cfg: Config) -> bool:
    return cfg.poll.counts_source == "stats_batch"


def counts_per_cycle(cfg: Config, n: int) -> int:
    """Requests that bring every count of ``n`` namespaces: batches, or a poll each."""
    return math.ceil(n / BATCH) if batched(cfg) else n


def metadata_per_cycle(cfg: Config, n: int) -> float:
    """Full Get Namespace calls a cycle needs, on average, for metadata as configured."""
    if not batched(cfg):
        return 0.0
    return n * min(1.0, cfg.poll.interval_seconds / cfg.poll.metadata_interval_seconds)


def discovery_per_cycle(cfg: Config, n: int) -> float:
    """The discovery pages' share of one cycle."""
    if not cfg.discovery.enabled:
        return 0.0
    pages = max(1, math.ceil(n / cfg.discovery.page_size))
    return pages * min(1.0, cfg.poll.interval_seconds / cfg.discovery.refresh_interval_seconds)


def requests_per_cycle(cfg: Config, n: int) -> float:
    """API requests one poll cycle over ``n`` namespaces costs, on average, as configured."""
    return counts_per_cycle(cfg, n) + metadata_per_cycle(cfg, n) + discovery_per_cycle(cfg, n)


def _rpm(cfg: Config, rpm: float | None) -> float:
    return cfg.mixpeek.max_requests_per_minute if rpm is None else rpm


def effective_interval(cfg: Config, n: int, rpm: float | None = None) -> float:
    """Seconds between cycles the budget allows: ``interval_seconds``, or longer when the
    counts (and discovery's share) take longer at ``rpm``. Metadata never stretches it."""
    limit = _rpm(cfg, rpm)
    interval = cfg.poll.interval_seconds
    if limit <= 0:
        return interval
    need = counts_per_cycle(cfg, n) + discovery_per_cycle(cfg, n)
    return max(interval, need * 60.0 / limit)


def metadata_room(rpm: float | None, cycle_seconds: float, counts: int) -> float | None:
    """Full Get Namespace calls one cycle of ``cycle_seconds`` may add after ``counts``
    requests without delaying the next cycle's counts; None when unlimited."""
    if rpm is None or rpm <= 0:
        return None
    per_cycle = rpm * cycle_seconds / 60.0
    return max(per_cycle * HEADROOM - counts, per_cycle * METADATA_FLOOR)


def effective_metadata_interval(cfg: Config, n: int, rpm: float | None = None) -> float:
    """Seconds in which every namespace's metadata is refreshed: ``metadata_interval_seconds``,
    or longer when the budget left after counts cannot carry it."""
    wanted = cfg.poll.metadata_interval_seconds
    cycle = effective_interval(cfg, n, rpm)
    room = metadata_room(_rpm(cfg, rpm), cycle, counts_per_cycle(cfg, n))
    if not batched(cfg) or room is None or n == 0:
        return wanted
    return max(wanted, n / room * cycle)


def stale_is_default(cfg: Config) -> bool:
    """``poll.stale_after_seconds`` was left unset. The schema fills an unset value in as
    STALE_AFTER_INTERVALS x interval_seconds and does not record that it did, so a value equal
    to that is taken as unset (written out by hand, it means the same)."""
    default = min(max(STALE_AFTER_INTERVALS * cfg.poll.interval_seconds, 1.0), STALE_MAX)
    return math.isclose(cfg.poll.stale_after_seconds, default)


def stale_after(cfg: Config, effective: float) -> float:
    """Seconds values stay published: ``poll.stale_after_seconds``, or, when that was left
    unset, STALE_AFTER_INTERVALS x the effective interval (the budget's, when it is longer),
    so values do not vanish between two polls the budget spaced out."""
    if stale_is_default(cfg) and effective > cfg.poll.interval_seconds:
        return min(STALE_AFTER_INTERVALS * effective, STALE_MAX)
    return cfg.poll.stale_after_seconds


class BudgetWatch:
    """Logs a warning when the budget stretches an interval, once per change."""

    def __init__(self) -> None:
        self._note: tuple[int, float] | None = None
        self._metadata_note: tuple[int, float] | None = None
        self._stale_note: tuple[float, float] | None = None

    def stale_after(self, cfg: Config, effective: float) -> float:
        """``stale_after`` (seconds), warning once per change when a configured value is
        shorter than the effective interval."""
        stale = stale_after(cfg, effective)
        note = (round(stale, 1), round(effective, 1))
        short = stale < effective
        if short and note != self._stale_note:
            log.warning(
                "poll.stale_after_seconds is shorter than the effective poll interval: values "
                "vanish between polls; raise poll.stale_after_seconds (or leave it unset for "
                f"{STALE_AFTER_INTERVALS} x the effective interval), or raise "
                "mixpeek.max_requests_per_minute", extra={"fields": {
                    "stale_after_seconds": stale,
                    "effective_interval_seconds": round(effective, 1)}})
        self._stale_note = note if short else None
        return stale

    def check(self, cfg: Config, n: int, rpm: float | None = None) -> float:
        """The effective interval for ``n`` namespaces (seconds), logging it when new."""
        interval = cfg.poll.interval_seconds
        limit = _rpm(cfg, rpm)
        effective = effective_interval(cfg, n, rpm)
        note = (n, round(effective, 1))
        if effective > interval and note != self._note:
            log.warning(
                "request budget cannot poll every namespace within interval_seconds; polls "
                "are spread evenly at the budget's pace", extra={"fields": {
                    "namespaces": n, "requests_per_cycle": round(requests_per_cycle(cfg, n), 1),
                    "max_requests_per_minute": limit, "interval_seconds": interval,
                    "effective_interval_seconds": round(effective, 1)}})
        self._note = note if effective > interval else None
        metadata = effective_metadata_interval(cfg, n, rpm)
        note = (n, round(metadata))
        stretched = metadata > cfg.poll.metadata_interval_seconds * 1.01
        if stretched and note != self._metadata_note:
            log.warning(
                "request budget left after counts cannot refresh every namespace's metadata "
                "within metadata_interval_seconds; counts keep their interval", extra={
                    "fields": {"namespaces": n, "max_requests_per_minute": limit,
                               "metadata_interval_seconds": cfg.poll.metadata_interval_seconds,
                               "effective_metadata_interval_seconds": round(metadata)}})
        self._metadata_note = note if stretched else None
        return effective
