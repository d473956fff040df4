"""Emotion-aware re-ranking: bounded adjustments to the streaming tier's bandit.

Given the session's affect, returns an exploration multiplier for the Thompson draws and
an additive score per candidate, so propensities stay exact (the same adjustment applies
to every posterior draw):

- frustration above ``threshold``: exploration scaled by 1 - 0.8 f (never below 0.2), and
  familiar, confident items favoured: + beta * f * (user similarity + popularity) / 2;
- mood congruence: + gamma * session valence * item valence when the session's text
  valence is clear (|v| >= 0.3).

The added score is capped at ``max_shift`` in absolute value, which bounds the effect.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from relevo.emotion.behaviour import SessionAffect


@dataclass(frozen=True, slots=True)
class RerankConfig:
    threshold: float = 0.4
    beta: float = 0.6
    gamma: float = 0.1
    max_shift: float = 0.3


@dataclass(slots=True)
class Adjustment:
    exploration_scale: float
    bonus: np.ndarray  # (K,)
    reason: str | None  # the one affect-derived thing the user may see


def adjust(affect: SessionAffect | None, user_similarity: np.ndarray, popularity: np.ndarray,
           item_valence: np.ndarray, config: RerankConfig = RerankConfig()) -> Adjustment:
    """Inputs are (K,) arrays over candidates; returns the bounded adjustment."""
    k = len(user_similarity)
    bonus = np.zeros(k)
    scale = 1.0
    reason = None
    if affect is None:
        return Adjustment(scale, bonus, reason)
    f = affect.frustration
    if f >= config.threshold:
        scale = max(0.2, 1.0 - 0.8 * f)
        bonus += config.beta * f * (np.asarray(user_similarity) + np.asarray(popularity)) / 2.0
        reason = "favouring familiar picks for now"
    if abs(affect.valence) >= 0.3:
        bonus += config.gamma * affect.valence * np.asarray(item_valence)
    np.clip(bonus, -config.max_shift, config.max_shift, out=bonus)
    return Adjustment(scale, bonus, reason)
