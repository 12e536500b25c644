"""Counts first on a rate-limited key: time until every namespace has a count, count freshness
during metadata refreshes, and the 429s caused.

    .venv/bin/python bench/scale.py [--sizes 10000,50000] [--rpm 600] [--watch 150]
                                    [--learn-seconds 150]

**Counts** (one run per size): ``python -m exporter.simulator --namespaces N --rate-limit-rpm
600`` (at most 600 requests in any 60 s, 429 past it) and ``python -m exporter`` as a user runs
it: discovery (page_size 1000), ``counts_source: stats_batch``, interval 60 s, metadata every
600 s, ``max_requests_per_minute`` equal to the API's limit. Measured from the exporter's start:
the time until ``/readyz`` (every namespace has a count or a verdict, as ``/metrics`` shows),
against the floor (requests needed / rate = (N/1000 pages + N/100 batches) / 10 a second).
Then, for ``--watch`` seconds while metadata refreshes run: the oldest count's age (now - the
oldest ``mixpeek_namespace_last_success_timestamp_seconds``) and how long a change of 20 counts
spread over the namespaces takes to show, against one interval plus the floor; and the 429s the
simulator refused (``/_sim/stats``), which must be 0 when the budget equals the API's limit.

**Learning from 429** (in process, ``--learn-seconds``): an API allowing 30 a minute, no budget
(``max_requests_per_minute: 0``), 60 namespaces polled one by one every 5 s with 8 threads:
the exporter against the naive way, the same exporter with a bucket that only pauses for
``Retry-After`` (what it did before: every waiting poll fires when the pause ends). Refusals in
the first minute (learning) and after it (steady state), and requests accepted.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import common
import yaml
from common import ROOT, median, table

API_KEY = "sk_bench_scale_0123456789"
LAST = b"mixpeek_namespace_last_success_timestamp_seconds{"
DOCS = b"mixpeek_namespace_documents{"


def start_simulator(n: int, rpm: int, latency_ms: float = 20) -> tuple[subprocess.Popen[str],
                                                                      str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "exporter.simulator", "--listen", "127.0.0.1:0", "--api-key",
         API_KEY, "--namespaces", str(n), "--rate-limit-rpm", str(rpm),
         "--latency-ms", str(latency_ms)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("listening on "):
        proc.kill()
        raise RuntimeError(f"simulator did not start: {line!r}")
    return proc, line.split()[-1]


def get(url: str, timeout: float = 60, gz: bool = False) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"} if gz else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            data = r.read()
            if r.headers.get("Content-Encoding") == "gzip":
                data = gzip.decompress(data)
            return r.status, data
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def sim_call(url: str, method: str, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url + "/_sim/" + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.load(r)


def scan(text: bytes, prefix: bytes, ids: set[str] | None = None) -> dict[str, float]:
    """{namespace_id: value} of one family's samples (a line scan, not a full parse)."""
    out: dict[str, float] = {}
    start = 0
    while True:
        i = text.find(prefix, start)
        if i < 0:
            return out
        j = text.find(b"\n", i)
        line = text[i:j if j >= 0 else len(text)]
        start = i + len(prefix)
        k = line.find(b'namespace_id="') + len('namespace_id="')
        ns_id = line[k:line.find(b'"', k)].decode()
        if ids is None or ns_id in ids:
            out[ns_id] = float(line.rsplit(b" ", 1)[1])


def counts_run(n: int, rpm: int, watch: float, workdir: Path) -> dict[str, Any]:
    pages, batches = math.ceil(n / 1000), math.ceil(n / 100)
    floor = (pages + batches) / (rpm / 60)
    interval = 60.0
    sim, url = start_simulator(n, rpm)
    out: dict[str, Any] = {"namespaces": n, "floor": floor, "requests needed": pages + batches}
    try:
        cfg = {"mixpeek": {"base_url": url, "max_requests_per_minute": rpm,
                           "max_concurrency": 4, "timeout_seconds": 10},
               "poll": {"interval_seconds": interval, "counts_source": "stats_batch",
                        "metadata_interval_seconds": 600},
               "discovery": {"enabled": True, "page_size": 1000, "max_namespaces": n,
                             "refresh_interval_seconds": 300},
               "namespaces": []}
        path = workdir / f"scale-{n}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        port = common_port()
        env = {**os.environ, "MIXPEEK_API_KEY": API_KEY}
        t0 = time.monotonic()
        exp = subprocess.Popen(
            [sys.executable, "-m", "exporter", "--config.file", str(path),
             "--web.listen-address", f"127.0.0.1:{port}"],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        base = f"http://127.0.0.1:{port}"
        try:
            while True:
                try:
                    if get(base + "/readyz", timeout=5)[0] == 200:
                        break
                except OSError:
                    pass
                if exp.poll() is not None or time.monotonic() - t0 > 30 * floor + 120:
                    raise RuntimeError("exporter did not become ready")
                time.sleep(0.1)
            out["ready"] = time.monotonic() - t0
            at_ready = sim_call(url, "GET", "stats")
            out["requests at ready"] = {k: v for k, v in at_ready["requests"].items()
                                        if not k.isdigit()}
            text = get(base + "/metrics", gz=True)[1]
            out["counts at ready"] = len(scan(text, LAST))
            out.update(watch_freshness(base, url, n, watch, interval + floor))
            out["refused"] = sim_call(url, "GET", "stats")["rate_limit"]["refused"]
            out["requests total"] = {k: v for k, v in sim_call(url, "GET", "stats")[
                "requests"].items() if not k.isdigit()}
        finally:
            exp.terminate()
            exp.wait(30)
    finally:
        sim.terminate()
        sim.wait(30)
    return out


def common_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def watch_freshness(base: str, sim: str, n: int, watch: float, target: float
                    ) -> dict[str, Any]:
    """For ``watch`` seconds from now (longer if the change has not shown yet, up to
    ``target`` + 30 s after it): the oldest count's age, sampled, and how long 20 changed
    counts take to show, changed 15 s from now."""
    ids = [f"ns_{i:08d}" for i in range(3, n)]  # the simulator's, after its three demo ones
    changed = {ids[int(k * (len(ids) - 1) / 19)] for k in range(20)}
    ages: list[float] = []
    metadata_refreshed: list[int] = []
    change_at = None
    seen_at = None
    start = time.monotonic()
    end = start + watch
    while time.monotonic() < end or (seen_at is None and change_at is not None
                                     and time.monotonic() < change_at + target + 30):
        text = get(base + "/metrics", gz=True)[1]
        now = time.time()
        last = scan(text, LAST)
        if last:
            ages.append(now - min(last.values()))
        metadata_refreshed.append(text.count(
            b"\nmixpeek_namespace_metadata_last_refresh_timestamp_seconds{"))
        if change_at is None and time.monotonic() - start > 15:
            for i in changed:
                sim_call(sim, "PATCH", f"namespaces/{i}", {"document_count": 777_777_777})
            change_at = time.monotonic()
        elif change_at is not None and seen_at is None:
            docs = scan(text, DOCS, changed)
            if len(docs) == len(changed) and all(v == 777_777_777 for v in docs.values()):
                seen_at = time.monotonic()
        time.sleep(2 if n <= 10_000 else 5)
    return {"oldest count age max": max(ages) if ages else float("nan"),
            "oldest count age median": median(ages),
            "change visible after": (seen_at - change_at) if seen_at and change_at else None,
            "metadata refreshed during watch": metadata_refreshed[-1] if metadata_refreshed
            else 0}


# -- learning from 429: the exporter against a pause-only bucket, in process -----------------


MODES = {"pause": "pause only (before)",
         "429": "learned from 429s only (X-RateLimit-* ignored)",
         "full": "learned pace (this exporter)"}


def learn_run(mode: str, seconds: float, workdir: Path) -> dict[str, Any]:
    from exporter.app import App, file_loader
    from exporter.ratelimit import TokenBucket

    class Deaf(TokenBucket):
        """Ignores what the API states (X-RateLimit-*, a 429 body's limit)."""

        def observe(self, *a: Any, **kw: Any) -> None:
            return None

    class PauseOnly(Deaf):
        """What the bucket did before: no pace learned, only Retry-After pauses."""

        def refused(self, window: float | None = None) -> None:
            return None

    class BenchApp(App):
        def make_client(self, cfg: Any, creds: Any) -> Any:
            from exporter.mixpeek.client import MixpeekClient
            bucket = {"pause": PauseOnly, "429": Deaf, "full": TokenBucket}[mode]
            return MixpeekClient(cfg.mixpeek, creds.key, bucket(0, strict=True),
                                 self.stats, self.stop_event)

    sim, url = start_simulator(60, 30, latency_ms=0)
    try:
        ids = sorted(sim_call(url, "GET", "state")["namespaces"])
        cfg = {"mixpeek": {"base_url": url, "max_requests_per_minute": 0,
                           "max_concurrency": 8, "max_retries": 2, "timeout_seconds": 10},
               "poll": {"interval_seconds": 5}, "namespaces": ids}
        path = workdir / "learn.yaml"
        path.write_text(yaml.safe_dump(cfg))
        os.environ["MIXPEEK_API_KEY"] = API_KEY
        app = BenchApp(file_loader(path), listen="127.0.0.1:0")
        app.start()
        t0 = time.monotonic()
        try:
            time.sleep(min(60.0, seconds))
            first = sim_call(url, "GET", "stats")
            time.sleep(max(0.0, seconds - 60.0))
            last = sim_call(url, "GET", "stats")
        finally:
            app.shutdown(grace=5)
        elapsed = time.monotonic() - t0
    finally:
        sim.terminate()
        sim.wait(30)

    def accepted(stats: dict[str, Any]) -> int:
        return sum(v for k, v in stats["requests"].items() if k.isdigit() and k != "429")
    return {"refused first minute": first["rate_limit"]["refused"],
            "refused after": last["rate_limit"]["refused"] - first["rate_limit"]["refused"],
            "accepted first minute": accepted(first),
            "accepted after": accepted(last) - accepted(first),
            "steady seconds": elapsed - 60.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="10000,50000")
    ap.add_argument("--rpm", type=int, default=600)
    ap.add_argument("--watch", type=float, default=150)
    ap.add_argument("--learn-seconds", type=float, default=150)
    ap.add_argument("--skip-learn", action="store_true")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in [int(s) for s in args.sizes.split(",") if s]:
            r = counts_run(n, args.rpm, args.watch, Path(tmp))
            print(f"<!-- counts {n}: {json.dumps(r)} -->", flush=True)
            limit = 60.0 + r["floor"]
            change = r["change visible after"]
            rows.append([
                f"{n:,}", f"{r['requests needed']}", f"{r['floor']:.1f}", f"{r['ready']:.1f}",
                f"{r['ready'] / r['floor']:.2f}x", f"{r['counts at ready']:,}",
                f"{r['oldest count age median']:.0f} / {r['oldest count age max']:.0f}",
                f"{limit:.0f}", "-" if change is None else f"{change:.0f}",
                f"{r['metadata refreshed during watch']:,}", f"{r['refused']}"])
        learn = []
        if not args.skip_learn:
            for mode in MODES:
                r = learn_run(mode, args.learn_seconds, Path(tmp))
                print(f"<!-- learn {mode}: {json.dumps(r)} -->", flush=True)
                learn.append((MODES[mode], r))
    print(f"\n### Counts first at {args.rpm} requests a minute\n\nCommand: `.venv/bin/python "
          f"bench/scale.py --sizes {args.sizes} --watch {args.watch:g}` (simulator limited to "
          f"{args.rpm} requests in any 60 s; exporter budget the same; interval 60 s, metadata "
          "600 s, discovery page_size 1000; seconds, from the exporter's start)\n")
    print(table(["namespaces", "requests needed", "floor (requests / rate)",
                 "every count in (/readyz)", "vs floor", "counts shown at ready",
                 "oldest count age, median / max", "target: interval + floor",
                 "20 changed counts visible after", "metadata refreshed (of N)",
                 "429s caused"], rows))
    if learn:
        print("\n### After a 429, no budget: API allows 30 a minute, 60 namespaces every 5 s, "
              "8 threads\n")
        print(f"Command: `.venv/bin/python bench/scale.py` ({args.learn_seconds:g} s each; "
              "\"pause only\" is the bucket as it was: every waiting poll fires when the "
              "Retry-After ends)\n")
        steady = learn[-1][1]["steady seconds"]
        print(table(["bucket", "429s, first minute", f"429s, next {steady:.0f} s",
                     "accepted, first minute", f"accepted, next {steady:.0f} s",
                     "429s per accepted (steady)"],
                    [[name, r["refused first minute"], r["refused after"],
                      r["accepted first minute"], r["accepted after"],
                      f"{r['refused after'] / max(1, r['accepted after']):.2f}"]
                     for name, r in learn]))


if __name__ == "__main__":
    common.machine()
    main()
