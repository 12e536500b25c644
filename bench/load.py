"""Scrape load generator: C keep-alive connections hitting /metrics, in its own process.

    .venv/bin/python bench/load.py --port P [--connections 4] [--duration 5] [--max-requests N]
                                   [--openmetrics] [--gzip]

Prints one JSON object: per-request latencies (seconds, request sent to last body byte read),
bytes, errors. It runs as a separate process so its own Python work does not compete for the
server's GIL (it still shares the machine's cores; see bench/README.md). A body whose length
differs from Content-Length is an error.
"""

from __future__ import annotations

import argparse
import http.client
import json
import threading
import time

TEXT = "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
# What Prometheus 2.5x sends by default.
OPENMETRICS = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
               "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--connections", type=int, default=1)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--max-requests", type=int, default=0, help="per connection; 0: no cap")
    ap.add_argument("--openmetrics", action="store_true")
    ap.add_argument("--gzip", action="store_true")
    ap.add_argument("--timeout", type=float, default=120.0)
    args = ap.parse_args()
    headers = {"Accept": OPENMETRICS if args.openmetrics else TEXT}
    if args.gzip:
        headers["Accept-Encoding"] = "gzip"
    latencies: list[float] = []
    sizes: list[int] = []
    errors: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + args.duration

    def worker() -> None:
        conn = http.client.HTTPConnection(args.host, args.port, timeout=args.timeout)
        done = 0
        while time.monotonic() < deadline and (not args.max_requests
                                               or done < args.max_requests):
            t0 = time.perf_counter()
            try:
                conn.request("GET", "/metrics", headers=headers)
                resp = conn.getresponse()
                body = resp.read()
                dt = time.perf_counter() - t0
                if resp.status != 200:
                    raise RuntimeError(f"HTTP {resp.status}")
                if resp.getheader("Content-Length") not in (None, str(len(body))):
                    raise RuntimeError("short body")
            except Exception as e:
                with lock:
                    errors.append(repr(e))
                conn.close()
                conn = http.client.HTTPConnection(args.host, args.port, timeout=args.timeout)
                continue
            done += 1
            with lock:
                latencies.append(dt)
                sizes.append(len(body))
        conn.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(args.connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps({"latencies": latencies, "bytes": sizes, "errors": errors,
                      "elapsed": time.perf_counter() - started}))


if __name__ == "__main__":
    main()
