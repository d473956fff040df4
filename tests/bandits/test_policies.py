"""Every bandit policy: one conformance suite, then each model's own properties, and the
propensity estimator's error against cases with a known answer."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from relevo.bandits.base import Candidates, Policy, PositionModel, top_n
from relevo.bandits.beta import BetaTS, BetaTSConfig
from relevo.bandits.disjoint import DisjointConfig, DisjointLinTS
from relevo.bandits.linear_ts import LinearTS, LinTSConfig
from relevo.bandits.logistic import LogisticTS, LogisticTSConfig

D_ITEM, D_CTX, K = 4, 3, 12


def make(kind: str) -> Policy:
    return {
        "linear_ts": lambda: LinearTS(LinTSConfig(dim=D_ITEM, context_dim=D_CTX, propensity_samples=300)),
        "disjoint_ts": lambda: DisjointLinTS(DisjointConfig(context_dim=D_CTX, propensity_samples=300)),
        "beta_ts": lambda: BetaTS(BetaTSConfig(propensity_samples=300)),
        "logistic_ts": lambda: LogisticTS(LogisticTSConfig(dim=D_ITEM, context_dim=D_CTX, propensity_samples=300)),
    }[kind]()


KINDS = ("linear_ts", "disjoint_ts", "beta_ts", "logistic_ts")


def problem(kind: str, seed: int = 0):
    rng = np.random.default_rng(seed)
    ids = [f"arm{i}" for i in range(K)]
    items = rng.normal(size=(K, D_ITEM))
    context = None if kind == "beta_ts" else rng.normal(size=D_CTX)
    return context, Candidates(ids, None if kind in ("beta_ts", "disjoint_ts") else items)


@pytest.mark.parametrize("kind", KINDS)
def test_conformance(kind):
    policy = make(kind)
    assert isinstance(policy, Policy)
    context, cands = problem(kind)
    before = None if cands.features is None else cands.features.copy()
    # selects before any learning, a slate without replacement with valid propensities
    slate = policy.select(context, cands, 5, seed=11)
    assert len(slate.order) == 5 and len(set(slate.arms)) == 5 and slate.policy == kind
    assert np.all((slate.propensity > 0) & (slate.propensity <= slate.inclusion + 1e-12) & (slate.inclusion <= 1))
    # the same seed replays the same decision; inputs are not mutated
    again = policy.select(context, cands, 5, seed=11)
    assert again.arms == slate.arms and np.array_equal(again.propensity, slate.propensity)
    if before is not None:
        np.testing.assert_array_equal(cands.features, before)
    # update, save, load: clones are independent and equal in what they decide
    policy.update(slate, [1.0, 0.0, 0.0, 1.0, 0.0])
    assert policy.n_updates == 5
    clone = make(kind)
    clone.load_state_dict(policy.state_dict())
    a, b = policy.select(context, cands, 5, seed=3), clone.select(context, cands, 5, seed=3)
    assert a.arms == b.arms and np.allclose(a.scores, b.scores)
    clone.update(b, [0, 0, 0, 0, 1.0])
    assert policy.n_updates == 5 and clone.n_updates == 10
    # n larger than the candidate set, and an empty request
    assert len(policy.select(context, cands, 50, seed=1).order) == K
    assert len(policy.select(context, cands, 0, seed=1).order) == 0


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "bad, message",
    [
        ("nan_reward", "finite"),
        ("wrong_reward_count", "one per shown item"),
        ("negative_n", "n must be"),
        ("bad_bonus", "bonus has shape"),
        ("bad_state", "lacks"),
    ],
)
def test_bad_input_is_refused_and_state_untouched(kind, bad, message):
    policy = make(kind)
    context, cands = problem(kind)
    slate = policy.select(context, cands, 3, seed=0)
    state = policy.state_dict()
    with pytest.raises(ValueError, match=message):
        if bad == "nan_reward":
            policy.update(slate, [1.0, float("nan"), 0.0])
        elif bad == "wrong_reward_count":
            policy.update(slate, [1.0])
        elif bad == "negative_n":
            policy.select(context, cands, -1, seed=0)
        elif bad == "bad_bonus":
            policy.select(context, cands, 3, seed=0, bonus=np.ones(2))
        else:
            policy.load_state_dict({"kind": kind, "n_updates": 0})
    assert policy.state_dict() == state


def test_wrong_feature_shapes_are_refused():
    lin = make("linear_ts")
    with pytest.raises(ValueError, match="columns"):
        lin.select(np.zeros(D_CTX), Candidates(["a", "b"], np.zeros((2, D_ITEM + 1))), 1, 0)
    with pytest.raises(ValueError, match="context"):
        lin.select(np.zeros(D_CTX + 2), Candidates(["a", "b"], np.zeros((2, D_ITEM))), 1, 0)
    with pytest.raises(ValueError, match="shape"):
        Candidates(["a", "b"], np.zeros((3, D_ITEM)))
    with pytest.raises(ValueError, match="unique"):
        Candidates(["a", "a"])
    with pytest.raises(ValueError, match="dimension"):
        lin.learn(["a"], np.zeros((1, 5)), [1.0])
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        make("beta_ts").learn(["a"], None, [2.0])
    with pytest.raises(ValueError, match="0 or 1"):
        make("logistic_ts").learn(["a"], np.zeros((1, D_ITEM * (1 + D_CTX))), [0.5])


def phi(z: float) -> float:
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


def test_linear_propensity_matches_closed_form_two_arms():
    """Two candidates, n=1: P(arm 0) = Phi(mu.(x0-x1) / (v sqrt((x0-x1)' A^-1 (x0-x1)))). Every
    estimate lies within 4 standard errors plus the documented 1/(S+1) bias."""
    s = 2000
    policy = LinearTS(LinTSConfig(dim=2, prior_mean=(0.3, 0.1), lam=2.0, exploration=0.5, propensity_samples=s))
    cands = Candidates(["a", "b"], np.array([[1.0, 0.2], [0.4, 1.0]]))
    diff = cands.features[0] - cands.features[1]
    truth = phi(float(policy.mean @ diff) / (0.5 * math.sqrt(diff @ np.linalg.inv(policy.A) @ diff)))
    se = math.sqrt(truth * (1 - truth) / s)
    shown = {"a": 0, "b": 0}
    for seed in range(20):
        slate = policy.select(None, cands, 1, seed)
        p_true = truth if slate.arms[0] == "a" else 1 - truth
        assert abs(slate.propensity[0] - p_true) <= 4 * se + 1 / (s + 1)
        shown[slate.arms[0]] += 1
    assert 0.2 < truth < 0.8 and shown["a"] and shown["b"]


def test_beta_position_propensities_match_numerical_integration():
    """Three Beta arms, slate of 2: P(arm i first) = int f_i(x) prod_{j != i} F_j(x) dx, and
    P(arm i second) follows by integrating over which arm beats it."""
    policy = BetaTS(BetaTSConfig(propensity_samples=4000))
    params = {"a": (8.0, 4.0), "b": (5.0, 5.0), "c": (3.0, 6.0)}
    for arm, (a, b) in params.items():
        policy.learn([arm] * 1, None, [0.0], [0.0])  # registers the arm, learns nothing (weight 0, reward 0)
        row = policy.index[arm]
        policy.alpha[row], policy.beta[row] = a, b
    dist = {k: stats.beta(*v) for k, v in params.items()}

    def first(i):
        others = [j for j in params if j != i]
        return integrate.quad(lambda x: dist[i].pdf(x) * np.prod([dist[j].cdf(x) for j in others]), 0, 1)[0]

    def second(i):
        total = 0.0
        for j in params:  # j is first, i second: x_j > x_i > x_k
            if j == i:
                continue
            k = next(m for m in params if m not in (i, j))
            total += integrate.quad(lambda x: dist[i].pdf(x) * dist[k].cdf(x) * dist[j].sf(x), 0, 1)[0]
        return total

    truth = {(i, 0): first(i) for i in params} | {(i, 1): second(i) for i in params}
    cands = Candidates(list(params))
    s = 4000
    for seed in range(10):
        slate = policy.select(None, cands, 2, seed)
        for pos, arm in enumerate(slate.arms):
            p = truth[(arm, pos)]
            assert abs(slate.propensity[pos] - p) <= 4 * math.sqrt(p * (1 - p) / s) + 1 / (s + 1), (arm, pos, p)
        inclusion = [truth[(arm, 0)] + truth[(arm, 1)] for arm in slate.arms]
        assert np.allclose(slate.inclusion, inclusion, atol=0.03)


def test_sherman_morrison_tracks_the_exact_inverse_and_refresh_resets_drift():
    rng = np.random.default_rng(0)
    policy = LinearTS(LinTSConfig(dim=16, refresh_every=1000))
    x = rng.normal(size=(500, 16))
    r = x @ rng.normal(size=16) + 0.1 * rng.normal(size=500)
    for row, reward in zip(x, r):
        policy.learn(["a"], row[None, :], [reward])
    exact = np.linalg.inv(policy.A)
    assert np.abs(policy.A_inv - exact).max() < 1e-9
    np.testing.assert_allclose(policy.mean, exact @ policy.b, atol=1e-8)
    batched = LinearTS(LinTSConfig(dim=16))
    batched.learn(["a"] * 500, x, r)  # one batched update lands on the same posterior
    np.testing.assert_allclose(batched.mean, policy.mean, atol=1e-8)


def test_linear_ts_learns_context_item_interactions():
    """Users with context +1 like item feature 0, users with -1 like feature 1: only the
    context (x) item block can express that."""
    rng = np.random.default_rng(1)
    policy = LinearTS(LinTSConfig(dim=2, context_dim=1, exploration=0.1))
    items = np.eye(2)
    cands = Candidates(["f0", "f1"], items)
    for t in range(400):
        c = np.array([1.0 if t % 2 else -1.0])
        slate = policy.select(c, cands, 1, seed=t)
        liked = "f0" if c[0] > 0 else "f1"
        policy.update(slate, [1.0 if slate.arms[0] == liked else 0.0])
    assert policy.select(np.array([1.0]), cands, 1, seed=999).arms == ["f0"]
    assert policy.select(np.array([-1.0]), cands, 1, seed=999).arms == ["f1"]


def test_disjoint_learns_each_arm_and_beats_random():
    rng = np.random.default_rng(2)
    w = rng.normal(size=(5, D_CTX))
    policy = DisjointLinTS(DisjointConfig(context_dim=D_CTX, exploration=0.5, propensity_samples=0))
    cands = Candidates([f"a{i}" for i in range(5)])
    regret = []
    for t in range(1500):
        c = rng.normal(size=D_CTX)
        slate = policy.select(c, cands, 1, seed=t)
        means = w @ c
        arm = int(slate.arms[0][1:])
        policy.update(slate, [means[arm] + 0.1 * rng.normal()])
        regret.append(means.max() - means[arm])
    assert np.mean(regret[-300:]) < 0.25 * np.mean(regret[:100])


def test_logistic_ts_recovers_weights():
    rng = np.random.default_rng(3)
    policy = LogisticTS(LogisticTSConfig(dim=3, lam=1.0))
    true_w = np.array([1.5, -2.0, 0.5])
    x = rng.normal(size=(4000, 3))
    y = (rng.random(4000) < 1 / (1 + np.exp(-x @ true_w))).astype(float)
    for start in range(0, 4000, 200):  # batched updates, as Chapelle & Li do
        policy.learn(["a"] * 200, x[start:start + 200], y[start:start + 200])
    np.testing.assert_allclose(policy.m, true_w, atol=0.25)
    assert (policy.q > 100).all()


def test_position_model_discounts_low_positions():
    pos = PositionModel.dcg(3)
    np.testing.assert_allclose(pos.weights(np.array([0, 1, 2, 7])), [1.0, 1 / math.log2(3), 0.5, 0.5])
    policy = BetaTS(BetaTSConfig(examination=pos.examination, propensity_samples=10))
    slate = policy.select(None, Candidates(["a", "b", "c"]), 3, seed=0)
    policy.update(slate, [0.0, 0.0, 0.0])
    rows = policy.arm_rows(slate.arms)
    np.testing.assert_allclose(policy.beta[rows] - 1.0, pos.examination)
    with pytest.raises(ValueError):
        PositionModel((0.0,))


def test_exploration_scale_zero_is_greedy_and_marked_unexplored():
    policy = LinearTS(LinTSConfig(dim=2, prior_mean=(1.0, 0.0), exploration=1.0, propensity_samples=50))
    cands = Candidates(["x", "y", "z"], np.array([[3.0, 0], [2.0, 0], [1.0, 0]]))
    slate = policy.select(None, cands, 2, 0, exploration_scale=0.0)
    assert slate.arms == ["x", "y"] and not slate.explored.any() and slate.exploration_share == 0.0
    np.testing.assert_allclose(slate.propensity, 1.0)


def test_top_n_orders_best_first():
    s = np.array([[0.1, 0.9, 0.5, 0.7], [3, 2, 1, 0]])
    np.testing.assert_array_equal(top_n(s, 2), [[1, 3], [0, 1]])
    np.testing.assert_array_equal(top_n(np.array([2.0, 1.0]), 5), [0, 1])


def test_logistic_newton_step_woodbury_equals_the_full_solve():
    from relevo.bandits.logistic import newton_step

    rng = np.random.default_rng(4)
    d = 40
    q = rng.uniform(0.5, 3.0, d)
    grad = rng.normal(size=d)
    for m in (1, 5, 39, 60):  # Woodbury below d, the full solve at and above
        x = rng.normal(size=(m, d))
        c = rng.uniform(0.0, 0.25, m)
        c[0] = 0.0  # a row of weight 0 must not break the identity
        full = np.linalg.solve(np.diag(q) + (x * c[:, None]).T @ x, grad)
        np.testing.assert_allclose(newton_step(q, x, c, grad), full, rtol=1e-9, atol=1e-10)
