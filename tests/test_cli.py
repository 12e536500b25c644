"""The command line: zero-config start, the lifecycle flag, and start-up errors as one line."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from exporter.cli import build_parser
from exporter.settings.listen import ListenAddressError, parse_listen_address
from tests.harness import ROOT, SimulatorProcess, parse_metrics

SERVICE_LINKS = {  # what Kubernetes injects beside a Service named mixpeek-exporter
    "MIXPEEK_EXPORTER_PORT": "tcp://10.0.0.7:10117",
    "MIXPEEK_EXPORTER_SERVICE_HOST": "10.0.0.7",
    "MIXPEEK_EXPORTER_SERVICE_PORT": "10117",
    "MIXPEEK_EXPORTER_PORT_10117_TCP_ADDR": "10.0.0.7",
}


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "exporter", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), **env})


def test_lifecycle_endpoint_is_off_unless_asked_for() -> None:
    parser = build_parser()
    assert parser.parse_args([]).enable_lifecycle is False
    assert parser.parse_args(["--web.enable-lifecycle"]).enable_lifecycle is True
    assert "--web.enable-lifecycle" in parser.format_help()
    assert parser.parse_args([]).config_file is None  # no file named: ./config.yaml or none


@pytest.mark.e2e
def test_zero_config_start_discovers_every_namespace(tmp_path: Path) -> None:
    """MIXPEEK_API_KEY=... mixpeek-exporter, in a directory without config.yaml."""
    key = "sk_live_zero_config_0000"
    with SimulatorProcess(api_key=key, namespaces=3) as sim:
        env = {"MIXPEEK_API_KEY": key, "MIXPEEK_EXPORTER_MIXPEEK__BASE_URL": sim.url,
               "MIXPEEK_EXPORTER_MIXPEEK__MAX_REQUESTS_PER_MINUTE": "0", **SERVICE_LINKS}
        res = _run(["--once"], tmp_path, env)
        listed = {ns["namespace_id"] for ns in sim.state()["namespaces"].values()}
    assert res.returncode == 0, res.stderr
    assert "no config file: defaults with discovery" in res.stderr
    polled = {labels["namespace_id"]
              for labels, value in parse_metrics(res.stdout)["mixpeek_namespace_up"]
              if value == 1}
    assert polled == listed and len(listed) == 3, (polled, listed)


def test_named_config_file_that_is_missing_stays_an_error(tmp_path: Path) -> None:
    res = _run(["--config.file", "config.yaml", "--once"], tmp_path,
               {"MIXPEEK_API_KEY": "sk_live_zero_config_0000"})
    assert res.returncode == 1
    assert "config file 'config.yaml' does not exist" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize(("addr", "expected"), [
    (":10117", ("0.0.0.0", 10117, socket.AF_INET)),
    ("127.0.0.1:0", ("127.0.0.1", 0, socket.AF_INET)),
    ("[::1]:10117", ("::1", 10117, socket.AF_INET6)),
])
def test_listen_address_parses(addr: str, expected: tuple[str, int, int]) -> None:
    assert parse_listen_address(addr) == expected


@pytest.mark.parametrize(("addr", "says"), [
    ("10117", "expected HOST:PORT or :PORT"), (":http", "is not a number"),
    (":70000", "port out of range"), ("::1:10117", "put IPv6 hosts in brackets"),
])
def test_bad_listen_address_names_flag_and_problem(tmp_path: Path, addr: str, says: str) -> None:
    with pytest.raises(ListenAddressError) as exc:
        parse_listen_address(addr, "--listen")
    assert str(exc.value).startswith(f"--listen {addr!r}: ") and says in str(exc.value)
    res = _run(["--web.listen-address", addr], tmp_path, {})
    assert res.returncode == 2
    assert res.stderr.startswith(f"error: --web.listen-address {addr!r}: "), res.stderr
    assert says in res.stderr and "Traceback" not in res.stderr
