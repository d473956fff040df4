"""EventLog conformance: durable, idempotent by id, at-least-once per consumer group."""

from __future__ import annotations

from tests.storage.conftest import opened

from relevo.records import Event


def ev(i: int, user: str = "u1", **kw) -> Event:
    return Event(id=f"e{i}", user_id=user, item_id=f"i{i % 7}", type="click", **kw)


def drain(log, group="g", consumer="c1"):
    out = []
    while True:
        batch = log.read(group, consumer, count=100, block_ms=10)
        if not batch:
            return out
        out.extend(batch)


def test_append_then_read_in_order(event_log):
    log = event_log.store
    result = log.append([ev(i) for i in range(10)])
    assert (result.accepted, result.duplicates) == (10, 0)
    entries = drain(log)
    assert [e.event.id for e in entries] == [f"e{i}" for i in range(10)]
    positions = [e.position for e in entries]
    assert positions == sorted(positions) and len(set(positions)) == 10
    assert entries[0].event.type.value == "click" and entries[0].event.user_id == "u1"


def test_idempotent_by_event_id_across_and_within_batches(event_log):
    log = event_log.store
    log.append([ev(1), ev(2)])
    again = log.append([ev(2), ev(3), ev(3)])
    assert (again.accepted, again.duplicates) == (1, 2)
    assert sorted(again.duplicate_ids) == ["e2", "e3"]
    assert log.count() == 3


def test_event_fields_round_trip(event_log):
    log = event_log.store
    original = Event(id="x", user_id="u", item_id="i", type="rating", value=4.5, text="great",
                     context={"device": "tv", "n": 2}, decision_id="d1", timestamp=1_700_000_000.5,
                     received_at=1_700_000_001.25)
    log.append([original])
    (entry,) = drain(log)
    assert entry.event == original


def test_unacked_entries_are_redelivered_after_restart(event_log):
    log = event_log.store
    log.append([ev(i) for i in range(6)])
    first = log.read("g", "c1", count=4)
    log.ack("g", first[:2])
    log = event_log.reopen()
    again = drain(log)
    assert [e.event.id for e in again] == ["e2", "e3", "e4", "e5"]
    log.ack("g", again)
    assert log.lag("g") == 0
    log = event_log.reopen()
    assert drain(log) == []


def test_groups_are_independent(event_log):
    log = event_log.store
    log.append([ev(i) for i in range(3)])
    a = drain(log, group="a")
    log.ack("a", a)
    assert log.lag("a") == 0
    assert log.lag("b") == 3
    assert len(drain(log, group="b")) == 3


def test_lag_counts_appended_not_acked(event_log):
    log = event_log.store
    log.append([ev(i) for i in range(5)])
    assert log.lag("g") == 5
    entries = drain(log)
    log.ack("g", entries[:3])
    assert log.lag("g") == 2


def test_acknowledged_appends_are_durable(durable_url):
    for holder in opened("event_log", durable_url):
        holder.store.append([ev(i) for i in range(4)])
        log = holder.reopen()
        assert log.count() == 4
        assert [e.event.id for e in drain(log)] == ["e0", "e1", "e2", "e3"]


def test_empty_read_blocks_at_most_block_ms(event_log):
    import time

    started = time.monotonic()
    assert event_log.store.read("g", "c1", count=10, block_ms=100) == []
    assert time.monotonic() - started < 2.0


def test_erase_user_removes_their_events_and_ids(event_log):
    log = event_log.store
    log.append([ev(i, user="gone") for i in range(3)] + [ev(i, user="kept") for i in range(3, 6)])
    delivered = log.read("g", "c1", count=2)  # one delivered but not acked, as in flight
    assert log.erase_user("gone") == 3
    assert log.erase_user("gone") == 0
    assert log.count() == 3
    log.ack("g", delivered)
    rest = drain(event_log.reopen())
    assert {e.event.user_id for e in rest} == {"kept"}
    log = event_log.store
    log.ack("g", rest)
    assert log.lag("g") == 0
    assert log.append([ev(0, user="gone")]).accepted == 1  # the id is free again: new data


def test_for_user_in_log_order(event_log):
    log = event_log.store
    log.append([ev(i, user="a" if i % 2 else "b") for i in range(6)])
    assert [e.id for e in log.for_user("a")] == [ev(i).id for i in (1, 3, 5)]
    assert [e.id for e in log.for_user("b", limit=2)] == [ev(i).id for i in (0, 2)]
    assert log.for_user("nobody") == []
    log.erase_user("a")
    assert log.for_user("a") == []


def test_dead_letter_keeps_the_entry_and_its_reason_and_acks_it(event_log):
    log = event_log.store
    log.append([ev(i) for i in range(3)])
    entries = log.read("g", "c1", count=10)
    log.dead_letter("g", entries[1:2], "ValueError: bad")
    log.ack("g", [entries[0], entries[2]])
    assert log.lag("g") == 0
    (dead,) = log.dead_letters()
    assert dead.reason == "ValueError: bad" and dead.offset == entries[1].offset
    assert b'"id":"e1"' in dead.body and dead.at > 0
    log = event_log.reopen()
    assert drain(log) == []  # not delivered again
    assert len(log.dead_letters()) == 1
