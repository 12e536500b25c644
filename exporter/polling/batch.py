"""Whether POST /v1/namespaces/stats/batch is offered, learnt from its answers.

A 404/405 that names none of the batch's namespaces means the endpoint is missing: counts then
come from Get Namespace, and the endpoint is tried again after the poll interval, doubling up
to ``metadata_interval_seconds`` (an API rolling out, or a proxy briefly misrouting, is not a
verdict for the process's lifetime). The first good answer after that makes it available
again. Each change is logged once and published (``stats_batch_available``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from exporter.mixpeek.result import Result

log = logging.getLogger(__name__)


def endpoint_missing(out: Result[object], ids: list[str]) -> bool:
    """A 404/405 from stats/batch whose error names none of ``ids``: the endpoint itself is
    not there. A 404 naming a namespace of the batch is about that namespace."""
    if out.status not in (404, 405):
        return False
    return not any(i in out.message for i in ids)


class BatchEndpoint:
    """``available`` and when to try a missing endpoint again; ``publish(available)`` is
    called on every change (the store's ``stats_batch_available``)."""

    def __init__(self, publish: Callable[[bool], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.available = True
        self._publish = publish
        self._clock = clock
        self._retry_at = 0.0  # clock() when a missing endpoint is tried again
        self._backoff = 0.0  # seconds until that try; doubles up to the metadata interval

    def worth_trying(self) -> bool:
        """Available, or missing but due to be tried again."""
        return self.available or self._clock() >= self._retry_at

    def missing(self, status: int | None, interval: float, metadata_interval: float) -> None:
        self._backoff = min(max(self._backoff * 2, interval), max(metadata_interval, interval))
        self._retry_at = self._clock() + self._backoff
        if self.available:
            self.available = False
            log.warning("the API does not offer POST /v1/namespaces/stats/batch "
                        f"(HTTP {status}); polling counts with Get Namespace instead and "
                        "trying it again later", extra={"fields": {
                            "status": status, "retry_seconds": round(self._backoff)}})
            self._publish(False)

    def answered(self) -> None:
        """A batch was answered: the endpoint is there."""
        if not self.available:
            self.available, self._backoff = True, 0.0
            log.info("POST /v1/namespaces/stats/batch answers again; counts come in batches")
            self._publish(True)
