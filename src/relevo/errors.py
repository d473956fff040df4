"""Errors that cross the engine boundary, each with a stable machine-readable code.

The HTTP layer renders them as ``{"error": {"code", "message", "field"}}`` with the status
carried by the error class, so a caller never sees a 500 for bad input.
"""

from __future__ import annotations


class RelevoError(Exception):
    """Base class: ``code`` is stable and documented, ``message`` is for people."""

    status = 500
    code = "internal"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        if code is not None:
            self.code = code

    def to_dict(self) -> dict:
        body = {"code": self.code, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        return {"error": body}


class ValidationError(RelevoError):
    """The input is malformed or violates a documented limit (HTTP 422/400)."""

    status = 422
    code = "invalid_field"


class PayloadTooLarge(RelevoError):
    status = 413
    code = "payload_too_large"


class NotFound(RelevoError):
    status = 404
    code = "not_found"


class Conflict(RelevoError):
    """The request clashes with the current state (an id already taken) (HTTP 409)."""

    status = 409
    code = "conflict"


class ConfigError(RelevoError):
    """Settings name something that cannot be opened (unknown URL scheme, bad path)."""

    code = "config"


class Unavailable(RelevoError):
    """A backing store is unreachable; the caller may retry (HTTP 503)."""

    status = 503
    code = "unavailable"


class Overloaded(RelevoError):
    """Ingest is ahead of the stream workers by more than the configured backlog: the
    caller should retry after ``retry_after`` seconds (HTTP 429). Nothing was written."""

    status = 429
    code = "overloaded"

    def __init__(self, message: str, *, retry_after: float = 1.0, **kw):
        super().__init__(message, **kw)
        self.retry_after = retry_after


class StaleWrite(RelevoError):
    """A guarded write found its guard changed since it was read (optimistic concurrency:
    another process wrote first). Nothing was written; re-read and retry."""

    status = 409
    code = "stale_write"
