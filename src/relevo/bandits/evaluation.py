"""Offline evaluation of relevo's own policies: their action distributions, logs built from
the engine's decisions, and train-then-estimate on a logged bandit dataset.

Three pieces, each on top of :mod:`relevo.bandits.ope` (notation there):

- :func:`policy_action_dist`: pi_e(a, p | x_i) of a Thompson-sampling policy, shape
  (n_rounds, n_actions, n_positions), by Monte Carlo. A TS policy has no closed-form slate
  distribution; S posterior draws per round give S slates, and
  pi_e(a, p | x_i) ~= #{s : a at position p in slate s} / S, with standard error about
  sqrt(pi (1 - pi) / S). Unlike the logged propensities of :mod:`relevo.bandits.base`
  (which add the served draw so that a shown item never gets 0), this estimate may be 0:
  an evaluated policy needs no positivity, only the logging one does.
- :func:`decisions_to_log`: the engine's DecisionLog as a :class:`BanditLog` (limits in
  its docstring: decisions log the shown items, not the candidate set).
- :func:`train_and_evaluate`: learn a policy from the first part of a log, estimate its
  value on the held-out part (IPS, SNIPS, DR, ...) and its value relative to the logging
  policy's on the same rounds, V(pi_e) / V(pi_b), with a paired bootstrap interval.
  :class:`ObdFeatures` turns an Open Bandit Dataset log into what the policy sees.

Pure numpy plus :mod:`relevo.bandits`; data loading and storage stay with the callers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

import numpy as np

from relevo.bandits.base import Candidates, Policy, top_n
from relevo.bandits.linear_ts import LinearTS, LinTSConfig
from relevo.bandits.logistic import LogisticTS, LogisticTSConfig
from relevo.bandits.ope import (
    ESTIMATORS,
    BanditLog,
    Estimate,
    RewardModel,
    _dm_terms,
    _weights,
    bootstrap_ci,
    bootstrap_replicates,
    evaluate,
    ips,
    snips,
)

if TYPE_CHECKING:  # records only pass through; keep this module free of pydantic
    from relevo.records import Decision

# Policies whose ``_scores`` score every row from the same parameter draws, whatever the
# candidate set: rows of several rounds can be stacked into one call (one set of draws
# shared by the rounds of a batch). The others (beta_ts keys draws by candidate id,
# disjoint_ts reads the context from row 0) are called round by round.
ROW_INDEPENDENT_SCORES = frozenset({"linear_ts", "logistic_ts"})
TS_MODELS = ("linear_ts", "logistic_ts")
_BATCH_ELEMENTS = 2_000_000


# ---------------------------------------------------------------- action distributions


def policy_action_dist(policy: Policy, contexts: np.ndarray | None, candidates: Candidates, n_positions: int,
                       samples: int = 200, seed: int | np.random.Generator = 0, *,
                       round_features: np.ndarray | None = None, n_rounds: int | None = None,
                       exploration_scale: float = 1.0) -> np.ndarray:
    """Monte-Carlo action distribution of a sampling policy, float64 (n, K, n_positions).

    ``contexts``: float64 (n, dc), one per round, or None for a policy without context.
    ``candidates``: the K actions (ids, item features (K, d_item)); ``round_features``
    float64 (n, K, d_item) replaces the item features round by round (features that
    depend on the user, e.g. a user-item affinity). ``n_rounds`` is needed only when
    neither gives n. Each round draws ``samples`` score vectors through the policy's
    ``_scores(rows, candidates, draws, rng, exploration_scale)`` hook (the same draws
    ``select`` makes), ranks each, and counts the positions of the top ``n_positions``:
    out[i, a, p] = #{s : a at p} / S. Each position sums to 1 when n_positions <= K
    (positions past K get no mass). ``exploration_scale`` 0 gives the greedy
    (posterior-mean) ranking. Policies in :data:`ROW_INDEPENDENT_SCORES` share one set of
    draws across a batch of rounds: every round's estimate is still unbiased, their
    errors are correlated within a batch (about 2e6 / (K S) rounds).
    """
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    if n_positions < 1:
        raise ValueError(f"n_positions must be >= 1, got {n_positions}")
    k = len(candidates.ids)
    if k == 0:
        raise ValueError("candidates is empty")
    if contexts is not None:
        contexts = np.asarray(contexts, dtype=np.float64)
        if contexts.ndim != 2:
            raise ValueError(f"contexts must have shape (n_rounds, dc), got {contexts.shape}")
    if round_features is not None:
        round_features = np.asarray(round_features, dtype=np.float64)
        if round_features.ndim != 3 or round_features.shape[1] != k:
            raise ValueError(f"round_features must have shape (n_rounds, K={k}, d), got {round_features.shape}")
    sizes = {len(a) for a in (contexts, round_features) if a is not None}
    if n_rounds is not None:
        sizes.add(int(n_rounds))
    if len(sizes) != 1:
        raise ValueError(f"contexts, round_features and n_rounds disagree on the number of rounds: {sorted(sizes)}"
                         if sizes else "give contexts, round_features or n_rounds")
    n = sizes.pop()
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    ids = list(candidates.ids)

    def round_candidates(i: int) -> Candidates:
        return candidates if round_features is None else Candidates(ids, round_features[i])

    def rows_of(i: int) -> np.ndarray:
        return policy._rows(None if contexts is None else contexts[i], round_candidates(i))

    out = np.empty((n, k, n_positions))
    if contexts is None and round_features is None:  # the same distribution every round
        scores, _ = policy._scores(rows_of(0), candidates, samples, rng, exploration_scale)
        out[:] = _position_counts(scores[None], n_positions)[0]
        return out
    batch = max(1, _BATCH_ELEMENTS // (k * samples)) if policy.name in ROW_INDEPENDENT_SCORES else 1
    for start in range(0, n, batch):
        stop = min(n, start + batch)
        rows = np.concatenate([rows_of(i) for i in range(start, stop)]) if stop - start > 1 else rows_of(start)
        scores, _ = policy._scores(rows, round_candidates(start), samples, rng, exploration_scale)
        out[start:stop] = _position_counts(scores.reshape(stop - start, k, samples), n_positions)
    return out


def _position_counts(scores: np.ndarray, n_positions: int) -> np.ndarray:
    """Share of draws putting each action at each position: scores (b, K, S) -> (b, K, P)."""
    b, k, s = scores.shape
    tops = top_n(np.swapaxes(scores, 1, 2), n_positions)  # (b, S, min(P, K)), best first
    flat = (np.arange(b)[:, None, None] * k + tops) * n_positions + np.arange(tops.shape[-1])
    counts = np.bincount(flat.ravel(), minlength=b * k * n_positions)
    return counts.reshape(b, k, n_positions) / s


# ---------------------------------------------------------------- the engine's own log


def decisions_to_log(decisions: Sequence[Decision], rewards: Mapping[tuple[str, str], float],
                     default_reward: float | None = 0.0) -> tuple[BanditLog, list[str]]:
    """The engine's decisions as an OPE log: one record per shown item at its position.

    ``rewards``: (decision_id, item_id) -> reward; an item without one gets
    ``default_reward`` (the RewardJoiner's convention for a closed window) or, with None,
    is left out. Decisions not activated (never shown) are skipped. Record fields: action
    = index of the item id in the returned list (first-seen order), position = slot,
    pscore = the logged propensity of that item at that slot, context = the logged
    feature row of the item (float64 (n, d); None when the decisions log rows of
    different widths or none).

    Limits. A decision logs the slate it showed, not the candidate set it chose from nor
    the policy's state, so pi_e(a, p | x) of another policy over the full candidate set
    cannot be computed from it. What the log supports: the logging policy's own value
    (:func:`on_policy_value`), and the value of any policy whose action distribution the
    caller can compute for each decision's context over the logged action space. A
    re-ranking of each logged slate is not a policy over the candidates (its "slate"
    depends on the logging policy's draw), so IPS on it is biased. The propensities are
    the engine's Monte-Carlo estimates, (1 + c) / (S + 1) (bias <= 1 / (S + 1)). A settled
    decision (window closed) carries its items' final rewards in ``Decision.rewards``; for
    open ones the caller reads the feature store's reward markers.
    """
    action_ids: dict[str, int] = {}
    action, position, reward, pscore, rows = [], [], [], [], []
    for d in decisions:
        if not d.activated:
            continue
        for slot, item in enumerate(d.items):
            r = rewards.get((d.decision_id, item.item_id), default_reward)
            if r is None:
                continue
            if not 0.0 < item.propensity <= 1.0:
                raise ValueError(f"decision {d.decision_id!r}, item {item.item_id!r}: propensity "
                                 f"{item.propensity!r} is not in (0, 1]")
            action.append(action_ids.setdefault(item.item_id, len(action_ids)))
            position.append(slot)
            reward.append(float(r))
            pscore.append(float(item.propensity))
            rows.append(d.features[slot] if slot < len(d.features) else None)
    if not action:
        raise ValueError("no shown item to evaluate: no activated decision (or none with a reward)")
    widths = {None if r is None else len(r) for r in rows}
    context = np.asarray(rows, dtype=np.float64) if len(widths) == 1 and widths != {None} and widths != {0} else None
    log = BanditLog(action=np.asarray(action, dtype=np.int64), reward=np.asarray(reward), pscore=np.asarray(pscore),
                    n_actions=len(action_ids), position=np.asarray(position, dtype=np.int64), context=context,
                    n_positions=max(position) + 1)
    return log, list(action_ids)


def on_policy_value(log: BanditLog, *, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> list[Estimate]:
    """IPS and SNIPS of the logging policy on its own log (pi_e = pi_b).

    Every weight is pi_b / pi_b = 1, so both equal the mean reward per record; they are
    the anchor that other policies' estimates on the same log are compared with. Built on
    a one-action relabelling of the log (the weights only read pi_e at the logged action
    and position), so memory stays O(n) whatever the number of items.
    """
    collapsed = BanditLog(action=np.zeros(log.n_rounds, dtype=np.int64), reward=log.reward, pscore=log.pscore,
                          n_actions=1, position=log.position, n_positions=log.n_positions)
    dist = np.zeros((log.n_rounds, 1, log.n_positions))
    dist[np.arange(log.n_rounds), 0, log.position] = log.pscore
    common = {"n_boot": n_boot, "alpha": alpha, "seed": seed}
    return [ips(collapsed, dist, **common), snips(collapsed, dist, **common)]


# ---------------------------------------------------------------- features of a logged dataset


@dataclass(frozen=True, slots=True)
class RoundFeatures:
    """What a policy sees in each round of a log. ``context``: float64 (n, dc) or None.
    ``items``: float64 (K, d_item), the same every round, or (n, K, d_item)."""

    context: np.ndarray | None
    items: np.ndarray

    @property
    def item_dim(self) -> int:
        return int(self.items.shape[-1])

    @property
    def context_dim(self) -> int:
        return 0 if self.context is None else int(self.context.shape[1])

    def candidates(self, ids: Sequence[str]) -> Candidates:
        """The candidates of the first round (all rounds when ``items`` is 2-D)."""
        return Candidates(list(ids), self.items if self.items.ndim == 2 else self.items[0])


@dataclass(frozen=True, slots=True)
class ObdFeatures:
    """A compact featurisation of an Open Bandit Dataset log (layout of
    :mod:`relevo.datasets.obd`: context = one-hot user-feature blocks of widths
    ``block_widths``, then one user-item affinity column per action).

    - context (dc = sum of kept columns): per user feature, the ``top`` most frequent
      categories in the log given to :meth:`fit` (the training rows), one-hot; rarer
      categories encode as zeros. With ~46 clicks per 10,000 rows the full one-hot
      crossed with the item features would be mostly noise.
    - items (n, K, 2 + da): a constant 1 (so the context (x) item block holds the context's
      main effects), the dataset's item features, and log1p of the user's affinity with
      that very item (it differs by round, hence per-round item features).
    """

    block_widths: tuple[int, ...]
    keep: tuple[int, ...] = ()  # kept context columns, fitted

    @classmethod
    def fit(cls, log: BanditLog, block_widths: Sequence[int], top: int = 2) -> ObdFeatures:
        if log.context is None or log.action_context is None:
            raise ValueError("ObdFeatures needs a log with context and action_context")
        widths = tuple(int(w) for w in block_widths)
        if sum(widths) > log.context.shape[1]:
            raise ValueError(f"block widths {widths} exceed the context's {log.context.shape[1]} columns")
        keep: list[int] = []
        offset = 0
        for w in widths:
            counts = log.context[:, offset : offset + w].sum(axis=0)
            best = np.argsort(-counts, kind="stable")[: max(0, top)]
            keep.extend(int(offset + j) for j in sorted(best) if counts[j] > 0)
            offset += w
        return cls(block_widths=widths, keep=tuple(keep))

    def __call__(self, log: BanditLog) -> RoundFeatures:
        if log.context is None or log.action_context is None:
            raise ValueError("ObdFeatures needs a log with context and action_context")
        start = sum(self.block_widths)
        k = log.n_actions
        n_aff = log.context.shape[1] - start
        if n_aff not in (0, k):
            raise ValueError(f"expected one affinity column per action ({k}) after the one-hot blocks, got {n_aff}")
        n = log.n_rounds
        affinity = np.log1p(np.maximum(log.context[:, start:], 0.0)) if n_aff else np.zeros((n, k))
        items = np.concatenate([np.ones((n, k, 1)), np.broadcast_to(log.action_context, (n, *log.action_context.shape)),
                                affinity[:, :, None]], axis=2)
        return RoundFeatures(context=log.context[:, list(self.keep)], items=items)


# ---------------------------------------------------------------- train, then estimate


@dataclass(frozen=True, slots=True)
class Ratio:
    """V(pi_e) / V(pi_b) on the same rounds, with a paired percentile bootstrap interval."""

    estimator: str
    value: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True, slots=True)
class PolicyEvaluation:
    """A policy's estimated value on a held-out log. ``baseline``: the logging policy's
    on-policy value on the same rounds (mean reward, estimator ``on_policy``).
    ``relative``: each estimate divided by the baseline. ``n_train`` / ``train_reward``:
    rows learned and their reward sum (0 when nothing was trained). ``notes``:
    ``weighted_rewards``, the rewarded test records the policy gives weight > 0 (with 0,
    every interval is [0, 0] and ``ips_upper_rule_of_three`` is the honest upper end)."""

    policy: str
    estimates: list[Estimate]
    baseline: Estimate
    relative: list[Ratio]
    n_train: int = 0
    train_reward: float = 0.0
    train_s: float = 0.0
    eval_s: float = 0.0
    notes: dict = field(default_factory=dict)

    def as_dict(self, digits: int = 6) -> dict:
        def rnd(v):
            return None if v is None else round(float(v), digits)

        return {
            "policy": self.policy, "n_train": self.n_train, "train_reward": rnd(self.train_reward),
            "n_test": self.baseline.n_rounds, "train_s": round(self.train_s, 2), "eval_s": round(self.eval_s, 2),
            "baseline": {"value": rnd(self.baseline.value),
                         "ci": [rnd(self.baseline.ci_low), rnd(self.baseline.ci_high)]},
            "estimates": {e.estimator: {"value": rnd(e.value), "ci": [rnd(e.ci_low), rnd(e.ci_high)],
                                        "ess": None if e.ess is None else round(e.ess, 1)} for e in self.estimates},
            "relative": {r.estimator: {"value": rnd(r.value), "ci": [rnd(r.ci_low), rnd(r.ci_high)]}
                         for r in self.relative},
            **self.notes,
        }


def split_in_time(log: BanditLog, train_fraction: float = 0.5) -> tuple[BanditLog, BanditLog]:
    """(first ``train_fraction`` of the records, the rest): a split in time for logs whose
    rows are in time order (the OBD files are sorted by timestamp)."""
    if not 0 < train_fraction < 1:
        raise ValueError(f"train_fraction must lie in (0, 1), got {train_fraction}")
    cut = int(round(log.n_rounds * train_fraction))
    if cut < 1 or cut >= log.n_rounds:
        raise ValueError(f"a log of {log.n_rounds} rounds is too short to split at {train_fraction}")
    return log.subset(np.arange(cut)), log.subset(np.arange(cut, log.n_rounds))


def learn_from_log(policy: Policy, log: BanditLog, features: RoundFeatures) -> None:
    """One batched ``learn`` on every logged record: the row the policy would have scored
    for the logged action in that round, and its observed reward (no weights: on a
    uniformly random log each record is an unbiased observation of E[r | x, a])."""
    ids = [str(a) for a in range(log.n_actions)]
    shared = features.candidates(ids) if features.items.ndim == 2 else None
    rows = []
    for i in range(log.n_rounds):
        cand = shared if shared is not None else Candidates(ids, features.items[i])
        rows.append(policy._rows(None if features.context is None else features.context[i], cand)[log.action[i]])
    rows = np.asarray(rows, dtype=np.float64)
    policy.learn([ids[a] for a in log.action], rows, log.reward)


def estimate_against_logging(log: BanditLog, action_dist: np.ndarray, q_hat: np.ndarray | None = None,
                             estimators: Sequence[str] = ("ips", "snips", "dr"), *, policy: str = "pi_e",
                             clip: float = 10.0, tau: float = 10.0, n_boot: int = 1000, alpha: float = 0.05,
                             seed: int = 0) -> PolicyEvaluation:
    """Estimates of a policy given as ``action_dist`` (n, K, P) on ``log``, and their ratio
    to the logging policy's on-policy value (mean reward) on the same rounds.

    The ratio's interval resamples rounds once for numerator and denominator together,
    so their correlation (same clicks) is kept; for SNIPS the ratio is recomputed on each
    resample, (sum w r / sum w) / (sum r / n)."""
    t = time.perf_counter()
    estimates = evaluate(log, action_dist, q_hat, estimators, clip=clip, tau=tau, n_boot=n_boot, alpha=alpha,
                         seed=seed)
    base_value = float(log.reward.mean())
    low, high = bootstrap_ci(log.reward, n_boot=n_boot, alpha=alpha, seed=seed)
    base_reps = bootstrap_replicates(log.reward, n_boot=n_boot, seed=seed)
    baseline = Estimate(estimator="on_policy", value=base_value, ci_low=low, ci_high=high,
                        std_err=float(np.std(base_reps, ddof=1)) if n_boot > 1 else float("nan"),
                        n_rounds=log.n_rounds, alpha=alpha)
    action_dist = np.asarray(action_dist, dtype=np.float64)
    relative = [_ratio(e, log, action_dist, q_hat, clip, tau, n_boot, alpha, seed) for e in estimates]
    w = _weights(log, action_dist)
    clicks = int(((w > 0) & (log.reward > 0)).sum())
    notes: dict = {"weighted_rewards": clicks}
    if clicks == 0:
        # the bootstrap of an all-zero numerator is [0, 0]: the rule of three (at most ~3
        # rewarded records at the largest weight, 95%) is the honest upper end
        notes["ips_upper_rule_of_three"] = round(3.0 * float(w.max()) / log.n_rounds, 6)
    return PolicyEvaluation(policy=policy, estimates=estimates, baseline=baseline, relative=relative,
                            eval_s=time.perf_counter() - t, notes=notes)


def _ratio(est: Estimate, log: BanditLog, action_dist: np.ndarray, q_hat, clip: float, tau: float, n_boot: int,
           alpha: float, seed: int) -> Ratio:
    """Per-round terms of ``est`` (numerator, normaliser) beside the rewards, bootstrapped
    jointly: ratio = (sum num / sum den) / (sum r / n), den = w for SNIPS, else 1."""
    name = est.estimator
    ones = np.ones(log.n_rounds)
    w = _weights(log, action_dist) if name != "dm" else ones
    if name in ("ips", "snips"):
        num, den = w * log.reward, (w if name == "snips" else ones)
    elif name == "clipped_ips":
        num, den = np.minimum(w, clip) * log.reward, ones
    else:
        base, q_logged = _dm_terms(log, action_dist, np.asarray(q_hat, dtype=np.float64))
        used = {"dm": 0.0 * w, "dr": w, "switch_dr": np.where(w <= tau, w, 0.0)}[name]
        num, den = base + used * (log.reward - q_logged), ones
    total = log.reward.sum()
    value = est.value / (total / log.n_rounds) if total > 0 else float("nan")
    data = np.stack([num, den, log.reward], axis=1)

    def statistic(sample: np.ndarray) -> np.ndarray:
        n = sample.shape[1]
        s = sample.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where((s[:, 1] > 0) & (s[:, 2] > 0), (s[:, 0] / s[:, 1]) / (s[:, 2] / n), np.nan)

    reps = bootstrap_replicates(data, statistic, n_boot=n_boot, seed=seed)
    if np.isfinite(reps).any():
        low, high = np.nanpercentile(reps, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    else:
        low = high = float("nan")
    return Ratio(estimator=name, value=float(value), ci_low=float(low), ci_high=float(high))


def train_and_evaluate(policy_factory: Callable[[int, int], Policy], log_train: BanditLog, log_test: BanditLog,
                       featurize: Callable[[BanditLog], RoundFeatures], *,
                       estimators: Sequence[str] = ("ips", "snips", "dr"), reward_model: RewardModel | None = None,
                       q_hat: np.ndarray | None = None, samples: int = 1000, exploration_scale: float = 1.0,
                       n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> PolicyEvaluation:
    """Train a fresh policy on ``log_train`` and estimate its value on ``log_test``.

    ``policy_factory(item_dim, context_dim)`` builds the untrained policy for the
    features ``featurize`` gives (``featurize`` is fitted by the caller, on the training
    rows only). The policy learns every training record (:func:`learn_from_log`); its
    action distribution on the test rounds comes from :func:`policy_action_dist` with
    ``samples`` draws per round (``exploration_scale`` 0: the greedy, posterior-mean
    policy, computed from a single draw). A TS policy spreads its slates, so pi_e at a
    logged record is often near 1/K, and its Monte-Carlo relative error sqrt(K / S) is
    large at S = 200 (about 40% per record on OBD): the default 1000 keeps the IPS value's
    MC error (``notes["ips_mc_std_err"]``) well under its bootstrap error. The
    model-based estimators use ``q_hat`` for the test rounds (n_test, K, P), or
    ``reward_model`` (default: logistic, reg 100) fitted
    on ``log_train``; a reward model fitted on other rows than the ones it scores keeps
    DR's correction honest without cross-fitting. Unknown estimator names raise ValueError.
    """
    unknown = [e for e in estimators if e not in ESTIMATORS]
    if unknown:
        raise ValueError(f"unknown estimators {unknown}; choose from {list(ESTIMATORS)}")
    if log_train.n_actions != log_test.n_actions or log_train.n_positions != log_test.n_positions:
        raise ValueError("train and test logs must have the same actions and positions")
    t = time.perf_counter()
    train_features = featurize(log_train)
    policy = policy_factory(train_features.item_dim, train_features.context_dim)
    learn_from_log(policy, log_train, train_features)
    train_s = time.perf_counter() - t
    test_features = featurize(log_test)
    ids = [str(a) for a in range(log_test.n_actions)]
    greedy = exploration_scale == 0
    action_dist = policy_action_dist(
        policy, test_features.context, test_features.candidates(ids), log_test.n_positions,
        samples=1 if greedy else samples, seed=seed,
        round_features=test_features.items if test_features.items.ndim == 3 else None,
        n_rounds=log_test.n_rounds, exploration_scale=exploration_scale)
    if q_hat is None and any(e in ("dm", "dr", "switch_dr") for e in estimators):
        model = reward_model or RewardModel("logistic", reg=100.0)
        q_hat = model.fit(log_train).predict(log_test.context, n_rounds=log_test.n_rounds)
    result = estimate_against_logging(log_test, action_dist, q_hat, estimators,
                                      policy=policy.name + ("_greedy" if greedy else ""), n_boot=n_boot,
                                      alpha=alpha, seed=seed)
    # Monte-Carlo error of the IPS value from the S draws per round (the bootstrap interval
    # leaves it out): var(pi_hat) = pi (1 - pi) / S per record, records taken as independent
    # (rounds of a batch share draws, so this is a lower bound)
    pi = action_dist[np.arange(log_test.n_rounds), log_test.action, log_test.position]
    mc_var = np.sum((log_test.reward / log_test.pscore) ** 2 * pi * (1 - pi)) / (1 if greedy else samples)
    notes = {**result.notes, "samples": 1 if greedy else samples, "exploration_scale": exploration_scale,
             "ips_mc_std_err": round(float(np.sqrt(mc_var)) / log_test.n_rounds, 7),
             # how far from uniform the policy's first slot is: 1/K for a random policy
             "mean_top_prob": round(float(action_dist[:, :, 0].max(axis=1).mean()), 4)}
    return PolicyEvaluation(policy=result.policy, estimates=result.estimates, baseline=result.baseline,
                            relative=result.relative, n_train=log_train.n_rounds,
                            train_reward=float(log_train.reward.sum()), train_s=train_s,
                            eval_s=time.perf_counter() - t - train_s, notes=notes)


def ts_factory(model: str, log_train: BanditLog) -> Callable[[int, int], Policy]:
    """relevo's contextual TS for a logged dataset, with settings fixed before seeing the
    test rows. ``linear_ts``: v = sqrt(p (1 - p)) with p the training mean reward (the
    reward noise of a Bernoulli click; Agrawal & Goyal's v scales the posterior to that
    noise), lam 1. ``logistic_ts``: the Laplace posterior as is (v = 1), lam 1."""
    if model == "linear_ts":
        p = float(np.clip(log_train.reward.mean(), 1e-4, 0.5))
        v = float(np.sqrt(p * (1 - p)))
        return lambda dim, ctx: LinearTS(LinTSConfig(dim=dim, context_dim=ctx, exploration=v, propensity_samples=0))
    if model == "logistic_ts":
        return lambda dim, ctx: LogisticTS(LogisticTSConfig(dim=dim, context_dim=ctx, propensity_samples=0))
    raise ValueError(f"unknown model {model!r}; choose from {list(TS_MODELS)}")


def evaluate_ts_on_log(log: BanditLog, block_widths: Sequence[int], *, models: Sequence[str] = TS_MODELS,
                       greedy: bool = True, fixed: Mapping[str, np.ndarray] | None = None,
                       train_fraction: float = 0.5, top: int = 2, estimators: Sequence[str] = ("ips", "snips", "dr"),
                       reward_reg: float = 100.0, samples: int = 1000, n_boot: int = 1000, alpha: float = 0.05,
                       seed: int = 0) -> list[PolicyEvaluation]:
    """relevo's TS models trained on the first ``train_fraction`` of an OBD log (time
    order, :func:`split_in_time`) and evaluated on the rest, as sampled (``<model>``) and,
    with ``greedy``, by their posterior mean (``<model>_greedy``). ``fixed``: name ->
    a non-contextual policy's action distribution (K, P) (e.g. the BTS policy's, from
    ``behavior_action_dist_from_log``) evaluated on the same held-out rounds. One reward
    model (logistic, L2 ``reward_reg``), fitted on the training rows, serves every DR."""
    train, test = split_in_time(log, train_fraction)
    featurize = ObdFeatures.fit(train, block_widths, top=top)
    q_hat = None
    if any(e in ("dm", "dr", "switch_dr") for e in estimators):
        q_hat = RewardModel("logistic", reg=reward_reg).fit(train).predict(test.context, n_rounds=test.n_rounds)
    out = []
    for name, dist in (fixed or {}).items():
        dist = np.asarray(dist, dtype=np.float64)
        if dist.shape != (test.n_actions, test.n_positions):
            raise ValueError(f"fixed policy {name!r} must have shape (n_actions, n_positions) = "
                             f"{(test.n_actions, test.n_positions)}, got {dist.shape}")
        out.append(estimate_against_logging(test, np.broadcast_to(dist, (test.n_rounds, *dist.shape)), q_hat,
                                            estimators, policy=name, n_boot=n_boot, alpha=alpha, seed=seed))
    for model in models:
        factory = ts_factory(model, train)
        for scale in ((1.0, 0.0) if greedy else (1.0,)):
            out.append(train_and_evaluate(factory, train, test, featurize, estimators=estimators, q_hat=q_hat,
                                          samples=samples, exploration_scale=scale, n_boot=n_boot, alpha=alpha,
                                          seed=seed))
    return out
