"""Hostile input from every side that is not the API: config files, namespace identifiers,
and HTTP clients of the exporter's own server.

- Config: property tests (hypothesis) throw random YAML structures, random text and random
  environment overrides at the loader. It either returns a Config or raises ConfigError with
  readable problems; never another exception, never unbounded work.
- Identifiers: anything the loader accepts is requested as exactly one percent-encoded path
  segment (checked on the wire with requests-mock); '/', '?', '#', '%', '..' and control
  characters are refused by --config.check with a message naming the character.
- HTTP: garbage request lines, huge headers, slowloris-style idle connections and more
  connections than the server allows must not crash it or stall scrapes for long.
"""

from __future__ import annotations

import re
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import requests_mock
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from exporter.mixpeek.client import MixpeekClient, UnsafeIdentifier, namespace_path
from exporter.ratelimit import TokenBucket
from exporter.settings.schema import ConfigError, MixpeekConfig, load_config, parse_config
from exporter.settings.secrets import Secret
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
environs = st.dictionaries(
    st.from_regex(r"MIXPEEK_EXPORTER_[A-Za-z_]{0,24}", fullmatch=True),
    st.text(max_size=20) | st.sampled_from(["[a, b]", "{x: 1}", "true", "30", "- x"]),
    max_size=3)


def _check_outcome(text: str, environ: dict[str, str]) -> None:
    try:
        cfg = parse_config(text, "hostile.yaml", environ=environ)
    except ConfigError as e:
        assert e.problems, "a ConfigError without problems"
        for p in e.problems:
            assert isinstance(p, str) and p.strip()
            assert len(p) < 1000, p  # bounded, readable
        assert str(e).startswith("invalid configuration in hostile.yaml:")
    else:
        assert cfg.namespaces or cfg.discovery.enabled


@PROPERTY
@given(configs, environs)
def test_random_config_structures_never_crash_the_loader(obj: Any, environ: dict[str, str]
                                                         ) -> None:
    _check_outcome(yaml.safe_dump(obj, allow_unicode=True), environ)


@PROPERTY
@given(st.text(max_size=300))
def test_random_text_never_crashes_the_loader(text: str) -> None:
    _check_outcome(text, {})


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
def test_pathological_yaml_is_a_config_error_quickly(text: str) -> None:
    started = time.monotonic()
    _check_outcome(text, {})
    assert time.monotonic() - started < 5


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
    with requests_mock.Mocker() as m:
        m.get(requests_mock.ANY, json=DOC)
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
                          env={"PATH": "/usr/bin:/bin"})


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
                            api_key=key) as e:
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
    line = resp.split(b"\r\n", 1)[0].split()
    if resp.startswith(b"HTTP/") and len(line) >= 2 and line[1].isdigit():
        return int(line[1])
    # A one-word request line counts as HTTP/0.9, whose answers have no status line.
    m = re.search(rb"Error code: (\d{3})", resp)
    return int(m.group(1)) if m else None


def _healthy(e: ExporterProcess) -> None:
    assert e.proc.poll() is None, e.log_text()
    assert http("GET", e.url + "/healthz", timeout=2)[0] == 200
    started = time.monotonic()
    status, _, body = http("GET", e.url + "/metrics", timeout=5)
    assert status == 200 and time.monotonic() - started < 1.0
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
     {400, None}),
    ("unknown HTTP version", b"GET / HTTP/9.9\r\n\r\n", {505}),
    ("request line too long", b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", {414}),
    ("header line too long", b"GET /metrics HTTP/1.1\r\nX-A: " + b"a" * 70_000 + b"\r\n\r\n",
     {431}),
    ("too many headers", b"GET /metrics HTTP/1.1\r\n"
     + b"".join(b"X-%d: y\r\n" % i for i in range(150)) + b"\r\n", {431}),
    ("non-ASCII path", b"GET /\xff\xfe/../metrics HTTP/1.1\r\nHost: x\r\n\r\n", {404}),
    ("absolute-form URI to another host",
     b"GET http://evil.example/metrics HTTP/1.1\r\nHost: evil.example\r\n\r\n", {404}),
    ("negative Content-Length", b"POST /-/reload HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
     {200, 400}),
    ("absurd Content-Length",
     b"POST /-/reload HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n", {200, 400}),
    ("header with NUL", b"GET /healthz HTTP/1.1\r\nX-A: a\x00b\r\n\r\n", {200}),
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
def test_slowloris_connections_do_not_stall_scrapes(exporter: ExporterProcess) -> None:
    socks = []
    try:
        for _ in range(20):
            s = socket.create_connection(("127.0.0.1", exporter.port), timeout=2)
            s.sendall(b"GET /metrics HTTP/1.1\r\nX-Slow: ")
            socks.append(s)
        deadline = time.monotonic() + 2.0
        scrapes = 0
        while time.monotonic() < deadline:
            for s in socks:  # one byte at a time, never finishing the headers
                s.sendall(b"a")
            _healthy(exporter)
            scrapes += 1
        assert scrapes >= 3
    finally:
        for s in socks:
            s.close()
    _healthy(exporter)


@pytest.mark.e2e
def test_more_connections_than_allowed(exporter: ExporterProcess) -> None:
    pid = exporter.proc.pid
    threads_before = _proc_status(pid, "Threads")
    socks = []
    try:
        for _ in range(120):  # the server allows 64 at once
            socks.append(socket.create_connection(("127.0.0.1", exporter.port), timeout=5))
        # Connections over the cap are closed at once instead of queueing a thread each:
        # they turn readable (EOF); the others stay open, waiting for a request.
        def closed() -> int:
            readable, _, _ = select.select(socks, [], [], 0.2)
            return len(readable)
        wait_until(lambda: closed() >= 120 - 64 - 2, 5, what="connections over the cap closed")
        assert closed() <= 120 - 64 + 2
        assert _proc_status(pid, "Threads") <= threads_before + 64 + 4
        assert exporter.proc.poll() is None
    finally:
        for s in socks:
            s.close()
    # Once the flood stops, the slots come back without waiting for idle timeouts.
    wait_until(lambda: http("GET", exporter.url + "/healthz", timeout=1)[0] == 200, 5,
               what="healthz after the connection flood")
    _healthy(exporter)
    wait_until(lambda: _proc_status(pid, "Threads") <= threads_before + 2, 5,
               what="handler threads to finish")
