"""The same engine with every store on the real Redis."""

from __future__ import annotations

from relevo.records import Event, Item
from relevo.settings import StorageSettings
from relevo.tiers.streaming import RecommendRequest


def test_engine_on_redis_end_to_end_and_restart(make_engine, redis_server, redis_prefix, tmp_path):
    url = f"{redis_server}?prefix={redis_prefix}"
    storage = StorageSettings(event_log=url, feature_store=url, decision_log=url, model_store=url)
    engine = make_engine(home=tmp_path / "r", storage=storage)
    engine.add_items([
        Item(id="a", title="Alien (1979)", tags=["Horror"]),
        Item(id="b", title="The Thing (1982)", tags=["Horror"]),
        Item(id="c", title="Toy Story (1995)", tags=["Animation"]),
        Item(id="d", title="Finding Nemo (2003)", tags=["Animation"]),
    ])
    assert engine.ingest([Event(id="r1", user_id="u", item_id="a", type="purchase")]).accepted == 1
    assert engine.ingest([Event(id="r1", user_id="u", item_id="a", type="purchase")]).duplicates == 1
    assert engine.wait_idle(10)
    rec = engine.recommend(RecommendRequest("u", 2, tier="streaming"))
    assert rec.tier == "streaming" and rec.items[0].item_id == "b"
    assert engine.feedback(rec.decision_id, "b", 1.0) == "joined"
    engine.close()
    again = make_engine(home=tmp_path / "r", storage=storage)
    assert len(again.catalog) == 4 and again.policy.version == 1
    assert again.decisions.get(rec.decision_id).items[0].item_id == "b"
    assert again.recommend(RecommendRequest("u", 1)).items[0].item_id == "b"
