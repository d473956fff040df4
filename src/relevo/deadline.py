"""Deadlines and the cost estimates the orchestrator checks them against."""

from __future__ import annotations

import math
import threading
import time


class Deadline:
    """A request's budget, measured from its start (perf_counter)."""

    __slots__ = ("start", "end", "budget_ms")

    def __init__(self, budget_ms: float, start: float | None = None):
        self.start = time.perf_counter() if start is None else start
        self.budget_ms = budget_ms
        self.end = self.start + budget_ms / 1000.0

    def remaining_ms(self) -> float:
        return (self.end - time.perf_counter()) * 1000.0

    def fits(self, cost_ms: float) -> bool:
        return cost_ms <= self.remaining_ms()

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.start) * 1000.0


class CostModel:
    """Expected cost of each tier and stage: exponentially weighted mean + 2 sd of its
    recent latencies (about the last 50 runs), from a prior until measured."""

    def __init__(self, priors_ms: dict[str, float], alpha: float = 0.04):
        self.alpha = alpha
        self._prior = dict(priors_ms)
        self._mean = dict(priors_ms)
        self._var = {k: (0.25 * v) ** 2 for k, v in priors_ms.items()}
        self._lock = threading.Lock()

    def observe(self, key: str, ms: float) -> None:
        with self._lock:
            mean = self._mean.get(key, ms)
            var = self._var.get(key, 0.0)
            delta = ms - mean
            mean += self.alpha * delta
            self._mean[key] = mean
            self._var[key] = (1 - self.alpha) * (var + self.alpha * delta * delta)

    def skipped(self, key: str) -> None:
        """A run skipped because its estimate did not fit: the estimate moves back toward
        the prior, so one slow outlier cannot keep a stage switched off for good (the stage
        is tried again, and re-measured, after about 1 / alpha skips at most)."""
        with self._lock:
            prior = self._prior.get(key, 0.0)
            self._mean[key] = self._mean.get(key, prior) + self.alpha * (prior - self._mean.get(key, prior))
            self._var[key] = (1 - self.alpha) * self._var.get(key, 0.0) + self.alpha * (0.25 * prior) ** 2

    def expected_ms(self, key: str) -> float:
        return self._mean.get(key, 0.0) + 2.0 * math.sqrt(self._var.get(key, 0.0))

    def snapshot(self) -> dict[str, float]:
        return {k: round(self.expected_ms(k), 3) for k in self._mean}
