"""relevo.client against a live server (uvicorn on a free port, access control on): every
endpoint round-trips through the sync client, the async client covers items, events,
recommendations, feedback, errors and batching; the error table maps each status to its
exception; retries honour Retry-After, give up after ``retries``, never repeat a
non-idempotent request whose answer was lost, and never duplicate events."""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace

import httpx
import pytest

from relevo.api.auth import hash_key
from relevo.cli.server import BackgroundServer, free_port, wait_healthy
from relevo.client import (
    AppendResult,
    AsyncClient,
    BadRequest,
    BatchResult,
    Client,
    Conflict,
    ConnectionFailed,
    Consent,
    ErasureReceipt,
    FeedbackResult,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    Recommendation,
    RelevoAPIError,
    ScoredItem,
    ServerError,
    Unauthorized,
)
from relevo.client._errors import parse_retry_after
from relevo.engine import Engine
from relevo.records import Event, Item
from relevo.settings import ApiSettings
from tests.api.conftest import CATALOG, KEY
from tests.api.test_experiments import DESIGN
from tests.api.test_personalizer import DOC_MULTISLOT, DOC_RANK

RECOMMEND_KEY = "rlv_tests-recommend-only-5b1e0c77a3f94d2e"
LIMITED_KEY = "rlv_tests-rate-limited-9c2d4e6f8a0b1c3d"
API = ApiSettings(keys=[
    ApiSettings.Key(id="tests", hash=hash_key(KEY), scopes=ApiSettings.SCOPES),
    ApiSettings.Key(id="web", hash=hash_key(RECOMMEND_KEY), scopes=("recommend",)),
    ApiSettings.Key(id="slow", hash=hash_key(LIMITED_KEY), scopes=("admin",), rate_per_s=1, burst=1),
])
ITEM_IDS = [it.id for it in CATALOG]


@dataclass
class Live:
    url: str
    engine: Engine


@pytest.fixture
def live(make_engine) -> Iterator[Live]:
    engine = make_engine(api=API)
    engine.add_items(CATALOG)
    server = BackgroundServer(engine, "127.0.0.1", free_port())
    server.start()
    url = f"http://127.0.0.1:{server.port}"
    try:
        wait_healthy(url, timeout=15)
        yield Live(url, engine)
    finally:
        server.stop()


@pytest.fixture
def client(live) -> Iterator[Client]:
    with Client(live.url, KEY, backoff=0.01) as c:
        yield c


class Recording(httpx.BaseTransport):
    """httpx's own transport, recording each request; ``drop`` = (method, path) loses the
    answer of the next such request after the server has handled it (a reset connection)."""

    def __init__(self, drop: tuple[str, str] | None = None):
        self.inner = httpx.HTTPTransport()
        self.requests: list[tuple[str, str]] = []
        self.drop = drop

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append((request.method, request.url.path))
        response = self.inner.handle_request(request)
        if self.drop == (request.method, request.url.path):
            self.drop = None
            response.read()
            response.close()
            raise httpx.ReadError("connection reset after the server answered", request=request)
        return response

    def close(self) -> None:
        self.inner.close()


def _events(n: int, prefix: str = "u") -> list[dict]:
    return [{"user_id": f"{prefix}{i % 50}", "item_id": ITEM_IDS[i % len(ITEM_IDS)], "type": "view"}
            for i in range(n)]


# -- every endpoint, sync -------------------------------------------------------------------

def test_items_round_trip(client):
    added = client.add_items([Item(id="up", title="Up (2009)", tags=["Animation"]),
                              {"id": "the thing", "title": "The Thing (1982)", "attributes": {"year": 1982}}])
    assert added == 2
    up = client.get_item("up")
    assert isinstance(up, Item) and (up.title, up.tags) == ("Up (2009)", ["Animation"]) and up.created_at
    assert client.get_item("the thing").attributes == {"year": 1982}  # the id is escaped in the path
    assert client.delete_item("up") is None
    with pytest.raises(NotFound) as err:
        client.get_item("up")
    assert (err.value.status, err.value.code, err.value.field) == (404, "not_found", "item_id")


def test_events_recommendations_feedback_and_decisions(client, live):
    events = [Event(user_id="ana", item_id="alien", type="purchase"),
              {"user_id": "ana", "item_id": "scream", "type": "click"}]
    assert client.send_events(events) == AppendResult(accepted=2, duplicates=0)
    assert client.send_events(events[:1]) == AppendResult(accepted=0, duplicates=1)  # same record, same id
    assert live.engine.events.count() == 2
    assert live.engine.wait_idle()

    rec = client.recommend("ana", n=3, context={"device": "mobile"}, filters={"tags": ["Horror", "Animation"]},
                           explain=True)
    assert isinstance(rec, Recommendation) and rec.decision_id and rec.tier and rec.latency_ms >= 0
    assert 1 <= len(rec.items) <= 3 and all(isinstance(i, ScoredItem) for i in rec.items)
    assert {i.item_id for i in rec.items} <= {"alien", "scream", "toy", "shrek"}
    assert all(0 < i.propensity <= 1 and isinstance(i.explored, bool) for i in rec.items)
    assert any(i.reasons for i in rec.items)  # explain=True
    assert rec.tier == "origin" and rec.tier_reason == "explain requested" and rec.degraded == ()
    with pytest.raises(AttributeError):
        rec.tier = "edge"  # frozen

    first = rec.items[0].item_id
    assert client.feedback(rec.decision_id, first, 1.0) == FeedbackResult(learned=True, status="joined")
    assert client.feedback(rec.decision_id, first, 0.0) == FeedbackResult(learned=False, status="duplicate")

    audit = client.audit(rec.decision_id)
    assert audit["decision_id"] == rec.decision_id and [i["item_id"] for i in audit["items"]] == [i.item_id for i in rec.items]
    assert [d["decision_id"] for d in client.user_decisions("ana", limit=5)] == [rec.decision_id]
    plain = client.recommend("ana", n=2, non_profiled=True, tier="streaming")
    assert isinstance(plain, Recommendation) and len(plain.items) == 2
    hurried = client.recommend("ana", n=2, tier="origin", budget_ms=0.01)  # nothing fits: popularity, said so
    assert hurried.tier == "popularity" and "origin:budget" in hurried.degraded and len(hurried.items) == 2
    popular = client.popular(3)
    assert [p["item_id"] for p in popular][:1] == ["alien"] and all(0 <= p["score"] <= 1 for p in popular)


def test_users_round_trip(client, live):
    assert client.put_preferences("ana", {"liked_tags": ["Horror"], "language": "en"})["liked_tags"] == ["Horror"]
    assert client.get_preferences("ana") == {"liked_tags": ["Horror"], "disliked_tags": [], "language": "en"}
    consent = client.put_consent("ana", emotion=True)
    assert isinstance(consent, Consent) and consent.emotion and consent.updated_at
    assert client.get_consent("ana") == consent
    described = client.describe_preferences("zoe", "funny animated films, nothing scary")
    assert described["liked_tags"] == ["Comedy", "Animation"] and described["disliked_tags"] == ["Horror"]
    assert described["source"] == "reasoner" and client.get_preferences("zoe")["exclude_tags"] == ["Horror"]
    assert client.put_consent("ana", emotion=False, llm=False).emotion is False

    client.send_events([{"user_id": "ana", "item_id": "alien", "type": "click"}])
    assert live.engine.wait_idle()
    client.recommend("ana", n=2)
    exported = client.export_user("ana")
    assert exported["user_id"] == "ana" and exported["counts"] == {"events": 1, "decisions": 1}

    receipt = client.erase_user("ana")
    assert isinstance(receipt, ErasureReceipt)
    assert (receipt.user_id, receipt.events, receipt.decisions, receipt.preferences, receipt.consent) == \
        ("ana", 1, 1, True, True)
    assert receipt.kept_as_aggregates
    assert client.export_user("ana")["counts"] == {"events": 0, "decisions": 0}


def test_experiments_round_trip(client):
    created = client.experiments.create(DESIGN)
    assert created["id"] == DESIGN["id"]
    assert client.experiments.get(DESIGN["id"])["id"] == DESIGN["id"]
    results = client.experiments.results(DESIGN["id"])
    assert isinstance(results, dict) and results
    with pytest.raises(Conflict) as err:
        client.experiments.create(DESIGN)
    assert err.value.status == 409
    client.experiments.stop(DESIGN["id"])
    with pytest.raises(NotFound):
        client.experiments.results("nope")


def test_operations(client):
    assert client.health() == {"status": "ok"}
    assert client.stats()["items"] == len(CATALOG)
    assert "relevo_" in client.metrics()


def test_personalizer_round_trip(client, live):
    p = client.personalizer
    ranked = p.rank(DOC_RANK)
    assert ranked["eventId"] == DOC_RANK["eventId"] and ranked["rewardActionId"] == ranked["ranking"][0]["id"]
    assert p.reward(DOC_RANK["eventId"], 1.0) is None
    deferred = copy.deepcopy(DOC_RANK) | {"eventId": "deferred-1", "deferActivation": True}
    p.rank(deferred)
    assert p.activate("deferred-1") is None

    slots = p.multislot_rank(DOC_MULTISLOT)
    assert [s["id"] for s in slots["slots"]] == ["Main Article", "Side Bar"]
    p.multislot_reward("event-ms-1", {"Main Article": 1, "Side Bar": 0})
    p.multislot_rank(copy.deepcopy(DOC_MULTISLOT) | {"eventId": "ms-deferred", "deferActivation": True})
    p.multislot_activate("ms-deferred")
    policy = live.engine.personalizer.policy.policy
    assert policy.n_updates == 3  # one single-slot reward, two slot rewards

    assert p.get_configuration()["learningMode"] == "Online"
    assert p.put_configuration({"learningMode": "Apprentice"})["learningMode"] == "Apprentice"
    p.put_configuration({"learningMode": "Online"})

    for t in range(20):
        body = p.rank({"contextFeatures": [{"t": t % 2}], "actions": DOC_RANK["actions"], "eventId": f"ev{t}"})
        p.reward(f"ev{t}", float(body["rewardActionId"] == "NewsArticle"))
    evaluation = p.evaluate({"name": "explore less", "policies": [{"name": "greedy", "arguments": "exploration=0.05"}]})
    assert evaluation["events"] == 21 and p.get_evaluation(evaluation["id"]) == evaluation

    with pytest.raises(Conflict) as dup:
        p.rank(DOC_RANK)
    assert (dup.value.code, dup.value.field) == ("Conflict", "eventId")
    with pytest.raises(NotFound) as missing:
        p.get_evaluation("nope")
    assert (missing.value.code, missing.value.inner_code, missing.value.field) == \
        ("ResourceNotFound", "EvaluationNotFound", "evaluationId")
    with pytest.raises(BadRequest) as bad:
        p.put_configuration({"learningMode": "Sometimes"})
    assert (bad.value.status, bad.value.code, bad.value.field) == (400, "BadRequest", "learningMode")


# -- error mapping --------------------------------------------------------------------------

ERRORS = [
    # (name, key, call, exception, status, code, field)
    ("wrong key", "rlv_not-a-key", lambda c: c.recommend("ana"), Unauthorized, 401, "unauthenticated", None),
    ("no key", None, lambda c: c.stats(), Unauthorized, 401, "unauthenticated", None),
    ("recommend-only key on an admin route", RECOMMEND_KEY, lambda c: c.stats(), Forbidden, 403, "forbidden",
     None),
    ("admin does not erase", RECOMMEND_KEY, lambda c: c.erase_user("ana"), Forbidden, 403, "forbidden", None),
    ("unknown item", KEY, lambda c: c.delete_item("nope"), NotFound, 404, "not_found", "item_id"),
    ("unknown decision", KEY, lambda c: c.audit("nope"), NotFound, 404, "not_found", "decision_id"),
    ("unknown event type", KEY, lambda c: c.send_events([{"user_id": "a", "item_id": "alien", "type": "teleport"}]),
     BadRequest, 422, "unknown_event_type", "events[0].type"),
    ("event on an unknown item", KEY, lambda c: c.send_events([{"user_id": "a", "item_id": "zz", "type": "view"}]),
     BadRequest, 422, "unknown_item", "events[0].item_id"),
    ("n out of range", KEY, lambda c: c.recommend("ana", n=0), BadRequest, 422, "invalid_field", "n"),
    ("unknown tier", KEY, lambda c: c.recommend("ana", tier="moon"), BadRequest, 422, "invalid_value", "tier"),
    ("item without content", KEY, lambda c: c.add_items([{"id": "x"}]), BadRequest, 422, "invalid_field",
     "items[0]"),
    ("batch over 1,000", KEY, lambda c: c.send_events(_events(1001)), PayloadTooLarge, 413, "batch_too_large",
     "events"),
    ("duplicate experiment", KEY, lambda c: [c.experiments.create(DESIGN), c.experiments.create(DESIGN)],
     Conflict, 409, "conflict", "id"),
    ("Personalizer without a key", "rlv_not-a-key", lambda c: c.personalizer.rank(DOC_RANK), Unauthorized, 401,
     "PermissionDenied", None),
    ("Personalizer bad body", KEY, lambda c: c.personalizer.rank({"actions": []}), BadRequest, 400, "BadRequest",
     "actions"),
]


@pytest.mark.parametrize("name, key, call, exc, status, code, field", ERRORS, ids=[e[0] for e in ERRORS])
def test_errors_map_to_typed_exceptions(live, name, key, call, exc, status, code, field):
    with Client(live.url, key, retries=0) as c:
        with pytest.raises(exc) as err:
            call(c)
    e = err.value
    assert isinstance(e, RelevoAPIError) and (e.status, e.code) == (status, code), e
    assert e.field == field and e.message and e.attempts == 1
    if field is not None:
        assert field in str(e)


def test_rate_limited_without_retries_raises_at_once(live):
    with Client(live.url, LIMITED_KEY, retries=0) as c:
        c.stats()
        start = time.monotonic()
        with pytest.raises(RateLimited) as err:
            c.stats()
    assert time.monotonic() - start < 0.5
    assert (err.value.status, err.value.code, err.value.retry_after) == (429, "rate_limited", 1.0)


def test_rate_limited_retry_waits_for_retry_after(live):
    transport = Recording()
    with Client(live.url, LIMITED_KEY, retries=2, transport=transport) as c:
        c.stats()
        start = time.monotonic()
        assert c.stats()["items"] == len(CATALOG)  # 429, waits Retry-After (1 s), then passes
        elapsed = time.monotonic() - start
    assert transport.requests == [("GET", "/v1/stats")] * 3
    assert 0.95 <= elapsed < 2.0


def test_rate_limited_after_retries_exhausted(live):
    waits: list[float] = []
    with Client(live.url, LIMITED_KEY, retries=3) as c:
        c._sleep = waits.append  # no time passes, so every retry meets an empty bucket
        c.stats()
        with pytest.raises(RateLimited) as err:
            c.stats()
    assert err.value.attempts == 4 and err.value.retry_after == 1.0
    assert len(waits) == 3 and all(1.0 <= w <= 1.05 for w in waits)  # Retry-After, a little jitter


def test_closed_port_is_connection_failed_after_retries():
    transport = Recording()
    port = free_port()  # nothing listens on it
    start = time.monotonic()
    with Client(f"http://127.0.0.1:{port}", KEY, retries=2, backoff=0.05, transport=transport) as c:
        with pytest.raises(ConnectionFailed) as err:
            c.recommend("ana")  # not idempotent, but a refused connection never reached a server
    assert err.value.attempts == 3 and err.value.status is None and err.value.code == "connection_failed"
    assert len(transport.requests) == 3
    assert 0.05 <= time.monotonic() - start < 2.0  # waited 0.025-0.05 s, then 0.05-0.1 s


def test_lost_answer_repeats_idempotent_requests_only(live):
    decisions_before = live.engine.decisions.for_user("ana", 100)
    transport = Recording(drop=("POST", "/v1/recommendations"))
    with Client(live.url, KEY, retries=3, backoff=0.01, transport=transport) as c:
        with pytest.raises(ConnectionFailed) as err:
            c.recommend("ana")  # it may have been logged: never asked twice
        assert err.value.attempts == 1 and len(transport.requests) == 1
        assert len(live.engine.decisions.for_user("ana", 100)) == len(decisions_before) + 1

        transport.drop = ("POST", "/v1/events")
        result = c.send_events(_events(10))  # no ids given: the client's ids make the retry safe
    assert result == AppendResult(accepted=0, duplicates=10)  # the first try was appended
    assert transport.requests[1:] == [("POST", "/v1/events")] * 2
    assert live.engine.events.count() == 10


def test_server_errors_and_retry_after_dates():
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.headers.get("authorization"))
        return httpx.Response(503, text="<html>bad gateway</html>")

    with Client("http://relevo.test", "rlv_k", retries=2, backoff=0.001,
                transport=httpx.MockTransport(handler)) as c:
        with pytest.raises(ServerError) as err:
            c.stats()
        assert (err.value.status, err.value.code, err.value.attempts) == (503, "http_503", 3)
        assert calls == ["Bearer rlv_k"] * 3
        calls.clear()
        with pytest.raises(ServerError):
            c.recommend("ana")  # not idempotent: a 503 is not retried
        assert len(calls) == 1
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("2") == 2.0 and parse_retry_after("soon") is None and parse_retry_after(None) is None


# -- batching -------------------------------------------------------------------------------

def test_batcher_sends_2500_events_in_3_requests_without_duplicates(live):
    transport = Recording(drop=("POST", "/v1/events"))  # the first batch's answer is lost, then retried
    with Client(live.url, KEY, backoff=0.01, transport=transport) as c:
        with c.event_batcher(max_batch=1000, max_delay_s=30) as batch:
            for event in _events(2500):
                batch.add(event)
            assert batch.result.requests == 2 and batch.pending == 500
    assert batch.result == BatchResult(accepted=1500, duplicates=1000, requests=3, failed=0)
    assert transport.requests == [("POST", "/v1/events")] * 4  # 3 batches, one retried
    assert live.engine.events.count() == 2500  # every event once


def test_batcher_flushes_on_time_and_reports_failures(live):
    with Client(live.url, KEY, retries=0) as c:
        batch = c.event_batcher(max_batch=100, max_delay_s=0.1)
        batch.extend(_events(3))
        deadline = time.monotonic() + 5
        while batch.result.requests == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert batch.result == BatchResult(accepted=3, requests=1) and batch.pending == 0
        batch.add({"user_id": "a", "item_id": "zz", "type": "view"})  # the server refuses the batch
        with pytest.raises(BadRequest):
            batch.close()
        assert batch.result.failed == 1 and batch.failed_events[0]["item_id"] == "zz" and batch.failed_events[0]["id"]
        assert live.engine.events.count() == 3

        pairs = c.event_batcher(max_batch=2, max_delay_s=30)
        with pytest.raises(BadRequest):  # the first full batch fails; three events stay buffered
            pairs.extend([{"user_id": "a", "item_id": "zz", "type": "view"}, *_events(4, prefix="p")])
        assert pairs.pending == 3
        assert pairs.close() == BatchResult(accepted=3, requests=2, failed=2)
        assert live.engine.events.count() == 6
        with pytest.raises(ValueError):
            c.event_batcher(max_batch=1001)


# -- async ----------------------------------------------------------------------------------

def test_async_client_round_trip(live):
    async def main():
        async with AsyncClient(live.url, KEY, backoff=0.01) as c:
            assert await c.health() == {"status": "ok"}
            assert await c.add_items([{"id": "up", "title": "Up (2009)", "tags": ["Animation"]}]) == 1
            assert (await c.get_item("up")).title == "Up (2009)"
            sent = await c.send_events([Event(user_id="bo", item_id="up", type="purchase"),
                                        {"user_id": "bo", "item_id": "toy", "type": "click"}])
            assert sent == AppendResult(2, 0)
            live.engine.wait_idle()
            rec = await c.recommend("bo", n=2, filters={"tags": ["Animation", "Horror"]})  # seen ones excluded
            assert isinstance(rec, Recommendation) and len(rec.items) == 2
            assert await c.feedback(rec.decision_id, rec.items[0].item_id, 1.0) == FeedbackResult(True, "joined")
            assert (await c.personalizer.rank(DOC_RANK))["eventId"] == DOC_RANK["eventId"]
            await c.delete_item("up")
            with pytest.raises(NotFound):
                await c.get_item("up")
            with pytest.raises(BadRequest) as err:
                await c.send_events([{"user_id": "bo", "item_id": "toy", "type": "teleport"}])
            assert err.value.field == "events[0].type"
            with pytest.raises(Conflict):
                await c.personalizer.rank(DOC_RANK)
        async with AsyncClient(live.url, RECOMMEND_KEY) as web:
            with pytest.raises(Forbidden):
                await web.stats()
        async with AsyncClient(live.url, "rlv_not-a-key") as nobody:
            with pytest.raises(Unauthorized):
                await nobody.recommend("bo")
        async with AsyncClient(live.url, LIMITED_KEY, retries=0) as slow:
            await slow.stats()
            with pytest.raises(RateLimited):
                await slow.stats()
        async with AsyncClient(f"http://127.0.0.1:{free_port()}", KEY, retries=1, backoff=0.01) as gone:
            with pytest.raises(ConnectionFailed) as lost:
                await gone.health()
            assert lost.value.attempts == 2

    asyncio.run(main())


def test_async_batcher(live):
    async def main():
        async with AsyncClient(live.url, KEY, backoff=0.01) as c:
            async with c.event_batcher(max_batch=1000, max_delay_s=30) as batch:
                await batch.extend(_events(2500))
                assert batch.result.requests == 2
            timed = c.event_batcher(max_batch=100, max_delay_s=0.1)
            await timed.extend(_events(3, prefix="t"))
            await asyncio.sleep(0.5)
            assert timed.result.requests == 1  # the timer sent it
            assert await timed.close() == BatchResult(accepted=3, requests=1)
            return batch.result

    assert asyncio.run(main()) == BatchResult(accepted=2500, requests=3)
    assert live.engine.events.count() == 2503


def test_results_are_the_engines_records():
    from relevo.client._models import recommendation_from_json

    served = Recommendation("d", "streaming", [ScoredItem("a", 0.5, 0.9, False, ["r"])], 1.5)
    assert recommendation_from_json(served.to_dict()) == served  # what the server renders, parsed back
    assert not hasattr(served, "__dict__")  # slots
    with pytest.raises(AttributeError):
        served.items[0].propensity = 1.0  # frozen, like the answer
