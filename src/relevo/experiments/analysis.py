"""Per-variant evidence and the read-out of an experiment.

Evidence is kept as sufficient statistics (``VariantStats``): counts and sums that merge
by addition, so shards and stores can accumulate them independently. ``results`` turns
them into, per variant:

- mean reward with a 95% interval: **Wilson** score interval when every recorded reward
  was exactly 0 or 1 (``non_binary == 0``), otherwise the **normal** interval
  mean +- z s / sqrt(n) with the observed sample variance s^2 (ddof = 1);
- lift vs the control (first variant) = mean_v - mean_0, with a 95% normal interval:
  Welch se = sqrt(s_v^2 / n_v + s_0^2 / n_0) for non-binary rewards, Agresti-Caffo
  (add one success and one failure to each arm, centre on the adjusted difference) for
  binary ones, which keeps its coverage when a rate is near 0;
- P(best): the probability that the variant has the highest mean under independent
  Beta(1 + successes, 1 + trials - successes) posteriors, by seeded Monte Carlo (see
  ``probability_best``);
- guardrail status (``GuardrailResult``);

and for the whole experiment a sample-ratio-mismatch check (``sample_ratio_check``).

Rewards that are not 0/1 enter the Beta posterior as fractional successes: successes =
sum of rewards clipped to [0, 1], trials = number of rewards recorded (one per exposure
once its outcome is in). Rescale other metrics to [0, 1] (e.g. rating / 5) before
recording if adaptive allocation or P(best) should see their full range; means and
intervals always use the raw values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import numpy as np
from scipy import stats as sps

from relevo.experiments.design import Experiment, Guardrail

Z95 = 1.959963984540054  # standard normal 97.5% quantile
PROB_BEST_DRAWS = 10_000
SRM_ALPHA = 0.001

GuardrailState = Literal["ok", "at_risk", "breached", "insufficient_data"]


def _as_values(values, where: str) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.isfinite(v).all():
        raise ValueError(f"{where}: values must be finite")
    return v


@dataclass(frozen=True, slots=True)
class Sums:
    """Running moments of one metric: count n, total = sum x, sq_total = sum x^2."""

    count: int = 0
    total: float = 0.0
    sq_total: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.count, bool) or int(self.count) != self.count or self.count < 0:
            raise ValueError(f"count: must be an integer >= 0, got {self.count!r}")
        if not (math.isfinite(self.total) and math.isfinite(self.sq_total)) or self.sq_total < 0:
            raise ValueError("total and sq_total must be finite, sq_total >= 0")
        object.__setattr__(self, "count", int(self.count))
        object.__setattr__(self, "total", float(self.total))
        object.__setattr__(self, "sq_total", float(self.sq_total))

    def add(self, values) -> "Sums":
        """Add observations, array-like shape (n,) of finite floats."""
        v = _as_values(values, "values")
        return Sums(self.count + len(v), self.total + float(v.sum()), self.sq_total + float(v @ v))

    def merge(self, other: "Sums") -> "Sums":
        return Sums(self.count + other.count, self.total + other.total, self.sq_total + other.sq_total)

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    @property
    def variance(self) -> float | None:
        """Sample variance (ddof = 1) from the sums, clipped at 0; None below 2 values."""
        if self.count < 2:
            return None
        return max(0.0, (self.sq_total - self.total * self.total / self.count) / (self.count - 1))


@dataclass(frozen=True, slots=True)
class VariantStats:
    """Evidence for one variant. ``exposures``: units served the variant (what the
    sample-ratio check counts). ``trials``: rewards recorded for the experiment metric,
    with ``reward_sum`` / ``reward_sq_sum`` their sum and sum of squares. ``successes``:
    sum of the rewards clipped to [0, 1] (the Beta posterior's success count, <= trials).
    ``non_binary``: how many rewards were not exactly 0 or 1 (0 => Wilson intervals).
    ``guardrails``: metric name -> its ``Sums``. Immutable: helpers return new stats."""

    name: str
    exposures: int = 0
    trials: int = 0
    reward_sum: float = 0.0
    reward_sq_sum: float = 0.0
    successes: float = 0.0
    non_binary: int = 0
    guardrails: dict[str, Sums] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key in ("exposures", "trials", "non_binary"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                raise ValueError(f"{key}: must be an integer >= 0, got {v!r}")
            object.__setattr__(self, key, int(v))
        for key in ("reward_sum", "reward_sq_sum", "successes"):
            v = float(getattr(self, key))
            if not math.isfinite(v):
                raise ValueError(f"{key}: must be finite, got {v}")
            object.__setattr__(self, key, v)
        tol = 1e-9 * max(1, self.trials)
        if not -tol <= self.successes <= self.trials + tol or self.reward_sq_sum < 0:
            raise ValueError("successes must lie in [0, trials] and reward_sq_sum be >= 0")
        if self.non_binary > self.trials:
            raise ValueError("non_binary: cannot exceed trials")
        if not all(isinstance(s, Sums) for s in self.guardrails.values()):
            raise ValueError("guardrails: values must be Sums")
        object.__setattr__(self, "guardrails", dict(self.guardrails))

    @property
    def reward(self) -> Sums:
        return Sums(self.trials, self.reward_sum, self.reward_sq_sum)

    @property
    def binary(self) -> bool:
        return self.non_binary == 0

    def expose(self, n: int = 1) -> "VariantStats":
        if n < 0:
            raise ValueError("n must be >= 0")
        return replace(self, exposures=self.exposures + int(n))

    def observe(self, rewards) -> "VariantStats":
        """Record rewards of the experiment metric, array-like shape (n,) finite floats."""
        r = _as_values(rewards, "rewards")
        return replace(
            self,
            trials=self.trials + len(r),
            reward_sum=self.reward_sum + float(r.sum()),
            reward_sq_sum=self.reward_sq_sum + float(r @ r),
            successes=self.successes + float(np.clip(r, 0.0, 1.0).sum()),
            non_binary=self.non_binary + int(((r != 0.0) & (r != 1.0)).sum()),
        )

    def observe_guardrail(self, metric: str, values) -> "VariantStats":
        """Record guardrail observations (e.g. latency in ms), shape (n,) finite floats."""
        g = dict(self.guardrails)
        g[metric] = g.get(metric, Sums()).add(values)
        return replace(self, guardrails=g)

    def merge(self, other: "VariantStats") -> "VariantStats":
        """Sum of two shards' evidence for the same variant."""
        if other.name != self.name:
            raise ValueError(f"cannot merge stats of {other.name!r} into {self.name!r}")
        g = dict(self.guardrails)
        for metric, s in other.guardrails.items():
            g[metric] = g.get(metric, Sums()).merge(s)
        return VariantStats(
            self.name,
            self.exposures + other.exposures,
            self.trials + other.trials,
            self.reward_sum + other.reward_sum,
            self.reward_sq_sum + other.reward_sq_sum,
            self.successes + other.successes,
            self.non_binary + other.non_binary,
            g,
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["guardrails"] = {m: asdict(s) for m, s in self.guardrails.items()}
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "VariantStats":
        """Inverse of ``to_dict``; ``ValueError`` on unknown or missing fields."""
        d = dict(d)
        try:
            d["guardrails"] = {m: Sums(**s) for m, s in d.get("guardrails", {}).items()}
            return cls(**d)
        except TypeError as exc:
            raise ValueError(f"variant stats: {exc}") from None


def align_stats(
    experiment: Experiment, stats: Sequence[VariantStats] | Mapping[str, VariantStats]
) -> list[VariantStats]:
    """Stats in variant order. Accepts a sequence or a name -> stats mapping; a variant
    with no stats gets empty ones; unknown or duplicated names raise ``ValueError``."""
    items = list(stats.values()) if isinstance(stats, Mapping) else list(stats)
    by_name: dict[str, VariantStats] = {}
    for s in items:
        if not isinstance(s, VariantStats):
            raise ValueError(f"stats: expected VariantStats, got {type(s).__name__}")
        if s.name not in experiment.names:
            raise ValueError(f"stats: experiment {experiment.id!r} has no variant {s.name!r}")
        if s.name in by_name:
            raise ValueError(f"stats: two entries for variant {s.name!r}")
        by_name[s.name] = s
    return [by_name.get(name, VariantStats(name)) for name in experiment.names]


def empty_stats(experiment: Experiment) -> list[VariantStats]:
    return [VariantStats(name) for name in experiment.names]


def beta_posteriors(stats: Sequence[VariantStats]) -> tuple[np.ndarray, np.ndarray]:
    """Beta(1, 1)-prior posterior parameters (alpha, beta), each shape (K,) float64."""
    succ = np.array([s.successes for s in stats], dtype=np.float64)
    trials = np.array([s.trials for s in stats], dtype=np.float64)
    succ = np.clip(succ, 0.0, trials)
    return 1.0 + succ, 1.0 + trials - succ


def posterior_draws(alpha: np.ndarray, beta: np.ndarray, draws: int, rng: np.random.Generator) -> np.ndarray:
    """Samples of each variant's mean, shape (draws, K)."""
    return rng.beta(alpha, beta, size=(draws, len(alpha)))


def probability_best(
    alpha: np.ndarray, beta: np.ndarray, draws: int = PROB_BEST_DRAWS, seed: int | np.random.Generator = 0
) -> np.ndarray:
    """P(variant k has the largest mean) under independent Beta(alpha_k, beta_k), shape (K,),
    summing to 1. Monte Carlo: the share of ``draws`` joint samples in which k is the
    argmax; standard error sqrt(p (1 - p) / draws) <= 0.005 at the default 10,000."""
    if draws < 1:
        raise ValueError("draws must be >= 1")
    rng = np.random.default_rng(seed)
    winners = posterior_draws(alpha, beta, draws, rng).argmax(axis=1)
    return np.bincount(winners, minlength=len(alpha)) / draws


def wilson_interval(successes, n, z: float = Z95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for a binomial rate; array-like successes and n of one shape
    (n > 0). Returns (low, high) of that shape."""
    x = np.asarray(successes, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    p = x / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z / denom * np.sqrt(np.maximum(p * (1 - p), 0.0) / n + z2 / (4 * n * n))
    return np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)


def normal_interval(mean, variance, n, z: float = Z95) -> tuple[np.ndarray, np.ndarray]:
    """mean +- z sqrt(variance / n); array-like arguments of one shape."""
    half = z * np.sqrt(np.asarray(variance, dtype=np.float64) / np.asarray(n, dtype=np.float64))
    mean = np.asarray(mean, dtype=np.float64)
    return mean - half, mean + half


def difference_interval(
    treat: Sums, control: Sums, binary: bool, z: float = Z95
) -> tuple[float, float] | None:
    """95% interval for mean(treat) - mean(control) (normal approximation; Agresti-Caffo
    for binary rewards, Welch otherwise). None when either arm has fewer than 2 rewards."""
    if treat.count < 2 or control.count < 2:
        return None
    if binary:
        p1 = (treat.total + 1) / (treat.count + 2)
        p0 = (control.total + 1) / (control.count + 2)
        se = math.sqrt(p1 * (1 - p1) / (treat.count + 2) + p0 * (1 - p0) / (control.count + 2))
        d = p1 - p0
    else:
        se = math.sqrt(treat.variance / treat.count + control.variance / control.count)
        d = treat.mean - control.mean
    return d - z * se, d + z * se


@dataclass(frozen=True, slots=True)
class SampleRatioCheck:
    """Chi-square goodness of fit of observed exposures against the expected split.
    ``observed``/``expected``: counts per variant; ``df``: cells with expected > 0, minus 1.
    ``mismatch``: p_value < ``alpha`` (0.001) - the assignment or logging is broken and the
    results should not be trusted."""

    statistic: float
    df: int
    p_value: float
    mismatch: bool
    observed: tuple[int, ...]
    expected: tuple[float, ...]
    alpha: float = SRM_ALPHA


def sample_ratio_check(observed, expected_share, alpha: float = SRM_ALPHA) -> SampleRatioCheck | None:
    """``observed``: exposures per variant, shape (K,) ints. ``expected_share``: shape (K,)
    >= 0, any positive scale (normalised here) - the weights for fixed allocation, or for
    adaptive allocation sum_t n_t p_t, the probabilities in force at each time weighted
    by the exposures made under them. Exposures in a variant expected to get none give
    p = 0. None when there are no exposures."""
    obs = np.asarray(observed, dtype=np.float64).reshape(-1)
    share = np.asarray(expected_share, dtype=np.float64).reshape(-1)
    if share.shape != obs.shape:
        raise ValueError(f"expected_share has shape {share.shape}; expected {obs.shape}")
    if not np.isfinite(share).all() or (share < 0).any() or share.sum() <= 0:
        raise ValueError("expected_share must be finite, >= 0 and not all 0")
    if (obs < 0).any():
        raise ValueError("observed exposures must be >= 0")
    total = obs.sum()
    if total == 0:
        return None
    expected = total * share / share.sum()
    live = expected > 0
    df = int(live.sum()) - 1
    if (obs[~live] > 0).any():
        stat, p = math.inf, 0.0
    elif df < 1:
        stat, p = 0.0, 1.0
    else:
        stat = float((((obs - expected) ** 2)[live] / expected[live]).sum())
        p = float(sps.chi2.sf(stat, df))
    return SampleRatioCheck(
        statistic=stat,
        df=max(df, 0),
        p_value=p,
        mismatch=p < alpha,
        observed=tuple(int(o) for o in obs),
        expected=tuple(float(e) for e in expected),
        alpha=alpha,
    )


@dataclass(frozen=True, slots=True)
class GuardrailResult:
    """One guardrail for one variant. ``status``: ``breached`` when the whole 95% interval
    of the mean lies beyond the threshold (evidence of a breach); ``at_risk`` when the
    mean is beyond it but the interval still reaches the safe side; ``ok`` otherwise;
    ``insufficient_data`` below 2 observations."""

    metric: str
    direction: str
    threshold: float
    count: int
    mean: float | None
    ci_low: float | None
    ci_high: float | None
    status: GuardrailState

    @property
    def breached(self) -> bool:
        return self.status == "breached"


def guardrail_result(rule: Guardrail, sums: Sums) -> GuardrailResult:
    if sums.count < 2:
        return GuardrailResult(rule.metric, rule.direction, rule.threshold, sums.count, sums.mean, None, None,
                               "insufficient_data")
    lo, hi = (float(x) for x in normal_interval(sums.mean, sums.variance, sums.count))
    safe_edge = lo if rule.direction == "max" else hi
    if rule.violated_by(safe_edge):
        status: GuardrailState = "breached"
    elif rule.violated_by(sums.mean):
        status = "at_risk"
    else:
        status = "ok"
    return GuardrailResult(rule.metric, rule.direction, rule.threshold, sums.count, sums.mean, lo, hi, status)


@dataclass(frozen=True, slots=True)
class VariantResult:
    """Read-out of one variant (see the module docstring for the methods). Undefined
    numbers are None: the mean without rewards, intervals below 2 rewards (1 for Wilson),
    lift for the control itself. ``ope``: off-policy estimates the caller may attach."""

    name: str
    exposures: int
    trials: int
    mean: float | None
    ci_low: float | None
    ci_high: float | None
    ci_method: Literal["wilson", "normal"]
    lift: float | None
    lift_ci_low: float | None
    lift_ci_high: float | None
    prob_best: float
    guardrails: tuple[GuardrailResult, ...]
    ope: dict[str, float] | None = None

    @property
    def guardrail_breached(self) -> bool:
        return any(g.breached for g in self.guardrails)


@dataclass(frozen=True, slots=True)
class ExperimentResults:
    """``variants``: in experiment order, control first. ``leader``: the variant with the
    highest P(best). ``ready``: every variant has at least ``min_samples_per_variant``
    rewards. ``srm``: None when there are no exposures, or for adaptive allocation when
    no ``expected_share`` was given."""

    experiment_id: str
    metric: str
    allocation: str
    status: str
    variants: tuple[VariantResult, ...]
    leader: str
    ready: bool
    srm: SampleRatioCheck | None
    confidence: float = 0.95

    def variant(self, name: str) -> VariantResult:
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able (tuples stay tuples; infinities only in a failed SRM statistic)."""
        d = asdict(self)
        for v, raw in zip(self.variants, d["variants"]):
            for g, graw in zip(v.guardrails, raw["guardrails"]):
                graw["breached"] = g.breached
        return d


def _metric_sums(experiment: Experiment, s: VariantStats, metric: str) -> Sums:
    """A guardrail on the experiment's own metric is judged on the reward sums."""
    return s.reward if metric == experiment.metric else s.guardrails.get(metric, Sums())


def _interval(s: VariantStats) -> tuple[float | None, float | None]:
    if s.binary:
        if s.trials < 1:
            return None, None
        lo, hi = wilson_interval(s.successes, s.trials)
    else:
        if s.trials < 2:
            return None, None
        r = s.reward
        lo, hi = normal_interval(r.mean, r.variance, r.count)
    return float(lo), float(hi)


def results(
    experiment: Experiment,
    stats: Sequence[VariantStats] | Mapping[str, VariantStats],
    expected_share=None,
    *,
    seed: int | np.random.Generator = 0,
    draws: int = PROB_BEST_DRAWS,
) -> ExperimentResults:
    """Read out an experiment from its per-variant stats (sequence in variant order or a
    name -> stats mapping). ``expected_share``: shape (K,), the split the allocation
    should have produced (see ``sample_ratio_check``); defaults to the weights for fixed
    allocation; for adaptive allocation the caller accumulates sum_t n_t p_t (without it
    the SRM check is skipped). ``seed``/``draws``: the P(best) Monte Carlo."""
    aligned = align_stats(experiment, stats)
    alpha, beta = beta_posteriors(aligned)
    pbest = probability_best(alpha, beta, draws, seed)
    control = aligned[0].reward
    rows = []
    for i, s in enumerate(aligned):
        lo, hi = _interval(s)
        lift = lift_lo = lift_hi = None
        if i > 0 and s.trials and control.count:
            lift = s.reward.mean - control.mean
            ci = difference_interval(s.reward, control, s.binary and aligned[0].binary)
            if ci is not None:
                lift_lo, lift_hi = ci
        guards = tuple(
            guardrail_result(g, _metric_sums(experiment, s, g.metric)) for g in experiment.guardrails
        )
        rows.append(
            VariantResult(
                name=s.name,
                exposures=s.exposures,
                trials=s.trials,
                mean=s.reward.mean,
                ci_low=lo,
                ci_high=hi,
                ci_method="wilson" if s.binary else "normal",
                lift=lift,
                lift_ci_low=lift_lo,
                lift_ci_high=lift_hi,
                prob_best=float(pbest[i]),
                guardrails=guards,
            )
        )
    if expected_share is None and not experiment.adaptive:
        expected_share = experiment.weights()
    srm = None
    if expected_share is not None:
        srm = sample_ratio_check([s.exposures for s in aligned], expected_share)
    return ExperimentResults(
        experiment_id=experiment.id,
        metric=experiment.metric,
        allocation=experiment.allocation,
        status=experiment.status,
        variants=tuple(rows),
        leader=experiment.names[int(np.argmax(pbest))],
        ready=all(s.trials >= experiment.min_samples_per_variant for s in aligned),
        srm=srm,
    )
