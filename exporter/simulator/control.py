"""The control API under ``/_sim/``: tests change what the simulated API says while it runs.

No auth: the simulator listens on loopback only. Answers are JSON; a bad request gets 400 with
``{"error": "<what is wrong>"}``.

- ``GET /_sim/state``: every namespace as Get Namespace would answer, the faults set, and the
  counters of ``GET /_sim/stats``.
- ``GET /_sim/stats``: ``requests`` (by route and by status code), ``rate_limit`` (``limit``,
  ``refused``: requests answered 429 by the limit, ``in_window``), ``auth_headers_seen``,
  ``in_flight``, ``max_in_flight``. ``POST /_sim/reset`` zeroes them.
- ``POST /_sim/config``: ``rate_limit_rpm``, ``latency_ms``, ``stats_batch``, ``list_shape``,
  ``api_key``.
- ``GET|PUT|PATCH|DELETE /_sim/namespaces/{id or name}``. PUT stores a whole document. PATCH
  sets fields of the stored document (any field, e.g. ``namespace_ready``,
  ``document_count_complete``, ``expires_at``, ``clone_status``), plus: ``_fail`` (a fault, see
  faults.py; null clears), ``_documents_per_second`` (growth), ``_raw`` (fields sent verbatim
  over the response, bypassing the rules in state.py; merged; null clears) and ``_omit`` (field
  names left out of the response; added; null clears).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from exporter.simulator import faults
from exporter.simulator.state import Namespace, SimState

if TYPE_CHECKING:
    from exporter.simulator.handler import SimHandler


class ControlError(ValueError):
    """A control request that cannot be applied; answered 400 with this message."""


def handle(h: SimHandler, method: str, path: str, body: Any) -> None:
    st = h.state
    parts = [unquote(p) for p in path.split("/")[2:]]
    try:
        if method == "GET" and parts == ["state"]:
            with st.lock:
                out = {"namespaces": {k: ns.document() for k, ns in st.namespaces.items()},
                       "faults": {k: ns.fail for k, ns in st.namespaces.items() if ns.fail},
                       **st.counters()}
            h.send_json(200, out)
        elif method == "GET" and parts == ["stats"]:
            with st.lock:
                h.send_json(200, st.counters())
        elif method == "POST" and parts == ["reset"]:
            with st.lock:
                st.reset_counters()
            h.send_json(200, {"ok": True})
        elif method == "POST" and parts == ["config"]:
            _configure(st, _object(body))
            h.send_json(200, {"ok": True})
        elif len(parts) == 2 and parts[0] == "namespaces" and parts[1]:
            h.send_json(*_namespace(st, method, parts[1], body))
        else:
            h.send_json(404, {"error": f"no control route {method} {path}"})
    except ControlError as e:
        h.send_json(400, {"error": str(e)})


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ControlError("a JSON object body is required")
    return dict(body)


def _configure(st: SimState, body: dict[str, Any]) -> None:
    unknown = set(body) - {"rate_limit_rpm", "latency_ms", "stats_batch", "list_shape",
                           "api_key"}
    if unknown:
        raise ControlError(f"unknown config keys: {', '.join(sorted(unknown))}")
    rpm = body.get("rate_limit_rpm", 0)
    latency = body.get("latency_ms", 0)
    if isinstance(rpm, bool) or not isinstance(rpm, int | float) or rpm < 0 or rpm != int(rpm):
        raise ControlError("rate_limit_rpm must be a whole number >= 0 (0: no limit)")
    if isinstance(latency, bool) or not isinstance(latency, int | float) or latency < 0:
        raise ControlError("latency_ms must be a number >= 0")
    if body.get("list_shape", "schema") not in ("schema", "legacy"):
        raise ControlError("list_shape must be 'schema' or 'legacy'")
    if not isinstance(body.get("stats_batch", True), bool) or \
            not isinstance(body.get("api_key", ""), str):
        raise ControlError("stats_batch must be a boolean and api_key a string")
    with st.lock:
        if "rate_limit_rpm" in body:
            st.set_rate_limit(int(rpm))
        if "latency_ms" in body:
            st.latency = float(latency) / 1000.0
        if "stats_batch" in body:
            st.stats_batch = body["stats_batch"]
        if "list_shape" in body:
            st.list_shape = body["list_shape"]
        if "api_key" in body:
            st.api_key = body["api_key"]


def _namespace(st: SimState, method: str, ident: str, body: Any) -> tuple[int, Any]:
    with st.lock:
        ns = st.lookup(ident)
        if method == "PUT":
            doc = _object(body)
            doc.setdefault("namespace_id", ident)
            if not isinstance(doc["namespace_id"], str):
                raise ControlError("namespace_id must be a string")
            st.namespaces[doc["namespace_id"]] = Namespace(doc)
            st.changed()
            return 200, doc
        if ns is None:
            return 404, {"error": f"no namespace {ident!r}"}
        if method == "GET":
            return 200, {"stored": ns.doc, "document": ns.document(), "stats": ns.stats(),
                         "fail": ns.fail, "raw": ns.raw, "omit": sorted(ns.omit),
                         "documents_per_second": ns.growth}
        if method == "DELETE":
            del st.namespaces[ns.ns_id]
            st.changed()
            return 200, {"deleted": ident}
        if method == "PATCH":
            _patch(ns, _object(body))
            st.changed()
            return 200, ns.document()
    return 405, {"error": f"{method} not supported here"}


def _patch(ns: Namespace, body: dict[str, Any]) -> None:
    special = {k: body.pop(k) for k in list(body) if k.startswith("_")}
    unknown = set(special) - {"_fail", "_documents_per_second", "_raw", "_omit"}
    if unknown:
        raise ControlError(f"unknown control keys: {', '.join(sorted(unknown))}")
    problem = faults.check(special.get("_fail"))
    if problem:
        raise ControlError(problem)
    growth = special.get("_documents_per_second", 0)
    if isinstance(growth, bool) or not isinstance(growth, int | float):
        raise ControlError("_documents_per_second must be a number")
    raw = special.get("_raw")
    if raw is not None and not isinstance(raw, dict):
        raise ControlError("_raw must be an object of fields (null clears)")
    omit = special.get("_omit")
    if omit is not None and not (isinstance(omit, list) and all(isinstance(k, str)
                                                               for k in omit)):
        raise ControlError("_omit must be a list of field names (null clears)")
    if "namespace_id" in body and body["namespace_id"] != ns.ns_id:
        raise ControlError("namespace_id cannot change; PUT a new namespace instead")

    if "document_count" in body or "_documents_per_second" in special:
        ns.freeze_growth()
    ns.doc.update(body)
    if "_fail" in special:
        ns.fail = special["_fail"]
    if "_documents_per_second" in special:
        ns.growth = float(growth)
    if "_raw" in special:
        ns.raw = {**ns.raw, **raw} if raw is not None else {}
    if "_omit" in special:
        ns.omit = ns.omit | set(omit) if omit is not None else set()
