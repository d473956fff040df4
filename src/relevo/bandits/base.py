"""The policy interface every bandit implements, and the slate + propensity machinery.

A policy scores candidates under ``1 + S`` posterior draws. Draw 0 chooses the slate (the
top n, best first, without replacement); draws 1..S estimate, for each shown item, the
probability that the policy would have put it at that very position:

    p(i, k) = (1 + c_ik) / (S + 1),   c_ik = #{s in 1..S : item i at position k under draw s}

The served draw is counted once, so a shown item never gets p = 0 (IPS weights stay
finite); the estimator's bias is at most 1 / (S + 1) and its standard error about
sqrt(p (1 - p) / S). ``inclusion`` is the same estimator for "anywhere in the slate".

Randomness is derived: ``select(..., seed)`` with the same seed and the same learned state
returns the same slate, so any logged decision can be replayed.

Position handling: ``PositionModel`` holds examination probabilities e_k (position-based
click model, E[r | shown at k] = e_k * attractiveness). Updates from a slate scale each
observation by its position's e_k, so a bottom-of-slate miss counts less than a top miss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, Sequence, runtime_checkable

import numpy as np


@dataclass(frozen=True, slots=True)
class Candidates:
    """What a policy chooses among. ``ids``: arm ids, length K. ``features``: item
    features, shape (K, d_item) float, or None for non-contextual policies."""

    ids: Sequence[str]
    features: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.features is not None:
            f = np.asarray(self.features, dtype=np.float64)
            if f.ndim != 2 or f.shape[0] != len(self.ids):
                raise ValueError(f"candidate features have shape {f.shape}; expected ({len(self.ids)}, d)")
            if not np.isfinite(f).all():
                raise ValueError("candidate features must be finite")
            object.__setattr__(self, "features", f)
        if len(set(self.ids)) != len(self.ids):
            raise ValueError("candidate ids must be unique")


@dataclass(slots=True)
class Slate:
    """A policy's decision. ``order``: candidate rows shown, best first, shape (n,) int64.
    ``arms``: their ids. ``features``: the rows the model scored, shape (n, d) (what
    ``update`` learns from). ``scores``: sampled scores of the shown rows. ``propensity``:
    probability of each shown item at its position; ``inclusion``: anywhere in the slate.
    ``explored``: True where the item is not in the greedy (posterior-mean) top n."""

    order: np.ndarray
    arms: list[str]
    features: np.ndarray
    scores: np.ndarray
    propensity: np.ndarray
    inclusion: np.ndarray
    explored: np.ndarray
    seed: int
    policy: str = ""
    first: np.ndarray | None = None  # (K,): P(candidate row is shown first), if asked for

    @property
    def exploration_share(self) -> float:
        return float(self.explored.mean()) if len(self.explored) else 0.0


@dataclass(frozen=True, slots=True)
class PositionModel:
    """Examination probability per slate position (1.0 = always seen). Positions beyond the
    tuple use its last value."""

    examination: tuple[float, ...] = (1.0,)

    def __post_init__(self) -> None:
        if not self.examination or not all(0.0 < e <= 1.0 for e in self.examination):
            raise ValueError("examination probabilities must be in (0, 1]")

    def weights(self, positions: np.ndarray) -> np.ndarray:
        e = np.asarray(self.examination, dtype=np.float64)
        return e[np.minimum(np.asarray(positions, dtype=np.int64), len(e) - 1)]

    @classmethod
    def dcg(cls, n: int) -> "PositionModel":
        """e_k = 1 / log2(k + 2): the usual discount when no click log has been fitted."""
        return cls(tuple(1.0 / math.log2(k + 2) for k in range(n)))


def top_n(scores: np.ndarray, n: int) -> np.ndarray:
    """Indices of the n largest entries along the last axis, best first."""
    k = scores.shape[-1]
    n = min(n, k)
    if n == k:
        part = np.broadcast_to(np.arange(k), scores.shape)
    else:
        part = np.argpartition(-scores, n - 1, axis=-1)[..., :n]
    picked = np.take_along_axis(scores, part, axis=-1)
    order = np.argsort(-picked, axis=-1, kind="stable")
    return np.take_along_axis(part, order, axis=-1)


def slate_from_scores(
    scores: np.ndarray, mean_scores: np.ndarray, n: int, arms: Sequence[str], rows: np.ndarray, seed: int, policy: str,
    all_first: bool = False,
) -> Slate:
    """Turn sampled scores (K, 1 + S) (column 0 = the served draw) into a Slate with
    Monte-Carlo propensities (estimator in the module docstring). ``rows``: the features
    the model scored, shape (K, d).

    Only the shown items' positions are counted: per extra draw, the n largest scores are
    found by one partition and sorted (S x n), and a shown item's position is the number
    of those above its own score (it is in the slate when its score reaches the n-th).
    With ``all_first`` the Slate also carries every candidate's probability of being shown
    first (one argmax per draw)."""
    k, draws = scores.shape
    n = min(n, k)
    s = draws - 1
    chosen = top_n(scores[:, 0], n)
    positions = np.arange(n)
    at = np.zeros(n)
    anywhere = np.zeros(n)
    first = np.zeros(k)
    first[chosen[0]] = 1.0
    if s:
        others = np.ascontiguousarray(scores[:, 1:].T)  # (S, K); a view when the policy scored draw-major
        if all_first:
            first += np.bincount(others.argmax(axis=1), minlength=k)
        top = np.partition(others, k - n, axis=1)[:, k - n:] if n < k else others.copy()
        top.sort(axis=1)  # (S, n) ascending: top[:, 0] is the n-th largest
        mine = others[:, chosen]  # (S, n): each shown item's score under each draw
        inside = mine >= top[:, :1]
        rank = (top[:, None, :] > mine[:, :, None]).sum(axis=2)  # items above it in that draw's slate
        at = (inside & (rank == positions)).sum(axis=0).astype(np.float64)
        anywhere = inside.sum(axis=0).astype(np.float64)
    greedy = np.zeros(k, dtype=bool)
    greedy[top_n(mean_scores, n)] = True
    return Slate(
        order=chosen.astype(np.int64),
        arms=[arms[i] for i in chosen.tolist()],
        features=rows[chosen],
        scores=scores[chosen, 0].astype(np.float64),
        propensity=(1.0 + at) / (s + 1.0),
        inclusion=(1.0 + anywhere) / (s + 1.0),
        explored=~greedy[chosen],
        seed=seed,
        policy=policy,
        first=first / (s + 1.0) if all_first else None,
    )


def check_rewards(rewards, n: int) -> np.ndarray:
    r = np.asarray(rewards, dtype=np.float64).reshape(-1)
    if r.shape != (n,):
        raise ValueError(f"rewards have shape {r.shape}; expected ({n},), one per shown item")
    if not np.isfinite(r).all():
        raise ValueError("rewards must be finite numbers (got NaN or infinity)")
    return r


def require_state(state: dict, kind: str, *keys: str) -> None:
    """Refuse a state document of another policy kind or with missing fields."""
    if not isinstance(state, dict) or state.get("kind", kind) != kind:
        raise ValueError(f"state is not a {kind} state")
    missing = [k for k in keys if k not in state]
    if missing:
        raise ValueError(f"{kind} state lacks {', '.join(missing)}")


@runtime_checkable
class Policy(Protocol):
    """``select`` chooses; ``update`` learns from a slate's rewards (one per shown item, in
    slate order); ``learn`` is the batched form for logged rows; ``state_dict`` /
    ``load_state_dict`` export and import the learned parameters (JSON-able)."""

    name: str
    n_updates: int

    def select(
        self,
        context: np.ndarray | None,
        candidates: Candidates,
        n: int,
        seed: int,
        *,
        exploration_scale: float = 1.0,
        bonus: np.ndarray | None = None,
        all_first: bool = False,
    ) -> Slate: ...

    def update(self, slate: Slate, rewards) -> None: ...

    def learn(self, arms: Sequence[str], features: np.ndarray | None, rewards, weights=None) -> None: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


class SamplingPolicy:
    """Shared guards and the select/update skeleton. Subclasses set ``name``,
    ``propensity_samples``, ``positions`` and ``n_updates`` and implement ``_scores``
    (sampled (K, draws) and mean (K,) scores of the candidates), ``_rows`` (the rows
    stored for learning, (K, d)) and ``_learn`` (validated arrays in)."""

    name = "policy"
    propensity_samples = 200
    positions = PositionModel()
    n_updates = 0

    def select(self, context, candidates, n, seed, *, exploration_scale=1.0, bonus=None, all_first=False) -> Slate:
        if n < 0:
            raise ValueError("n must be >= 0")
        if exploration_scale < 0 or not math.isfinite(exploration_scale):
            raise ValueError("exploration_scale must be a finite number >= 0")
        rows = self._rows(context, candidates)
        k = len(candidates.ids)
        if k == 0 or n == 0:
            empty = np.zeros(0)
            return Slate(empty.astype(np.int64), [], rows[:0], empty, empty, empty, empty.astype(bool), seed, self.name)
        rng = np.random.default_rng(seed)
        scores, mean = self._scores(rows, candidates, 1 + self.propensity_samples, rng, exploration_scale)
        if bonus is not None:
            bonus = np.asarray(bonus, dtype=np.float64)
            if bonus.shape != (k,):
                raise ValueError(f"bonus has shape {bonus.shape}; expected ({k},)")
            scores = scores + bonus[:, None]
            mean = mean + bonus
        return slate_from_scores(scores, mean, n, list(candidates.ids), rows, seed, self.name, all_first)

    def update(self, slate: Slate, rewards) -> None:
        r = check_rewards(rewards, len(slate.order))
        self.learn(slate.arms, slate.features, r, self.positions.weights(np.arange(len(r))))

    def learn(self, arms, features, rewards, weights=None) -> None:
        r = check_rewards(rewards, len(arms))
        w = np.ones_like(r) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
        if w.shape != r.shape or not np.isfinite(w).all() or (w < 0).any():
            raise ValueError("weights must be finite, >= 0 and one per reward")
        x = None
        if features is not None:
            x = np.atleast_2d(np.asarray(features, dtype=np.float64))
            if x.shape[0] != len(r) or not np.isfinite(x).all():
                raise ValueError(f"features have shape {x.shape}; expected ({len(r)}, d) finite rows")
        if len(r):
            self._learn(list(arms), x, r, w)


class ArmRows:
    """Arms keyed by id, each owning row ``index[id]`` of the policy's per-arm arrays.
    Subclasses implement ``_grow(k)`` (append k prior rows); they hold ``index`` and
    ``_lock``."""

    index: dict[str, int]

    def arm_rows(self, ids) -> np.ndarray:
        """Row of each arm id, adding unseen arms at the prior. The arrays grow first and
        the index is published last, so a concurrent reader that sees an arm finds its row."""
        new = [i for i in dict.fromkeys(ids) if i not in self.index]
        if new:
            with self._lock:
                new = [i for i in new if i not in self.index]
                if new:
                    start = len(self.index)
                    self._grow(len(new))
                    self.index.update((arm, start + j) for j, arm in enumerate(new))
        return np.fromiter((self.index[i] for i in ids), dtype=np.int64, count=len(ids))

    def _grow(self, k: int) -> None:
        raise NotImplementedError

    def _arm_list(self) -> list[str]:
        return sorted(self.index, key=self.index.__getitem__)

    @staticmethod
    def _checked_arms(state: dict) -> list[str]:
        arms = list(state["arms"])
        if len(set(arms)) != len(arms):
            raise ValueError("arm ids must be unique")
        return arms
