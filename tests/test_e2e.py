"""The real `python -m exporter` process against the simulator process, over loopback."""

from __future__ import annotations

import contextlib
import gzip
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse

from tests.harness import (
    ROOT,
    ExporterProcess,
    SimulatorProcess,
    exporter_config,
    http,
    parse_metrics,
    sample,
    wait_until,
)
from tests.tooling import require_tool

pytestmark = pytest.mark.e2e

NAMESPACES = ["demo_catalog", "ns_demo0002", "demo_archive"]
CATALOG = {"namespace_id": "ns_demo0001", "namespace_name": "demo_catalog"}
MEDIA = {"namespace_id": "ns_demo0002", "namespace_name": "demo_media"}


@pytest.fixture
def exporter(sim: SimulatorProcess, api_key: str):
    with ExporterProcess(exporter_config(sim.url, NAMESPACES), api_key=api_key) as e:
        e.wait_ready()
        yield e


def test_serves_namespace_metrics(exporter: ExporterProcess) -> None:
    m = exporter.metrics()
    assert sample(m, "mixpeek_namespace_documents", **CATALOG) == 12000
    assert sample(m, "mixpeek_namespace_documents", **MEDIA) == 480
    assert sample(m, "mixpeek_namespace_max_concurrent_jobs", **CATALOG) == 10
    assert sample(m, "mixpeek_namespace_autoscaling_enabled", **CATALOG) == 1
    assert sample(m, "mixpeek_namespace_info", compute_tier="dedicated_cpu", **MEDIA) == 1
    for labels in (CATALOG, MEDIA):
        assert sample(m, "mixpeek_namespace_up", **labels) == 1
    # demo_archive's document_count is null: absent, not 0, while its other counts are there.
    archive = {"namespace_id": "ns_demo0003", "namespace_name": "demo_archive"}
    assert sample(m, "mixpeek_namespace_documents", **archive) is None
    assert sample(m, "mixpeek_namespace_buckets", **archive) == 3
    assert sample(m, "mixpeek_api_requests_total", status="200") >= 3
    assert sample(m, "mixpeek_exporter_build_info") == 1
    assert "process_resident_memory_bytes" in m


def test_promtool_check_metrics_is_clean(exporter: ExporterProcess) -> None:
    promtool = require_tool("promtool")
    # promtool lints the text format only; the OpenMetrics variant is parsed strictly below.
    body = exporter.scrape()
    res = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    om = exporter.scrape({"Accept": "application/openmetrics-text; version=1.0.0"})
    names = {f.name for f in om_parse(om)}
    assert {"mixpeek_namespace_documents", "mixpeek_api_requests"} <= names


def test_count_change_is_picked_up(exporter: ExporterProcess, sim: SimulatorProcess) -> None:
    sim.patch("demo_catalog", {"document_count": 777})
    exporter.wait_for_sample("mixpeek_namespace_documents", lambda v: v == 777, **CATALOG)


def test_failing_namespace_is_isolated_and_recovers(exporter: ExporterProcess,
                                                    sim: SimulatorProcess) -> None:
    sim.patch("demo_media", {"_fail": {"status": 500}})
    exporter.wait_for_sample("mixpeek_namespace_up", lambda v: v == 0, **MEDIA)
    m = exporter.metrics()
    assert sample(m, "mixpeek_namespace_poll_errors_total", reason="server_error", **MEDIA) >= 1
    assert sample(m, "mixpeek_namespace_up", **CATALOG) == 1
    # Last known values keep being served until they go stale.
    assert sample(m, "mixpeek_namespace_documents", **MEDIA) == 480
    sim.patch("demo_media", {"_fail": None})
    exporter.wait_for_sample("mixpeek_namespace_up", lambda v: v == 1, **MEDIA)
    log = exporter.log_text()
    assert log.count('msg="namespace poll failing" namespace=ns_demo0002') == 1, log
    assert 'msg="namespace recovered" namespace=ns_demo0002' in log


def test_deleted_namespace_loses_values_at_once(exporter: ExporterProcess,
                                                sim: SimulatorProcess) -> None:
    sim.delete("ns_demo0002")
    exporter.wait_for_sample("mixpeek_namespace_up", lambda v: v == 0, **MEDIA)
    m = exporter.metrics()
    assert sample(m, "mixpeek_namespace_documents", **MEDIA) is None
    assert sample(m, "mixpeek_namespace_info", **MEDIA) is None
    assert sample(m, "mixpeek_namespace_poll_errors_total", reason="not_found", **MEDIA) >= 1
    assert sample(m, "mixpeek_namespace_documents", **CATALOG) is not None


def test_stale_values_expire(sim: SimulatorProcess, api_key: str) -> None:
    cfg = exporter_config(sim.url, ["demo_media"], interval=1, stale_after=2)
    with ExporterProcess(cfg, api_key=api_key) as e:
        e.wait_for_sample("mixpeek_namespace_documents", lambda v: v == 480, **MEDIA)
        sim.patch("demo_media", {"_fail": {"status": 503}})
        e.wait_for_sample("mixpeek_namespace_documents", lambda v: v is None, timeout=10,
                          **MEDIA)
        assert sample(e.metrics(), "mixpeek_namespace_last_success_timestamp_seconds",
                      **MEDIA) is not None


def test_http_endpoints(exporter: ExporterProcess) -> None:
    assert http("GET", exporter.url + "/healthz")[0] == 200
    assert http("GET", exporter.url + "/readyz")[0] == 200
    status, headers, body = http("GET", exporter.url + "/")
    assert status == 200 and b'href="metrics"' in body
    assert http("GET", exporter.url + "/nope")[0] == 404
    assert http("GET", exporter.url + "/metrics/../etc/passwd")[0] == 404
    assert http("DELETE", exporter.url + "/metrics")[0] == 405
    status, headers, body = http("GET", exporter.url + "/metrics",
                                 headers={"Accept-Encoding": "gzip"})
    assert headers["Content-Encoding"] == "gzip"
    assert b"mixpeek_namespace_documents" in gzip.decompress(body)
    status, headers, body = http("GET", exporter.url + "/metrics", headers={
        "Accept": "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"})
    assert headers["Content-Type"].startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")


def test_not_ready_until_first_cycle(api_key: str) -> None:
    with SimulatorProcess(api_key=api_key, extra_args=["--latency-ms", "3000"]) as slow:
        cfg = exporter_config(slow.url, ["demo_catalog"], timeout_seconds=10)
        with ExporterProcess(cfg, api_key=api_key) as e:
            status, _, body = http("GET", e.url + "/readyz")
            assert status == 503 and b"first poll cycle" in body
            assert http("GET", e.url + "/metrics")[0] == 200
            e.wait_ready(timeout=15)


def test_sigterm_exits_zero_promptly_during_inflight_poll(api_key: str) -> None:
    with SimulatorProcess(api_key=api_key, extra_args=["--latency-ms", "1500"]) as slow:
        cfg = exporter_config(slow.url, ["demo_catalog"], timeout_seconds=5)
        with ExporterProcess(cfg, api_key=api_key) as e:
            wait_until(lambda: slow.state()["requests"].get("get_namespace"), 10,
                       what="a poll in flight")
            started = time.monotonic()
            e.signal(signal.SIGTERM)
            rc = e.proc.wait(15)
            elapsed = time.monotonic() - started
            assert rc == 0, e.log_text()
            assert elapsed < 8, elapsed
            assert 'msg="mixpeek-exporter stopped"' in e.log_text()


def test_once_prints_exposition_and_exit_code(sim: SimulatorProcess, api_key: str,
                                              tmp_path) -> None:
    import yaml

    def once(namespaces: list[str]) -> subprocess.CompletedProcess[str]:
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump(exporter_config(sim.url, namespaces)))
        return subprocess.run([sys.executable, "-m", "exporter", "--once", "--config.file",
                               str(path)], capture_output=True, text=True, cwd=ROOT, timeout=60,
                              env={"MIXPEEK_API_KEY": api_key, "PATH": "/usr/bin:/bin"})
    good = once(["demo_catalog"])
    assert good.returncode == 0, good.stderr
    assert sample(parse_metrics(good.stdout), "mixpeek_namespace_documents", **CATALOG) == 12000
    bad = once(["demo_catalog", "no_such_namespace"])
    assert bad.returncode == 1
    m = parse_metrics(bad.stdout)
    assert sample(m, "mixpeek_namespace_up", namespace_name="no_such_namespace") == 0


def test_missing_key_is_a_clear_startup_error(sim: SimulatorProcess, tmp_path) -> None:
    import yaml
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(exporter_config(sim.url, ["demo_catalog"])))
    res = subprocess.run([sys.executable, "-m", "exporter", "--config.file", str(path)],
                         capture_output=True, text=True, cwd=ROOT, timeout=60,
                         env={"PATH": "/usr/bin:/bin"})
    assert res.returncode == 1
    assert "environment variable MIXPEEK_API_KEY is not set" in res.stderr
    assert "Traceback" not in res.stderr


def test_demo_mode_serves_metrics() -> None:
    from tests.harness import free_port
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "exporter", "--demo",
                             "--web.listen-address", f"127.0.0.1:{port}"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={"PATH": "/usr/bin:/bin"})
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: http("GET", url + "/readyz", timeout=2)[0] == 200, 15,
                   what="demo ready")
        m = parse_metrics(http("GET", url + "/metrics")[2].decode())
        assert sample(m, "mixpeek_namespace_documents", namespace_name="demo_catalog") >= 12000
        assert sample(m, "mixpeek_namespace_up", namespace_name="demo_media") == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0


@contextlib.contextmanager
def _keyfile_exporter(sim: SimulatorProcess, api_key: str):
    with tempfile.TemporaryDirectory() as d:
        keyfile = Path(d) / "api-key"
        keyfile.write_text(api_key)
        cfg = exporter_config(sim.url, ["demo_catalog"], api_key_file=str(keyfile))
        with ExporterProcess(cfg) as e:
            yield e, keyfile


def test_rotated_key_file_is_picked_up_without_reload(sim: SimulatorProcess,
                                                      api_key: str) -> None:
    with _keyfile_exporter(sim, api_key) as (e, keyfile):
        e.wait_for_sample("mixpeek_namespace_up", lambda v: v == 1, **CATALOG)
        new_key = "sk_live_rotated_0123456789"
        sim.configure(api_key=new_key)  # the old key is revoked on the API side
        e.wait_for_sample("mixpeek_namespace_up", lambda v: v == 0, **CATALOG)
        keyfile.write_text(new_key + "\n")  # what the kubelet does when the Secret changes
        e.wait_for_sample("mixpeek_namespace_up", lambda v: v == 1, timeout=15, **CATALOG)
        assert 'msg="API key file changed; using the new key"' in e.log_text()
        assert new_key not in e.log_text()
