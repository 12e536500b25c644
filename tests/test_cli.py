"""The command line: zero-config start, the lifecycle flag, and start-up errors as one line."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from exporter.app import App, file_loader
from exporter.cli import build_parser
from exporter.settings.listen import ListenAddressError, parse_listen_address
from exporter.settings.load import NO_FILE
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
    assert NO_FILE in res.stderr and "no namespaces listed, discovery on" in res.stderr
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


@pytest.mark.e2e
def test_no_file_with_namespaces_from_the_environment_polls_just_those(tmp_path: Path) -> None:
    """MIXPEEK_EXPORTER_NAMESPACES='[demo_catalog]' mixpeek-exporter: that one, no discovery."""
    key = "sk_live_zero_config_0002"
    with SimulatorProcess(api_key=key, namespaces=3) as sim:
        env = {"MIXPEEK_API_KEY": key, "MIXPEEK_EXPORTER_MIXPEEK__BASE_URL": sim.url,
               "MIXPEEK_EXPORTER_MIXPEEK__MAX_REQUESTS_PER_MINUTE": "0",
               "MIXPEEK_EXPORTER_NAMESPACES": "[demo_catalog]"}
        res = _run(["--once"], tmp_path, env)
    assert res.returncode == 0, res.stderr
    assert "1 namespace, discovery off" in res.stderr and "with discovery" not in res.stderr
    polled = {labels["namespace_name"]
              for labels, _ in parse_metrics(res.stdout)["mixpeek_namespace_up"]}
    assert polled == {"demo_catalog"}, polled


def test_listen_address_help_names_every_endpoint() -> None:
    action = next(a for a in build_parser()._actions if "--web.listen-address" in a.option_strings)
    for path in ("/metrics", "/healthz", "/readyz", "/status", "/config", "/-/reload"):
        assert path in (action.help or ""), (path, action.help)


def test_port_in_use_says_how_to_pick_another(tmp_path: Path) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        res = _run(["--demo", "--web.listen-address", f"127.0.0.1:{port}"], tmp_path, {})
    assert res.returncode == 1, res.stderr
    assert "cannot listen" in res.stderr and "Address already in use" in res.stderr, res.stderr
    assert "--web.listen-address" in res.stderr and "make demo PORT=" in res.stderr, res.stderr


def _fields(caplog: pytest.LogCaptureFixture, msg: str) -> list[dict[str, object]]:
    return [r.__dict__.get("fields", {}) for r in caplog.records if r.getMessage() == msg]


@pytest.fixture
def no_file_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory without config.yaml, a key, and an API that is never called."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MIXPEEK_API_KEY", "sk_live_no_file_0003")
    monkeypatch.setenv("MIXPEEK_EXPORTER_MIXPEEK__BASE_URL", "http://127.0.0.1:9")
    return tmp_path


def test_stray_variable_is_warned_about_at_start_and_at_each_reload(
        no_file_env: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("MIXPEEK_EXPORTER_POLL_INTERVAL_SECONDS", "30")
    with caplog.at_level(logging.WARNING):
        app = App(file_loader(None))
        try:
            assert app.cfg.poll.interval_seconds == 60  # ignored, not applied nor fatal
            assert app.reload()[0]
        finally:
            app.client.close()
    warned = [f for f in _fields(caplog, "configuration warning")
              if "MIXPEEK_EXPORTER_POLL_INTERVAL_SECONDS" in str(f.get("warning"))]
    assert len(warned) == 2, caplog.records
    assert "MIXPEEK_EXPORTER_POLL__INTERVAL_SECONDS" in str(warned[0]["warning"])


def test_a_config_yaml_created_after_start_is_named_at_reload(
        no_file_env: Path, caplog: pytest.LogCaptureFixture) -> None:
    app = App(file_loader(None))
    try:
        (no_file_env / "config.yaml").write_text("namespaces: [demo_catalog]\n")
        with caplog.at_level(logging.WARNING):
            ok, _ = app.reload()
    finally:
        app.client.close()
    assert ok and app.cfg.namespaces == []  # the file chosen at start (none) is kept
    warned = [str(f.get("warning")) for f in _fields(caplog, "configuration warning")]
    assert any("./config.yaml now exists but is not read" in w and "restart" in w
               for w in warned), warned


@pytest.mark.parametrize(("text", "says"), [
    ("basic_auth_users:\n  prometheus: 2020-13-45\n",
     "line 2, column 15: '2020-13-45' is not a valid date (month must be in 1..12)"),
    ("rate_limit:\n  burst: " + "1" * 5000 + "\n", "(5000 digits: at most 4300)"),
    ("rate_limit: {interval: 25h, burst: 1}\n", "rate_limit.interval: must be 0 (off)"),
])
def test_a_bad_web_config_at_start_is_printed_like_a_bad_config(tmp_path: Path, text: str,
                                                                 says: str) -> None:
    web = tmp_path / "web.yml"
    web.write_text(text)
    bad_config = tmp_path / "bad.yaml"
    bad_config.write_text("namespaces: [a]\nmixpeek: {timeout_seconds: 2020-13-45}\n")
    env = {"MIXPEEK_API_KEY": "sk_live_web_config_0004",
           "MIXPEEK_EXPORTER_MIXPEEK__BASE_URL": "http://127.0.0.1:9",
           "MIXPEEK_EXPORTER_NAMESPACES": "[a]"}
    res = _run(["--web.config.file", str(web), "--web.listen-address", "127.0.0.1:0"],
               tmp_path, env)
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    assert f"\ninvalid configuration in {web}:\n  - " in res.stderr, res.stderr
    assert says in res.stderr, res.stderr
    # A bad --config.file reads the same: a head naming the file, one line per problem.
    res = _run(["--config.file", str(bad_config), "--web.listen-address", "127.0.0.1:0"],
               tmp_path, env)
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    assert res.stderr.startswith(f"invalid configuration in {bad_config}:\n  - line 2, "), \
        res.stderr


def test_a_request_budget_that_passes_the_check_also_starts(tmp_path: Path) -> None:
    """What --config.check accepts, start-up can use: a budget too small to pace by is
    refused by both, naming the variable, instead of passing one and crashing the other."""
    env = {"MIXPEEK_API_KEY": "sk_live_budget_0005",
           "MIXPEEK_EXPORTER_MIXPEEK__BASE_URL": "http://127.0.0.1:9",
           "MIXPEEK_EXPORTER_NAMESPACES": "[a]",
           "MIXPEEK_EXPORTER_MIXPEEK__MAX_REQUESTS_PER_MINUTE": "0.00000000000000001"}
    for args in (["--config.check"], ["--once"]):
        res = _run(args, tmp_path, env)
        assert res.returncode == 1 and "Traceback" not in res.stderr, (args, res.stderr)
        assert "MIXPEEK_EXPORTER_MIXPEEK__MAX_REQUESTS_PER_MINUTE " \
               "(mixpeek.max_requests_per_minute): must be 0 (no limit)" in res.stderr, \
            (args, res.stderr)
