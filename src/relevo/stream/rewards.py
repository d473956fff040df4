"""RewardJoiner: outcomes (events that name a decision, explicit feedback) joined to the
logged decisions they reward, within an attribution window, learned exactly once.

Rules, for an outcome (decision_id, item_id, reward, time t):
- *orphan*: no such decision, the item was not shown in it, or the decision was served
  by a policy other than this one (a popularity fallback has nothing to learn);
- *inactive*: the decision was made with deferred activation and never activated (the
  caller did not show it), so its outcome says nothing about the policy;
- *late*: the decision's window has already been closed, or t is more than ``window_s``
  after the decision was made;
- *duplicate*: this (decision, item) already has a reward (first outcome wins, whatever
  its source: a purchase after a click does not count twice);
- otherwise *joined*: the policy learns the decision's logged feature row with this
  reward, weighted by the examination probability of the position it was shown at.
Idempotence: a marker ``rewards/<decision_id> US <item_id>`` (``marker_key``) is written in the same atomic
``put_many`` as the updated posterior, so a redelivered event is recognised.

Closing windows: ``close_due(now)`` takes the decisions created before ``now - window_s``
(and after the last close) and gives every shown, activated, unrewarded item the
``default_reward`` (the Personalizer convention: no click within the window is a 0);
with ``default_reward=None`` unrewarded items are not learned. The close time is stored in
the posterior document, and the closed decisions' markers are then deleted, so markers
never outgrow one window of traffic.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from relevo.bandits.persisted import PersistedPolicy
from relevo.errors import StaleWrite
from relevo.records import Decision
from relevo.storage.protocols import DecisionLog, FeatureStore

REWARDS_NS = "rewards"
MARKER_SEP = "\x1f"  # unit separator: cannot collide the way ":" could ("e" + "x:y" vs "e:x" + "y")


def marker_key(decision_id: str, item_id: str) -> str:
    """The reward marker of one shown item: ``<decision_id> US <item_id>``."""
    return f"{decision_id}{MARKER_SEP}{item_id}"
OUTCOMES = ("joined", "late", "duplicate", "orphan", "inactive", "defaulted")


@dataclass(frozen=True, slots=True)
class Outcome:
    decision_id: str
    item_id: str
    reward: float
    at: float  # event time (epoch seconds)
    source: str = "event"  # event | feedback


@dataclass(frozen=True, slots=True)
class JoinConfig:
    window_s: float = 3600.0
    default_reward: float | None = 0.0
    close_page: int = 10_000

    def __post_init__(self) -> None:
        if not self.window_s > 0:
            raise ValueError("window_s must be > 0")


@dataclass(slots=True)
class Joined:
    """What one join or close produced: rows to learn (arms, features (m, d), rewards (m,),
    weights (m,)), marker rows to persist with the posterior, and each input's outcome."""

    arms: list[str] = field(default_factory=list)
    rows: list[list[float]] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    markers: list[tuple[str, str, bytes]] = field(default_factory=list)
    status: list[str] = field(default_factory=list)
    rewarded: list[tuple[Decision, int, float]] = field(default_factory=list)  # (decision, position, reward)

    def add(self, decision: Decision, position: int, reward: float, weight: float, marker: str) -> None:
        self.arms.append(decision.items[position].item_id)
        self.rows.append(decision.features[position])
        self.rewards.append(reward)
        self.weights.append(weight)
        self.markers.append((REWARDS_NS, marker, repr(reward).encode()))
        self.rewarded.append((decision, position, reward))

    def counts(self) -> dict[str, int]:
        return {name: self.status.count(name) for name in OUTCOMES if name in self.status}


class RewardJoiner:
    def __init__(
        self,
        decisions: DecisionLog,
        features: FeatureStore,
        policy: PersistedPolicy,
        config: JoinConfig | None = None,
        *,
        on_reward: Callable[[Decision, int, float], None] | None = None,
        cache_size: int = 10_000,
    ):
        self.decisions = decisions
        self.features = features
        self.policy = policy
        self.config = config or JoinConfig()
        self.on_reward = on_reward  # e.g. experiment results; called after the commit
        self.metrics = None  # observability.Metrics, set by the engine: reward value per policy
        self.cache_size = cache_size
        self._cache: OrderedDict[str, Decision] = OrderedDict()

    def _decision(self, decision_id: str) -> Decision | None:
        decision = self._cache.get(decision_id)
        if decision is None:
            decision = self.decisions.get(decision_id)
            if decision is None:
                return None
            self._cache[decision_id] = decision
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return decision

    def forget(self, decision_ids) -> None:
        for d in decision_ids:
            self._cache.pop(d, None)

    def join(self, outcomes: list[Outcome]) -> Joined:
        """Classify and collect the learnable outcomes. The caller holds ``policy.lock``
        from here until the result is committed (``commit``), so two joins of the same
        (decision, item) cannot both see it unrewarded."""
        out = Joined()
        markers = [marker_key(o.decision_id, o.item_id) for o in outcomes]
        existing = self.features.get_many(REWARDS_NS, markers) if outcomes else []
        seen: set[str] = set()
        for outcome, marker, prior in zip(outcomes, markers, existing):
            decision = self._decision(outcome.decision_id)
            position = _position(decision, outcome.item_id) if decision is not None else None
            if decision is None or position is None or decision.policy != self.policy.name:
                out.status.append("orphan")
            elif not decision.activated:
                out.status.append("inactive")
            elif decision.created_at < self.policy.closed_through or outcome.at - decision.created_at > self.config.window_s:
                out.status.append("late")
            elif prior is not None or marker in seen:
                out.status.append("duplicate")
            else:
                seen.add(marker)
                weight = float(self.policy.policy.positions.weights(np.array([position]))[0])
                out.add(decision, position, outcome.reward, weight, marker)
                out.status.append("joined")
        return out

    def close_due(self, now: float) -> tuple[Joined, list[tuple[str, str]], list[Decision]]:
        """Default rewards for the decisions whose window ended before ``now`` (caller
        holds ``policy.lock``). Returns them, the marker keys to delete after commit and
        the closed decisions with their final ``rewards`` filled in (to re-append to the
        DecisionLog, which then holds everything off-policy evaluation needs); advances
        ``policy.closed_through`` (persisted with the posterior by ``learn``)."""
        out = Joined()
        cutoff = now - self.config.window_s
        start = self.policy.closed_through
        if cutoff <= start:
            return out, [], []
        batch = self.decisions.between(start, cutoff, self.config.close_page)
        if len(batch) == self.config.close_page:  # a full page: stop before its last instant
            cutoff = batch[-1].created_at
            batch = [d for d in batch if d.created_at < cutoff]
        mine = [d for d in batch if d.policy == self.policy.name and d.features]
        keys = [marker_key(d.decision_id, item.item_id) for d in mine for item in d.items]
        have = dict(zip(keys, self.features.get_many(REWARDS_NS, keys))) if keys else {}
        default = self.config.default_reward
        for d in mine:
            final: list[float | None] = []
            for position, item in enumerate(d.items):
                marker = marker_key(d.decision_id, item.item_id)
                prior = have.get(marker)
                if prior is not None:
                    final.append(float(prior))
                elif default is not None and d.activated and position < len(d.features):
                    weight = float(self.policy.policy.positions.weights(np.array([position]))[0])
                    out.add(d, position, default, weight, marker)
                    out.status.append("defaulted")
                    final.append(default)
                else:
                    final.append(None)
            d.rewards = final
        self.policy.closed_through = cutoff
        self.forget(d.decision_id for d in batch)
        return out, [(REWARDS_NS, k) for k in keys], mine

    def commit(self, joined: Joined) -> None:
        """Apply ``joined`` to the in-memory posterior and persist it with its markers in
        one guarded write (caller holds ``policy.lock`` inside ``policy.transaction()``:
        ``StaleWrite`` means another process learned first; the transaction reloads)."""
        if joined.rewards:
            self.policy.learn(
                joined.arms, np.asarray(joined.rows, dtype=np.float64),
                np.asarray(joined.rewards, dtype=np.float64), np.asarray(joined.weights, dtype=np.float64),
            )
        self.policy.commit(joined.markers)

    def record(self, outcomes: list[Outcome], attempts: int = 8) -> Joined:
        """Join and learn outcomes that arrive outside the stream (explicit feedback, a
        Personalizer reward) as one transaction: markers and posterior in one write, rolled
        back in memory if it fails and joined again if another process learned first;
        then notify."""
        with self.policy.lock:
            for attempt in range(attempts):
                try:
                    with self.policy.transaction():
                        joined = self.join(outcomes)
                        if joined.rewards:
                            self.commit(joined)
                    break
                except StaleWrite:
                    if attempt == attempts - 1:
                        raise
            if joined.rewards:
                self.policy.maybe_snapshot()
        self.notify(joined)
        return joined

    def notify(self, joined: Joined) -> None:
        if self.metrics is not None and joined.rewarded:
            summary = self.metrics.reward_value.labels(self.policy.name)
            for _, _, reward in joined.rewarded:
                summary.observe(reward)
        if self.on_reward is not None:
            for decision, position, reward in joined.rewarded:
                self.on_reward(decision, position, reward)


def _position(decision: Decision, item_id: str) -> int | None:
    for position, item in enumerate(decision.items):
        if item.item_id == item_id:
            return position if position < len(decision.features) else None
    return None
