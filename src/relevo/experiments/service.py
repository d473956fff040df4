"""Running experiments inside the engine: definitions and per-variant evidence kept in the
FeatureStore, users assigned by hash, exposures and rewards recorded as they happen.

One experiment runs at a time over ``POST /v1/recommendations`` (the newest running one;
creating another while one runs is refused). A variant's ``config`` may set
``exploration_scale`` (>= 0; 0 serves the posterior-mean ranking) and ``candidates`` (ANN
neighbours retrieved, 10..5000): what the streaming tier does differently for its users.
Exposure = one decision; the metric is the reward of each shown item once joined (click,
purchase... or the default reward when the attribution window closes), so trials count
shown items. The split in force is recomputed from the evidence at most every
``refresh_s`` seconds for adaptive allocation, and the expected share it implies is
accumulated for the sample-ratio-mismatch check.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import orjson

from relevo.errors import Conflict, NotFound, ValidationError
from relevo.experiments import allocation, analysis
from relevo.experiments.design import Experiment
from relevo.records import Decision
from relevo.storage.protocols import FeatureStore

EXPERIMENTS_NS = "experiments"
VARIANT_KEYS = {"exploration_scale": (float, 0.0, 100.0), "candidates": (int, 10, 5000)}


class ExperimentService:
    def __init__(self, features: FeatureStore, *, refresh_s: float = 5.0, seed: int = 0):
        self.features = features
        self.refresh_s = refresh_s
        self.seed = seed
        self._lock = threading.Lock()
        self._docs: dict[str, dict[str, Any]] = {}
        for key, raw in features.scan(EXPERIMENTS_NS):
            self._docs[key] = orjson.loads(raw)
        self._probs: dict[str, tuple[float, np.ndarray]] = {}
        self._running = self._find_running()

    # -- definitions -----------------------------------------------------------------------

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        try:
            exp = Experiment.from_dict(body)
        except ValueError as exc:
            raise ValidationError(str(exc), field=str(exc).split(":")[0]) from None
        for i, variant in enumerate(exp.variants):
            _check_config(variant.config, i)
        with self._lock:
            if exp.id in self._docs:
                raise Conflict(f"experiment {exp.id!r} exists", field="id")
            if self.running() is not None:
                raise Conflict(f"experiment {self.running().id!r} is running; stop it first", field="id")
            doc = {"experiment": exp.to_dict(), "stats": [s.to_dict() for s in analysis.empty_stats(exp)],
                   "expected": [0.0] * len(exp.variants)}
            self._save(exp.id, doc, definition=True)
        return self.describe(exp.id)

    def stop(self, experiment_id: str) -> dict[str, Any]:
        with self._lock:
            doc = self._doc(experiment_id)
            doc["experiment"] = Experiment.from_dict(doc["experiment"]).stopped().to_dict()
            self._save(experiment_id, doc, definition=True)
        return self.describe(experiment_id)

    def running(self) -> Experiment | None:
        return self._running

    def _find_running(self) -> Experiment | None:
        for doc in self._docs.values():
            if doc["experiment"].get("status") == "running":
                return Experiment.from_dict(doc["experiment"])
        return None

    def describe(self, experiment_id: str) -> dict[str, Any]:
        doc = self._doc(experiment_id)
        exp = Experiment.from_dict(doc["experiment"])
        probs = self._probabilities(exp, doc)
        return {**exp.to_dict(), "allocation_probabilities": dict(zip(exp.names, np.round(probs, 6).tolist())),
                "exposures": {s["name"]: s["exposures"] for s in doc["stats"]}}

    def results(self, experiment_id: str) -> dict[str, Any]:
        doc = self._doc(experiment_id)
        exp = Experiment.from_dict(doc["experiment"])
        stats = [analysis.VariantStats.from_dict(s) for s in doc["stats"]]
        expected = np.asarray(doc["expected"]) if exp.adaptive and sum(doc["expected"]) > 0 else None
        return analysis.results(exp, stats, expected, seed=self.seed).to_dict()

    # -- serving ------------------------------------------------------------------------------

    def assign(self, user_id: str) -> tuple[Experiment, str, dict[str, Any], float] | None:
        """(experiment, variant, its config, assignment probability) for this user, or None."""
        exp = self.running()
        if exp is None:
            return None
        with self._lock:
            doc = self._docs[exp.id]
            probs = self._probabilities(exp, doc)
        name = allocation.assign(exp, user_id, probs)
        k = exp.index(name)
        return exp, name, exp.variants[k].config, float(probs[k])

    def expose(self, exp: Experiment, variant: str, latency_ms: float) -> None:
        with self._lock:
            doc = self._docs.get(exp.id)
            if doc is None:
                return
            k = exp.index(variant)
            stats = analysis.VariantStats.from_dict(doc["stats"][k]).expose(1)
            doc["stats"][k] = stats.observe_guardrail("latency_ms", [latency_ms]).to_dict()
            probs = self._probabilities(exp, doc)
            doc["expected"] = (np.asarray(doc["expected"]) + probs).tolist()
            self._save(exp.id, doc)

    def on_reward(self, decision: Decision, position: int, reward: float) -> None:
        if decision.experiment is None or decision.variant is None:
            return
        with self._lock:
            doc = self._docs.get(decision.experiment)
            if doc is None:
                return
            exp = Experiment.from_dict(doc["experiment"])
            if decision.variant not in exp.names:
                return
            k = exp.index(decision.variant)
            doc["stats"][k] = analysis.VariantStats.from_dict(doc["stats"][k]).observe([reward]).to_dict()
            self._save(exp.id, doc)

    # -- internals ------------------------------------------------------------------------------

    def _probabilities(self, exp: Experiment, doc: dict[str, Any]) -> np.ndarray:
        cached = self._probs.get(exp.id)
        now = time.monotonic()
        if cached is not None and (not exp.adaptive or now - cached[0] < self.refresh_s):
            return cached[1]
        stats = [analysis.VariantStats.from_dict(s) for s in doc["stats"]]
        probs = allocation.allocation_probabilities(exp, stats, self.seed)
        self._probs[exp.id] = (now, probs)
        return probs

    def _doc(self, experiment_id: str) -> dict[str, Any]:
        doc = self._docs.get(experiment_id)
        if doc is None:
            raise NotFound(f"no experiment {experiment_id!r}", field="experiment_id")
        return doc

    def _save(self, experiment_id: str, doc: dict[str, Any], *, definition: bool = False) -> None:
        """Persist ``doc``; ``definition``: the experiment itself changed (created, stopped)."""
        self._docs[experiment_id] = doc
        self.features.put(EXPERIMENTS_NS, experiment_id, orjson.dumps(doc))
        if definition:
            self._probs.pop(experiment_id, None)
            self._running = self._find_running()


def _check_config(config: dict[str, Any], i: int) -> None:
    for key, value in config.items():
        if key not in VARIANT_KEYS:
            raise ValidationError(f"variants[{i}].config.{key}: unknown setting (known: {', '.join(VARIANT_KEYS)})",
                                  field=f"variants[{i}].config.{key}")
        kind, low, high = VARIANT_KEYS[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high \
                or (kind is int and int(value) != value):
            raise ValidationError(f"variants[{i}].config.{key}: must be a {kind.__name__} in [{low}, {high}]",
                                  field=f"variants[{i}].config.{key}")
