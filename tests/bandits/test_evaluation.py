"""Offline evaluation of relevo's policies: Monte-Carlo action distributions, the engine's
decisions as an OPE log, and train-then-estimate (synthetic and on the OBD sample).

Statistical checks are seeded; tolerances are 4 Monte-Carlo standard errors.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from relevo.bandits.base import Candidates, top_n
from relevo.bandits.beta import BetaTS, BetaTSConfig
from relevo.bandits.evaluation import (
    ObdFeatures,
    RoundFeatures,
    decisions_to_log,
    estimate_against_logging,
    evaluate_ts_on_log,
    on_policy_value,
    policy_action_dist,
    split_in_time,
    train_and_evaluate,
    ts_factory,
)
from relevo.bandits.linear_ts import LinearTS, LinTSConfig
from relevo.bandits.logistic import LogisticTS, LogisticTSConfig
from relevo.bandits.ope import BanditLog
from relevo.records import Decision, ScoredItem



def beta_policy(params: dict[str, tuple[float, float]], samples: int) -> BetaTS:
    policy = BetaTS(BetaTSConfig(propensity_samples=samples))
    policy.load_state_dict({"kind": "beta_ts", "arms": list(params), "n_updates": 0,
                            "alpha": [a for a, _ in params.values()], "beta": [b for _, b in params.values()]})
    return policy


def trained_linear(seed: int = 0, dim: int = 3, ctx: int = 2) -> LinearTS:
    rng = np.random.default_rng(seed)
    policy = LinearTS(LinTSConfig(dim=dim, context_dim=ctx, exploration=0.5))
    rows = rng.normal(size=(200, dim * (1 + ctx)))
    policy.learn([f"a{i % 4}" for i in range(200)], rows, rows @ rng.normal(size=rows.shape[1]) * 0.1)
    return policy


# ---------------------------------------------------------------- policy_action_dist


@pytest.mark.parametrize("k,p", [(6, 3), (6, 6), (4, 1)])
def test_action_dist_is_a_distribution_per_position(k, p):
    rng = np.random.default_rng(1)
    policy = trained_linear()
    cands = Candidates([f"i{j}" for j in range(k)], rng.normal(size=(k, 3)))
    dist = policy_action_dist(policy, rng.normal(size=(7, 2)), cands, p, samples=300, seed=2)
    assert dist.shape == (7, k, p) and (dist >= 0).all()
    np.testing.assert_allclose(dist.sum(axis=1), 1.0, atol=1e-12)
    assert (dist.sum(axis=2) <= 1 + 1e-12).all()  # an item appears at most once per slate


def test_positions_past_the_candidates_get_no_mass():
    policy = beta_policy({"a": (2.0, 3.0), "b": (3.0, 2.0)}, 0)
    dist = policy_action_dist(policy, None, Candidates(["a", "b"]), 3, samples=100, n_rounds=4)
    np.testing.assert_allclose(dist.sum(axis=1), [[1.0, 1.0, 0.0]] * 4)


def test_beta_action_dist_matches_numerical_integration_and_the_slate_propensity():
    """Three Beta arms, slate of 2 (the case of test_policies): P(i first) and P(i second)
    by integration; the Monte-Carlo distribution and the policy's own Slate.propensity
    agree with them within their standard errors."""
    params = {"a": (8.0, 4.0), "b": (5.0, 5.0), "c": (3.0, 6.0)}
    dist_of = {k: stats.beta(*v) for k, v in params.items()}

    def first(i):
        others = [j for j in params if j != i]
        return integrate.quad(lambda x: dist_of[i].pdf(x) * np.prod([dist_of[j].cdf(x) for j in others]), 0, 1)[0]

    def second(i):
        total = 0.0
        for j in params:
            if j != i:
                k = next(m for m in params if m not in (i, j))
                total += integrate.quad(lambda x: dist_of[i].pdf(x) * dist_of[k].cdf(x) * dist_of[j].sf(x), 0, 1)[0]
        return total

    s = 20_000
    policy = beta_policy(params, s)
    cands = Candidates(list(params))
    dist = policy_action_dist(policy, None, cands, 2, samples=s, seed=5, n_rounds=3)
    assert np.array_equal(dist[0], dist[2])  # no context: one distribution for every round
    for a, arm in enumerate(params):
        for pos, truth in enumerate((first(arm), second(arm))):
            assert abs(dist[0, a, pos] - truth) <= 4 * math.sqrt(truth * (1 - truth) / s), (arm, pos)
    for seed in range(3):
        slate = policy.select(None, cands, 2, seed)
        for pos, arm in enumerate(slate.arms):
            p = dist[0, list(params).index(arm), pos]
            assert abs(slate.propensity[pos] - p) <= 4 * math.sqrt(2 * p * (1 - p) / s) + 1 / (s + 1)


def test_rounds_keep_their_own_context_and_item_features_when_batched():
    """Greedy (exploration_scale 0) is deterministic: each round's slate is the top of its
    own posterior-mean scores, so rows of a batch must not mix."""
    rng = np.random.default_rng(3)
    policy = trained_linear(seed=4)
    n, k = 40, 5
    contexts, items = rng.normal(size=(n, 2)), rng.normal(size=(n, k, 3))
    cands = Candidates([f"i{j}" for j in range(k)], items[0])
    dist = policy_action_dist(policy, contexts, cands, 2, samples=3, round_features=items, exploration_scale=0.0)
    for i in range(n):
        rows = policy._rows(contexts[i], Candidates(cands.ids, items[i]))
        best = top_n(rows @ policy.mean, 2)
        expected = np.zeros((k, 2))
        expected[best, [0, 1]] = 1.0
        np.testing.assert_array_equal(dist[i], expected)


def test_logistic_rounds_batched_match_round_by_round():
    rng = np.random.default_rng(6)
    policy = LogisticTS(LogisticTSConfig(dim=3, context_dim=1))
    x = rng.normal(size=(300, 6))
    policy.learn(["a"] * 300, x, (rng.random(300) < 0.3).astype(float))
    contexts, cands = rng.normal(size=(3, 1)), Candidates(["p", "q", "r", "s"], rng.normal(size=(4, 3)))
    s = 20_000
    batched = policy_action_dist(policy, contexts, cands, 2, samples=s, seed=1)
    for i in range(3):
        alone = policy_action_dist(policy, contexts[i : i + 1], cands, 2, samples=s, seed=10 + i)[0]
        se = np.sqrt(np.maximum(alone * (1 - alone), 1e-4) * 2 / s)
        assert (np.abs(batched[i] - alone) <= 4 * se).all()


@pytest.mark.parametrize("kwargs,message", [
    ({"samples": 0}, "samples"),
    ({"n_positions": 0}, "n_positions"),
    ({"n_rounds": 5}, "disagree"),
    ({"round_features": np.zeros((3, 2, 3))}, "round_features"),
    ({"contexts": None}, None),
])
def test_action_dist_refuses_bad_arguments(kwargs, message):
    policy = trained_linear()
    base = {"contexts": np.zeros((3, 2)), "candidates": Candidates(["a", "b", "c"], np.ones((3, 3))),
            "n_positions": 2, "samples": 10}
    args = {**base, **kwargs}
    if message is None:  # a contextual policy given no context: the policy's own error
        with pytest.raises(ValueError, match="context"):
            policy_action_dist(policy, **args, n_rounds=3)
        return
    with pytest.raises(ValueError, match=message):
        policy_action_dist(policy, **args)


# ---------------------------------------------------------------- decisions_to_log


def decision(did: str, items: list[tuple[str, float]], *, activated: bool = True, width: int = 2,
             at: float = 100.0) -> Decision:
    return Decision(decision_id=did, user_id="u", policy="linear_ts", policy_version=1, created_at=at,
                    items=[ScoredItem(i, 0.5, p, False) for i, p in items],
                    features=[[float(j), float(len(did))][:width] for j in range(len(items))], activated=activated)


def test_decisions_to_log_round_trip():
    decisions = [decision("d1", [("x", 0.5), ("y", 0.25)]), decision("d2", [("y", 0.9)]),
                 decision("d3", [("z", 0.1)], activated=False), decision("d4", [("z", 0.2), ("x", 1.0)])]
    rewards = {("d1", "y"): 1.0, ("d4", "z"): 0.5, ("d3", "z"): 1.0}
    log, ids = decisions_to_log(decisions, rewards)
    assert ids == ["x", "y", "z"]
    assert log.n_actions == 3 and log.n_positions == 2 and log.n_rounds == 5  # d3 never shown
    assert [ids[a] for a in log.action] == ["x", "y", "y", "z", "x"]
    assert log.position.tolist() == [0, 1, 0, 0, 1]
    assert log.reward.tolist() == [0.0, 1.0, 0.0, 0.5, 0.0]
    assert log.pscore.tolist() == [0.5, 0.25, 0.9, 0.2, 1.0]
    np.testing.assert_array_equal(log.context, [[0, 2], [1, 2], [0, 2], [0, 2], [1, 2]])

    kept, _ = decisions_to_log(decisions, rewards, default_reward=None)
    assert kept.reward.tolist() == [1.0, 0.5]
    mixed, _ = decisions_to_log([decision("d1", [("x", 0.5)]), decision("d2", [("y", 0.5)], width=1)], {})
    assert mixed.context is None  # rows of different widths are not a context matrix


@pytest.mark.parametrize("decisions,rewards,message", [
    ([], {}, "no shown item"),
    ([decision("d", [("x", 0.5)], activated=False)], {}, "no shown item"),
    ([decision("d", [("x", 0.0)])], {}, "propensity"),
    ([decision("d", [("x", 1.5)])], {}, "propensity"),
])
def test_decisions_to_log_refuses(decisions, rewards, message):
    with pytest.raises(ValueError, match=message):
        decisions_to_log(decisions, rewards)


def test_on_policy_value_is_the_mean_reward():
    rng = np.random.default_rng(0)
    n = 500
    log = BanditLog(action=rng.integers(0, 1000, n), reward=(rng.random(n) < 0.2).astype(float),
                    pscore=rng.uniform(0.05, 1.0, n), n_actions=1000, position=rng.integers(0, 4, n), n_positions=4)
    ips_est, snips_est = on_policy_value(log, n_boot=300)
    assert ips_est.estimator == "ips" and snips_est.estimator == "snips"
    assert ips_est.value == pytest.approx(log.reward.mean()) and snips_est.value == pytest.approx(log.reward.mean())
    assert ips_est.ci_low < log.reward.mean() < ips_est.ci_high


# ---------------------------------------------------------------- train and evaluate


def synthetic_log(n: int, seed: int, mu=(0.1, 0.1, 0.1, 0.1, 0.5)) -> BanditLog:
    """Uniform logging over K items (one-hot item features), no context, one position."""
    rng = np.random.default_rng(seed)
    k = len(mu)
    action = rng.integers(0, k, n)
    return BanditLog(action=action, reward=(rng.random(n) < np.asarray(mu)[action]).astype(float),
                     pscore=np.full(n, 1 / k), n_actions=k, action_context=np.eye(k))


def one_hot_items(log: BanditLog) -> RoundFeatures:
    return RoundFeatures(context=None, items=log.action_context)


def test_uniform_policy_on_a_uniform_log_has_ratio_one():
    log = synthetic_log(2000, 0)
    dist = np.full((log.n_rounds, log.n_actions, 1), 1 / log.n_actions)
    result = estimate_against_logging(log, dist, estimators=("ips", "snips"), n_boot=200)
    for r in result.relative:
        assert r.value == pytest.approx(1.0) and r.ci_low == pytest.approx(1.0) and r.ci_high == pytest.approx(1.0)
    assert result.baseline.value == pytest.approx(log.reward.mean())


@pytest.mark.parametrize("model", ["linear_ts", "logistic_ts"])
def test_trained_ts_beats_random_when_one_item_is_better(model):
    """Item 4 clicks at 0.5, the rest at 0.1: random earns 0.18; a trained TS should put
    most of its mass on item 4 (value near 0.5, ratio near 2.8)."""
    train, test = synthetic_log(3000, 1), synthetic_log(3000, 2)
    result = train_and_evaluate(ts_factory(model, train), train, test, one_hot_items,
                                estimators=("ips", "snips", "dr"), samples=500, n_boot=300, seed=3)
    assert result.policy == model and result.n_train == 3000
    for est, rel in zip(result.estimates, result.relative):
        assert 0.4 < est.value < 0.55, est
        assert rel.value == pytest.approx(est.value / result.baseline.value)
        assert 2.0 < rel.ci_low < rel.value < rel.ci_high, rel
    assert result.notes["mean_top_prob"] > 0.8


def test_train_and_evaluate_refuses_unknown_estimators():
    log = synthetic_log(200, 0)
    with pytest.raises(ValueError, match="unknown estimators"):
        train_and_evaluate(ts_factory("linear_ts", log), log, log, one_hot_items, estimators=("ipw",))
    with pytest.raises(ValueError, match="unknown model"):
        ts_factory("ucb", log)


def test_split_in_time():
    log = synthetic_log(10, 0)
    train, test = split_in_time(log, 0.3)
    assert train.n_rounds == 3 and test.n_rounds == 7
    np.testing.assert_array_equal(np.concatenate([train.action, test.action]), log.action)
    with pytest.raises(ValueError):
        split_in_time(log, 1.0)


# ---------------------------------------------------------------- Open Bandit Dataset


@pytest.fixture(scope="module")
def obd_men(obd_dir):
    from relevo.datasets.obd import build_vocab, load_obd

    folder = obd_dir
    vocab = build_vocab(folder, "men")
    return load_obd(folder, "random", "men", vocab=vocab), [len(c) for c in vocab.user_features]


def test_obd_features_are_compact_and_per_round(obd_men):
    log, widths = obd_men
    train, _ = split_in_time(log)
    features = ObdFeatures.fit(train, widths, top=2)(log)
    assert features.context.shape == (log.n_rounds, 8) and set(np.unique(features.context)) <= {0.0, 1.0}
    assert features.items.shape == (log.n_rounds, 34, 1 + log.action_context.shape[1] + 1)
    np.testing.assert_array_equal(features.items[:, :, 0], 1.0)
    own = features.items[np.arange(log.n_rounds), log.action, -1]  # the user's affinity with the logged item
    np.testing.assert_allclose(own, np.log1p(log.context[np.arange(log.n_rounds), sum(widths) + log.action]))


def test_train_and_evaluate_on_obd_gives_sane_ctrs(obd_men):
    log, widths = obd_men
    results = evaluate_ts_on_log(log, widths, models=("linear_ts", "logistic_ts"), greedy=False,
                                 samples=200, n_boot=200, seed=0)
    assert [r.policy for r in results] == ["linear_ts", "logistic_ts"]
    for r in results:
        assert r.n_train == 5000 and r.baseline.n_rounds == 5000
        assert 0 < r.baseline.value < 0.05
        for est, rel in zip(r.estimates, r.relative):
            assert 0 < est.value < 0.05 and est.ci_low <= est.value <= est.ci_high, est
            assert rel.ci_low <= rel.value <= rel.ci_high and 0 < rel.value < 5, rel
        assert r.notes["ips_mc_std_err"] < 0.5 * r.estimates[0].std_err
