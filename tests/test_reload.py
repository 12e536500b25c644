"""Configuration reload without a restart: the diff of two configurations as a pure function,
then end to end: SIGHUP and POST /-/reload (with --web.enable-lifecycle) re-read the config file
and the key file; a bad new config is refused and the old one keeps running; the reload metrics
say what happened; namespaces come and go."""

from __future__ import annotations

import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from exporter.app import App
from exporter.mixpeek.client import MixpeekClient
from exporter.reload import Plan, plan
from exporter.settings.schema import Config, DiscoveryConfig, MixpeekConfig, PollConfig
from exporter.settings.secrets import Credentials, Secret, load_api_key
from tests.harness import (
    ExporterProcess,
    SimulatorProcess,
    exporter_config,
    http,
    sample,
    wait_until,
)

e2e = pytest.mark.e2e
LIFECYCLE = ["--web.enable-lifecycle"]
K1 = "sk_live_rotation_one_11111111"
K2 = "sk_live_rotation_two_22222222"
K3 = "sk_live_rotation_three_333333"
CATALOG = {"namespace_name": "demo_catalog"}
MEDIA = {"namespace_name": "demo_media"}
ARCHIVE = {"namespace_name": "demo_archive"}
OK_NAME = "mixpeek_exporter_config_last_reload_successful"
TS_NAME = "mixpeek_exporter_config_last_reload_success_timestamp_seconds"


# -- the diff ---------------------------------------------------------------------------------

BASE = Config(namespaces=["demo_catalog"])
CREDS = Credentials(Secret(K1), "env MIXPEEK_API_KEY")
NOTHING = Plan(new_client=False, new_key=False, relist=False, interval=None, stale_after=None)


@pytest.mark.parametrize(("new", "creds", "expected"), [
    (BASE, CREDS, NOTHING),
    (Config(namespaces=["demo_media"]), CREDS, NOTHING),  # the set is applied, not planned
    (BASE, Credentials(Secret(K2), "file /k"), Plan(False, True, False, None, None)),
    (Config(mixpeek=MixpeekConfig(timeout_seconds=3), namespaces=["demo_catalog"]),
     Credentials(Secret(K2), "env"), Plan(True, False, False, None, None)),
    (Config(poll=PollConfig(interval_seconds=30), namespaces=["demo_catalog"]), CREDS,
     Plan(False, False, False, 30.0, 150.0)),
    (Config(poll=PollConfig(interval_seconds=60, stale_after_seconds=900),
            namespaces=["demo_catalog"]), CREDS, Plan(False, False, False, None, 900.0)),
    (Config(discovery=DiscoveryConfig(enabled=True), namespaces=["demo_catalog"]), CREDS,
     Plan(False, False, True, None, None)),
])
def test_plan_is_the_difference(new: Config, creds: Credentials, expected: Plan) -> None:
    assert plan(BASE, CREDS, new, creds) == expected


def test_plan_relists_only_when_discovery_stays_on_and_changed() -> None:
    on = Config(discovery=DiscoveryConfig(enabled=True, include=["^a"]))
    assert plan(on, CREDS, on, CREDS).relist is False
    other = Config(discovery=DiscoveryConfig(enabled=True, include=["^b"]))
    assert plan(on, CREDS, other, CREDS).relist is True
    assert plan(on, CREDS, BASE, CREDS).relist is False  # turned off: forgotten, not listed


# -- end to end ---------------------------------------------------------------------------------


def write_atomic(path: Path, text: str) -> None:
    """How config management (and a k8s Secret update) replaces a file: never half-written."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def reload_post(e: ExporterProcess) -> tuple[int, str]:
    status, _, body = http("POST", e.url + "/-/reload", timeout=10)
    return status, body.decode()


def wait_up(e: ExporterProcess, value: float, timeout: float = 10, **labels: str) -> None:
    e.wait_for_sample("mixpeek_namespace_up", lambda v: v == value, timeout=timeout, **labels)


@e2e
def test_rotated_key_file_is_picked_up_by_sighup_and_post(tmp_path: Path) -> None:
    keyfile = tmp_path / "api-key"
    keyfile.write_text(K1 + "\n")
    with SimulatorProcess(api_key=K1) as sim:
        cfg = exporter_config(sim.url, ["demo_catalog", "demo_media"], api_key_file=str(keyfile))
        with ExporterProcess(cfg, extra_args=LIFECYCLE) as e:  # no key in the environment
            e.wait_ready()
            wait_up(e, 1, **CATALOG)
            t0 = sample(e.metrics(), TS_NAME)
            assert sample(e.metrics(), OK_NAME) == 1 and t0 is not None

            # The key is rotated on the API side: the old one is refused...
            sim.configure(api_key=K2)
            wait_up(e, 0, **CATALOG)
            assert sample(e.metrics(), "mixpeek_namespace_poll_errors_total",
                          reason="unauthorized", **CATALOG)
            # ...and the new one lands in the mounted file; SIGHUP picks it up.
            write_atomic(keyfile, K2 + "\n")
            e.signal(signal.SIGHUP)
            wait_up(e, 1, **CATALOG)
            wait_up(e, 1, **MEDIA)
            t1 = e.wait_for_sample(TS_NAME, lambda v: v is not None and v > t0, timeout=5)
            assert sample(e.metrics(), OK_NAME) == 1

            # Again, through the HTTP endpoint this time.
            sim.configure(api_key=K3)
            wait_up(e, 0, **CATALOG)
            write_atomic(keyfile, K3)
            status, body = reload_post(e)
            assert status == 200 and body.startswith("reloaded"), body
            wait_up(e, 1, **CATALOG)
            e.wait_for_sample(TS_NAME, lambda v: v is not None and v > t1, timeout=5)
        log = e.log_text()
    assert log.count('msg="configuration reloaded"') == 2
    assert f"key_source=\"file {keyfile}\"" in log
    for key in (K1, K2, K3):
        assert key not in log and key[10:] not in log


@e2e
def test_bad_reloads_are_refused_and_the_old_config_keeps_running(tmp_path: Path) -> None:
    with SimulatorProcess(api_key=K1) as sim:
        good = exporter_config(sim.url, ["demo_catalog", "demo_media"])
        with ExporterProcess(good, api_key=K1, extra_args=LIFECYCLE) as e:
            e.wait_ready()
            wait_up(e, 1, **CATALOG)
            t0 = sample(e.metrics(), TS_NAME)

            def polls() -> int:
                return int(sim.state()["requests"].get("get_namespace", 0))

            bad_configs: list[tuple[str, str]] = [
                ("namespaces: [demo_catalog\n  oops: [", "YAML syntax error"),
                ("namespaces: [a/b]\n", "'/'"),
                ("mixpeek: {timeout_secnds: 3}\nnamespaces: [a]\n", "unknown key"),
                ("mixpeek: {api_key_file: /nonexistent/key}\nnamespaces: [a]\n",
                 "does not exist"),
                ("discovery: {enabled: false}\n", "no namespaces are listed"),
            ]
            for i, (text, says) in enumerate(bad_configs):
                write_atomic(e.config_path, text)
                if i % 2:
                    e.signal(signal.SIGHUP)
                    wait_until(lambda n=i: e.log_text().count("reload refused") >= n + 1, 10,
                               what="SIGHUP reload refused")
                else:
                    status, body = reload_post(e)
                    assert status == 500 and "reload refused" in body and says in body, body
                # The exposition is re-rendered in the background, a moment later.
                e.wait_for_sample(OK_NAME, lambda v: v == 0, timeout=5)
            # The running configuration is untouched: same namespaces, still being polled.
            before = polls()
            wait_until(lambda: polls() >= before + 4, 10, what="polls to continue")
            m = e.metrics()
            assert sample(m, "mixpeek_namespace_up", **CATALOG) == 1
            assert sample(m, "mixpeek_namespace_up", **MEDIA) == 1
            assert sample(m, TS_NAME) == t0
            assert e.proc.poll() is None

            # A good file again: accepted, and the metrics say so.
            e.write_config(good)
            status, body = reload_post(e)
            assert status == 200, body
            e.wait_for_sample(OK_NAME, lambda v: v == 1, timeout=5)
            assert sample(e.metrics(), TS_NAME) > t0
        log = e.log_text()
    assert log.count('msg="reload refused; keeping the running configuration"') == \
        len(bad_configs)
    assert "Traceback" not in log


@e2e
def test_namespaces_added_and_removed_and_settings_changed(tmp_path: Path) -> None:
    with SimulatorProcess(api_key=K1) as sim:
        cfg = exporter_config(sim.url, ["demo_catalog", "demo_media"])
        with ExporterProcess(cfg, api_key=K1, extra_args=LIFECYCLE) as e:
            e.wait_ready()
            wait_up(e, 1, **CATALOG)
            assert sample(e.metrics(), "mixpeek_namespace_documents", **CATALOG) is not None

            # Remove one, add one, and change connection settings (a new client is built).
            new = exporter_config(sim.url, ["demo_media", "demo_archive"], timeout_seconds=3,
                                  max_concurrency=2)
            e.write_config(new)
            status, body = reload_post(e)
            assert status == 200 and "1 namespaces added, 1 removed" in body, body
            wait_up(e, 1, timeout=5, **ARCHIVE)

            def catalog_gone() -> bool:
                text = e.scrape()
                return "demo_catalog" not in text and "ns_demo0001" not in text
            wait_until(catalog_gone, 5, what="demo_catalog to leave every family")
            m = e.metrics()
            assert sample(m, "mixpeek_namespace_up", **MEDIA) == 1
            assert sample(m, "mixpeek_namespace_buckets", **ARCHIVE) == 3
            # Polling goes on with the new client and the same key.
            before = sim.state()["requests"].get("get_namespace", 0)
            wait_until(lambda: sim.state()["requests"].get("get_namespace", 0) >= before + 4,
                       10, what="polls with the new client")
            assert sim.state()["requests"].get("401", 0) == 0


@e2e
def test_reload_storm_while_scraping() -> None:
    """Reloads racing each other (HTTP and SIGHUP) and scrapes: all answered, nothing breaks."""
    with SimulatorProcess(api_key=K1) as sim:
        cfg = exporter_config(sim.url, ["demo_catalog", "demo_media"])
        with ExporterProcess(cfg, api_key=K1, extra_args=LIFECYCLE) as e:
            e.wait_ready()
            stop = threading.Event()
            scrape_failures: list[Any] = []

            def scraper() -> int:
                n = 0
                while not stop.is_set():
                    status, _, _ = http("GET", e.url + "/metrics", timeout=5)
                    if status != 200:
                        scrape_failures.append(status)
                    n += 1
                return n

            with ThreadPoolExecutor(8) as pool:
                scrapers = [pool.submit(scraper) for _ in range(3)]
                try:
                    alternate = [cfg, exporter_config(sim.url, ["demo_media", "demo_archive"])]
                    results = []
                    for i in range(10):
                        e.write_config(alternate[i % 2])
                        results += list(pool.map(lambda _: reload_post(e)[0], range(4)))
                        e.signal(signal.SIGHUP)
                    # Signals that arrive together coalesce (POSIX), so there may be fewer
                    # SIGHUP reloads than signals, but at least one after the last signal.
                    wait_until(lambda: e.log_text().count('msg="configuration reloaded"') >= 41,
                               20, what="the reloads to finish")
                finally:
                    stop.set()
                scraped = sum(f.result() for f in scrapers)
            assert results == [200] * 40
            assert not scrape_failures and scraped > 0
            assert e.proc.poll() is None
            # A SIGHUP reload reads the file as it is when the signal is handled.
            e.write_config(exporter_config(sim.url, ["demo_catalog"]))
            e.signal(signal.SIGHUP)
            wait_up(e, 1, timeout=10, **CATALOG)
            wait_until(lambda: "demo_archive" not in e.scrape(), 5, what="demo_archive gone")
        assert "Traceback" not in e.log_text()


# -- in process: every step inside the reload's boundary -------------------------------------


class BrittleApp(App):
    """An App whose client cannot be built for a timeout of 7 s, as a value the schema lets
    through but the HTTP stack refuses."""

    def make_client(self, cfg: Config, creds: Credentials) -> MixpeekClient:
        if cfg.mixpeek.timeout_seconds == 7:
            raise OverflowError("absurd")
        return super().make_client(cfg, creds)


def test_a_client_that_cannot_be_built_refuses_the_reload() -> None:
    good = Config(namespaces=["demo_catalog"])
    bad = Config(mixpeek=MixpeekConfig(timeout_seconds=7), namespaces=["demo_catalog", "x"])
    answers = [(good, CREDS)]
    app = BrittleApp(lambda: answers[-1])
    try:
        answers.append((bad, CREDS))
        ok, message = app.reload()
        assert not ok and "reload refused" in message and "OverflowError" in message
        assert app.cfg is good and app.store.identifiers() == ["demo_catalog"]
        assert app.store.snapshot().reload_ok is False
        answers.append((good, CREDS))
        assert app.reload()[0] and app.store.snapshot().reload_ok is True
    finally:
        app.shutdown(grace=1)


def test_an_unusable_key_file_marks_the_reload_failed_until_a_good_one(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text(K1)
    cfg = Config(mixpeek=MixpeekConfig(api_key_file=key), namespaces=["demo_catalog"])
    app = App(lambda: (cfg, load_api_key(cfg.mixpeek)))
    try:
        app.reloader.refresh_key()  # the first look only notes the file
        for i, (text, ok) in enumerate([("", False), (K2, True)], start=1):
            key.write_text(text)
            os.utime(key, ns=(i * 10**9, i * 10**9))
            app.reloader.refresh_key()
            assert app.store.snapshot().reload_ok is ok, text
        assert app.creds.key == Secret(K2)
    finally:
        app.shutdown(grace=1)
