"""Bandit quality on a synthetic linear-logistic click problem: CTR of relevo LinearTS and
LogisticTS vs mabwiser LinTS, Vowpal Wabbit (squarecb) and uniform random.

Problem: K = 100 arms with fixed features e_a (d_arm = 8; e_a[0] = 1, the rest ~ N(0, 1));
each round a context x ~ N(0, I / d), d = 32. A click on arm a happens with probability

    P(click | x, a) = sigmoid(theta . phi(x, a) + offset),   phi(x, a) = [e_a, x (x) e_a]

(phi is relevo's hybrid row, ``joint_rows``; theta's arm part is scaled so e_a . theta has
sd 0.5 across arms, its interaction part so x^T W e_a has sd 1.0), with ``offset`` set so
uniform random gets a 5% CTR. Every policy sees the same draws in a run: the contexts and
one uniform u_t per round (click = u_t < P(click | x_t, a_t)). One arm per round (n = 1),
and every policy is updated after every round with that round's click.

Featurisation, each policy given the same information (x and e_a):
- relevo LinearTS / LogisticTS: candidates = the arms with features e_a, context x
  (``context_dim`` = 32), so rows are phi(x, a) (dimension 8 x 33 = 264); library defaults
  (LinearTS exploration v = 0.3, LogisticTS v = 1.0), ``propensity_samples=0`` (the
  propensities do not change the choice; draw 0 chooses either way).
- mabwiser LinTS: disjoint, one ridge model per arm over the context [1, x] (33 values), alpha
  0.3 (the same v as relevo's LinearTS), l2_lambda 1; the first round is uniform (mabwiser
  must ``fit`` before it predicts).
- VW: ``--cb_explore_adf --squarecb -q sa`` (shared namespace s = x, action namespace
  a = e_a, with their quadratic interactions: the same feature space as phi), cost = -click,
  the action drawn from VW's pmf with the policy's own generator.
- uniform random; and, as a ceiling, the oracle that picks the arm with the highest true
  click probability (not a policy: it knows theta).

    python -m benchmarks.synthetic_ctr [--quick] [--rounds 20000] [--seeds 2]
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from scipy.special import expit

from benchmarks._common import emit, parser, table
from relevo.bandits.base import Candidates
from relevo.bandits.linear_ts import LinearTS, LinTSConfig
from relevo.bandits.logistic import LogisticTS, LogisticTSConfig

ARMS = 100
DIM = 32
ARM_DIM = 8
BASE_CTR = 0.05  # the CTR of uniform random, which sets the offset
MAIN_SD = 0.5
CROSS_SD = 1.0
LAST_SHARE = 0.2
POLICIES = ("relevo_linear_ts", "relevo_logistic_ts", "mabwiser_lints", "vw_squarecb", "uniform_random", "oracle")


@dataclass(frozen=True)
class Problem:
    """One problem and its draws. ``arm_features`` (K, d_arm); ``theta`` (d_arm (1 + d),)
    in ``joint_rows`` order; ``contexts`` (T, d); ``uniforms`` (T,): click_t = u_t < p."""

    arm_features: np.ndarray
    theta: np.ndarray
    offset: float
    contexts: np.ndarray
    uniforms: np.ndarray

    @property
    def rounds(self) -> int:
        return len(self.uniforms)

    @property
    def arms(self) -> int:
        return len(self.arm_features)

    @property
    def dim(self) -> int:
        return self.contexts.shape[1]

    def click_probs(self, t: int) -> np.ndarray:
        """P(click | x_t, a) for every arm, shape (K,)."""
        e = self.arm_features
        d_arm = e.shape[1]
        w = self.theta[d_arm:].reshape(self.dim, d_arm)  # phi's x_i e_aj weight is w[i, j]
        return expit(e @ self.theta[:d_arm] + e @ (self.contexts[t] @ w) + self.offset)


def make_problem(rounds: int, seed: int, arms: int = ARMS, dim: int = DIM, arm_dim: int = ARM_DIM,
                 base_ctr: float = BASE_CTR) -> Problem:
    rng = np.random.default_rng(seed)
    e = rng.normal(size=(arms, arm_dim))
    e[:, 0] = 1.0
    theta_arm = rng.normal(size=arm_dim)
    theta_arm *= MAIN_SD / (e @ theta_arm).std()
    w = rng.normal(size=(dim, arm_dim))
    calib = rng.normal(size=(2_000, dim)) / np.sqrt(dim)
    w *= CROSS_SD / (calib @ w @ e.T).std()
    logits = e @ theta_arm + calib @ w @ e.T  # (2000, K)
    lo, hi = -20.0, 20.0
    for _ in range(60):  # the offset at which uniform random clicks at base_ctr
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if expit(logits + mid).mean() < base_ctr else (lo, mid)
    return Problem(
        arm_features=e,
        theta=np.concatenate([theta_arm, w.reshape(-1)]),
        offset=(lo + hi) / 2,
        contexts=rng.normal(size=(rounds, dim)) / np.sqrt(dim),
        uniforms=rng.random(rounds),
    )


class Agent(Protocol):
    def choose(self, t: int, x: np.ndarray) -> int: ...

    def observe(self, t: int, x: np.ndarray, arm: int, click: float) -> None: ...


class RelevoAgent:
    """A relevo policy choosing one of the arms (rows phi(x, a)), updated from its slate."""

    def __init__(self, policy, problem: Problem, seed: int):
        self.policy = policy
        self.candidates = Candidates([f"a{i}" for i in range(problem.arms)], problem.arm_features)
        self.seed = seed
        self._slate = None

    def choose(self, t, x):
        self._slate = self.policy.select(x, self.candidates, 1, seed=self.seed * 1_000_003 + t)
        return int(self._slate.order[0])

    def observe(self, t, x, arm, click):
        self.policy.update(self._slate, [click])


class MabwiserAgent:
    def __init__(self, problem: Problem, seed: int):
        from mabwiser.mab import MAB, LearningPolicy

        policy = LearningPolicy.LinTS(alpha=0.3, l2_lambda=1.0)
        self.mab = MAB(arms=list(range(problem.arms)), learning_policy=policy, seed=seed)
        self.rng = np.random.default_rng(seed)
        self.k = problem.arms
        self.fitted = False

    @staticmethod
    def context(x: np.ndarray) -> np.ndarray:
        return np.concatenate([[1.0], x])[None, :]

    def choose(self, t, x):
        return int(self.mab.predict(self.context(x))) if self.fitted else int(self.rng.integers(self.k))

    def observe(self, t, x, arm, click):
        args = (np.array([arm]), np.array([click]), self.context(x))
        if self.fitted:
            self.mab.partial_fit(*args)
        else:
            self.mab.fit(*args)
            self.fitted = True


class VWAgent:
    def __init__(self, problem: Problem, seed: int):
        import vowpalwabbit

        self.vw = vowpalwabbit.Workspace(f"--cb_explore_adf --squarecb -q sa --quiet --random_seed {seed}")
        self.actions = ["|a " + " ".join(f"e{j}:{v:.6g}" for j, v in enumerate(row))
                        for row in problem.arm_features]
        self.rng = np.random.default_rng(seed)
        self._example: list[str] = []
        self._pmf = np.zeros(0)

    def choose(self, t, x):
        shared = "shared |s " + " ".join(f"x{j}:{v:.6g}" for j, v in enumerate(x))
        self._example = [shared, *self.actions]
        pmf = np.asarray(self.vw.predict(self._example), dtype=np.float64)
        self._pmf = pmf / pmf.sum()
        return int(self.rng.choice(len(pmf), p=self._pmf))

    def observe(self, t, x, arm, click):
        labelled = list(self._example)
        labelled[arm + 1] = f"0:{-click}:{self._pmf[arm]:.6g} " + self.actions[arm]
        self.vw.learn(labelled)

    def close(self) -> None:
        self.vw.finish()


class UniformAgent:
    def __init__(self, problem: Problem, seed: int):
        self.rng = np.random.default_rng(seed)
        self.k = problem.arms

    def choose(self, t, x):
        return int(self.rng.integers(self.k))

    def observe(self, t, x, arm, click):
        pass


class OracleAgent:
    def __init__(self, problem: Problem, seed: int):
        self.problem = problem

    def choose(self, t, x):
        return int(np.argmax(self.problem.click_probs(t)))

    def observe(self, t, x, arm, click):
        pass


def agent(name: str, problem: Problem, seed: int) -> Agent:
    if name == "relevo_linear_ts":
        cfg = LinTSConfig(dim=problem.arm_features.shape[1], context_dim=problem.dim, propensity_samples=0)
        return RelevoAgent(LinearTS(cfg), problem, seed)
    if name == "relevo_logistic_ts":
        cfg = LogisticTSConfig(dim=problem.arm_features.shape[1], context_dim=problem.dim, propensity_samples=0)
        return RelevoAgent(LogisticTS(cfg), problem, seed)
    makers = {"mabwiser_lints": MabwiserAgent, "vw_squarecb": VWAgent, "uniform_random": UniformAgent,
              "oracle": OracleAgent}
    if name not in makers:
        raise ValueError(f"unknown policy {name!r}; expected one of {', '.join(POLICIES)}")
    return makers[name](problem, seed)


@dataclass(frozen=True)
class Result:
    policy: str
    rounds: int
    clicks: np.ndarray  # (T,) 0/1
    chosen: np.ndarray  # (T,) arm index
    seconds: float

    @property
    def ctr(self) -> float:
        return float(self.clicks.mean())

    @property
    def ctr_last(self) -> float:
        """CTR over the last ``LAST_SHARE`` of the rounds."""
        return float(self.clicks[int(self.rounds * (1 - LAST_SHARE)) :].mean())


def simulate(name: str, problem: Problem, seed: int) -> Result:
    """Run one policy over the problem's rounds; click_t = u_t < P(click | x_t, a_t)."""
    a = agent(name, problem, seed)
    clicks = np.zeros(problem.rounds)
    chosen = np.zeros(problem.rounds, dtype=np.int64)
    start = time.perf_counter()
    for t in range(problem.rounds):
        x = problem.contexts[t]
        arm = a.choose(t, x)
        click = float(problem.uniforms[t] < problem.click_probs(t)[arm])
        a.observe(t, x, arm, click)
        clicks[t], chosen[t] = click, arm
    seconds = time.perf_counter() - start
    if hasattr(a, "close"):
        a.close()
    return Result(name, problem.rounds, clicks, chosen, seconds)


def main(argv: list[str] | None = None) -> None:
    p = parser("synthetic_ctr", __doc__)
    p.add_argument("--rounds", type=int, default=20_000)
    p.add_argument("--seeds", type=int, default=2, help="problems (and policy seeds); means reported")
    p.add_argument("--policies", nargs="+", default=list(POLICIES), choices=POLICIES)
    p.add_argument("--threads", type=int, default=1, help="BLAS threads")
    args = p.parse_args(argv)
    rounds = 3_000 if args.quick else args.rounds
    seeds = list(range(1 if args.quick else args.seeds))
    from threadpoolctl import threadpool_limits

    results: dict[str, list[Result]] = {name: [] for name in args.policies}
    with threadpool_limits(limits=args.threads):
        for seed in seeds:
            problem = make_problem(rounds, seed)
            for name in args.policies:
                results[name].append(simulate(name, problem, seed))
    report(results, rounds, seeds)


def report(results: dict[str, list[Result]], rounds: int, seeds: list[int]) -> dict:
    def mean(name: str, attr: str) -> float:
        return float(np.mean([getattr(r, attr) for r in results[name]]))

    def fmt(name: str, attr: str) -> str:
        v = [getattr(r, attr) for r in results[name]]
        return f"{np.mean(v):.4f}" + (f" ± {np.std(v, ddof=1):.4f}" if len(v) > 1 else "")

    rand = mean("uniform_random", "ctr") if "uniform_random" in results else None
    updates = {"oracle": "-", "uniform_random": "-"}
    rows = [("policy", "CTR", f"CTR last {LAST_SHARE:.0%}", "CTR / random", "updated", "s per run")]
    for name in results:
        rows.append((name, fmt(name, "ctr"), fmt(name, "ctr_last"),
                     f"{mean(name, 'ctr') / rand:.2f}x" if rand else "-", updates.get(name, "every round"),
                     f"{mean(name, 'seconds'):.1f}"))
    table(f"Synthetic CTR: K = {ARMS}, d = {DIM}, d_arm = {ARM_DIM}, T = {rounds:,}, n = 1, "
          f"mean ± sd over {len(seeds)} problem(s); same draws for every policy", rows)
    summary = {
        "bench": "synthetic_ctr",
        "baseline": "uniform random on the same draws; mabwiser LinTS and VW squarecb in the same run",
        "rounds": rounds, "arms": ARMS, "dim": DIM, "arm_dim": ARM_DIM, "base_ctr": BASE_CTR, "seeds": len(seeds),
        "ctr": {name: round(mean(name, "ctr"), 5) for name in results},
        "ctr_last_20pct": {name: round(mean(name, "ctr_last"), 5) for name in results},
        "ctr_runs": {name: [round(r.ctr, 5) for r in rs] for name, rs in results.items()},
        "seconds_per_run": {name: round(mean(name, "seconds"), 2) for name in results},
    }
    emit(summary)
    return summary


if __name__ == "__main__":
    main()
