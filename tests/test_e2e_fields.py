"""One unusable field loses one series, not the namespace (issue 12), and the API 0.82
operator fields reach /metrics: the real exporter process against the simulator process."""

from __future__ import annotations

import pytest

from tests.harness import ExporterProcess, SimulatorProcess, exporter_config, sample

pytestmark = pytest.mark.e2e

CATALOG = {"namespace_id": "ns_demo0001", "namespace_name": "demo_catalog"}


@pytest.fixture
def exporter(sim: SimulatorProcess, api_key: str):
    with ExporterProcess(exporter_config(sim.url, ["demo_catalog"]), api_key=api_key) as e:
        e.wait_ready()
        yield e


def test_a_negative_bucket_count_drops_only_the_buckets_series(
        sim: SimulatorProcess, exporter: ExporterProcess) -> None:
    assert exporter.wait_for_sample("mixpeek_namespace_buckets", lambda v: v is not None,
                                    **CATALOG) is not None
    sim.patch("demo_catalog", {"_raw": {"bucket_count": -3, "created_at": "0000-00-00"}})
    exporter.wait_for_sample("mixpeek_namespace_invalid_fields", lambda v: v == 2, **CATALOG)
    m = exporter.metrics()
    assert sample(m, "mixpeek_namespace_up", **CATALOG) == 1
    assert sample(m, "mixpeek_namespace_documents", **CATALOG) == 12000
    assert sample(m, "mixpeek_namespace_buckets", **CATALOG) is None
    assert sample(m, "mixpeek_namespace_created_timestamp_seconds", **CATALOG) is None
    assert sample(m, "mixpeek_namespace_collections", **CATALOG) is not None
    # The names are logged once per change, and the next good answer clears the count.
    sim.patch("demo_catalog", {"_raw": None})
    exporter.wait_for_sample("mixpeek_namespace_invalid_fields", lambda v: v == 0, **CATALOG)
    assert exporter.log_text().count("bucket_count,created_at") == 1


def test_operator_fields_are_published_and_absent_when_the_api_omits_them(
        sim: SimulatorProcess, exporter: ExporterProcess) -> None:
    sim.patch("demo_catalog", {"namespace_ready": False, "clone_status": "cloning",
                               "expires_at": "2030-01-01T00:00:00Z"})
    exporter.wait_for_sample("mixpeek_namespace_ready", lambda v: v == 0, **CATALOG)
    m = exporter.metrics()
    assert sample(m, "mixpeek_namespace_expiry_timestamp_seconds", **CATALOG) == 1893456000
    assert sample(m, "mixpeek_namespace_info", clone_status="cloning", **CATALOG) == 1
    assert sample(m, "mixpeek_namespace_document_count_complete", **CATALOG) == 1
    sim.patch("demo_catalog", {"_omit": ["expires_at", "document_count_complete"],
                               "clone_status": None, "namespace_ready": True})
    exporter.wait_for_sample("mixpeek_namespace_ready", lambda v: v == 1, **CATALOG)
    m = exporter.metrics()
    # Never defaulted: a field the API left out publishes no series.
    assert sample(m, "mixpeek_namespace_expiry_timestamp_seconds", **CATALOG) is None
    assert sample(m, "mixpeek_namespace_document_count_complete", **CATALOG) is None
    assert sample(m, "mixpeek_namespace_info", clone_status="", **CATALOG) == 1
