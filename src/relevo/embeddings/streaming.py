"""Streaming user and session vectors: one exponentially weighted update per event.

    u <- gamma * u + w(event) * v_item          (long-term, gamma = long_decay)
    s <- gamma_s * s + w(event) * v_item        (session, reset after a gap)

w depends on the event type: purchase > add_to_cart > share > click > review > view;
dwell grows with seconds watched; ratings map 0..5 stars to -2.25..+2.25 around 2.75;
skips are negative; impressions carry no signal about preference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from relevo.records import Event, EventType

BASE_WEIGHTS: dict[EventType, float] = {
    EventType.IMPRESSION: 0.0,
    EventType.VIEW: 0.5,
    EventType.CLICK: 1.0,
    EventType.ADD_TO_CART: 2.0,
    EventType.PURCHASE: 3.0,
    EventType.SHARE: 1.5,
    EventType.REVIEW: 1.0,
    EventType.SKIP: -0.5,
}


def event_weight(event: Event) -> float:
    """Preference signal of one event (positive = liked), dimensionless."""
    if event.type is EventType.RATING:
        return float(event.value) - 2.75
    if event.type is EventType.DWELL:
        return min(float(event.value) / 30.0, 2.0)
    return BASE_WEIGHTS[event.type]


@dataclass(frozen=True, slots=True)
class StreamingConfig:
    long_decay: float = 0.98
    session_decay: float = 0.7
    session_gap_s: float = 1800.0


def decayed_add(current: np.ndarray | None, item_vector: np.ndarray, weight: float, decay: float) -> np.ndarray:
    """gamma * current + weight * item_vector, float32 (dim,)."""
    update = weight * item_vector.astype(np.float32)
    if current is None:
        return update
    return (decay * current + update).astype(np.float32)


def unit(vector: np.ndarray | None) -> np.ndarray | None:
    """L2-normalised copy, or None for a missing or zero vector."""
    if vector is None:
        return None
    norm = float(np.linalg.norm(vector))
    if norm < 1e-9:
        return None
    return (vector / norm).astype(np.float32)
