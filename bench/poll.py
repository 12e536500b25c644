"""Poll cycle time for 1,000 namespaces against the simulator with 50 ms of API latency.

    .venv/bin/python bench/poll.py [--namespaces 1000] [--latency-ms 50] [--repeats 3]

Starts ``python -m exporter.simulator --namespaces N --latency-ms L`` and, for each setting,
builds the exporter's App from a config file (the public interface; no HTTP server) and runs
two poll cycles: the first (cold: new connections) and the second (warm). With counts_source
stats_batch a cycle is the counts (batches of 100, from the first cycle); its share of metadata
(1,000 x 60 s / 600 s = 100 full Get Namespace calls) runs beside it and is not part of the
cycle's time, but its requests are counted (the bench waits for them before reading the
simulator's counters). Compared with:

- the concurrency ideal N x latency / max_concurrency,
- the budget ideal N / rate when mixpeek.max_requests_per_minute is set,
- for counts_source: stats_batch, ceil(N / 100) batch requests x latency / concurrency.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import common
import yaml
from common import ROOT, median, table

from exporter.app import App, file_loader

API_KEY = "sk_bench_0123456789abcdef"
# (label, max_concurrency, max_requests_per_minute, counts_source)
SETTINGS: list[tuple[str, int, float, str]] = [
    ("concurrency 8", 8, 0, "namespace"),
    ("concurrency 32", 32, 0, "namespace"),
    ("concurrency 64", 64, 0, "namespace"),
    ("concurrency 32, budget 6,000 requests/min", 32, 6000, "namespace"),
    ("concurrency 8, counts_source stats_batch", 8, 0, "stats_batch"),
]


# The stock simulator writes response headers and body in two send()s; with Nagle on, the
# small body waits for the ACK of the headers, which a keep-alive client delays by ~40 ms
# (delayed ACK). --nodelay runs the same simulator with TCP_NODELAY on its sockets.
NODELAY = ("import sys, exporter.simulator as s; "
           "s.SimHandler.disable_nagle_algorithm = True; sys.exit(s.main(sys.argv[1:]))")


def start_simulator(n: int, latency_ms: float, nodelay: bool = False
                    ) -> tuple[subprocess.Popen[str], str]:
    entry = ["-c", NODELAY] if nodelay else ["-m", "exporter.simulator"]
    proc = subprocess.Popen(
        [sys.executable, *entry, "--listen", "127.0.0.1:0", "--api-key",
         API_KEY, "--namespaces", str(n), "--latency-ms", str(latency_ms)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()  # "listening on http://HOST:PORT"
    if not line.startswith("listening on "):
        proc.kill()
        raise RuntimeError(f"simulator did not start: {line!r}")
    return proc, line.split()[-1]


def sim_counters(url: str, reset: bool = False) -> tuple[int, int]:
    """(API requests served, most requests in flight at once) since the last reset."""
    if reset:
        req = urllib.request.Request(url + "/_sim/reset", data=b"{}", method="POST")
        urllib.request.urlopen(req, timeout=30).close()
        return 0, 0
    with urllib.request.urlopen(url + "/_sim/state", timeout=30) as r:
        state = json.load(r)
    # Counted by route and by status; the routes are the non-numeric keys.
    routes = {k: v for k, v in state["requests"].items() if not k.isdigit()}
    return int(sum(routes.values())), int(state.get("max_in_flight", 0))


def run(url: str, ids: list[str], label: str, conc: int, rpm: float, source: str,
        workdir: Path) -> dict[str, Any]:
    cfg = {
        "mixpeek": {"base_url": url, "max_concurrency": conc, "max_requests_per_minute": rpm,
                    "max_retries": 0, "timeout_seconds": 10},
        "poll": {"interval_seconds": 60, "stale_after_seconds": 300, "counts_source": source},
        "namespaces": ids,
    }
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    app = App(file_loader(path), listen="127.0.0.1:0")
    out: dict[str, Any] = {}
    try:
        for name in ("cold", "warm"):
            sim_counters(url, reset=True)
            c0, w0 = time.process_time(), time.perf_counter()
            results = app.poller.run_cycle()
            out[name] = time.perf_counter() - w0
            out[name + " cpu"] = time.process_time() - c0
            app.poller.wait_metadata(120)
            out[name + " requests"], out[name + " in flight"] = sim_counters(url)
            out[name + " failed"] = sum(1 for x in results if not x.ok)
    finally:
        app.shutdown(grace=2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--namespaces", type=int, default=1000)
    ap.add_argument("--latency-ms", type=float, default=50)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--nodelay", action="store_true",
                    help="simulator with TCP_NODELAY (no 40 ms delayed-ACK stalls)")
    args = ap.parse_args()
    logging.disable(logging.WARNING)  # the budget warnings are expected here
    os.environ["MIXPEEK_API_KEY"] = API_KEY
    n, lat = args.namespaces, args.latency_ms / 1000
    proc, url = start_simulator(n, args.latency_ms, args.nodelay)
    try:
        with urllib.request.urlopen(url + "/_sim/state", timeout=30) as r:
            ids = sorted(json.load(r)["namespaces"])
        rows = []
        with tempfile.TemporaryDirectory() as tmp:
            for label, conc, rpm, source in SETTINGS:
                runs = [run(url, ids, label, conc, rpm, source, Path(tmp))
                        for _ in range(args.repeats)]
                cold, warm = median([r["cold"] for r in runs]), median([r["warm"] for r in runs])
                if source == "stats_batch":
                    ideal = math.ceil(n / 100) * lat / conc
                    ideal_s = f"{ideal:.2f} (batches)"
                else:
                    ideal = n * lat / conc
                    ideal_s = f"{ideal:.2f}"
                budget = n / (rpm / 60) if rpm else None
                best = max(ideal, budget or 0)
                rows.append([
                    label, f"{cold:.2f}", f"{warm:.2f}", ideal_s,
                    f"{budget:.2f}" if budget else "-",
                    f"{(warm / best - 1) * 100:+.0f}%",
                    f"{median([r['warm cpu'] for r in runs]):.2f}",
                    f"{median([r['cold requests'] for r in runs]):.0f} / "
                    f"{median([r['warm requests'] for r in runs]):.0f}",
                    f"{max(r['warm in flight'] for r in runs)}",
                    f"{max(r['warm failed'] for r in runs)}"])
                print(f"<!-- {label}: {json.dumps(runs)} -->", flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    cmd = "bench/poll.py" + (" --nodelay" if args.nodelay else "")
    sim = "simulator with TCP_NODELAY" if args.nodelay else "stock simulator"
    print(f"\n### {sim}\n\nCommand: `.venv/bin/python {cmd}` ({n:,} namespaces, "
          f"--latency-ms {args.latency_ms:g}, medians of {args.repeats} runs; seconds)\n")
    print(table(["setting", "cold cycle", "warm cycle", "ideal N x latency / concurrency",
                 "budget ideal N / rate", "warm vs the larger ideal", "exporter CPU (warm)",
                 "API requests cold / warm", "most in flight (warm)",
                 "failed polls (warm, max)"], rows))


if __name__ == "__main__":
    common.machine()
    main()
