"""Error bodies and the ways a namespace's answer can go wrong (``_fail`` in the control API).

A fault is a dict set per namespace: ``{"status": 500}`` answers with that status and the
error envelope (``"retry_after"``, ``"message"``, ``"kind": "quota"`` for a 403 quota error,
``"shape": "fastapi"`` for a 422), or ``{"mode": ...}`` with one of ``MODES`` breaks the
exchange itself. ``"count": n`` clears the fault after n answers.
"""

from __future__ import annotations

import json
import socket
import struct
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from exporter.simulator.handler import SimHandler

# The error type per status, as the docs' errors table names them (troubleshoot/errors.mdx).
ERROR_TYPES = {400: "BadRequestError", 401: "UnauthorizedError", 403: "ForbiddenError",
               404: "NotFoundError", 409: "AlreadyExistsError", 422: "ValidationError",
               429: "TooManyRequestsError", 500: "InternalServerError",
               502: "BadGatewayError", 503: "InferenceServiceUnavailableError"}

MODES = ("hang", "reset", "drip", "invalid_json", "wrong_shape", "wrong_types", "huge",
         "redirect")


def envelope(status: int, message: str, details: dict[str, Any] | None = None,
             kind: str | None = None) -> dict[str, Any]:
    """The SDK's ``ErrorResponse``: ``{success, status, error: {type, message, details}}``."""
    return {"success": False, "status": status,
            "error": {"type": kind or ERROR_TYPES.get(status, "Error"), "message": message,
                      "details": details}}


def check(fail: Any) -> str | None:
    """Why ``fail`` is not a fault this module can play, or None if it is."""
    if fail is None:
        return None
    if not isinstance(fail, dict):
        return "_fail must be an object or null"
    mode = fail.get("mode")
    if mode is None:
        status = fail.get("status", 500)
        if not isinstance(status, int) or not 400 <= status <= 599:
            return "_fail.status must be an HTTP error status (400-599)"
        return None
    if mode not in MODES:
        return f"_fail.mode must be one of {', '.join(MODES)}"
    return None


def send(h: SimHandler, fail: dict[str, Any], doc: dict[str, Any] | None) -> None:
    """Answer the current request with ``fail`` (``doc`` is what a good answer would carry)."""
    mode = fail.get("mode")
    if mode is None:
        _status(h, fail)
    elif mode == "hang":
        time.sleep(float(fail.get("seconds", 60)))
        h.close_connection = True
    elif mode == "reset":
        h.start(200, {"Content-Type": "application/json", "Content-Length": "5000"})
        h.wfile.write(b'{"namespace_name": "par')
        h.wfile.flush()
        # SO_LINGER 0: close with RST, as a crashed proxy would.
        h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        h.close_connection = True
    elif mode == "drip":
        data = json.dumps(doc or {"namespace_name": "drip"}).encode()
        h.start(200, {"Content-Type": "application/json", "Content-Length": str(len(data))})
        interval = float(fail.get("interval", 0.5))
        for b in data:
            h.wfile.write(bytes([b]))
            h.wfile.flush()
            time.sleep(interval)
    elif mode == "invalid_json":
        h.send_raw(200, b'{"namespace_name": "broken", "document_count": 12')
    elif mode == "wrong_shape":
        h.send_raw(200, json.dumps([1, 2, 3]).encode())
    elif mode == "wrong_types":
        h.send_raw(200, json.dumps(dict(doc or {}, document_count="12",
                                        namespace_name="x")).encode())
    elif mode == "huge":
        _huge(h, fail, doc)
    else:  # redirect
        h.start(302, {"Location": str(fail.get("location", "http://127.0.0.2:9/")),
                      "Content-Length": "0"})


def _status(h: SimHandler, fail: dict[str, Any]) -> None:
    status = int(fail.get("status", 500))
    headers = {}
    if fail.get("retry_after") is not None:
        headers["Retry-After"] = str(fail["retry_after"])
    body: Any
    if status == 422 and fail.get("shape") == "fastapi":
        # API 0.81's OpenAPI spec gives 422 FastAPI's HTTPValidationError shape; the SDK (0.82)
        # expects the envelope and cannot read this. Kept: mixpeek-api.md §3 says to handle both.
        body = {"detail": [{"loc": ["path", "namespace_identifier"],
                            "msg": "field required", "type": "value_error"}]}
    elif status == 422:
        body = envelope(422, "Validation failed", {"validation_errors": [
            {"type": "value_error", "location": "namespace_identifier",
             "message": "invalid identifier"}]})
    elif status == 403 and fail.get("kind") == "quota":
        body = envelope(403, "Quota exceeded",
                        {"resource": "namespaces", "current": 2, "limit": 1, "tier": "free"},
                        kind="QuotaExceededError")
    else:
        body = envelope(status, str(fail.get("message", "Simulated failure")))
    h.send_json(status, body, headers)


def _huge(h: SimHandler, fail: dict[str, Any], doc: dict[str, Any] | None) -> None:
    size = int(fail.get("bytes", 5 * 1024 * 1024))
    if not fail.get("chunked"):
        h.send_raw(200, json.dumps(dict(doc or {}, padding="x" * size)).encode())
        return
    # No Content-Length: the client can only find out by counting what it reads.
    h.start(200, {"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
    chunk = b"x" * 65536
    sent = 0
    try:
        h.wfile.write(b'd\r\n{"padding": "\r\n')
        while sent < size:
            h.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sent += len(chunk)
        h.wfile.write(b"0\r\n\r\n")
    except OSError:
        pass  # the client gave up at its size cap, as it should
    h.close_connection = True
