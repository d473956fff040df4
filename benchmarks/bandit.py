"""Bandit speed: relevo LinearTS vs mabwiser LinTS (update, decision, batch throughput).

What is compared (both single-threaded: BLAS limited to one thread for the whole run):

- relevo ``LinearTS``: one shared linear model over candidate feature rows of dimension d
  (``LinTSConfig(dim=d)``, defaults otherwise). A decision is
  ``select(None, Candidates(ids, X), n=10, seed)`` over K candidate rows X (K, d): one
  posterior draw of theta chooses the top-10 slate and, by default, 200 more draws estimate
  each shown item's propensity; ``propensity_samples=0`` shows the cost of those. An update
  is ``learn([id], x (1, d), [r])``: a Sherman-Morrison rank-1 step, with the scheduled
  refresh (A^-1 and the Cholesky factor recomputed) every 64 updates, which the p99 shows.
  Candidate sets are built before the clock starts (their validation is reported apart).
- mabwiser ``LearningPolicy.LinTS`` (alpha 0.3 = relevo's exploration v, l2_lambda 1): a
  *disjoint* model, one ridge regression per arm over a context of dimension d. A decision
  is ``predict(context (1, d))`` over its K arms: one draw of each arm's coefficients from
  N(beta_a, alpha^2 A_a^-1) (a Cholesky factorisation per arm per call), then the argmax,
  one arm, no propensities. An update is ``partial_fit`` with one row (mabwiser visits
  every arm on each call, so its cost grows with K; A_a^-1 is recomputed by inversion).

Both choose among K options with d features each; the models differ (shared vs per arm),
so the relevo ``DisjointLinTS`` (per-arm, like mabwiser) is shown beside them at K = 100.
Both models are warmed on the same 2,000 logged rows before timing.

    python -m benchmarks.bandit [--quick] [--threads 1]
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass

import numpy as np

from benchmarks._common import emit, parser, pct, table
from relevo.bandits.base import Candidates, check_rewards, slate_from_scores
from relevo.bandits.disjoint import DisjointConfig, DisjointLinTS
from relevo.bandits.linear_ts import LinearTS, LinTSConfig

SLATE = 10
WARM_ROWS = 2_000
CTR = 0.1  # Bernoulli rate of the synthetic rewards
TARGET_UPDATE_P50_US = 20.0  # d = 64, one row
TARGET_DECIDE_P95_MS = 0.5  # 500 candidates, d = 64, default propensity samples


@dataclass(frozen=True)
class Sizes:
    """Problem sizes and repetitions (each figure is a percentile over its repetitions)."""

    dim: int = 64
    candidates: int = 500
    batch: int = 1_000
    small_k: int = 100
    small_dim: int = 32
    update_reps: int = 20_000
    decide_reps: int = 3_000
    batch_reps: int = 200
    mab_update_reps: int = 300
    mab_decide_reps: int = 300
    mab_batch_reps: int = 30


FULL = Sizes()
QUICK = Sizes(update_reps=4_000, decide_reps=500, batch_reps=40,
              mab_update_reps=60, mab_decide_reps=60, mab_batch_reps=6)


def rows(rng: np.random.Generator, m: int, d: int) -> np.ndarray:
    """Feature rows ~ N(0, I / d), shape (m, d) float64 (unit norm on average)."""
    return rng.normal(size=(m, d)) / np.sqrt(d)


def clicks(rng: np.random.Generator, m: int) -> np.ndarray:
    return (rng.random(m) < CTR).astype(np.float64)


def timed_us(fn, inputs) -> list[float]:
    """Call ``fn`` on each input after a short warm-up; latency of each call in us."""
    for x in inputs[: min(20, len(inputs))]:
        fn(x)
    gc.collect()
    out = []
    for x in inputs:
        s = time.perf_counter_ns()
        fn(x)
        out.append((time.perf_counter_ns() - s) / 1000)
    return out


def latency(samples_us: list[float], unit: str = "us") -> dict:
    scale, digits = (1000.0, 3) if unit == "ms" else (1.0, 1)
    p50, p95, p99 = (round(v, digits) for v in pct(np.asarray(samples_us) / scale, 50, 95, 99))
    return {f"p50_{unit}": p50, f"p95_{unit}": p95, f"p99_{unit}": p99, "reps": len(samples_us)}


# -- relevo ---------------------------------------------------------------------------------


def warm_linear_ts(d: int, rng: np.random.Generator, **config) -> LinearTS:
    policy = LinearTS(LinTSConfig(dim=d, **config))
    policy.learn([f"w{i}" for i in range(WARM_ROWS)], rows(rng, WARM_ROWS, d), clicks(rng, WARM_ROWS))
    return policy


def relevo_update(d: int, reps: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    policy = warm_linear_ts(d, rng)
    x, r = rows(rng, reps, d), clicks(rng, reps)
    lat = timed_us(lambda i: policy.learn(["a"], x[i : i + 1], r[i : i + 1]), range(reps))
    return {**latency(lat), "refresh_every": policy.config.refresh_every}


def candidate_sets(rng: np.random.Generator, k: int, d: int, count: int = 16) -> list[Candidates]:
    """``count`` candidate sets of K rows drawn from a 10,000-item catalogue."""
    catalogue = rows(rng, 10_000, d)
    picks = [rng.choice(len(catalogue), k, replace=False) for _ in range(count)]
    return [Candidates([f"i{j}" for j in p], catalogue[p]) for p in picks]


def relevo_decide(d: int, k: int, reps: int, seed: int, propensity_samples: int = 200) -> dict:
    rng = np.random.default_rng(seed)
    policy = warm_linear_ts(d, rng, propensity_samples=propensity_samples)
    sets = candidate_sets(rng, k, d)
    lat = timed_us(lambda i: policy.select(None, sets[i % len(sets)], SLATE, seed=i), range(reps))
    return latency(lat, "ms")


def candidates_build_us(d: int, k: int, reps: int, seed: int) -> float:
    """Median cost of ``Candidates(ids, X)`` (its validation) for K rows: paid per request."""
    rng = np.random.default_rng(seed)
    x = rows(rng, k, d)
    ids = [f"i{j}" for j in range(k)]
    return round(pct(timed_us(lambda _: Candidates(ids, x), range(reps)), 50)[0], 1)


def relevo_batch(d: int, batch: int, reps: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    policy = warm_linear_ts(d, rng)
    x, r = rows(rng, batch, d), clicks(rng, batch)
    ids = ["a"] * batch
    lat = timed_us(lambda _: policy.learn(ids, x, r), range(reps))
    return {**latency(lat, "ms"), "rows_per_s": round(batch / (pct(lat, 50)[0] / 1e6))}


def disjoint_figures(k: int, d: int, update_reps: int, decide_reps: int, seed: int) -> dict:
    """relevo's per-arm model (the same model class as mabwiser's LinTS), warmed alike."""
    rng = np.random.default_rng(seed)
    policy = DisjointLinTS(DisjointConfig(context_dim=d))
    arms = [f"a{i}" for i in range(k)]
    warm = rng.integers(k, size=WARM_ROWS)
    policy.learn([arms[i] for i in warm], rows(rng, WARM_ROWS, d), clicks(rng, WARM_ROWS))
    cands = Candidates(arms)
    ctx = rows(rng, decide_reps, d)
    decide = timed_us(lambda i: policy.select(ctx[i], cands, SLATE, seed=i), range(decide_reps))
    x, r, who = rows(rng, update_reps, d), clicks(rng, update_reps), rng.integers(k, size=update_reps)
    update = timed_us(lambda i: policy.learn([arms[who[i]]], x[i : i + 1], r[i : i + 1]), range(update_reps))
    return {"decide": latency(decide, "ms"), "update": latency(update)}


# -- mabwiser -------------------------------------------------------------------------------


def mabwiser_model(k: int, d: int, rng: np.random.Generator):
    from mabwiser.mab import MAB, LearningPolicy

    mab = MAB(arms=list(range(k)), learning_policy=LearningPolicy.LinTS(alpha=0.3, l2_lambda=1.0),
              seed=int(rng.integers(2**31)))
    mab.fit(rng.integers(k, size=WARM_ROWS), clicks(rng, WARM_ROWS), rows(rng, WARM_ROWS, d))
    return mab


def mabwiser_figures(k: int, d: int, batch: int | None, sizes: Sizes, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    mab = mabwiser_model(k, d, rng)
    ctx = rows(rng, sizes.mab_decide_reps, d)
    decide = timed_us(lambda i: mab.predict(ctx[i : i + 1]), range(sizes.mab_decide_reps))
    n = sizes.mab_update_reps
    x, r, who = rows(rng, n, d), clicks(rng, n), rng.integers(k, size=n)
    update = timed_us(lambda i: mab.partial_fit(who[i : i + 1], r[i : i + 1], x[i : i + 1]), range(n))
    out = {"decide": latency(decide, "ms"), "update": latency(update)}
    if batch:
        xb, rb, wb = rows(rng, batch, d), clicks(rng, batch), rng.integers(k, size=batch)
        lat = timed_us(lambda _: mab.partial_fit(wb, rb, xb), range(sizes.mab_batch_reps))
        out["batch"] = {**latency(lat, "ms"), "rows_per_s": round(batch / (pct(lat, 50)[0] / 1e6))}
    return out


# -- where relevo's time goes ---------------------------------------------------------------


def breakdown(d: int, k: int, reps: int, seed: int) -> dict:
    """Median us of each stage of a default decision (K rows, 1 + 200 draws, top-10 slate)
    and of a one-row update, timed separately with the library's own functions."""
    rng = np.random.default_rng(seed)
    policy = warm_linear_ts(d, rng)
    cands = candidate_sets(rng, k, d, count=1)[0]
    x = cands.features
    draws = 1 + policy.propensity_samples
    scores, mean = policy._scores(x, cands, draws, rng, 1.0)  # the select path: float32, draw-major
    ids = list(cands.ids)

    def med(fn) -> float:
        return round(pct(timed_us(lambda _: fn(), range(reps)), 50)[0], 1)

    stages = {
        "select_total": med(lambda: policy.select(None, cands, SLATE, seed=1)),
        "draw_and_score": med(lambda: policy._scores(x, cands, draws, rng, 1.0)),
        "slate_and_propensities": med(lambda: slate_from_scores(scores, mean, SLATE, ids, x, 1, "p")),
        "slate_only_no_propensities": med(lambda: slate_from_scores(scores[:, :1], mean, SLATE, ids, x, 1, "p")),
    }
    u, r = rows(rng, 1, d), np.array([1.0])
    w = np.ones(1)
    upd = LinearTS(LinTSConfig(dim=d, refresh_every=10**9))  # no refresh: the rank-1 path only
    stages["learn_total_rank1"] = med(lambda: upd.learn(["a"], u, r))
    stages["learn_core_rank1"] = med(lambda: upd._learn(["a"], u, r, w))
    stages["learn_guards"] = round(stages["learn_total_rank1"] - stages["learn_core_rank1"], 1)
    stages["check_rewards"] = med(lambda: check_rewards(r, 1))
    return stages


# -- the run --------------------------------------------------------------------------------


def collect(sizes: Sizes, seed: int = 0) -> dict:
    d, k = sizes.dim, sizes.candidates
    sd, sk = sizes.small_dim, sizes.small_k
    small_updates = min(sizes.update_reps, 5_000)
    return {
        "sizes": sizes.__dict__,
        "large": {
            "dim": d, "k": k,
            "relevo_update": relevo_update(d, sizes.update_reps, seed),
            "relevo_decide": relevo_decide(d, k, sizes.decide_reps, seed),
            "relevo_decide_no_propensities": relevo_decide(d, k, sizes.decide_reps, seed, propensity_samples=0),
            "relevo_candidates_build_us": candidates_build_us(d, k, min(sizes.decide_reps, 1000), seed),
            "relevo_batch": relevo_batch(d, sizes.batch, sizes.batch_reps, seed),
            "mabwiser": mabwiser_figures(k, d, sizes.batch, sizes, seed),
        },
        "small": {
            "dim": sd, "k": sk,
            "relevo_update": relevo_update(sd, small_updates, seed),
            "relevo_decide": relevo_decide(sd, sk, sizes.decide_reps, seed),
            "relevo_decide_no_propensities": relevo_decide(sd, sk, sizes.decide_reps, seed, propensity_samples=0),
            "relevo_disjoint": disjoint_figures(sk, sd, small_updates, sizes.decide_reps, seed),
            "mabwiser": mabwiser_figures(sk, sd, None, sizes, seed),
        },
        "breakdown_us": breakdown(d, k, min(sizes.decide_reps, 1000), seed),
    }


def ratio(theirs: float, ours: float) -> str:
    return f"{theirs / ours:.0f}x" if ours else "-"


def lat_text(fig: dict, unit: str, *qs: int) -> str:
    return " / ".join(str(fig[f"p{q}_{unit}"]) for q in qs)


def report(results: dict, threads: int) -> dict:
    """Print the tables; return (and print as the last line) the JSON summary."""
    big, small = results["large"], results["small"]
    d, k, sd, sk = big["dim"], big["k"], small["dim"], small["k"]
    mb, ms = big["mabwiser"], small["mabwiser"]
    ru, rd = big["relevo_update"], big["relevo_decide"]
    rd0, rb = big["relevo_decide_no_propensities"], big["relevo_batch"]
    su, sdc = small["relevo_update"], small["relevo_decide"]
    sd0, dj = small["relevo_decide_no_propensities"], small["relevo_disjoint"]
    update_met = ru["p50_us"] <= TARGET_UPDATE_P50_US
    decide_met = rd["p95_ms"] <= TARGET_DECIDE_P95_MS
    yes = {True: "yes", False: "NO"}
    rows_ = [
        ("figure", "relevo", "mabwiser LinTS", "mabwiser / relevo", "target", "met"),
        (f"LinearTS update 1 row, d={d}: p50 / p99 us", lat_text(ru, "us", 50, 99),
         lat_text(mb["update"], "us", 50, 99) + f" ({k} arms)", ratio(mb["update"]["p50_us"], ru["p50_us"]),
         f"p50 <= {TARGET_UPDATE_P50_US:g} us", yes[update_met]),
        (f"LinearTS decide {k} x d={d}, top-{SLATE} + 200-draw propensities: p50 / p95 / p99 ms",
         lat_text(rd, "ms", 50, 95, 99), lat_text(mb["decide"], "ms", 50, 95, 99) + " (top-1, no propensities)",
         ratio(mb["decide"]["p50_ms"], rd["p50_ms"]), f"p95 <= {TARGET_DECIDE_P95_MS:g} ms", yes[decide_met]),
        (f"LinearTS decide {k} x d={d}, propensity_samples=0: p50 / p95 / p99 ms",
         lat_text(rd0, "ms", 50, 95, 99), "(as above)", ratio(mb["decide"]["p50_ms"], rd0["p50_ms"]), "-", "-"),
        (f"LinearTS batch learn {results['sizes']['batch']} rows, d={d}: rows/s (p50 ms)",
         f"{rb['rows_per_s']:,} ({rb['p50_ms']})", f"{mb['batch']['rows_per_s']:,} ({mb['batch']['p50_ms']})",
         ratio(rb["rows_per_s"], mb["batch"]["rows_per_s"]), "-", "-"),
        (f"Candidates({k} x {d}) validation, p50 us", big["relevo_candidates_build_us"], "-", "-", "-", "-"),
        (f"K={sk}, d={sd}: LinearTS update p50 / p99 us", lat_text(su, "us", 50, 99),
         lat_text(ms["update"], "us", 50, 99), ratio(ms["update"]["p50_us"], su["p50_us"]), "-", "-"),
        (f"K={sk}, d={sd}: LinearTS decide p50 / p95 ms, 200 draws | 0",
         lat_text(sdc, "ms", 50, 95) + " | " + lat_text(sd0, "ms", 50, 95), lat_text(ms["decide"], "ms", 50, 95),
         ratio(ms["decide"]["p50_ms"], sdc["p50_ms"]), "-", "-"),
        (f"K={sk}, d={sd}: DisjointLinTS (per arm) update p50 us | decide p50 ms",
         f"{dj['update']['p50_us']} | {dj['decide']['p50_ms']}", f"{ms['update']['p50_us']} | {ms['decide']['p50_ms']}",
         ratio(ms["update"]["p50_us"], dj["update"]["p50_us"]), "-", "-"),
    ]
    table(f"Bandit speed: relevo vs mabwiser {_version('mabwiser')}, same run, {threads} BLAS thread(s); "
          "ratio = mabwiser time / relevo time (p50)", rows_)
    bd = results["breakdown_us"]
    table(f"Where relevo's time goes (median us; decision {k} x d={d}, 201 draws, top-{SLATE})",
          [("stage", "us")] + [(name, v) for name, v in bd.items()])
    summary = {
        "bench": "bandit",
        "baseline": f"mabwiser {_version('mabwiser')} LearningPolicy.LinTS (disjoint, alpha 0.3), same run and sizes",
        "threads": threads,
        "update_p50_us": ru["p50_us"], "update_p99_us": ru["p99_us"],
        "baseline_update_p50_us": mb["update"]["p50_us"], "baseline_update_p99_us": mb["update"]["p99_us"],
        "decide_p50_ms": rd["p50_ms"], "decide_p95_ms": rd["p95_ms"], "decide_p99_ms": rd["p99_ms"],
        "decide_no_propensities_p50_ms": rd0["p50_ms"], "decide_no_propensities_p95_ms": rd0["p95_ms"],
        "baseline_decide_p50_ms": mb["decide"]["p50_ms"], "baseline_decide_p95_ms": mb["decide"]["p95_ms"],
        "batch_rows_per_s": rb["rows_per_s"], "baseline_batch_rows_per_s": mb["batch"]["rows_per_s"],
        "targets": {"update_p50_le_20us": update_met, "decide_500_p95_le_0_5ms": decide_met},
        **results,
    }
    emit(summary)
    return summary


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def main(argv: list[str] | None = None) -> None:
    p = parser("bandit", __doc__)
    p.add_argument("--threads", type=int, default=1, help="BLAS threads for both libraries")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=args.threads):
        results = collect(QUICK if args.quick else FULL, args.seed)
        report(results, args.threads)


if __name__ == "__main__":
    main()
