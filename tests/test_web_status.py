"""/status and /config, the pages a person reads, over real loopback HTTP.

In-process: the real server, route table and a real Store fed PollResults (the clock of the
pages is fixed, so ages are exact); what a reader sees is read back from the HTML table.
End-to-end: the real exporter and simulator as processes, for what only a whole process has:
environment overrides, the key it read, the web config's authentication.
"""

from __future__ import annotations

import base64
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import bcrypt
import pytest
import yaml

from exporter import __version__
from exporter.mixpeek.models import parse_namespace
from exporter.mixpeek.result import Result, failure
from exporter.settings.schema import Config
from exporter.state.store import Store
from exporter.web.page import PageSource, Running
from exporter.web.server import ROUTES, Endpoints, MetricsServer, serve
from exporter.web.status import ROWS_DEFAULT, ROWS_MAX
from tests.harness import (
    ROOT,
    ExporterProcess,
    SimulatorProcess,
    exporter_config,
    http,
    wait_until,
)
from tests.status_dom import StatusPage

NOW = 1_800_000_000.0
HOSTILE = "<script>alert(1)</script>"


def ok(store: Store, ident: str, name: str, at: float) -> None:
    values = parse_namespace({"namespace_id": ident, "namespace_name": name,
                              "document_count": 1})
    store.apply(Result(ident, values, None, "", 200, 1, 0.01), now=at)


def fail(store: Store, ident: str, reason: str = "server_error", message: str = "boom",
         at: float = NOW) -> None:
    store.apply(failure(ident, reason, message, 500, 1, 0.01), now=at)


Serve = Callable[..., tuple[Store, str]]


@pytest.fixture
def pages() -> Iterator[Serve]:
    """``pages(identifiers)`` -> (a Store over them, the base URL of a server showing it)."""
    servers: list[MetricsServer] = []

    def make(identifiers: list[str], stale_after: float = 300.0) -> tuple[Store, str]:
        store = Store(identifiers, stale_after)
        cfg = Config(namespaces=identifiers[:1] or ["ns_x"])
        source = PageSource(store.snapshot, lambda: Running(cfg, "env MIXPEEK_API_KEY", None),
                            clock=lambda: NOW)
        endpoints = Endpoints(cache=None, ready=lambda: (True, "ready"),  # type: ignore[arg-type]
                              pages=source)
        server = MetricsServer(("127.0.0.1", 0), socket.AF_INET, endpoints)
        serve(server)
        servers.append(server)
        return store, f"http://127.0.0.1:{server.port}"

    yield make
    for s in servers:
        s.shutdown()
        s.server_close()


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    status, head, body = http("GET", url, headers=headers)
    return status, head, body.decode()


def table(url: str) -> StatusPage:
    status, _, body = get(url)
    assert status == 200, body
    return StatusPage(body)


# -- what the page shows -----------------------------------------------------------------------

def test_api_text_renders_as_text_never_markup(pages: Serve) -> None:
    store, url = pages(["ns_a", "ns_b"])
    ok(store, "ns_a", HOSTILE, NOW - 5)
    fail(store, "ns_b", message='<img src=x onerror="alert(2)"> & "quotes"')
    status, head, body = get(url + "/status")
    assert status == 200
    assert HOSTILE not in body and "<img" not in body
    page = StatusPage(body)
    assert page.elements.get("script", 0) == 0 and page.elements.get("img", 0) == 0
    by_id = {r.cells["id"]: r for r in page.rows}
    assert by_id["ns_a"].cells["name"] == HOSTILE
    assert by_id["ns_b"].cells["message"] == '<img src=x onerror="alert(2)"> & "quotes"'
    # No script is needed or allowed: only the page's own stylesheet, by its hash.
    csp = head["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "unsafe-inline" not in csp
    assert "script-src" not in csp  # falls back to default-src 'none'
    assert head["Content-Type"] == "text/html; charset=utf-8"


def test_control_characters_and_long_text_are_bounded(pages: Serve) -> None:
    store, url = pages(["ns_a"])
    fail(store, "ns_a", message="line\x1b[31m" + "x" * 5000)
    (row,) = table(url + "/status").rows
    assert "\x1b" not in row.cells["message"] and "\ufffd" in row.cells["message"]
    assert len(row.cells["message"]) <= 500 and row.cells["message"].endswith("\u2026")


def test_failing_first_then_oldest_data(pages: Serve) -> None:
    store, url = pages(["ns_fresh", "ns_old", "ns_broke_recently", "ns_never_ok", "ns_pending"])
    ok(store, "ns_fresh", "fresh", NOW - 10)
    ok(store, "ns_old", "old", NOW - 500)
    ok(store, "ns_broke_recently", "broke", NOW - 5)
    fail(store, "ns_broke_recently", "unauthorized", "key revoked")
    fail(store, "ns_never_ok", "not_found", "no such namespace")
    page = table(url + "/status")
    assert page.column("id") == ["ns_never_ok", "ns_broke_recently", "ns_pending", "ns_old",
                                 "ns_fresh"]
    assert [r.state for r in page.rows] == ["failing", "failing", "pending", "up", "up"]
    broke = page.rows[1].cells
    assert (broke["up"], broke["reason"], broke["message"]) == ("no", "unauthorized",
                                                                "key revoked")
    assert broke["age"] == "5s ago" and broke["metadata"] == "5s ago"
    assert page.rows[0].cells["age"] == "never"
    # Older than stale_after (300 s): the reader is told its values are no longer published.
    assert page.rows[3].cells["age"] == "8m 20s ago (stale)"
    assert page.rows[4].cells["age"] == "10s ago"


def test_summary_says_version_interval_and_budget(pages: Serve) -> None:
    store, url = pages(["ns_a"])
    summary = table(url + "/status").texts["summary"]
    assert f"Version{__version__} " in summary
    assert "Poll interval60s" in summary
    assert "Request budget60 requests a minute" in summary
    assert "Configuration loaded" in summary
    # The budget cannot poll everything within the interval: the reader is told by how much.
    store.set_exporter(poll_interval=150.0)
    summary = table(url + "/status").texts["summary"]
    assert "Poll interval60s, stretched to 150s (2m 30s) by the request budget" in summary


def test_thousands_of_namespaces_stay_bounded(pages: Serve) -> None:
    ids = [f"ns_{i:05d}" for i in range(5000)]
    store, url = pages(ids)
    for i, ident in enumerate(ids[:4000]):
        ok(store, ident, f"name_{i:05d}", NOW - i)
    for ident in ids[4000:4010]:
        fail(store, ident)
    _, _, body = get(url + "/status")
    page = StatusPage(body)
    assert len(page.rows) == ROWS_DEFAULT
    assert page.texts["count-failing"] == "failing: 10"
    assert page.texts["count-pending"] == "pending: 990"
    assert page.texts["count-up"] == "up: 4000"
    assert f"Showing {ROWS_DEFAULT} of 5000 matching" in page.texts["shown"]
    assert [r.state for r in page.rows[:11]] == ["failing"] * 10 + ["pending"]
    assert len(body) < 200_000  # 300 rows, not 5000
    assert len(table(url + f"/status?limit={ROWS_MAX}").rows) == ROWS_MAX


def test_filter_by_substring_and_state(pages: Serve) -> None:
    store, url = pages(["ns_1", "ns_2", "ns_3", "ns_4"])
    ok(store, "ns_1", "Catalog-EU", NOW - 1)
    ok(store, "ns_2", "media", NOW - 1)
    ok(store, "ns_3", "catalog-us", NOW - 1)
    fail(store, "ns_4", message="down")
    assert table(url + "/status?q=CATALOG").column("name") == ["Catalog-EU", "catalog-us"]
    assert table(url + "/status?q=ns_2").column("name") == ["media"]
    assert table(url + "/status?state=failing").column("id") == ["ns_4"]
    assert table(url + "/status?state=up&q=catalog&limit=1").column("id") == ["ns_1"]
    page = table(url + "/status?q=nothing+like+it")
    assert page.rows == [] and "Showing 0 of 0 matching" in page.texts["shown"]
    # Counts are over every namespace, whatever the filter.
    assert page.texts["count-up"] == "up: 3"


@pytest.mark.parametrize(("query", "says"), [
    ("limit=abc", "limit: must be a whole number from 1 to 1000"),
    ("limit=0", "limit: must be a whole number"),
    (f"limit={ROWS_MAX + 1}", "limit: must be a whole number"),
    ("limit=99999999999999999999", "limit: must be a whole number"),
    ("limit=%EF%BC%95", "limit: must be a whole number"),  # a full-width digit
    ("state=broken", "state: must be one of all, failing, pending, up"),
    ("sort=name", "unknown query parameter 'sort' (accepted: q, state, limit)"),
    ("q=a&q=b", "query parameter 'q' is given more than once"),
    ("q=%FF", "the query string is not UTF-8"),
    ("q=%00", "q: control characters are not accepted"),
    ("q=" + "a" * 129, "q: at most 128 characters"),
    ("q=" + "a" * 2000, "the query string is longer than 1024 characters"),
    ("&".join(f"x{i}=1" for i in range(9)), "at most 8 query parameters"),
    ("%3Cscript%3E=1", "unknown query parameter '<script>'"),
])
def test_bad_query_is_400_naming_the_parameter(pages: Serve, query: str, says: str) -> None:
    _, url = pages(["ns_a"])
    status, head, body = get(url + "/status?" + query)
    assert status == 400
    assert head["Content-Type"].startswith("text/plain")  # the message is never markup
    assert says in body and "Traceback" not in body


def test_config_page_takes_no_query(pages: Serve) -> None:
    _, url = pages(["ns_a"])
    status, _, body = get(url + "/config?x=1")
    assert status == 400 and "unknown query parameter 'x' (accepted: none)" in body


def test_head_and_methods(pages: Serve) -> None:
    _, url = pages(["ns_a"])
    status, head, body = http("HEAD", url + "/status")
    assert status == 200 and body == b"" and int(head["Content-Length"]) > 0
    assert http("POST", url + "/status")[0] == 405


def test_landing_page_links_the_pages_and_explains_the_demo_gap(pages: Serve) -> None:
    _, url = pages(["ns_a"])
    status, head, body = get(url + "/")
    assert status == 200 and "Content-Security-Policy" in head
    assert 'href="status"' in body and 'href="config"' in body
    assert "demo_archive" in body and "null" in body


# -- the real exporter -------------------------------------------------------------------------

def fragments(key: str, n: int = 8) -> list[str]:
    return [key[i:i + n] for i in range(len(key) - n + 1)]


def test_pages_of_a_running_exporter(sim: SimulatorProcess, api_key: str) -> None:
    """Environment overrides show in /config, the key's source does, the key never does: not
    even when the API quotes it back in an error message or a namespace's name."""
    sim.patch("ns_demo0002", {"_fail": {"status": 401,
                                        "message": f"API key {api_key} is not valid"}})
    sim.patch("ns_demo0001", {"namespace_name": f"echo-{api_key[3:]}-echo"})
    cfg = exporter_config(sim.url, ["ns_demo0001", "ns_demo0002"], interval=30)
    env = {"MIXPEEK_EXPORTER_POLL__INTERVAL_SECONDS": "2"}
    with ExporterProcess(cfg, api_key=api_key, env=env) as exp:
        page = wait_until(lambda: (p := StatusPage(get(exp.url + "/status")[2])).rows
                          and p.rows[0].state == "failing" and p, what="the failing row")
        failing = page.rows[0].cells
        assert (failing["id"], failing["reason"]) == ("ns_demo0002", "unauthorized")
        assert "Poll interval2s" in page.texts["summary"]
        wait_until(lambda: "echo-" in get(exp.url + "/status")[2], what="the echoed name")
        status, _, body = get(exp.url + "/config")
        assert status == 200
        config = StatusPage(body).texts["config"]
        effective = yaml.safe_load(config)
        assert effective["poll"]["interval_seconds"] == 2
        assert effective["namespaces"] == ["ns_demo0001", "ns_demo0002"]
        assert "API key: env MIXPEEK_API_KEY (where it is read from" in config
        for path in ("/status", "/config", "/"):
            text = get(exp.url + path)[2]
            leaked = [f for f in fragments(api_key) if f in text]
            assert not leaked, (path, leaked)


def test_pages_need_the_same_auth_as_metrics(sim: SimulatorProcess, api_key: str,
                                             tmp_path: Path) -> None:
    hashed = bcrypt.hashpw(b"s3cret-pw", bcrypt.gensalt(rounds=4)).decode()
    web = tmp_path / "web.yml"
    web.write_text(yaml.safe_dump({"basic_auth_users": {"prometheus": hashed}}))
    cfg = exporter_config(sim.url, ["ns_demo0001"])
    good = {"Authorization": "Basic " + base64.b64encode(b"prometheus:s3cret-pw").decode()}
    with ExporterProcess(cfg, api_key=api_key,
                         extra_args=["--web.config.file", str(web)]) as exp:
        for path in ("/status", "/config", "/metrics", "/"):
            assert get(exp.url + path)[0] == 401, path
        assert get(exp.url + "/healthz")[0] == 200
        status, _, body = get(exp.url + "/config", good)
        assert status == 200
        assert f"Web config (--web.config.file): {web}" in StatusPage(body).texts["config"]
        assert hashed not in body and hashed[7:29] not in body and "s3cret-pw" not in body
        assert get(exp.url + "/status", good)[0] == 200


def test_readme_lists_every_route() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### HTTP endpoints", 1)[1].split("\n## ", 1)[0]
    for path, route in ROUTES.items():
        names = [f"`{path}`"] + [f"`{m} {path}`" for m in route.methods]
        assert any(f"| {n} |" in section for n in names), path
