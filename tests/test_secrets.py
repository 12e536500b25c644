"""The API key never shows up in logs, metrics, HTTP answers, error messages or reprs."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from exporter import logs
from exporter.app import App, file_loader
from exporter.settings.load import ConfigError, parse_config
from exporter.settings.secrets import Secret, load_api_key
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


# -- reading the key: what editors and mounts put around it, and what a path can be ------------

def _key_cfg(tmp_path, keyfile=None):
    text = f"mixpeek: {{api_key_file: '{keyfile}'}}\nnamespaces: [a]\n" if keyfile \
        else "namespaces: [a]\n"
    return parse_config(text, environ={}).mixpeek


@pytest.mark.parametrize("raw", [
    "\ufeff" + KEY,  # what Windows editors and PowerShell write
    "\ufeff" + KEY + "\r\n",
    "  " + KEY + "\n\n",
    "\n\ufeff" + KEY + "\t",
])
def test_key_file_bom_and_surrounding_whitespace_are_removed(tmp_path, raw: str) -> None:
    keyfile = tmp_path / "key"
    keyfile.write_bytes(raw.encode("utf-8"))
    assert load_api_key(_key_cfg(tmp_path, keyfile), {}).key.reveal() == KEY
    assert load_api_key(_key_cfg(tmp_path), {"MIXPEEK_API_KEY": raw}).key.reveal() == KEY


@pytest.mark.parametrize(("raw", "says"), [
    (KEY[:10] + "\u00a0" + KEY[10:],
     "a non-ASCII character (U+00A0 NO-BREAK SPACE) at position 11"),
    (KEY[:5] + "\u201c" + KEY[5:], "a non-ASCII character (U+201C LEFT DOUBLE QUOTATION MARK) "
                                   "at position 6"),
    (KEY[:12] + "\n" + KEY[12:], "a control character (U+000A) at position 13"),
    (KEY[:3] + " " + KEY[3:], "a space (U+0020 SPACE) at position 4"),
    (KEY + "\ufeff", "U+FEFF ZERO WIDTH NO-BREAK SPACE) at position 32 of 32"),
])
def test_key_with_a_character_outside_visible_ascii_is_refused(tmp_path, raw: str,
                                                                says: str) -> None:
    keyfile = tmp_path / "key"
    keyfile.write_text(raw, encoding="utf-8")
    for cfg, env in ((_key_cfg(tmp_path, keyfile), {}),
                     (_key_cfg(tmp_path), {"MIXPEEK_API_KEY": raw})):
        with pytest.raises(ConfigError) as exc:
            load_api_key(cfg, env)
        message = str(exc.value)
        assert says in message, message
        assert not any(KEY[i:i + 8] in message for i in range(len(KEY) - 7)), message


def _load_in_thread(cfg):
    outcome: list[BaseException | object] = []

    def run() -> None:
        try:
            outcome.append(load_api_key(cfg, {}))
        except BaseException as e:
            outcome.append(e)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout=30)
    assert not t.is_alive(), "reading the key file blocked"
    return outcome[0]


@pytest.mark.parametrize(("kind", "says"), [
    ("fifo", "it is a FIFO (named pipe), not a regular file"),
    ("zero", "it is a character device, not a regular file"),
    ("directory", "it is a directory, not a regular file"),
    ("huge", "bytes, more than the 4096 bytes allowed"),
    ("binary", "is not UTF-8 text"),
])
def test_key_file_that_is_not_a_small_text_file_is_refused_without_blocking(
        tmp_path, kind: str, says: str) -> None:
    path = tmp_path / "key"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "zero":
        path = Path("/dev/zero")
    elif kind == "directory":
        path.mkdir()
    elif kind == "huge":
        path.write_text(KEY * 10_000)
    else:
        path.write_bytes(b"\xff\xfe" + KEY.encode("utf-16-le"))
    outcome = _load_in_thread(_key_cfg(tmp_path, path))
    assert isinstance(outcome, ConfigError), outcome
    assert f"mixpeek.api_key_file: {path}" in str(outcome) and says in str(outcome), outcome
    assert KEY not in str(outcome)


def _check(config_file, env=None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "exporter", "--config.check", "--config.file",
                           str(config_file)], capture_output=True, text=True, cwd=ROOT,
                          timeout=60, env={"PATH": "/usr/bin:/bin", **(env or {})})


def test_config_check_agrees_with_start_up_about_the_key(tmp_path) -> None:
    keyfile = tmp_path / "key"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"mixpeek: {{api_key_file: '{keyfile}', base_url: 'http://127.0.0.1:9'}}\n"
                   "namespaces: [a]\n")
    keyfile.write_bytes(b"\xef\xbb\xbf" + KEY.encode() + b"\r\n")  # BOM + key + CRLF
    ok = _check(cfg)
    assert ok.returncode == 0 and "API key: found (file" in ok.stdout, ok.stdout + ok.stderr
    keyfile.write_text(KEY[:9] + "\u00a0" + KEY[9:])
    bad = _check(cfg)
    start = subprocess.run([sys.executable, "-m", "exporter", "--once", "--config.file",
                            str(cfg)], capture_output=True, text=True, cwd=ROOT, timeout=60,
                           env={"PATH": "/usr/bin:/bin"})
    for res in (bad, start):
        assert res.returncode == 1, res.stdout + res.stderr
        assert "U+00A0 NO-BREAK SPACE) at position 10" in res.stderr, res.stderr
        assert KEY[:9] not in res.stdout + res.stderr and KEY[10:] not in res.stderr
        assert "Traceback" not in res.stderr


def test_reload_keeps_the_previous_key_and_says_why(tmp_path) -> None:
    keyfile = tmp_path / "key"
    keyfile.write_text(KEY + "\n")
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(f"mixpeek: {{api_key_file: '{keyfile}', base_url: 'http://127.0.0.1:9'}}"
                        "\nnamespaces: [a]\n")
    app = App(file_loader(cfg_file))
    try:
        keyfile.unlink()
        os.mkfifo(keyfile)  # a reload reading this would hang every later reload with it
        outcome: list[tuple[bool, str]] = []
        t = threading.Thread(target=lambda: outcome.append(app.reload()), daemon=True)
        t.start()
        t.join(timeout=30)
        assert not t.is_alive(), "reload blocked on the key file"
        ok, message = outcome[0]
        assert not ok and "FIFO" in message and str(keyfile) in message, message
        assert app.creds.key.reveal() == KEY
        keyfile.unlink()
        keyfile.write_text("\ufeff" + KEY.upper() + "\n")
        ok, message = app.reload()
        assert ok, message
        assert app.creds.key.reveal() == KEY.upper()
    finally:
        app.client.close()


def _start_once(config_file, env=None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "exporter", "--once", "--config.file",
                           str(config_file)], capture_output=True, text=True, cwd=ROOT,
                          timeout=60, env={"PATH": "/usr/bin:/bin", **(env or {})})


@pytest.mark.parametrize("setup", ["env_unset", "file_missing", "file_empty", "file_directory"])
def test_config_check_fails_whenever_start_up_would_with_the_same_message(tmp_path,
                                                                          setup: str) -> None:
    keyfile = tmp_path / "key"
    if setup == "file_empty":
        keyfile.write_text("\n")
    elif setup == "file_directory":
        keyfile.mkdir()
    key_line = "" if setup == "env_unset" else f"api_key_file: '{keyfile}', "
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"mixpeek: {{{key_line}base_url: 'http://127.0.0.1:9'}}\nnamespaces: [a]\n")
    check, start = _check(cfg), _start_once(cfg)
    assert check.returncode == start.returncode == 1, check.stdout + check.stderr
    assert check.stderr.strip() and check.stderr.strip() in start.stderr, (check.stderr,
                                                                          start.stderr)
    # Never "valid" first and "invalid" after: nothing is called valid before the key is read.
    assert "configuration is valid" not in check.stdout + check.stderr, check.stdout
    assert "mixpeek.api_key" in check.stderr and "Traceback" not in check.stderr


def test_key_put_in_api_key_env_is_never_printed(tmp_path) -> None:
    key = "sk_live_abcdef123456"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"mixpeek: {{api_key_env: {key}, base_url: 'http://127.0.0.1:9'}}\n"
                   "namespaces: [a]\n")
    for res in (_check(cfg), _start_once(cfg)):
        out = res.stdout + res.stderr
        assert res.returncode == 1, out
        assert "mixpeek.api_key_env: must name the environment variable that holds the key " \
               "(e.g. MIXPEEK_API_KEY), not the key itself" in out, out
        assert "abcdef123456" not in out and "is not set" not in out, out


def test_reload_with_a_key_in_api_key_env_is_refused_and_config_page_never_shows_it(
        tmp_path) -> None:
    from exporter.web.configpage import config_yaml
    from exporter.web.page import PageSource

    keyfile = tmp_path / "key"
    keyfile.write_text(KEY + "\n")
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("mixpeek: {api_key_file: key, base_url: 'http://127.0.0.1:9'}\n"
                        "namespaces: [a]\n")
    app = App(file_loader(cfg_file))
    try:
        pasted = "sk_live_pasted_0123456789"
        cfg_file.write_text(f"mixpeek: {{api_key_env: {pasted}, base_url: 'http://127.0.0.1:9'}}"
                            "\nnamespaces: [a]\n")
        ok, message = app.reload()
        page = config_yaml(PageSource(app.store.snapshot, app.running))
    finally:
        app.client.close()
    assert not ok and "must name the environment variable" in message, message
    assert pasted[8:] not in message and pasted[8:] not in page, (message, page)
    assert f"api_key_file: {keyfile}" in page  # relative to the config file, shown resolved
