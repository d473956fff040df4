"""Disjoint linear Thompson Sampling: one linear model per arm over the context features.

For small action sets where every arm gets enough traffic to learn its own weights (the
"disjoint" model of Li et al. 2010). Arm a's posterior is N(mu_a, v^2 A_a^-1),
A_a = lam I + sum x x^T over its rows. Because all arms score the same context x, the
sampled score of arm a is a scalar normal N(x . mu_a, v^2 x^T A_a^-1 x): draws are taken
per score directly, O(K d^2) per decision with no factorisation. A_a^-1 is kept by
Sherman-Morrison and recomputed from A_a every ``refresh_every`` updates of that arm.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from relevo.bandits.base import ArmRows, Candidates, PositionModel, SamplingPolicy, require_state


@dataclass(frozen=True, slots=True)
class DisjointConfig:
    context_dim: int
    lam: float = 1.0
    exploration: float = 0.3
    propensity_samples: int = 200
    refresh_every: int = 64
    max_arms: int = 10_000
    examination: tuple[float, ...] = (1.0,)

    def __post_init__(self) -> None:
        if self.context_dim < 1 or self.lam <= 0 or self.exploration < 0 or self.propensity_samples < 0:
            raise ValueError("context_dim >= 1, lam > 0, exploration >= 0, propensity_samples >= 0")


class DisjointLinTS(ArmRows, SamplingPolicy):
    name = "disjoint_ts"

    def __init__(self, config: DisjointConfig):
        self.config = config
        self.propensity_samples = config.propensity_samples
        self.positions = PositionModel(config.examination)
        d = config.context_dim
        self.index: dict[str, int] = {}
        self.A = np.zeros((0, d, d))
        self.A_inv = np.zeros((0, d, d))
        self.b = np.zeros((0, d))
        self.mu = np.zeros((0, d))
        self.since_refresh = np.zeros(0, dtype=np.int64)
        self.n_updates = 0
        self._lock = threading.Lock()

    def _grow(self, k: int) -> None:
        if len(self.index) + k > self.config.max_arms:
            raise ValueError(f"more than {self.config.max_arms} arms: use linear_ts (shared model) instead")
        d, lam = self.config.context_dim, self.config.lam
        eye = np.broadcast_to(np.eye(d), (k, d, d))
        self.A = np.concatenate([self.A, lam * eye])
        self.A_inv = np.concatenate([self.A_inv, eye / lam])
        self.b = np.concatenate([self.b, np.zeros((k, d))])
        self.mu = np.concatenate([self.mu, np.zeros((k, d))])
        self.since_refresh = np.concatenate([self.since_refresh, np.zeros(k, dtype=np.int64)])

    def _rows(self, context, candidates: Candidates) -> np.ndarray:
        d = self.config.context_dim
        if context is None:
            raise ValueError(f"disjoint_ts needs context features of shape ({d},)")
        c = np.asarray(context, dtype=np.float64).reshape(-1)
        if c.shape != (d,) or not np.isfinite(c).all():
            raise ValueError(f"context has shape {c.shape}; expected ({d},) finite")
        return np.broadcast_to(c, (len(candidates.ids), d)).copy()

    def _scores(self, rows, candidates, draws, rng, exploration_scale):
        idx = self.arm_rows(list(candidates.ids))
        x = rows[0]
        mean = self.mu[idx] @ x
        var = np.einsum("i,kij,j->k", x, self.A_inv[idx], x)
        sd = exploration_scale * self.config.exploration * np.sqrt(np.maximum(var, 0.0))
        return mean[:, None] + sd[:, None] * rng.standard_normal((len(idx), draws)), mean

    def _learn(self, arms, x, r, w) -> None:
        d = self.config.context_dim
        if x is None or x.shape[1] != d:
            raise ValueError(f"disjoint_ts learns from context rows of dimension {d}")
        rows = self.arm_rows(arms)
        x = x * w[:, None]
        with self._lock:
            for arm, row, reward in zip(rows.tolist(), x, r.tolist()):
                self.A[arm] += np.outer(row, row)
                self.b[arm] += reward * row
                if self.since_refresh[arm] + 1 >= self.config.refresh_every:
                    self.A_inv[arm] = np.linalg.inv(self.A[arm])
                    self.since_refresh[arm] = 0
                else:
                    ax = self.A_inv[arm] @ row
                    self.A_inv[arm] -= np.outer(ax, ax) / (1.0 + row @ ax)
                    self.since_refresh[arm] += 1
                self.mu[arm] = self.A_inv[arm] @ self.b[arm]
            self.n_updates += len(r)

    def state_dict(self) -> dict:
        with self._lock:
            return {"kind": self.name, "arms": self._arm_list(), "A": self.A.tolist(), "b": self.b.tolist(),
                    "n_updates": self.n_updates}

    def load_state_dict(self, state: dict) -> None:
        require_state(state, self.name, "arms", "A", "b", "n_updates")
        arms = self._checked_arms(state)
        d = self.config.context_dim
        a = np.asarray(state["A"], dtype=np.float64).reshape(-1, d, d) if arms else np.zeros((0, d, d))
        b = np.asarray(state["b"], dtype=np.float64).reshape(-1, d) if arms else np.zeros((0, d))
        if a.shape != (len(arms), d, d) or b.shape != (len(arms), d) or not np.isfinite(a).all():
            raise ValueError(f"state must hold one ({d}, {d}) precision and ({d},) vector per arm")
        with self._lock:
            self.index = {arm: i for i, arm in enumerate(arms)}
            self.A, self.b, self.n_updates = a, b, int(state["n_updates"])
            self.A_inv = np.linalg.inv(a) if len(arms) else np.zeros((0, d, d))
            self.mu = np.einsum("kij,kj->ki", self.A_inv, b)
            self.since_refresh = np.zeros(len(arms), dtype=np.int64)
