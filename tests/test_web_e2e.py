"""The exporter's own port end to end (``python -m exporter`` against the simulator): content
negotiation as Prometheus and odd clients send it, the lifecycle flag, and the default
dual-stack listen address."""

from __future__ import annotations

import gzip
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from http.client import HTTPConnection

import pytest

from tests.harness import (
    ROOT,
    ExporterProcess,
    SimulatorProcess,
    exporter_config,
    http,
    parse_metrics,
    sample,
)

KEY = "sk_live_web_e2e_000000000"
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
TEXT = "text/plain; version=0.0.4; charset=utf-8"


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorProcess]:
    with SimulatorProcess(api_key=KEY) as s:
        yield s


@pytest.fixture(scope="module")
def exporter(sim: SimulatorProcess) -> Iterator[ExporterProcess]:
    with ExporterProcess(exporter_config(sim.url, ["demo_catalog"]), api_key=KEY) as e:
        e.wait_ready()
        yield e


def get(e: ExporterProcess, headers: dict[str, str], host: str = "127.0.0.1"
        ) -> tuple[int, dict[str, str], bytes]:
    """GET /metrics with exactly these headers (http.client adds no Accept-Encoding then)."""
    conn = HTTPConnection(host, e.port, timeout=10)
    try:
        conn.request("GET", "/metrics", headers={"Accept-Encoding": "", **headers})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


@pytest.mark.e2e
@pytest.mark.parametrize(("accept", "accept_encoding", "content_type", "gzipped"), [
    ("application/openmetrics-text; version=1.0.0", "gzip", OPENMETRICS, True),
    ("", "gzip;q=0", TEXT, False),
    ("", "gzip;q=0, identity", TEXT, False),
    ("", "*;q=0.1", TEXT, True),
    # A weight that is not a qvalue (four decimals, or q given twice) is q=0, not "unsaid":
    # the wildcard beside it does not bring gzip back (attack probe p09).
    ("", "gzip;q=0.0000, *", TEXT, False),
    ("", "gzip;q=0;q=1", TEXT, False),
    ("", "gzip;q=0;q=1, *;q=1", TEXT, False),
    ("application/openmetrics-text;q=0, text/plain", "", TEXT, False),
    ("application/openmetrics-text;q=0, */*", "", TEXT, False),
    ("text/plain;version=0.0.4;q=0.5,application/openmetrics-text;version=1.0.0;q=0.4", "",
     TEXT, False),
    # Headers the parser cannot read get the default answer, not a dropped connection.
    ("application/openmetrics-text; version=abc", "", TEXT, False),
    ("text/plain;version=1.x", "gzip;q=abc", TEXT, False),
    (";;;,,,", ",,;q=", TEXT, False),
])
def test_negotiation_honours_q_values(exporter: ExporterProcess, accept: str,
                                      accept_encoding: str, content_type: str,
                                      gzipped: bool) -> None:
    status, headers, body = get(exporter, {"Accept": accept, "Accept-Encoding": accept_encoding})
    assert status == 200
    assert headers["Content-Type"] == content_type
    assert ("Content-Encoding" in headers) is gzipped
    text = (gzip.decompress(body) if gzipped else body).decode()
    if content_type == TEXT:
        assert sample(parse_metrics(text), "mixpeek_namespace_up",
                      namespace_name="demo_catalog") == 1
    else:
        assert text.endswith("# EOF\n")


@pytest.mark.e2e
def test_reload_over_http_needs_the_lifecycle_flag(sim: SimulatorProcess) -> None:
    cfg = exporter_config(sim.url, ["demo_catalog"])
    with ExporterProcess(cfg, api_key=KEY) as e:
        e.wait_ready()
        e.write_config(exporter_config(sim.url, ["demo_catalog", "demo_media"]))
        status, headers, body = http("POST", e.url + "/-/reload")
        assert status == 405 and headers["Allow"] == ""
        assert b"--web.enable-lifecycle" in body and b"SIGHUP" in body
        assert "configuration reloaded" not in e.log_text()
        # SIGHUP always reloads.
        e.signal(signal.SIGHUP)
        e.wait_for_sample("mixpeek_namespace_up", lambda v: v == 1,
                          namespace_name="demo_media")
    with ExporterProcess(cfg, api_key=KEY, extra_args=["--web.enable-lifecycle"]) as e:
        e.wait_ready()
        e.write_config(exporter_config(sim.url, ["demo_catalog", "demo_media"]))
        status, _, body = http("POST", e.url + "/-/reload")
        assert status == 200 and body.startswith(b"reloaded")
        e.wait_for_sample("mixpeek_namespace_up", lambda v: v == 1,
                          namespace_name="demo_media")


@pytest.mark.e2e
def test_help_names_the_lifecycle_flag() -> None:
    out = subprocess.run([sys.executable, "-m", "exporter", "--help"], capture_output=True,
                         text=True, cwd=ROOT, timeout=60, check=True).stdout
    assert "--web.enable-lifecycle" in out


@pytest.mark.e2e
@pytest.mark.skipif(not socket.has_dualstack_ipv6(), reason="no IPv6 on this host")
def test_default_listen_address_is_dual_stack(sim: SimulatorProcess) -> None:
    e = ExporterProcess(exporter_config(sim.url, ["demo_catalog"]), api_key=KEY)
    # The form of the default (":10117"): no host. It comes after the harness' own address
    # and wins, as on any command line.
    e.extra_args = ["--web.listen-address", f":{e.port}"]
    with e:
        e.wait_ready()
        for host in ("127.0.0.1", "::1"):
            status, _, body = get(e, {}, host=host)
            assert status == 200 and b"mixpeek_namespace_up" in body
        assert http("GET", f"http://[::1]:{e.port}/healthz", timeout=5)[0] == 200
