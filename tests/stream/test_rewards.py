"""RewardJoiner: rewards joined to decisions within an attribution window, exactly once;
late, duplicate and orphan outcomes counted; default rewards when a window closes."""

from __future__ import annotations

import time

import numpy as np
import pytest

from relevo.bandits.linear_ts import LinearTS, LinTSConfig
from relevo.bandits.persisted import PersistedPolicy
from relevo.records import Decision, Event, ScoredItem
from relevo.storage.memory import MemoryDecisionLog, MemoryFeatureStore, MemoryModelStore
from relevo.stream.rewards import REWARDS_NS, JoinConfig, Outcome, RewardJoiner, marker_key
from relevo.tiers.streaming import RecommendRequest

T0 = 1_000_000.0


def decision(did: str, at: float, items=("a", "b", "c"), policy="linear_ts", activated=True) -> Decision:
    return Decision(
        decision_id=did, user_id="u", policy=policy, policy_version=0, created_at=at,
        items=[ScoredItem(i, 0.5, 0.3, False, []) for i in items],
        features=[[1.0, float(k)] for k in range(len(items))] if policy == "linear_ts" else [],
        activated=activated,
    )


@pytest.fixture
def joiner():
    features = MemoryFeatureStore()
    policy = PersistedPolicy(LinearTS(LinTSConfig(dim=2, examination=(1.0, 0.5))), features, MemoryModelStore())
    decisions = MemoryDecisionLog()
    seen = []
    j = RewardJoiner(decisions, features, policy, JoinConfig(window_s=600.0, default_reward=0.0),
                     on_reward=lambda d, pos, r: seen.append((d.decision_id, pos, r)))
    j.seen = seen
    return j


def run(joiner: RewardJoiner, outcomes):
    with joiner.policy.lock:
        joined = joiner.join(outcomes)
        joiner.commit(joined)
    joiner.notify(joined)
    return joined


def test_join_classifies_and_learns_once(joiner):
    joiner.decisions.append(decision("d1", T0))
    joiner.decisions.append(decision("pop", T0, policy="popularity"))
    joined = run(joiner, [
        Outcome("d1", "a", 1.0, T0 + 5),
        Outcome("d1", "a", 1.0, T0 + 6),        # the same item again in the batch
        Outcome("d1", "b", 0.0, T0 + 7),
        Outcome("d1", "zzz", 1.0, T0 + 8),      # not shown
        Outcome("nope", "a", 1.0, T0 + 8),      # unknown decision
        Outcome("pop", "a", 1.0, T0 + 8),       # a popularity fallback: nothing to learn
        Outcome("d1", "c", 1.0, T0 + 601),      # outside the 600 s window
    ])
    assert joined.status == ["joined", "duplicate", "joined", "orphan", "orphan", "orphan", "late"]
    assert joined.counts() == {"joined": 2, "duplicate": 1, "orphan": 3, "late": 1}
    assert joined.weights == [1.0, 0.5]  # examination of positions 0 and 1
    assert joiner.policy.policy.n_updates == 2 and joiner.seen == [("d1", 0, 1.0), ("d1", 1, 0.0)]
    state = joiner.policy.policy.state_dict()
    again = run(joiner, [Outcome("d1", "a", 1.0, T0 + 5)])  # redelivered: a marker exists
    assert again.status == ["duplicate"] and joiner.policy.policy.state_dict() == state
    assert joiner.features.get(REWARDS_NS, marker_key("d1", "a")) == b"1.0"


def test_close_gives_default_rewards_once_and_drops_markers(joiner):
    joiner.decisions.append(decision("d1", T0))
    joiner.decisions.append(decision("deferred", T0 + 1, activated=False))
    joiner.decisions.append(decision("fresh", T0 + 500))
    run(joiner, [Outcome("d1", "b", 1.0, T0 + 5)])
    with joiner.policy.lock:
        closed, stale, settled = joiner.close_due(T0 + 650)  # closes d1 and deferred, not fresh
        joiner.commit(closed)
    joiner.features.erase(stale)
    assert closed.status == ["defaulted", "defaulted"]
    assert {d.decision_id: d.rewards for d in settled} == {"d1": [0.0, 1.0, 0.0], "deferred": [None, None, None]}
    assert [(d.decision_id, p) for d, p, _ in closed.rewarded] == [("d1", 0), ("d1", 2)]
    assert joiner.policy.closed_through == T0 + 50
    assert joiner.features.get(REWARDS_NS, marker_key("d1", "b")) is None  # markers of closed decisions are gone
    # a reward for a closed decision is late even though its marker was dropped
    assert run(joiner, [Outcome("d1", "b", 1.0, T0 + 10)]).status == ["late"]
    with joiner.policy.lock:
        again, _, _ = joiner.close_due(T0 + 650)
    assert again.status == []
    # the close time is durable with the posterior
    reloaded = PersistedPolicy(LinearTS(LinTSConfig(dim=2)), joiner.features, MemoryModelStore())
    reloaded.load()
    assert reloaded.closed_through == T0 + 50 and reloaded.policy.n_updates == 3


def test_no_default_reward_when_configured_off(joiner):
    joiner.config = JoinConfig(window_s=600.0, default_reward=None)
    joiner.decisions.append(decision("d1", T0))
    with joiner.policy.lock:
        closed, stale, settled = joiner.close_due(T0 + 700)
    assert closed.status == [] and len(stale) == 3 and settled[0].rewards == [None, None, None]


def test_bad_config():
    with pytest.raises(ValueError, match="window_s"):
        JoinConfig(window_s=0)


def test_engine_joins_events_and_feedback_and_closes_windows(make_engine, tmp_path):
    from relevo.records import Item

    engine = make_engine(home=tmp_path / "h")
    engine.add_items([Item(id=f"i{k}", title=f"Film number {k}", tags=["x"]) for k in range(30)])
    engine.ingest([Event(user_id="u", item_id="i1", type="purchase")])
    assert engine.wait_idle(10)
    rec = engine.recommend(RecommendRequest("u", 5))
    shown = [s.item_id for s in rec.items]
    engine.ingest([
        Event(user_id="u", item_id=shown[0], type="click", decision_id=rec.decision_id),
        Event(user_id="u", item_id=shown[0], type="purchase", decision_id=rec.decision_id),  # same item again
        Event(user_id="u", item_id=shown[1], type="click", decision_id="unknown-decision"),
    ])
    assert engine.wait_idle(10)
    m = engine.metrics.rewards
    assert m.labels("joined")._value.get() == 1 and m.labels("duplicate")._value.get() == 1
    assert m.labels("orphan")._value.get() == 1
    assert engine.feedback(rec.decision_id, shown[0], 1.0) == "duplicate"
    assert engine.feedback(rec.decision_id, shown[2], 0.5) == "joined"
    before = engine.policy.policy.n_updates
    assert engine.close_windows(rec.items and engine.decisions.get(rec.decision_id).created_at + 3601) == 3
    assert engine.policy.policy.n_updates == before + 3
    assert engine.feedback(rec.decision_id, shown[3], 1.0) == "late"
    # the decision log now holds each shown item's final reward
    assert engine.decisions.get(rec.decision_id).rewards == [1.0, 0.0, 0.5, 0.0, 0.0]
    for bad in (float("nan"), 7.0, -1.0):  # one caller must not swamp the shared posterior
        with pytest.raises(Exception, match="from 0 to 1"):
            engine.feedback(rec.decision_id, shown[3], bad)
    np.testing.assert_array_equal(engine.policy.policy.state_dict()["b"], engine.policy.policy.b)


def test_preview_decisions_are_never_learned(make_engine, tmp_path):
    from relevo.records import Item

    engine = make_engine(home=tmp_path / "pv")
    engine.add_items([Item(id=f"i{k}", title=f"Film number {k}", tags=["x"]) for k in range(30)])
    engine.ingest([Event(user_id="u", item_id="i1", type="purchase")])
    assert engine.wait_idle(10)
    served_before = engine.metrics.recommendations.labels("streaming", "linear_ts")._value.get()
    rec = engine.recommend(RecommendRequest("u", 5, preview=True))
    assert rec.items and engine.decisions.get(rec.decision_id) is None  # not logged
    assert engine.metrics.recommendations.labels("streaming", "linear_ts")._value.get() == served_before
    before = engine.policy.policy.n_updates
    engine.ingest([Event(user_id="u", item_id=rec.items[0].item_id, type="click", decision_id=rec.decision_id)])
    assert engine.wait_idle(10)
    assert engine.metrics.rewards.labels("orphan")._value.get() == 1
    assert engine.close_windows(time.time() + 7200) == 0
    assert engine.policy.policy.n_updates == before


def test_a_failed_write_does_not_make_a_retry_learn_twice(make_engine, tmp_path, monkeypatch):
    """The posterior in memory goes back to the committed one when its write fails, so the
    retried feedback and the redelivered batch are learned exactly once."""
    from relevo.records import Item

    engine = make_engine(home=tmp_path / "fail")
    engine.add_items([Item(id=f"i{k}", title=f"Film number {k}", tags=["x"]) for k in range(30)])
    engine.ingest([Event(user_id="u", item_id="i1", type="purchase")])
    assert engine.wait_idle(10)
    rec = engine.recommend(RecommendRequest("u", 5))
    shown = [s.item_id for s in rec.items]
    committed = engine.policy.policy.state_dict()
    real_put_many = engine.features.put_many
    failures = {"left": 1}

    def flaky(rows, guard=None):
        if failures["left"]:
            failures["left"] -= 1
            raise ConnectionError("store unavailable")
        return real_put_many(rows, guard)

    monkeypatch.setattr(engine.features, "put_many", flaky)
    with pytest.raises(ConnectionError):
        engine.feedback(rec.decision_id, shown[0], 1.0)
    assert engine.policy.policy.state_dict() == committed  # rolled back
    assert engine.feedback(rec.decision_id, shown[0], 1.0) == "joined"  # the retry
    assert engine.policy.policy.n_updates == committed["n_updates"] + 1
    # the stream path: a batch whose write fails is redelivered and learned once
    failures["left"] = 1
    engine.ingest([Event(user_id="u", item_id=shown[1], type="click", decision_id=rec.decision_id)])
    assert engine.wait_idle(15)
    assert engine.policy.policy.n_updates == committed["n_updates"] + 2
    assert engine.processor.last_error is not None and "store unavailable" in engine.processor.last_error
