"""Scheduling: one APScheduler job runs a poll cycle every interval; a cycle polls every
namespace concurrently (up to ``max_concurrency``) through the client, and hands each result
to the store as soon as it arrives, so one slow or failing namespace never holds up the rest.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from datetime import datetime, timedelta
from typing import TypeVar

from apscheduler.schedulers.background import BackgroundScheduler

from exporter.mixpeek.client import MixpeekClient
from exporter.mixpeek.result import PollResult
from exporter.state.store import Store, Transition

log = logging.getLogger(__name__)

JOB_ID = "poll-cycle"
BATCH = 100  # stats/batch takes at most 100 ids
T = TypeVar("T")
R = TypeVar("R")


def log_transition(t: Transition) -> None:
    """One line per state change, so a namespace failing every minute logs once, not hourly."""
    st = t.state
    who = {"namespace": st.identifier}
    if st.up:
        if t.previous.up is False:
            log.info("namespace recovered", extra={"fields": {
                **who, "previous_reason": t.previous.reason}})
        else:
            log.info("namespace polled", extra={"fields": {
                **who, "namespace_id": st.namespace_id, "namespace_name": st.namespace_name}})
    else:
        level = logging.ERROR if st.reason in ("unauthorized", "forbidden") else logging.WARNING
        log.log(level, "namespace poll failing", extra={"fields": {
            **who, "reason": st.reason, "error": st.message}})


class Poller:
    def __init__(self, client: MixpeekClient, store: Store, interval: float,
                 max_concurrency: int, stop: threading.Event | None = None,
                 on_result: Callable[[Transition], None] = log_transition,
                 counts_source: str = "namespace", metadata_interval: float = 600.0,
                 before_cycle: Callable[[], None] | None = None) -> None:
        self.client = client
        self.store = store
        self.interval = interval
        self.max_concurrency = max_concurrency
        self._on_result = on_result
        self._executor = ThreadPoolExecutor(max_workers=max_concurrency,
                                            thread_name_prefix="poll")
        self._scheduler = BackgroundScheduler(daemon=True, timezone="UTC")
        self._stop = stop or threading.Event()
        self._cycle_lock = threading.Lock()
        self.counts_source = counts_source
        self.metadata_interval = metadata_interval
        self.stats_batch_available = True
        self.before_cycle = before_cycle
        self._overrun = False

    # -- one cycle --------------------------------------------------------------------------

    def poll_one(self, identifier: str) -> PollResult:
        result = self.client.get_namespace(identifier)
        if self._stop.is_set() and not result.ok:
            return result  # an aborted request at shutdown is not the API's fault
        transition = self.store.apply(result)
        if transition is not None:
            self._on_result(transition)
        return result

    def run_cycle(self) -> list[PollResult]:
        with self._cycle_lock:
            started = time.monotonic()
            if self.before_cycle is not None:
                try:
                    self.before_cycle()
                except Exception:
                    log.exception("preparing the poll cycle failed; polling the known set")
            idents = self.store.identifiers()
            if self.counts_source == "stats_batch" and self.stats_batch_available:
                results = self._batched_cycle(idents)
            else:
                results = self._run_all(self.poll_one, idents)
            if not self._stop.is_set():
                elapsed = time.monotonic() - started
                self.store.cycle_done(elapsed)
                self._report_overrun(elapsed)
            return results

    def _run_all(self, fn: Callable[[T], R], items: list[T]) -> list[R]:
        futures: list[Future[R]] = []
        for item in items:
            if self._stop.is_set():
                break
            try:
                futures.append(self._executor.submit(fn, item))
            except RuntimeError:  # executor shut down underneath us
                break
        # Not a plain wait(futures): a future cancelled by shutdown(cancel_futures=True) stays
        # CANCELLED and never wakes wait() (CPython), so SIGTERM mid-cycle hung the exit.
        pending = futures
        while pending:
            pending = [f for f in wait(pending, timeout=0.25).not_done if not f.cancelled()]
        out = []
        for f in futures:
            if f.cancelled():
                continue
            if f.exception() is not None:
                log.error("poll raised unexpectedly", exc_info=f.exception())
            else:
                out.append(f.result())
        return out

    # -- batched counts (poll.counts_source: stats_batch) -------------------------------

    def _batched_cycle(self, idents: list[str]) -> list[PollResult]:
        """Full Get Namespace only where metadata is due (or the id is unknown); counts for
        everyone else in batches of 100, so a cycle costs about N/100 requests."""
        self.store.set_exporter(stats_batch_available=True)
        now = time.time()
        full, batched = [], []
        for ident in idents:
            st = self.store.state(ident)
            if st is None:
                continue
            due = (st.metadata_at is None or not st.namespace_id
                   or now - st.metadata_at >= self.metadata_interval)
            (full if due else batched).append(ident)
        results = self._run_all(self.poll_one, full)
        chunks = [batched[i:i + BATCH] for i in range(0, len(batched), BATCH)]
        leftovers = [r for rs in self._run_all(self._poll_batch, chunks) for r in rs]
        if leftovers:  # stats/batch is not offered: these need a full poll this cycle
            results += self._run_all(self.poll_one, leftovers)
        return results

    def _poll_batch(self, idents: list[str]) -> list[str]:
        """Poll one batch; returns identifiers still to poll the classic way (fallback)."""
        if not self.stats_batch_available:
            return idents
        by_id: dict[str, str] = {}
        for ident in idents:
            st = self.store.state(ident)
            if st is not None and st.namespace_id:
                by_id[st.namespace_id] = ident
        out = self.client.stats_batch(list(by_id))
        if out.status in (404, 405):
            if self.stats_batch_available:
                self.stats_batch_available = False
                log.warning("the API does not offer POST /v1/namespaces/stats/batch "
                            f"(HTTP {out.status}); polling counts with Get Namespace instead",
                            extra={"fields": {"status": out.status}})
                self.store.set_exporter(stats_batch_available=False)
            return idents
        for ns_id, ident in by_id.items():
            if out.ok:
                counts = out.values.get(ns_id)
                if counts is not None:
                    t = self.store.apply_counts(ident, counts, out.duration)
                else:  # "namespaces the caller cannot see are omitted": gone for us
                    t = self.store.apply(PollResult(
                        ident, None, "not_found", "absent from stats/batch answer", out.status,
                        out.attempts, out.duration))
            else:
                t = self.store.apply(PollResult(ident, None, out.reason, out.message,
                                                out.status, out.attempts, out.duration))
            if t is not None:
                self._on_result(t)
        return []

    def _report_overrun(self, elapsed: float) -> None:
        overrun = elapsed > self.interval
        if overrun != self._overrun:
            self._overrun = overrun
            fields = {"cycle_seconds": round(elapsed, 3), "interval_seconds": self.interval,
                      "namespaces": len(self.store.identifiers())}
            if overrun:
                log.warning("poll cycle took longer than the interval; the next cycles run "
                            "back to back and values are older than interval_seconds",
                            extra={"fields": fields})
            else:
                log.info("poll cycle fits in the interval again", extra={"fields": fields})

    def _job(self) -> None:
        try:
            self.run_cycle()
        except Exception:
            log.exception("poll cycle failed; the next one runs on schedule")

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        self._scheduler.add_job(
            self._job, "interval", seconds=self.interval, id=JOB_ID,
            next_run_time=datetime.now().astimezone(),
            max_instances=1, coalesce=True, misfire_grace_time=None)
        self._scheduler.start()

    def swap_client(self, client: MixpeekClient, max_concurrency: int) -> None:
        """New connection settings from a reload; in-flight polls finish on the old client."""
        old, self.client = self.client, client
        if max_concurrency != self.max_concurrency:
            old_pool = self._executor
            self._executor = ThreadPoolExecutor(max_workers=max_concurrency,
                                                thread_name_prefix="poll")
            self.max_concurrency = max_concurrency
            old_pool.shutdown(wait=False)
        threading.Thread(target=self._close_later, args=(old,), daemon=True).start()

    def _close_later(self, client: MixpeekClient) -> None:
        with self._cycle_lock:  # the cycle using it has finished
            client.close()

    def reschedule(self, interval: float) -> None:
        if interval != self.interval:
            self.interval = interval
            self._scheduler.reschedule_job(JOB_ID, trigger="interval", seconds=interval)

    def trigger_now(self) -> None:
        """Run a cycle as soon as possible (after a reload added namespaces)."""
        job = self._scheduler.get_job(JOB_ID)
        if job is not None:
            job.modify(next_run_time=datetime.now().astimezone() + timedelta(milliseconds=10))

    def stop(self, grace: float) -> bool:
        """Stop scheduling, abort waits, let in-flight requests finish within ``grace``."""
        self._stop.set()
        try:
            self._scheduler.shutdown(wait=False)
        except Exception:  # noqa: S110 - not started (e.g. --once)
            pass
        self._executor.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + grace
        done = self._cycle_lock.acquire(timeout=max(0.0, deadline - time.monotonic()))
        if done:
            self._cycle_lock.release()
        return done
