"""Beta-Bernoulli Thompson Sampling (non-contextual): one Beta(alpha, beta) per arm.

Used by the edge tier and as a baseline. Rewards are in [0, 1] (a fractional reward
counts as that share of a success). With examination weight e_k for the position an
item was shown at, an observation adds r to alpha and e_k (1 - r) to beta: a miss at a
rarely-examined position is weak evidence against the item (position-based model).
Arms are keyed by id; an unseen arm starts at the prior. ``decay`` < 1 discounts old
evidence on every update (for drifting rewards); 1.0 keeps it all.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from relevo.bandits.base import ArmRows, Candidates, PositionModel, SamplingPolicy, require_state


@dataclass(frozen=True, slots=True)
class BetaTSConfig:
    prior_alpha: float = 1.0
    prior_beta: float = 1.0
    propensity_samples: int = 200
    decay: float = 1.0
    examination: tuple[float, ...] = (1.0,)

    def __post_init__(self) -> None:
        if self.prior_alpha <= 0 or self.prior_beta <= 0:
            raise ValueError("prior_alpha and prior_beta must be > 0")
        if not 0.0 < self.decay <= 1.0 or self.propensity_samples < 0:
            raise ValueError("decay must be in (0, 1] and propensity_samples >= 0")


class BetaTS(ArmRows, SamplingPolicy):
    name = "beta_ts"

    def __init__(self, config: BetaTSConfig | None = None):
        self.config = config or BetaTSConfig()
        self.propensity_samples = self.config.propensity_samples
        self.positions = PositionModel(self.config.examination)
        self.index: dict[str, int] = {}
        self.alpha = np.zeros(0)
        self.beta = np.zeros(0)
        self.n_updates = 0
        self._lock = threading.Lock()

    def _grow(self, k: int) -> None:
        self.alpha = np.concatenate([self.alpha, np.full(k, self.config.prior_alpha)])
        self.beta = np.concatenate([self.beta, np.full(k, self.config.prior_beta)])

    def reset_arm(self, arm: str) -> None:
        """Forget an arm's evidence (the arm was replaced by a new one under the same id)."""
        row = self.arm_rows([arm])[0]
        with self._lock:
            self.alpha[row], self.beta[row] = self.config.prior_alpha, self.config.prior_beta

    def means(self, ids) -> np.ndarray:
        rows = self.arm_rows(ids)
        return self.alpha[rows] / (self.alpha[rows] + self.beta[rows])

    def _rows(self, context, candidates: Candidates) -> np.ndarray:
        if context is not None and np.asarray(context).size:
            raise ValueError("beta_ts is not contextual; pass context=None")
        return np.zeros((len(candidates.ids), 0))

    def _scores(self, rows, candidates, draws, rng, exploration_scale):
        idx = self.arm_rows(list(candidates.ids))
        a, b = self.alpha[idx], self.beta[idx]
        mean = a / (a + b)
        sampled = rng.beta(a[:, None], b[:, None], size=(len(idx), draws))
        if exploration_scale != 1.0:  # shrink (or widen) the draws around the mean
            sampled = mean[:, None] + exploration_scale * (sampled - mean[:, None])
        return sampled, mean

    def _learn(self, arms, x, r, w) -> None:
        if ((r < 0) | (r > 1)).any():
            raise ValueError("beta_ts rewards must be in [0, 1]")
        rows = self.arm_rows(arms)
        with self._lock:
            if self.config.decay < 1.0:
                keep = self.config.decay ** len(r)
                self.alpha = self.config.prior_alpha + keep * (self.alpha - self.config.prior_alpha)
                self.beta = self.config.prior_beta + keep * (self.beta - self.config.prior_beta)
            np.add.at(self.alpha, rows, r)
            np.add.at(self.beta, rows, w * (1.0 - r))
            self.n_updates += len(r)

    def state_dict(self) -> dict:
        with self._lock:
            return {"kind": self.name, "arms": self._arm_list(), "alpha": self.alpha.tolist(), "beta": self.beta.tolist(),
                    "n_updates": self.n_updates}

    def load_state_dict(self, state: dict) -> None:
        require_state(state, self.name, "arms", "alpha", "beta", "n_updates")
        arms = self._checked_arms(state)
        a = np.asarray(state["alpha"], dtype=np.float64)
        b = np.asarray(state["beta"], dtype=np.float64)
        if a.shape != (len(arms),) or b.shape != (len(arms),) or (a <= 0).any() or (b <= 0).any():
            raise ValueError("state must hold one positive alpha and beta per arm")
        with self._lock:
            self.index = {arm: i for i, arm in enumerate(arms)}
            self.alpha, self.beta, self.n_updates = a, b, int(state["n_updates"])
