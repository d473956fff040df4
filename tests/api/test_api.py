"""The HTTP API's happy paths, per DESIGN.md section 4."""

from __future__ import annotations

import time


def test_health_openapi_and_metrics(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    spec = client.get("/openapi.json").json()
    for path in ("/v1/items", "/v1/events", "/v1/recommendations", "/v1/feedback", "/v1/users/{user_id}/preferences"):
        assert path in spec["paths"]
    text = client.get("/metrics").text
    assert "relevo_freshness_seconds_bucket" in text and "relevo_items 5.0" in text


def test_events_recommendations_feedback_round_trip(client, engine):
    r = client.post("/v1/events", json={"events": [
        {"id": "e1", "user_id": "u1", "item_id": "alien", "type": "purchase"},
        {"id": "e2", "user_id": "u1", "item_id": "scream", "type": "click"},
    ]})
    assert r.status_code == 202 and r.json() == {"accepted": 2, "duplicates": 0}
    again = client.post("/v1/events", json={"events": [{"id": "e1", "user_id": "u1", "item_id": "alien", "type": "purchase"}]})
    assert again.json() == {"accepted": 0, "duplicates": 1}
    assert engine.wait_idle(5)
    rec = client.post("/v1/recommendations", json={"user_id": "u1", "n": 2})
    assert rec.status_code == 200
    body = rec.json()
    # two events: too little history to trust the streaming model alone, so the origin answers
    assert body["tier"] == "origin" and body["tier_reason"] == "low confidence"
    assert len(body["items"]) == 2 and body["latency_ms"] >= 0
    shown = {i["item_id"] for i in body["items"]}
    assert not shown & {"alien", "scream"}  # already-seen items are excluded
    for item in body["items"]:
        assert 0 < item["propensity"] <= 1 and isinstance(item["explored"], bool) and item["reasons"]
    decision = engine.decisions.get(body["decision_id"])
    assert decision is not None and [i.item_id for i in decision.items] == [i["item_id"] for i in body["items"]]
    fb = client.post("/v1/feedback", json={"decision_id": body["decision_id"], "item_id": body["items"][0]["item_id"], "reward": 1})
    assert fb.json() == {"learned": True, "status": "joined"}
    fb = client.post("/v1/feedback", json={"decision_id": body["decision_id"], "item_id": body["items"][0]["item_id"], "reward": 1})
    assert fb.json() == {"learned": False, "status": "duplicate"}  # exactly once per shown item
    wrong = client.post("/v1/feedback", json={"decision_id": body["decision_id"], "item_id": "alien", "reward": 1})
    assert wrong.status_code == 422 and "not shown" in wrong.json()["error"]["message"]


def test_unknown_user_gets_popularity_and_filters_apply(client, engine):
    client.post("/v1/events", json={"events": [{"user_id": "u9", "item_id": "toy", "type": "purchase"}]})
    engine.wait_idle(5)
    auto = client.post("/v1/recommendations", json={"user_id": "stranger", "n": 3}).json()
    assert auto["tier"] == "origin" and auto["tier_reason"] == "new user" and len(auto["items"]) == 3
    body = client.post("/v1/recommendations", json={"user_id": "stranger", "n": 3, "tier": "streaming"}).json()
    assert body["tier"] == "popularity" and body["items"][0]["item_id"] == "toy"
    filtered = client.post("/v1/recommendations", json={"user_id": "stranger", "n": 5, "tier": "streaming",
                                                        "filters": {"tags": ["Horror"]}}).json()
    assert {i["item_id"] for i in filtered["items"]} == {"alien", "scream"}
    by_year = client.post("/v1/recommendations", json={"user_id": "u9", "n": 5, "filters": {"year": [1995, 1996]}}).json()
    assert {i["item_id"] for i in by_year["items"]} <= {"heat", "scream"} and by_year["items"]


def test_preferences_read_your_writes_and_items_crud(client):
    put = client.put("/v1/users/u1/preferences", json={"liked_tags": ["Horror"], "language": "en"})
    assert put.status_code == 200
    got = client.get("/v1/users/u1/preferences").json()
    assert got["liked_tags"] == ["Horror"] and got["language"] == "en"
    assert client.post("/v1/items", json={"items": [{"id": "new", "title": "Brand new horror", "tags": ["Horror"]}]}).json() == {"accepted": 1}
    assert client.get("/v1/items/new").json()["title"] == "Brand new horror"
    started = time.perf_counter()
    rec = client.post("/v1/recommendations", json={"user_id": "x", "n": 10, "filters": {"tags": ["Horror"]}}).json()
    assert "new" in {i["item_id"] for i in rec["items"]}  # recommendable at once
    assert time.perf_counter() - started < 5
    assert client.delete("/v1/items/new").json() == {"deleted": "new"}
    assert client.get("/v1/items/new").status_code == 404
