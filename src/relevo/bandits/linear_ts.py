"""Linear Thompson Sampling with one shared model over context x item features.

Model: r = phi(context, item) . theta + noise, prior theta ~ N(mu0, v^2 / lam I), where
phi is the item's features, followed (when ``context_dim`` > 0) by the flattened outer
product context (x) item, so the context changes which items win (d = d_item (1 + d_ctx),
up to a few hundred). After rows X (m, d) with rewards r the posterior is N(mu, v^2 A^-1),
A = lam I + X^T X, mu = A^-1 (lam mu0 + X^T r) (Agrawal & Goyal 2013).

Updates:
- one row: Sherman-Morrison rank-1 update of the cached inverse A^-1, O(d^2);
- a batch of rows: A and b accumulated, A^-1 recomputed from A through its Cholesky
  factor, O(d^3) once for the batch.
The precision A is always accumulated exactly; every ``refresh_every`` single-row updates
the inverse is recomputed from it (so rank-1 round-off cannot drift) and the Cholesky
factor of the covariance, used to draw theta, is refreshed. Between refreshes draws use
the last factor with the current mean (a slightly wider, never narrower, spread).

Readers take ``(mu, chol)`` as one tuple that updates swap atomically.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
from scipy.linalg.blas import dger

from relevo.bandits.base import Candidates, PositionModel, SamplingPolicy, require_state


@dataclass(frozen=True, slots=True)
class LinTSConfig:
    dim: int  # item feature dimension
    context_dim: int = 0  # > 0: hybrid rows [item, context (x) item]
    prior_mean: tuple[float, ...] | None = None  # over the joint row (length joint_dim)
    lam: float = 1.0
    exploration: float = 0.3  # v: scales the posterior spread of the draws
    propensity_samples: int = 200
    refresh_every: int = 64
    examination: tuple[float, ...] = (1.0,)

    def __post_init__(self) -> None:
        if self.dim < 1 or self.context_dim < 0:
            raise ValueError("dim must be >= 1 and context_dim >= 0")
        if self.joint_dim > 2048:
            raise ValueError(f"joint dimension {self.joint_dim} is too large for a dense posterior (max 2048)")
        if self.lam <= 0 or self.exploration < 0 or self.propensity_samples < 0 or self.refresh_every < 1:
            raise ValueError("lam must be > 0, exploration and propensity_samples >= 0, refresh_every >= 1")

    @property
    def joint_dim(self) -> int:
        return self.dim * (1 + self.context_dim)


def joint_rows(context: np.ndarray | None, items: np.ndarray, context_dim: int) -> np.ndarray:
    """phi for K items: (K, d_item) -> (K, d_item (1 + d_ctx))."""
    if context_dim == 0:
        if context is not None and np.asarray(context).size:
            raise ValueError("this policy has no context features (context_dim = 0); pass context=None")
        return items
    if context is None:
        raise ValueError(f"context features of shape ({context_dim},) are required")
    c = np.asarray(context, dtype=np.float64).reshape(-1)
    if c.shape != (context_dim,) or not np.isfinite(c).all():
        raise ValueError(f"context has shape {c.shape}; expected ({context_dim},) finite")
    inter = (items[:, None, :] * c[None, :, None]).reshape(items.shape[0], -1)
    return np.hstack([items, inter])


class LinearTS(SamplingPolicy):
    name = "linear_ts"

    def __init__(self, config: LinTSConfig):
        self.config = config
        self.propensity_samples = config.propensity_samples
        self.positions = PositionModel(config.examination)
        d = config.joint_dim
        mu0 = np.zeros(d) if config.prior_mean is None else np.asarray(config.prior_mean, dtype=np.float64)
        if mu0.shape != (d,):
            raise ValueError(f"prior_mean has shape {mu0.shape}, expected ({d},)")
        self._mu0 = mu0
        self.A = config.lam * np.eye(d)
        self.b = config.lam * mu0
        self.n_updates = 0
        self._since_refresh = 0
        self._lock = threading.Lock()
        self._refresh()

    # -- posterior -----------------------------------------------------------------------

    def _refresh(self) -> None:
        """A^-1 and the covariance's Cholesky factor recomputed from the precision A."""
        d = self.config.joint_dim
        chol_a = np.linalg.cholesky(self.A)
        inv_l = np.linalg.solve(chol_a, np.eye(d))  # L^-1
        self.A_inv = inv_l.T @ inv_l
        mu = self.A_inv @ self.b
        chol = np.linalg.cholesky((self.A_inv + self.A_inv.T) / 2 + 1e-12 * np.eye(d))
        self._since_refresh = 0
        self._chol32 = np.ascontiguousarray(chol.T, dtype=np.float32)  # draws are float32 (speed)
        self._posterior = (mu, chol)

    @property
    def mean(self) -> np.ndarray:
        return self._posterior[0].copy()

    def sample_thetas(self, rng: np.random.Generator, s: int, exploration_scale: float = 1.0) -> np.ndarray:
        """``s`` posterior draws, shape (s, d)."""
        mu, chol = self._posterior
        z = rng.standard_normal((s, self.config.joint_dim))
        return mu + (exploration_scale * self.config.exploration) * (z @ chol.T)

    # -- SamplingPolicy hooks --------------------------------------------------------------

    def _rows(self, context, candidates: Candidates) -> np.ndarray:
        if candidates.features is None:
            raise ValueError("linear_ts needs candidate features")
        if candidates.features.shape[1] != self.config.dim:
            raise ValueError(f"candidate features have {candidates.features.shape[1]} columns; expected {self.config.dim}")
        return joint_rows(context, candidates.features, self.config.context_dim)

    def _scores(self, rows, candidates, draws, rng, exploration_scale):
        """Sampled scores (K, draws), computed draw-major in float32 (the matrix product
        and the per-draw ranking dominate a decision), and posterior-mean scores (K,)."""
        mu, _ = self._posterior
        chol_t = self._chol32
        z = rng.standard_normal((draws, self.config.joint_dim), dtype=np.float32)
        thetas = mu.astype(np.float32) + np.float32(exploration_scale * self.config.exploration) * (z @ chol_t)
        return (thetas @ rows.astype(np.float32).T).T, rows @ mu

    def _learn(self, arms, x, r, w) -> None:
        d = self.config.joint_dim
        if x is None or x.shape[1] != d:
            raise ValueError(f"linear_ts learns from rows of dimension {d}; got {None if x is None else x.shape}")
        x = x * w[:, None]  # position-based model: E[r] = e_k x.theta
        with self._lock:
            self.n_updates += len(r)
            if len(r) == 1 and self._since_refresh + 1 < self.config.refresh_every:
                # rank-1 updates in place (BLAS ger on the Fortran view of each symmetric matrix)
                row = x[0]
                self.A = dger(1.0, row, row, a=self.A.T, overwrite_a=True).T  # same array when contiguous
                self.b += r[0] * row
                ax = self.A_inv @ row
                self.A_inv = dger(-1.0 / (1.0 + row @ ax), ax, ax, a=self.A_inv.T, overwrite_a=True).T
                self._since_refresh += 1
                self._posterior = (self.A_inv @ self.b, self._posterior[1])
            else:
                self.A += x.T @ x
                self.b += x.T @ r
                self._refresh()

    # -- state -------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        with self._lock:
            return {"kind": self.name, "A": self.A.tolist(), "b": self.b.tolist(), "n_updates": self.n_updates}

    def load_state_dict(self, state: dict) -> None:
        require_state(state, self.name, "A", "b", "n_updates")
        a = np.asarray(state["A"], dtype=np.float64)
        b = np.asarray(state["b"], dtype=np.float64)
        d = self.config.joint_dim
        if a.shape != (d, d) or b.shape != (d,):
            raise ValueError(f"state has shapes {a.shape}, {b.shape}; expected ({d}, {d}), ({d},)")
        if not (np.isfinite(a).all() and np.isfinite(b).all()):
            raise ValueError("state holds non-finite values")
        with self._lock:
            self.A, self.b, self.n_updates = a, b, int(state["n_updates"])
            self._refresh()
