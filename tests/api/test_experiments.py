"""Experiments over /v1/recommendations: hash assignment, variant configs applied,
exposures and rewards recorded, results with intervals and the SRM check."""

from __future__ import annotations

import pytest

from relevo.records import Event

DESIGN = {
    "id": "explore-vs-greedy",
    "variants": [
        {"name": "control", "weight": 1, "config": {}},
        {"name": "greedy", "weight": 1, "config": {"exploration_scale": 0.0, "candidates": 50}},
    ],
    "allocation": "fixed",
    "salt": "s1",
    "guardrails": [{"metric": "latency_ms", "direction": "max", "threshold": 250}],
}


def test_experiment_lifecycle(client, engine):
    r = client.post("/v1/experiments", json=DESIGN)
    assert r.status_code == 201, r.text
    assert r.json()["allocation_probabilities"] == {"control": 0.5, "greedy": 0.5}
    assert client.post("/v1/experiments", json=DESIGN).status_code == 409
    other = {**DESIGN, "id": "second"}
    assert client.post("/v1/experiments", json=other).status_code == 409  # one runs at a time
    users = [f"user{i}" for i in range(40)]
    client.post("/v1/events", json={"events": [{"user_id": u, "item_id": "alien", "type": "click"} for u in users]})
    assert engine.wait_idle(10)
    variants = {}
    for u in users:
        body = client.post("/v1/recommendations", json={"user_id": u, "n": 3}).json()
        decision = engine.decisions.get(body["decision_id"])
        assert decision.experiment == "explore-vs-greedy"
        variants[u] = decision.variant
        if decision.variant == "greedy":
            assert not any(i["explored"] for i in body["items"])
        # the same user always lands in the same variant
        again = client.post("/v1/recommendations", json={"user_id": u, "n": 3}).json()
        assert engine.decisions.get(again["decision_id"]).variant == decision.variant
        client.post("/v1/events", json={"events": [{"user_id": u, "item_id": body["items"][0]["item_id"],
                                                    "type": "click", "decision_id": body["decision_id"]}]})
    assert engine.wait_idle(10)
    assert set(variants.values()) == {"control", "greedy"}
    desc = client.get("/v1/experiments/explore-vs-greedy").json()
    assert sum(desc["exposures"].values()) == 80
    res = client.get("/v1/experiments/explore-vs-greedy/results").json()
    by_name = {v["name"]: v for v in res["variants"]}
    for name, v in by_name.items():
        assert v["trials"] == sum(1 for x in variants.values() if x == name)  # one click per user
        assert v["mean"] == 1.0 and v["ci_low"] <= v["mean"] <= v["ci_high"]
    assert res["srm"] is not None and not res["srm"]["mismatch"]
    stopped = client.post("/v1/experiments/explore-vs-greedy/stop").json()
    assert stopped["status"] == "stopped"
    body = client.post("/v1/recommendations", json={"user_id": "user1", "n": 3}).json()
    assert engine.decisions.get(body["decision_id"]).experiment is None
    assert client.post("/v1/experiments", json=other).status_code == 201


@pytest.mark.parametrize(
    "change, field",
    [
        ({"variants": [{"name": "only"}]}, "variants"),
        ({"variants": [{"name": "a"}, {"name": "b", "config": {"temperature": 2}}]}, "variants[1].config.temperature"),
        ({"variants": [{"name": "a"}, {"name": "b", "config": {"exploration_scale": -1}}]},
         "variants[1].config.exploration_scale"),
        ({"allocation": "roulette"}, "allocation"),
        ({"id": "bad id!"}, "id"),
    ],
)
def test_bad_designs(client, change, field):
    r = client.post("/v1/experiments", json={**DESIGN, **change})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == field
    assert client.get(f"/v1/experiments/{DESIGN['id']}").status_code == 404


def test_unknown_experiment(client):
    assert client.get("/v1/experiments/nope/results").status_code == 404
