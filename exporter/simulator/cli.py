"""``python -m exporter.simulator``: the simulated API as a process, for tests, bench and demos."""

from __future__ import annotations

import argparse
import threading
from collections.abc import Sequence
from pathlib import Path

from exporter.settings.listen import ListenAddressError, parse_listen_address
from exporter.simulator.server import Simulator
from exporter.simulator.state import DEMO_KEY, default_namespaces

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m exporter.simulator",
                                 description="Fake Mixpeek API (loopback only) for trying the "
                                             "exporter without an account, and for its tests.")
    # Every default is shown through %(default)s, so the help cannot drift from the code.
    ap.add_argument("--listen", default="127.0.0.1:0",
                    help="loopback HOST:PORT, IPv6 in brackets; port 0 picks a free port (the "
                         "URL is printed once listening) (default: %(default)s)")
    ap.add_argument("--api-key", default=DEMO_KEY,
                    help="the Bearer key it accepts (default: %(default)s, the demo's key)")
    ap.add_argument("--namespaces", type=int, default=3,
                    help="how many namespaces to serve: demo_catalog, demo_media and "
                         "demo_archive (ids ns_demo0001-3) first, then sim_namespace_000003, "
                         "sim_namespace_000004, ... (ids ns_00000003, ...) (default: "
                         "%(default)s)")
    ap.add_argument("--seed", type=int, default=0,
                    help="seed of the random document counts of the namespaces after the "
                         "first three; same seed, same counts (default: %(default)s)")
    ap.add_argument("--rate-limit-rpm", type=int, default=0, metavar="N",
                    help="accept at most N API requests in any 60 s, answer 429 with "
                         "Retry-After past that, and send X-RateLimit-* headers; 0: no limit "
                         "(default: %(default)s)")
    ap.add_argument("--latency-ms", type=float, default=0,
                    help="delay per Get Namespace, in milliseconds (default: %(default)s)")
    ap.add_argument("--list-shape", choices=["schema", "legacy"], default="schema",
                    help="pagination of the list endpoint: the SDK's schema (next_cursor) or "
                         "the docs example's {has_more, limit, skip} (default: %(default)s)")
    ap.add_argument("--no-stats-batch", action="store_true",
                    help="answer 404 on stats/batch, like an older API (default: serve it)")
    ap.add_argument("--grow", type=float, default=0.0,
                    help="documents per second added to every namespace (default: "
                         "%(default)s)")
    ap.add_argument("--ready-file", type=Path, help="write the URL here once listening")
    ap.add_argument("--tls-cert", help="serve HTTPS with this PEM certificate (chain)")
    ap.add_argument("--tls-key", help="the PEM key for --tls-cert")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    try:
        host, port, _ = parse_listen_address(args.listen, flag="--listen")
    except ListenAddressError as e:
        ap.error(str(e))
    if host not in LOOPBACK:
        ap.error(f"--listen {args.listen!r}: the simulator listens on loopback only "
                 f"({', '.join(LOOPBACK)})")
    if args.rate_limit_rpm < 0 or args.namespaces < 0:
        ap.error("--rate-limit-rpm and --namespaces must be >= 0")
    sim = Simulator(args.api_key, default_namespaces(args.namespaces, args.seed),
                    rate_limit_rpm=args.rate_limit_rpm, latency_ms=args.latency_ms,
                    list_shape=args.list_shape, stats_batch=not args.no_stats_batch)
    if args.grow:
        sim.grow({k: args.grow for k in sim.state.namespaces})
    url = sim.start(host, port, certfile=args.tls_cert, keyfile=args.tls_key)
    print(f"listening on {url}", flush=True)
    if args.ready_file:
        args.ready_file.write_text(url)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    return 0
