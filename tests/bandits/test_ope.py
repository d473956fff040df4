"""Off-policy estimators against synthetic problems whose true value is known exactly.

Logging is uniform over K = 5 actions; the context is one of two user kinds; reward
probabilities mu[x, a] are fixed, so the target policy's value is E_x[mu[x, pi(x)]].
Tolerances are in standard errors (4 SE: a two-sided miss of about 6e-5 per check) and
every test is seeded.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from relevo.bandits.ope import (
    BanditLog,
    RewardModel,
    behavior_action_dist_from_log,
    bootstrap_ci,
    bootstrap_replicates,
    dm,
    dr,
    evaluate,
    ips,
    replay,
    snips,
    switch_dr,
)

K = 5
MU = np.array([[0.10, 0.20, 0.30, 0.40, 0.50],
               [0.60, 0.15, 0.35, 0.05, 0.25]])  # mu[x, a]
TARGET = np.array([4, 0])  # deterministic policy: action 4 for users of kind 0, action 0 for kind 1
P_KIND1 = 0.4
TRUTH = (1 - P_KIND1) * MU[0, 4] + P_KIND1 * MU[1, 0]  # 0.54


def uniform_log(n: int, seed: int, n_positions: int = 1) -> tuple[BanditLog, np.ndarray]:
    """(log, kind): uniform logging, Bernoulli(mu[kind, action]) rewards, context one-hot kind."""
    rng = np.random.default_rng(seed)
    kind = (rng.random(n) < P_KIND1).astype(np.int64)
    action = rng.integers(K, size=n)
    reward = (rng.random(n) < MU[kind, action]).astype(np.float64)
    log = BanditLog(action=action, reward=reward, pscore=np.full(n, 1 / K), n_actions=K,
                    position=rng.integers(n_positions, size=n), context=np.eye(2)[kind], n_positions=n_positions)
    return log, kind


def target_dist(kind: np.ndarray, n_positions: int = 1) -> np.ndarray:
    """The deterministic target as action_dist, shape (n, K, n_positions)."""
    dist = np.zeros((len(kind), K, n_positions))
    dist[np.arange(len(kind)), TARGET[kind], :] = 1.0
    return dist


def true_q(kind: np.ndarray, n_positions: int = 1) -> np.ndarray:
    return np.repeat(MU[kind][:, :, None], n_positions, axis=2)


# ---------------------------------------------------------------- accuracy against the truth


def test_estimators_recover_known_value():
    log, kind = uniform_log(20_000, seed=1)
    dist = target_dist(kind)
    q_hat = RewardModel(reg=0.01, context_x_action=True).fit_predict(log, n_folds=3)
    switch = switch_dr(log, dist, q_hat, tau=K + 1.0)  # w is 0 or K: here switch-DR is DR
    for est in (ips(log, dist), snips(log, dist), dr(log, dist, q_hat), switch):
        assert abs(est.value - TRUTH) < 4 * est.std_err, est
        assert est.ci_low < est.value < est.ci_high
        assert est.n_rounds == 20_000
    # DM's interval holds q_hat fixed, so its error is the model's: the two cells the target
    # uses are fitted from about 2,000 and 1,600 rounds, an SE near 0.0085 for the value
    assert abs(dm(log, dist, q_hat).value - TRUTH) < 0.035
    assert ips(log, dist).max_weight == pytest.approx(K)


def test_interval_coverage_and_bootstrap_std_match_theory():
    """Over 40 independent logs the 95% intervals of IPS, SNIPS and DR cover the truth at
    least 85% of the time (binomial sd at 0.95 is 0.034), and the bootstrap standard error of
    IPS is within 15% of the analytic sd(w r) / sqrt(n)."""
    covered = {"ips": 0, "snips": 0, "dr": 0}
    ratios = []
    reps = 40
    for seed in range(reps):
        log, kind = uniform_log(2000, seed=100 + seed)
        dist = target_dist(kind)
        q_hat = RewardModel(reg=0.01, context_x_action=True).fit_predict(log, n_folds=2, seed=seed)
        for est in evaluate(log, dist, q_hat, ["ips", "snips", "dr"], n_boot=300, seed=seed):
            covered[est.estimator] += est.covers(TRUTH)
            if est.estimator == "ips":
                w_r = dist[np.arange(log.n_rounds), log.action, 0] / log.pscore * log.reward
                ratios.append(est.std_err / (w_r.std(ddof=1) / math.sqrt(log.n_rounds)))
    for name, hits in covered.items():
        assert hits / reps >= 0.85, (name, hits)
    assert 0.85 < float(np.mean(ratios)) < 1.15


def test_dr_is_unbiased_with_a_wrong_reward_model_and_dm_is_not():
    """q_hat = 1 - mu (badly wrong): the mean DR estimate over 200 logs stays within 4 SE of
    the truth while DM with the same model is off by its bias, 1 - 2 * 0.54 = -0.08."""
    wrong = lambda kind: 1 - true_q(kind)  # noqa: E731
    dr_values, dm_values = [], []
    for seed in range(200):
        log, kind = uniform_log(500, seed=1000 + seed)
        dist = target_dist(kind)
        dr_values.append(dr(log, dist, wrong(kind), n_boot=2, seed=seed).value)
        dm_values.append(dm(log, dist, wrong(kind), n_boot=2, seed=seed).value)
    se = np.std(dr_values, ddof=1) / math.sqrt(len(dr_values))
    assert abs(np.mean(dr_values) - TRUTH) < 4 * se
    assert np.mean(dm_values) - TRUTH == pytest.approx(1 - 2 * TRUTH, abs=0.01)


def test_replay_equals_the_truth_on_uniform_logs():
    log, kind = uniform_log(20_000, seed=2)
    est = replay(log, TARGET[kind])
    assert est.n_matched == int((log.action == TARGET[kind]).sum())
    assert abs(est.value - TRUTH) < 4 * est.std_err
    assert est.covers(TRUTH)
    # rewards that depend only on the action: replay of a constant policy is exact
    fixed = BanditLog(action=log.action, reward=(log.action == 3).astype(float), pscore=log.pscore, n_actions=K)
    assert replay(fixed, np.full(log.n_rounds, 3)).value == 1.0
    assert replay(fixed, np.full(log.n_rounds, 1)).value == 0.0


def test_replay_reads_a_slate_per_position():
    log, kind = uniform_log(6000, seed=3, n_positions=3)
    slate = np.stack([TARGET[kind], (TARGET[kind] + 1) % K, (TARGET[kind] + 2) % K], axis=1)  # (n, 3)
    per_position = replay(log, slate)
    chosen_at_logged = slate[np.arange(log.n_rounds), log.position]
    assert per_position.value == replay(log, chosen_at_logged).value
    assert per_position.n_matched == int((chosen_at_logged == log.action).sum())


# ---------------------------------------------------------------- identities


def test_estimator_identities():
    log, kind = uniform_log(3000, seed=4)
    dist = target_dist(kind)
    q_hat = np.full((log.n_rounds, K, 1), 0.3)
    assert snips(log, dist).value == pytest.approx(replay(log, TARGET[kind]).value)
    assert ips(log, dist, clip=K).value == pytest.approx(ips(log, dist).value)
    assert ips(log, dist, clip=1.0).value < ips(log, dist).value
    assert switch_dr(log, dist, q_hat, tau=math.inf).value == pytest.approx(dr(log, dist, q_hat).value)
    assert switch_dr(log, dist, q_hat, tau=0.0).value == pytest.approx(dm(log, dist, q_hat).value)
    assert dm(log, dist, q_hat).value == pytest.approx(0.3)
    # the logging policy evaluated on its own log: IPS is the mean reward exactly
    uniform = np.full((log.n_rounds, K, 1), 1 / K)
    assert ips(log, uniform).value == pytest.approx(log.reward.mean())
    assert ips(log, uniform).ess == pytest.approx(log.n_rounds)


def test_estimators_do_not_mutate_inputs_and_are_seeded():
    log, kind = uniform_log(1000, seed=5)
    dist = target_dist(kind)
    q_hat = np.full((log.n_rounds, K, 1), 0.3)
    before = (dist.copy(), q_hat.copy(), log.reward.copy())
    a = evaluate(log, dist, q_hat, n_boot=100, seed=7)
    b = evaluate(log, dist, q_hat, n_boot=100, seed=7)
    assert a == b
    assert [e.estimator for e in a] == ["ips", "clipped_ips", "snips", "dm", "dr", "switch_dr"]
    assert [e.estimator for e in evaluate(log, dist, n_boot=10)] == ["ips", "clipped_ips", "snips"]
    np.testing.assert_array_equal(before[0], dist)
    np.testing.assert_array_equal(before[1], q_hat)
    np.testing.assert_array_equal(before[2], log.reward)


def test_bootstrap_ci_of_a_mean_and_of_a_ratio():
    rng = np.random.default_rng(6)
    x = rng.normal(2.0, 1.0, size=4000)
    low, high = bootstrap_ci(x, n_boot=2000, seed=1)
    assert low < 2.0 < high
    assert (high - low) == pytest.approx(2 * 1.96 / math.sqrt(4000), rel=0.1)
    assert bootstrap_ci(x, n_boot=200, seed=3) == bootstrap_ci(x, n_boot=200, seed=3)
    pairs = np.stack([x, np.ones_like(x)], axis=1)
    ratio = lambda s: s[..., 0].sum(axis=1) / s[..., 1].sum(axis=1)  # noqa: E731
    np.testing.assert_allclose(bootstrap_replicates(pairs, ratio, n_boot=50, seed=2),
                               bootstrap_replicates(x, n_boot=50, seed=2))


# ---------------------------------------------------------------- reward model


def test_reward_model_learns_the_reward_probabilities():
    log, kind = uniform_log(20_000, seed=8)
    model = RewardModel(reg=0.01, context_x_action=True).fit(log)
    q = model.predict(np.eye(2))
    assert q.shape == (2, K, 1)
    assert np.abs(q[:, :, 0] - MU).max() < 0.05  # about 4.5 SE for 2,000 rounds per cell
    cross = model.fit_predict(log, n_folds=4)
    assert cross.shape == (log.n_rounds, K, 1)
    assert np.abs(cross - true_q(kind)).max() < 0.06


def test_reward_model_blocks_reproduce_a_linear_reward_exactly():
    """Ridge on noiseless rewards generated from every feature block (context, action,
    action context, position, context x action context, action x position) predicts every
    (x, a, p), logged or not, to 1e-4: the block-wise predictor matches the design."""
    rng = np.random.default_rng(9)
    n, k, p, dc, da = 3000, 6, 3, 4, 3
    x = rng.normal(size=(n, dc))
    z = rng.normal(size=(k, da))
    u, v, w_xz, w_ap = rng.normal(size=dc), rng.normal(size=da), rng.normal(size=(dc, da)), rng.normal(size=(k, p))

    def f(xs):  # (m, dc) -> (m, k, p)
        return (0.3 + xs @ u)[:, None, None] + (z @ v)[None, :, None] + (xs @ w_xz @ z.T)[:, :, None] + w_ap[None]

    action, position = rng.integers(k, size=n), rng.integers(p, size=n)
    log = BanditLog(action=action, reward=f(x)[np.arange(n), action, position], pscore=np.full(n, 1 / k),
                    n_actions=k, position=position, context=x, action_context=z, n_positions=p)
    model = RewardModel("ridge", reg=1e-8).fit(log)
    fresh = rng.normal(size=(50, dc))
    np.testing.assert_allclose(model.predict(fresh), f(fresh), atol=1e-4)


def test_reward_model_without_context_and_with_one_reward_class():
    log = BanditLog(action=np.array([0, 1, 2, 1]), reward=np.zeros(4), pscore=np.full(4, 1 / 3), n_actions=3)
    q = RewardModel().fit(log).predict(n_rounds=2)
    assert q.shape == (2, 3, 1) and np.all(q < 1e-5)
    with pytest.raises(RuntimeError, match="before fit"):
        RewardModel().predict(n_rounds=1)


# ---------------------------------------------------------------- logging policy


def test_behavior_action_dist_from_log():
    # position 0: action 0 logged with pscores 0.2 and 0.4 (mean 0.3), action 1 with 0.3;
    # position 1: action 2 with 0.5; action 3 never logged
    log = BanditLog(action=np.array([0, 0, 1, 2]), reward=np.zeros(4), pscore=np.array([0.2, 0.4, 0.3, 0.5]),
                    n_actions=4, position=np.array([0, 0, 0, 1]), n_positions=3)
    dist = behavior_action_dist_from_log(log)
    assert dist.shape == (4, 3)
    np.testing.assert_allclose(dist[:, 0], [0.5, 0.5, 0, 0])
    np.testing.assert_allclose(dist[:, 1], [0, 0, 1, 0])
    np.testing.assert_array_equal(dist[:, 2], 0)  # position 2 never logged
    np.testing.assert_allclose(behavior_action_dist_from_log(log, "frequency")[:, 0], [2 / 3, 1 / 3, 0, 0])


# ---------------------------------------------------------------- invalid input


def _log(**overrides) -> BanditLog:
    fields = dict(action=np.array([0, 1, 2]), reward=np.array([0.0, 1.0, 0.0]), pscore=np.full(3, 0.2),
                  n_actions=5, position=np.array([0, 1, 0]), n_positions=2)
    return BanditLog(**{**fields, **overrides})


@pytest.mark.parametrize("overrides, pattern", [
    ({"pscore": np.array([0.2, 0.0, 0.2])}, r"pscore must lie in \(0, 1\]"),
    ({"pscore": np.array([0.2, 1.5, 0.2])}, r"pscore must lie in \(0, 1\]"),
    ({"pscore": np.array([0.2, np.nan, 0.2])}, "pscore must be finite"),
    ({"reward": np.array([0.0, np.nan, 1.0])}, "reward must be finite"),
    ({"reward": np.array([0.0, 1.0])}, r"reward must have shape \(n_rounds=3,\)"),
    ({"action": np.array([0, 5, 1])}, r"action must lie in \[0, n_actions=5\)"),
    ({"action": np.array([0, -1, 1])}, r"action must lie in \[0, n_actions=5\)"),
    ({"action": np.array([0.5, 1, 2])}, "action must hold integers"),
    ({"action": np.array([[0, 1, 2]])}, "action must be 1-D"),
    ({"action": np.array([], dtype=np.int64), "reward": np.array([]), "pscore": np.array([]),
      "position": np.array([], dtype=np.int64)}, "action is empty"),
    ({"position": np.array([0, 2, 1])}, r"position must be 0-based and lie in \[0, n_positions=2\)"),
    ({"context": np.ones((2, 4))}, r"context must have shape \(n_rounds=3, dc\)"),
    ({"context": np.ones(3)}, "context must be 2-D"),
    ({"action_context": np.ones((4, 2))}, r"action_context must have shape \(n_actions=5, da\)"),
    ({"n_actions": 0}, "n_actions must be a positive integer"),
    ({"n_positions": 0}, "n_positions must be a positive integer"),
])
def test_invalid_logs_are_refused(overrides, pattern):
    with pytest.raises(ValueError, match=pattern):
        _log(**overrides)


def _dist(shape=(3, 5, 2), value=0.2):
    return np.full(shape, value)


@pytest.mark.parametrize("call, pattern", [
    (lambda: ips(_log(), _dist((3, 5))),
     r"action_dist must have shape \(n_rounds, n_actions, n_positions\) = \(3, 5, 2\)"),
    (lambda: ips(_log(), _dist((3, 4, 2))), r"action_dist must have shape"),
    (lambda: snips(_log(), _dist(value=0.3)), "must sum to <= 1 over actions"),
    (lambda: ips(_log(), _dist(value=-0.1)), "finite, non-negative"),
    (lambda: ips(_log(), _dist(value=np.nan)), "finite, non-negative"),
    (lambda: ips(_log(), _dist(), clip=0.0), "clip must be > 0"),
    (lambda: snips(_log(), _dist(value=0.0)), "snips is undefined"),
    (lambda: dm(_log(), _dist(), None), "dm needs q_hat"),
    (lambda: dr(_log(), _dist(), np.zeros((3, 5))), r"q_hat must have shape .* = \(3, 5, 2\)"),
    (lambda: dr(_log(), _dist(), np.full((3, 5, 2), np.inf)), "q_hat must be finite"),
    (lambda: switch_dr(_log(), _dist(), np.zeros((3, 5, 2)), tau=-1.0), "tau must be >= 0"),
    (lambda: evaluate(_log(), _dist(), None, ["ips", "magic"]), r"unknown estimators \['magic'\]"),
    (lambda: evaluate(_log(), _dist(), None, ["dr"]), "dr needs q_hat"),
    (lambda: ips(_log(), _dist(), alpha=1.5), r"alpha must lie in \(0, 1\)"),
    (lambda: ips(_log(), _dist(), n_boot=0), "n_boot must be >= 1"),
    (lambda: replay(_log(pscore=np.array([0.2, 0.2, 0.5])), np.zeros(3, dtype=int)),
     "replay needs a uniformly random log: pscore at position 0 varies"),
    (lambda: replay(_log(), np.zeros(4, dtype=int)), r"chosen_actions must have shape \(n_rounds,\) = \(3,\)"),
    (lambda: replay(_log(), np.array([0, 9, 0])), r"chosen_actions must lie in \[0, n_actions=5\)"),
    (lambda: replay(_log(), np.array([4, 4, 4])), "replay matched no logged round"),
    (lambda: behavior_action_dist_from_log(_log(), "median"), "method must be 'mean_pscore' or 'frequency'"),
    (lambda: RewardModel("tree"), "kind must be 'auto', 'logistic' or 'ridge'"),
    (lambda: RewardModel(reg=0.0), "reg must be > 0"),
    (lambda: RewardModel("logistic").fit(_log(reward=np.array([0.0, 0.5, 1.0]))), r"needs rewards in \{0, 1\}"),
    (lambda: RewardModel().fit_predict(_log(), n_folds=4), r"n_folds must lie in \[1, n_rounds=3\]"),
    (lambda: RewardModel().fit(_log(context=np.eye(3))).predict(np.ones((2, 2))),
     r"context must have shape \(n, 3\)"),
])
def test_invalid_estimator_inputs_are_refused(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()
