"""Render every rejection as ``{"error": {"code", "message", "field"}}``."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from relevo.errors import Overloaded, RelevoError
from relevo.storage.protocols import is_outage, outage_errors

# pydantic error type -> (status, our code)
_CODES = {
    "missing": (422, "missing_field"),
    "json_invalid": (400, "malformed_json"),
    "json_type": (400, "malformed_json"),
    "extra_forbidden": (422, "unknown_field"),
    "finite_number": (422, "not_finite"),
    "string_too_long": (422, "too_long"),
    "too_long": (413, "batch_too_large"),
    "too_short": (422, "empty_batch"),
    "enum": (422, "invalid_value"),
    "literal_error": (422, "invalid_value"),
}


_UNION_TAGS = {"str", "int", "float", "bool", "constrained-str", "list", "dict"}
# When several problems are reported (e.g. one per branch of a union), show the most telling.
_PRIORITY = {"finite_number": 0, "missing": 1, "extra_forbidden": 2, "enum": 3, "too_long": 4}


def field_path(loc: tuple[Any, ...]) -> str:
    """('body', 'events', 3, 'type') -> 'events[3].type'; union-branch labels end the path."""
    out = ""
    for part in loc:
        if part == "body" and not out:
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in _UNION_TAGS or "[" in str(part) or str(part).startswith("function-"):
            break
        else:
            out += f".{part}" if out else str(part)
    return out


def error_response(status: int, code: str, message: str, field: str | None = None,
                   retry_after: float | None = None) -> Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if field:
        body["field"] = field
    headers = {"Retry-After": str(max(1, round(retry_after)))} if retry_after is not None else None
    return Response(orjson.dumps({"error": body}), status_code=status, media_type="application/json", headers=headers)


async def on_validation_error(request: Request, exc: RequestValidationError) -> Response:
    errors = sorted(exc.errors(), key=lambda e: _PRIORITY.get(e.get("type"), 9))
    first = errors[0] if errors else {"type": "invalid", "loc": (), "msg": "invalid request"}
    kind = first.get("type", "invalid")
    status, code = _CODES.get(kind, (422, "invalid_field"))
    field = field_path(tuple(first.get("loc", ())))
    if kind == "enum" and field.endswith(".type"):
        code = "unknown_event_type"
    if kind == "model_attributes_type" and not field:
        status, code = 400, "malformed_json"
    message = str(first.get("msg", "invalid"))
    if kind == "too_long":
        message = f"batch too large: {message}"
    distinct = {field_path(tuple(e.get("loc", ()))) for e in errors}
    if len(distinct) > 1:
        message += f" (and problems in {len(distinct) - 1} more field{'s' if len(distinct) > 2 else ''})"
    _count(request, code)
    return error_response(status, code, message, field or None)


async def on_relevo_error(request: Request, exc: RelevoError) -> Response:
    _count(request, exc.code)
    retry_after = exc.retry_after if isinstance(exc, Overloaded) else 1.0 if exc.status == 503 else None
    return error_response(exc.status, exc.code, exc.message, exc.field, retry_after)


OUTAGES = outage_errors()


async def on_unexpected(request: Request, exc: Exception) -> Response:
    """A store that is unreachable (Redis restarting, a cluster failing over) is a 503 the
    client may retry, not a 500; anything else is a bug, reported as such."""
    if is_outage(exc):
        _count(request, "unavailable")
        return error_response(503, "unavailable", f"a backing store is unreachable: {type(exc).__name__}",
                              retry_after=1.0)
    _count(request, "internal")
    return error_response(500, "internal", "internal error")


async def on_http_error(request: Request, exc: StarletteHTTPException) -> Response:
    # FastAPI raises 400 when a body cannot be decoded at all (bytes that are not UTF-8, an
    # integer literal past Python's 4300-digit limit): malformed JSON, like a syntax error
    code = {400: "malformed_json", 404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    _count(request, code)
    return error_response(exc.status_code, code, str(exc.detail))


def _count(request: Request, code: str) -> None:
    """Count in the metrics of the engine that served the request (its tenant's, if any)."""
    tenant = getattr(request.state, "tenant", None)
    tenants = getattr(request.app.state, "tenants", None)
    engine = tenants.engine(tenant) if tenant is not None and tenants is not None else \
        getattr(request.app.state, "engine", None)
    if engine is not None:
        engine.metrics.errors.labels(code).inc()
