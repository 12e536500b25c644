"""What one logical request to the Mixpeek API produced: a value, or the reason there is none.

Pure data: no HTTP here, so the state can hold results without knowing the transport.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from exporter.mixpeek.models import NamespaceValues

V = TypeVar("V")

# The closed set of reasons a poll can fail with, as published in the `reason` label.
# ``exporter_error`` is a fault on the exporter's side: an unexpected exception inside one
# request's boundary (a bug, or a key that cannot be sent). Every poll ends in a Result.
REASONS = (
    "timeout", "connection", "unauthorized", "forbidden", "not_found", "rate_limited",
    "server_error", "invalid_response", "client_error", "exporter_error",
)


# No slots=True: with Generic, a frozen slotted dataclass breaks when built through the
# subscripted alias (PollResult(...)): its __setattr__ refers to the pre-slots class.
@dataclass(frozen=True)
class Result(Generic[V]):
    """What one logical request (retries included) produced: the parsed value, or why not."""

    identifier: str  # the namespace asked for, or the endpoint for list/batch requests
    values: V | None
    reason: str | None  # None on success, else one of REASONS
    message: str
    status: int | None
    attempts: int
    duration: float

    @property
    def ok(self) -> bool:
        return self.reason is None


PollResult = Result[NamespaceValues]


def failure(identifier: str, reason: str, message: str, status: int | None = None,
            attempts: int = 0, duration: float = 0.0) -> Result[V]:
    """A Result without a value; ``reason`` must be one of REASONS."""
    return Result(identifier, None, reason, message, status, attempts, duration)
