"""Linear Thompson Sampling over a shared feature vector, with Monte-Carlo propensities.

Model: reward r = x . theta + noise, prior theta ~ N(mu0, v^2 / lam * I). The posterior
after rows X (m, d) and rewards r (m,) is N(mu, v^2 A^-1) with A = lam I + X^T X and
mu = A^-1 (lam mu0 + X^T r). A slate is the top-n of X_cand @ theta~ for one posterior
draw theta~ (Agrawal & Goyal 2013). The prior mean encodes a sensible starting ranking
(similarity first), so the policy is useful before any reward arrives.

Propensity of candidate i (probability that it appears in the slate):
    p_i = (1 + c_i) / (S + 1),   c_i = #{s <= S : i in top_n(X theta_s)}
with S fresh posterior draws besides the one that chose the slate. The served draw is
counted once so that a shown item never gets p = 0; the bias is at most 1 / (S + 1) and
the standard error about sqrt(p (1 - p) / S).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class LinTSConfig:
    dim: int
    prior_mean: tuple[float, ...] | None = None
    lam: float = 1.0
    exploration: float = 0.3  # v: scales the posterior covariance of the draws
    propensity_samples: int = 200


@dataclass(slots=True)
class Slate:
    """``order``: candidate rows shown, best first, shape (n,). ``scores``: the sampled
    scores of those rows. ``propensity``: inclusion probabilities, shape (n,).
    ``explored``: True where the row is not in the greedy (posterior-mean) top-n."""

    order: np.ndarray
    scores: np.ndarray
    propensity: np.ndarray
    explored: np.ndarray


def top_n(scores: np.ndarray, n: int) -> np.ndarray:
    """Indices of the n largest entries along the last axis, best first (unsorted beyond n)."""
    k = scores.shape[-1]
    n = min(n, k)
    if n == k:
        part = np.broadcast_to(np.arange(k), scores.shape)
    else:
        part = np.argpartition(-scores, n - 1, axis=-1)[..., :n]
    picked = np.take_along_axis(scores, part, axis=-1)
    order = np.argsort(-picked, axis=-1, kind="stable")
    return np.take_along_axis(part, order, axis=-1)


class LinearTS:
    name = "linear_ts"

    def __init__(self, config: LinTSConfig):
        self.config = config
        d = config.dim
        mu0 = np.zeros(d) if config.prior_mean is None else np.asarray(config.prior_mean, dtype=np.float64)
        if mu0.shape != (d,):
            raise ValueError(f"prior_mean has shape {mu0.shape}, expected ({d},)")
        self._mu0 = mu0
        self.A = config.lam * np.eye(d)
        self.b = config.lam * mu0
        self.n_updates = 0
        self._lock = threading.Lock()
        self._refresh()

    def _refresh(self) -> None:
        cov = np.linalg.inv(self.A)
        mu = cov @ self.b
        chol = np.linalg.cholesky((cov + cov.T) / 2 + 1e-12 * np.eye(self.config.dim))
        self._posterior = (mu, chol)  # swapped atomically; readers never see half an update

    @property
    def mean(self) -> np.ndarray:
        return self._posterior[0].copy()

    def sample_thetas(self, rng: np.random.Generator, s: int, exploration_scale: float = 1.0) -> np.ndarray:
        """``s`` posterior draws, shape (s, d)."""
        mu, chol = self._posterior
        z = rng.standard_normal((s, self.config.dim))
        return mu + exploration_scale * self.config.exploration * z @ chol.T

    def select(
        self,
        features: np.ndarray,
        n: int,
        rng: np.random.Generator,
        *,
        exploration_scale: float = 1.0,
        bonus: np.ndarray | None = None,
    ) -> Slate:
        """Choose a slate of n rows of ``features`` (shape (K, d), float).

        ``exploration_scale`` multiplies the posterior spread of the draws; ``bonus`` (K,)
        is added to every draw's scores (e.g. emotion-aware re-ranking), so the
        propensities describe the adjusted policy exactly."""
        x = np.asarray(features, dtype=np.float64)
        k = x.shape[0]
        n = min(n, k)
        if n == 0:
            empty = np.zeros(0)
            return Slate(empty.astype(np.int64), empty, empty, empty.astype(bool))
        mu, _ = self._posterior
        draws = self.sample_thetas(rng, 1 + self.config.propensity_samples, exploration_scale)
        scores = x @ draws.T  # (K, S+1)
        mean_scores = x @ mu
        if bonus is not None:
            scores += np.asarray(bonus, dtype=np.float64)[:, None]
            mean_scores = mean_scores + bonus
        chosen = top_n(scores[:, 0], n)
        s = self.config.propensity_samples
        counts = np.zeros(k)
        if s:
            tops = top_n(scores[:, 1:].T, n)  # (S, n)
            counts = np.bincount(tops.ravel(), minlength=k).astype(np.float64)
        propensity = (1.0 + counts[chosen]) / (s + 1.0)
        greedy = set(top_n(mean_scores, n).tolist())
        explored = np.array([i not in greedy for i in chosen.tolist()], dtype=bool)
        return Slate(chosen, scores[chosen, 0], propensity, explored)

    def update(self, features: np.ndarray, rewards: np.ndarray) -> None:
        """Bayesian update from rows (m, d) and rewards (m,)."""
        x = np.atleast_2d(np.asarray(features, dtype=np.float64))
        r = np.asarray(rewards, dtype=np.float64).reshape(-1)
        if x.shape != (r.shape[0], self.config.dim):
            raise ValueError(f"features {x.shape} and rewards {r.shape} do not match dim {self.config.dim}")
        if not (np.isfinite(x).all() and np.isfinite(r).all()):
            raise ValueError("features and rewards must be finite")
        with self._lock:
            self.A += x.T @ x
            self.b += x.T @ r
            self.n_updates += len(r)
            self._refresh()

    def state_dict(self) -> dict:
        with self._lock:
            return {"A": self.A.tolist(), "b": self.b.tolist(), "n_updates": self.n_updates}

    def load_state_dict(self, state: dict) -> None:
        a = np.asarray(state["A"], dtype=np.float64)
        b = np.asarray(state["b"], dtype=np.float64)
        d = self.config.dim
        if a.shape != (d, d) or b.shape != (d,):
            raise ValueError(f"state has shapes {a.shape}, {b.shape}; expected ({d}, {d}), ({d},)")
        with self._lock:
            self.A, self.b, self.n_updates = a, b, int(state["n_updates"])
            self._refresh()
