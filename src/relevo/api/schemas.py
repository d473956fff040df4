"""Request bodies of the HTTP API (the OpenAPI schema is generated from these)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from relevo.records import Event, Id, Item, Scalar

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

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump()
