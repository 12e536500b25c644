"""THE catalogue: every metric family the exporter publishes, declared once.

Kube-state-metrics style: a family is its name, type, help, labels, and the function that reads
what it shows from a snapshot. The renderer (exporter.render.fast) prints these in this order;
the README metrics table, the dashboard and the alert checks read their names from here. No
other module in exporter/ writes a metric name.

What ``read`` is given depends on ``source``:

- ``"values"``: the namespace's ``NamespaceValues``, only while fresh (see
  ``NamespaceState.fresh_until``); stale or missing values print none of these families;
- ``"state"``: the namespace's ``NamespaceState`` (health: shown whatever the values' age);
- ``"snapshot"``: the whole ``Snapshot`` (exporter-wide families, one or a few series each).

What ``read`` returns: for a family without labels of its own (beyond ``namespace_id`` and
``namespace_name`` for per-namespace families), the value (a number or a bool), or None for no
series; for a family with labels of its own, a sequence of (label values in ``labels`` order,
value) pairs, or None. A value that is not a finite number publishes no series.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, Literal

from exporter.mixpeek.models import NamespaceValues
from exporter.state.snapshot import NamespaceState

NAMESPACE_LABELS = ("namespace_id", "namespace_name")
Source = Literal["values", "state", "snapshot"]


@dataclass(frozen=True, slots=True)
class Family:
    """One metric family: what it is called and means, and how to read it (module docstring)."""

    name: str  # a counter's samples add "_total" (see sample_name)
    type: Literal["gauge", "counter"]
    help: str
    labels: tuple[str, ...]  # per-namespace families start with NAMESPACE_LABELS
    source: Source
    read: Callable[[Any], Any]

    @property
    def sample_name(self) -> str:
        """The name its samples carry, and the one PromQL, README and alerts use."""
        return self.name + "_total" if self.type == "counter" else self.name

    @property
    def own_labels(self) -> tuple[str, ...]:
        """Labels besides the namespace's: when not empty, ``read`` returns pairs."""
        if self.source == "snapshot":
            return self.labels
        return tuple(label for label in self.labels if label not in NAMESPACE_LABELS)


_POLLED = "Polled from the Mixpeek API every poll interval, not at scrape time."


def _value(name: str, help_: str, attr: str) -> Family:
    """A gauge of one NamespaceValues field, shown while the values are fresh."""
    return Family(f"mixpeek_namespace_{name}", "gauge", f"{help_} {_POLLED}", NAMESPACE_LABELS,
                  "values", attrgetter(attr))


def _info(v: NamespaceValues) -> Sequence[tuple[tuple[str, ...], int]]:
    clone_status = "" if v.clone_status is None else v.clone_status
    return (((v.compute_tier, v.cluster_id, v.namespace_type, v.mode, clone_status), 1),)


def _poll_duration(st: NamespaceState) -> float | None:
    # Only once polled: a duration without an up series would be a made-up measurement.
    return st.poll_duration if st.up is not None else None


def _poll_errors(st: NamespaceState) -> Sequence[tuple[tuple[str], int]] | None:
    return [((reason,), count) for reason, count in st.errors] if st.errors else None


NAMESPACE_FAMILIES: tuple[Family, ...] = (
    _value("documents", "Documents in the namespace (document_count).", "documents"),
    _value("buckets", "Buckets in the namespace (bucket_count).", "buckets"),
    _value("collections", "Collections in the namespace (collection_count).", "collections"),
    _value("objects", "Objects across all buckets of the namespace (object_count).", "objects"),
    _value("max_concurrent_jobs", "infrastructure.max_concurrent_jobs of the namespace.",
           "max_concurrent_jobs"),
    _value("autoscaling_enabled", "1 if infrastructure.autoscaling_enabled is true, else 0.",
           "autoscaling_enabled"),
    _value("auto_create_indexes_enabled", "1 if auto_create_indexes is true, else 0.",
           "auto_create_indexes_enabled"),
    _value("feature_extractors", "Feature extractors configured for the namespace.",
           "feature_extractors"),
    _value("payload_indexes", "Payload indexes configured for the namespace.", "payload_indexes"),
    _value("created_timestamp_seconds", "When the namespace was created (created_at), Unix time.",
           "created_timestamp"),
    _value("updated_timestamp_seconds",
           "When the namespace was last updated (updated_at), Unix time.", "updated_timestamp"),
    _value("ready", "1 if the API says the namespace is ready (namespace_ready), else 0.",
           "namespace_ready"),
    _value("document_count_complete",
           "1 if document_count is a complete count (document_count_complete), 0 if the API's "
           "live count timed out (the documents series is then absent).",
           "document_count_complete"),
    _value("expiry_timestamp_seconds", "When the namespace expires (expires_at), Unix time.",
           "expires_timestamp"),
    Family("mixpeek_namespace_invalid_fields", "gauge",
           "Fields of the last answer that the exporter publishes but could not use (wrong type "
           f"or out of range); their series are absent. {_POLLED}", NAMESPACE_LABELS,
           "values", lambda v: len(v.invalid_fields)),
    Family("mixpeek_namespace_info", "gauge",
           f"Namespace metadata as labels; always 1. {_POLLED}",
           (*NAMESPACE_LABELS, "compute_tier", "cluster_id", "namespace_type", "mode",
            "clone_status"), "values", _info),
    Family("mixpeek_namespace_up", "gauge",
           "1 if the last poll of the namespace succeeded, 0 if it failed.", NAMESPACE_LABELS,
           "state", attrgetter("up")),
    Family("mixpeek_namespace_last_success_timestamp_seconds", "gauge",
           "Unix time of the last successful poll of the namespace.", NAMESPACE_LABELS,
           "state", attrgetter("last_success")),
    Family("mixpeek_namespace_metadata_last_refresh_timestamp_seconds", "gauge",
           "Unix time of the last full Get Namespace of the namespace (metadata and info; "
           "counts may come more often from stats/batch).", NAMESPACE_LABELS,
           "state", attrgetter("metadata_at")),
    Family("mixpeek_namespace_poll_duration_seconds", "gauge",
           "Seconds the last poll of the namespace spent on its requests and the retry "
           "waits between them; time waiting for the exporter's own request budget is not "
           "included.", NAMESPACE_LABELS,
           "state", _poll_duration),
    Family("mixpeek_namespace_poll_errors", "counter",
           "Failed polls of the namespace by reason.", (*NAMESPACE_LABELS, "reason"),
           "state", _poll_errors),
)


def _exporter(attr: str, name: str, help_: str) -> Family:
    """A gauge of one ExporterValues field (set through Store.set_exporter)."""
    return Family(name, "gauge", help_, (), "snapshot", attrgetter(f"exporter.{attr}"))


EXPORTER_FAMILIES: tuple[Family, ...] = (
    Family("mixpeek_api_requests", "counter",
           "Requests sent to the Mixpeek API by HTTP status, or by transport failure (timeout, "
           "connection). Retries count.", ("status",), "snapshot",
           lambda s: [((status,), count) for status, count in s.api_requests]),
    Family("mixpeek_api_rate_limit_remaining", "gauge",
           "X-RateLimit-Remaining from the last Mixpeek API response that carried it.", (),
           "snapshot", attrgetter("rate_limit_remaining")),
    Family("mixpeek_exporter_build_info", "gauge",
           "Version of the exporter and of Python; always 1.", ("version", "python_version"),
           "snapshot", lambda s: ((s.version_labels, 1),)),
    Family("mixpeek_exporter_poll_cycle_duration_seconds", "gauge",
           "Wall time of the last complete poll cycle over all namespaces.", (), "snapshot",
           attrgetter("cycle_duration")),
    Family("mixpeek_exporter_config_last_reload_successful", "gauge",
           "1 if the last configuration load succeeded, 0 if it was refused.", (), "snapshot",
           attrgetter("reload_ok")),
    Family("mixpeek_exporter_config_last_reload_success_timestamp_seconds", "gauge",
           "Unix time of the last successful configuration load.", (), "snapshot",
           attrgetter("reload_success_time")),
    _exporter("discovery_last_success",
              "mixpeek_exporter_discovery_last_success_timestamp_seconds",
              "Unix time of the last successful namespace listing."),
    _exporter("discovery_limit_reached", "mixpeek_exporter_discovery_limit_reached",
              "1 if the last namespace listing stopped at discovery.max_namespaces (namespaces "
              "past it are not polled), else 0."),
    _exporter("discovery_up", "mixpeek_exporter_discovery_up",
              "1 if the last namespace listing (discovery) succeeded, else 0."),
    _exporter("namespaces", "mixpeek_exporter_namespaces",
              "Namespaces this exporter polls (configured, discovered, shard)."),
    _exporter("poll_interval", "mixpeek_exporter_poll_interval_seconds",
              "Effective poll interval: interval_seconds, or longer when "
              "max_requests_per_minute cannot poll every namespace within it."),
    _exporter("shard_ordinal", "mixpeek_exporter_shard_ordinal",
              "Shard this exporter polls (--shard)."),
    _exporter("stats_batch_available", "mixpeek_exporter_stats_batch_available",
              "1 if the API offers POST /v1/namespaces/stats/batch, 0 if it answered 404/405 "
              "and counts come from Get Namespace."),
    _exporter("total_shards", "mixpeek_exporter_total_shards",
              "Number of shards (--total-shards)."),
)

FAMILIES: tuple[Family, ...] = NAMESPACE_FAMILIES + EXPORTER_FAMILIES


def sample_names() -> list[str]:
    """Every name the exporter's own series can carry, in exposition order."""
    return [f.sample_name for f in FAMILIES]

