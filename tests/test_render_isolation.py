"""One namespace cannot stop the others (issue 10, section 2).

A value that cannot be rendered (an integer past float range such as document_count 10**400,
NaN, an infinity, anything whose reading or formatting raises) leaves out that one series; the
exposition, the other series of that namespace and every other namespace are rendered as if
the value were absent.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.mixpeek.result import PollResult
from exporter.render.cache import ExpositionCache
from exporter.render.families import (
    EXPORTER_FAMILIES,
    NAMESPACE_FAMILIES,
    NAMESPACE_LABELS,
    Family,
)
from exporter.render.fast import FastRenderer
from exporter.state.snapshot import NamespaceState, Snapshot
from exporter.state.store import Store
from tests.golden_snapshot import NOW, golden_snapshot, values_for
from tests.harness import ExporterProcess, SimulatorProcess, exporter_config, http, sample
from tests.reference_render import render_generic, whole

# Fields each read by exactly one family, and the family's series name.
VALUE_FIELDS = {
    "documents": "mixpeek_namespace_documents",
    "objects": "mixpeek_namespace_objects",
    "max_concurrent_jobs": "mixpeek_namespace_max_concurrent_jobs",
    "created_timestamp": "mixpeek_namespace_created_timestamp_seconds",
    "expires_timestamp": "mixpeek_namespace_expiry_timestamp_seconds",
}
STATE_FIELDS = {
    "poll_duration": "mixpeek_namespace_poll_duration_seconds",
    "metadata_at": "mixpeek_namespace_metadata_last_refresh_timestamp_seconds",
}
UNRENDERABLE = [10**400, -(10**400), 2**1024, float("nan"), float("inf"), float("-inf")]


def states(n: int = 6) -> tuple[NamespaceState, ...]:
    return tuple(NamespaceState(f"ns_{i}", f"ns_{i}", f"name_{i}",
                                replace(values_for(f"ns_{i}", 100 + i), expires_timestamp=2e9),
                                True, NOW - 5, 0.25, metadata_at=NOW - 5) for i in range(n))


def lines(text: bytes) -> set[str]:
    return set(text.decode().splitlines())


def poisoned(snap: Snapshot, index: int, field: str, bad: object) -> Snapshot:
    ns = list(snap.namespaces)
    st_ = ns[index]
    if field in VALUE_FIELDS:
        assert st_.values is not None
        ns[index] = replace(st_, values=replace(st_.values, **{field: bad}))
    else:
        ns[index] = replace(st_, **{field: bad})
    return replace(snap, namespaces=tuple(ns))


def test_a_document_count_of_10_to_the_400_costs_only_its_own_series() -> None:
    clean = Snapshot(version=1, namespaces=states(), stale_after=300)
    bad = poisoned(clean, 2, "documents", 10**400)
    r = FastRenderer(block_size=4)(bad, NOW)  # raised OverflowError for everyone before
    expected, _ = render_generic(poisoned(clean, 2, "documents", None), NOW)
    assert r.text == expected
    assert b'documents{namespace_id="ns_2"' not in r.text
    assert b'buckets{namespace_id="ns_2"' in r.text
    assert b'documents{namespace_id="ns_3"' in r.text


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(index=st.integers(0, 5), field=st.sampled_from(sorted({**VALUE_FIELDS, **STATE_FIELDS})),
       bad=st.sampled_from(UNRENDERABLE), block_size=st.sampled_from([1, 4, 512]),
       openmetrics=st.booleans())
def test_any_unrenderable_value_drops_exactly_its_series(
        index: int, field: str, bad: object, block_size: int, openmetrics: bool) -> None:
    clean = Snapshot(version=1, namespaces=states(), stale_after=300)
    renderer = FastRenderer(block_size=block_size)
    before = whole(renderer(clean, NOW), openmetrics)  # and a render reusing blocks after it
    after = whole(renderer(poisoned(clean, index, field, bad), NOW), openmetrics)
    name = {**VALUE_FIELDS, **STATE_FIELDS}[field]
    gone = lines(before) - lines(after)
    assert len(gone) == 1, gone
    assert gone.pop().startswith(f'{name}{{namespace_id="ns_{index}",')
    assert lines(after) <= lines(before)


def failing_family(source: str, bad: str) -> Family:
    def read(x: object) -> int:
        if getattr(x, "identifier", None) == bad or getattr(x, "namespace_id", None) == bad:
            raise RuntimeError("a reader bug")
        return 1

    return Family("mixpeek_namespace_test", "gauge", "test", NAMESPACE_LABELS, source, read)


@pytest.mark.parametrize("source", ["values", "state"])
def test_a_family_whose_reading_raises_for_one_namespace(source: str) -> None:
    renderer = FastRenderer(namespace_families=(*NAMESPACE_FAMILIES,
                                                failing_family(source, "ns_1")))
    text = renderer(Snapshot(version=1, namespaces=states(3), stale_after=300), NOW).text
    assert b'mixpeek_namespace_test{namespace_id="ns_0"' in text
    assert b'mixpeek_namespace_test{namespace_id="ns_1"' not in text
    assert b'mixpeek_namespace_test{namespace_id="ns_2"' in text
    assert b'mixpeek_namespace_documents{namespace_id="ns_1"' in text


def test_unprintable_labels_leave_out_that_namespace_only() -> None:
    ns = list(states(3))
    ns[1] = replace(ns[1], namespace_name=None)  # type: ignore[arg-type]  # a contract breach
    text = FastRenderer()(Snapshot(version=1, namespaces=tuple(ns), stale_after=300), NOW).text
    assert b'namespace_id="ns_1"' not in text
    assert text.count(b'mixpeek_namespace_up{') == 2


def test_an_exporter_wide_value_that_cannot_be_rendered_drops_its_family() -> None:
    snap = replace(golden_snapshot(), rate_limit_remaining=float("nan"), cycle_duration=1e400)
    r = FastRenderer()(snap, NOW)
    assert b"mixpeek_api_rate_limit_remaining" not in r.text
    assert b"mixpeek_exporter_poll_cycle_duration_seconds" not in r.text
    assert b"mixpeek_exporter_build_info{" in r.text
    boom = Family("mixpeek_exporter_test", "gauge", "t", (), "snapshot", lambda s: 1 / 0)
    r = FastRenderer(exporter_families=(boom, *EXPORTER_FAMILIES))(golden_snapshot(), NOW)
    assert b"mixpeek_exporter_test" not in r.text and b"mixpeek_api_requests_total{" in r.text


def test_a_left_out_series_is_logged_once_not_on_every_render(
        caplog: pytest.LogCaptureFixture) -> None:
    clean = Snapshot(version=1, namespaces=states(), stale_after=300)
    bad = poisoned(clean, 2, "documents", 10**400)
    renderer = FastRenderer(block_size=2)
    with caplog.at_level(logging.WARNING, logger="exporter.render.fast"):
        for k in range(3):  # new state objects each time: the block is really re-rendered
            renderer(replace(bad, namespaces=tuple(replace(s) for s in bad.namespaces)), NOW + k)
    warnings = [r for r in caplog.records if "cannot be rendered" in r.getMessage()]
    assert len(warnings) == 1
    fields = warnings[0].__dict__["fields"]
    assert fields["namespace"] == "ns_2" and fields["family"] == "mixpeek_namespace_documents"


def test_the_cache_and_readiness_keep_working() -> None:
    store = Store(["ns_a", "ns_b"], stale_after=300)
    store.apply(PollResult("ns_a", values_for("ns_a", 10**400), None, "", 200, 1, 0.1))
    store.apply(PollResult("ns_b", values_for("ns_b", 5), None, "", 200, 1, 0.1))
    store.cycle_done(1.0)
    cache = ExpositionCache(store)
    text = bytes(cache.body(openmetrics=False, gz=False))
    assert b'documents{namespace_id="ns_b",namespace_name="name_ns_b"} 5.0' in text
    assert cache.snapshot is not None and cache.snapshot.cycles_completed == 1  # /readyz


@pytest.mark.e2e
def test_a_huge_count_from_the_api_freezes_nothing(api_key: str) -> None:
    """Against the real processes: the API sends document_count 10**400 for one namespace;
    /metrics keeps updating for the others, /readyz turns 200 and --once prints."""
    with SimulatorProcess(api_key=api_key) as sim:
        sim.patch("demo_catalog", {"_raw": {"document_count": 10**400}})
        cfg = exporter_config(sim.url, ["demo_catalog", "ns_demo0002"])
        with ExporterProcess(cfg, api_key=api_key) as exp:
            exp.wait_ready()
            m = exp.metrics()
            assert sample(m, "mixpeek_namespace_documents", namespace_name="demo_catalog") \
                is None
            assert sample(m, "mixpeek_namespace_up", namespace_id="ns_demo0002") == 1
            sim.patch("ns_demo0002", {"document_count": 4242})
            exp.wait_for_sample("mixpeek_namespace_documents", lambda v: v == 4242,
                                namespace_id="ns_demo0002")
            assert http("GET", exp.url + "/readyz")[0] == 200
            exp.write_config(cfg)
            once = subprocess.run(
                [sys.executable, "-m", "exporter", "--once", "--config.file",
                 str(exp.config_path)], capture_output=True, timeout=60,
                env={"MIXPEEK_API_KEY": api_key, "PATH": "/usr/bin:/bin"})
    assert b'mixpeek_namespace_documents{namespace_id="ns_demo0002"' in once.stdout, once
    assert b"mixpeek_exporter_build_info{" in once.stdout
