"""Read-out: sufficient statistics, intervals (coverage), lift, P(best) against
quadrature, guardrails, and the sample-ratio-mismatch check."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import integrate
from scipy import stats as sps

from relevo.experiments import (
    Experiment,
    Guardrail,
    Sums,
    Variant,
    VariantStats,
    probability_best,
    results,
    sample_ratio_check,
)
from relevo.experiments.analysis import normal_interval, wilson_interval


def experiment(k=2, allocation="fixed", weights=None, guardrails=(), metric="reward", min_samples=100):
    weights = weights or [1.0] * k
    return Experiment(
        id="exp",
        variants=tuple(Variant(f"v{i}", w) for i, w in enumerate(weights)),
        allocation=allocation,
        salt="s",
        created_at=0.0,
        metric=metric,
        guardrails=tuple(guardrails),
        min_samples_per_variant=min_samples,
    )


# --- sufficient statistics ----------------------------------------------------------------


def test_stats_accumulate_and_merge():
    r = np.array([0.0, 1.0, 0.5, 2.0, -1.0])
    s = VariantStats("v0").expose(5).observe(r).observe_guardrail("latency_ms", [100.0, 120.0])
    assert (s.exposures, s.trials) == (5, 5)
    assert s.reward_sum == 2.5 and s.reward_sq_sum == 6.25
    assert s.successes == 2.5  # clipped: 0 + 1 + 0.5 + 1 + 0
    assert s.non_binary == 3 and not s.binary
    assert s.guardrails["latency_ms"] == Sums(2, 220.0, 24_400.0)
    half = VariantStats("v0").expose(2).observe(r[:2]).observe_guardrail("latency_ms", [100.0])
    rest = VariantStats("v0").expose(3).observe(r[2:]).observe_guardrail("latency_ms", [120.0])
    assert half.merge(rest) == s
    assert VariantStats.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    assert s.reward.variance == pytest.approx(np.var(r, ddof=1))


@pytest.mark.parametrize(
    "make, pattern",
    [
        (lambda: VariantStats("a", exposures=-1), r"^exposures: must be an integer >= 0"),
        (lambda: VariantStats("a", trials=1.5), r"^trials: must be an integer"),
        (lambda: VariantStats("a", trials=2, successes=3.0), r"successes must lie in \[0, trials\]"),
        (lambda: VariantStats("a", reward_sum=math.nan), r"^reward_sum: must be finite"),
        (lambda: VariantStats("a", trials=1, non_binary=2), r"^non_binary: cannot exceed trials"),
        (lambda: VariantStats("a").observe([1.0, math.inf]), r"^rewards: values must be finite"),
        (lambda: VariantStats("a").merge(VariantStats("b")), r"cannot merge stats of 'b' into 'a'"),
        (lambda: Sums(-1), r"^count: must be an integer >= 0"),
        (lambda: results(experiment(), [VariantStats("zz")]), r"^stats: experiment 'exp' has no variant 'zz'"),
        (lambda: results(experiment(), [VariantStats("v0"), VariantStats("v0")]), r"^stats: two entries"),
        (lambda: sample_ratio_check([1, 2], [1, 2, 3]), r"expected_share has shape \(3,\); expected \(2,\)"),
        (lambda: sample_ratio_check([1, 2], [0, 0]), r"expected_share must be finite, >= 0 and not all 0"),
        (lambda: sample_ratio_check([1, 2], [1, -1]), r"expected_share must be finite"),
    ],
)
def test_invalid_stats_and_inputs(make, pattern):
    with pytest.raises(ValueError, match=pattern):
        make()


# --- intervals --------------------------------------------------------------------------


@pytest.mark.parametrize("p, n", [(0.05, 400), (0.5, 100), (0.01, 1000)])
def test_wilson_coverage(p, n):
    """4,000 seeded replications: SE of the coverage 0.0035; binomial discreteness moves
    Wilson's true coverage by about +-0.015 (measured 0.947, 0.943, 0.967)."""
    x = np.random.default_rng(0).binomial(n, p, 4000)
    lo, hi = wilson_interval(x, n)
    assert 0.925 <= ((lo <= p) & (p <= hi)).mean() <= 0.975


def test_normal_interval_coverage_for_skewed_rewards():
    y = np.random.default_rng(1).exponential(2.0, (4000, 200))
    lo, hi = normal_interval(y.mean(1), y.var(1, ddof=1), 200)
    assert 0.925 <= ((lo <= 2.0) & (2.0 <= hi)).mean() <= 0.97  # measured 0.946


def test_lift_interval_coverage_end_to_end():
    """1,000 seeded experiments through ``results`` (SE 0.007): binary CTR 0.10 vs 0.12
    (Agresti-Caffo) and exponential rewards 1.0 vs 1.5 (Welch); measured 0.955 / 0.957."""
    rng = np.random.default_rng(2)
    x = experiment()
    hit_binary = hit_normal = 0
    for r in range(1000):
        a = VariantStats("v0").expose(2000).observe((rng.random(2000) < 0.10).astype(float))
        b = VariantStats("v1").expose(2000).observe((rng.random(2000) < 0.12).astype(float))
        v = results(x, [a, b], seed=r, draws=200).variants[1]
        hit_binary += v.lift_ci_low <= 0.02 <= v.lift_ci_high
        a = VariantStats("v0").observe(rng.exponential(1.0, 300))
        b = VariantStats("v1").observe(rng.exponential(1.5, 300))
        v = results(x, [a, b], seed=r, draws=200).variants[1]
        hit_normal += v.lift_ci_low <= 0.5 <= v.lift_ci_high
    assert 0.925 <= hit_binary / 1000 <= 0.98
    assert 0.925 <= hit_normal / 1000 <= 0.98


def test_results_pick_wilson_or_normal_and_report_lift():
    x = experiment(3)
    a = VariantStats("v0").expose(1000).observe(np.r_[np.ones(100), np.zeros(900)])
    b = VariantStats("v1").expose(1000).observe(np.r_[np.ones(150), np.zeros(850)])
    c = VariantStats("v2").expose(1000).observe(np.full(1000, 0.12))
    res = results(x, [a, b, c])
    v0, v1, v2 = res.variants
    assert (v0.ci_method, v1.ci_method, v2.ci_method) == ("wilson", "wilson", "normal")
    lo, hi = wilson_interval(100, 1000)
    assert (v0.mean, v0.ci_low, v0.ci_high) == (0.1, float(lo), float(hi))
    assert v0.lift is None and v0.lift_ci_low is None
    assert v1.lift == pytest.approx(0.05) and v1.lift_ci_low > 0  # z about 3.4
    assert v2.lift == pytest.approx(0.02) and v2.ope is None
    assert res.leader == "v1" and v1.prob_best > 0.95
    assert sum(v.prob_best for v in res.variants) == pytest.approx(1.0)
    assert res.ready and res.srm is not None and not res.srm.mismatch
    json.dumps(res.to_dict())


def test_empty_experiment_reads_out_without_numbers():
    res = results(experiment(3, "thompson"), [])
    assert all(v.mean is None and v.ci_low is None and v.lift is None for v in res.variants)
    assert [v.prob_best for v in res.variants] == pytest.approx([1 / 3] * 3, abs=0.02)
    assert res.srm is None and not res.ready


# --- P(best) ----------------------------------------------------------------------------


def test_probability_best_matches_quadrature():
    alpha = np.array([1 + 40.0, 1 + 45.0, 1 + 52.0])
    beta = np.array([1 + 460.0, 1 + 455.0, 1 + 448.0])

    def p_best(i):
        others = [k for k in range(3) if k != i]
        f = lambda t: sps.beta.pdf(t, alpha[i], beta[i]) * np.prod([sps.beta.cdf(t, alpha[k], beta[k]) for k in others])
        return integrate.quad(f, 0, 1, limit=200, points=[0.1])[0]

    truth = np.array([p_best(i) for i in range(3)])
    assert truth.sum() == pytest.approx(1.0, abs=1e-6)
    est = probability_best(alpha, beta, draws=10_000, seed=5)
    se = np.sqrt(truth * (1 - truth) / 10_000)
    assert np.all(np.abs(est - truth) < 4 * se), (est, truth)
    np.testing.assert_array_equal(est, probability_best(alpha, beta, draws=10_000, seed=5))


# --- guardrails -------------------------------------------------------------------------


def test_guardrail_statuses():
    rules = [Guardrail("latency_ms", "max", 100.0), Guardrail("reward", "min", 0.05)]
    x = experiment(4, guardrails=rules)
    rng = np.random.default_rng(3)
    clicks = lambda p: (rng.random(2000) < p).astype(float)
    stats = [
        VariantStats("v0").observe(clicks(0.10)).observe_guardrail("latency_ms", rng.normal(80, 10, 500)),
        VariantStats("v1").observe(clicks(0.10)).observe_guardrail("latency_ms", rng.normal(130, 10, 500)),
        VariantStats("v2").observe(clicks(0.01)).observe_guardrail("latency_ms", [80.0, 124.0] * 25),
        VariantStats("v3").observe(clicks(0.10)),
    ]
    res = results(x, stats)
    status = {v.name: tuple(g.status for g in v.guardrails) for v in res.variants}
    assert status["v0"] == ("ok", "ok")
    assert status["v1"] == ("breached", "ok") and res.variant("v1").guardrail_breached
    assert status["v2"][1] == "breached"  # click rate ~0.01 < 0.05, judged on the reward sums
    assert status["v3"] == ("insufficient_data", "ok")
    g = res.variant("v2").guardrails[0]  # mean 102, sd 22: above the limit, not significantly
    assert g.mean == 102.0 and g.ci_low < 100 < g.ci_high and g.status == "at_risk"
    assert res.to_dict()["variants"][1]["guardrails"][0]["breached"] is True


# --- sample ratio mismatch ----------------------------------------------------------------


def test_srm_flags_a_52_48_split_of_100k():
    check = results(experiment(), [VariantStats("v0", 52_000), VariantStats("v1", 48_000)]).srm
    assert check.mismatch and check.p_value < 1e-30 and check.df == 1
    assert check.statistic == pytest.approx(160.0) and check.expected == (50_000.0, 50_000.0)


def test_srm_accepts_a_correct_split():
    rng = np.random.default_rng(4)
    for _ in range(20):
        n0 = int(rng.binomial(100_000, 0.5))
        check = sample_ratio_check([n0, 100_000 - n0], [1, 1])
        assert not check.mismatch
    assert not sample_ratio_check([50_100, 49_900], [0.5, 0.5]).mismatch


def test_srm_p_values_are_calibrated_under_the_null():
    """2,000 correct 3-way splits: the share of p < 0.05 must be 0.05 +- 4 SE (SE 0.005)."""
    rng = np.random.default_rng(5)
    share = np.array([0.2, 0.3, 0.5])
    p = np.array([sample_ratio_check(rng.multinomial(30_000, share), share).p_value for _ in range(2000)])
    assert abs((p < 0.05).mean() - 0.05) < 0.02
    assert (p < 0.001).mean() < 0.005


def test_srm_under_adaptive_allocation_uses_the_accumulated_share():
    """Three phases with different splits: the caller's sum_t n_t p_t fits; checking against
    only the final split would cry wolf."""
    rng = np.random.default_rng(6)
    phases = [(20_000, [1 / 3, 1 / 3, 1 / 3]), (30_000, [0.2, 0.3, 0.5]), (50_000, [0.05, 0.15, 0.8])]
    observed = sum(rng.multinomial(n, p) for n, p in phases)
    expected_share = sum(n * np.asarray(p) for n, p in phases)
    x = experiment(3, "thompson")
    stats = [VariantStats(f"v{i}", int(observed[i])) for i in range(3)]
    assert not results(x, stats, expected_share).srm.mismatch
    assert results(x, stats, phases[-1][1]).srm.mismatch
    assert results(x, stats).srm is None  # adaptive without a history: no check


def test_srm_exposures_where_none_were_expected():
    check = sample_ratio_check([100, 3, 0], [0.5, 0.0, 0.5])
    assert check.mismatch and check.p_value == 0.0
    assert sample_ratio_check([0, 0], [1, 1]) is None
    assert not sample_ratio_check([100, 0], [1, 0]).mismatch
