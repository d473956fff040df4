"""Linear Thompson Sampling: posterior updates, reproducibility, and the propensity
estimator's error against a case with a closed-form answer."""

from __future__ import annotations

import math

import numpy as np
import pytest

from relevo.bandits.linear_ts import LinearTS, LinTSConfig, top_n


def phi(z: float) -> float:
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


def test_top_n_orders_best_first():
    s = np.array([[0.1, 0.9, 0.5, 0.7], [3, 2, 1, 0]])
    np.testing.assert_array_equal(top_n(s, 2), [[1, 3], [0, 1]])
    np.testing.assert_array_equal(top_n(np.array([2.0, 1.0]), 5), [0, 1])


def test_propensity_matches_closed_form_two_arms():
    """With two candidates and n=1, P(arm 0 shown) = Phi(mu.(x0-x1) / (v sqrt((x0-x1)' A^-1 (x0-x1)))).

    The estimate must lie within 4 standard errors plus the documented 1/(S+1) bias."""
    s = 2000
    policy = LinearTS(LinTSConfig(dim=2, prior_mean=(0.3, 0.1), lam=2.0, exploration=0.5, propensity_samples=s))
    x = np.array([[1.0, 0.2], [0.4, 1.0]])
    diff = x[0] - x[1]
    mean = float(policy.mean @ diff)
    sd = 0.5 * math.sqrt(diff @ np.linalg.inv(policy.A) @ diff)
    truth = phi(mean / sd)
    estimates = {0: [], 1: []}
    for seed in range(20):
        slate = policy.select(x, 1, np.random.default_rng(seed))
        estimates[int(slate.order[0])].append(float(slate.propensity[0]))
    se = math.sqrt(truth * (1 - truth) / s)
    for arm, p_true in ((0, truth), (1, 1 - truth)):
        for p in estimates[arm]:
            assert abs(p - p_true) <= 4 * se + 1 / (s + 1), (arm, p, p_true)
    # the shown arm is chosen with about its propensity: both arms appear over 20 draws here
    assert 0.2 < truth < 0.8 and estimates[0] and estimates[1]


def test_slate_propensities_are_inclusion_probabilities():
    policy = LinearTS(LinTSConfig(dim=3, prior_mean=(1.0, 0.0, 0.0), exploration=1.0, propensity_samples=500))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 3))
    slate = policy.select(x, 5, rng)
    assert len(slate.order) == 5 and len(set(slate.order.tolist())) == 5
    assert np.all((slate.propensity > 0) & (slate.propensity <= 1))
    # propensities of a slate of 5 from 30: the expected slate size is 5 = sum of all inclusions
    assert slate.scores.tolist() == sorted(slate.scores.tolist(), reverse=True)


def test_same_seed_same_decision_and_no_input_mutation():
    policy = LinearTS(LinTSConfig(dim=4, prior_mean=(0.5, 0.5, 0.0, 0.0)))
    x = np.random.default_rng(1).normal(size=(50, 4))
    before = x.copy()
    a = policy.select(x, 10, np.random.default_rng(7))
    b = policy.select(x, 10, np.random.default_rng(7))
    np.testing.assert_array_equal(a.order, b.order)
    np.testing.assert_array_equal(a.propensity, b.propensity)
    np.testing.assert_array_equal(x, before)


def test_updates_move_posterior_toward_rewarding_feature():
    policy = LinearTS(LinTSConfig(dim=2, prior_mean=(0.0, 0.0)))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 2))
    r = 0.8 * x[:, 0] - 0.3 * x[:, 1] + 0.1 * rng.normal(size=2000)
    policy.update(x, r)
    np.testing.assert_allclose(policy.mean, [0.8, -0.3], atol=0.03)
    assert policy.n_updates == 2000


def test_greedy_ranking_is_not_marked_explored_without_exploration():
    policy = LinearTS(LinTSConfig(dim=2, prior_mean=(1.0, 0.0), exploration=0.0, propensity_samples=50))
    x = np.array([[3.0, 0], [2.0, 0], [1.0, 0]])
    slate = policy.select(x, 2, np.random.default_rng(0))
    np.testing.assert_array_equal(slate.order, [0, 1])
    assert not slate.explored.any()
    np.testing.assert_allclose(slate.propensity, 1.0)


def test_state_round_trip_and_bad_input():
    policy = LinearTS(LinTSConfig(dim=3))
    policy.update(np.ones((4, 3)), np.ones(4))
    clone = LinearTS(LinTSConfig(dim=3))
    clone.load_state_dict(policy.state_dict())
    np.testing.assert_allclose(clone.mean, policy.mean)
    clone.update(np.ones((1, 3)), np.zeros(1))
    assert policy.n_updates == 4  # clones are independent
    with pytest.raises(ValueError, match="do not match"):
        policy.update(np.ones((2, 2)), np.ones(2))
    with pytest.raises(ValueError, match="finite"):
        policy.update(np.full((1, 3), np.nan), np.ones(1))
    with pytest.raises(ValueError, match="expected"):
        clone.load_state_dict({"A": [[1.0]], "b": [1.0], "n_updates": 0})
