"""The stream processor: redelivery is skipped (exactly-once effect), rewards by type."""

from __future__ import annotations

from relevo.datasets.movielens import iter_ratings
from relevo.records import Event
from relevo.stream.processor import GROUP, reward_of


def test_reward_of_event_types():
    def ev(kind, value=None):
        return Event(user_id="u", item_id="i", type=kind, value=value)

    assert reward_of(ev("click")) == 1.0 and reward_of(ev("purchase")) == 1.0 and reward_of(ev("skip")) == 0.0
    assert reward_of(ev("rating", 4.5)) == 1.0 and reward_of(ev("rating", 2.0)) == 0.0
    assert reward_of(ev("dwell", 45)) == 1.0 and reward_of(ev("dwell", 3)) == 0.0
    assert reward_of(ev("impression")) is None and reward_of(ev("view")) is None


def test_redelivered_batch_is_applied_once(make_engine, movielens_items, movielens_vectors, movielens_dir):
    """A batch written but not acked (a crash between the two) is redelivered and skipped."""
    engine = make_engine()
    engine.processor.stop()  # drive the processor by hand
    engine.add_items(movielens_items[:500], vectors=movielens_vectors[:500])
    ids = {it.id for it in movielens_items[:500]}
    events = [e for e in iter_ratings(movielens_dir) if e.item_id in ids][:300]
    engine.ingest(events)
    batch = engine.events.read(GROUP, "embedded", count=1000)
    engine.processor.process(batch)
    snapshot = {k: v for k, v in engine.features.scan("users")}
    engagement = {k: v for k, v in engine.features.scan("item_stats_p0")}
    result = engine.processor.process(batch)  # the same entries again, as after a crash before ack
    assert result.applied == 0 and result.skipped == len(batch)
    assert dict(engine.features.scan("users")) == snapshot
    assert dict(engine.features.scan("item_stats_p0")) == engagement


def test_a_poison_event_is_dead_lettered_and_the_rest_applied_in_order(make_engine, monkeypatch):
    """An event whose processing fails for a reason other than a storage outage is retried
    alone, then moved to the dead-letter list with the error; its neighbours are applied."""
    from relevo.records import Item

    engine = make_engine(ranker={"enabled": False})
    engine.add_items([Item(id=f"m{i}", title=f"Movie {i}", tags=["Drama"]) for i in range(3)])
    real = engine.processor._apply_to_user

    def apply(state, event, position, vector):
        if event.id == "poison":
            raise ValueError("cannot apply this one")
        return real(state, event, position, vector)

    monkeypatch.setattr(engine.processor, "_apply_to_user", apply)
    events = [Event(id=f"e{i}", user_id="u1", item_id=f"m{i % 3}", type="view", timestamp=1000.0 + i) for i in range(5)]
    events.insert(2, Event(id="poison", user_id="u1", item_id="m0", type="view", timestamp=1001.5))
    engine.ingest(events)
    assert engine.wait_idle(30)
    (dead,) = engine.events.dead_letters()
    assert dead.reason == "ValueError: cannot apply this one" and b'"id":"poison"' in dead.body
    from relevo.context.state import UserState

    state = UserState.decode(engine.features.get("users", "u1"))
    assert state.counters == {"view": 5}  # the five others, once each
    assert engine.metrics.dead_letters._value.get() == 1
    assert engine.events.lag(GROUP) == 0
