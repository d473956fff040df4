"""explain=true through the engine without a model: the deterministic reasoner answers,
says so, and the audit record holds it."""

from __future__ import annotations

from relevo.records import Event, Item
from relevo.tiers.streaming import RecommendRequest

CATALOG = [Item(id="alien", title="Alien (1979)", tags=["Horror", "Sci-Fi"]),
           Item(id="aliens", title="Aliens (1986)", tags=["Action", "Horror", "Sci-Fi"]),
           Item(id="thing", title="The Thing (1982)", tags=["Horror", "Sci-Fi"]),
           Item(id="toy", title="Toy Story (1995)", tags=["Animation", "Children"]),
           Item(id="nemo", title="Finding Nemo (2003)", tags=["Animation", "Children"])]


def test_explain_without_a_model_uses_the_reasoner_and_is_audited(make_engine):
    engine = make_engine()
    engine.add_items(CATALOG)
    engine.ingest([Event(user_id="ana", item_id="alien", type="purchase")])
    assert engine.wait_idle(10)
    rec = engine.recommend(RecommendRequest("ana", 3, explain=True))
    assert rec.tier == "origin" and rec.explanation == {"source": "reasoner", "reason": "no_backend", "backend": None}
    assert all(len(i.reasons) == 1 and i.reasons[0].endswith(".") for i in rec.items)
    assert any("Because you engaged with Alien" in i.reasons[0] for i in rec.items)
    audit = engine.audit(rec.decision_id)
    assert audit["llm"]["use"] == "explain" and audit["llm"]["reason"] == "no_backend"
    assert [i["reasons"] for i in audit["items"]] == [i.reasons for i in rec.items]
    assert rec.to_dict()["explanation"]["source"] == "reasoner"
    plain = engine.recommend(RecommendRequest("ana", 3))
    assert plain.explanation is None


def test_natural_language_cold_start_without_a_model(make_engine):
    engine = make_engine()
    engine.add_items(CATALOG)
    out = engine.describe_preferences("newbie", "I love scary sci-fi, but nothing animated please. I'm Jane Doe")
    assert out["source"] == "reasoner" and out["reason"] == "no_backend" and out["seeded_vector"]
    assert out["liked_tags"] == ["Horror", "Sci-Fi"] and out["disliked_tags"] == ["Animation"]
    assert "Jane" not in out["description"]
    rec = engine.recommend(RecommendRequest("newbie", 3))
    assert rec.tier in ("origin", "streaming") and {i.item_id for i in rec.items} <= {"alien", "aliens", "thing"}
