"""The API key never shows up in logs, metrics, HTTP answers, error messages or reprs."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from exporter import logs
from exporter.settings.schema import load_api_key, parse_config
from exporter.settings.secrets import Secret
from tests.harness import ROOT, ExporterProcess, SimulatorProcess, exporter_config, http

KEY = "sk_live_SECRET_d41d8cd98f00b204"


def _everything_served(e: ExporterProcess) -> str:
    parts = [e.scrape(), e.scrape({"Accept": "application/openmetrics-text; version=1.0.0"})]
    for path in ("/", "/healthz", "/readyz", "/nope"):
        parts.append(http("GET", e.url + path)[2].decode(errors="replace"))
    return "\n".join(parts)


@pytest.mark.e2e
@pytest.mark.parametrize("log_format", ["logfmt", "json"])
def test_key_absent_from_logs_and_endpoints(log_format: str) -> None:
    with SimulatorProcess(api_key=KEY) as sim:
        cfg = exporter_config(sim.url, ["demo_catalog", "no_such_ns"])
        with ExporterProcess(cfg, api_key=KEY, log_format=log_format) as e:
            e.wait_ready()
            # Rotate the key on the API side: every poll now fails with 401, and the error
            # path (the API's own message, our classification, the log line) is exercised.
            sim.configure(api_key="sk_live_other_key_000000")
            e.wait_for_sample("mixpeek_namespace_up", lambda v: v == 0,
                              namespace_name="demo_catalog")
            served = _everything_served(e)
            _, _, body = http("POST", e.url + "/-/reload")
            served += body.decode()
        log = e.log_text()
    assert "unauthorized" in served and "unauthorized" in log
    assert KEY not in served
    assert KEY not in log
    assert KEY[8:] not in log  # not even a fragment of it


def test_key_absent_when_api_echoes_it() -> None:
    """A hostile or buggy API that puts the key into its error message."""
    with SimulatorProcess(api_key=KEY) as sim:
        sim.patch("demo_catalog", {"_fail": {"status": 500, "message": f"bad token {KEY}"}})
        cfg = exporter_config(sim.url, ["demo_catalog"])
        with ExporterProcess(cfg, api_key=KEY) as e:
            e.wait_for_sample("mixpeek_namespace_up", lambda v: v == 0, timeout=30,
                              namespace_name="demo_catalog")
            served = _everything_served(e)
        log = e.log_text()
    assert "server_error" in log
    assert KEY not in log and KEY not in served
    assert logs.REDACTED in log


def test_reprs_and_exceptions_hide_key(tmp_path) -> None:
    s = Secret(KEY)
    assert KEY not in repr(s) and KEY not in str(s) and KEY not in f"{s}"
    with pytest.raises(TypeError):
        import pickle
        pickle.dumps(s)
    cfg = parse_config("namespaces: [a]\n", environ={})
    creds = load_api_key(cfg.mixpeek, {"MIXPEEK_API_KEY": KEY})
    assert KEY not in repr(creds) and KEY not in repr(cfg)


def test_scrubber_catches_key_in_tracebacks(capsys) -> None:
    import io
    stream = io.StringIO()
    logs.setup("debug", "logfmt", stream)
    logs.register_secret(Secret(KEY))
    try:
        raise RuntimeError(f"something with {KEY} inside")
    except RuntimeError:
        logging.getLogger("t").exception("boom %s", KEY)
    out = stream.getvalue()
    assert "boom" in out and "RuntimeError" in out
    assert KEY not in out


def test_config_check_never_prints_key(tmp_path) -> None:
    keyfile = tmp_path / "key"
    keyfile.write_text(KEY)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"mixpeek: {{api_key_file: '{keyfile}'}}\nnamespaces: [a]\n")
    res = subprocess.run([sys.executable, "-m", "exporter", "--config.check", "--config.file",
                          str(cfg)], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert res.returncode == 0
    assert "API key: found (file" in res.stdout
    assert KEY not in res.stdout + res.stderr
