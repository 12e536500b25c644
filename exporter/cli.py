"""Command line, Prometheus style: ``--config.file``, ``--web.listen-address``, ``--log.level``."""

from __future__ import annotations

import argparse
import errno
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from exporter import __version__, logs
from exporter.app import App, ConfigLoader, file_loader
from exporter.polling.targets import shard_from_hostname
from exporter.settings.listen import ListenAddressError, parse_listen_address
from exporter.settings.load import (
    DEFAULT_CONFIG_FILE,
    ConfigError,
    config_path,
    describe,
    load_config,
    mode,
)
from exporter.settings.schema import Config, MixpeekConfig, PollConfig
from exporter.settings.secrets import Credentials, Secret, load_api_key

log = logging.getLogger("exporter")

DEFAULT_PORT = 10117
DEMO_INTERVAL = 5.0
START_ONLY = (f"./{DEFAULT_CONFIG_FILE} is looked for at start only: one created later is not "
              "read by a reload (SIGHUP); restart, or name a file with --config.file")
_LISTEN_HINTS = {
    errno.EADDRINUSE: "another process listens on that port: choose another with "
                      "--web.listen-address (e.g. :10118), or `make demo PORT=10118`",
    errno.EACCES: "ports below 1024 need privileges: choose another with --web.listen-address",
    errno.EADDRNOTAVAIL: "that host is not an address of this machine: use one of its "
                         "addresses, or no host (:10117) for all of them",
}


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="mixpeek-exporter",
        description="Prometheus exporter for Mixpeek namespaces. Polls Get Namespace for every "
                    "configured namespace on a schedule and serves the results on /metrics.",
        epilog="The API key is read from the environment variable named by "
               "mixpeek.api_key_env (default MIXPEEK_API_KEY) or from mixpeek.api_key_file; "
               "it is never read from the YAML itself. Config keys can be overridden with "
               "MIXPEEK_EXPORTER_<SECTION>__<KEY> environment variables. SIGHUP (and "
               "POST /-/reload with --web.enable-lifecycle) re-reads the config and key file.",
    )
    ap.add_argument("--config.file", dest="config_file", default=None, metavar="PATH",
                    help="YAML configuration file; relative paths in it are relative to "
                         "its directory (default: ./config.yaml if it exists at start, else "
                         "no file: the defaults, with discovery of every namespace the key "
                         "can list unless MIXPEEK_EXPORTER_NAMESPACES lists some)")
    ap.add_argument("--web.listen-address", dest="listen", default=f":{DEFAULT_PORT}",
                    metavar="[HOST]:PORT",
                    help="address for /metrics, /healthz, /readyz, /status, /config, / and "
                         "POST /-/reload; no host listens on IPv6 and IPv4 "
                         "(default: %(default)s)")
    ap.add_argument("--web.config.file", dest="web_config_file", default=None, metavar="PATH",
                    help="TLS and basic-auth settings for the HTTP endpoints, in the Prometheus "
                         "exporter-toolkit web-config.yml format (default: plain HTTP, no auth)")
    ap.add_argument("--web.enable-lifecycle", dest="enable_lifecycle", action="store_true",
                    help="enable POST /-/reload (off by default: anyone who reaches the port "
                         "could trigger reloads); SIGHUP always reloads")
    ap.add_argument("--log.level", dest="log_level", default="info",
                    choices=list(logs.LEVELS), help="minimum log level (default: %(default)s)")
    ap.add_argument("--log.format", dest="log_format", default="logfmt",
                    choices=["logfmt", "json"], help="log line format (default: %(default)s)")
    ap.add_argument("--config.check", dest="config_check", action="store_true",
                    help="validate the configuration and the API key as start-up would, "
                         "say which file (or none) is used and what is polled, print any "
                         "problems; exit 0 if it would start and 1 if not (a missing key "
                         "included)")
    ap.add_argument("--once", action="store_true",
                    help="poll every namespace once, print the exposition to stdout, exit 1 if "
                         "any namespace failed")
    ap.add_argument("--demo", action="store_true",
                    help="start a built-in simulated Mixpeek API on loopback and export its "
                         "namespaces (ignores --config.file; no API key needed)")
    ap.add_argument("--shard", default="0", metavar="N|auto",
                    help="poll only the namespaces whose stable hash (md5 of namespace_id, or "
                         "of the configured identifier) mod --total-shards is N; 'auto' takes "
                         "N from a StatefulSet hostname ending in -N (default: %(default)s)")
    ap.add_argument("--total-shards", type=int, default=1, metavar="N",
                    help="number of exporters sharing the namespaces (default: %(default)s)")
    ap.add_argument("--version", action="version",
                    version=f"mixpeek-exporter {__version__} (python {sys.version.split()[0]})")
    return ap


def demo_loader() -> tuple[ConfigLoader, object]:
    from exporter.simulator import DEMO_KEY, Simulator

    sim = Simulator()
    sim.grow({"ns_demo0001": 2.0, "ns_demo0002": 0.2})
    url = sim.start("127.0.0.1", 0)
    cfg = Config(
        mixpeek=MixpeekConfig(base_url=url, max_requests_per_minute=0),
        poll=PollConfig(interval_seconds=DEMO_INTERVAL, stale_after_seconds=60),
        namespaces=["demo_catalog", "demo_media", "ns_demo0003"],
    )
    creds = Credentials(Secret(DEMO_KEY), "built-in demo key")

    def load() -> tuple[Config, Credentials]:
        return cfg, creds
    return load, sim


def config_check(path: Path | None) -> int:
    """What start-up would say about the config and key, without starting: the same error
    (on stderr) and 1 when it would not start, else the verdict on stdout and 0. Warnings
    (variables that are ignored) follow either way; nothing is called valid before the key
    has been read."""
    warnings: list[str] = []
    try:
        cfg = load_config(path, warn=warnings.append)
        creds = load_api_key(cfg.mixpeek)
    except ConfigError as e:
        print(str(e), file=sys.stderr)
        for line in warnings:
            print(f"warning: {line}", file=sys.stderr)
        return 1
    print(f"{describe(path)}: configuration is valid ({mode(cfg)}, "
          f"polled every {cfg.poll.interval_seconds:g}s)")
    print(f"API key: found ({creds.source})")
    if path is None:
        print(f"note: {START_ONLY}")
    for line in warnings:
        print(f"warning: {line}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.setup(args.log_level, args.log_format)

    path = config_path(args.config_file)
    if args.config_check:
        return config_check(path)
    try:
        parse_listen_address(args.listen)
    except ListenAddressError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    try:
        shard = shard_from_hostname() if args.shard == "auto" else int(args.shard)
    except ValueError as e:
        print(f"error: --shard: {e}" if "--shard" not in str(e) else f"error: {e}",
              file=sys.stderr)
        return 2
    if args.total_shards < 1 or not 0 <= shard < args.total_shards:
        print(f"error: --shard must be in 0..{args.total_shards - 1} and --total-shards >= 1, "
              f"got --shard={shard} --total-shards={args.total_shards}", file=sys.stderr)
        return 2

    if args.demo:
        # The simulator thread lives as long as the process; nothing else holds it.
        loader, _sim = demo_loader()
        log.info("demo mode: polling the built-in simulator, no API key needed")
    else:
        loader = file_loader(path)
    try:
        app = App(loader, args.listen, args.web_config_file, shard, args.total_shards,
                  enable_lifecycle=args.enable_lifecycle)
    except ConfigError as e:
        print(str(e), file=sys.stderr)
        return 1
    if not args.demo:
        fields = {"source": describe(path), "mode": mode(app.cfg)}
        log.info("configuration", extra={"fields": fields | (
            {"note": START_ONLY} if path is None else {})})

    if args.once:
        body, ok = app.once()
        sys.stdout.buffer.write(body)
        sys.stdout.flush()
        app.client.close()
        return 0 if ok else 1
    return run(app)


def run(app: App) -> int:
    stop = threading.Event()

    def on_stop(signum: int, frame: FrameType | None) -> None:
        log.info("signal received, shutting down",
                 extra={"fields": {"signal": signal.Signals(signum).name}})
        stop.set()

    def on_hup(signum: int, frame: FrameType | None) -> None:
        # Reloading does I/O and takes locks: never inside the signal handler itself.
        threading.Thread(target=app.reload, name="reload", daemon=True).start()

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, on_hup)
    try:
        app.start()
    except OSError as e:
        fields = {"address": app.listen, "error": str(e)}
        if e.errno in _LISTEN_HINTS:
            fields["hint"] = _LISTEN_HINTS[e.errno]
        log.error("cannot listen", extra={"fields": fields})
        return 1
    except ConfigError as e:  # WebConfigError: a bad --web.config.file, named with the key
        log.error("cannot start", extra={"fields": {"error": str(e)}})
        print(str(e), file=sys.stderr)  # as a bad --config.file is printed
        return 1
    while not stop.wait(1.0):
        pass
    app.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
