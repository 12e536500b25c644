"""Scrape cost: the exporter's /metrics against prometheus-client rendering on every scrape.

    .venv/bin/python bench/scrape.py [--sizes 1000,10000,50000] [--duration 5]

For each size, one process holds a synthetic organisation (bench/synth.py) in an
exporter.state.store.Store and serves it twice on loopback:

- "exporter": exporter.web.server.MetricsServer + exporter.render.cache.ExpositionCache, as run by
  the exporter (renders in the background, scrapes send prepared bytes);
- "prometheus_client": prometheus_client.start_http_server over a registry holding
  tests/reference_render.py's SnapshotCollector on the same store: generate_latest (and gzip
  level 9) on every scrape, the stock way.

It measures:

1. CPU per scrape in process, no HTTP: ExpositionCache.body() against generate_latest
   (+ gzip.compress, level 9, as prometheus-client's handler does).
2. HTTP, one connection: latency p50/p99, requests/s and server CPU per request (CPU time of
   this process over the run / requests), plain and gzip.
3. Four concurrent scrapers (OpenMetrics + gzip, what Prometheus asks for) while poll cycles
   run in the same process: synthetic results applied by 4 threads at 1,000 namespaces/s,
   each result paying JSON decoding + validation + ~0.7 ms of Python CPU (what a requests-based
   poll costs per namespace, bench/../perf-baseline), so the poller holds the GIL most of the
   time, as the real one does.

The load generator (bench/load.py) is a separate process on the same machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from typing import Any

import common
from common import BENCH, fmt_ms, median, percentile, table
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.exposition import generate_latest
from synth import filled_store, result

from exporter.render.cache import ExpositionCache
from exporter.state.store import Store
from exporter.web.server import Endpoints, MetricsServer, serve
from tests.reference_render import SnapshotCollector, gzip_size, text_size

POLL_RATE = 1000.0  # namespaces per second: a requests-based poller's ceiling per process
POLL_CPU = 0.0007  # seconds of Python CPU per namespace (HTTP + JSON in requests/urllib3)


def load(port: int, connections: int, duration: float, max_requests: int = 0,
         openmetrics: bool = False, gz: bool = False) -> dict[str, Any]:
    cmd = [sys.executable, str(BENCH / "load.py"), "--port", str(port), "--connections",
           str(connections), "--duration", str(duration), "--max-requests", str(max_requests)]
    if openmetrics:
        cmd.append("--openmetrics")
    if gz:
        cmd.append("--gzip")
    c0 = time.process_time()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    res: dict[str, Any] = json.loads(out.stdout)
    res["server_cpu"] = time.process_time() - c0
    return res


def summarize(res: dict[str, Any]) -> list[str]:
    lat = res["latencies"]
    n = len(lat)
    return [f"{fmt_ms(percentile(lat, 50))} / {fmt_ms(percentile(lat, 99))}",
            f"{n / res['elapsed']:.1f}" if n else "0",
            fmt_ms(res["server_cpu"] / n) if n else "-",
            f"{n}" + (f" ({len(res['errors'])} errors)" if res["errors"] else "")]


def drain(body: Iterable[bytes]) -> int:
    """Produce a streamed body as a scrape does, without sending it."""
    return sum(len(chunk) for chunk in body)


def cpu_per_call(fn: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        c0 = time.process_time()
        fn()
        times.append(time.process_time() - c0)
    return median(times)


class Poller:
    """Back-to-back synthetic poll cycles over ``n`` namespaces, paced at POLL_RATE."""

    def __init__(self, store: Store, n: int, workers: int = 4) -> None:
        self.store, self.n = store, n
        self.stop = threading.Event()
        self.applied = 0
        self.cycles: list[float] = []
        self._next = 0
        self._lock = threading.Lock()
        self._t0 = time.monotonic()
        self.threads = [threading.Thread(target=self._work, daemon=True) for _ in range(workers)]

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._cycle_start = self._t0
        for t in self.threads:
            t.start()

    def _work(self) -> None:
        while not self.stop.is_set():
            with self._lock:
                k = self._next
                self._next += 1
            due = self._t0 + k / POLL_RATE
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            i, cycle = k % self.n, k // self.n + 1
            r = result(i, cycle)
            end = time.thread_time() + POLL_CPU
            while time.thread_time() < end:
                pass
            self.store.apply(r)
            with self._lock:
                self.applied += 1
                if self.applied % self.n == 0:
                    now = time.monotonic()
                    self.cycles.append(now - self._cycle_start)
                    self._cycle_start = now
                    self.store.cycle_done(self.cycles[-1])

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=10)


def bench_size(n: int, duration: float, baseline_requests: int) -> str:
    store = filled_store(n)
    cache = ExpositionCache(store)
    server = MetricsServer(("127.0.0.1", 0), 2, Endpoints(cache, lambda: (True, "ready")))
    cache.start()
    serve(server)
    reg = CollectorRegistry(auto_describe=False)
    reg.register(SnapshotCollector(store.snapshot))
    prom_server, _ = start_http_server(0, "127.0.0.1", registry=reg)
    prom_port = prom_server.server_port
    import gzip

    out = [f"### {n:,} namespaces\n"]
    r = cache.current()
    out.append(f"Body: text {text_size(r) / 1e6:.1f} MB, gzip {gzip_size(r) / 1e6:.2f} MB.\n")

    # 1. CPU per scrape, in process.
    reps = max(3, baseline_requests)
    ours = {
        "gzip, OpenMetrics": cpu_per_call(lambda: drain(cache.body(True, True)), 30),
        "gzip, text": cpu_per_call(lambda: drain(cache.body(False, True)), 30),
        "plain text": cpu_per_call(lambda: drain(cache.body(False, False)), 10),
    }
    gen = cpu_per_call(lambda: generate_latest(reg), reps)
    gen_gz = cpu_per_call(lambda: gzip.compress(generate_latest(reg)), reps)
    rows = [["gzip (prometheus-client: generate_latest + gzip -9)",
             fmt_ms(ours["gzip, text"]), fmt_ms(gen_gz),
             f"{gen_gz / ours['gzip, text']:,.0f}x"],
            ["gzip, OpenMetrics (what Prometheus asks for)", fmt_ms(ours["gzip, OpenMetrics"]),
             fmt_ms(gen_gz), f"{gen_gz / ours['gzip, OpenMetrics']:,.0f}x"],
            ["plain text", fmt_ms(ours["plain text"]), fmt_ms(gen),
             f"{gen / ours['plain text']:,.0f}x"]]
    out.append("CPU per scrape, in process (median ms):\n")
    out.append(table(["body", "exporter", "prometheus_client", "ratio"], rows) + "\n")

    # 2. HTTP, one connection.
    rows = []
    for gz in (False, True):
        enc = "gzip" if gz else "identity"
        rows.append(["exporter", enc, *summarize(load(server.port, 1, duration, gz=gz))])
        rows.append(["prometheus_client", enc, *summarize(
            load(prom_port, 1, duration * 4, max_requests=baseline_requests, gz=gz))])
    out.append("HTTP, one connection, text format:\n")
    out.append(table(["server", "encoding", "latency p50 / p99 (ms)", "requests/s",
                      "server CPU per request (ms)", "requests"], rows) + "\n")

    # 3. Four scrapers during poll cycles.
    poller = Poller(store, n)
    poller.start()
    time.sleep(duration)
    poller.close()
    alone = poller.applied / duration
    rows = []
    for name, port, cap in (("exporter", server.port, 0),
                            ("prometheus_client", prom_port, baseline_requests)):
        if name == "prometheus_client" and n > 10_000:
            continue  # minutes per request under load; the single-connection row says enough
        renders0 = cache.renders
        poller = Poller(store, n)
        poller.start()
        res = load(port, 4, duration * 2, max_requests=cap, openmetrics=True, gz=True)
        poller.close()
        applied = poller.applied
        lat = res["latencies"]
        rows.append([name, f"{fmt_ms(percentile(lat, 50))} / {fmt_ms(percentile(lat, 99))} / "
                     f"{fmt_ms(max(lat) if lat else float('nan'))}",
                     f"{len(lat) / res['elapsed']:.1f}",
                     f"{applied / res['elapsed']:,.0f}",
                     str(cache.renders - renders0) if name == "exporter" else "-",
                     f"{len(lat)}" + (f" ({len(res['errors'])} errors)" if res["errors"]
                                      else "")])
    r = cache.current()
    out.append(f"Four concurrent scrapers (OpenMetrics, gzip) while poll cycles run "
               f"(paced at {POLL_RATE:,.0f} results/s; {alone:,.0f}/s reached without "
               f"scrapers; last exporter render took {r.seconds * 1000:.0f} ms wall):\n")
    out.append(table(["server", "latency p50 / p99 / max (ms)", "scrapes/s",
                      "poll results applied/s", "renders", "requests"], rows) + "\n")

    server.shutdown()
    server.server_close()
    prom_server.shutdown()
    prom_server.server_close()
    cache.stop()
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1000,10000,50000")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per exporter run")
    args = ap.parse_args()
    print("## Scrape cost\n")
    print("Command: `.venv/bin/python bench/scrape.py`\n")
    for n in (int(x) for x in args.sizes.split(",")):
        baseline_requests = 20 if n <= 1000 else 5 if n <= 10_000 else 3
        print(bench_size(n, args.duration, baseline_requests) + "\n", flush=True)


if __name__ == "__main__":
    common.machine()
    main()
