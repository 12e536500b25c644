"""Config loading: every failure mode gets a message naming the key and the problem."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from exporter.settings.load import NO_FILE, ConfigError, config_path, load_config, parse_config
from exporter.settings.secrets import load_api_key
from tests.harness import ROOT

GOOD = """
mixpeek:
  base_url: https://api.mixpeek.com
namespaces: [a_namespace, ns_123]
"""

# (name, yaml, expected fragment of the error). One fixture per failure mode.
BAD = [
    ("unknown_top_key", GOOD + "bogus: 1\n", "bogus: unknown key"),
    ("unknown_nested_key", "mixpeek: {timeout: 3}\nnamespaces: [a]\n",
     "mixpeek.timeout: unknown key"),
    ("api_key_inline", "mixpeek: {api_key: sk_live_x}\nnamespaces: [a]\n",
     "mixpeek.api_key: unknown key"),
    ("wrong_type", "mixpeek: {timeout_seconds: soon}\nnamespaces: [a]\n",
     "mixpeek.timeout_seconds: Input should be a valid number"),
    ("negative_timeout", "mixpeek: {timeout_seconds: -1}\nnamespaces: [a]\n",
     "mixpeek.timeout_seconds: Input should be greater than 0"),
    ("zero_concurrency", "mixpeek: {max_concurrency: 0}\nnamespaces: [a]\n",
     "mixpeek.max_concurrency: Input should be greater than or equal to 1"),
    ("http_remote", "mixpeek: {base_url: 'http://api.mixpeek.com'}\nnamespaces: [a]\n",
     "mixpeek.base_url: 'http://api.mixpeek.com' is plain http to a non-loopback host"),
    ("ftp_url", "mixpeek: {base_url: 'ftp://x'}\nnamespaces: [a]\n",
     "mixpeek.base_url: must start with https://"),
    ("url_credentials", "mixpeek: {base_url: 'https://u:p@api.mixpeek.com'}\nnamespaces: [a]\n",
     "must not carry credentials"),
    ("url_query", "mixpeek: {base_url: 'https://api.mixpeek.com/?x=1'}\nnamespaces: [a]\n",
     "must not have a query string"),
    ("bad_env_name", "mixpeek: {api_key_env: 'MY-KEY'}\nnamespaces: [a]\n",
     "mixpeek.api_key_env: must be an environment variable name"),
    ("no_namespaces", "mixpeek: {}\n", "namespaces: list at least one namespace"),
    ("empty_file", "", "namespaces: list at least one namespace"),
    ("namespaces_not_list", "namespaces: abc\n", "namespaces: Input should be a valid list"),
    ("duplicate_namespace", "namespaces: [a, b, a]\n", "namespaces: [2] 'a' is listed twice"),
    ("slash_in_namespace", "namespaces: ['a/b']\n", "contains '/'"),
    ("query_in_namespace", "namespaces: ['a?x=1']\n", "contains '?'"),
    ("dotdot_namespace", "namespaces: ['..']\n", "is not a namespace identifier"),
    ("control_char", 'namespaces: ["a\\nb"]\n', "contains '\\n'"),
    ("empty_namespace", "namespaces: ['']\n", "namespaces: [0] is empty"),
    ("stale_shorter", "poll: {interval_seconds: 60, stale_after_seconds: 30}\nnamespaces: [a]\n",
     "poll.stale_after_seconds: stale_after_seconds (30) is shorter than interval_seconds (60)"),
    ("stale_shorter_than_long_interval",
     "poll: {interval_seconds: 600, stale_after_seconds: 300}\nnamespaces: [a]\n",
     "poll.stale_after_seconds: stale_after_seconds (300) is shorter than interval_seconds"),
    ("section_not_mapping", "mixpeek: 5\nnamespaces: [a]\n", "mixpeek: must be a mapping of keys"),
    ("path_not_text", "mixpeek: {api_key_file: 5}\nnamespaces: [a]\n",
     "mixpeek.api_key_file: must be a file path"),
    ("max_namespaces_zero", "discovery: {max_namespaces: 0}\nnamespaces: [a]\n",
     "discovery.max_namespaces: Input should be greater than or equal to 1"),
    ("interval_zero", "poll: {interval_seconds: 0}\nnamespaces: [a]\n",
     "poll.interval_seconds: Input should be greater than or equal to 1"),
    ("yaml_syntax", "mixpeek: {base_url: [\n", "YAML syntax error at line"),
    ("top_level_list", "- a\n- b\n", "the top level must be a mapping"),
    ("bool_as_count", "mixpeek: {max_retries: [1]}\nnamespaces: [a]\n",
     "mixpeek.max_retries: Input should be a valid integer"),
]


@pytest.mark.parametrize(("name", "text", "expected"), BAD, ids=[b[0] for b in BAD])
def test_bad_config_names_key_and_problem(name: str, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(text, "cfg.yaml", environ={})
    assert expected in str(exc.value), str(exc.value)
    assert "cfg.yaml" in str(exc.value)
    # Messages speak of keys and values, never of the Python classes behind them.
    for internal in ("Config", "<class", "instance of", "pathlib", "function-"):
        assert internal not in str(exc.value), str(exc.value)


def test_good_config_defaults() -> None:
    cfg = parse_config(GOOD, environ={})
    assert cfg.namespaces == ["a_namespace", "ns_123"]
    assert cfg.mixpeek.timeout_seconds == 10
    assert cfg.mixpeek.api_key_env == "MIXPEEK_API_KEY"
    assert cfg.poll.interval_seconds == 60
    assert cfg.poll.stale_after_seconds == 300


def test_loopback_http_allowed_and_insecure_opt_in() -> None:
    for url in ("http://127.0.0.1:8000", "http://localhost:1", "http://[::1]:80"):
        parse_config(f"mixpeek: {{base_url: '{url}'}}\nnamespaces: [a]\n", environ={})
    cfg = parse_config("mixpeek: {base_url: 'http://mixpeek.internal', allow_insecure_http: true}"
                       "\nnamespaces: [a]\n", environ={})
    assert cfg.mixpeek.base_url == "http://mixpeek.internal"


def test_env_overrides_keep_types() -> None:
    cfg = parse_config(GOOD, environ={
        "MIXPEEK_EXPORTER_POLL__INTERVAL_SECONDS": "30",
        "MIXPEEK_EXPORTER_MIXPEEK__VERIFY_TLS": "false",
        "MIXPEEK_EXPORTER_NAMESPACES": "[x, y]",
    })
    assert cfg.poll.interval_seconds == 30
    assert cfg.mixpeek.verify_tls is False
    assert cfg.namespaces == ["x", "y"]


@pytest.mark.parametrize(("name", "expected"), [
    ("MIXPEEK_EXPORTER_POLL__INTERVL_SECONDS",
     "MIXPEEK_EXPORTER_POLL__INTERVL_SECONDS (poll.intervl_seconds): unknown key"),
    ("MIXPEEK_EXPORTER_POL__INTERVAL_SECONDS",
     "MIXPEEK_EXPORTER_POL__INTERVAL_SECONDS (pol): unknown key"),
    ("MIXPEEK_EXPORTER_MIXPEEK__TIMEOUT_SECONDS",
     "MIXPEEK_EXPORTER_MIXPEEK__TIMEOUT_SECONDS (mixpeek.timeout_seconds): Input should be a "
     "valid number"),
])
def test_env_override_problem_names_the_variable(name: str, expected: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(GOOD, environ={name: "soon"})
    assert expected in str(exc.value), str(exc.value)


# What Kubernetes injects into every pod of a namespace with a Service named mixpeek-exporter.
SERVICE_LINKS = {
    "MIXPEEK_EXPORTER_PORT": "tcp://10.0.0.7:10117",
    "MIXPEEK_EXPORTER_SERVICE_HOST": "10.0.0.7",
    "MIXPEEK_EXPORTER_SERVICE_PORT": "10117",
    "MIXPEEK_EXPORTER_SERVICE_PORT_METRICS": "10117",
    "MIXPEEK_EXPORTER_PORT_10117_TCP": "tcp://10.0.0.7:10117",
    "MIXPEEK_EXPORTER_PORT_10117_TCP_ADDR": "10.0.0.7",
    "MIXPEEK_EXPORTER_PORT_10117_TCP_PORT": "10117",
    "MIXPEEK_EXPORTER_PORT_10117_TCP_PROTO": "tcp",
}


def test_kubernetes_service_link_variables_are_not_overrides() -> None:
    cfg = parse_config(GOOD, environ={**SERVICE_LINKS,
                                      "MIXPEEK_EXPORTER_POLL__INTERVAL_SECONDS": "30"})
    assert cfg.poll.interval_seconds == 30
    assert cfg == parse_config(GOOD + "poll: {interval_seconds: 30}\n", environ={})


def test_stale_after_follows_the_interval_when_unset() -> None:
    assert parse_config(GOOD, environ={}).poll.stale_after_seconds == 300
    cfg = parse_config(GOOD + "poll: {interval_seconds: 600}\n", environ={})
    assert cfg.poll.stale_after_seconds == 3000
    cfg = parse_config(GOOD + "poll: {interval_seconds: 600, stale_after_seconds: null}\n",
                       environ={})
    assert cfg.poll.stale_after_seconds == 3000
    cfg = parse_config(GOOD, environ={"MIXPEEK_EXPORTER_POLL__INTERVAL_SECONDS": "120"})
    assert cfg.poll.stale_after_seconds == 600
    explicit = parse_config(GOOD + "poll: {interval_seconds: 600, stale_after_seconds: 900}\n",
                            environ={})
    assert explicit.poll.stale_after_seconds == 900


def test_discovery_max_namespaces_default() -> None:
    assert parse_config(GOOD, environ={}).discovery.max_namespaces == 10_000
    cfg = parse_config(GOOD, environ={"MIXPEEK_EXPORTER_DISCOVERY__MAX_NAMESPACES": "50"})
    assert cfg.discovery.max_namespaces == 50


def test_no_config_file_means_defaults_with_discovery(tmp_path: Path) -> None:
    assert config_path(None, cwd=tmp_path) is None
    cfg = load_config(None, environ={})
    assert cfg.discovery.enabled and cfg.namespaces == []
    assert cfg.poll.interval_seconds == 60
    cfg = load_config(None, environ={"MIXPEEK_EXPORTER_POLL__INTERVAL_SECONDS": "30",
                                     "MIXPEEK_EXPORTER_DISCOVERY__INCLUDE": "[prod_]"})
    assert cfg.discovery.enabled and cfg.discovery.include == ["prod_"]
    assert cfg.poll.interval_seconds == 30
    with pytest.raises(ConfigError) as exc:
        load_config(None, environ={"MIXPEEK_EXPORTER_POLL__INTERVL_SECONDS": "30"})
    assert NO_FILE in str(exc.value)
    (tmp_path / "config.yaml").write_text(GOOD)
    assert config_path(None, cwd=tmp_path) == Path("config.yaml")
    assert config_path("other.yaml", cwd=tmp_path) == Path("other.yaml")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize("kind", ["fifo", "device", "huge"])
def test_config_file_that_is_not_a_small_regular_file(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "config.yaml"
    if kind == "fifo":
        os.mkfifo(path)  # reading it would block until a writer came: never
    elif kind == "device":
        path = Path("/dev/zero")  # reading it never ends
    else:
        path.write_text("namespaces: [a]\n" + "#" * (9 * 1_048_576))
    outcome: list[BaseException] = []

    def load() -> None:
        try:
            load_config(path, environ={})
        except BaseException as e:
            outcome.append(e)
    t = threading.Thread(target=load, daemon=True)
    t.start()
    t.join(timeout=30)
    assert not t.is_alive(), "loading the config blocked"
    assert len(outcome) == 1 and isinstance(outcome[0], ConfigError), outcome
    assert str(path) in str(outcome[0])
    expected = {"fifo": "FIFO", "device": "character device", "huge": "bytes allowed"}[kind]
    assert expected in str(outcome[0]), str(outcome[0])


def test_api_key_from_env_and_file(tmp_path: Path) -> None:
    cfg = parse_config(GOOD, environ={})
    creds = load_api_key(cfg.mixpeek, {"MIXPEEK_API_KEY": "sk_live_abcdef"})
    assert creds.key.reveal() == "sk_live_abcdef"
    assert "sk_live" not in repr(creds) and "sk_live" not in str(creds.key)
    keyfile = tmp_path / "key"
    keyfile.write_text("sk_live_fromfile\n")
    cfg2 = parse_config(f"mixpeek: {{api_key_file: '{keyfile}'}}\nnamespaces: [a]\n", environ={})
    creds2 = load_api_key(cfg2.mixpeek, {"MIXPEEK_API_KEY": "sk_live_env"})
    assert creds2.key.reveal() == "sk_live_fromfile"
    assert creds2.source == f"file {keyfile}"


@pytest.mark.parametrize(("setup", "expected"), [
    ("unset", "environment variable MIXPEEK_API_KEY is not set"),
    ("missing_file", "does not exist"),
    ("empty_file", "is empty"),
    ("space_in_key", "contains a space (U+0020 SPACE) at position 8 of 11"),
])
def test_api_key_problems(tmp_path: Path, setup: str, expected: str) -> None:
    keyfile = tmp_path / "key"
    env = {}
    text = GOOD
    if setup == "missing_file":
        text = f"mixpeek: {{api_key_file: '{keyfile}'}}\nnamespaces: [a]\n"
    elif setup == "empty_file":
        keyfile.write_text("\n")
        text = f"mixpeek: {{api_key_file: '{keyfile}'}}\nnamespaces: [a]\n"
    elif setup == "space_in_key":
        env = {"MIXPEEK_API_KEY": "sk_live bad"}
    cfg = parse_config(text, environ={})
    with pytest.raises(ConfigError) as exc:
        load_api_key(cfg.mixpeek, env)
    assert expected in str(exc.value)
    assert "sk_live bad" not in str(exc.value)


def _check(path: Path | None, cwd: Path = ROOT, env: dict[str, str] | None = None
           ) -> subprocess.CompletedProcess[str]:
    flags = [] if path is None else ["--config.file", str(path)]
    return subprocess.run([sys.executable, "-m", "exporter", "--config.check", *flags],
                          capture_output=True, text=True, cwd=cwd, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), **(env or {})})


def test_config_check_cli(tmp_path: Path) -> None:
    ok = _check(ROOT / "config.example.yaml")
    assert ok.returncode == 0, ok.stderr
    assert "configuration is valid" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("mixpeek: {timeout_seconds: -1, bogus: 2}\nnamespaces: ['a/b']\n")
    res = _check(bad)
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    for fragment in ("mixpeek.timeout_seconds", "mixpeek.bogus: unknown key", "contains '/'"):
        assert fragment in res.stderr, res.stderr


def test_config_check_without_a_file_says_it_runs_on_defaults(tmp_path: Path) -> None:
    res = _check(None, cwd=tmp_path, env={"MIXPEEK_API_KEY": "sk_live_zero_config_0001"})
    assert res.returncode == 0, res.stderr
    assert NO_FILE in res.stdout and "discovery on" in res.stdout, res.stdout
    assert "API key: found (env MIXPEEK_API_KEY)" in res.stdout
    (tmp_path / "config.yaml").write_text(GOOD)
    res = _check(None, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("config.yaml: configuration is valid (2 namespaces"), res.stdout


def test_config_check_names_the_missing_file_it_was_given(tmp_path: Path) -> None:
    res = _check(tmp_path / "nope.yaml", cwd=tmp_path)
    assert res.returncode == 1
    assert "nope.yaml' does not exist" in res.stderr, res.stderr


def test_config_check_ignores_service_links_and_names_typoed_variables(tmp_path: Path) -> None:
    ok = _check(ROOT / "config.example.yaml", env=SERVICE_LINKS)
    assert ok.returncode == 0, ok.stderr
    bad = _check(ROOT / "config.example.yaml",
                 env={**SERVICE_LINKS, "MIXPEEK_EXPORTER_POLL__INTERVL_SECONDS": "30"})
    assert bad.returncode == 1
    assert "MIXPEEK_EXPORTER_POLL__INTERVL_SECONDS (poll.intervl_seconds): unknown key" \
        in bad.stderr, bad.stderr
