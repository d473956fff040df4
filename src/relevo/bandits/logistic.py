"""Logistic Thompson Sampling with a diagonal Laplace posterior (Chapelle & Li 2011, Alg. 3).

For binary rewards: P(r = 1 | x) = sigmoid(x . w). Each weight has a Gaussian posterior
N(m_i, q_i^-1). A batch of rows (X, y) updates it by
    w* = argmin_w  1/2 sum_i q_i (w_i - m_i)^2 + sum_j c_j log(1 + exp(-y'_j x_j . w))
(y' = 2y - 1, c_j the row's weight, e.g. its position's examination probability),
solved by Newton's method with the full Hessian; then m = w* and
    q_i <- q_i + sum_j c_j x_ji^2 p_j (1 - p_j),   p_j = sigmoid(x_j . w*).
Draws are w ~ N(m, v^2 diag(1 / q)); items are ranked by the sampled logit x . w (the
same order as the sampled probability). Candidate rows are the same joint features as
``linear_ts`` (item, optionally context (x) item).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
from scipy.special import expit

from relevo.bandits.base import Candidates, PositionModel, SamplingPolicy, require_state
from relevo.bandits.linear_ts import joint_rows


@dataclass(frozen=True, slots=True)
class LogisticTSConfig:
    dim: int
    context_dim: int = 0
    prior_mean: tuple[float, ...] | None = None
    lam: float = 1.0  # prior precision q_i
    exploration: float = 1.0  # v (Chapelle & Li found v < 1 often better)
    propensity_samples: int = 200
    newton_steps: int = 20
    examination: tuple[float, ...] = (1.0,)

    def __post_init__(self) -> None:
        if self.dim < 1 or self.context_dim < 0 or self.lam <= 0 or self.exploration < 0:
            raise ValueError("dim >= 1, context_dim >= 0, lam > 0 and exploration >= 0 are required")
        if self.propensity_samples < 0 or self.newton_steps < 1:
            raise ValueError("propensity_samples >= 0 and newton_steps >= 1 are required")

    @property
    def joint_dim(self) -> int:
        return self.dim * (1 + self.context_dim)


def newton_step(q: np.ndarray, x: np.ndarray, c: np.ndarray, grad: np.ndarray) -> np.ndarray:
    """H^-1 grad for H = diag(q) + X^T diag(c) X, X of shape (m, d).

    With fewer rows than dimensions (the usual online case, m = 1) the Woodbury identity
    needs only an m x m solve: H^-1 = D^-1 - D^-1 X^T (C^-1 + X D^-1 X^T)^-1 X D^-1, written
    with C^(1/2) so rows whose weight is 0 are harmless. Otherwise the d x d system is solved."""
    m, d = x.shape
    if m >= d:
        return np.linalg.solve(np.diag(q) + (x * c[:, None]).T @ x, grad)
    s = np.sqrt(np.maximum(c, 0.0))
    xs = x * s[:, None]  # C^(1/2) X
    dg = grad / q  # D^-1 grad
    xd = xs / q  # C^(1/2) X D^-1
    small = np.eye(m) + xd @ xs.T  # I + C^(1/2) X D^-1 X^T C^(1/2)
    return dg - xd.T @ np.linalg.solve(small, xs @ dg)


class LogisticTS(SamplingPolicy):
    name = "logistic_ts"

    def __init__(self, config: LogisticTSConfig):
        self.config = config
        self.propensity_samples = config.propensity_samples
        self.positions = PositionModel(config.examination)
        d = config.joint_dim
        m0 = np.zeros(d) if config.prior_mean is None else np.asarray(config.prior_mean, dtype=np.float64)
        if m0.shape != (d,):
            raise ValueError(f"prior_mean has shape {m0.shape}, expected ({d},)")
        self.m = m0.copy()
        self.q = np.full(d, config.lam)
        self.n_updates = 0
        self._lock = threading.Lock()

    def _rows(self, context, candidates: Candidates) -> np.ndarray:
        if candidates.features is None or candidates.features.shape[1] != self.config.dim:
            raise ValueError(f"logistic_ts needs candidate features with {self.config.dim} columns")
        return joint_rows(context, candidates.features, self.config.context_dim)

    def _scores(self, rows, candidates, draws, rng, exploration_scale):
        m, q = self.m, self.q  # replaced (never mutated) by updates
        z = rng.standard_normal((draws, len(m)))
        w = m + (exploration_scale * self.config.exploration) * z / np.sqrt(q)
        return rows @ w.T, rows @ m

    def predict(self, rows: np.ndarray) -> np.ndarray:
        """Posterior-mean click probability of rows (K, d)."""
        return expit(np.asarray(rows, dtype=np.float64) @ self.m)

    def _learn(self, arms, x, r, w) -> None:
        d = self.config.joint_dim
        if x is None or x.shape[1] != d:
            raise ValueError(f"logistic_ts learns from rows of dimension {d}")
        if not np.isin(r, (0.0, 1.0)).all():
            raise ValueError("logistic_ts rewards must be 0 or 1")
        with self._lock:
            m, q = self.m, self.q
            wt = m.copy()
            for _ in range(self.config.newton_steps):
                p = expit(x @ wt)
                grad = q * (wt - m) - x.T @ (w * (r - p))
                step = newton_step(q, x, w * p * (1 - p), grad)
                wt = wt - step
                if np.abs(step).max() < 1e-8:
                    break
            if not np.isfinite(wt).all():
                raise ValueError("logistic_ts update diverged; features may be badly scaled")
            p = expit(x @ wt)
            self.q = q + (x * x * (w * p * (1 - p))[:, None]).sum(axis=0)
            self.m = wt
            self.n_updates += len(r)

    def state_dict(self) -> dict:
        with self._lock:
            return {"kind": self.name, "m": self.m.tolist(), "q": self.q.tolist(), "n_updates": self.n_updates}

    def load_state_dict(self, state: dict) -> None:
        require_state(state, self.name, "m", "q", "n_updates")
        m = np.asarray(state["m"], dtype=np.float64)
        q = np.asarray(state["q"], dtype=np.float64)
        d = self.config.joint_dim
        if m.shape != (d,) or q.shape != (d,) or (q <= 0).any() or not np.isfinite(m).all():
            raise ValueError(f"state must hold m and positive q of shape ({d},)")
        with self._lock:
            self.m, self.q, self.n_updates = m, q, int(state["n_updates"])
