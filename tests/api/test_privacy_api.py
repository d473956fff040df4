"""Privacy endpoints over HTTP: consent purposes, non-profiled requests, export, audit."""

from __future__ import annotations


def test_consent_purposes_non_profiled_export_and_audit(client, engine):
    client.post("/v1/events", json={"events": [{"user_id": "ana", "item_id": "alien", "type": "purchase"},
                                               {"user_id": "bob", "item_id": "toy", "type": "purchase"}]})
    assert engine.wait_idle(10)
    consent = client.get("/v1/users/ana/consent").json()
    assert {k: consent[k] for k in ("personalization", "profiling", "emotion", "llm")} == {
        "personalization": True, "profiling": True, "emotion": False, "llm": False}
    answers = [client.post("/v1/recommendations", json={"user_id": u, "n": 3, "non_profiled": True}).json()
               for u in ("ana", "bob")]
    assert [i["item_id"] for i in answers[0]["items"]] == [i["item_id"] for i in answers[1]["items"]]
    assert answers[0]["tier"] == "popularity"
    rec = client.post("/v1/recommendations", json={"user_id": "ana", "n": 3}).json()
    audit = client.get(f"/v1/decisions/{rec['decision_id']}/audit").json()
    assert audit["decision_id"] == rec["decision_id"] and audit["consent"]["personalization"] is True
    assert [i["propensity"] for i in audit["items"]] == [i["propensity"] for i in rec["items"]]
    listed = client.get("/v1/users/ana/decisions").json()["decisions"]
    assert {d["decision_id"] for d in listed} == {rec["decision_id"], answers[0]["decision_id"]}
    export = client.get("/v1/users/ana/export")
    assert export.status_code == 200 and "attachment" in export.headers["content-disposition"]
    doc = export.json()
    assert doc["counts"]["events"] == 1 and doc["events"][0]["item_id"] == "alien"
    r = client.put("/v1/users/ana/consent", json={"personalization": False})
    assert r.status_code == 200 and r.json()["personalization"] is False
    assert client.get("/v1/users/ana/export").json()["profile"] is None
    bad = client.put("/v1/users/ana/consent", json={"profiling": "yes"})
    assert bad.status_code == 422
    assert client.get("/v1/decisions/nope/audit").status_code == 404
