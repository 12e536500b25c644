"""``/status``: the exporter's state for a person, without Prometheus.

Version, when the configuration was loaded, poll interval and request budget, counts of
namespaces per state, and a table of namespaces, failing first and then oldest data first:
name, id, up, reason, the last error message, and how old the last good poll and the metadata
are. The table is bounded (``limit`` rows, at most ``ROWS_MAX``) and filtered by the query
string, so the page stays small and quick with tens of thousands of namespaces::

    /status?q=catalog&state=failing&limit=50
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable
from dataclasses import dataclass

from exporter.settings.schema import Config
from exporter.state.snapshot import NamespaceState, Snapshot
from exporter.web.page import (
    Page,
    PageSource,
    QueryError,
    age,
    bad_request,
    document,
    query_params,
    text,
    when,
)

STATES = ("failing", "pending", "up")
"""A namespace is ``failing`` (its last poll failed), ``pending`` (not polled yet) or ``up``."""
ROWS_DEFAULT = 300
ROWS_MAX = 1000
Q_MAX = 128  # characters of the ``q`` filter
PARAMS = ("q", "state", "limit")


@dataclass(frozen=True)
class Filter:
    """Which rows to show: ``q`` a case-insensitive substring of the name, id or configured
    identifier ("" for any), ``state`` one of STATES or "all", at most ``limit`` rows."""

    q: str = ""
    state: str = "all"
    limit: int = ROWS_DEFAULT


def parse_filter(raw: str) -> Filter:
    """The filter a raw query string asks for. Raises ``QueryError`` naming the parameter."""
    params = query_params(raw, PARAMS)
    q = params.get("q", "").strip()
    if len(q) > Q_MAX:
        raise QueryError(f"q: at most {Q_MAX} characters, got {len(q)}")
    if not q.isprintable():
        raise QueryError("q: control characters are not accepted")
    state = params.get("state", "all") or "all"
    if state not in (*STATES, "all"):
        raise QueryError(f"state: must be one of all, {', '.join(STATES)}")
    limit_text = params.get("limit", "") or str(ROWS_DEFAULT)
    if not limit_text.isascii() or not limit_text.isdigit() or len(limit_text) > 6 \
            or not 1 <= int(limit_text) <= ROWS_MAX:
        raise QueryError(f"limit: must be a whole number from 1 to {ROWS_MAX}")
    return Filter(q, state, int(limit_text))


def state_of(st: NamespaceState) -> str:
    """One of STATES."""
    return "pending" if st.up is None else "up" if st.up else "failing"


def order(st: NamespaceState) -> tuple[int, float, str, str]:
    """Failing first; then the oldest last good poll first (never polled is oldest)."""
    seen = st.last_success if st.last_success is not None else -math.inf
    return (0 if st.up is False else 1, seen, st.namespace_name, st.identifier)


def _matches(st: NamespaceState, needle: str) -> bool:
    return any(needle in s.casefold()
               for s in (st.namespace_name, st.namespace_id, st.identifier))


def select(states: Iterable[NamespaceState], f: Filter
           ) -> tuple[dict[str, int], int, list[NamespaceState]]:
    """(namespaces per state over all of ``states``, how many match ``f``, the first
    ``f.limit`` of those in ``order``). O(n log limit): no full sort."""
    counts = dict.fromkeys(STATES, 0)
    needle = f.q.casefold()
    matching: list[NamespaceState] = []
    for st in states:
        s = state_of(st)
        counts[s] += 1
        if (f.state in ("all", s)) and (not needle or _matches(st, needle)):
            matching.append(st)
    return counts, len(matching), heapq.nsmallest(f.limit, matching, key=order)


def status_page(source: PageSource, query: str) -> Page:
    """The page for a raw query string; 400 with the reason for a query it cannot use."""
    try:
        f = parse_filter(query)
    except QueryError as e:
        return bad_request(f"bad query string for /status: {e}")
    snap = source.snapshot()
    running = source.running()
    now = source.clock()
    counts, matched, rows = select(snap.namespaces, f)
    body = "\n".join((
        _summary(snap, running.config, now),
        _counts(counts),
        _form(f),
        f"<p id=\"shown\">Showing {len(rows)} of {matched} matching namespaces"
        f" ({sum(counts.values())} in all); failing first, then the oldest data.</p>",
        _table(rows, snap.stale_after, now),
    ))
    return Page(200, document("Mixpeek exporter: status", body))


def _seconds(value: float) -> str:
    return f"{value:g}s" if value < 120 else f"{value:g}s ({age(value)})"


def _summary(snap: Snapshot, cfg: Config, now: float) -> str:
    loaded = when(snap.reload_success_time, now, "unknown")
    if not snap.reload_ok:
        loaded += " (the last reload was refused and this configuration kept; see the log)"
    interval = _seconds(cfg.poll.interval_seconds)
    effective = snap.exporter.poll_interval
    if effective is not None and effective > cfg.poll.interval_seconds:
        interval += f", stretched to {_seconds(round(effective, 1))} by the request budget"
    rpm = cfg.mixpeek.max_requests_per_minute
    budget = "unlimited" if rpm <= 0 else f"{rpm:g} requests a minute, retries included"
    if snap.rate_limit_remaining is not None:
        budget += f"; the API last said {snap.rate_limit_remaining:g} remaining"
    cycle = f"{snap.cycles_completed} completed"
    if snap.cycle_duration is not None:
        cycle += f", the last took {snap.cycle_duration:.3g}s"
    items = [("Version", text(snap.version_labels[0])
              + f" (Python {text(snap.version_labels[1])})"),
             ("Configuration loaded", loaded),
             ("Poll interval", interval),
             ("Request budget", budget),
             ("Values stale after", _seconds(snap.stale_after)),
             ("Poll cycles", cycle)]
    if cfg.discovery.enabled:
        ex = snap.exporter
        state = {True: "working", False: "failing", None: "not run yet"}[ex.discovery_up]
        if ex.discovery_up is False and ex.discovery_error:
            state += f" ({text(ex.discovery_error, 300)})"
        found = when(ex.discovery_last_success, now)
        limit = " (stopped at discovery.max_namespaces)" if ex.discovery_limit_reached else ""
        items.append(("Discovery", f"{state}; last listed {found}{limit}"))
    rows = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in items)
    return f"<dl id=\"summary\">{rows}</dl>"


def _counts(counts: dict[str, int]) -> str:
    """Counts over every namespace, whatever the filter; each links to its state's rows."""
    links = [f'<a href="status">all: {sum(counts.values())}</a>']
    links += [f'<a href="status?state={s}" id="count-{s}">{s}: {counts[s]}</a>'
              for s in STATES]
    return "<p id=\"counts\">" + " &middot; ".join(links) + "</p>"


def _form(f: Filter) -> str:
    options = "".join(
        f'<option value="{s}"{" selected" if s == f.state else ""}>{s}</option>'
        for s in ("all", *STATES))
    return (
        '<form method="get" action="status">'
        f'<label>name or id contains <input name="q" maxlength="{Q_MAX}" '
        f'value="{text(f.q, Q_MAX)}"></label> '
        f'<label>state <select name="state">{options}</select></label> '
        f'<label>rows <input name="limit" type="number" min="1" max="{ROWS_MAX}" '
        f'value="{f.limit}"></label> <button type="submit">filter</button></form>'
    )


_UP = {"up": "yes", "failing": "no", "pending": "pending"}
_HEAD = ("<tr><th>name</th><th>id</th><th>up</th><th>reason</th><th>last error</th>"
         "<th>last good poll</th><th>metadata</th></tr>")


def _table(rows: list[NamespaceState], stale_after: float, now: float) -> str:
    lines = [f'<table id="namespaces"><thead>{_HEAD}</thead><tbody>']
    for st in rows:
        s = state_of(st)
        seen = when(st.last_success, now)
        until = st.fresh_until(stale_after)
        if until is not None and now > until:
            seen = f'<span class="stale">{seen} (stale)</span>'
        lines.append(
            f'<tr class="{s}" data-state="{s}">'
            f'<td class="name">{text(st.namespace_name) or "&mdash;"}</td>'
            f'<td class="id">{text(st.namespace_id) or "&mdash;"}</td>'
            f'<td class="up">{_UP[s]}</td>'
            f'<td class="reason">{text(st.reason or "")}</td>'
            f'<td class="message">{text(st.message, 500)}</td>'
            f'<td class="age">{seen}</td>'
            f'<td class="metadata">{when(st.metadata_at, now)}</td></tr>')
    lines.append("</tbody></table>")
    return "\n".join(lines)
