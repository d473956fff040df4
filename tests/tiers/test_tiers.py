"""The orchestrator, the edge cache and its invalidation, deadlines and degradation,
on a real engine (SQLite, MiniLM)."""

from __future__ import annotations

import statistics
import time

import numpy as np
import pytest

from relevo.records import Event, Item
from relevo.tiers.edge import CacheEntry, ResponseCache
from relevo.tiers.origin import OriginTier
from relevo.tiers.streaming import RecommendRequest

GENRES = {
    "Horror": ["haunted house", "zombie outbreak", "vampire castle", "slasher camp", "ghost ship", "cursed doll"],
    "Animation": ["talking toys", "lost fish", "robot friend", "snow queen", "dragon trainer", "space ranger"],
    "Drama": ["family dinner", "court case", "small town", "old letters", "long winter", "quiet farm"],
}
CATALOG = [Item(id=f"{g[:1].lower()}{k}", title=f"A {t} story", tags=[g]) for g, ts in GENRES.items()
           for k, t in enumerate(ts)]


@pytest.fixture
def engine(make_engine):
    engine = make_engine()
    engine.add_items(CATALOG)
    return engine


def history(engine, user: str, items: list[str], kind: str = "click") -> None:
    engine.ingest([Event(user_id=user, item_id=i, type=kind) for i in items])
    assert engine.wait_idle(10)


def rec(engine, user: str, **kw):
    return engine.recommend(RecommendRequest(user, kw.pop("n", 3), **kw))


def test_tier_selection_follows_the_request_and_the_user(engine):
    first = rec(engine, "newbie")
    assert first.tier == "origin" and first.tier_reason == "new user" and len(first.items) == 3
    history(engine, "light", ["h0", "h1"])
    assert (r := rec(engine, "light")).tier == "origin" and r.tier_reason == "low confidence"
    history(engine, "fan", ["h0", "h1", "h2", "h3", "h4", "h5"])
    active = rec(engine, "fan")
    assert active.tier == "streaming" and active.tier_reason == "active session"
    again = rec(engine, "fan")  # nothing happened since: the cached answer, under a new decision id
    assert again.tier == "edge" and again.tier_reason == "cached"
    assert [i.item_id for i in again.items] == [i.item_id for i in active.items]
    assert again.decision_id != active.decision_id
    logged = engine.decisions.get(again.decision_id)
    assert logged.tier == "edge" and logged.policy == "linear_ts" and logged.tier_reason == "cached"
    explained = rec(engine, "fan", explain=True)  # the cached slate, explained (from the precomputed cache if any)
    assert explained.tier == "edge" and explained.explanation is not None
    assert (r := rec(engine, "newcomer", explain=True)).tier == "origin" and r.tier_reason == "explain requested"
    assert (r := rec(engine, "fan", tier="origin")).tier == "origin" and r.tier_reason == "requested"
    assert rec(engine, "fan", non_profiled=True).tier == "popularity"
    # a new item makes the cached answer out of date: the origin answers (and may show it)
    engine.add_items([Item(id="h9", title="A brand new haunted lighthouse story", tags=["Horror"])])
    fresh = rec(engine, "fan")
    assert fresh.tier == "origin" and fresh.tier_reason == "new items since the cached answer"
    # the response says which tier answered and why
    body = fresh.to_dict()
    assert body["tier"] == "origin" and body["tier_reason"] == "new items since the cached answer"


def test_a_users_event_invalidates_their_cached_answers(engine):
    history(engine, "fan", ["h0", "h1", "h2", "a0", "a1", "d0"])
    first = rec(engine, "fan", n=4)
    assert rec(engine, "fan", n=4).tier == "edge"
    clicked = first.items[0].item_id
    engine.ingest([Event(user_id="fan", item_id=clicked, type="click")])
    # right after ingest (before the stream has applied it) and after: never the stale list
    after = rec(engine, "fan", n=4)
    assert after.tier != "edge"
    assert engine.wait_idle(10)
    # once applied, the refresher has recomputed the answer: an edge hit on a list that
    # reflects the click (the clicked item is seen, so it is not recommended again)
    applied = rec(engine, "fan", n=4)
    assert applied.tier == "edge" and clicked not in [i.item_id for i in applied.items]
    assert engine.metrics.refreshes.labels("stored")._value.get() >= 1
    other = rec(engine, "other")  # another user's cache is untouched by fan's events
    history(engine, "other", ["d1", "d2", "d3", "d4", "d5", "a2"])
    assert engine.metrics.invalidation_lag._sum.get() > 0  # lag measured once the event was applied
    assert engine.metrics.invalidations._value.get() >= 1
    assert other.tier == "origin"


def test_an_answer_computed_before_an_invalidation_is_not_cached():
    cache = ResponseCache(ttl_s=60)
    generation = cache.generation("u")
    cache.invalidate(["u"])  # the user's event lands while the answer is being computed
    assert not cache.put("u", b"k", CacheEntry(None, None, time.time(), 0), generation)  # type: ignore[arg-type]
    assert cache.get("u", b"k", time.time()) is None
    assert cache.put("u", b"k", CacheEntry(None, None, time.time(), 0), cache.generation("u"))  # type: ignore[arg-type]
    assert cache.get("u", b"k", time.time() + 61) is None  # past the TTL: not served
    assert cache.get("u", b"k", time.time() + 61, max_age_s=120) is not None


def test_cache_is_bounded_by_users():
    cache = ResponseCache(ttl_s=60, max_users=3)
    for k in range(5):
        cache.put(f"u{k}", b"k", CacheEntry(None, None, time.time(), 0), 0)  # type: ignore[arg-type]
    assert len(cache) == 3 and cache.get("u0", b"k", time.time()) is None and cache.get("u4", b"k", time.time())


def test_a_budget_smaller_than_the_origins_cost_is_answered_by_a_lower_tier_in_time(engine):
    history(engine, "fan", ["h0", "h1", "h2", "a0", "a1", "d0"])
    for _ in range(20):  # the cost model learns what the origin costs here
        assert rec(engine, "fan", tier="origin").tier == "origin"
    origin_cost = engine.orchestrator.costs.expected_ms("origin")
    budget = 0.5 * origin_cost
    answers = [rec(engine, "fan", tier="origin", budget_ms=budget) for _ in range(20)]
    assert all(a.tier != "origin" and "origin:budget" in a.degraded for a in answers)
    assert statistics.median(a.latency_ms for a in answers) <= budget, (budget, [a.latency_ms for a in answers])
    tiny = rec(engine, "fan", tier="origin", budget_ms=0.01)  # nothing fits: popularity still answers
    assert tiny.tier == "popularity" and {"origin:budget", "streaming:budget", "edge:budget"} <= set(tiny.degraded)
    assert len(tiny.items) == 3
    assert engine.metrics.degradations.labels("origin", "budget")._value.get() >= 21


def test_a_failing_tier_degrades_to_the_next_and_the_request_succeeds(engine, monkeypatch):
    history(engine, "fan", ["h0", "h1", "h2", "a0", "a1", "d0"])

    def broken(self, *args, **kwargs):
        raise RuntimeError("deep ranker crashed")

    monkeypatch.setattr(OriginTier, "_bonus", broken)
    answer = rec(engine, "fan", tier="origin")
    assert answer.tier == "streaming" and answer.degraded == ("origin:error",) and len(answer.items) == 3
    monkeypatch.setattr(type(engine.streaming), "_candidates", broken)
    down = rec(engine, "fan", tier="origin")  # origin and streaming both down: the edge re-scores
    assert down.tier == "edge" and down.degraded == ("origin:error", "streaming:error")
    decision = engine.decisions.get(down.decision_id)
    assert decision.policy == "edge_beta" and all(0 < i.propensity <= 1 for i in down.items)
    assert engine.feedback(down.decision_id, down.items[0].item_id, 1.0) == "joined"
    assert engine.edge_policy.policy.n_updates >= 1
    stranger = rec(engine, "stranger", tier="edge")  # no cached answer or candidates: popularity
    assert stranger.tier == "popularity" and stranger.degraded == ("edge:miss",) and len(stranger.items) == 3


def test_erasure_and_consent_withdrawal_purge_the_cache(engine):
    history(engine, "fan", ["h0", "h1", "h2", "a0", "a1", "d0"])
    rec(engine, "fan")
    assert rec(engine, "fan").tier == "edge"
    engine.put_consent("fan", {"personalization": False})
    assert rec(engine, "fan").tier == "popularity"
    engine.put_consent("fan", {"personalization": True})
    history(engine, "fan", ["d1", "d2", "d3", "d4", "d5"])
    rec(engine, "fan")
    receipt = engine.erase_user("fan")
    assert receipt.cached_responses >= 1 and receipt.ranker_examples >= 5
    assert engine.cache.candidates("fan", time.time(), 3600) is None
    assert rec(engine, "fan").tier == "origin"  # a new user again


def test_tier_metrics_are_exported(engine):
    history(engine, "fan", ["h0", "h1", "h2", "a0", "a1", "d0"])
    rec(engine, "fan")
    rec(engine, "fan")
    rec(engine, "fan", tier="origin", budget_ms=0.01)
    text = engine.metrics.render().decode()
    for name in ("relevo_tier_seconds_bucket{le=\"0.001\",tier=\"edge\"}", "relevo_tier_requests_total",
                 "relevo_degradations_total{cause=\"budget\",tier=\"origin\"}",
                 "relevo_edge_cache_lookups_total{result=\"hit\"}", "relevo_edge_cache_hit_ratio",
                 "relevo_invalidation_lag_seconds_count", "relevo_ranker_version", "relevo_ranker_examples_total"):
        assert name in text, name


def test_the_origin_skips_its_ranker_when_the_deadline_has_no_room_for_it(engine):
    history(engine, "fan", ["h0", "h1", "h2", "a0", "a1", "d0"])
    engine.ranker.train(3)
    version = engine.ranker.publish()
    ranked = rec(engine, "fan", tier="origin")
    assert ranked.tier == "origin" and ranked.degraded == ()
    assert engine.decisions.get(ranked.decision_id).ranker_version == version
    engine.orchestrator.costs._mean["ranker"] = 10_000.0  # the ranker now "costs" 10 s
    hurried = rec(engine, "fan", tier="origin")
    assert hurried.tier == "origin" and hurried.degraded == ("ranker:budget",)
    assert engine.decisions.get(hurried.decision_id).ranker_version is None


def test_popularity_order_is_partial_but_widens_for_filters(make_engine):
    from relevo.retrieval.catalog import Catalog

    catalog = Catalog()
    for k in range(5000):
        catalog.upsert(Item(id=f"p{k}", title=f"p{k}", tags=["rare"] if k < 3 else ["common"]))
        catalog.set_engagement(f"p{k}", float(k))  # the three "rare" items are the least popular
    top = catalog.popular_order(10)
    assert [catalog.id_at(int(r)) for r in top] == [f"p{k}" for k in range(4999, 4989, -1)]
    assert len(catalog.popular_order(1000)) == 1000 and len(catalog.popular_order(9000)) == 5000
    catalog.delete("p4999")
    assert catalog.id_at(int(catalog.popular_order(1, max_age_s=0)[0])) == "p4998"
    engine = make_engine()
    engine.add_items([Item(id=f"p{k}", title=f"item {k}", tags=["rare"] if k < 3 else ["common"]) for k in range(1500)],
                     vectors=np.eye(1500, 384, dtype=np.float32) + 0.01)
    for k in range(1500):
        engine.catalog.set_engagement(f"p{k}", float(k))
    rare = engine.streaming._popular(5, set(), engine.catalog.compile_filter({"tags": ["rare"]}).predicate)
    assert [s.item_id for s in rare] == ["p2", "p1", "p0"]  # found past the first 1,000


def test_edge_rescoring_uses_the_published_scorer_and_clicks_teach_the_edge_bandit(engine):
    history(engine, "fan", ["h0", "h1", "h2", "a0", "a1", "d0"])
    engine.ranker.train(3)
    version = engine.ranker.publish()
    rec(engine, "fan", tier="streaming")  # caches the user's candidates
    engine.ingest([Event(user_id="fan", item_id="d1", type="view")])  # clears the cached answer
    assert engine.wait_idle(10)
    edge = rec(engine, "fan", tier="edge", n=2)  # no cached answer for n=2: the edge re-scores
    decision = engine.decisions.get(edge.decision_id)
    assert edge.tier == "edge" and edge.degraded == () and decision.policy == "edge_beta"
    assert decision.ranker_version == version  # scored by the distilled 6-feature scorer
    before = engine.edge_policy.policy.n_updates
    engine.ingest([Event(user_id="fan", item_id=edge.items[0].item_id, type="click", decision_id=edge.decision_id)])
    assert engine.wait_idle(10)
    assert engine.edge_policy.policy.n_updates == before + 1  # the click's reward reached edge_beta
    assert engine.metrics.rewards.labels("joined")._value.get() >= 1


def test_a_slow_outlier_does_not_switch_a_stage_off_for_good():
    from relevo.deadline import CostModel, Deadline

    costs = CostModel({"ranker": 3.0})
    costs.observe("ranker", 400.0)  # one GC pause
    assert costs.expected_ms("ranker") > 150
    skips = 0
    while not Deadline(150.0).fits(costs.expected_ms("ranker")):
        costs.skipped("ranker")
        skips += 1
    assert skips <= 60  # tried (and re-measured) again after a bounded number of skips


def test_a_refresh_for_a_user_erased_meanwhile_is_not_stored(engine):
    history(engine, "fan", ["h0", "h1", "h2", "a0", "a1", "d0"])
    rec(engine, "fan")
    generation = engine.cache.generation("fan")
    [request] = engine.cache.requests("fan")
    engine.erase_user("fan")
    assert not engine.orchestrator.refresh(request, generation)
    assert "fan" not in engine.cache and engine.cache.requests("fan") == []


def test_withdrawing_consent_drops_cached_candidates_too(engine):
    history(engine, "fan", ["h0", "h1", "h2", "a0", "a1", "d0"])
    rec(engine, "fan", tier="streaming")
    assert engine.cache.candidates("fan", time.time(), 3600)
    engine.put_consent("fan", {"profiling": False})
    assert engine.cache.candidates("fan", time.time(), 3600) is None and "fan" not in engine.cache


def test_cache_generations_stay_bounded_and_safe():
    cache = ResponseCache(ttl_s=60, max_marks=3)
    g = cache.generation("a")
    cache.invalidate(["b", "c", "d", "e"])  # "b" falls out of the marks: the floor rises
    assert cache.generation("b") == cache.generation("zz") and len(cache._marks) == 3
    assert cache.put("a", b"k", CacheEntry(None, None, time.time(), 0), g) is False  # type: ignore[arg-type]
    assert cache.put("a", b"k", CacheEntry(None, None, time.time(), 0), cache.generation("a"))  # type: ignore[arg-type]
    for k in range(12):
        cache.put("a", f"k{k}".encode(), CacheEntry(None, None, time.time(), 0), cache.generation("a"))  # type: ignore[arg-type]
    assert len(cache) == 8  # entries per user are capped
