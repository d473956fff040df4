"""The bandit benchmarks at tiny sizes: their functions run and report the documented
figures, the synthetic problem is what its docstring says, every policy sees the same
draws, and relevo LinearTS beats uniform random on it. Full figures:
python -m benchmarks.bandit and python -m benchmarks.synthetic_ctr.

Threshold (LinearTS vs random): a small problem (K = 20, d = 8, d_arm = 4, T = 1,000),
means over 3 seeds. Over 40 such groups of 3 (seeds 0..119) the CTR gain over random was
0.082 on average (sd 0.014, min 0.049) and the ratio was >= 2.12; the test asks for a gain
> 0.04 and a ratio > 1.8."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from scipy.special import expit

from benchmarks import bandit, synthetic_ctr
from benchmarks.synthetic_ctr import make_problem, simulate
from relevo.bandits.linear_ts import joint_rows

TINY = bandit.Sizes(dim=8, candidates=30, batch=40, small_k=10, small_dim=4, update_reps=150, decide_reps=40,
                    batch_reps=4, mab_update_reps=4, mab_decide_reps=4, mab_batch_reps=2)
SMALL = {"arms": 20, "dim": 8, "arm_dim": 4}


def last_json(out: str) -> dict:
    return orjson.loads(out.strip().splitlines()[-1])


def test_bandit_speed_figures_have_the_documented_shape(capsys):
    pytest.importorskip("mabwiser")
    results = bandit.collect(TINY)
    summary = bandit.report(results, threads=1)
    printed = last_json(capsys.readouterr().out)
    assert printed["bench"] == "bandit" and printed["update_p50_us"] == summary["update_p50_us"]
    for key in ("update_p50_us", "update_p99_us", "baseline_update_p50_us", "decide_p50_ms", "decide_p95_ms",
                "decide_p99_ms", "decide_no_propensities_p95_ms", "baseline_decide_p50_ms", "batch_rows_per_s",
                "baseline_batch_rows_per_s"):
        assert summary[key] > 0, key
    assert set(summary["targets"]) == {"update_p50_le_20us", "decide_500_p95_le_0_5ms"}
    big = results["large"]
    assert big["relevo_update"]["reps"] == TINY.update_reps
    assert big["mabwiser"]["decide"]["reps"] == TINY.mab_decide_reps
    assert big["relevo_update"]["p50_us"] <= big["relevo_update"]["p99_us"]
    assert set(results["small"]) >= {"relevo_update", "relevo_decide", "relevo_disjoint", "mabwiser"}
    assert results["breakdown_us"]["select_total"] > 0


def test_problem_is_the_documented_linear_logistic_model():
    p = make_problem(500, seed=3, **SMALL)
    assert p.arm_features.shape == (20, 4) and (p.arm_features[:, 0] == 1).all()
    assert p.contexts.shape == (500, 8) and p.uniforms.shape == (500,)
    for t in (0, 17, 499):
        phi = joint_rows(p.contexts[t], p.arm_features, p.dim)  # relevo's hybrid rows
        np.testing.assert_allclose(p.click_probs(t), expit(phi @ p.theta + p.offset))
    mean_ctr = np.mean([p.click_probs(t).mean() for t in range(p.rounds)])
    assert 0.04 < mean_ctr < 0.06  # the offset sets uniform random's CTR to 5%
    again = make_problem(500, seed=3, **SMALL)
    np.testing.assert_array_equal(again.uniforms, p.uniforms)
    np.testing.assert_array_equal(again.contexts, p.contexts)


@pytest.mark.parametrize("name", synthetic_ctr.POLICIES)
def test_every_policy_sees_the_same_draws(name):
    if name == "mabwiser_lints":
        pytest.importorskip("mabwiser")
    if name == "vw_squarecb":
        pytest.importorskip("vowpalwabbit")
    p = make_problem(60, seed=1, **SMALL)
    r = simulate(name, p, seed=1)
    assert r.clicks.shape == r.chosen.shape == (60,) and ((r.chosen >= 0) & (r.chosen < 20)).all()
    truth = np.array([p.click_probs(t)[a] for t, a in enumerate(r.chosen)])
    np.testing.assert_array_equal(r.clicks, (p.uniforms < truth).astype(float))


def test_report_prints_a_json_last_line(capsys):
    p = make_problem(100, seed=0, **SMALL)
    results = {name: [simulate(name, p, 0)] for name in ("relevo_linear_ts", "uniform_random")}
    summary = synthetic_ctr.report(results, 100, [0])
    printed = last_json(capsys.readouterr().out)
    assert printed["bench"] == "synthetic_ctr" and printed["ctr"] == summary["ctr"]
    assert set(printed["ctr_last_20pct"]) == {"relevo_linear_ts", "uniform_random"}


def test_linear_ts_beats_uniform_random():
    lin, rand = [], []
    for seed in (0, 1, 2):
        p = make_problem(1_000, seed, **SMALL)
        lin.append(simulate("relevo_linear_ts", p, seed).ctr)
        rand.append(simulate("uniform_random", p, seed).ctr)
    gain = np.mean(lin) - np.mean(rand)
    assert gain > 0.04 and np.mean(lin) > 1.8 * np.mean(rand), (lin, rand)
