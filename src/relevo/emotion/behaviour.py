"""Behavioural affect from the event stream: frustration, engagement and fatigue in [0, 1].

Per session, updated once per event and decayed with time (half-life ``half_life_s``):

- frustration rises with skips (more when rapid, more in a streak), very short dwell
  (< 5 s), low ratings, negative review text, and long runs of impressions with no
  engagement (repeated refreshes); engagement lowers it;
- engagement rises with long dwell (>= 30 s), clicks, add-to-cart, purchases, shares and
  high ratings;
- fatigue is the decline of dwell over the session: the negative slope of the last
  dwell times, relative to their mean.

A session that ends (gap) while frustrated and without engagement counts as abandoned.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from relevo.records import Event, EventType

QUICK_S = 5.0
LONG_DWELL_S = 30.0
SHORT_DWELL_S = 5.0
REFRESH_RUN = 20
_ENGAGE = {EventType.CLICK: 0.1, EventType.ADD_TO_CART: 0.2, EventType.PURCHASE: 0.3, EventType.SHARE: 0.3}


@dataclass(slots=True)
class SessionAffect:
    frustration: float = 0.0
    engagement: float = 0.0
    fatigue: float = 0.0
    valence: float = 0.0  # decayed mean valence of the session's review/comment text
    emotion: str | None = None  # latest text emotion category
    updated_at: float = 0.0  # event time of the last update
    last_event: float = 0.0
    skip_streak: int = 0
    quiet_impressions: int = 0
    dwells: list[float] = field(default_factory=list)
    engaged: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "SessionAffect":
        return cls(**data)

    def features(self) -> dict[str, float]:
        """What the bandit and the ranker may use (names -> values in [0, 1] or [-1, 1])."""
        return {"frustration": self.frustration, "engagement": self.engagement, "fatigue": self.fatigue,
                "valence": self.valence}


@dataclass(frozen=True, slots=True)
class BehaviourConfig:
    half_life_s: float = 300.0


def _clip(x: float) -> float:
    return float(min(max(x, 0.0), 1.0))


def update(state: SessionAffect, event: Event, config: BehaviourConfig = BehaviourConfig(),
           text_valence: float | None = None) -> SessionAffect:
    """Apply one event (at its event time) to the session's affect, in place; returns it."""
    t = event.event_time
    if state.updated_at:
        decay = 0.5 ** (max(t - state.updated_at, 0.0) / config.half_life_s)
        state.frustration *= decay
        state.engagement *= decay
        state.valence *= decay
    gap = t - state.last_event if state.last_event else None
    kind = event.type
    if kind is EventType.SKIP:
        state.skip_streak += 1
        bump = 0.15 + (0.1 if gap is not None and gap < QUICK_S else 0.0) + (0.1 if state.skip_streak >= 3 else 0.0)
        state.frustration += bump
    elif kind is EventType.IMPRESSION:
        state.quiet_impressions += 1
        if state.quiet_impressions >= REFRESH_RUN:
            state.frustration += 0.05
    elif kind is EventType.DWELL:
        seconds = float(event.value or 0.0)
        state.dwells = (state.dwells + [seconds])[-8:]
        if seconds < SHORT_DWELL_S:
            state.frustration += 0.1
        elif seconds >= LONG_DWELL_S:
            state.engagement += 0.2
            _engaged(state)
    elif kind is EventType.RATING:
        if event.value is not None and event.value <= 2.0:
            state.frustration += 0.1
        elif event.value is not None and event.value >= 4.0:
            state.engagement += 0.1
            _engaged(state)
    elif kind in _ENGAGE:
        state.engagement += _ENGAGE[kind]
        _engaged(state)
    if text_valence is not None:
        state.valence = 0.5 * state.valence + 0.5 * text_valence
        if text_valence < -0.3:
            state.frustration += 0.1 * abs(text_valence)
    state.fatigue = fatigue_of(state.dwells)
    state.frustration = _clip(state.frustration)
    state.engagement = _clip(state.engagement)
    state.updated_at = t
    state.last_event = max(state.last_event, t)
    return state


def _engaged(state: SessionAffect) -> None:
    state.frustration *= 0.7
    state.skip_streak = 0
    state.quiet_impressions = 0
    state.engaged = True


def fatigue_of(dwells: list[float]) -> float:
    """Relative decline of dwell over the last dwell events: -slope * n / mean, in [0, 1]."""
    if len(dwells) < 3:
        return 0.0
    y = np.asarray(dwells, dtype=np.float64)
    x = np.arange(len(y), dtype=np.float64)
    slope = np.polyfit(x, y, 1)[0]
    mean = max(float(y.mean()), 1e-6)
    return _clip(-slope * len(y) / mean / 2.0)


def abandoned(state: SessionAffect, threshold: float = 0.5) -> bool:
    """Did the session end frustrated and without any engagement?"""
    return state.frustration >= threshold and not state.engaged
