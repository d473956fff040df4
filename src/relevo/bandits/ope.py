"""Off-policy evaluation (OPE): the value of a policy estimated from another policy's log.

Notation (OBP's convention, Saito et al. 2020). A log has n rounds; round i records the
context x_i, the action a_i shown at position p_i, the reward r_i and the logging
propensity pi_b(a_i, p_i | x_i) (``pscore``). The evaluated policy is given as
``action_dist[i, a, p] = pi_e(a, p | x_i)``, shape (n_rounds, n_actions, n_positions):
the probability that it puts action a at position p in round i (a slate is evaluated
position by position, as the Open Bandit Dataset logs it). With the importance weight
w_i = pi_e(a_i, p_i | x_i) / pi_b(a_i, p_i | x_i) and a reward model
q(x, a, p) ~ E[r | x, a, p] (``q_hat``, same shape as ``action_dist``):

- IPS (Horvitz-Thompson):       V = 1/n sum_i w_i r_i                          unbiased
- clipped IPS (lambda):         V = 1/n sum_i min(w_i, lambda) r_i             biased down, lower variance
- SNIPS (Swaminathan & Joachims 2015, "The self-normalized estimator for
  counterfactual learning"):    V = sum_i w_i r_i / sum_i w_i                   consistent, bounded by max r
- DM (direct method):           V = 1/n sum_i sum_a pi_e(a, p_i | x_i) q(x_i, a, p_i)
- DR (Dudik, Langford & Li 2011, "Doubly robust policy evaluation and learning"):
                                V = DM + 1/n sum_i w_i (r_i - q(x_i, a_i, p_i))
  unbiased when either the propensities or the reward model are right.
- switch-DR (Wang, Agarwal & Dudik 2017, "Optimal and adaptive off-policy evaluation in
  contextual bandits"), in OBP's form:
                                V = DM + 1/n sum_i 1{w_i <= tau} w_i (r_i - q(x_i, a_i, p_i))
  tau = inf gives DR, tau = 0 gives DM.
- replay (Li, Chu, Langford & Wang 2011, "Unbiased offline evaluation of
  contextual-bandit-based news article recommendation algorithms"): on uniformly random
  logs, the mean reward of the rounds where the evaluated policy's choice equals the logged
  action.

The estimand is the mean reward per logged (round, position) record, with contexts and
positions distributed as in the log. Every estimator returns an :class:`Estimate` with a
percentile bootstrap interval that resamples rounds; for SNIPS and replay the ratio is
recomputed on each resample (a mean of per-round ratios would be a different estimator).
The intervals treat ``q_hat`` as fixed: they leave out the reward model's own variance.

Pure numpy and scipy; :class:`RewardModel` imports scikit-learn when it is fitted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, Sequence

import numpy as np
from scipy import sparse
from scipy.special import expit

SeedLike = int | np.random.Generator
ESTIMATORS = ("ips", "clipped_ips", "snips", "dm", "dr", "switch_dr")
_MODEL_BASED = frozenset({"dm", "dr", "switch_dr"})
_SUM_TOL = 1e-6


# ---------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class BanditLog:
    """Logged bandit feedback, one record per (round, position) shown.

    ``action``: int64 (n,), the logged action. ``position``: int64 (n,), 0-based slot
    (None: all zeros). ``reward``: float64 (n,). ``pscore``: float64 (n,), the logging
    policy's probability of that action at that position, in (0, 1]. ``context``: float64
    (n, dc) or None. ``action_context``: float64 (n_actions, da) or None.
    Arrays are converted on construction; a ValueError names the offending field.
    """

    action: np.ndarray
    reward: np.ndarray
    pscore: np.ndarray
    n_actions: int
    position: np.ndarray | None = None
    context: np.ndarray | None = None
    action_context: np.ndarray | None = None
    n_positions: int = 1

    def __post_init__(self) -> None:
        for name in ("n_actions", "n_positions"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        object.__setattr__(self, "n_actions", int(self.n_actions))
        object.__setattr__(self, "n_positions", int(self.n_positions))
        action = _as_index(self.action, "action")
        n = action.shape[0]
        if n == 0:
            raise ValueError("action is empty: a log needs at least one round")
        if action.min() < 0 or action.max() >= self.n_actions:
            raise ValueError(f"action must lie in [0, n_actions={self.n_actions}), got range "
                             f"[{action.min()}, {action.max()}]")
        position = np.zeros(n, dtype=np.int64) if self.position is None else _as_index(self.position, "position")
        _check_len(position, n, "position")
        if position.min() < 0 or position.max() >= self.n_positions:
            raise ValueError(f"position must be 0-based and lie in [0, n_positions={self.n_positions}), "
                             f"got range [{position.min()}, {position.max()}]")
        reward = _as_float(self.reward, "reward", ndim=1)
        _check_len(reward, n, "reward")
        pscore = _as_float(self.pscore, "pscore", ndim=1)
        _check_len(pscore, n, "pscore")
        if not (pscore > 0).all() or not (pscore <= 1).all():
            raise ValueError(f"pscore must lie in (0, 1], got range [{pscore.min()}, {pscore.max()}]")
        context = None if self.context is None else _as_float(self.context, "context", ndim=2)
        if context is not None and context.shape[0] != n:
            raise ValueError(f"context must have shape (n_rounds={n}, dc), got {context.shape}")
        action_context = self.action_context
        if action_context is not None:
            action_context = _as_float(action_context, "action_context", ndim=2)
        if action_context is not None and action_context.shape[0] != self.n_actions:
            raise ValueError(f"action_context must have shape (n_actions={self.n_actions}, da), "
                             f"got {action_context.shape}")
        for name, value in (("action", action), ("position", position), ("reward", reward), ("pscore", pscore),
                            ("context", context), ("action_context", action_context)):
            object.__setattr__(self, name, value)

    @property
    def n_rounds(self) -> int:
        return int(self.action.shape[0])

    def subset(self, rows: np.ndarray) -> BanditLog:
        """The rounds ``rows`` (indices or a boolean mask, shape (n,)) as a new log."""
        return BanditLog(action=self.action[rows], reward=self.reward[rows], pscore=self.pscore[rows],
                         n_actions=self.n_actions, position=self.position[rows],
                         context=None if self.context is None else self.context[rows],
                         action_context=self.action_context, n_positions=self.n_positions)


@dataclass(frozen=True, slots=True)
class Estimate:
    """A policy value with a (1 - alpha) percentile bootstrap interval.

    ``std_err``: standard deviation of the bootstrap replicates. ``param``: lambda for
    clipped IPS, tau for switch-DR, None otherwise. ``ess``: effective sample size of the
    importance weights, (sum w)^2 / sum w^2 (None for DM). ``max_weight``: largest w_i used.
    ``n_matched``: replay's number of rounds where the policy agreed with the log.
    """

    estimator: str
    value: float
    ci_low: float
    ci_high: float
    std_err: float
    n_rounds: int
    alpha: float = 0.05
    param: float | None = None
    ess: float | None = None
    max_weight: float | None = None
    n_matched: int | None = None

    def covers(self, truth: float) -> bool:
        return self.ci_low <= truth <= self.ci_high


# ---------------------------------------------------------------- bootstrap


def _rng(seed: SeedLike) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _mean_statistic(sample: np.ndarray) -> np.ndarray:
    return sample.mean(axis=1)


def _ratio_statistic(sample: np.ndarray) -> np.ndarray:
    num, den = sample[..., 0].sum(axis=1), sample[..., 1].sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def bootstrap_replicates(data: np.ndarray, statistic: Callable[[np.ndarray], np.ndarray] | None = None, *,
                         n_boot: int = 1000, seed: SeedLike = 0) -> np.ndarray:
    """Bootstrap replicates of ``statistic``, shape (n_boot,), resampling rows of ``data``.

    ``data``: shape (n, ...), one row per round. ``statistic`` takes a batch of resamples,
    shape (b, n, ...), and returns shape (b,); None means the mean of 1-D ``data``.
    Resampling is done in batches so memory stays near 2e6 elements.
    """
    data = np.asarray(data, dtype=np.float64)
    if data.ndim == 0 or data.shape[0] == 0:
        raise ValueError("data must have at least one row")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    statistic = statistic or _mean_statistic
    rng = _rng(seed)
    n = data.shape[0]
    per_row = max(1, data.size // n)
    batch = max(1, min(n_boot, 2_000_000 // (n * per_row)))
    out = np.empty(n_boot)
    for start in range(0, n_boot, batch):
        b = min(batch, n_boot - start)
        out[start : start + b] = statistic(data[rng.integers(n, size=(b, n))])
    return out


def bootstrap_ci(data: np.ndarray, statistic: Callable[[np.ndarray], np.ndarray] | None = None, *,
                 n_boot: int = 1000, alpha: float = 0.05, seed: SeedLike = 0) -> tuple[float, float]:
    """(low, high): the alpha/2 and 1 - alpha/2 percentiles of :func:`bootstrap_replicates`.

    Replicates where the statistic is undefined (NaN, e.g. a ratio with a zero
    denominator) are left out."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    reps = bootstrap_replicates(data, statistic, n_boot=n_boot, seed=seed)
    low, high = np.nanpercentile(reps, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(low), float(high)


def _estimate(name: str, data: np.ndarray, statistic, value: float, n_rounds: int, *, n_boot: int, alpha: float,
              seed: SeedLike, **extra) -> Estimate:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    reps = bootstrap_replicates(data, statistic, n_boot=n_boot, seed=seed)
    low, high = np.nanpercentile(reps, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    std = float(np.nanstd(reps, ddof=1)) if np.isfinite(reps).sum() > 1 else float("nan")
    return Estimate(estimator=name, value=float(value), ci_low=float(low), ci_high=float(high), std_err=std,
                    n_rounds=n_rounds, alpha=alpha, **extra)


# ---------------------------------------------------------------- validation


def _as_index(values, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, shape (n_rounds,), got shape {arr.shape}")
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64, copy=False)
    if arr.dtype.kind == "f" and np.isfinite(arr).all() and (arr == np.round(arr)).all():
        return arr.astype(np.int64)
    raise ValueError(f"{name} must hold integers, got dtype {arr.dtype}")


def _as_float(values, name: str, *, ndim: int) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric: {exc}") from None
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    return arr


def _check_len(arr: np.ndarray, n: int, name: str) -> None:
    if arr.shape[0] != n:
        raise ValueError(f"{name} must have shape (n_rounds={n},), got {arr.shape}")


def _check_action_dist(log: BanditLog, action_dist: np.ndarray) -> np.ndarray:
    """Validated ``action_dist`` of shape (n_rounds, n_actions, n_positions)."""
    arr = np.asarray(action_dist, dtype=np.float64)
    expected = (log.n_rounds, log.n_actions, log.n_positions)
    if arr.shape != expected:
        raise ValueError(f"action_dist must have shape (n_rounds, n_actions, n_positions) = {expected}, "
                         f"got {arr.shape}")
    if not np.isfinite(arr).all() or arr.min() < 0:
        raise ValueError("action_dist must hold finite, non-negative probabilities")
    worst = float(arr.sum(axis=1).max())
    if worst > 1 + _SUM_TOL:
        raise ValueError(f"action_dist must sum to <= 1 over actions at each position, got {worst:.6g}")
    return arr


def _check_q_hat(log: BanditLog, q_hat: np.ndarray | None, name: str) -> np.ndarray:
    if q_hat is None:
        raise ValueError(f"{name} needs q_hat, shape (n_rounds, n_actions, n_positions): fit a RewardModel")
    arr = np.asarray(q_hat, dtype=np.float64)
    expected = (log.n_rounds, log.n_actions, log.n_positions)
    if arr.shape != expected:
        raise ValueError(f"q_hat must have shape (n_rounds, n_actions, n_positions) = {expected}, got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("q_hat must be finite (no NaN or inf)")
    return arr


def _weights(log: BanditLog, action_dist: np.ndarray) -> np.ndarray:
    """w_i = pi_e(a_i, p_i | x_i) / pscore_i, shape (n,)."""
    rows = np.arange(log.n_rounds)
    return action_dist[rows, log.action, log.position] / log.pscore


def _weight_stats(w: np.ndarray) -> dict:
    sq = float(np.sum(w * w))
    return {"ess": float(np.sum(w)) ** 2 / sq if sq > 0 else 0.0, "max_weight": float(w.max())}


def _dm_terms(log: BanditLog, action_dist: np.ndarray, q_hat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sum_a pi_e(a, p_i | x_i) q(x_i, a, p_i), q(x_i, a_i, p_i)), both shape (n,)."""
    rows = np.arange(log.n_rounds)
    pi = action_dist[rows, :, log.position]
    q = q_hat[rows, :, log.position]
    return np.einsum("na,na->n", pi, q), q[rows, log.action]


# ---------------------------------------------------------------- estimators


def ips(log: BanditLog, action_dist: np.ndarray, *, clip: float | None = None, n_boot: int = 1000,
        alpha: float = 0.05, seed: SeedLike = 0) -> Estimate:
    """IPS, or clipped IPS with weights min(w_i, clip) when ``clip`` is given.

    ``action_dist``: shape (n_rounds, n_actions, n_positions)."""
    action_dist = _check_action_dist(log, action_dist)
    w = _weights(log, action_dist)
    name = "ips"
    if clip is not None:
        if not clip > 0:
            raise ValueError(f"clip must be > 0, got {clip}")
        w = np.minimum(w, clip)
        name = "clipped_ips"
    values = w * log.reward
    return _estimate(name, values, None, values.mean(), log.n_rounds, n_boot=n_boot, alpha=alpha, seed=seed,
                     param=None if clip is None else float(clip), **_weight_stats(w))


def snips(log: BanditLog, action_dist: np.ndarray, *, n_boot: int = 1000, alpha: float = 0.05,
          seed: SeedLike = 0) -> Estimate:
    """Self-normalised IPS; its interval resamples rounds and recomputes the ratio."""
    action_dist = _check_action_dist(log, action_dist)
    w = _weights(log, action_dist)
    total = w.sum()
    if total <= 0:
        raise ValueError("snips is undefined: the evaluated policy gives zero probability to every logged action")
    data = np.stack([w * log.reward, w], axis=1)
    return _estimate("snips", data, _ratio_statistic, (w * log.reward).sum() / total, log.n_rounds,
                     n_boot=n_boot, alpha=alpha, seed=seed, **_weight_stats(w))


def dm(log: BanditLog, action_dist: np.ndarray, q_hat: np.ndarray, *, n_boot: int = 1000, alpha: float = 0.05,
       seed: SeedLike = 0) -> Estimate:
    """Direct method. ``q_hat``: shape (n_rounds, n_actions, n_positions)."""
    action_dist = _check_action_dist(log, action_dist)
    q_hat = _check_q_hat(log, q_hat, "dm")
    values, _ = _dm_terms(log, action_dist, q_hat)
    return _estimate("dm", values, None, values.mean(), log.n_rounds, n_boot=n_boot, alpha=alpha, seed=seed)


def dr(log: BanditLog, action_dist: np.ndarray, q_hat: np.ndarray, *, n_boot: int = 1000, alpha: float = 0.05,
       seed: SeedLike = 0) -> Estimate:
    """Doubly robust. ``q_hat``: shape (n_rounds, n_actions, n_positions)."""
    return _dr("dr", log, action_dist, q_hat, np.inf, n_boot, alpha, seed)


def switch_dr(log: BanditLog, action_dist: np.ndarray, q_hat: np.ndarray, *, tau: float, n_boot: int = 1000,
              alpha: float = 0.05, seed: SeedLike = 0) -> Estimate:
    """Switch-DR: the DR correction only on rounds with w_i <= tau."""
    if not tau >= 0:
        raise ValueError(f"tau must be >= 0, got {tau}")
    return _dr("switch_dr", log, action_dist, q_hat, float(tau), n_boot, alpha, seed)


def _dr(name: str, log: BanditLog, action_dist, q_hat, tau: float, n_boot: int, alpha: float,
        seed: SeedLike) -> Estimate:
    action_dist = _check_action_dist(log, action_dist)
    q_hat = _check_q_hat(log, q_hat, name)
    base, q_logged = _dm_terms(log, action_dist, q_hat)
    w = _weights(log, action_dist)
    used = np.where(w <= tau, w, 0.0)
    values = base + used * (log.reward - q_logged)
    return _estimate(name, values, None, values.mean(), log.n_rounds, n_boot=n_boot, alpha=alpha, seed=seed,
                     param=None if name == "dr" else tau, **_weight_stats(used))


def replay(log: BanditLog, chosen_actions: np.ndarray, *, rtol: float = 1e-6, n_boot: int = 1000,
           alpha: float = 0.05, seed: SeedLike = 0) -> Estimate:
    """Replay on a uniformly random log: mean reward over the rounds where the policy agrees.

    ``chosen_actions``: the evaluated policy's action per round, shape (n_rounds,) (the
    action for the logged position), or its slate, shape (n_rounds, n_positions). The log
    must be uniform: pscore constant within each position (relative tolerance ``rtol``);
    otherwise the matched rounds are a biased sample and a ValueError is raised."""
    for p in np.unique(log.position):
        ps = log.pscore[log.position == p]
        if ps.max() - ps.min() > rtol * ps.max():
            raise ValueError(f"replay needs a uniformly random log: pscore at position {p} varies "
                             f"from {ps.min():.6g} to {ps.max():.6g}")
    chosen = np.asarray(chosen_actions)
    if chosen.ndim == 2 and chosen.shape == (log.n_rounds, log.n_positions):
        chosen = chosen[np.arange(log.n_rounds), log.position]
    elif chosen.shape != (log.n_rounds,):
        raise ValueError(f"chosen_actions must have shape (n_rounds,) = ({log.n_rounds},) or (n_rounds, "
                         f"n_positions) = ({log.n_rounds}, {log.n_positions}), got {chosen.shape}")
    chosen = _as_index(chosen, "chosen_actions")
    if chosen.min() < 0 or chosen.max() >= log.n_actions:
        raise ValueError(f"chosen_actions must lie in [0, n_actions={log.n_actions})")
    match = (chosen == log.action).astype(np.float64)
    n_matched = int(match.sum())
    if n_matched == 0:
        raise ValueError("replay matched no logged round: the estimate is undefined")
    data = np.stack([match * log.reward, match], axis=1)
    return _estimate("replay", data, _ratio_statistic, float((match * log.reward).sum() / n_matched), log.n_rounds,
                     n_boot=n_boot, alpha=alpha, seed=seed, n_matched=n_matched)


def evaluate(log: BanditLog, action_dist: np.ndarray, q_hat: np.ndarray | None = None,
             estimators: Sequence[str] | None = None, *, clip: float = 10.0, tau: float = 10.0,
             n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> list[Estimate]:
    """Several estimators on one log, in the order asked, with the same bootstrap seed
    (so their resamples coincide). ``estimators`` None: all of :data:`ESTIMATORS` that
    the inputs allow (the model-based ones only with ``q_hat``). ``clip`` is lambda for
    clipped IPS, ``tau`` the switch-DR threshold."""
    if estimators is None:
        estimators = [e for e in ESTIMATORS if q_hat is not None or e not in _MODEL_BASED]
    unknown = [e for e in estimators if e not in ESTIMATORS]
    if unknown:
        raise ValueError(f"unknown estimators {unknown}; choose from {list(ESTIMATORS)}")
    action_dist = _check_action_dist(log, action_dist)
    if q_hat is not None:
        q_hat = _check_q_hat(log, q_hat, "evaluate")
    common = {"n_boot": n_boot, "alpha": alpha, "seed": seed}
    out = []
    for name in estimators:
        if name == "ips":
            out.append(ips(log, action_dist, **common))
        elif name == "clipped_ips":
            out.append(ips(log, action_dist, clip=clip, **common))
        elif name == "snips":
            out.append(snips(log, action_dist, **common))
        elif name == "dm":
            out.append(dm(log, action_dist, q_hat, **common))
        elif name == "dr":
            out.append(dr(log, action_dist, q_hat, **common))
        else:
            out.append(switch_dr(log, action_dist, q_hat, tau=tau, **common))
    return out


# ---------------------------------------------------------------- logging policy


def behavior_action_dist_from_log(log: BanditLog, method: Literal["mean_pscore", "frequency"] = "mean_pscore"
                                  ) -> np.ndarray:
    """A non-contextual estimate of the logging policy, shape (n_actions, n_positions).

    ``mean_pscore``: the mean logged pscore of each (action, position), 0 where the action
    was never logged there, each position then renormalised to sum to 1. The logged
    pscores are the policy's own probabilities, so they are far less noisy than counts; but
    where the policy changed over time (OBD's Bernoulli TS was retrained during the log)
    the mean over the rounds where an action *was* shown is size-biased
    (E[p | shown] = E[p^2] / E[p] >= E[p]), and the per-position sums exceed 1 (about
    1.6 to 3.0 on OBD); renormalising restores a distribution but not the bias between
    actions. ``frequency``: count(a, p) / count(p), the unbiased estimate of the
    time-averaged policy, noisier for rarely shown actions.
    A position never logged gets an all-zero column (a policy that shows nothing there).
    """
    flat = log.action * log.n_positions + log.position
    size = log.n_actions * log.n_positions
    counts = np.bincount(flat, minlength=size).reshape(log.n_actions, log.n_positions).astype(np.float64)
    if method == "mean_pscore":
        sums = np.bincount(flat, weights=log.pscore, minlength=size).reshape(log.n_actions, log.n_positions)
        dist = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
    elif method == "frequency":
        dist = counts
    else:
        raise ValueError(f"method must be 'mean_pscore' or 'frequency', got {method!r}")
    total = dist.sum(axis=0, keepdims=True)
    return np.divide(dist, total, out=np.zeros_like(dist), where=total > 0)


# ---------------------------------------------------------------- reward model


@dataclass(frozen=True, slots=True)
class _Coefficients:
    """A linear score s(x, a, p) = b + x.w_x + w_a[a] + z_a.w_z + w_p[p] + x W_xz z_a
    + x.W_xa[:, a] + W_ap[a, p], split by feature block (absent blocks are None)."""

    intercept: float
    w_x: np.ndarray | None
    w_a: np.ndarray
    w_z: np.ndarray | None
    w_p: np.ndarray
    w_xz: np.ndarray | None
    w_xa: np.ndarray | None
    w_ap: np.ndarray | None


class RewardModel:
    """E[reward | context, action, position], for DM and DR.

    A regularised linear model over [context, action one-hot, action_context, position
    one-hot] and the interactions context x action_context, action x position and
    (``context_x_action``) context x action one-hot. ``kind``: ``logistic`` for 0/1
    rewards (predictions are probabilities), ``ridge`` for real rewards, ``auto`` picks
    by the rewards seen. ``reg``: L2 strength (ridge alpha, or 1 / C for the logistic
    model). Features are built sparse for fitting and predictions come from the
    coefficients block by block, so predicting (n, n_actions, n_positions) never
    materialises the n * n_actions * n_positions design.
    """

    def __init__(self, kind: Literal["auto", "logistic", "ridge"] = "auto", *, reg: float = 1.0,
                 interactions: bool = True, context_x_action: bool = False, max_iter: int = 1000):
        if kind not in ("auto", "logistic", "ridge"):
            raise ValueError(f"kind must be 'auto', 'logistic' or 'ridge', got {kind!r}")
        if not reg > 0:
            raise ValueError(f"reg must be > 0, got {reg}")
        self.kind = kind
        self.reg = float(reg)
        self.interactions = interactions
        self.context_x_action = context_x_action
        self.max_iter = max_iter
        self._coef: _Coefficients | None = None
        self._logistic = False
        self._shape: tuple[int, int, int, int] | None = None  # n_actions, n_positions, dc, da
        self._action_context: np.ndarray | None = None

    # -- features

    def _blocks(self, dc: int, da: int, k: int, p: int) -> list[tuple[str, int]]:
        blocks = [("x", dc), ("a", k), ("z", da), ("p", p)]
        if self.interactions:
            blocks += [("xz", dc * da), ("ap", k * p if p > 1 else 0)]
        if self.context_x_action:
            blocks.append(("xa", dc * k))
        return [(name, size) for name, size in blocks if size > 0]

    def _design(self, log: BanditLog) -> sparse.csr_matrix:
        n, k, p = log.n_rounds, log.n_actions, log.n_positions
        x = sparse.csr_matrix((n, 0)) if log.context is None else sparse.csr_matrix(log.context)
        z_rows = None if log.action_context is None else log.action_context[log.action]
        rows = np.arange(n)
        parts = {
            "x": x,
            "a": sparse.csr_matrix((np.ones(n), (rows, log.action)), shape=(n, k)),
            "z": None if z_rows is None else sparse.csr_matrix(z_rows),
            "p": sparse.csr_matrix((np.ones(n), (rows, log.position)), shape=(n, p)),
        }
        if self.interactions:
            if log.context is not None and z_rows is not None:
                xc = x.tocoo()
                da = z_rows.shape[1]
                cols = (xc.col[:, None] * da + np.arange(da)[None, :]).ravel()
                data = (xc.data[:, None] * z_rows[xc.row]).ravel()
                parts["xz"] = sparse.csr_matrix((data, (np.repeat(xc.row, da), cols)), shape=(n, x.shape[1] * da))
            if p > 1:
                parts["ap"] = sparse.csr_matrix((np.ones(n), (rows, log.action * p + log.position)), shape=(n, k * p))
        if self.context_x_action and log.context is not None:
            xc = x.tocoo()
            parts["xa"] = sparse.csr_matrix((xc.data, (xc.row, xc.col * k + log.action[xc.row])),
                                            shape=(n, x.shape[1] * k))
        dc = 0 if log.context is None else log.context.shape[1]
        da = 0 if log.action_context is None else log.action_context.shape[1]
        return sparse.hstack([parts[name] for name, _ in self._blocks(dc, da, k, p)], format="csr")

    # -- fitting

    def fit(self, log: BanditLog) -> RewardModel:
        """Fit on every round of ``log``; returns self."""
        k, p = log.n_actions, log.n_positions
        dc = 0 if log.context is None else log.context.shape[1]
        da = 0 if log.action_context is None else log.action_context.shape[1]
        binary = bool(np.isin(log.reward, (0.0, 1.0)).all())
        self._logistic = self.kind == "logistic" or (self.kind == "auto" and binary)
        if self._logistic and not binary:
            raise ValueError("kind='logistic' needs rewards in {0, 1}")
        self._shape = (k, p, dc, da)
        self._action_context = log.action_context
        design = self._design(log)
        y = log.reward
        if self._logistic and np.unique(y).size < 2:
            coef, intercept = np.zeros(design.shape[1]), _logit(float(y.mean()))
        elif self._logistic:
            from sklearn.linear_model import LogisticRegression

            model = LogisticRegression(C=1.0 / self.reg, max_iter=self.max_iter).fit(design, y)
            coef, intercept = model.coef_.ravel(), float(model.intercept_[0])
        else:
            from sklearn.linear_model import Ridge

            model = Ridge(alpha=self.reg, tol=1e-10).fit(design, y)
            coef, intercept = np.asarray(model.coef_).ravel(), float(model.intercept_)
        self._coef = self._split(coef, intercept, dc, da, k, p)
        return self

    def _split(self, coef: np.ndarray, intercept: float, dc: int, da: int, k: int, p: int) -> _Coefficients:
        parts: dict[str, np.ndarray] = {}
        start = 0
        for name, size in self._blocks(dc, da, k, p):
            parts[name] = coef[start : start + size]
            start += size
        return _Coefficients(
            intercept=intercept, w_x=parts.get("x"), w_a=parts["a"], w_z=parts.get("z"), w_p=parts["p"],
            w_xz=None if "xz" not in parts else parts["xz"].reshape(dc, da),
            w_xa=None if "xa" not in parts else parts["xa"].reshape(dc, k),
            w_ap=None if "ap" not in parts else parts["ap"].reshape(k, p))

    def predict(self, context: np.ndarray | None = None, *, n_rounds: int | None = None) -> np.ndarray:
        """q_hat, shape (n, n_actions, n_positions), for ``context`` of shape (n, dc)
        (None, with ``n_rounds``, for a model fitted without context)."""
        if self._coef is None or self._shape is None:
            raise RuntimeError("RewardModel.predict before fit")
        k, p, dc, da = self._shape
        c = self._coef
        if dc:
            if context is None:
                raise ValueError(f"context must have shape (n, {dc}), got None")
            x = np.asarray(context, dtype=np.float64)
            if x.ndim != 2 or x.shape[1] != dc:
                raise ValueError(f"context must have shape (n, {dc}), got {x.shape}")
            n = x.shape[0]
        else:
            if n_rounds is None:
                raise ValueError("n_rounds is required when the model has no context")
            n, x = int(n_rounds), None
        per_action = c.w_a.copy()
        if c.w_z is not None:
            per_action += self._action_context @ c.w_z
        score = np.full((n, k, p), c.intercept)
        score += per_action[None, :, None] + c.w_p[None, None, :]
        if c.w_ap is not None:
            score += c.w_ap[None, :, :]
        if x is not None:
            score += (x @ c.w_x)[:, None, None]
            if c.w_xz is not None:
                score += (x @ c.w_xz @ self._action_context.T)[:, :, None]
            if c.w_xa is not None:
                score += (x @ c.w_xa)[:, :, None]
        return expit(score) if self._logistic else score

    def fit_predict(self, log: BanditLog, *, n_folds: int = 3, seed: SeedLike = 0) -> np.ndarray:
        """q_hat for the rounds of ``log``, shape (n_rounds, n_actions, n_positions).

        With ``n_folds`` > 1 each round is predicted by a model fitted on the other folds
        (cross-fitting, as OBP's ``RegressionModel.fit_predict``), so DR's correction term
        does not see a model that has memorised that round. The model stays fitted on the
        last fold's training rounds; call :meth:`fit` to refit on all of them."""
        if n_folds < 1 or n_folds > log.n_rounds:
            raise ValueError(f"n_folds must lie in [1, n_rounds={log.n_rounds}], got {n_folds}")
        if n_folds == 1:
            return self.fit(log).predict(log.context, n_rounds=log.n_rounds)
        order = _rng(seed).permutation(log.n_rounds)
        out = np.empty((log.n_rounds, log.n_actions, log.n_positions))
        for fold in np.array_split(order, n_folds):
            train = np.ones(log.n_rounds, dtype=bool)
            train[fold] = False
            self.fit(log.subset(train))
            context = None if log.context is None else log.context[fold]
            out[fold] = self.predict(context, n_rounds=len(fold))
        return out


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return float(np.log(p / (1 - p)))
