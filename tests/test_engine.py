"""The embedded engine end to end on MovieLens latest-small with the real MiniLM vectors."""

from __future__ import annotations

import time
from collections import Counter

import numpy as np
import pytest

from relevo.datasets.movielens import iter_ratings
from relevo.records import Event
from relevo.tiers.streaming import RecommendRequest


@pytest.fixture
def ml_engine(make_engine, movielens_items, movielens_vectors, movielens_dir):
    engine = make_engine()
    engine.add_items(movielens_items, vectors=movielens_vectors)
    return engine


def genre_share(engine, user_id: str, genre: str, n: int = 20) -> float:
    rec = engine.recommend(RecommendRequest(user_id=user_id, n=n))
    # an active session: the streaming tier, or the edge's copy of its answer (cleared by each
    # event, recomputed once the event is applied)
    assert rec.tier in ("streaming", "edge")
    return sum(genre in engine.catalog.items[s.item_id].tags for s in rec.items) / len(rec.items)


def test_recommendations_shift_toward_a_new_genre_within_one_second(ml_engine, movielens_dir):
    engine = ml_engine
    history = [e for e in iter_ratings(movielens_dir) if e.user_id == "ml1"]  # 232 ratings, few horror
    engine.ingest(history)
    assert engine.wait_idle(30)
    genre = "Horror"
    before = genre_share(engine, "ml1", genre)
    seen = set(history_item.item_id for history_item in history)
    horror = [it.id for it in engine.catalog.items.values() if genre in it.tags and it.id not in seen]
    rng = np.random.default_rng(0)
    picks = rng.choice(horror, size=8, replace=False)
    started = time.monotonic()
    engine.ingest([Event(user_id="ml1", item_id=str(i), type="click") for i in picks])
    after = before
    while time.monotonic() - started < 1.0 and after < before + 0.3:
        after = genre_share(engine, "ml1", genre)
        time.sleep(0.01)
    elapsed = time.monotonic() - started
    assert after >= before + 0.3 and after >= 0.4, (before, after)
    assert elapsed < 1.0, elapsed


def test_replaying_the_same_events_changes_nothing(ml_engine, movielens_dir):
    engine = ml_engine
    events = [e for e in iter_ratings(movielens_dir) if e.user_id in ("ml2", "ml3")]
    first = engine.ingest(events)
    assert first.accepted == len(events) and first.duplicates == 0
    assert engine.wait_idle(30)
    state = engine.features.get("users", "ml2")
    stats = dict(engine.features.scan("item_stats_p0"))
    count = engine.events.count()
    second = engine.ingest(events)
    assert (second.accepted, second.duplicates) == (0, len(events))
    assert engine.wait_idle(30)
    assert engine.events.count() == count
    assert engine.features.get("users", "ml2") == state
    assert dict(engine.features.scan("item_stats_p0")) == stats


def test_restart_restores_state_and_index(make_engine, movielens_items, movielens_vectors, movielens_dir, tmp_path):
    from relevo.settings import RecommendSettings

    home = tmp_path / "restart"
    greedy = RecommendSettings(exploration=0.0)  # no exploration: the answer is a function of state
    engine = make_engine(home=home, recommend=greedy)
    engine.add_items(movielens_items[:2000], vectors=movielens_vectors[:2000])
    ids = {it.id for it in movielens_items[:2000]}
    events = [e for e in iter_ratings(movielens_dir) if e.item_id in ids and e.user_id == "ml1"]
    engine.ingest(events)
    assert engine.wait_idle(30)
    before = engine.recommend(RecommendRequest("ml1", 10))
    state = engine.features.get("users", "ml1")
    engine.close()
    again = make_engine(home=home, recommend=greedy)
    assert len(again.catalog) == 2000 and len(again.index) == 2000
    assert again.events.count() == len(events)
    after = again.recommend(RecommendRequest("ml1", 10))
    assert after.tier == "streaming"
    assert again.features.get("users", "ml1") == state
    assert [s.item_id for s in after.items] == [s.item_id for s in before.items]


def test_bandit_learns_from_events_that_carry_a_decision_id(ml_engine):
    engine = ml_engine
    engine.ingest([Event(user_id="u", item_id="1", type="purchase")])
    engine.wait_idle(10)
    version = engine.policy.version
    rec = engine.recommend(RecommendRequest("u", 5))
    clicked = rec.items[0].item_id
    engine.ingest([Event(user_id="u", item_id=clicked, type="click", decision_id=rec.decision_id)])
    assert engine.wait_idle(10)
    assert engine.policy.version == version + 1
    assert engine.metrics.rewards.labels("joined")._value.get() == 1


def test_propensities_and_decision_log(ml_engine):
    engine = ml_engine
    engine.ingest([Event(user_id="p", item_id="1", type="purchase"), Event(user_id="p", item_id="2", type="click")])
    engine.wait_idle(10)
    rec = engine.recommend(RecommendRequest("p", 10))
    assert all(0 < s.propensity <= 1 for s in rec.items)
    logged = engine.decisions.get(rec.decision_id)
    assert logged.policy == "linear_ts" and len(logged.features) == 10 and logged.user_id == "p"
    assert Counter(s.item_id for s in rec.items).most_common(1)[0][1] == 1
