"""Emotion-aware re-ranking is bounded and does what it says."""

from __future__ import annotations

import numpy as np

from relevo.bandits.base import Candidates
from relevo.bandits.linear_ts import LinearTS, LinTSConfig
from relevo.emotion.behaviour import SessionAffect
from relevo.emotion.rerank import RerankConfig, adjust


def test_no_affect_no_change():
    a = adjust(None, np.ones(3), np.ones(3), np.zeros(3))
    assert a.exploration_scale == 1.0 and not a.bonus.any() and a.reason is None


def test_frustration_lowers_exploration_and_favours_familiar_within_bounds():
    sim = np.array([0.9, 0.1, 0.5])
    pop = np.array([0.8, 0.0, 0.2])
    a = adjust(SessionAffect(frustration=0.9), sim, pop, np.zeros(3), RerankConfig(max_shift=0.3))
    assert a.exploration_scale < 0.5 and a.reason
    assert a.bonus[0] > a.bonus[2] > a.bonus[1] >= 0
    assert np.abs(a.bonus).max() <= 0.3
    calm = adjust(SessionAffect(frustration=0.2), sim, pop, np.zeros(3))
    assert calm.exploration_scale == 1.0 and not calm.bonus.any()


def test_mood_congruence():
    a = adjust(SessionAffect(valence=-0.8), np.zeros(2), np.zeros(2), np.array([-0.9, 0.9]))
    assert a.bonus[0] > 0 > a.bonus[1]


def test_bandit_applies_adjustment_to_every_draw():
    policy = LinearTS(LinTSConfig(dim=2, prior_mean=(1.0, 0.0), exploration=1.0, propensity_samples=300))
    x = np.array([[0.5, 0.0], [0.45, 0.0], [0.1, 0.0]])
    cands = Candidates(["a", "b", "c"], x)
    plain = policy.select(None, cands, 1, 0)
    boosted = policy.select(None, cands, 1, 0, exploration_scale=0.2, bonus=np.array([0.0, 0.0, 1.0]))
    assert int(boosted.order[0]) == 2 and boosted.propensity[0] > 0.9
    assert plain.propensity[0] < 0.9
