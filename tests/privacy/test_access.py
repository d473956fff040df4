"""Consent purposes on the write and read paths, the non-profiled mode, data export and
per-decision audit records, against a real engine (SQLite, MiniLM)."""

from __future__ import annotations

import orjson
import pytest

from relevo.errors import NotFound
from relevo.records import Event, Item
from relevo.settings import PrivacySettings
from relevo.tiers.streaming import RecommendRequest

CATALOG = [Item(id=f"h{i}", title=f"Horror night {i}: the haunting", tags=["Horror"]) for i in range(8)] + [
    Item(id=f"a{i}", title=f"Animated family adventure {i}", tags=["Animation"]) for i in range(8)
] + [Item(id=f"p{i}", title=f"Popular blockbuster {i}", tags=["Action"]) for i in range(4)]


def seed(engine, user: str, genre: str) -> None:
    engine.ingest([Event(user_id=user, item_id=f"{genre}{i}", type="purchase") for i in range(3)])


@pytest.fixture
def engine(make_engine):
    engine = make_engine()
    engine.add_items(CATALOG)
    # some popularity so non-profiled answers are well defined
    engine.ingest([Event(user_id=f"crowd{i}", item_id=f"p{i % 4}", type="click") for i in range(40)])
    seed(engine, "horror_fan", "h")
    seed(engine, "cartoon_fan", "a")
    assert engine.wait_idle(10)
    return engine


def ids(rec) -> list[str]:
    return [s.item_id for s in rec.items]


def test_non_profiled_request_ignores_history(engine):
    profiled = {u: ids(engine.recommend(RecommendRequest(u, 5))) for u in ("horror_fan", "cartoon_fan")}
    assert profiled["horror_fan"] != profiled["cartoon_fan"]  # histories matter when profiled
    recs = {u: engine.recommend(RecommendRequest(u, 5, non_profiled=True)) for u in ("horror_fan", "cartoon_fan")}
    assert ids(recs["horror_fan"]) == ids(recs["cartoon_fan"])  # swapping histories changes nothing
    assert all(r.fallback == "non_profiled" and r.tier == "popularity" for r in recs.values())
    logged = engine.decisions.get(recs["horror_fan"].decision_id)
    assert logged.fallback == "non_profiled" and logged.features == [] and logged.feature_names == []


def test_without_personalization_consent_nothing_personal_is_kept_or_used(engine):
    for user in ("horror_fan", "cartoon_fan"):
        engine.put_consent(user, {"personalization": False})
        assert engine.features.get("users", user) is None  # withdrawal deletes the derived state
    seed(engine, "horror_fan", "h")
    seed(engine, "cartoon_fan", "a")
    assert engine.wait_idle(10)
    assert engine.features.get("users", "horror_fan") is None  # and no new state is built
    a, b = (engine.recommend(RecommendRequest(u, 5)) for u in ("horror_fan", "cartoon_fan"))
    assert ids(a) == ids(b) and a.fallback == "non_profiled"
    assert engine.decisions.get(a.decision_id).consent["personalization"] is False
    # item popularity (an aggregate) still learns from their events
    from relevo.context.state import ItemStats

    assert ItemStats.decode("h0", engine.features.get("item_stats_p0", "h0")).events >= 2


def test_without_profiling_only_the_session_is_kept(engine):
    engine.put_consent("horror_fan", {"profiling": False})
    from relevo.context.state import UserState

    state = UserState.decode(engine.features.get("users", "horror_fan"))
    assert state.vector is None and state.counters == {} and state.tag_affinity == {}
    assert state.session_vector is not None  # the current session still personalizes
    engine.ingest([Event(user_id="horror_fan", item_id="h5", type="click")])
    assert engine.wait_idle(10)
    state = UserState.decode(engine.features.get("users", "horror_fan"))
    assert state.vector is None and state.session_events >= 1
    rec = engine.recommend(RecommendRequest("horror_fan", 3, tier="streaming"))
    assert rec.tier == "streaming"  # the session still personalizes ...
    rows = engine.decisions.get(rec.decision_id).features
    assert all(r[1] == 0.0 for r in rows)  # ... without any long-term (user) similarity
    assert any(r[2] > 0.0 for r in rows)


def test_deployment_defaults_apply_until_a_user_chooses(make_engine, tmp_path):
    engine = make_engine(home=tmp_path / "d", privacy=PrivacySettings(default_personalization=False))
    engine.add_items(CATALOG)
    seed(engine, "u", "h")
    assert engine.wait_idle(10)
    assert engine.features.get("users", "u") is None
    assert engine.recommend(RecommendRequest("u", 3)).fallback == "non_profiled"
    engine.put_consent("u", {"personalization": True})
    seed(engine, "u", "h")
    assert engine.wait_idle(10)
    assert engine.recommend(RecommendRequest("u", 3, tier="streaming")).tier == "streaming"


def test_export_holds_everything_stored_about_the_user(engine):
    engine.put_preferences("horror_fan", {"liked_tags": ["Horror"]})
    engine.put_consent("horror_fan", {"emotion": True})
    rec = engine.recommend(RecommendRequest("horror_fan", 3, context={"page": "home"}))
    engine.feedback(rec.decision_id, rec.items[0].item_id, 1.0)
    doc = engine.export_user("horror_fan")
    orjson.dumps(doc)  # machine-readable as it stands
    assert doc["format"] == "relevo-export/1" and doc["counts"] == {"events": 3, "decisions": 1}
    assert [e["item_id"] for e in doc["events"]] == ["h0", "h1", "h2"]
    assert len(doc["profile"]["long_term_vector"]) == engine.index.dim
    assert doc["preferences"] == {"liked_tags": ["Horror"]}
    assert doc["consent"]["recorded"]["emotion"] is True and doc["consent"]["in_force"]["personalization"] is True
    [audit] = doc["decisions"]
    assert audit["decision_id"] == rec.decision_id
    assert audit["context"] == {"page": "home"} and audit["rewards"] == [1.0, None, None]  # open window
    assert "cartoon_fan" not in orjson.dumps(doc).decode()
    engine.erase_user("horror_fan")
    empty = engine.export_user("horror_fan")
    assert empty["events"] == [] and empty["profile"] is None and empty["decisions"] == []


def test_audit_record(engine):
    rec = engine.recommend(RecommendRequest("horror_fan", 3, context={"email": "x@example.com"}, tier="streaming"))
    audit = engine.audit(rec.decision_id)
    assert audit["features_used"] == ["bias", "user_similarity", "session_similarity", "popularity", "recency",
                                      "preference_match"]
    assert [i["propensity"] for i in audit["items"]] == [s.propensity for s in rec.items]
    assert audit["consent"] == {"personalization": True, "profiling": True, "emotion": False, "llm": False}
    assert audit["policy"] == "linear_ts" and audit["tier"] == "streaming" and audit["model"].startswith("encoder=")
    assert audit["expires_at"] > audit["created_at"] + 80 * 86400
    assert "x@example.com" not in orjson.dumps(audit).decode()  # request context is not in the audit view
    assert [a["decision_id"] for a in engine.audits_for_user("horror_fan")] == [rec.decision_id]
    with pytest.raises(NotFound):
        engine.audit("nope")


def test_event_text_is_redacted_before_storage(engine):
    engine.ingest([Event(id="rv1", user_id="horror_fan", item_id="h3", type="review",
                         text="Scary! Mail me at jane.doe@example.com or call +44 20 7946 0958")])
    assert engine.wait_idle(10)
    [stored] = [e for e in engine.events.for_user("horror_fan") if e.id == "rv1"]
    assert stored.text == "Scary! Mail me at [EMAIL] or call [PHONE]"
    assert engine.metrics.pii_redacted._value.get() == 2
    assert "jane.doe" not in orjson.dumps(engine.export_user("horror_fan")).decode()


def test_no_user_id_in_metrics(engine):
    engine.recommend(RecommendRequest("horror_fan", 3))
    engine.put_consent("cartoon_fan", {"emotion": True})
    text = engine.metrics.render().decode()
    assert "relevo_recommendations" in text
    assert "horror_fan" not in text and "cartoon_fan" not in text
