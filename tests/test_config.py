"""Config loading: every failure mode gets a message naming the key and the problem."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from exporter.settings.schema import ConfigError, load_api_key, load_config, parse_config
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
     "plain http to a non-loopback host"),
    ("ftp_url", "mixpeek: {base_url: 'ftp://x'}\nnamespaces: [a]\n",
     "mixpeek.base_url: must start with https://"),
    ("url_credentials", "mixpeek: {base_url: 'https://u:p@api.mixpeek.com'}\nnamespaces: [a]\n",
     "must not carry credentials"),
    ("url_query", "mixpeek: {base_url: 'https://api.mixpeek.com/?x=1'}\nnamespaces: [a]\n",
     "must not have a query string"),
    ("bad_env_name", "mixpeek: {api_key_env: 'MY-KEY'}\nnamespaces: [a]\n",
     "mixpeek.api_key_env: must be an environment variable name"),
    ("no_namespaces", "mixpeek: {}\n", "namespaces: list at least one namespace"),
    ("namespaces_not_list", "namespaces: abc\n", "namespaces: Input should be a valid list"),
    ("duplicate_namespace", "namespaces: [a, b, a]\n", "namespaces: [2] 'a' is listed twice"),
    ("slash_in_namespace", "namespaces: ['a/b']\n", "contains '/'"),
    ("query_in_namespace", "namespaces: ['a?x=1']\n", "contains '?'"),
    ("dotdot_namespace", "namespaces: ['..']\n", "is not a namespace identifier"),
    ("control_char", 'namespaces: ["a\\nb"]\n', "contains '\\n'"),
    ("empty_namespace", "namespaces: ['']\n", "namespaces: [0] is empty"),
    ("stale_shorter", "poll: {interval_seconds: 60, stale_after_seconds: 30}\nnamespaces: [a]\n",
     "stale_after_seconds (30) is shorter than interval_seconds (60)"),
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


def test_env_override_typo_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"poll\.intervall: unknown key"):
        parse_config(GOOD, environ={"MIXPEEK_EXPORTER_POLL__INTERVALL": "30"})


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


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
    ("space_in_key", "contains whitespace or control characters"),
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


def _check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "exporter", "--config.check",
                           "--config.file", str(path)], capture_output=True, text=True,
                          cwd=ROOT, timeout=60, env={"PATH": "/usr/bin:/bin"})


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
