"""Memory: resident set size of an exporter process holding N namespaces.

    .venv/bin/python bench/memory.py [--sizes 1000,10000,50000]

One fresh process per (size, design), so nothing carries over. Each child imports the whole
exporter, fills a Store with one poll cycle of synthetic results (bench/synth.py), starts
ExpositionCache + MetricsServer and is scraped over loopback like Prometheus (OpenMetrics and
text, gzip; each scrape from a separate process, bench/load.py, so the client's copy of the
body is not counted); then two more complete poll cycles, rendered and scraped; then one plain
(uncompressed) scrape. RSS (VmRSS) is read after gc.collect() at each step; peak is VmHWM.

Designs:
- fast: this exporter (incremental renderer; compressed pieces only).
- fast+arena2: the same with MALLOC_ARENA_MAX=2 in the environment. glibc gives each thread
  that allocates its own malloc arena (poller, renderer, HTTP threads); memory freed in one
  arena is not reused by another, which is most of the growth after the first cycle.
- previous: prometheus-client renders (generate_latest + OpenMetrics generate_latest), and the
  text, OpenMetrics and gzip bodies of each are all kept, as the exporter did before.
"""

from __future__ import annotations

import argparse
import gc
import gzip
import json
import os
import subprocess
import sys
import time
from typing import Any

import common
from common import BENCH, rss_mib, table


def scrape(port: int, openmetrics: bool, gz: bool) -> int:
    """One scrape from another process, so the client's copy of the body is not counted."""
    cmd = [sys.executable, str(BENCH / "load.py"), "--port", str(port), "--duration", "600",
           "--max-requests", "1"]
    if openmetrics:
        cmd.append("--openmetrics")
    if gz:
        cmd.append("--gzip")
    res = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    if res["errors"] or not res["bytes"]:
        raise RuntimeError(f"scrape failed: {res['errors']}")
    return int(res["bytes"][0])


def child(n: int, design: str) -> dict[str, Any]:
    from synth import filled_store, poll_cycle

    import exporter.app  # noqa: F401  (the whole exporter, as in production)
    from exporter.render.cache import ExpositionCache
    from exporter.render.families import Rendered, piece, render_generic
    from exporter.state.store import Snapshot
    from exporter.web.server import Endpoints, MetricsServer, serve

    out: dict[str, Any] = {}
    gc.collect()
    out["imports"] = rss_mib()[0]
    store = filled_store(n)
    gc.collect()
    out["store"] = rss_mib()[0]

    held: list[bytes] = []

    def previous(snap: Snapshot, now: float) -> Rendered:
        t0 = time.perf_counter()
        text, om = render_generic(snap, now)
        om = om[: -len(b"# EOF\n")]
        held[:] = [text, gzip.compress(text, 6), om, gzip.compress(om, 6)]
        return Rendered((piece(text),), (piece(om),), time.perf_counter() - t0)

    cache = ExpositionCache(store, renderer=previous if design == "previous" else None)
    server = MetricsServer(("127.0.0.1", 0), 2, Endpoints(cache, lambda: (True, "ready")))
    cache.start()
    serve(server)

    def settle_and_scrape() -> None:
        deadline = time.monotonic() + 600
        while cache.snapshot is None or cache.snapshot.version != store.version:
            if time.monotonic() > deadline:
                raise TimeoutError("renderer did not catch up")
            time.sleep(0.05)
        scrape(server.port, True, True)
        scrape(server.port, False, True)
        gc.collect()

    settle_and_scrape()
    out["steady, 1 cycle"] = rss_mib()[0]
    for cycle in (1, 2):
        poll_cycle(store, n, cycle)
        settle_and_scrape()
    out["steady, 3 cycles"], out["peak before plain"] = rss_mib()
    out["plain bytes"] = scrape(server.port, False, False)
    gc.collect()
    out["after a plain scrape"] = rss_mib()[0]
    out["peak"] = rss_mib()[1]
    r = cache.current()
    out["gzip bytes"] = r.gzip_size
    server.shutdown()
    server.server_close()
    cache.stop()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1000,10000,50000")
    ap.add_argument("--designs", default="fast,previous",
                    help="fast, fast+arena2, previous")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--design", default="fast", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child, args.design)))
        return
    print("## Memory\n")
    print("Command: `.venv/bin/python bench/memory.py` (RSS in MiB; one process per row)\n")
    rows = []
    for n in (int(x) for x in args.sizes.split(",")):
        for design in args.designs.split(","):
            env = dict(os.environ)
            if design.endswith("+arena2"):
                env["MALLOC_ARENA_MAX"] = "2"
            res = subprocess.run(
                [sys.executable, str(BENCH / "memory.py"), "--child", str(n), "--design",
                 design.split("+")[0]], capture_output=True, text=True, check=True, env=env)
            m = json.loads(res.stdout)
            rows.append([f"{n:,}", design, *(f"{m[k]:.1f}" for k in (
                "imports", "store", "steady, 1 cycle", "steady, 3 cycles",
                "after a plain scrape", "peak before plain", "peak")),
                f"{m['plain bytes'] / 1e6:.1f} / {m['gzip bytes'] / 1e6:.2f}"])
            print(f"<!-- {n} {design}: {json.dumps(m)} -->", flush=True)
    print()
    print(table(["namespaces", "design", "imports", "+ store", "steady after 1st cycle",
                 "steady after 3 cycles", "after a plain scrape",
                 "peak (VmHWM) before the plain scrape", "peak (VmHWM) at the end",
                 "body MB plain / gzip"], rows))


if __name__ == "__main__":
    common.machine()
    main()
