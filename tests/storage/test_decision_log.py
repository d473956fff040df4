"""DecisionLog conformance."""

from __future__ import annotations

from tests.storage.conftest import opened

from relevo.records import Decision, ScoredItem


def decision(i: int, user: str = "u1") -> Decision:
    return Decision(
        decision_id=f"d{i}", user_id=user, policy="linear_ts", policy_version=3, created_at=1000.0 + i,
        items=[ScoredItem("a", 0.9, 0.5, False, ["popular"]), ScoredItem("b", 0.4, 0.25, True, [])],
        features=[[1.0, 0.5], [1.0, 0.1]], context={"device": "tv"}, tier="streaming", seed=42 + i,
    )


def test_append_and_get(decision_log):
    log = decision_log.store
    log.append(decision(1))
    got = log.get("d1")
    assert got == decision(1)
    assert log.get("nope") is None


def test_for_user_newest_first_with_limit(decision_log):
    log = decision_log.store
    for i in range(5):
        log.append(decision(i))
    log.append(decision(9, user="other"))
    assert [d.decision_id for d in log.for_user("u1", limit=3)] == ["d4", "d3", "d2"]
    assert [d.decision_id for d in log.for_user("other")] == ["d9"]
    assert log.for_user("nobody") == []


def test_durable(durable_url):
    for holder in opened("decision_log", durable_url):
        holder.store.append(decision(1))
        assert holder.reopen().get("d1") == decision(1)


def test_erase_user(decision_log):
    log = decision_log.store
    for i in range(3):
        log.append(decision(i))
    log.append(decision(7, user="other"))
    assert log.erase_user("u1") == 3
    assert log.for_user("u1") == [] and log.get("d1") is None
    assert log.get("d7") is not None
    assert log.erase_user("u1") == 0


def test_between_oldest_first_half_open_and_reappend_replaces(decision_log):
    log = decision_log.store
    for i in (3, 1, 2, 5):
        log.append(decision(i))
    assert [d.decision_id for d in log.between(1001.0, 1005.0)] == ["d1", "d2", "d3"]
    assert [d.decision_id for d in log.between(0.0, 2000.0, limit=2)] == ["d1", "d2"]
    assert log.between(2000.0, 3000.0) == []
    changed = decision(2)
    changed.activated = False
    log.append(changed)  # same id: body replaced, not indexed twice
    assert sorted(d.decision_id for d in log.for_user("u1")) == ["d1", "d2", "d3", "d5"]
    assert [d.activated for d in log.between(1002.0, 1002.5)] == [False]
    log.erase_user("u1")
    assert log.between(0.0, 2000.0) == []


def test_expire_removes_old_decisions_everywhere(decision_log):
    log = decision_log.store
    for i in range(4):
        log.append(decision(i))
    assert log.expire(1002.0) == 2
    assert log.get("d0") is None and log.get("d2") is not None
    assert [d.decision_id for d in log.between(0.0, 5000.0)] == ["d2", "d3"]
    assert sorted(d.decision_id for d in log.for_user("u1")) == ["d2", "d3"]
    assert log.expire(1002.0) == 0


def test_erase_finds_every_decision_of_a_heavy_user(decision_log):
    log = decision_log.store
    for i in range(1205):
        log.append(decision(i, user="heavy"))
    log.append(decision(5000, user="other"))
    assert len(log.for_user("heavy", limit=10)) == 10
    assert log.erase_user("heavy") == 1205
    assert [d.user_id for d in log.between(0.0, 1e9)] == ["other"]
