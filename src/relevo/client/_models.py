"""Typed results of the SDK: frozen, slotted dataclasses parsed from the server's JSON.

Sequences are tuples so that a result is immutable all the way down. Answers that are
documents rather than records (stats, exports, audit records, experiment results,
Personalizer bodies) stay plain JSON dicts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["AppendResult", "BatchResult", "Consent", "ErasureReceipt", "FeedbackResult", "Recommendation",
           "ScoredItem"]


@dataclass(frozen=True, slots=True)
class ScoredItem:
    """One recommended item: ``propensity`` is the probability the policy shows it at this
    position, ``explored`` that the greedy ranking would not have."""

    item_id: str
    score: float
    propensity: float
    explored: bool
    reasons: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ScoredItem:
        return cls(str(data["item_id"]), float(data["score"]), float(data["propensity"]), bool(data["explored"]),
                   tuple(data.get("reasons") or ()))


@dataclass(frozen=True, slots=True)
class Recommendation:
    """The answer to ``POST /v1/recommendations``; ``fallback`` says why a fallback answered."""

    decision_id: str
    tier: str
    items: tuple[ScoredItem, ...]
    latency_ms: float
    fallback: str | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Recommendation:
        return cls(str(data["decision_id"]), str(data["tier"]),
                   tuple(ScoredItem.from_json(i) for i in data.get("items", ())), float(data["latency_ms"]),
                   data.get("fallback"))

    @property
    def item_ids(self) -> list[str]:
        return [i.item_id for i in self.items]


@dataclass(frozen=True, slots=True)
class FeedbackResult:
    """``status``: ``joined`` (learned), ``duplicate`` (first reward wins) or ``late``."""

    learned: bool
    status: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FeedbackResult:
        return cls(bool(data["learned"]), str(data["status"]))


@dataclass(frozen=True, slots=True)
class AppendResult:
    """Events appended to the log; ``duplicates`` had an ``id`` the log holds already."""

    accepted: int
    duplicates: int = 0

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AppendResult:
        return cls(int(data["accepted"]), int(data.get("duplicates", 0)))


@dataclass(frozen=True, slots=True)
class BatchResult:
    """Totals of an event batcher: ``requests`` made (retries not counted), events
    ``accepted`` and ``duplicates`` over all of them, and ``failed`` events not delivered
    (kept in the batcher's ``failed_events``)."""

    accepted: int = 0
    duplicates: int = 0
    requests: int = 0
    failed: int = 0


@dataclass(frozen=True, slots=True)
class ErasureReceipt:
    """What ``DELETE /v1/users/{id}`` removed, store by store; aggregates are kept."""

    user_id: str
    events: int
    decisions: int
    user_state: bool
    preferences: bool
    consent: bool
    feedback_markers: int
    kept_as_aggregates: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ErasureReceipt:
        removed = data.get("removed", {})
        return cls(str(data["user_id"]), int(removed.get("events", 0)), int(removed.get("decisions", 0)),
                   bool(removed.get("user_state", False)), bool(removed.get("preferences", False)),
                   bool(removed.get("consent", False)), int(removed.get("feedback_markers", 0)),
                   tuple(data.get("kept_as_aggregates", ())))


@dataclass(frozen=True, slots=True)
class Consent:
    """A user's consent per purpose; ``emotion_available`` is false when the deployment
    turned emotion signals off. ``updated_at`` in epoch seconds, None if never set."""

    personalization: bool
    profiling: bool
    emotion: bool
    llm: bool
    updated_at: float | None = None
    emotion_available: bool = True

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Consent:
        return cls(bool(data["personalization"]), bool(data["profiling"]), bool(data["emotion"]),
                   bool(data["llm"]), data.get("updated_at"), bool(data.get("emotion_available", True)))
