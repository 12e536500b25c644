"""What the poller logs about a namespace: one line per change, never one per poll, so a
namespace failing every minute (or answering with the same unusable field) logs once."""

from __future__ import annotations

import logging

from exporter.state.snapshot import NamespaceState, Transition

log = logging.getLogger("exporter.polling.poller")


def log_transition(t: Transition) -> None:
    """up <-> down, or a different failure reason."""
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


def invalid_fields(st: NamespaceState | None) -> tuple[str, ...]:
    """``NamespaceValues.invalid_fields`` of the last good answer, () when there is none."""
    return st.values.invalid_fields if st is not None and st.values is not None else ()


def log_invalid_fields(before: NamespaceState | None, after: NamespaceState | None) -> None:
    """The API field names a namespace's answers carry unusable values in, when they change.
    The names come from the API's answer: the log formatter escapes control characters."""
    old, new = invalid_fields(before), invalid_fields(after)
    if after is None or old == new or after.values is None:
        return
    who = {"namespace": after.identifier}
    if new:
        log.warning("namespace answer has fields the exporter cannot use; their series are "
                    "absent", extra={"fields": {**who, "invalid_fields": ",".join(new)}})
    else:
        log.info("namespace answer has no unusable fields any more", extra={"fields": who})
