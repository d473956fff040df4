"""Request bodies of the HTTP API (the OpenAPI schema is generated from these)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator, model_validator

from relevo.records import MAX_CONTEXT_KEYS, Event, Id, Item, Scalar, check_scalars, json_problem

MAX_BATCH = 1000


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ItemsIn(_Body):
    items: list[Item] = Field(min_length=1, max_length=MAX_BATCH)


class EventsIn(_Body):
    events: list[Event] = Field(min_length=1, max_length=MAX_BATCH)


class RecommendIn(_Body):
    user_id: Id
    n: int = Field(10, ge=1, le=100)
    context: dict[str, Scalar] = Field(default_factory=dict, max_length=32)
    filters: dict[str, Scalar | list[Scalar]] = Field(default_factory=dict, max_length=32)
    explain: bool = False
    tier: Literal["auto", "edge", "streaming", "origin"] = "auto"
    non_profiled: bool = False  # answer without the user's history (EU DSA Art. 38)
    preview: bool = False  # not shown to the user (dashboards, QA): not logged, not learned, not counted
    # the deadline in ms; a tier whose expected cost does not fit answers from the one below
    budget_ms: float | None = Field(None, gt=0, le=60_000, allow_inf_nan=False)

    # the same rules as an event's context (the decision log stores both as JSON)
    @field_validator("context")
    @classmethod
    def _context(cls, v: dict[str, Any]) -> dict[str, Any]:
        return check_scalars(v, MAX_CONTEXT_KEYS, "context")

    @field_validator("filters")
    @classmethod
    def _filters(cls, v: dict[str, Any]) -> dict[str, Any]:
        return check_scalars(v, MAX_CONTEXT_KEYS, "filters")


class FeedbackIn(_Body):
    decision_id: Id
    item_id: Id
    reward: float = Field(ge=-1e6, le=1e6)


class ConsentIn(_Body):
    """Purposes the user grants (true) or withdraws (false); omitted ones are unchanged."""

    personalization: StrictBool | None = None
    profiling: StrictBool | None = None
    emotion: StrictBool | None = None
    llm: StrictBool | None = None


class DescribeIn(_Body):
    """Natural-language preferences: "quiet sci-fi with strong female leads, nothing violent"."""

    text: str = Field(min_length=1, max_length=2000)
    budget_ms: float | None = Field(None, gt=0, le=60_000, allow_inf_nan=False)


class PreferencesIn(BaseModel):
    """Free-form JSON object; ``liked_tags`` / ``disliked_tags`` steer ranking."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)
    liked_tags: list[str] = Field(default_factory=list, max_length=256)
    disliked_tags: list[str] = Field(default_factory=list, max_length=256)

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        """Preferences are stored as one JSON document: refuse what JSON stores cannot hold
        (integers past 64 bits, NaN, lone surrogates, deep nesting) rather than fail on write."""
        if isinstance(data, dict):
            for key, value in data.items():
                problem = json_problem({key: value})
                if problem is not None:
                    raise ValueError(f"preferences[{str(key)[:32]!r}]: {problem}")
        return data

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump()


# -- responses ------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    """``code`` is stable and machine-readable, ``message`` is for people, ``field`` names the
    offending input (``events[3].type``). Personalizer routes use Azure's envelope: the same
    ``code`` and ``message``, with ``target`` and ``innerError: {code}``."""

    model_config = ConfigDict(extra="allow")
    code: str
    message: str
    field: str | None = None


class ErrorOut(BaseModel):
    """Every rejection: ``{"error": {"code", "message", "field"?}}``."""

    error: ErrorDetail


_ERRORS = {
    400: "Malformed request: the body is not JSON, or not the JSON this route reads",
    401: "Missing or invalid API key",
    403: "The API key lacks the scope this route needs",
    404: "Unknown route or resource",
    409: "The request clashes with the current state (an id already used)",
    413: "Request body or batch too large",
    422: "Invalid field (wrong type, out of range, unknown field, unknown item)",
    429: "The API key's rate limit was exceeded (see Retry-After)",
    503: "A backing store is unreachable; retry",
}
# documented on every operation (the app's routes and the Personalizer router's)
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut, "description": description} for status, description in _ERRORS.items()
}
