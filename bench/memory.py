"""Memory: resident set size of an exporter process holding N namespaces, as scrapes come in.

    .venv/bin/python bench/memory.py [--sizes 1000,10000,50000] [--repeats 3,3,2]
                                     [--designs streamed,naive,keep-plain]

One fresh process per (size, design, repeat), so nothing carries over. Each child imports the
whole exporter, fills a Store with a poll cycle of synthetic results (bench/synth.py), starts
ExpositionCache + MetricsServer on loopback, applies two more poll cycles (each rendered), and
reads RSS (VmRSS, after gc.collect()) at each step:

1. steady: after the three cycles, before any scrape;
2. after 100 plain (uncompressed, text format) scrapes from four concurrent clients;
3. after 100 gzip scrapes (OpenMetrics, what Prometheus asks for) from four clients;
4. after 100 more plain scrapes (steady must not depend on how many scrapes ran);

and the peak (VmHWM) at the end. The clients are bench/load.py in another process, so their
copies of the body are not counted.

Designs (the same renderer and cache; only how a scrape produces its body differs):
- streamed: this exporter. A body is written in chunks of at most CHUNK bytes from the cached
  compressed pieces (plain: inflated piece by piece while sent).
- naive: each scrape builds its whole body first (plain: inflated into one buffer of the body's
  size; gzip: the pieces joined), as the exporter did before. Each HTTP thread allocates in its
  own malloc arena, so freed bodies are not given back.
- keep-plain: the alternative to inflating per scrape: every render also keeps its plain pieces,
  and a plain scrape writes those.
- previous (not run by default): prometheus-client renders, and the text, OpenMetrics and gzip
  bodies of each are kept, as the exporter did before the fast renderer.
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
from common import BENCH, median, rss_mib, table

SCRAPES = 100
CLIENTS = 4
STEPS = ("steady", "after 100 plain", "after 100 gzip", "after 100 more plain", "peak")


def scrape(port: int, openmetrics: bool, gz: bool, total: int = SCRAPES) -> None:
    """``total`` scrapes from CLIENTS concurrent keep-alive clients in another process."""
    cmd = [sys.executable, str(BENCH / "load.py"), "--port", str(port), "--duration", "3600",
           "--connections", str(CLIENTS), "--max-requests", str(total // CLIENTS)]
    if openmetrics:
        cmd.append("--openmetrics")
    if gz:
        cmd.append("--gzip")
    res = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    if res["errors"] or len(res["bytes"]) != total:
        raise RuntimeError(f"scrapes failed: {res['errors'][:3]}")


def child(n: int, design: str) -> dict[str, Any]:
    from synth import filled_store, poll_cycle

    import exporter.app  # noqa: F401  (the whole exporter, as in production)
    from exporter.render.cache import ExpositionCache
    from exporter.render.fast import FastRenderer
    from exporter.render.gzip import Body, Rendered, inflate, piece
    from exporter.state.snapshot import Snapshot
    from exporter.web.server import Endpoints, MetricsServer, serve
    from tests.reference_render import render_generic

    class Naive(ExpositionCache):
        def body(self, openmetrics: bool, gz: bool) -> Body:
            streamed = super().body(openmetrics, gz)
            whole = bytearray(streamed.size)
            at = 0
            for chunk in streamed:
                whole[at:at + len(chunk)] = chunk
                at += len(chunk)
            return Body(streamed.size, (whole,))

    class KeepPlain(ExpositionCache):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            fast = FastRenderer()
            self.plain: dict[int, bytes] = {}

            def render(snap: Snapshot, now: float) -> Rendered:
                r = fast(snap, now)
                pieces = {id(p): p for p in (*r.text_pieces, *r.om_pieces)}
                # Pieces reused from the previous render keep their plain bytes.
                self.plain = {k: self.plain.get(k) or b"".join(inflate([p]))
                              for k, p in pieces.items()}
                return r

            super().__init__(*args, renderer=render, **kwargs)

        def body(self, openmetrics: bool, gz: bool) -> Body:
            if gz:
                return super().body(openmetrics, gz)
            r = self.current()
            plain = self.plain
            tail, _ = self._live_tail(openmetrics)
            parts = [plain[id(p)] for p in r.pieces(openmetrics)] + [tail]
            return Body(sum(map(len, parts)), parts)

    held: list[bytes] = []

    def previous(snap: Snapshot, now: float) -> Rendered:
        t0 = time.perf_counter()
        text, om = render_generic(snap, now)
        om = om[: -len(b"# EOF\n")]
        held[:] = [text, gzip.compress(text, 6), om, gzip.compress(om, 6)]
        return Rendered((piece(text),), (piece(om),), time.perf_counter() - t0)

    store = filled_store(n)
    if design == "previous":
        cache: ExpositionCache = ExpositionCache(store, renderer=previous)
    else:
        cache = {"streamed": ExpositionCache, "naive": Naive, "keep-plain": KeepPlain}[
            design](store)
    server = MetricsServer(("127.0.0.1", 0), 2, Endpoints(cache, lambda: (True, "ready")))
    cache.start()
    serve(server)

    def settle() -> None:
        deadline = time.monotonic() + 600
        while cache.snapshot is None or cache.snapshot.version != store.version:
            if time.monotonic() > deadline:
                raise TimeoutError("renderer did not catch up")
            time.sleep(0.05)

    settle()
    for cycle in (1, 2):  # two more complete poll cycles, each rendered, as in production
        poll_cycle(store, n, cycle)
        settle()
    out: dict[str, Any] = {}

    def measure(step: str) -> None:
        gc.collect()
        out[step] = rss_mib()[0]

    measure("steady")
    scrape(server.port, openmetrics=False, gz=False)
    measure("after 100 plain")
    scrape(server.port, openmetrics=True, gz=True)
    measure("after 100 gzip")
    scrape(server.port, openmetrics=False, gz=False)
    measure("after 100 more plain")
    out["peak"] = rss_mib()[1]
    r = cache.current()
    out["plain MB"] = sum(p.size for p in r.text_pieces) / 1e6
    out["gzip MB"] = sum(len(p.z) for p in r.om_pieces) / 1e6
    server.shutdown()
    server.server_close()
    cache.stop()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1000,10000,50000")
    ap.add_argument("--repeats", default="3,3,2", help="fresh processes per size (median)")
    ap.add_argument("--designs", default="streamed,naive,keep-plain",
                    help="streamed, naive, keep-plain, previous")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--design", default="streamed", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child, args.design)))
        return
    sizes = [int(x) for x in args.sizes.split(",")]
    reps = [int(x) for x in args.repeats.split(",")]
    designs = args.designs.split(",")
    print("## Memory\n")
    print(f"Command: `.venv/bin/python bench/memory.py --sizes {args.sizes} --repeats "
          f"{args.repeats} --designs {args.designs}` (RSS in MiB, median of fresh processes; "
          f"{CLIENTS} concurrent clients)\n")
    rows = []
    for i, n in enumerate(sizes):
        medians: dict[str, dict[str, float]] = {}
        for design in designs:
            runs = []
            for _ in range(reps[min(i, len(reps) - 1)]):
                res = subprocess.run(
                    [sys.executable, str(BENCH / "memory.py"), "--child", str(n), "--design",
                     design], capture_output=True, text=True, check=True, env=dict(os.environ))
                runs.append(json.loads(res.stdout))
                print(f"<!-- {n} {design}: {json.dumps(runs[-1])} -->", flush=True)
            medians[design] = {k: median([r[k] for r in runs]) for k in runs[0]}
        base = medians.get("streamed")
        for design in designs:
            m = medians[design]
            ratio = (f"{m['after 100 more plain'] / base['after 100 more plain']:.2f}x"
                     if base else "-")
            rows.append([f"{n:,}", design, *(f"{m[k]:.1f}" for k in STEPS), ratio,
                         f"{m['plain MB']:.1f} / {m['gzip MB']:.2f}"])
    print()
    print(table(["namespaces", "design", "steady (no scrape yet)", "after 100 plain",
                 "after 100 gzip", "after 100 more plain", "peak (VmHWM)",
                 "after all scrapes / streamed", "body MB plain / gzip"], rows))


if __name__ == "__main__":
    common.machine()
    main()
