"""Command line, Prometheus style: ``--config.file``, ``--web.listen-address``, ``--log.level``."""

from __future__ import annotations

import argparse
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
from exporter.settings.load import ConfigError, config_path, describe, load_config
from exporter.settings.schema import Config, MixpeekConfig, PollConfig
from exporter.settings.secrets import Credentials, KeyMissing, Secret, load_api_key

log = logging.getLogger("exporter")

DEFAULT_PORT = 10117
DEMO_INTERVAL = 5.0


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
                    help="YAML configuration file (default: ./config.yaml if it exists, "
                         "else no file: defaults with discovery of every namespace the key "
                         "can list)")
    ap.add_argument("--web.listen-address", dest="listen", default=f":{DEFAULT_PORT}",
                    metavar="[HOST]:PORT",
                    help="address for /metrics, /healthz, /readyz (default: %(default)s)")
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
                         "say which file (or none) is used, print any problems; exit 0 if it "
                         "would start and 1 if not (a key that is simply absent is a note)")
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
    """What start-up would say about the config and key, without starting: 0 if it would
    start (a key that is simply absent is a note: a Secret is often mounted later), else 1."""
    try:
        cfg = load_config(path)
    except ConfigError as e:
        print(str(e), file=sys.stderr)
        return 1
    discovery = ", discovery on" if cfg.discovery.enabled else ""
    print(f"{describe(path)}: configuration is valid ({len(cfg.namespaces)} namespaces"
          f"{discovery}, "
          f"polled every {cfg.poll.interval_seconds:g}s)")
    try:
        creds = load_api_key(cfg.mixpeek)
    except KeyMissing as e:
        print("note: " + "; ".join(e.problems) + " (needed at run time)")
    except ConfigError as e:
        print(str(e), file=sys.stderr)
        return 1
    else:
        print(f"API key: found ({creds.source})")
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
        log.info("configuration", extra={"fields": {"source": describe(path)}})
        loader = file_loader(path)
    try:
        app = App(loader, args.listen, args.web_config_file, shard, args.total_shards,
                  enable_lifecycle=args.enable_lifecycle)
    except ConfigError as e:
        print(str(e), file=sys.stderr)
        return 1

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
        log.error("cannot listen", extra={"fields": {"address": app.listen, "error": str(e)}})
        return 1
    except ValueError as e:  # exporter.web.webconfig.WebConfigError: a bad --web.config.file
        log.error("cannot start", extra={"fields": {"error": str(e)}})
        print(f"error: {e}", file=sys.stderr)
        return 1
    while not stop.wait(1.0):
        pass
    app.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
