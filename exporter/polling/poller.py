"""Scheduling: one APScheduler job runs a poll cycle every interval; a cycle brings every
namespace's counts, concurrently (up to ``max_concurrency``), through the client, and hands
each result to the store as soon as it arrives, so one slow or failing namespace never holds
up the rest.

With ``counts_source: stats_batch`` a cycle is counts first: every namespace whose id is known
gets its counts from stats/batch (100 a request) from the first cycle; only those whose id is
not known yet get a full Get Namespace in the cycle. Metadata (the full Get Namespace) is
spread over ``metadata_interval_seconds`` on a lane of its own (polling.metadata), behind
counts in the request budget, and the cycle does not wait for it.

Every namespace polled gets a verdict in the store: the client turns every fault into a
Result, and if storing a result fails, the namespace is stored as down with ``exporter_error``.
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
from exporter.mixpeek.result import PollResult, failure
from exporter.polling.batch import BatchEndpoint, endpoint_missing
from exporter.polling.budget import BATCH, metadata_room
from exporter.polling.events import log_invalid_fields, log_transition
from exporter.polling.metadata import MetadataLane
from exporter.ratelimit import Priority
from exporter.settings.identifiers import identifier_labels
from exporter.state.store import Store, Transition

log = logging.getLogger(__name__)

JOB_ID = "poll-cycle"
T = TypeVar("T")
R = TypeVar("R")


def lane_threads(max_concurrency: int) -> int:
    """Threads of the metadata lane: half the counts' (at least one)."""
    return max(1, max_concurrency // 2)


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
        self.batch = BatchEndpoint(lambda up: store.set_exporter(stats_batch_available=up))
        self._metadata = MetadataLane(self._poll_metadata, metadata_interval,
                                      lane_threads(max_concurrency))
        self.before_cycle = before_cycle
        self._overrun = False

    # -- one cycle --------------------------------------------------------------------------

    @property
    def metadata_interval(self) -> float:
        return self._metadata.spread.metadata_interval

    @metadata_interval.setter
    def metadata_interval(self, seconds: float) -> None:
        self._metadata.spread.metadata_interval = seconds

    def poll_one(self, identifier: str, priority: Priority = Priority.COUNTS) -> PollResult:
        """A full Get Namespace: counts and metadata, stored."""
        result = self._verified(identifier, self.client.get_namespace(identifier,
                                                                      priority=priority))
        if self._stop.is_set() and not result.ok:
            return result  # an aborted request at shutdown is not the API's fault
        self._store(identifier, lambda: self.store.apply(result))
        return result

    def _verified(self, identifier: str, result: PollResult) -> PollResult:
        """``result``, or invalid_response when its namespace_id is another namespace's."""
        v = result.values
        if not result.ok or v is None:
            return result
        clash = self._id_clash(identifier, v.namespace_id, v.namespace_name)
        if clash is None:
            return result
        return failure(identifier, "invalid_response", clash, result.status, result.attempts,
                       result.duration)

    def _id_clash(self, identifier: str, ns_id: str, name: str) -> str | None:
        """Why ``identifier`` (asked by name) cannot have ``ns_id``: the namespace polled by
        that id answered with another name. The client checks the name asked for, never the
        id, and batched counts are matched by id, so one namespace's counts would be published
        under two names. An identifier that is an id owns it (the client checked that); None
        when there is no clash or no name to tell yet."""
        if not ns_id or not name or identifier_labels(identifier)[0] or ns_id == identifier:
            return None
        owner = self.store.state(ns_id)
        if owner is None or not owner.namespace_name or \
                owner.namespace_name.casefold() == name.casefold():
            return None
        return (f"the answer's namespace_id {ns_id[:80]!r} is namespace "
                f"{owner.namespace_name[:80]!r}, not {name[:80]!r}")

    def _poll_metadata(self, identifier: str) -> None:
        self.poll_one(identifier, Priority.METADATA)

    def _store(self, identifier: str, write: Callable[[], Transition | None]) -> None:
        """Apply one verdict; if that raises, the namespace is still stored as down."""
        before = self.store.state(identifier)
        try:
            transition = write()
        except Exception as e:
            log.debug("storing a poll result raised", exc_info=True,
                      extra={"fields": {"namespace": identifier}})
            try:
                transition = self.store.apply(failure(
                    identifier, "exporter_error",
                    f"exporter error while storing the result: {type(e).__name__}"))
            except Exception:
                log.exception("storing a failed poll raised too; the namespace keeps its state",
                              extra={"fields": {"namespace": identifier}})
                return
        if transition is not None:
            self._on_result(transition)
        log_invalid_fields(before, self.store.state(identifier))

    def run_cycle(self, full: bool = False) -> list[PollResult]:
        """One cycle; returns the results of the full Get Namespace calls it made. ``full``:
        a full Get Namespace for every namespace, counts and metadata (``--once``)."""
        with self._cycle_lock:
            started = time.monotonic()
            if self.before_cycle is not None:
                try:
                    self.before_cycle()
                except Exception:
                    log.exception("preparing the poll cycle failed; polling the known set")
            idents = self.store.identifiers()
            if self.counts_source == "stats_batch" and not full and self.batch.worth_trying():
                results = self._batched_cycle(idents)
            else:
                results = self._run_all(self.poll_one, idents)
            if not self._stop.is_set():
                elapsed = time.monotonic() - started
                self.store.cycle_done(elapsed)
                self._report_overrun(elapsed)
            return results

    def _run_all(self, fn: Callable[[T], R], items: list[T],
                 then: Callable[[], None] | None = None) -> list[R]:
        """``fn`` over ``items`` on the counts threads; ``then`` runs once all are queued."""
        futures: list[Future[R]] = []
        for item in items:
            if self._stop.is_set():
                break
            try:
                futures.append(self._executor.submit(fn, item))
            except RuntimeError:  # executor shut down underneath us
                break
        if then is not None:
            then()
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
        """Counts in batches of 100 for every namespace whose id is known, a full Get
        Namespace for the others (their id comes with it); the metadata lane gets its share.
        A cycle costs about N/100 requests plus the namespaces without an id."""
        if self.batch.available:
            self.store.set_exporter(stats_batch_available=True)
        known, unknown = [], []
        for ident in idents:
            st = self.store.state(ident)
            if st is not None:
                (known if st.namespace_id else unknown).append(ident)
        chunks = [known[i:i + BATCH] for i in range(0, len(known), BATCH)]
        work: list[str | list[str]] = [*chunks, *unknown]
        # Counts are queued first, so they are first in line for the budget too.
        results = self._run_all(self._counts, work, then=lambda: self._queue_metadata(
            known, len(work)))
        return [r for rs in results for r in rs]

    def _counts(self, item: str | list[str]) -> list[PollResult]:
        if isinstance(item, str):
            return [self.poll_one(item)]
        # stats/batch not offered: these need a full poll, in this cycle
        return [self.poll_one(i) for i in self._poll_batch(item)]

    def _queue_metadata(self, known: list[str], counts_requests: int) -> None:
        def fetched(ident: str) -> bool:
            st = self.store.state(ident)
            return st is not None and st.metadata_at is not None
        room = metadata_room(self.client.bucket.limit_per_minute(), self.interval,
                             counts_requests)
        self._metadata.queue(known, fetched, time.monotonic(), self.interval, room)

    def wait_metadata(self, timeout: float | None = None) -> bool:
        """Wait until the metadata calls queued so far have ended; False on timeout."""
        return not wait(self._metadata.pending(), timeout=timeout).not_done

    def _poll_batch(self, idents: list[str]) -> list[str]:
        """Poll one batch; returns identifiers still to poll the classic way (fallback).
        Whatever goes wrong, each namespace of the batch gets the verdict."""
        try:
            return self._poll_batch_unguarded(idents)
        except Exception as e:
            log.debug("polling a batch raised", exc_info=True)
            message = f"exporter error while polling a batch: {type(e).__name__}"
            for ident in idents:
                self._store(ident, lambda i=ident: self.store.apply(
                    failure(i, "exporter_error", message)))
            return []

    def _poll_batch_unguarded(self, idents: list[str]) -> list[str]:
        if not self.batch.worth_trying():
            return idents
        # One-to-many: a namespace configured by name and by id is two identifiers with one
        # id, and each of them gets the batch's verdict.
        by_id: dict[str, list[str]] = {}
        for ident in idents:
            st = self.store.state(ident)
            if st is not None and st.namespace_id:
                by_id.setdefault(st.namespace_id, []).append(ident)
        out = self.client.stats_batch(list(by_id))
        if endpoint_missing(out, list(by_id)) or (not self.batch.available and not out.ok):
            self.batch.missing(out.status, self.interval, self.metadata_interval)
            return idents
        if out.status in (404, 405):
            return idents  # about a namespace, not the endpoint: each gets its own verdict
        self.batch.answered()
        for ns_id, ident in ((i, n) for i, ns in by_id.items() for n in ns):
            st = self.store.state(ident)
            clash = None if st is None else self._id_clash(ident, ns_id, st.namespace_name)
            if clash is not None:
                verdict = failure(ident, "invalid_response", clash, out.status, out.attempts,
                                  out.duration)
            elif out.ok and out.values is not None:
                counts = out.values.get(ns_id)
                if counts is not None:
                    self._store(ident, lambda i=ident, c=counts: self.store.apply_counts(
                        i, c, out.duration))
                    continue
                # "namespaces the caller cannot see are omitted": gone for us
                verdict = failure(ident, "not_found", "absent from stats/batch answer",
                                  out.status, out.attempts, out.duration)
            else:
                verdict = failure(ident, out.reason or "exporter_error", out.message,
                                  out.status, out.attempts, out.duration)
            self._store(ident, lambda v=verdict: self.store.apply(v))
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
            self._metadata.resize(lane_threads(max_concurrency))
            old_pool.shutdown(wait=False)
        threading.Thread(target=self._close_later, args=(old, self._metadata.pending()),
                         daemon=True).start()

    def _close_later(self, client: MixpeekClient, metadata: list[Future[None]]) -> None:
        with self._cycle_lock:  # the cycle using it has finished
            wait(metadata)  # and so have the metadata calls that may be using it
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
        self._metadata.shutdown()
        deadline = time.monotonic() + grace
        done = self._cycle_lock.acquire(timeout=max(0.0, deadline - time.monotonic()))
        if done:
            self._cycle_lock.release()
        return done and self.wait_metadata(max(0.0, deadline - time.monotonic()))
