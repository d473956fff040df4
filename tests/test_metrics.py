"""Metrics an operator alerts on appear in /metrics and move when they should, and carry no
identifiers."""

from __future__ import annotations

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from relevo.api.app import create_app
from relevo.records import Event, Item
from relevo.settings import ApiSettings


def samples(engine) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(engine.metrics.render().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(snap, name, **labels) -> float:
    return snap.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_move(make_engine, tmp_path):
    engine = make_engine(home=tmp_path / "m", api=ApiSettings(require_keys=False))
    engine.add_items([Item(id=f"i{k}", title=f"Space adventure number {k}", tags=["x"]) for k in range(30)])
    engine.put_consent("u", {"emotion": True})
    with TestClient(create_app(engine)) as client:
        client.post("/v1/events", json={"events": [{"user_id": "u", "item_id": "i1", "type": "purchase"},
                                                   {"user_id": "u", "item_id": "i2", "type": "review",
                                                    "text": "Awful, I hated it"}]})
        assert engine.wait_idle(10)
        rec = client.post("/v1/recommendations", json={"user_id": "u", "n": 5}).json()
        client.post("/v1/feedback", json={"decision_id": rec["decision_id"], "item_id": rec["items"][0]["item_id"],
                                          "reward": 1})
        client.get("/v1/items/nope")
        snap = samples(engine)
    assert value(snap, "relevo_http_request_seconds_count", method="POST", route="/v1/recommendations",
                 status="2xx") == 1
    assert value(snap, "relevo_http_request_seconds_count", method="GET", route="/v1/items/{item_id}",
                 status="4xx") == 1
    for stage in ("retrieve", "features", "bandit", "log"):
        assert value(snap, "relevo_stage_seconds_count", stage=stage) == 1
    assert value(snap, "relevo_reward_value_count", policy="linear_ts") == 1
    assert value(snap, "relevo_reward_value_sum", policy="linear_ts") == 1.0
    assert value(snap, "relevo_affect_updates_total", source="text") == 1
    assert value(snap, "relevo_affect_updates_total", source="behaviour") == 2
    assert value(snap, "relevo_events_processed_total") == 2
    assert value(snap, "relevo_freshness_seconds_count") == 2
    assert value(snap, "relevo_rewards_total", outcome="joined") == 1
    assert value(snap, "relevo_errors_total", code="not_found") == 1
    assert 0.0 <= value(snap, "relevo_exploration_share") <= 1.0
    text = engine.metrics.render().decode()
    assert '"u"' not in text and "nope" not in text  # ids never become label values


def test_tier_cache_and_llm_metrics_move(make_engine, tmp_path):
    engine = make_engine(home=tmp_path / "t", api=ApiSettings(require_keys=False))
    engine.add_items([Item(id=f"i{k}", title=f"Space adventure number {k}", tags=["x"]) for k in range(30)])
    engine.ingest([Event(user_id="u", item_id=f"i{k}", type="click") for k in range(6)])
    assert engine.wait_idle(10)
    with TestClient(create_app(engine)) as client:
        first = client.post("/v1/recommendations", json={"user_id": "u", "n": 5}).json()
        client.post("/v1/recommendations", json={"user_id": "u", "n": 5})  # cached
        client.post("/v1/recommendations", json={"user_id": "u", "n": 5, "tier": "origin", "budget_ms": 0.01})
        client.post("/v1/recommendations", json={"user_id": "v", "n": 5, "explain": True})
        client.post("/v1/events", json={"events": [{"user_id": "u", "item_id": first["items"][0]["item_id"],
                                                    "type": "click"}]})
        assert engine.wait_idle(10)
        snap = samples(engine)
    assert value(snap, "relevo_tier_requests_total", tier="streaming", reason="active session") == 1
    assert value(snap, "relevo_tier_requests_total", tier="edge", reason="cached") == 1
    assert value(snap, "relevo_tier_seconds_count", tier="edge") == 1
    assert value(snap, "relevo_degradations_total", tier="origin", cause="budget") == 1
    assert value(snap, "relevo_edge_cache_lookups_total", result="hit") == 1
    assert value(snap, "relevo_edge_cache_hit_ratio") > 0
    assert value(snap, "relevo_invalidation_lag_seconds_count") >= 1
    assert value(snap, "relevo_edge_refreshes_total", result="stored") >= 1
    assert value(snap, "relevo_llm_answers_total", use="explain", source="reasoner", reason="no_backend") == 1
    assert value(snap, "relevo_ranker_examples_total") >= 6
