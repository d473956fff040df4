"""Typed records that cross module boundaries: Item, Event, Decision, Recommendation.

Item and Event are validated at the edge (pydantic, ``extra="forbid"``, no NaN/inf) with
precise error locations; everything behind the edge trusts them. Decision and
Recommendation are produced by the engine and are plain slotted dataclasses.
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

MAX_ID_LEN = 256
MAX_TEXT_LEN = 8192
MAX_TAGS = 64
MAX_ATTRIBUTES = 64
MAX_CONTEXT_KEYS = 32
# JSON the stores can hold: orjson (the log's codec, feature documents) refuses integers past
# 64 bits, lone surrogates and nesting deeper than 255; SQLite holds signed 64-bit integers
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_JSON_DEPTH = 32

# no "/": ids appear in URL paths (/v1/users/{id}, /v1/items/{id}), where a decoded %2F
# would never route, and a user who could not be addressed could not be erased
Id = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_LEN, strip_whitespace=False, pattern=r"^[^/]+$")]
ShortText = Annotated[str, StringConstraints(max_length=MAX_TEXT_LEN)]
Tag = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Scalar = str | int | float | bool


class EventType(StrEnum):
    IMPRESSION = "impression"
    VIEW = "view"
    CLICK = "click"
    ADD_TO_CART = "add_to_cart"
    PURCHASE = "purchase"
    RATING = "rating"
    DWELL = "dwell"
    SKIP = "skip"
    REVIEW = "review"
    SHARE = "share"


_STRICT = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, str_max_length=MAX_TEXT_LEN)


def json_problem(value: Any, depth: int = MAX_JSON_DEPTH) -> str | None:
    """Why ``value`` (parsed JSON: dicts, lists, str, int, float, bool, None) cannot be
    stored as JSON, or None: an integer outside the signed 64-bit range, a NaN or infinite
    number, a string or key that is not valid Unicode (a lone surrogate, which ``\\udxxx``
    escapes can produce), nesting deeper than ``depth``, or a value that is not JSON."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        v, level = stack.pop()
        if v is None or isinstance(v, bool):
            continue
        if isinstance(v, int):
            if not INT64_MIN <= v <= INT64_MAX:
                return "integers must lie within the signed 64-bit range"
        elif isinstance(v, float):
            if not math.isfinite(v):
                return "numbers must be finite"
        elif isinstance(v, str):
            if not _is_unicode(v):
                return "strings must be valid Unicode (no lone surrogates)"
        elif isinstance(v, (list, dict)):
            if level >= depth:
                return f"nesting deeper than {depth} levels"
            if isinstance(v, dict):
                for key in v:
                    if not isinstance(key, str) or not _is_unicode(key):
                        return "keys must be valid Unicode strings (no lone surrogates)"
            stack.extend((item, level + 1) for item in (v.values() if isinstance(v, dict) else v))
        else:
            return f"{type(v).__name__} is not a JSON value"
    return None


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_scalars(mapping: dict[str, Any], limit: int, what: str) -> dict[str, Any]:
    """Context, attributes and filters: at most ``limit`` keys of at most 128 characters,
    finite numbers, integers within 64 bits, strings of at most 1024 characters."""
    if len(mapping) > limit:
        raise ValueError(f"{what} has {len(mapping)} keys; at most {limit} are allowed")
    for key, value in mapping.items():
        if len(key) > 128:
            raise ValueError(f"{what} key {key[:32]!r}... is longer than 128 characters")
        values = value if isinstance(value, list) else [value]
        for v in values:
            if isinstance(v, float) and not math.isfinite(v):
                raise ValueError(f"{what}[{key!r}] must be finite")
            if isinstance(v, int) and not isinstance(v, bool) and not INT64_MIN <= v <= INT64_MAX:
                raise ValueError(f"{what}[{key!r}] must lie within the signed 64-bit integer range")
            if isinstance(v, str) and len(v) > 1024:
                raise ValueError(f"{what}[{key!r}] is longer than 1024 characters")
    return mapping


class Item(BaseModel):
    """A catalog item. ``title`` and ``text`` are embedded; media are kept for the
    multi-modal encoder (only text is encoded in this release)."""

    model_config = _STRICT

    id: Id
    title: ShortText | None = None
    text: ShortText | None = None
    image: ShortText | None = None
    audio: ShortText | None = None
    video: ShortText | None = None
    attributes: dict[str, Scalar | list[Scalar]] = Field(default_factory=dict)
    tags: list[Tag] = Field(default_factory=list, max_length=MAX_TAGS)
    created_at: float | None = None

    @field_validator("attributes")
    @classmethod
    def _attributes(cls, v: dict[str, Any]) -> dict[str, Any]:
        return check_scalars(v, MAX_ATTRIBUTES, "attributes")

    @model_validator(mode="after")
    def _needs_content(self) -> "Item":
        if not (self.title or self.text):
            raise ValueError("an item needs a non-empty title or text to be embedded")
        return self

    def content_text(self) -> str:
        """The text the encoder sees: title, tags and body, in that order."""
        parts = [self.title or "", " ".join(self.tags), self.text or ""]
        return ". ".join(p for p in parts if p)


# Event types whose ``value`` is required, with the accepted closed range.
_VALUE_RANGES: dict[EventType, tuple[float, float]] = {
    EventType.RATING: (0.0, 5.0),
    EventType.DWELL: (0.0, 86_400.0),
}


class Event(BaseModel):
    """One user interaction. ``timestamp`` is the event time (epoch seconds or ISO 8601);
    ``received_at`` is stamped by the engine when the event is accepted."""

    model_config = _STRICT

    id: Id = Field(default_factory=lambda: uuid.uuid4().hex)
    user_id: Id
    item_id: Id
    type: EventType
    value: float | None = None
    text: ShortText | None = None
    context: dict[str, Scalar] = Field(default_factory=dict)
    decision_id: Id | None = None
    timestamp: float | None = None
    received_at: float | None = None

    @field_validator("timestamp", mode="before")
    @classmethod
    def _timestamp(cls, v: Any) -> Any:
        if isinstance(v, str):
            try:
                return datetime.fromisoformat(v).timestamp()
            except (ValueError, OverflowError) as exc:  # naive times use the local zone: year 1 can overflow
                raise ValueError("timestamp must be epoch seconds or ISO 8601") from exc
        if isinstance(v, bool):
            raise ValueError("timestamp must be epoch seconds or ISO 8601")
        return v

    @field_validator("context")
    @classmethod
    def _context(cls, v: dict[str, Any]) -> dict[str, Any]:
        return check_scalars(v, MAX_CONTEXT_KEYS, "context")

    @model_validator(mode="after")
    def _per_type(self) -> "Event":
        bounds = _VALUE_RANGES.get(self.type)
        if bounds is not None:
            if self.value is None:
                raise ValueError(f"a {self.type.value} event needs a numeric value")
            lo, hi = bounds
            if not lo <= self.value <= hi:
                raise ValueError(f"a {self.type.value} value must lie in [{lo:g}, {hi:g}]")
        if self.type is EventType.REVIEW and not self.text:
            raise ValueError("a review event needs text")
        if self.timestamp is not None and not 0 <= self.timestamp < 4102444800:
            raise ValueError("timestamp must be epoch seconds between 1970 and 2100")
        return self

    @property
    def event_time(self) -> float:
        """Event time in epoch seconds: the client's timestamp, else when relevo got it."""
        if self.timestamp is not None:
            return self.timestamp
        return self.received_at if self.received_at is not None else time.time()


@dataclass(frozen=True, slots=True)
class ScoredItem:
    item_id: str
    score: float
    propensity: float
    explored: bool
    reasons: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Decision:
    """What was shown, why, and with which probability: the unit of off-policy learning.

    ``features`` has shape (len(items), d) float32 rows aligned with ``items``.
    """

    decision_id: str
    user_id: str
    policy: str
    policy_version: int
    created_at: float
    items: list[ScoredItem]
    features: list[list[float]]
    context: dict[str, Any] = field(default_factory=dict)
    tier: str = "streaming"
    seed: int = 0
    # False until the caller confirms the slate was shown (deferred activation): only
    # activated decisions get the default reward when their attribution window closes
    activated: bool = True
    experiment: str | None = None
    variant: str | None = None
    # the final reward of each shown item, written when the attribution window closes
    # (None before; an entry is None where nothing was learned, e.g. not activated)
    rewards: list[float | None] | None = None
    # audit: the consent in force (purpose -> allowed), why a fallback answered, and the
    # names of the feature columns in ``features`` (names only: never raw user data)
    consent: dict[str, bool] | None = None
    fallback: str | None = None
    feature_names: list[str] = field(default_factory=list)
    # the version of the deep ranker that scored the candidates (origin tier), and why the
    # orchestrator sent the request to the tier that answered
    ranker_version: int | None = None
    tier_reason: str | None = None
    # the LLM's part, for the audit: use, backend, source, fallback reason, the prompt as
    # sent (redacted), the output, problems found by the groundedness checker
    llm: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class ErasureReceipt:
    """What ``DELETE /v1/users/{id}`` removed, store by store."""

    user_id: str
    events: int
    decisions: int
    user_state: bool
    preferences: bool
    consent: bool
    feedback_markers: int
    kept_as_aggregates: tuple[str, ...] = ("item popularity counters", "bandit posterior sufficient statistics",
                                           "deep ranker weights")
    cached_responses: int = 0  # edge cache entries, cached candidates, cached LLM explanations (this process)
    ranker_examples: int = 0  # the deep ranker's buffered training examples

    def to_dict(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "removed": {
                "events": self.events, "decisions": self.decisions, "user_state": self.user_state,
                "preferences": self.preferences, "consent": self.consent, "feedback_markers": self.feedback_markers,
                "cached_responses": self.cached_responses, "ranker_examples": self.ranker_examples,
            },
            "kept_as_aggregates": list(self.kept_as_aggregates),
        }


@dataclass(frozen=True, slots=True)
class Recommendation:
    """The answer to ``POST /v1/recommendations``."""

    decision_id: str
    tier: str
    items: list[ScoredItem]
    latency_ms: float
    fallback: str | None = None
    # why this tier answered ("explain requested", "cached", "active session", ...) and the
    # tiers skipped on the way down, as "tier:cause" ("origin:budget", "streaming:error")
    tier_reason: str | None = None
    degraded: tuple[str, ...] = ()
    stale: bool = False  # an expired cache entry served because the origin was unreachable
    # explain=true: who wrote the explanations ({"source": "llm" | "mixed" | "reasoner", "reason", "backend"})
    explanation: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "decision_id": self.decision_id,
            "tier": self.tier,
            "items": [
                {
                    "item_id": s.item_id,
                    "score": s.score,
                    "propensity": s.propensity,
                    "explored": s.explored,
                    "reasons": s.reasons,
                }
                for s in self.items
            ],
            "latency_ms": self.latency_ms,
        }
        if self.fallback:
            out["fallback"] = self.fallback
        if self.tier_reason:
            out["tier_reason"] = self.tier_reason
        if self.degraded:
            out["degraded"] = list(self.degraded)
        if self.stale:
            out["stale"] = True
        if self.explanation is not None:
            out["explanation"] = self.explanation
        return out
