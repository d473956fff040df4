"""Azure Personalizer v1.0 compatibility: the documented Rank / Reward conversation works
unchanged, multi-slot ranking, deferred activation, learning, apprentice mode, offline
evaluation, and Personalizer-style errors."""

from __future__ import annotations

import copy

import pytest
from fastapi.testclient import TestClient

from relevo.api.app import create_app
from relevo.settings import PersonalizerSettings
from tests.api.conftest import API, KEY

AZURE_AUTH = {"Ocp-Apim-Subscription-Key": KEY}  # how Personalizer's clients send their key

P = "/personalizer/v1.0"

# The Rank request of Personalizer's REST quickstart, verbatim.
DOC_RANK = {
    "contextFeatures": [
        {"user": {"profileType": "AnonymousUser", "latLong": "47.6,-122.1"}},
        {"environment": {"dayOfMonth": "28", "monthOfYear": "8", "timeOfDay": "13:00", "weather": "Sunny"}},
        {"device": {"mobile": True, "Windows": True}},
        {"recentActivity": {"itemsInCart": 3}},
    ],
    "actions": [
        {"id": "NewsArticle", "features": [{"type": "News"}]},
        {"id": "SportsArticle", "features": [{"type": "Sports"}]},
        {"id": "EntertainmentArticle", "features": [{"type": "Entertainment"}]},
    ],
    "excludedActions": ["SportsArticle"],
    "eventId": "75269AD0-BFEE-4598-8196-C57383D38E10",
    "deferActivation": False,
}

DOC_MULTISLOT = {
    "contextFeatures": [{"timeOfDay": "Morning"}],
    "actions": [
        {"id": "NewsArticle", "features": [{"type": "News"}]},
        {"id": "SportsArticle", "features": [{"type": "Sports"}]},
        {"id": "EntertainmentArticle", "features": [{"type": "Entertainment"}]},
    ],
    "slots": [
        {"id": "Main Article", "baselineAction": "NewsArticle",
         "positionFeatures": [{"size": "Large", "position": "Left"}],
         "excludedActions": ["SportsArticle", "EntertainmentArticle"]},
        {"id": "Side Bar", "baselineAction": "SportsArticle",
         "positionFeatures": [{"size": "Small", "position": "Right"}],
         "excludedActions": ["EntertainmentArticle"]},
    ],
    "eventId": "event-ms-1",
    "deferActivation": False,
}


def test_documented_rank_reward_conversation(client, engine):
    r = client.post(f"{P}/rank", json=DOC_RANK)
    assert r.status_code == 201
    body = r.json()
    assert body["eventId"] == DOC_RANK["eventId"]
    ranking = body["ranking"]
    assert {a["id"] for a in ranking} == {"NewsArticle", "SportsArticle", "EntertainmentArticle"}
    assert ranking[0]["id"] == body["rewardActionId"] != "SportsArticle"
    assert ranking[-1] == {"id": "SportsArticle", "probability": 0.0}  # excluded: last, never chosen
    assert sum(a["probability"] for a in ranking) == pytest.approx(1.0, abs=1e-3)
    assert client.post(f"{P}/events/{body['eventId']}/reward", json={"value": 1.0}).status_code == 204
    assert engine.personalizer.policy.policy.n_updates == 1
    # a second reward for the same event is accepted and ignored (earliest reward wins)
    assert client.post(f"{P}/events/{body['eventId']}/reward", json={"value": 0.0}).status_code == 204
    assert engine.personalizer.policy.policy.n_updates == 1
    # the same eventId cannot be ranked twice
    dup = client.post(f"{P}/rank", json=DOC_RANK)
    assert dup.status_code == 409 and dup.json()["error"]["target"] == "eventId"


def test_multislot_rank_and_reward(client, engine):
    r = client.post(f"{P}/multislot/rank", json=DOC_MULTISLOT)
    assert r.status_code == 201
    body = r.json()
    assert body == {"eventId": "event-ms-1", "slots": [
        {"id": "Main Article", "rewardActionId": "NewsArticle"},  # the only action left for it
        {"id": "Side Bar", "rewardActionId": "SportsArticle"},    # News is taken, Entertainment excluded
    ]}
    reward = {"reward": [{"slotId": "Main Article", "value": 1}, {"slotId": "Side Bar", "value": 0}]}
    assert client.post(f"{P}/multislot/events/event-ms-1/reward", json=reward).status_code == 204
    assert engine.personalizer.policy.policy.n_updates == 2
    bad = client.post(f"{P}/multislot/events/event-ms-1/reward", json={"reward": [{"slotId": "Nope", "value": 1}]})
    assert bad.status_code == 400 and bad.json()["error"]["target"] == "slotId"


def test_deferred_activation(client, engine):
    req = copy.deepcopy(DOC_RANK) | {"eventId": "deferred-1", "deferActivation": True}
    assert client.post(f"{P}/rank", json=req).status_code == 201
    client.post(f"{P}/events/deferred-1/reward", json={"value": 1.0})
    assert engine.personalizer.policy.policy.n_updates == 0  # not shown: nothing learned
    assert engine.metrics is not None
    assert client.post(f"{P}/events/deferred-1/activate").status_code == 204
    client.post(f"{P}/events/deferred-1/reward", json={"value": 1.0})
    assert engine.personalizer.policy.policy.n_updates == 1
    # the default reward reaches an activated event once its window closes
    req2 = copy.deepcopy(DOC_RANK) | {"eventId": "silent-1"}
    client.post(f"{P}/rank", json=req2)
    created = engine.decisions.get("silent-1").created_at
    engine.close_windows(created + engine.settings.personalizer.reward_wait_s + 1)
    assert engine.personalizer.policy.policy.n_updates == 2


def _world(t: int):
    """Morning users click News, evening users Entertainment (Sports never)."""
    morning = t % 2 == 0
    ctx = [{"timeOfDay": "Morning" if morning else "Evening"}, {"device": {"mobile": bool(t % 3)}}]
    return ctx, ("NewsArticle" if morning else "EntertainmentArticle")


def _play(client, rounds: int, start: int = 0, prefix: str = "e"):
    hits = []
    for t in range(start, start + rounds):
        ctx, liked = _world(t)
        body = client.post(f"{P}/rank", json={"contextFeatures": ctx, "actions": DOC_RANK["actions"],
                                              "eventId": f"{prefix}{t}"}).json()
        hit = body["rewardActionId"] == liked
        hits.append(hit)
        client.post(f"{P}/events/{prefix}{t}/reward", json={"value": 1.0 if hit else 0.0})
    return hits


def test_online_learning_follows_context(client):
    _play(client, 150)
    late = _play(client, 60, start=1000)
    assert sum(late) / len(late) >= 0.85


def test_apprentice_serves_baseline_then_switches_when_learned_policy_wins(make_engine, tmp_path):
    engine = make_engine(home=tmp_path / "a", api=API, personalizer=PersonalizerSettings(
        apprentice_exploration=0.3, min_events=60))
    engine.personalizer.set_mode("Apprentice")
    engine.personalizer.config = engine.personalizer.config.__class__(
        **{**{f: getattr(engine.personalizer.config, f) for f in engine.personalizer.config.__dataclass_fields__},
           "check_every": 20})
    with TestClient(create_app(engine), headers=AZURE_AUTH) as client:
        served = []
        for t in range(400):
            ctx, liked = _world(t)
            body = client.post(f"{P}/rank", json={"contextFeatures": ctx, "actions": DOC_RANK["actions"],
                                                  "eventId": f"a{t}"}).json()
            served.append(body["rewardActionId"])
            client.post(f"{P}/events/a{t}/reward", json={"value": 1.0 if body["rewardActionId"] == liked else 0.0})
            if engine.personalizer.state.learning_mode == "Online":
                break
        conf = client.get(f"{P}/configurations/service").json()
    # the baseline (first action, News) is what apprentice mode mostly served
    assert served[:60].count("NewsArticle") >= 30
    assert conf["learningMode"] == "Online", conf
    check = conf["apprentice"]
    assert check["switched"] and check["learned"] > check["baseline"] and check["ci95"][0] > 0


def test_offline_evaluation_compares_policies(client):
    _play(client, 120, prefix="ev")
    r = client.post(f"{P}/evaluations", json={
        "name": "explore less", "policies": [{"name": "greedy", "arguments": "exploration=0.05"},
                                             {"name": "wide", "arguments": "exploration=2 lam=1"}]})
    assert r.status_code == 201, r.json()
    body = r.json()
    names = [p["name"] for p in body["policyResults"]]
    assert names == ["online (logged)", "baseline (first action)", "greedy", "wide"] and body["events"] == 120
    for res in body["policyResults"]:
        low, high = res["snips"]["ci95"]
        assert 0 <= low <= res["snips"]["value"] <= high <= 1
    # the baseline (always News) is right only for morning users
    assert body["policyResults"][1]["snips"]["value"] < body["policyResults"][2]["snips"]["value"]
    assert client.get(f"{P}/evaluations/{body['id']}").json() == body
    assert client.get(f"{P}/evaluations/nope").status_code == 404


@pytest.mark.parametrize(
    "path, payload, status, target",
    [
        ("/rank", b"{not json", 400, None),
        ("/rank", [1, 2], 400, None),
        ("/rank", {"contextFeatures": [], "actions": []}, 400, "actions"),
        ("/rank", {"actions": [{"id": "a"}, {"id": "a"}]}, 400, "actions[1].id"),
        ("/rank", {"actions": [{"features": []}]}, 400, "actions[0].id"),
        ("/rank", {"actions": [{"id": "a"}], "excludedActions": ["a"]}, 400, "excludedActions"),
        ("/rank", {"actions": [{"id": "a"}], "excludedActions": ["zz"]}, 400, "excludedActions"),
        ("/rank", {"actions": [{"id": "a"}], "contextFeatures": {"x": 1}}, 400, "contextFeatures"),
        ("/rank", b'{"actions": [{"id": "a", "features": [{"p": Infinity}]}]}', 400, None),
        ("/rank", {"actions": [{"id": "a", "features": [{"p": {"q": {"r": {"s": {"t": {"u": {"v": {"w": {"x": 1}}}}}}}}}]}]},
         400, "actions[0].features"),
        ("/rank", {"actions": [{"id": "a"}], "eventId": 7}, 400, "eventId"),
        ("/multislot/rank", {"actions": [{"id": "a"}], "slots": [{"id": "s", "baselineAction": "b"}]}, 400,
         "slots[0].baselineAction"),
        ("/multislot/rank", {"actions": [{"id": "a"}], "slots": [{"id": "s", "baselineAction": "a"},
                                                                 {"id": "t", "baselineAction": "a"}]}, 400, "slots"),
        ("/events/unknown-event/reward", {"value": 1}, 404, "eventId"),
        ("/events/unknown-event/activate", {}, 404, "eventId"),
        ("/configurations/service", {"learningMode": "Sometimes"}, 400, "learningMode"),
        ("/evaluations", {"name": "x", "startTime": "yesterday"}, 400, "startTime"),
        ("/evaluations", {"name": "x", "policies": [{"name": "p", "arguments": "--cb_explore_adf"}]}, 400,
         "policies[0].arguments"),
    ],
)
def test_bad_requests_get_personalizer_errors(client, engine, path, payload, status, target):
    method = client.put if path.startswith("/configurations") else client.post
    if isinstance(payload, bytes):
        r = method(f"{P}{path}", content=payload, headers={"content-type": "application/json"})
    else:
        r = method(f"{P}{path}", json=payload)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] in ("BadRequest", "ResourceNotFound") and err["message"] and err["innerError"]["code"]
    assert err.get("target") == target
    assert engine.personalizer.policy.policy.n_updates == 0


def test_nan_reward_is_refused_and_posterior_survives_restart(make_engine, tmp_path):
    home = tmp_path / "p"
    engine = make_engine(home=home, api=API)
    with TestClient(create_app(engine), headers=AZURE_AUTH) as client:
        body = client.post(f"{P}/rank", json=DOC_RANK).json()
        bad = client.post(f"{P}/events/{body['eventId']}/reward", content=b'{"value": NaN}',
                          headers={"content-type": "application/json"})
        assert bad.status_code == 400
        text = client.post(f"{P}/events/{body['eventId']}/reward", json={"value": "1"})
        assert text.status_code == 400 and text.json()["error"]["target"] == "value"
        assert client.post(f"{P}/events/{body['eventId']}/reward", json={"value": 0.5}).status_code == 204
    state = engine.personalizer.policy.policy.state_dict()
    engine.close()
    again = make_engine(home=home)
    assert again.personalizer.policy.policy.state_dict() == state
    assert again.personalizer.policy.policy.n_updates == 1


def test_multislot_reward_is_all_or_nothing(client, engine):
    body = copy.deepcopy(DOC_MULTISLOT) | {"eventId": "ms-atomic"}
    assert client.post(f"{P}/multislot/rank", json=body).status_code == 201
    mixed = {"reward": [{"slotId": "Main Article", "value": 1}, {"slotId": "Nope", "value": 1}]}
    assert client.post(f"{P}/multislot/events/ms-atomic/reward", json=mixed).status_code == 400
    too_big = {"reward": [{"slotId": "Main Article", "value": 1}, {"slotId": "Side Bar", "value": 50}]}
    assert client.post(f"{P}/multislot/events/ms-atomic/reward", json=too_big).status_code == 400
    assert engine.personalizer.policy.policy.n_updates == 0  # nothing half-applied


def test_concurrent_ranks_with_one_event_id_conflict(client, engine):
    from concurrent.futures import ThreadPoolExecutor

    body = copy.deepcopy(DOC_RANK) | {"eventId": "race-1"}
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda _: client.post(f"{P}/rank", json=body).status_code, range(8)))
    assert sorted(codes) == [201] + [409] * 7
