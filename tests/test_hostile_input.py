"""Hostile input from every side that is not the API: config files, namespace identifiers,
and HTTP clients of the exporter's own server.

- Config: property tests (hypothesis) throw random YAML structures, random text and random
  environment overrides at the loader. It either returns a Config or raises ConfigError with
  readable problems; never another exception, never unbounded work.
- Identifiers: anything the loader accepts is requested as exactly one percent-encoded path
  segment (checked on the wire with requests-mock); '/', '?', '#', '%', '..' and control
  characters are refused by --config.check with a message naming the character.
- HTTP: garbage request lines, huge headers, bodies smuggling a second request, trickled
  request heads (slowloris) and connection floods must not crash the server, never make it
  read a body as a request, and never keep scrapes or liveness probes from being answered.
"""

from __future__ import annotations

import math
import re
import select
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import requests_mock
import yaml
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from exporter.mixpeek.client import MixpeekClient, UnsafeIdentifier, namespace_path
from exporter.polling.budget import effective_interval
from exporter.ratelimit import TokenBucket
from exporter.settings.identifiers import identifier_labels, identifier_problem
from exporter.settings.load import ConfigError, load_config, parse_config
from exporter.settings.schema import MixpeekConfig
from exporter.settings.secrets import Secret, clean_key
from tests.harness import (
    ROOT,
    ExporterProcess,
    SimulatorProcess,
    exporter_config,
    http,
    parse_metrics,
    wait_until,
)

# Bounded and reproducible: the same examples on every run, a few seconds in all.
PROPERTY = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# -- config files ---------------------------------------------------------------------------------

KEYS = ["mixpeek", "poll", "namespaces", "discovery", "base_url", "timeout_seconds",
        "api_key_env", "api_key_file", "verify_tls", "ca_file", "max_concurrency",
        "max_retries", "interval_seconds", "stale_after_seconds", "enabled", "include",
        "allow_insecure_http", "max_requests_per_minute", "max_response_bytes"]
scalars = (st.none() | st.booleans() | st.integers() | st.floats()
           | st.text(max_size=30) | st.sampled_from(["https://api.mixpeek.com", "http://10.0.0.1",
                                                     "ns_1", "../etc", "-1", "1e999", "~", ""]))
keys = st.sampled_from(KEYS) | st.text(max_size=12)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(keys, inner, max_size=4), max_leaves=25)
# Mostly the right shape with random leaves, so validation gets deep, not just "not a dict".
configs = st.fixed_dictionaries({}, optional={
    "mixpeek": st.dictionaries(st.sampled_from(KEYS), values, max_size=5) | values,
    "poll": st.dictionaries(st.sampled_from(KEYS), values, max_size=3) | values,
    "discovery": st.dictionaries(st.sampled_from(KEYS), values, max_size=3) | values,
    "namespaces": st.lists(st.text(max_size=20) | scalars, max_size=4) | values,
}) | st.dictionaries(keys, values, max_size=5) | values
# YAML written as text, not dumped: values that scan as a type they then are not (a date with
# month 13, an integer longer than Python converts from text), tags, numbers that are not
# finite or so small the arithmetic built on them gives up, and patterns `re` cannot compile.
raw_values = (
    st.from_regex(r"\d{4}-\d{1,2}-\d{1,2}([Tt ]\d{1,2}:\d\d:\d\d(\.\d{1,9})?)?",
                  fullmatch=True)
    | st.integers(4250, 4350).map(lambda n: "1" * n)
    | st.floats(min_value=0, max_value=1e-15, exclude_min=True).map(repr)
    | st.floats(min_value=0, max_value=2, exclude_min=True).map(repr)
    | st.sampled_from([
        ".nan", ".inf", "-.inf", "true", "1e-17", "5e-324", "1e-300", "1e999", "0", "0x1F",
        "!!float abc", "!!int 12x", "!!timestamp soon", "!!binary 'AAA$$$'", "!!str 5",
        "!!set {a: null}", "!!omap [a: 1]", "!!python/name:os.system", "[*x]", "&a [*a]"]))
patterns = st.text(max_size=12) | st.sampled_from([
    "a{4294967295}", "x{1,99999999999999999999}", "(" * 2000 + ")" * 2000, "(?P<a>x)(?P=b)",
    "[z-a]", "\\N{nope}", "(?i" + ")"])
VALUE_KEYS = [("mixpeek", k) for k in ("timeout_seconds", "retry_backoff_seconds",
                                       "retry_after_max_seconds", "max_requests_per_minute",
                                       "max_concurrency", "max_retries", "max_response_bytes",
                                       "api_key_file", "base_url")] + \
    [("poll", k) for k in ("interval_seconds", "stale_after_seconds",
                           "metadata_interval_seconds")] + \
    [("discovery", k) for k in ("refresh_interval_seconds", "page_size", "max_namespaces")]


def _quoted(pattern: str) -> str:
    return "'" + pattern.replace("'", "''") + "'"


raw_lines = (st.tuples(st.sampled_from(VALUE_KEYS), raw_values)
             .map(lambda kv: f"{kv[0][0]}:\n  {kv[0][1]}: {kv[1]}\n")
             | st.tuples(st.sampled_from(["include", "exclude"]), st.lists(patterns, max_size=3))
             .map(lambda kv: f"discovery:\n  {kv[0]}: [{', '.join(map(_quoted, kv[1]))}]\n"))
raw_configs = st.tuples(st.sampled_from(["namespaces: [a]\n", ""]),
                        st.lists(raw_lines, min_size=1, max_size=3)).map(
    lambda t: t[0] + "".join(t[1]))
environs = st.dictionaries(
    st.from_regex(r"MIXPEEK_EXPORTER_[A-Za-z_]{0,24}", fullmatch=True)
    | st.sampled_from(VALUE_KEYS).map(lambda k: f"MIXPEEK_EXPORTER_{k[0]}__{k[1]}".upper()),
    st.text(max_size=20) | raw_values
    | st.sampled_from(["[a, b]", "{x: 1}", "true", "30", "- x"]),
    max_size=3)


def _check_outcome(text: str, environ: dict[str, str]) -> None:
    try:
        cfg = parse_config(text, "hostile.yaml", environ=environ)
    except ConfigError as e:
        assert e.problems, "a ConfigError without problems"
        for p in e.problems:
            assert isinstance(p, str) and p.strip()
            assert len(p) < 1000, p  # bounded, readable
            assert "<class" not in p and "instance of" not in p, p  # no Python internals
        assert str(e).startswith("invalid configuration in hostile.yaml:")
    else:
        assert cfg.namespaces or cfg.discovery.enabled
        # What the loader accepts, start-up can use: the request budget paces by it.
        TokenBucket(cfg.mixpeek.max_requests_per_minute, strict=True)
        assert math.isfinite(effective_interval(cfg, cfg.discovery.max_namespaces))


@PROPERTY
@given(configs, environs)
def test_random_config_structures_never_crash_the_loader(obj: Any, environ: dict[str, str]
                                                         ) -> None:
    _check_outcome(yaml.safe_dump(obj, allow_unicode=True), environ)


@PROPERTY
@given(st.text(max_size=300))
def test_random_text_never_crashes_the_loader(text: str) -> None:
    _check_outcome(text, {})


@PROPERTY
@given(raw_configs, environs)
@example("mixpeek:\n  max_requests_per_minute: 1e-17\n", {})  # ZeroDivisionError at start
@example("", {"MIXPEEK_EXPORTER_MIXPEEK__MAX_REQUESTS_PER_MINUTE": "5e-324"})
@example("mixpeek:\n  timeout_seconds: 2020-13-45\n", {})
@example("", {"MIXPEEK_EXPORTER_POLL__INTERVAL_SECONDS": "9" * 5000})
@example("discovery:\n  include: ['a{4294967295}']\n", {})
def test_values_yaml_cannot_build_never_crash_the_loader(text: str, environ: dict[str, str]
                                                        ) -> None:
    _check_outcome(text, environ)


VALID = "mixpeek:\n  timeout_seconds: 5\npoll:\n  interval_seconds: 30\nnamespaces: [a, ns_1]\n"


@PROPERTY
@given(st.integers(0, len(VALID)), st.integers(0, 8), st.text(max_size=8))
def test_mangled_valid_config_never_crashes_the_loader(pos: int, cut: int, insert: str) -> None:
    _check_outcome(VALID[:pos] + insert + VALID[pos + cut:], {})


@pytest.mark.parametrize("text", [
    "[" * 1200 + "]" * 1200,  # deeper than PyYAML's recursion allows
    "a: " + "{b: " * 3000 + "1" + "}" * 3000,
    "namespaces: &a [*a]",  # self-referencing alias
    # Alias bomb: 9^8 leaves if anything walked (or printed) it fully.
    "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
        f"{n}: &{n} [{', '.join(['*' + p] * 9)}]\n"
        for p, n in zip("abcdefg", "bcdefgh", strict=True)) + "namespaces: [*h]\n",
    "!!python/object/apply:os.system [echo pwned]",
    "namespaces: [a]\n\x00",
    "\ufeffnamespaces: [a]\n",
])
def test_pathological_yaml_is_a_config_error_without_unbounded_work(text: str) -> None:
    # A thread, so that runaway work (walking an alias bomb) fails the test instead of
    # hanging it; the bound is generous: this is not a speed check.
    errors: list[BaseException] = []

    def check() -> None:
        try:
            _check_outcome(text, {})
        except BaseException as e:
            errors.append(e)
    t = threading.Thread(target=check, daemon=True)
    t.start()
    t.join(timeout=60)
    assert not t.is_alive(), "the loader did not finish"
    if errors:
        raise errors[0]


def test_binary_config_file_is_a_config_error(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_bytes(b"\xff\xfe\x00garbage\x80\x81")
    with pytest.raises(ConfigError, match="cannot be read"):
        load_config(p, environ={})
    d = tmp_path / "dir.yaml"
    d.mkdir()
    with pytest.raises(ConfigError, match="cannot be read"):
        load_config(d, environ={})


# -- namespace identifiers ------------------------------------------------------------------------

identifiers = st.text(
    alphabet=st.characters(codec="utf-8") | st.sampled_from(list("/?#%.. \t\n\\&=;:@+~\x00\x7f")),
    min_size=0, max_size=24)
BASE = "https://api.mixpeek.test"
PREFIX = "/v1/namespaces/"
DOC = {"namespace_name": "x", "namespace_id": "ns_x"}


def _client() -> MixpeekClient:
    cfg = MixpeekConfig(base_url=BASE, max_requests_per_minute=0, max_retries=0)
    return MixpeekClient(cfg, Secret("sk_test_identifiers_000"), TokenBucket(0))


def _assert_one_segment(ident: str, url: str) -> None:
    parts = urlsplit(url)
    assert parts.scheme + "://" + parts.netloc == BASE
    assert parts.path.startswith(PREFIX), url
    segment = parts.path[len(PREFIX):]
    assert "/" not in segment and not parts.query and not parts.fragment, url
    assert unquote(segment) == ident, (ident, url)


@PROPERTY
@given(identifiers)
def test_identifiers_are_refused_or_sent_as_one_encoded_segment(ident: str) -> None:
    text = yaml.safe_dump({"namespaces": [ident]}, allow_unicode=True)
    assume(yaml.safe_load(text) == {"namespaces": [ident]})
    try:
        cfg = parse_config(text, environ={})
    except ConfigError as e:
        assert any(p.startswith("namespaces") for p in e.problems), e.problems
        return
    accepted = cfg.namespaces[0]  # surrounding whitespace is stripped
    _assert_one_segment(accepted, BASE + namespace_path(accepted))
    ns_id, ns_name = identifier_labels(accepted)
    # The answer is for the namespace asked (by id or by name), as the real API's would be.
    answer = {"namespace_id": ns_id or "ns_x", "namespace_name": ns_name or "x"}
    with requests_mock.Mocker() as m:
        m.get(requests_mock.ANY, json=answer)
        result = _client().get_namespace(accepted)
        assert result.ok, result
        assert len(m.request_history) == 1
        _assert_one_segment(accepted, m.request_history[0].url)


@pytest.mark.parametrize("ident", ["", ".", "..", "...", "...."])
def test_client_refuses_dot_segments_without_a_request(ident: str) -> None:
    with pytest.raises(UnsafeIdentifier):
        namespace_path(ident)
    with requests_mock.Mocker() as m:
        result = _client().get_namespace(ident)
        assert result.reason == "client_error" and not m.request_history


@PROPERTY
@given(identifiers)
def test_client_and_config_apply_the_same_identifier_rule(ident: str) -> None:
    """A discovered identifier the config would refuse is not requested either."""
    problem = identifier_problem(ident)
    if problem is None:
        _assert_one_segment(ident, BASE + namespace_path(ident))
        return
    with pytest.raises(UnsafeIdentifier) as exc:
        namespace_path(ident)
    assert problem in str(exc.value)


@pytest.mark.parametrize("ident", ["a/b", "x?y=1", "x#frag", "a%2Fb", "nul\x00", "x" * 200])
def test_client_refuses_what_the_config_refuses_without_a_request(ident: str) -> None:
    with requests_mock.Mocker() as m:
        m.get(requests_mock.ANY, json=DOC)
        result = _client().get_namespace(ident)
        assert result.reason == "client_error" and not m.request_history


service_links = st.dictionaries(
    st.from_regex(r"MIXPEEK_EXPORTER_(PORT|SERVICE_HOST|SERVICE_PORT)(_[A-Z0-9]{1,8}){0,3}",
                  fullmatch=True),
    st.text(max_size=30) | st.sampled_from(["tcp://10.0.0.7:10117", "10117", "tcp", "- x"]),
    max_size=4)


@PROPERTY
@given(service_links)
def test_variables_that_are_not_override_forms_are_ignored(environ: dict[str, str]) -> None:
    assert parse_config(VALID, environ=environ) == parse_config(VALID, environ={})


@PROPERTY
@given(st.text(max_size=40))
def test_any_key_text_is_cleaned_or_refused_without_showing_it(raw: str) -> None:
    try:
        key = clean_key(raw, "mixpeek.api_key_env", "env MIXPEEK_API_KEY")
    except ConfigError as e:
        assert len(e.problems) == 1 and "at position" in e.problems[0]
        value = raw.strip(" \t\r\n\v\f").removeprefix("\ufeff")
        fragments = {value[i:i + 8] for i in range(len(value) - 7)}
        assert not any(f in e.problems[0] for f in fragments if f.isalnum()), e.problems
    else:
        assert all("!" <= c <= "~" for c in key)
        assert key in raw


BAD_IDENTIFIERS = {"a/b": "'/'", "../../admin": "'/'", "x?y=1": "'?'", "x#frag": "'#'",
                   "a%2Fb": "'%'", "..": "is not a namespace identifier",
                   "...": "is not a namespace identifier", "a\\b": "'\\\\'",
                   "tab\there": "'\\t'", "nul\x00": "'\\x00'", "del\x7f": "'\\x7f'",
                   "x" * 200: "longer than 128"}
GOOD_IDENTIFIERS = ["with space", "naïve_ünïcode_名前", "emoji_🚀", "a+b&c=d;e:f@g~h", "ns_ok"]


def _config_check(tmp_path: Path, namespaces: list[str]) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"namespaces": namespaces}, allow_unicode=True),
                    encoding="utf-8")
    return subprocess.run([sys.executable, "-m", "exporter", "--config.check", "--config.file",
                           str(path)], capture_output=True, text=True, cwd=ROOT, timeout=60,
                          env={"PATH": "/usr/bin:/bin",
                               "MIXPEEK_API_KEY": "sk_live_config_check_0000"})


def test_config_check_names_each_bad_identifier(tmp_path: Path) -> None:
    res = _config_check(tmp_path, list(BAD_IDENTIFIERS))
    assert res.returncode == 1, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    for i, (ident, says) in enumerate(BAD_IDENTIFIERS.items()):
        line = next((ln for ln in res.stderr.splitlines() if f"[{i}]" in ln), "")
        assert says in line, (ident, res.stderr)
    good = _config_check(tmp_path, GOOD_IDENTIFIERS)
    assert good.returncode == 0, good.stderr
    assert "5 namespaces" in good.stdout


# -- hostile HTTP clients of the exporter -------------------------------------------------


@pytest.fixture(scope="module")
def exporter() -> Iterator[ExporterProcess]:
    key = "sk_live_hostile_http_0000"
    with SimulatorProcess(api_key=key) as sim, \
            ExporterProcess(exporter_config(sim.url, ["demo_catalog", "demo_media"]),
                            api_key=key, extra_args=["--web.enable-lifecycle"]) as e:
        e.wait_ready()
        yield e
        log = e.log_text()
        assert "level=error" not in log, log
        assert e.proc.poll() is None


def _raw(e: ExporterProcess, data: bytes, timeout: float = 5.0) -> bytes:
    """Send bytes, return whatever comes back until the server closes or goes quiet."""
    with socket.create_connection(("127.0.0.1", e.port), timeout=timeout) as s:
        try:
            s.sendall(data)
            # Half-close: the server sees the end of input instead of waiting out its idle
            # timeout for the rest of a request line that will never come.
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may hang up before we finish sending: that is an answer too
        out = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
                if b"\r\n\r\n" in out and not data.startswith(b"GET /metrics"):
                    s.settimeout(0.3)  # got an answer; stop once the rest has arrived
        except TimeoutError:
            pass
        except ConnectionResetError:
            pass
    return out


def _status(resp: bytes) -> int | None:
    """The status of an HTTP/1.1 answer; None for anything else (nothing, or an answer in
    HTTP/0.9 style, without a status line)."""
    m = re.match(rb"HTTP/1\.1 (\d{3}) ", resp)
    return int(m.group(1)) if m else None


def _healthy(e: ExporterProcess) -> None:
    """Probe and scrape answer (each within a socket timeout: waiting, not measuring)."""
    assert e.proc.poll() is None, e.log_text()
    assert http("GET", e.url + "/healthz", timeout=5)[0] == 200
    status, _, body = http("GET", e.url + "/metrics", timeout=5)
    assert status == 200
    assert "mixpeek_namespace_up" in parse_metrics(body.decode())


def _proc_status(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(field)


@pytest.mark.e2e
@pytest.mark.parametrize(("name", "data", "expected"), [
    ("garbage request line", b"GARBAGE\r\n\r\n", {400}),
    ("binary junk", b"\x00\xff\xfe\x01\x02\r\n\r\n", {400}),
    ("TLS hello to plain HTTP", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,
     {400}),
    ("unknown HTTP version", b"GET / HTTP/9.9\r\n\r\n", {505}),
    ("HTTP/2 request line", b"GET /metrics HTTP/2.0\r\nHost: x\r\n\r\n", {505}),
    ("HTTP/2 connection preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", {505}),
    ("version that is not a number", b"GET /metrics HTTP/x.y\r\nHost: x\r\n\r\n", {400}),
    ("HTTP/0.9 request line", b"GET /metrics\r\n\r\n", {400}),
    ("request line too long", b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", {414}),
    ("header line too long", b"GET /metrics HTTP/1.1\r\nX-A: " + b"a" * 70_000 + b"\r\n\r\n",
     {431}),
    ("too many headers", b"GET /metrics HTTP/1.1\r\n"
     + b"".join(b"X-%d: y\r\n" % i for i in range(150)) + b"\r\n", {431}),
    ("non-ASCII path", b"GET /\xff\xfe/../metrics HTTP/1.1\r\nHost: x\r\n\r\n", {404}),
    ("absolute-form URI to another host",
     b"GET http://evil.example/metrics HTTP/1.1\r\nHost: evil.example\r\n\r\n", {404}),
    ("negative Content-Length", b"POST /-/reload HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
     {400}),
    ("absurd Content-Length",
     b"POST /-/reload HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n", {413}),
    ("request body on GET",
     b"GET /healthz HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", {200}),
    ("chunked body on GET",
     b"GET /healthz HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
     {411}),
    ("header trickled to the end of input", b"GET /healthz HTTP/1.1\r\nX-Slow: a", {400, 200}),
    ("header with NUL", b"GET /healthz HTTP/1.1\r\nX-A: a\x00b\r\n\r\n", {400}),
    ("header name with a space", b"GET /healthz HTTP/1.1\r\nX A: b\r\n\r\n", {400}),
    ("duplicate Host", b"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", {400}),
])
def test_malformed_requests_get_an_error_not_a_crash(exporter: ExporterProcess, name: str,
                                                      data: bytes, expected: set[int | None]
                                                      ) -> None:
    assert _status(_raw(exporter, data)) in expected, name
    _healthy(exporter)


@pytest.mark.e2e
def test_pipelined_and_abandoned_requests(exporter: ExporterProcess) -> None:
    resp = _raw(exporter, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * 50)
    assert resp.count(b"HTTP/1.1 200") == 50
    # Ask for /metrics and hang up at once, many times: the server must shrug it off.
    for _ in range(30):
        with socket.create_connection(("127.0.0.1", exporter.port), timeout=2) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    _healthy(exporter)


@pytest.mark.e2e
def test_huge_total_headers_are_bounded(exporter: ExporterProcess) -> None:
    # 99 headers just under the per-line cap: the most one request can make the server hold.
    big = b"GET /healthz HTTP/1.1\r\n" + b"".join(
        b"X-%d: " % i + b"a" * 65_000 + b"\r\n" for i in range(99)) + b"\r\n"
    assert _status(_raw(exporter, big, timeout=10)) in (200, 431)
    _healthy(exporter)


@pytest.mark.e2e
def test_a_request_body_is_never_read_as_a_request(exporter: ExporterProcess) -> None:
    """A GET carrying a body that is itself a request gets one answer; the body never runs
    (the exporter under test has the lifecycle API on, so a smuggled reload would)."""
    smuggled = b"POST /-/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
    n = len(smuggled)
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (n, smuggled)
    framings = [b"Content-Length: %d\r\n\r\n" % n + smuggled,
                b"Transfer-Encoding: chunked\r\n\r\n" + chunked,
                # Framings a proxy in front may read differently (attack probe p08).
                b"Content-Length : %d\r\n\r\n" % n + smuggled,
                b"Content-Length\t: %d\r\n\r\n" % n + smuggled,
                b"X-A: 1\r\n Content-Length: %d\r\n\r\n" % n + smuggled,
                b"Transfer-Encoding : chunked\r\n\r\n" + chunked,
                b"Transfer-Encoding:\r\n chunked\r\n\r\n" + chunked,
                b"Content-Length\x00: %d\r\n\r\n" % n + smuggled,
                b"Content-Length: %d\r\nContent-Length: %d\r\n\r\n" % (n, n) + smuggled]
    for framed in framings:
        resp = _raw(exporter, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + framed)
        assert resp.count(b"HTTP/1.1 ") == 1, resp
    _healthy(exporter)
    assert "configuration reloaded" not in exporter.log_text()


@pytest.mark.e2e
def test_slowloris_connections_do_not_stall_scrapes(exporter: ExporterProcess) -> None:
    """64 connections trickling a header a byte at a time once held every handler: 0 of 15
    scrapes and no /healthz answered. Now they wait in the accept loop, holding no handler."""
    socks = []
    try:
        for _ in range(64):
            s = socket.create_connection(("127.0.0.1", exporter.port), timeout=5)
            s.sendall(b"GET /metrics HTTP/1.1\r\nX-Slow: ")
            socks.append(s)
        for _ in range(15):
            for s in socks:
                try:
                    s.sendall(b"a")  # one more header byte each
                except OSError:
                    pass  # cut at the head deadline: fine, that is the other bound
            _healthy(exporter)
    finally:
        for s in socks:
            s.close()
    _healthy(exporter)


@pytest.mark.e2e
def test_clients_that_never_read_or_trickle_a_body_do_not_stall_scrapes(
        exporter: ExporterProcess) -> None:
    """Attack probes p06 and p07: 72 clients pipelining requests with the smallest receive
    buffer and never reading, and 72 trickling a body to GET /healthz, once held every
    handler and every probe place: neither probes nor scrapes were answered."""
    socks = []
    try:
        for i in range(72):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)
            s.settimeout(5)
            s.connect(("127.0.0.1", exporter.port))
            first = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" if i < 4 else b""
            s.sendall(first + b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 200)
            socks.append(s)
        for _ in range(72):
            s = socket.create_connection(("127.0.0.1", exporter.port), timeout=5)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 65536\r\n\r\na")
            socks.append(s)
        for _ in range(5):
            _healthy(exporter)
            for s in socks[72:]:
                try:
                    s.sendall(b"a")
                except OSError:
                    pass  # cut at the head deadline: fine, that is the other bound
    finally:
        for s in socks:
            s.close()
    _healthy(exporter)


WAITING_MAX = 256  # connections the accept loop holds while they send a request head


@pytest.mark.e2e
def test_more_connections_than_allowed(exporter: ExporterProcess) -> None:
    """A flood of idle connections costs no thread; past the cap the longest waiting ones are
    closed, so scrapes still get in during the flood."""
    pid = exporter.proc.pid
    threads_before = _proc_status(pid, "Threads")
    extra = 44
    socks = []
    try:
        for _ in range(WAITING_MAX + extra):
            socks.append(socket.create_connection(("127.0.0.1", exporter.port), timeout=5))

        def closed(group: list[socket.socket]) -> int:
            readable, _, _ = select.select(group, [], [], 0.2)
            return len(readable)  # closed by the server: readable at EOF
        wait_until(lambda: closed(socks[:extra]) == extra, 10,
                   what="the longest-waiting connections over the cap closed")
        assert closed(socks[extra:]) == 0  # the newest are all still waiting
        assert _proc_status(pid, "Threads") <= threads_before + 4
        _healthy(exporter)  # answered during the flood
        assert exporter.proc.poll() is None
    finally:
        for s in socks:
            s.close()
    wait_until(lambda: http("GET", exporter.url + "/healthz", timeout=1)[0] == 200, 5,
               what="healthz after the connection flood")
    _healthy(exporter)
    wait_until(lambda: _proc_status(pid, "Threads") <= threads_before + 2, 5,
               what="handler threads to finish")
