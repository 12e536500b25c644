"""Render cost: prometheus-client's generate_latest against the fast, incremental renderer.

    .venv/bin/python bench/render.py [--sizes 1000,10000,50000] [--repeats 7,5,3]

For each size, one synthetic organisation (bench/synth.py) goes through poll cycles; every
repeat times all variants back to back (interleaved, so machine noise hits them alike):

- generate_latest (text) and openmetrics generate_latest over the same snapshot, through a
  custom collector (tests/reference_render.py SnapshotCollector: the reference),
- the previous pipeline: both of those plus gzip level 6 of each,
- the fast renderer from scratch (first render after start-up),
- the fast renderer after a complete poll cycle (every NamespaceState is new; the common case),
- the fast renderer after 1% of the namespaces changed (a render during a long poll cycle).

Fast-renderer times include computing both gzip trailers (text and OpenMetrics), i.e. all
the work done before a scrape can be served. Ratios are per repeat, then the median.
"""

from __future__ import annotations

import argparse
import gc
import gzip
import time
from collections.abc import Callable
from functools import partial

import common
from common import fmt_ms, median, table
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as om_generate_latest
from synth import filled_store, result

from exporter.render.fast import FastRenderer
from exporter.render.gzip import Rendered
from exporter.state.snapshot import Snapshot
from tests.reference_render import SnapshotCollector, gzip_size


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    gc.collect()
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


def ready(renderer: FastRenderer, snap: Snapshot, now: float) -> Rendered:
    """A render and both gzip trailers: everything done before a scrape is served."""
    r = renderer(snap, now)
    r.prepare(False)
    r.prepare(True)
    return r


def bench_size(n: int, repeats: int) -> tuple[str, dict[str, float]]:
    store = filled_store(n)
    snap1 = store.snapshot()
    for i in range(n):  # the next complete poll cycle
        store.apply(result(i, cycle=1))
    store.cycle_done(1.0)
    snap2 = store.snapshot()
    for i in range(n // 3, n // 3 + max(1, n // 100)):  # 1%, in poll order
        store.apply(result(i, cycle=2))
    snap3 = store.snapshot()
    now = time.time()
    reg = CollectorRegistry(auto_describe=False)
    holder: dict[str, Snapshot] = {"snap": snap2}
    reg.register(SnapshotCollector(lambda: holder["snap"], lambda: now))

    rows: dict[str, list[tuple[float, float]]] = {}
    ratios: dict[str, list[float]] = {}
    sizes: dict[str, int] = {}
    for _ in range(repeats):
        t: dict[str, tuple[float, float]] = {}
        text = om = b""

        def gen_text() -> None:
            nonlocal text
            text = generate_latest(reg)

        def gen_om() -> None:
            nonlocal om
            om = om_generate_latest(reg)

        t["generate_latest (text)"] = timed(gen_text)
        t["openmetrics generate_latest"] = timed(gen_om)
        gz_text = timed(partial(gzip.compress, text, 6))
        gz_om = timed(partial(gzip.compress, om, 6))
        t["previous pipeline: both + gzip -6 of each"] = (
            t["generate_latest (text)"][0] + t["openmetrics generate_latest"][0] + gz_text[0]
            + gz_om[0],
            t["generate_latest (text)"][1] + t["openmetrics generate_latest"][1] + gz_text[1]
            + gz_om[1])
        sizes["text"] = len(text)
        sizes["gzip -6 of text"] = len(gzip.compress(text, 6))

        cold = FastRenderer()
        t["fast: first render"] = timed(partial(ready, cold, snap2, now))
        warm = FastRenderer()
        warm(snap1, now)
        t["fast: after a full poll cycle"] = timed(partial(ready, warm, snap2, now))
        t["fast: after 1% changed"] = timed(partial(ready, warm, snap3, now))
        rendered = warm(snap2, now)
        sizes["fast gzip body"] = gzip_size(rendered)
        assert rendered.text == text, "fast renderer output differs from generate_latest"
        base = t["generate_latest (text)"][1]
        old = t["previous pipeline: both + gzip -6 of each"][1]
        for k, v in t.items():
            rows.setdefault(k, []).append(v)
            ratios.setdefault(k, []).append(base / v[1] if v[1] else float("inf"))
            ratios.setdefault(k + "/old", []).append(old / v[1] if v[1] else float("inf"))

    out = []
    for k, vs in rows.items():
        out.append([k, fmt_ms(median([w for w, _ in vs])), fmt_ms(median([c for _, c in vs])),
                    f"{median(ratios[k]):.1f}x", f"{median(ratios[k + '/old']):.1f}x"])
    md = (f"**{n:,} namespaces** ({repeats} repeats; text body {sizes['text'] / 1e6:.1f} MB, "
          f"gzip {sizes['fast gzip body'] / 1e6:.2f} MB as served, "
          f"{sizes['gzip -6 of text'] / 1e6:.2f} MB as one gzip -6 stream)\n\n"
          + table(["variant", "wall ms (median)", "CPU ms (median)",
                   "CPU: generate_latest / this", "CPU: previous pipeline / this"], out))
    summary = {"cycle_ratio": median(ratios["fast: after a full poll cycle"]),
               "cycle_ratio_old": median(ratios["fast: after a full poll cycle/old"])}
    return md, summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1000,10000,50000")
    ap.add_argument("--repeats", default="7,5,3")
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    reps = [int(x) for x in args.repeats.split(",")]
    print("## Render cost\n")
    print("Command: `.venv/bin/python bench/render.py`\n")
    for i, n in enumerate(sizes):
        md, _ = bench_size(n, reps[min(i, len(reps) - 1)])
        print(md + "\n", flush=True)


if __name__ == "__main__":
    common.machine()  # fail early if the environment is broken
    main()
