"""A LinearTS whose sufficient statistics are durable in the FeatureStore.

The document ``models/<name>`` holds the posterior (A, b), the log position of the last
reward event applied (so a redelivered batch is not learned twice) and, for explicit
feedback, markers ``feedback/<decision_id>:<item_id>`` written in the same atomic
``put_many`` (so a repeated feedback call is not learned twice). Every
``snapshot_every`` updates a versioned copy goes to the ModelStore.
"""

from __future__ import annotations

import threading

import numpy as np
import orjson

from relevo.bandits.linear_ts import LinearTS
from relevo.storage.protocols import FeatureStore, ModelStore

MODELS_NS = "models"
FEEDBACK_NS = "feedback"


class PersistedPolicy:
    def __init__(
        self,
        policy: LinearTS,
        features: FeatureStore,
        models: ModelStore,
        *,
        name: str = "linear_ts",
        snapshot_every: int = 1000,
    ):
        self.policy = policy
        self.features = features
        self.models = models
        self.name = name
        self.snapshot_every = snapshot_every
        self.applied_through = 0
        self.version = 0
        self._since_snapshot = 0
        self.lock = threading.Lock()

    def load(self) -> None:
        raw = self.features.get(MODELS_NS, self.name)
        if raw is None:
            return
        doc = orjson.loads(raw)
        self.policy.load_state_dict(doc["state"])
        self.applied_through = int(doc["applied_through"])
        self.version = int(doc.get("version", 0))

    def doc_row(self) -> tuple[str, str, bytes]:
        doc = {"state": self.policy.state_dict(), "applied_through": self.applied_through, "version": self.version}
        return (MODELS_NS, self.name, orjson.dumps(doc))

    def learn(self, features: np.ndarray, rewards: np.ndarray, applied_through: int | None = None) -> None:
        """Update in memory (caller holds ``lock`` and persists ``doc_row()`` atomically)."""
        if len(rewards):
            self.policy.update(features, rewards)
            self.version += 1
            self._since_snapshot += len(rewards)
        if applied_through is not None:
            self.applied_through = max(self.applied_through, applied_through)

    def maybe_snapshot(self, force: bool = False) -> None:
        if self._since_snapshot and (force or self._since_snapshot >= self.snapshot_every):
            self.models.put(self.name, self.doc_row()[2])
            self._since_snapshot = 0

    def feedback(self, marker: str, features: np.ndarray, reward: float) -> bool:
        """Learn one explicit reward exactly once per ``marker``; False if already learned."""
        with self.lock:
            if self.features.get(FEEDBACK_NS, marker) is not None:
                return False
            self.learn(features.reshape(1, -1), np.array([reward]))
            self.features.put_many([self.doc_row(), (FEEDBACK_NS, marker, b"1")])
            self.maybe_snapshot()
            return True
