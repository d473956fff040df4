"""DELETE /v1/users/{id}: afterwards no store, file, key or stream holds the user id."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from relevo.api.app import create_app
from relevo.datasets.synthetic import make_catalog
from relevo.records import Event
from relevo.settings import ApiSettings, StorageSettings
from relevo.tiers.streaming import RecommendRequest

GONE = "zed-erase-7"
KEPT = "keep-me-3"
CATALOG = make_catalog(120)


def exercise(engine) -> None:
    """Give both users every kind of stored data: events, state, affect, preferences,
    consent, decisions and feedback."""
    for user in (GONE, KEPT):
        engine.put_consent(user, {"emotion": True})
        engine.put_preferences(user, {"liked_tags": ["jazz"], "note": f"prefs of {user}"})
        engine.ingest([Event(id=f"{user}-{i}", user_id=user, item_id=CATALOG[i].id, type="click") for i in range(6)]
                      + [Event(id=f"{user}-r", user_id=user, item_id=CATALOG[7].id, type="review",
                               text=f"I am {user} and I hated it")])
    assert engine.wait_idle(20)
    for user in (GONE, KEPT):
        rec = engine.recommend(RecommendRequest(user, 5))
        engine.feedback(rec.decision_id, rec.items[0].item_id, 1.0)
        engine.ingest([Event(user_id=user, item_id=rec.items[1].item_id, type="click", decision_id=rec.decision_id)])
    assert engine.wait_idle(20)


def test_erasure_leaves_no_trace_in_sqlite_files(make_engine, tmp_path):
    home = tmp_path / "home"
    engine = make_engine(home=home, api=ApiSettings(require_keys=False))  # access control: tests/api/test_auth.py
    engine.add_items(CATALOG)
    exercise(engine)
    with TestClient(create_app(engine)) as client:
        receipt = client.delete(f"/v1/users/{GONE}").json()
    assert receipt["removed"]["events"] == 8 and receipt["removed"]["decisions"] == 1
    assert receipt["removed"]["user_state"] and receipt["removed"]["consent"] and receipt["removed"]["preferences"]
    assert receipt["removed"]["feedback_markers"] == 2  # explicit feedback and the click event
    assert engine.features.get("users", GONE) is None and engine.decisions.for_user(GONE) == []
    # in memory too: the edge cache (answers, candidates, remembered requests), the ranker's examples
    assert receipt["removed"]["cached_responses"] >= 1 and receipt["removed"]["ranker_examples"] >= 6
    assert GONE not in engine.cache._users and not engine.cache.requests(GONE)
    assert engine.cache.candidates(GONE, time.time(), 1e9) is None
    assert all(e.user_id != GONE for e in engine.ranker._buffer) and any(e.user_id == KEPT for e in engine.ranker._buffer)
    engine.ingest([Event(user_id=KEPT, item_id=CATALOG[30].id, type="click")])  # life goes on
    assert engine.wait_idle(10)
    engine.close()
    files = [p for p in Path(home).rglob("*") if p.is_file()]
    assert any(p.name.endswith(".db") for p in files)
    for path in files:
        data = path.read_bytes()
        assert GONE.encode() not in data, path
    assert any(KEPT.encode() in p.read_bytes() for p in files)  # the search can find a user


def test_erasure_leaves_no_trace_in_redis(make_engine, tmp_path, redis_server, redis_prefix):
    url = f"{redis_server}?prefix={redis_prefix}"
    storage = StorageSettings(event_log=url, feature_store=url, decision_log=url, model_store=url)
    engine = make_engine(home=tmp_path / "r", storage=storage)
    engine.add_items(CATALOG)
    exercise(engine)
    receipt = engine.erase_user(GONE)
    assert receipt.events == 8 and receipt.decisions == 1 and receipt.user_state
    client = redis.Redis.from_url(redis_server)
    found_kept = False
    for key in client.scan_iter(match=redis_prefix + "*", count=1000):
        kind = client.type(key).decode()
        if kind == "string":
            values = [client.get(key)]
        elif kind == "hash":
            values = [b"%s=%s" % kv for kv in client.hgetall(key).items()]
        elif kind == "list":
            values = client.lrange(key, 0, -1)
        elif kind == "set":
            values = list(client.smembers(key))
        elif kind == "zset":
            values = [m for m, _ in client.zrange(key, 0, -1, withscores=True)]
        elif kind == "stream":
            values = [b"".join(f for kv in fields.items() for f in kv) for _, fields in client.xrange(key)]
        else:
            raise AssertionError(f"unexpected key type {kind} at {key!r}")
        blob = key + b"".join(v or b"" for v in values)
        assert GONE.encode() not in blob, key
        found_kept |= KEPT.encode() in blob
    assert found_kept
    assert engine.wait_idle(10)


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_no_resurrection_from_events_in_flight(make_engine, tmp_path, redis_server, redis_prefix, backend):
    """Events still in the log (or in a batch being applied) when the user is erased never
    bring the user back."""
    if backend == "redis":
        url = f"{redis_server}?prefix={redis_prefix}"
        engine = make_engine(home=tmp_path / "f", storage=StorageSettings(
            event_log=url, feature_store=url, decision_log=url, model_store=url))
    else:
        engine = make_engine(home=tmp_path / "f")
    engine.add_items(CATALOG)
    for round_ in range(3):
        engine.ingest([Event(user_id=GONE, item_id=CATALOG[i % 20].id, type="click") for i in range(300)])
        engine.ingest([Event(user_id=KEPT, item_id=CATALOG[i % 20].id, type="click") for i in range(50)])
        if round_ == 1:
            time.sleep(0.02)  # let the processor start on a batch
        engine.erase_user(GONE)
    assert engine.wait_idle(30)
    engine.close_windows()
    assert engine.features.get("users", GONE) is None
    assert engine.events.for_user(GONE) == [] and engine.decisions.for_user(GONE) == []
    assert engine.features.get("users", KEPT) is not None
    assert engine.export_user(GONE)["counts"] == {"events": 0, "decisions": 0}
