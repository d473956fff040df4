"""Typed results of the SDK, parsed from the server's JSON. Where the engine has a record
for the answer (``Recommendation``, ``ScoredItem``, ``ErasureReceipt`` in
``relevo.records``) the SDK returns that record; the rest are frozen dataclasses here. Answers that are
documents rather than records (stats, exports, audit records, experiment results,
Personalizer bodies) stay plain JSON dicts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from relevo.records import ErasureReceipt, Recommendation, ScoredItem

__all__ = ["AppendResult", "BatchResult", "Consent", "ErasureReceipt", "FeedbackResult", "Recommendation",
           "ScoredItem", "receipt_from_json", "recommendation_from_json"]


def recommendation_from_json(data: Mapping[str, Any]) -> Recommendation:
    """The server's answer as the engine's own record (``relevo.records.Recommendation``)."""
    items = [ScoredItem(str(i["item_id"]), float(i["score"]), float(i["propensity"]), bool(i["explored"]),
                        list(i.get("reasons") or ())) for i in data.get("items", ())]
    return Recommendation(str(data["decision_id"]), str(data["tier"]), items, float(data["latency_ms"]),
                          data.get("fallback"), data.get("tier_reason"), tuple(data.get("degraded") or ()),
                          bool(data.get("stale", False)))


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


def receipt_from_json(data: Mapping[str, Any]) -> ErasureReceipt:
    """``DELETE /v1/users/{id}``'s answer as the engine's own ``ErasureReceipt``."""
    removed = data.get("removed", {})
    return ErasureReceipt(str(data["user_id"]), int(removed.get("events", 0)), int(removed.get("decisions", 0)),
                          bool(removed.get("user_state", False)), bool(removed.get("preferences", False)),
                          bool(removed.get("consent", False)), int(removed.get("feedback_markers", 0)),
                          tuple(data.get("kept_as_aggregates", ())), int(removed.get("cached_responses", 0)),
                          int(removed.get("ranker_examples", 0)))


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
