"""Typed exceptions for the server's error envelopes.

relevo's routes answer ``{"error": {"code", "message", "field"?}}``; the Personalizer routes
answer Azure's ``{"error": {"code", "message", "target"?, "innerError": {"code"}}}``. Both
become one exception class per HTTP status (``target`` is read as ``field``, the inner code
is kept as ``inner_code``).

=================  ===========  ============================================================
exception          status       typical codes
=================  ===========  ============================================================
BadRequest         400, 422     malformed_json, missing_field, unknown_event_type, unknown_item
Unauthorized       401          unauthenticated (Personalizer: PermissionDenied)
Forbidden          403          forbidden: the key lacks the route's scope
NotFound           404          not_found (Personalizer: ResourceNotFound)
Conflict           409          conflict (duplicate experiment id, Personalizer eventId)
PayloadTooLarge    413          batch_too_large, payload_too_large
RateLimited        429          rate_limited; ``retry_after`` in seconds
ServerError        5xx          internal, unavailable
ConnectionFailed   (none)       the server could not be reached, after the retries
=================  ===========  ============================================================
"""

from __future__ import annotations

import email.utils
import time
from typing import Any

import httpx
import orjson

__all__ = [
    "BadRequest", "Conflict", "ConnectionFailed", "Forbidden", "NotFound", "PayloadTooLarge", "RateLimited",
    "RelevoAPIError", "ServerError", "Unauthorized", "error_from_response", "parse_retry_after",
]


class RelevoAPIError(Exception):
    """A request relevo refused or could not answer.

    ``status`` is the HTTP status (None when no answer came), ``code`` the stable machine
    code, ``field`` the offending field (``events[3].type``) when the server named one,
    ``inner_code`` Personalizer's ``innerError.code``, ``attempts`` how many requests were
    made, retries included."""

    def __init__(self, status: int | None, code: str, message: str, field: str | None = None, *,
                 inner_code: str | None = None, attempts: int = 1, body: Any = None):
        super().__init__(f"{status or 'no answer'} {code}: {message}" + (f" (field {field})" if field else ""))
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.inner_code = inner_code
        self.attempts = attempts
        self.body = body


class BadRequest(RelevoAPIError):
    """400 or 422: the request is malformed or fails validation."""


class Unauthorized(RelevoAPIError):
    """401: no key, or a key the server does not know."""


class Forbidden(RelevoAPIError):
    """403: the key lacks the scope the route needs."""


class NotFound(RelevoAPIError):
    """404: no such item, decision, experiment, event or route."""


class Conflict(RelevoAPIError):
    """409: the resource exists already (an experiment id, a Personalizer eventId)."""


class PayloadTooLarge(RelevoAPIError):
    """413: over 1,000 records in a batch, or a body over the server's byte limit."""


class RateLimited(RelevoAPIError):
    """429: the key is over its rate; ``retry_after`` seconds until a request may pass."""

    def __init__(self, *args: Any, retry_after: float | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.retry_after = retry_after


class ServerError(RelevoAPIError):
    """5xx: the server (or a proxy in front of it) failed."""


class ConnectionFailed(RelevoAPIError):
    """No answer: connection refused or reset, or a timeout, after the retries."""

    def __init__(self, message: str, *, attempts: int = 1):
        super().__init__(None, "connection_failed", message, attempts=attempts)


_BY_STATUS: dict[int, type[RelevoAPIError]] = {
    400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound, 409: Conflict, 413: PayloadTooLarge,
    422: BadRequest, 429: RateLimited,
}


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` in seconds: delta-seconds or an HTTP date; None when absent or invalid."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    return max(0.0, seconds) if seconds == seconds else None  # NaN is invalid


def error_from_response(response: httpx.Response, attempts: int = 1) -> RelevoAPIError:
    """The typed exception for a non-2xx answer, from either envelope (or none: a proxy's page)."""
    status = response.status_code
    body: Any = None
    try:
        body = orjson.loads(response.content) if response.content else None
    except orjson.JSONDecodeError:
        pass
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        code = str(err.get("code") or f"http_{status}")
        message = str(err.get("message") or response.reason_phrase)
        field = err.get("field") or err.get("target")
        inner = err.get("innerError")
        inner_code = inner.get("code") if isinstance(inner, dict) else None
    else:
        code, message, field, inner_code = f"http_{status}", response.text[:200] or response.reason_phrase, None, None
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else RelevoAPIError)
    kwargs: dict[str, Any] = {"inner_code": inner_code, "attempts": attempts, "body": body}
    if cls is RateLimited:
        kwargs["retry_after"] = parse_retry_after(response.headers.get("retry-after"))
    return cls(status, code, message, field if isinstance(field, str) else None, **kwargs)
