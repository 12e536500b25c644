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
     "mixpeek.timeout_seconds: Input should be greater than or equal to 0.1 (got -1)"),
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
     "mixpeek.api_key_env: must name the environment variable that holds the key"),
    ("discovery_off_no_namespaces", "discovery: {enabled: false}\n",
     "discovery.enabled: is false and no namespaces are listed"),
    ("discovery_off_empty_namespaces", "discovery: {enabled: false}\nnamespaces: []\n",
     "discovery.enabled: is false and no namespaces are listed"),
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


CHECK_KEY = "sk_live_config_check_0001"


def _check(path: Path | None, cwd: Path = ROOT, env: dict[str, str] | None = None,
           key: bool = True) -> subprocess.CompletedProcess[str]:
    """``--config.check``, with MIXPEEK_API_KEY set unless ``key`` is False."""
    flags = [] if path is None else ["--config.file", str(path)]
    base = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    if key:
        base["MIXPEEK_API_KEY"] = CHECK_KEY
    return subprocess.run([sys.executable, "-m", "exporter", "--config.check", *flags],
                          capture_output=True, text=True, cwd=cwd, timeout=60,
                          env={**base, **(env or {})})


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
    res = _check(None, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(f"{NO_FILE}: configuration is valid (no namespaces listed, "
                                 "discovery on, polled every 60s)"), res.stdout
    assert "API key: found (env MIXPEEK_API_KEY)" in res.stdout
    assert "./config.yaml is looked for at start only" in res.stdout, res.stdout
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


# -- one rule for discovery: unset means "on when no namespace is listed" ------------------------

@pytest.mark.parametrize(("text", "environ", "namespaces", "discovery"), [
    ("", {}, [], True),  # no file at all
    ("", {"MIXPEEK_EXPORTER_NAMESPACES": "[demo_catalog]"}, ["demo_catalog"], False),
    ("poll: {interval_seconds: 600}\n", {}, [], True),
    ("discovery: {include: [prod_]}\n", {}, [], True),
    ("discovery: {enabled: null}\nnamespaces: [a]\n", {}, ["a"], False),
    ("namespaces: [a]\n", {}, ["a"], False),
    ("namespaces: [a]\ndiscovery: {enabled: true}\n", {}, ["a"], True),
    ("namespaces: [a]\n", {"MIXPEEK_EXPORTER_NAMESPACES": "[]"}, [], True),
    ("", {"MIXPEEK_EXPORTER_NAMESPACES": "[a]",
          "MIXPEEK_EXPORTER_DISCOVERY__ENABLED": "true"}, ["a"], True),
])
def test_unset_discovery_is_on_exactly_when_no_namespace_is_listed(
        text: str, environ: dict[str, str], namespaces: list[str], discovery: bool) -> None:
    cfg = parse_config(text, environ=environ)
    assert (cfg.namespaces, cfg.discovery.enabled) == (namespaces, discovery)


def test_the_no_file_mode_follows_the_same_discovery_rule() -> None:
    cfg = load_config(None, environ={"MIXPEEK_EXPORTER_NAMESPACES": "[demo_catalog]"})
    assert cfg.namespaces == ["demo_catalog"] and not cfg.discovery.enabled
    assert "with discovery" not in NO_FILE


def test_discovery_turned_off_by_a_variable_with_no_namespaces_names_the_variable() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config("", "cfg.yaml", environ={"MIXPEEK_EXPORTER_DISCOVERY__ENABLED": "false"})
    assert ("MIXPEEK_EXPORTER_DISCOVERY__ENABLED (discovery.enabled): is false and no "
            "namespaces are listed") in str(exc.value), str(exc.value)


# -- mistakes that would otherwise pass and then fail every poll ---------------------------------

@pytest.mark.parametrize(("url", "root"), [
    ("http://127.0.0.1:8080/v1", "http://127.0.0.1:8080"),
    ("https://api.mixpeek.com/v1/", "https://api.mixpeek.com"),
    ("https://gateway.example/mixpeek/V1", "https://gateway.example/mixpeek"),
])
def test_base_url_ending_in_v1_is_refused_with_the_root_to_use(url: str, root: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(f"mixpeek: {{base_url: '{url}'}}\nnamespaces: [a]\n", "c.yaml", environ={})
    assert "mixpeek.base_url:" in str(exc.value) and "adds /v1/" in str(exc.value)
    assert f"drop it ({root!r})" in str(exc.value), str(exc.value)
    parse_config(f"mixpeek: {{base_url: '{root}'}}\nnamespaces: [a]\n", environ={})


@pytest.mark.parametrize(("kind", "says"), [
    ("missing", "does not exist"),
    ("directory", "cannot be read: it is a directory, not a regular file"),
    ("fifo", "cannot be read: it is a FIFO"), ("not_pem", "holds no PEM certificate"),
])
def test_ca_file_must_be_a_readable_pem_bundle(tmp_path: Path, kind: str, says: str) -> None:
    ca = tmp_path / "ca.pem"
    if kind == "directory":
        ca.mkdir()
    elif kind == "fifo":
        os.mkfifo(ca)  # reading it would block: refused without opening for a read
    elif kind == "not_pem":
        ca.write_text("not a certificate\n")
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(f"mixpeek: {{ca_file: '{ca}'}}\nnamespaces: [a]\n")
    for env in ({}, {"MIXPEEK_EXPORTER_MIXPEEK__CA_FILE": str(ca)}):
        with pytest.raises(ConfigError) as exc:
            load_config(cfg_file if not env else None, environ=env)
        where = "MIXPEEK_EXPORTER_MIXPEEK__CA_FILE (mixpeek.ca_file)" if env else \
            "mixpeek.ca_file"
        assert f"{where}: {ca} {says}" in str(exc.value), str(exc.value)


def test_a_path_no_file_can_have_is_a_config_error_not_a_crash() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config('mixpeek: {ca_file: "ca\\0.pem"}\nnamespaces: [a]\n', "c.yaml", environ={})
    assert "mixpeek.ca_file:" in str(exc.value) and "NUL character" in str(exc.value)
    cfg = parse_config('mixpeek: {api_key_file: "k\\0"}\nnamespaces: [a]\n', environ={})
    with pytest.raises(ConfigError, match="NUL character"):
        load_api_key(cfg.mixpeek, {})


def test_ca_file_that_is_a_bundle_is_accepted(tmp_path: Path) -> None:
    import certifi

    cfg = parse_config(f"mixpeek: {{ca_file: '{certifi.where()}'}}\nnamespaces: [a]\n",
                       environ={})
    assert cfg.mixpeek.ca_file == Path(certifi.where())


def test_relative_paths_are_relative_to_the_config_file(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import certifi

    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "key").write_text("sk_live_relative_0001\n")
    (conf / "ca.pem").write_bytes(Path(certifi.where()).read_bytes())
    (conf / "config.yaml").write_text(
        "mixpeek: {api_key_file: key, ca_file: ./ca.pem}\nnamespaces: [a]\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_config(Path("../conf/config.yaml"), environ={})
    assert cfg.mixpeek.api_key_file == conf / "key"
    assert cfg.mixpeek.ca_file == conf / "ca.pem"
    assert load_api_key(cfg.mixpeek, {}).key.reveal() == "sk_live_relative_0001"
    # Set from the environment, a relative path is relative to the working directory.
    (elsewhere / "key2").write_text("sk_live_relative_0002\n")
    cfg = load_config(conf / "config.yaml",
                      environ={"MIXPEEK_EXPORTER_MIXPEEK__API_KEY_FILE": "key2"})
    assert cfg.mixpeek.api_key_file == elsewhere / "key2"
    assert cfg.mixpeek.ca_file == conf / "ca.pem"


# -- error lines say what to do ------------------------------------------------------------------

@pytest.mark.parametrize(("text", "environ", "expected"), [
    ("", {"MIXPEEK_EXPORTER_NAMESPACES": "a"},
     "MIXPEEK_EXPORTER_NAMESPACES (namespaces): Input should be a valid list (got 'a'); write "
     "it as a YAML list, e.g. MIXPEEK_EXPORTER_NAMESPACES='[a, b]'"),
    ("namespaces: a\n", {}, "namespaces: Input should be a valid list (got 'a'); write it as a "
                            "YAML list, e.g. [a, b]"),
    ("namespace: [a]\n", {}, "namespace: unknown key; did you mean `namespaces`?"),
    ("mixpeek: {timout_seconds: 3}\nnamespaces: [a]\n", {},
     "mixpeek.timout_seconds: unknown key; did you mean `timeout_seconds`?"),
    ("discovery: {exclud: [x]}\n", {}, "discovery.exclud: unknown key; did you mean `exclude`?"),
    ("", {"MIXPEEK_EXPORTER_POLL__INTERVL_SECONDS": "30"},
     "MIXPEEK_EXPORTER_POLL__INTERVL_SECONDS (poll.intervl_seconds): unknown key; did you mean "
     "MIXPEEK_EXPORTER_POLL__INTERVAL_SECONDS?"),
    ("", {"MIXPEEK_EXPORTER_POL__INTERVAL_SECONDS": "30"},
     "did you mean MIXPEEK_EXPORTER_POLL__INTERVAL_SECONDS?"),
    ("zzz: 1\n", {}, "zzz: unknown key (check the spelling against config.example.yaml)"),
])
def test_error_lines_say_what_to_do(text: str, environ: dict[str, str], expected: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(text, "c.yaml", environ=environ)
    assert expected in str(exc.value), str(exc.value)


SOME_KEY = "sk_live_9f8e7d6c5b4a3210"


@pytest.mark.parametrize(("text", "environ", "where"), [
    (f"mixpeek: {{api_key: {SOME_KEY}}}\nnamespaces: [a]\n", {}, "mixpeek.api_key"),
    (f"api_key: {SOME_KEY}\nnamespaces: [a]\n", {}, "api_key"),
    ("namespaces: [a]\n", {"MIXPEEK_EXPORTER_MIXPEEK__API_KEY": SOME_KEY},
     "MIXPEEK_EXPORTER_MIXPEEK__API_KEY (mixpeek.api_key)"),
])
def test_a_key_in_the_config_says_where_keys_come_from(text: str, environ: dict[str, str],
                                                       where: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(text, "c.yaml", environ=environ)
    message = str(exc.value)
    assert f"{where}: unknown key: the API key is never read from the configuration" in message
    assert "MIXPEEK_API_KEY" in message and "mixpeek.api_key_file" in message, message
    assert SOME_KEY[:8] not in message.replace("sk_live_", "") and SOME_KEY not in message


# -- api_key_env is a name, never the key --------------------------------------------------------

@pytest.mark.parametrize("value", [
    "sk_live_abcdef123456", "sk_test_xyz789", "sk_3f9a1c2b7d",
    "8f14e45fceea167a5a36dedd4bea2543",  # a bare token: letters and digits, no underscore
    "A" * 300,  # a name too long to be one
    "Bearer sk_live_abcdef123456",
])
def test_api_key_env_holding_a_key_is_refused_without_repeating_it(value: str) -> None:
    for text, environ in ((f"mixpeek: {{api_key_env: '{value}'}}\nnamespaces: [a]\n", {}),
                          ("namespaces: [a]\n", {"MIXPEEK_EXPORTER_MIXPEEK__API_KEY_ENV": value})):
        with pytest.raises(ConfigError) as exc:
            parse_config(text, "c.yaml", environ=environ)
        message = str(exc.value)
        assert ("mixpeek.api_key_env): must name" in message
                or "mixpeek.api_key_env: must name" in message), message
        assert ("must name the environment variable that holds the key (e.g. MIXPEEK_API_KEY), "
                "not the key itself") in message
        assert value[:12] not in message


@pytest.mark.parametrize("name", ["MIXPEEK_API_KEY", "MY_MIXPEEK_KEY", "_k", "mixpeek_prod"])
def test_api_key_env_accepts_variable_names(name: str) -> None:
    cfg = parse_config(f"mixpeek: {{api_key_env: {name}}}\nnamespaces: [a]\n", environ={})
    assert cfg.mixpeek.api_key_env == name


# -- variables that look like overrides but are not ------------------------------------------------

@pytest.mark.parametrize(("name", "says"), [
    ("MIXPEEK_EXPORTER_POLL_INTERVAL_SECONDS",
     "did you mean MIXPEEK_EXPORTER_POLL__INTERVAL_SECONDS?"),
    ("MIXPEEK_EXPORTER_MIXPEEK", "overrides are MIXPEEK_EXPORTER_<SECTION>__<KEY>"),
    ("MIXPEEK_EXPORTER_NAMESPACE", "overrides are MIXPEEK_EXPORTER_<SECTION>__<KEY>"),
])
def test_stray_prefixed_variables_are_named_in_a_warning(name: str, says: str) -> None:
    warnings: list[str] = []
    cfg = parse_config(GOOD, environ={name: "5", **SERVICE_LINKS}, warn=warnings.append)
    assert cfg == parse_config(GOOD, environ={})  # ignored, not an error
    assert len(warnings) == 1, warnings  # the service links pass in silence
    assert f"environment variable {name} is not a configuration override" in warnings[0]
    assert says in warnings[0] and "5" not in warnings[0].replace(name, ""), warnings[0]


def test_stray_variable_warning_is_logged_even_when_the_config_is_invalid(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING"), pytest.raises(ConfigError):
        parse_config("bogus: 1\n", environ={"MIXPEEK_EXPORTER_POLL_INTERVAL_SECONDS": "30"})
    logged = [r.__dict__.get("fields", {}).get("warning", "") for r in caplog.records]
    assert any("MIXPEEK_EXPORTER_POLL_INTERVAL_SECONDS" in w for w in logged), logged


def test_config_check_states_mode_and_warns_about_stray_variables(tmp_path: Path) -> None:
    res = _check(None, cwd=tmp_path, env={"MIXPEEK_EXPORTER_NAMESPACES": "[demo_catalog]",
                                          "MIXPEEK_EXPORTER_POLL_INTERVAL_SECONDS": "30",
                                          **SERVICE_LINKS})
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(f"{NO_FILE}: configuration is valid (1 namespace, discovery "
                                 "off, polled every 60s)"), res.stdout
    warnings = [ln for ln in res.stdout.splitlines() if ln.startswith("warning: ")]
    assert len(warnings) == 1 and "MIXPEEK_EXPORTER_POLL_INTERVAL_SECONDS" in warnings[0], \
        res.stdout
    only_poll = tmp_path / "c.yaml"
    only_poll.write_text("poll: {interval_seconds: 600}\n")
    res = _check(only_poll)
    assert res.returncode == 0, res.stderr
    assert "configuration is valid (no namespaces listed, discovery on, polled every 600s)" \
        in res.stdout, res.stdout


def test_config_page_shows_whole_numbers_as_written() -> None:
    from exporter.web.configpage import config_yaml
    from exporter.web.page import PageSource, Running

    cfg = parse_config("mixpeek: {max_requests_per_minute: 0, timeout_seconds: 2.5}\n"
                       "namespaces: [a]\n", environ={})
    running = Running(cfg, "env MIXPEEK_API_KEY", None)
    page = config_yaml(PageSource(lambda: None, lambda: running))  # type: ignore[arg-type,return-value]
    assert "max_requests_per_minute: 0\n" in page and "interval_seconds: 60\n" in page, page
    assert "timeout_seconds: 2.5\n" in page and ".0\n" not in page, page


# -- values YAML reads but cannot build, and values that would break the arithmetic later --------

LONG_INT = "1" * 5000  # Python converts at most 4300 digits of text to an int

# (YAML value, what the error line says about it). Each scanned as a type it then is not.
UNBUILDABLE = [
    ("2020-13-45", "'2020-13-45' is not a valid date (month must be in 1..12)"),
    ("2020-02-30", "'2020-02-30' is not a valid date (day is out of range for month)"),
    (LONG_INT, "is not a valid integer (5000 digits: at most 4300)"),
    ("!!float abc", "'abc' is not a valid number"),
    ("!!int 12x", "'12x' is not a valid integer"),
    ("!!timestamp soon", "'soon' is not a valid date"),
    ("!!binary 'AAA$$$'", "failed to decode base64 data"),
]


@pytest.mark.parametrize(("value", "says"), UNBUILDABLE, ids=[u[0][:16] for u in UNBUILDABLE])
def test_a_value_yaml_cannot_build_is_a_config_error_naming_file_and_line(
        value: str, says: str) -> None:
    text = f"namespaces: [a]\nmixpeek:\n  timeout_seconds: {value}\n"
    with pytest.raises(ConfigError) as exc:
        parse_config(text, "cfg.yaml", environ={})
    message = str(exc.value)
    assert message.startswith("invalid configuration in cfg.yaml:\n  - line 3, column 20: "), \
        message
    assert says in message and len(message) < 300, message


@pytest.mark.parametrize(("value", "says"), UNBUILDABLE, ids=[u[0][:16] for u in UNBUILDABLE])
def test_an_override_yaml_cannot_build_is_a_config_error_naming_the_variable(
        value: str, says: str) -> None:
    var = "MIXPEEK_EXPORTER_MIXPEEK__TIMEOUT_SECONDS"
    with pytest.raises(ConfigError) as exc:
        parse_config(GOOD, "cfg.yaml", environ={var: value})
    assert f"\n  - {var} (mixpeek.timeout_seconds): " in str(exc.value), str(exc.value)
    assert says in str(exc.value), str(exc.value)


def test_an_override_that_is_not_yaml_at_all_is_still_taken_as_text() -> None:
    cfg = parse_config(GOOD, environ={"MIXPEEK_EXPORTER_MIXPEEK__API_KEY_FILE": "keys: [a"})
    assert cfg.mixpeek.api_key_file is not None and cfg.mixpeek.api_key_file.name == "keys: [a"


def test_a_character_yaml_refuses_is_named_with_its_line() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config("namespaces: [a]\nx: 1\x00\n", "cfg.yaml", environ={})
    assert "line 2, column 5" in str(exc.value) and "U+0000" in str(exc.value), str(exc.value)


@pytest.mark.parametrize(("pattern", "says"), [
    ("a{4294967295}", "the repetition number is too large"),
    ("x{1,99999999999999999999}", "the repetition number is too large"),
    ("(" * 2000 + ")" * 2000, "nested too deeply"),
    ("(?P<a>x)(?P=b)", "unknown group name 'b'"),
])
def test_a_discovery_pattern_that_cannot_compile_names_the_key(pattern: str, says: str) -> None:
    for key in ("include", "exclude"):
        with pytest.raises(ConfigError) as exc:
            parse_config(f"discovery:\n  {key}: ['{pattern}']\n", "cfg.yaml", environ={})
        message = str(exc.value)
        assert f"discovery.{key}: [0] " in message and says in message, message
        assert len(message) < 300, message  # a long pattern is shortened, not echoed whole


NUMBERS = ["mixpeek.timeout_seconds", "mixpeek.retry_backoff_seconds",
           "mixpeek.retry_after_max_seconds", "mixpeek.max_requests_per_minute",
           "poll.interval_seconds", "poll.stale_after_seconds", "poll.metadata_interval_seconds",
           "discovery.refresh_interval_seconds"]


@pytest.mark.parametrize("key", NUMBERS)
@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", "true"])
def test_every_number_refuses_nan_infinity_and_booleans_naming_the_key(key: str,
                                                                      value: str) -> None:
    section, name = key.split(".")
    with pytest.raises(ConfigError) as exc:
        parse_config(f"namespaces: [a]\n{section}:\n  {name}: {value}\n", "cfg.yaml",
                     environ={})
    says = "must be a number, not true or false" if value == "true" else \
        "must be a finite number"
    assert f"  - {key}: {says}" in str(exc.value), str(exc.value)


@pytest.mark.parametrize("rpm", ["1e-17", "5e-324", "0.5", "0.999"])
def test_a_request_budget_below_one_a_minute_is_refused_saying_why(rpm: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(GOOD, "cfg.yaml",
                     environ={"MIXPEEK_EXPORTER_MIXPEEK__MAX_REQUESTS_PER_MINUTE": rpm})
    message = str(exc.value)
    assert ("MIXPEEK_EXPORTER_MIXPEEK__MAX_REQUESTS_PER_MINUTE "
            "(mixpeek.max_requests_per_minute): must be 0 (no limit) or from 1 to 100000") \
        in message, message
    assert "poll.interval_seconds" in message, message  # what to do instead


@pytest.mark.parametrize("value", ["1e-300", "0.01", "0"])
def test_a_timeout_too_short_for_any_request_is_refused(value: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(f"mixpeek: {{timeout_seconds: {value}}}\nnamespaces: [a]\n", "cfg.yaml",
                     environ={})
    assert "mixpeek.timeout_seconds: Input should be greater than or equal to 0.1 (got " \
        in str(exc.value), str(exc.value)


def test_config_check_reports_unbuildable_values_and_tiny_budgets(tmp_path: Path) -> None:
    stamp = tmp_path / "stamp.yaml"
    stamp.write_text("namespaces: [a]\ndiscovery:\n  refresh_interval_seconds: 2020-13-45\n")
    for path, env, says in (
            (stamp, {}, f"invalid configuration in {stamp}:\n  - line 3, column 29: "),
            (ROOT / "config.example.yaml",
             {"MIXPEEK_EXPORTER_POLL__INTERVAL_SECONDS": "9" * 5000},
             "MIXPEEK_EXPORTER_POLL__INTERVAL_SECONDS (poll.interval_seconds): "),
            (ROOT / "config.example.yaml",
             {"MIXPEEK_EXPORTER_MIXPEEK__MAX_REQUESTS_PER_MINUTE": "1e-17"},
             "MIXPEEK_EXPORTER_MIXPEEK__MAX_REQUESTS_PER_MINUTE "
             "(mixpeek.max_requests_per_minute): must be 0 (no limit)")):
        res = _check(path, env=env)
        assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
        assert says in res.stderr, res.stderr
