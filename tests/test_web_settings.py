"""The ``--web.config.file`` schema (``exporter.settings.web``) on its own: durations, the
error lines (the main config's format), random files, and files that are not files."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from exporter.ratelimit import TokenBucket
from exporter.settings.load import ConfigError
from exporter.settings.web import (
    TLS_UNSUPPORTED,
    TLSServerConfig,
    WebConfigError,
    WebSettings,
    load_web_config,
    parse_duration,
    parse_web_config,
)


@pytest.mark.parametrize(("text", "seconds"), [
    ("100ms", 0.1), ("1s", 1.0), ("1m30s", 90.0), ("2h", 7200.0), ("0", 0.0), (0, 0.0)])
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["fast", "1", "-1s", "1s2", True, "", "1 s"])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError, match="expected a duration like 100ms"):
        parse_duration(text)


def test_errors_are_config_errors_in_the_main_configs_format() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_web_config("rate_limit: {interval: fast}\n", "web.yml")
    assert isinstance(exc.value, WebConfigError)
    assert str(exc.value) == ("invalid configuration in web.yml:\n"
                              "  - rate_limit.interval: expected a duration like 100ms or 1s, "
                              "got 'fast'")


def test_relative_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    web = tmp_path / "web.yml"
    web.write_text("tls_server_config: {cert_file: tls/a.crt, key_file: /abs/a.key}\n")
    tls = load_web_config(web).tls
    assert tls is not None
    assert tls.cert_file == tmp_path.resolve() / "tls/a.crt"
    assert tls.key_file == Path("/abs/a.key")


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "web.yml"
    os.mkfifo(fifo)
    outcome: list[BaseException] = []

    def load() -> None:
        try:
            load_web_config(fifo)
        except BaseException as e:
            outcome.append(e)
    t = threading.Thread(target=load, daemon=True)
    t.start()
    t.join(10)
    if t.is_alive():  # unblock the reader so the thread can end
        with open(fifo, "w"):
            pass
        pytest.fail("reading a FIFO as the web config blocked")
    assert isinstance(outcome[0], WebConfigError)
    assert "FIFO" in str(outcome[0]) and str(fifo) in str(outcome[0])


web_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=3), max_leaves=12)
TOP_KEYS = list(WebSettings.model_fields)
web_keys = st.sampled_from([*TOP_KEYS, *TLSServerConfig.model_fields, *TLS_UNSUPPORTED,
                            "http2", "headers", "interval", "burst", "prometheus"])
web_files = st.dictionaries(
    st.sampled_from(TOP_KEYS) | st.text(max_size=8),
    st.dictionaries(web_keys, web_values, max_size=4) | web_values, max_size=4)


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(web_files)
def test_random_web_configs_load_or_name_the_problem(data: dict[str, Any]) -> None:
    try:
        parse_web_config(yaml.safe_dump(data), "web.yml", Path("/nonexistent-dir"))
    except WebConfigError as e:
        assert str(e).startswith("invalid configuration in web.yml:\n")
        assert e.problems
        for problem in e.problems:
            assert problem.strip() and "\n" not in problem and len(problem) < 600, problem


# Written as text, not dumped: values YAML scans as a type they then are not, tags, and
# durations and bursts at and past what a limiter can compute with.
raw_web_values = (
    st.from_regex(r"\d{4}-\d{1,2}-\d{1,2}", fullmatch=True)
    | st.integers(4250, 4350).map(lambda n: "1" * n)
    | st.from_regex(r"\d{1,400}(\.\d{1,30})?(ns|us|ms|s|m|h|d|w|y)", fullmatch=True)
    | st.sampled_from([".nan", ".inf", "true", "1e-300", "!!float x", "!!binary 'A$'",
                       "!!timestamp no", "!!python/name:os.system", "0", "-1s", "1s"]))
RAW_WEB_KEYS = [("rate_limit", "interval"), ("rate_limit", "burst"),
                ("basic_auth_users", "prometheus"), ("http_server_config", "http2"),
                ("tls_server_config", "min_version")]
raw_web_files = st.lists(st.tuples(st.sampled_from(RAW_WEB_KEYS), raw_web_values),
                         min_size=1, max_size=3).map(
    lambda kvs: "".join(f"{k[0]}:\n  {k[1]}: {v}\n" for k, v in kvs))


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(raw_web_files)
@example("rate_limit:\n  interval: " + "9" * 400 + "s\n  burst: 1\n")  # infinite: "off"
@example("basic_auth_users:\n  prometheus: 2020-13-45\n")
def test_raw_web_config_text_loads_usably_or_names_the_problem(text: str) -> None:
    try:
        web = parse_web_config(text, "web.yml", Path("/nonexistent-dir"))
    except WebConfigError as e:
        assert str(e).startswith("invalid configuration in web.yml:\n") and e.problems
        for problem in e.problems:
            assert problem.strip() and "\n" not in problem and len(problem) < 600, problem
        return
    rate = web.rate
    if rate is not None:  # a limit that is on limits: as the web server builds its bucket
        bucket = TokenBucket(60.0 / rate.interval, burst=float(max(rate.burst, 1)))
        assert not bucket.unlimited, rate


def test_a_bcrypt_cost_that_would_stall_every_check_is_refused() -> None:
    # Cost 31 is 2**31 rounds: the decoy hash made at start-up alone would take hours.
    slow = "$2b$31$" + "a" * 53
    with pytest.raises(WebConfigError) as exc:
        parse_web_config(f"basic_auth_users:\n  prometheus: '{slow}'\n", "web.yml")
    assert "basic_auth_users.prometheus: bcrypt cost 31 is above 16" in str(exc.value)
    assert slow not in str(exc.value)
    ok = "$2b$10$" + "a" * 53
    assert parse_web_config(f"basic_auth_users:\n  prometheus: '{ok}'\n", "web.yml")


@pytest.mark.parametrize(("text", "line", "says"), [
    ("basic_auth_users:\n  prometheus: 2020-13-45\n", 2,
     "'2020-13-45' is not a valid date (month must be in 1..12)"),
    ("rate_limit:\n  burst: " + "1" * 5000 + "\n", 2, "(5000 digits: at most 4300)"),
    ("rate_limit: {interval: !!float x}\n", 1, "'x' is not a valid number"),
])
def test_a_value_yaml_cannot_build_names_the_file_and_line(text: str, line: int,
                                                           says: str) -> None:
    with pytest.raises(WebConfigError) as exc:
        parse_web_config(text, "web.yml")
    assert str(exc.value).startswith(f"invalid configuration in web.yml:\n  - line {line}, "), \
        str(exc.value)
    assert says in str(exc.value), str(exc.value)


@pytest.mark.parametrize("interval", [
    "9" * 400 + "s",  # infinite: read as a rate of 0, which would turn the limit off
    "99999999999999999999999y", "25h",
    "0.0000000000000000001ns", "999us",  # too short to limit anything
])
def test_a_rate_limit_interval_that_would_not_limit_is_refused(interval: str) -> None:
    with pytest.raises(WebConfigError) as exc:
        parse_web_config(f"rate_limit: {{interval: '{interval}', burst: 1}}\n", "web.yml")
    assert "  - rate_limit.interval: must be 0 (off) or from 1ms to 24h, got " \
        in str(exc.value), str(exc.value)
    assert len(str(exc.value)) < 400, str(exc.value)


@pytest.mark.parametrize(("interval", "seconds"), [("1ms", 0.001), ("24h", 86_400.0),
                                                   ("0", 0.0)])
def test_rate_limit_interval_bounds_are_inclusive(interval: str, seconds: float) -> None:
    rate = parse_web_config(f"rate_limit: {{interval: '{interval}', burst: 1}}\n").rate_limit
    assert rate is not None and rate.interval == pytest.approx(seconds)


def test_a_burst_too_large_for_a_number_is_refused() -> None:
    with pytest.raises(WebConfigError) as exc:
        parse_web_config("rate_limit: {interval: 1s, burst: " + "9" * 400 + "}\n", "web.yml")
    assert "rate_limit.burst: Input should be less than or equal to 100000" in str(exc.value)
