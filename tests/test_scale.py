"""Discovery, the request budget, batched counts and sharding (issue 6), end to end."""

from __future__ import annotations

import pytest

from tests.harness import ExporterProcess, SimulatorProcess, exporter_config, sample, wait_until

pytestmark = pytest.mark.e2e


def up_names(e: ExporterProcess) -> set[str]:
    return {lbl["namespace_name"] for lbl, v in e.metrics().get("mixpeek_namespace_up", [])
            if v == 1}


def discovery_config(url: str, **discovery: object) -> dict:
    cfg = exporter_config(url, [])
    cfg["discovery"] = {"enabled": True, "refresh_interval_seconds": 1, "page_size": 7,
                        **discovery}
    return cfg


@pytest.mark.parametrize("shape", ["schema", "legacy"])
def test_discovery_follows_both_pagination_shapes(api_key: str, shape: str) -> None:
    with SimulatorProcess(api_key=api_key, namespaces=23, extra_args=["--list-shape", shape]) \
            as sim, ExporterProcess(discovery_config(sim.url), api_key=api_key) as e:
        all_names = {d["namespace_name"] for d in sim.state()["namespaces"].values()}
        assert len(all_names) == 23
        wait_until(lambda: up_names(e) == all_names, 15, what="all 23 discovered and up")
        m = e.metrics()
        assert sample(m, "mixpeek_exporter_namespaces") == 23
        assert sample(m, "mixpeek_exporter_discovery_up") == 1
        # 23 namespaces at 7 per page: 4 list requests per refresh (read between two of them:
        # refreshes run beside the poll cycles).
        wait_until(lambda: sim.state()["requests"]["list"] % 4 == 0, 10,
                   what="a whole number of listings")


def test_discovery_stops_at_max_namespaces_and_says_so(api_key: str) -> None:
    with SimulatorProcess(api_key=api_key, namespaces=23) as sim, \
            ExporterProcess(discovery_config(sim.url, max_namespaces=10), api_key=api_key) as e:
        wait_until(lambda: len(up_names(e)) == 10, 15, what="the first 10 listed, up")
        # Every refresh stops in its second page (7 per page); the log says it once.
        wait_until(lambda: sim.state()["requests"]["list"] >= 6, 15, what="three refreshes")
        m = e.metrics()
        assert sample(m, "mixpeek_exporter_namespaces") == 10
        assert sample(m, "mixpeek_exporter_discovery_up") == 1
        log = e.log_text()
        assert log.count("namespace discovery stopped at discovery.max_namespaces") == 1
        assert "max_namespaces=10" in log
        assert sample(m, "mixpeek_exporter_discovery_limit_reached") == 1


def test_discovery_filters_and_vanishing_namespaces(api_key: str) -> None:
    with SimulatorProcess(api_key=api_key, namespaces=12) as sim:
        cfg = discovery_config(sim.url, include=["^sim_namespace_", "^demo_"],
                               exclude=["_000004$", "^demo_archive$"])
        cfg["namespaces"] = ["demo_archive"]  # explicit wins over the exclude filter
        with ExporterProcess(cfg, api_key=api_key) as e:
            expected = ({"demo_catalog", "demo_media", "demo_archive"}
                        | {f"sim_namespace_{i:06d}" for i in range(3, 12) if i != 4})
            wait_until(lambda: up_names(e) == expected, 15, what="filtered set")
            # Explicit "demo_archive" and discovered ns_demo0003 are one namespace, polled once.
            ups = e.metrics()["mixpeek_namespace_up"]
            assert sum(1 for lbl, _ in ups if lbl["namespace_name"] == "demo_archive") == 1
            sim.delete("ns_00000005")
            wait_until(lambda: "sim_namespace_000005" not in {
                lbl["namespace_name"] for lbl, _ in e.metrics()["mixpeek_namespace_up"]}, 15,
                what="vanished namespace to leave /metrics")
            assert 'msg="namespaces to poll changed"' in e.log_text()


def test_budget_spreads_polls_and_says_so(api_key: str) -> None:
    # 12 namespaces, 1 s interval, 120 requests/minute: a cycle needs 6 s at that pace.
    with SimulatorProcess(api_key=api_key, namespaces=12,
                          extra_args=["--rate-limit-rpm", "120"]) as sim:
        names = [d["namespace_name"] for d in sim.state()["namespaces"].values()]
        cfg = exporter_config(sim.url, names, max_requests_per_minute=120)
        with ExporterProcess(cfg, api_key=api_key) as e:
            e.wait_for_sample("mixpeek_exporter_poll_cycle_duration_seconds",
                              lambda v: v is not None, timeout=30)
            m = e.metrics()
            assert sample(m, "mixpeek_exporter_poll_interval_seconds") == 6.0
            log = e.log_text()
            assert "request budget cannot poll every namespace" in log
            assert "effective_interval_seconds=6.0" in log and "requests_per_cycle=12" in log
            # Paced by our own bucket, the simulator's limiter never has to refuse us.
            assert "429" not in sim.state()["requests"]
            assert sim.stats()["rate_limit"]["refused"] == 0
            assert sample(m, "mixpeek_api_requests_total", status="429") is None


def series(e: ExporterProcess, name: str) -> dict[tuple[str, str], float]:
    return {(lbl["namespace_id"], lbl["namespace_name"]): v
            for lbl, v in e.metrics().get(name, [])}


def test_counts_come_from_stats_batch_in_the_first_cycle_names_resolved_by_listing(
        api_key: str) -> None:
    with SimulatorProcess(api_key=api_key, namespaces=250) as sim:
        served = sim.state()["namespaces"]
        ids = sorted(served)
        # 200 configured by id, 50 by name: one listing completes both kinds of labels.
        configured = ids[:200] + [served[i]["namespace_name"] for i in ids[200:]]
        cfg = exporter_config(sim.url, configured, max_concurrency=8)
        cfg["poll"].update(counts_source="stats_batch", metadata_interval_seconds=3600)
        with ExporterProcess(cfg, api_key=api_key) as e:
            e.wait_ready(timeout=30)
            first = sim.stats()["requests"]
            # Ready means every namespace has its count, and no Get Namespace was needed for
            # it: 3 pages of the listing (100 a page), then 3 batches.
            assert first.get("get_namespace", 0) == 0
            assert first["list"] == 3 and first["stats_batch"] == 3
            docs = series(e, "mixpeek_namespace_documents")
            expected = {(i, served[i]["namespace_name"]): served[i]["document_count"]
                        for i in ids if served[i]["document_count"] is not None}
            assert docs == expected, "every count, under complete labels, from the start"
            sim.patch("ns_00000100", {"document_count": 4242})
            e.wait_for_sample("mixpeek_namespace_documents", lambda v: v == 4242, timeout=15,
                              namespace_id="ns_00000100")
            later = sim.stats()["requests"]
            assert later.get("get_namespace", 0) <= 1, "metadata is spread over an hour"
            assert later["list"] == 3, "names are resolved once"


def test_metadata_is_spread_and_published_with_its_refresh_time(api_key: str) -> None:
    with SimulatorProcess(api_key=api_key, namespaces=20) as sim:
        ids = sorted(sim.state()["namespaces"])
        cfg = exporter_config(sim.url, ids)
        # 20 namespaces, a cycle every second, metadata every 10 s: about 2 a cycle.
        cfg["poll"].update(counts_source="stats_batch", metadata_interval_seconds=10)
        with ExporterProcess(cfg, api_key=api_key) as e:
            wait_until(lambda: len(e.metrics().get(
                "mixpeek_namespace_metadata_last_refresh_timestamp_seconds", [])) == 20, 30,
                what="every namespace's metadata refreshed once")
            got = sim.stats()["requests"]
            # Spread over the cycles of a metadata interval (two a cycle), not 20 at once; and
            # each namespace once, oldest first, not the same ones again.
            assert got["stats_batch"] >= 8, got
            assert 20 <= got["get_namespace"] <= 24, got
            assert sample(e.metrics(), "mixpeek_namespace_max_concurrent_jobs",
                          namespace_id=ids[-1]) == 10


def test_an_unlimited_budget_learns_the_stated_limit_instead_of_a_429_storm(
        api_key: str) -> None:
    # 600 a minute allowed; no budget configured; 1,000 namespaces polled one by one as fast
    # as 16 threads go: without pacing, request 601 would come within a second or two.
    with SimulatorProcess(api_key=api_key, namespaces=1000,
                          extra_args=["--rate-limit-rpm", "600"]) as sim:
        ids = sorted(sim.state()["namespaces"])
        cfg = exporter_config(sim.url, ids, max_concurrency=16, max_retries=2)
        with ExporterProcess(cfg, api_key=api_key) as e:
            wait_until(lambda: sim.stats()["requests"].get("get_namespace", 0) >= 120, 60,
                       what="120 polls")
            assert "the API states its rate limit" in e.log_text()
        limit = sim.stats()["rate_limit"]
        assert limit["refused"] <= 1, limit


def test_stats_batch_falls_back_on_older_api(api_key: str) -> None:
    with SimulatorProcess(api_key=api_key, namespaces=5,
                          extra_args=["--no-stats-batch"]) as sim:
        ids = sorted(sim.state()["namespaces"])
        cfg = exporter_config(sim.url, ids)
        cfg["poll"].update(counts_source="stats_batch", metadata_interval_seconds=3600)
        with ExporterProcess(cfg, api_key=api_key) as e:
            e.wait_ready()
            sim.patch("ns_demo0001", {"document_count": 31337})
            e.wait_for_sample("mixpeek_namespace_documents", lambda v: v == 31337,
                              namespace_id="ns_demo0001")
            wait_until(lambda: sim.state()["requests"]["get_namespace"] >= 10, 10,
                       what="polling to continue via Get Namespace")
            assert sample(e.metrics(), "mixpeek_exporter_stats_batch_available") == 0
            assert e.log_text().count("does not offer POST /v1/namespaces/stats/batch") == 1


def test_shards_partition_every_namespace_exactly_once(api_key: str) -> None:
    with SimulatorProcess(api_key=api_key, namespaces=30) as sim:
        all_names = {d["namespace_name"] for d in sim.state()["namespaces"].values()}
        seen: list[set[str]] = []
        for i in range(3):
            with ExporterProcess(discovery_config(sim.url), api_key=api_key,
                                 extra_args=[f"--shard={i}", "--total-shards=3"]) as e:
                e.wait_ready(timeout=20)
                names = {lbl["namespace_name"]
                         for lbl, _ in e.metrics().get("mixpeek_namespace_up", [])}
                assert sample(e.metrics(), "mixpeek_exporter_shard_ordinal") == i
                seen.append(names)
        assert set().union(*seen) == all_names
        assert sum(len(s) for s in seen) == len(all_names)
        assert all(seen), "md5 spreads 30 namespaces over every shard"


def test_bad_shard_flags_are_refused(tmp_path) -> None:
    import subprocess
    import sys

    from tests.harness import ROOT
    res = subprocess.run([sys.executable, "-m", "exporter", "--shard=3", "--total-shards=3"],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert res.returncode == 2 and "--shard must be in 0..2" in res.stderr
