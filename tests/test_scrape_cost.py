"""A scrape serves prepared bytes: it never renders, and never sees a half-made body.

Behaviour only, no timings: render counts, body completeness under concurrent scrapes while the
store changes, and the gzip body being the plain body plus live process metrics.
"""

from __future__ import annotations

import gzip
import http.client
import threading
import zlib
from collections.abc import Iterator

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse

from exporter.mixpeek.models import NamespaceValues
from exporter.mixpeek.result import PollResult
from exporter.render.cache import ExpositionCache
from exporter.render.fast import FastRenderer
from exporter.render.gzip import Rendered
from exporter.state.snapshot import Snapshot
from exporter.state.store import Store
from exporter.web.server import Endpoints, MetricsServer, serve
from tests.harness import parse_metrics, wait_until
from tests.reference_render import whole

TEXT = "text/plain; version=0.0.4"
OPENMETRICS = "application/openmetrics-text; version=1.0.0"
FAMILIES = {"mixpeek_namespace_documents", "mixpeek_namespace_info", "mixpeek_namespace_up",
            "mixpeek_exporter_config_last_reload_successful", "mixpeek_exporter_build_info"}


def ok(ident: str, documents: int = 1) -> PollResult:
    values = NamespaceValues(ident, "name_" + ident, documents, 1, 2, 3, 4, True, False, 5, 6,
                             1.7e9, 1.75e9, "shared", "", "standard", "")
    # The duration mirrors the count, so a body mixing two renders would show it.
    return PollResult(ident, values, None, "", 200, 1, documents / 1000)


class CountingRenderer:
    def __init__(self) -> None:
        self.inner = FastRenderer(block_size=8)
        self.calls = 0
        # Set by a test to hold the next render until released: an event, not a timing.
        self.hold: threading.Event | None = None
        self.holding = threading.Event()

    def __call__(self, snap: Snapshot, now: float) -> Rendered:
        self.calls += 1
        hold, self.hold = self.hold, None
        if hold is not None:
            self.holding.set()
            hold.wait(30)
        return self.inner(snap, now)


def filled(n: int) -> Store:
    store = Store([f"ns_{i:05d}" for i in range(n)], stale_after=3600)
    for i in range(n):
        store.apply(ok(f"ns_{i:05d}", i))
    return store


class Served:
    def __init__(self, store: Store, renderer: CountingRenderer) -> None:
        self.cache = ExpositionCache(store, renderer, min_gap_seconds=0.02,
                                     coalesce_seconds=0.01)
        self.server = MetricsServer(("127.0.0.1", 0), 2,  # AF_INET
                                    Endpoints(self.cache, lambda: (True, "ready")))
        self.cache.start()
        serve(self.server)

    def get(self, accept: str = TEXT, gz: bool = False,
            conn: http.client.HTTPConnection | None = None) -> bytes:
        c = conn or http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)
        headers = {"Accept": accept}
        if gz:
            headers["Accept-Encoding"] = "gzip"
        c.request("GET", "/metrics", headers=headers)
        resp = c.getresponse()
        body = resp.read()  # raises IncompleteRead if Content-Length and body disagree
        assert resp.status == 200
        assert (resp.getheader("Content-Encoding") == "gzip") == gz
        if conn is None:
            c.close()
        return gzip.decompress(body) if gz else body

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.cache.stop()


@pytest.fixture
def served() -> Iterator[tuple[Served, CountingRenderer, Store]]:
    store = filled(40)
    renderer = CountingRenderer()
    s = Served(store, renderer)
    yield s, renderer, store
    s.close()


def test_scrapes_of_an_unchanged_snapshot_do_not_render(
        served: tuple[Served, CountingRenderer, Store]) -> None:
    s, renderer, _ = served
    before = renderer.calls
    assert before == 1  # the start-up render
    conn = http.client.HTTPConnection("127.0.0.1", s.server.port, timeout=30)
    for i in range(60):
        body = s.get(OPENMETRICS if i % 2 else TEXT, gz=i % 3 == 0, conn=conn)
        assert b"mixpeek_namespace_documents{" in body
    conn.close()
    assert renderer.calls == before
    assert s.cache.renders == before


def test_a_change_renders_once_for_many_scrapes(
        served: tuple[Served, CountingRenderer, Store]) -> None:
    s, renderer, store = served
    store.apply(ok("ns_00003", 123_456))
    wait_until(lambda: b'namespace_id="ns_00003",namespace_name="name_ns_00003"} 123456.0'
               in s.get(), what="the change to be served")
    calls = renderer.calls
    for _ in range(20):
        s.get(gz=True)
    assert renderer.calls == calls <= 3


def test_results_arriving_during_a_render_are_coalesced_into_one(
        served: tuple[Served, CountingRenderer, Store]) -> None:
    s, renderer, store = served
    before = renderer.calls
    release = threading.Event()
    renderer.hold = release
    store.apply(ok("ns_00000", 1000))
    assert renderer.holding.wait(30), "the change was never rendered"
    for i in range(1, 40):  # the rest of a poll cycle's results, while that render runs
        store.apply(ok(f"ns_{i:05d}", 1000 + i))
    release.set()
    wait_until(lambda: s.cache.snapshot is not None
               and s.cache.snapshot.version == store.version, what="the last result rendered")
    assert renderer.calls - before == 2  # the held render, then one for all 39 others
    assert b'namespace_name="name_ns_00039"} 1039.0' in s.get()


def test_concurrent_scrapes_get_complete_bodies_while_the_store_changes(
        served: tuple[Served, CountingRenderer, Store]) -> None:
    s, _, store = served
    small = [f"ns_{i:05d}" for i in range(10)]
    big = [f"ns_{i:05d}" for i in range(40)]
    stop = threading.Event()
    errors: list[BaseException] = []

    def churn() -> None:
        k = 0
        while not stop.is_set():
            k += 1
            # Whole namespace sets come and go, and values change under them.
            store.set_namespaces(small if k % 2 else big)
            for ident in (small if k % 2 else big):
                store.apply(ok(ident, k))

    def scrape(accept: str, gz: bool) -> None:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", s.server.port, timeout=30)
            for _ in range(25):
                body = s.get(accept, gz, conn).decode()
                if accept == OPENMETRICS:
                    assert body.endswith("# EOF\n") and body.count("# EOF") == 1
                    om_parse(body)  # strict: rejects truncation and interleaving
                    body = body[: -len("# EOF\n")]
                m = parse_metrics(body)
                assert FAMILIES <= set(m), FAMILIES - set(m)
                assert "process_cpu_seconds_total" in m
                ups = {lbl["namespace_id"] for lbl, _ in m["mixpeek_namespace_up"]}
                assert ups <= set(big)
                # Each namespace's series come from one state: never a mix of two renders.
                docs = {lbl["namespace_id"]: v for lbl, v in m["mixpeek_namespace_documents"]}
                durations = {lbl["namespace_id"]: v
                             for lbl, v in m["mixpeek_namespace_poll_duration_seconds"]}
                assert docs.keys() == durations.keys() == ups
                for ident, v in docs.items():
                    assert round(durations[ident] * 1000) == v, (ident, v, durations[ident])
            conn.close()
        except BaseException as e:
            errors.append(e)

    changer = threading.Thread(target=churn)
    scrapers = [threading.Thread(target=scrape, args=(accept, gz))
                for accept in (TEXT, OPENMETRICS) for gz in (False, True)]
    changer.start()
    for t in scrapers:
        t.start()
    for t in scrapers:
        t.join(timeout=60)
    stop.set()
    changer.join(timeout=10)
    assert not errors, errors[0]
    assert s.cache.renders > 1  # the store really changed while we scraped


@pytest.mark.parametrize("openmetrics", [False, True])
def test_gzip_body_is_the_text_body_plus_live_metrics(openmetrics: bool) -> None:
    cache = ExpositionCache(filled(30))
    rendered = cache.render_now()
    raw = bytes(cache.body(openmetrics, gz=True))
    d = zlib.decompressobj(wbits=31)
    plain = d.decompress(raw) + d.flush()
    assert d.eof and d.unused_data == b""  # one member: any gzip client reads all of it
    cached = whole(rendered, openmetrics)
    assert plain.startswith(cached)
    live = plain[len(cached):].decode()
    assert live.startswith("# HELP process_") or live.startswith("# HELP python_")
    assert "process_cpu_seconds" in live
    assert live.endswith("# EOF\n") == openmetrics
    # The plain body has the same shape: the same cached bytes, then live metrics.
    assert bytes(cache.body(openmetrics, gz=False)).startswith(cached)
    assert cache.renders == 1
