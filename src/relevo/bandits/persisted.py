"""A bandit policy whose learned state is durable in the FeatureStore.

The document ``models/<name>`` holds the policy's ``state_dict()``, a version counter and
``closed_through``: the creation time before which every decision's attribution window
has been closed by the RewardJoiner. The joiner writes that document in the same atomic
``put_many`` as its per-(decision, item) reward markers, so a reward is learned exactly
once however often it is redelivered. Every ``snapshot_every`` rewards a versioned copy
goes to the ModelStore.

Several processes may learn into the same posterior (stream workers, API workers taking
feedback): each write is guarded by ``models/<name>.token``, a random token replaced on
every commit, so a process whose copy is older than the stored one gets ``StaleWrite``,
reloads and joins again (optimistic concurrency: the sufficient statistics merge through
the store). Serving processes call ``refresh()`` to pick up what others learned.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager

import numpy as np
import orjson

from relevo.bandits.base import Policy
from relevo.storage.protocols import FeatureStore, ModelStore

MODELS_NS = "models"


class PersistedPolicy:
    def __init__(
        self,
        policy: Policy,
        features: FeatureStore,
        models: ModelStore,
        *,
        name: str | None = None,
        snapshot_every: int = 1000,
    ):
        self.policy = policy
        self.features = features
        self.models = models
        self.name = name or policy.name
        self.snapshot_every = snapshot_every
        self.closed_through = 0.0
        self.version = 0
        self._since_snapshot = 0
        self.lock = threading.Lock()
        self._initial = policy.state_dict()
        self.stale = False  # True: memory may hold uncommitted learning; reload before use
        self.token: bytes | None = None  # the guard as of the last load or commit

    @property
    def token_key(self) -> str:
        return f"{self.name}.token"

    def load(self) -> None:
        # the token first: a commit between the two reads leaves an old token with a newer
        # document, and the next guarded write then reloads (never the other way round)
        token = self.features.get(MODELS_NS, self.token_key)
        raw = self.features.get(MODELS_NS, self.name)
        self.token = token
        if raw is None:
            self.policy.load_state_dict(self._initial)
            self.closed_through, self.version = 0.0, 0
            return
        doc = orjson.loads(raw)
        self.policy.load_state_dict(doc["state"])
        self.closed_through = float(doc.get("closed_through", 0.0))
        self.version = int(doc.get("version", 0))

    def refresh(self) -> bool:
        """Reload if another process committed since (one small read); returns whether it did."""
        with self.lock:
            if self.features.get(MODELS_NS, self.token_key) == self.token:
                return False
            self.load()
            return True

    def commit(self, rows: list[tuple[str, str, bytes]]) -> None:
        """Write ``rows`` with the posterior document, if no other process committed since
        this copy was loaded (else ``StaleWrite``; ``transaction`` then reloads)."""
        token = os.urandom(12).hex().encode()
        self.features.put_many([*rows, self.doc_row(), (MODELS_NS, self.token_key, token)],
                               guard=(MODELS_NS, self.token_key, self.token))
        self.token = token

    @contextmanager
    def transaction(self):
        """Wrap in-memory learning and the write that persists it (caller holds ``lock``).
        If the write fails, memory goes back to the last committed document, so the
        redelivered or retried rewards are learned once, not twice."""
        if self.stale:
            self.load()
            self.stale = False
        try:
            yield
        except BaseException:
            try:
                self.load()
            except Exception:  # the store is down too: reload before the next use
                self.stale = True
            raise

    def doc_row(self) -> tuple[str, str, bytes]:
        doc = {"state": self.policy.state_dict(), "closed_through": self.closed_through, "version": self.version}
        return (MODELS_NS, self.name, orjson.dumps(doc))

    def learn(self, arms: list[str], features: np.ndarray, rewards: np.ndarray, weights: np.ndarray) -> None:
        """Update in memory (caller holds ``lock`` and persists ``doc_row()`` atomically)."""
        if len(rewards):
            self.policy.learn(arms, features, rewards, weights)
            self.version += 1
            self._since_snapshot += len(rewards)

    def maybe_snapshot(self, force: bool = False) -> None:
        if self._since_snapshot and (force or self._since_snapshot >= self.snapshot_every):
            self.models.put(self.name, self.doc_row()[2])
            self._since_snapshot = 0
