"""Hypothesis fuzz of the event parser: arbitrary JSON-like values (nested objects and
lists, unicode including lone surrogates, integers past 64 bits, NaN and infinities, wrong
types, unknown fields) and bytes that are not JSON at all.

* The records (``Event``, ``EventsIn``) either accept a value or raise pydantic's
  ValidationError, the one error the API turns into a 4xx; what they accept can be stored
  (the log's codec serializes it with orjson) and read back unchanged.
* ``POST /v1/events`` (and the other routes with JSON bodies) answer 2xx or 4xx, never 5xx;
  a 4xx carries the documented body ``{"error": {"code", "message", "field"?}}``.
* A batch that fails validation writes nothing: the event log's count is unchanged.
"""

from __future__ import annotations

import json

import orjson
import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relevo.api.schemas import MAX_BATCH, EventsIn, FeedbackIn, ItemsIn, PreferencesIn, RecommendIn
from relevo.records import Event, EventType
from tests.api.conftest import CATALOG

KNOWN_ITEMS = [item.id for item in CATALOG]
FIELDS = ("id", "user_id", "item_id", "type", "value", "text", "context", "decision_id", "timestamp", "received_at")

FUZZ = settings(deadline=None, derandomize=True, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much])

# -- values ------------------------------------------------------------------------------------

# every code point, lone surrogates (category Cs) included, which UTF-8 cannot encode
ANY_CHAR = st.characters(exclude_categories=())
TRICKY_STRINGS = st.sampled_from([
    "", " ", "\x00", "\ud800", "a\udfffb", "/", "a/b", "..", "%2F", "\u202e", "\ufeff", "😀" * 70, "x" * 257,
    "y" * 8193, "NaN", "Infinity", "-0", "1e400", "2024-01-02T03:04:05+00:00", "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59-14:00", "2024-13-45", "true", "null", "click", "rating",
])
HUGE_INTS = st.sampled_from([2**53 + 1, 2**63 - 1, 2**63, -(2**63) - 1, 2**64, 10**30, -(10**30), 10**400])
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), HUGE_INTS,
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, -0.0, 1e308, -1e308, 5e-324]),
    st.text(ANY_CHAR, max_size=12), st.text(max_size=12), TRICKY_STRINGS,
)
KEYS = st.one_of(st.text(ANY_CHAR, max_size=6), st.sampled_from(FIELDS), st.just("x" * 129))
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
                    max_leaves=12)


@st.composite
def shaped(draw, fields: dict[str, st.SearchStrategy], required: tuple[str, ...] = ()) -> object:
    """Mostly dicts of the given shape built from the fields' own strategies (which reach
    the edges of what is valid: huge integers, NaN, lone surrogates...), then at most one
    mutation: a field replaced by arbitrary JSON, a required one dropped or an unknown one
    added, so most examples fail on one thing at most and many get through; one in ten is
    anything at all."""
    if draw(st.integers(0, 9)) == 0:
        return draw(JSON)
    out: dict[str, object] = {name: draw(valid) for name, valid in fields.items()
                              if name in required or draw(st.booleans())}
    mutation = draw(st.integers(0, 7))
    if mutation == 1:
        out[draw(st.sampled_from(sorted(fields)))] = draw(JSON)
    elif mutation == 2 and required:
        out.pop(draw(st.sampled_from(required)))
    elif mutation == 3:
        out[draw(st.text(max_size=8))] = draw(JSON)
    return out


IDS = st.one_of(st.sampled_from(["u1", "u2", "用户", "ü"]), st.text(ANY_CHAR, min_size=1, max_size=8))
# context / attribute / filter values: mostly plausible, often a huge integer, NaN or a lone surrogate
EDGE_VALUES = st.one_of(HUGE_INTS, st.floats(allow_nan=True, allow_infinity=True), TRICKY_STRINGS,
                        st.lists(SCALARS, max_size=2), st.none())
CONTEXT = st.dictionaries(st.one_of(st.text(max_size=8), TRICKY_STRINGS),
                          st.one_of(st.text(max_size=8), st.integers(), st.booleans(), HUGE_INTS,
                                    st.floats(allow_nan=True, allow_infinity=True), TRICKY_STRINGS, EDGE_VALUES),
                          max_size=3)
EVENT_FIELDS = {
    "id": st.text(st.characters(exclude_characters="/"), min_size=1, max_size=8),
    "user_id": IDS,
    "item_id": st.sampled_from(KNOWN_ITEMS),
    "type": st.sampled_from([t.value for t in EventType]),
    "value": st.floats(0, 5),
    "text": st.text(max_size=40),
    "context": CONTEXT,
    "decision_id": st.just("d1"),
    "timestamp": st.one_of(st.floats(0, 4e9), st.just("2024-01-02T03:04:05+00:00"), TRICKY_STRINGS),
    "received_at": st.floats(0, 4e9),
}
ITEM_FIELDS = {
    "id": IDS, "title": st.text(max_size=20), "text": st.text(max_size=20), "tags": st.lists(st.text(max_size=8)),
    "attributes": st.dictionaries(st.text(max_size=8), st.one_of(SCALARS, st.lists(SCALARS, max_size=3)),
                                  max_size=3),
    "created_at": st.floats(0, 4e9),
}
RECOMMEND_FIELDS = {
    "user_id": IDS, "n": st.integers(1, 100), "context": CONTEXT,
    "filters": st.dictionaries(st.sampled_from(["tags", "exclude_ids", "year", "x"]),
                               st.one_of(SCALARS, st.lists(SCALARS, max_size=3)), max_size=2),
    "tier": st.sampled_from(["auto", "edge", "streaming", "origin"]), "non_profiled": st.booleans(),
    "preview": st.booleans(), "budget_ms": st.floats(1, 60_000),
}
PREFERENCES_FIELDS = {
    "liked_tags": st.lists(st.sampled_from(["Horror", "Comedy", "\ud800"]), max_size=3),
    "disliked_tags": st.lists(st.text(max_size=8), max_size=3), "x": JSON, "y": JSON,
}


def event_like() -> st.SearchStrategy:
    return shaped(EVENT_FIELDS, ("user_id", "item_id", "type"))


ITEMS_BODY = st.builds(lambda items: {"items": items}, st.lists(shaped(ITEM_FIELDS, ("id", "title")), max_size=3))
RECOMMEND_BODY = shaped(RECOMMEND_FIELDS, ("user_id",))
PREFERENCES_BODY = shaped(PREFERENCES_FIELDS)


@st.composite
def events_body(draw) -> object:
    if draw(st.integers(0, 9)) == 0:
        return draw(JSON)  # not even a batch
    # plain valid events around one or two fuzzed ones, so that many batches get through
    plain = [{"user_id": f"u{i}", "item_id": KNOWN_ITEMS[i % len(KNOWN_ITEMS)], "type": "view"}
             for i in range(draw(st.integers(0, 3)))]
    for event in draw(st.lists(event_like(), min_size=1, max_size=2)):
        plain.insert(draw(st.integers(0, len(plain))), event)
    body: dict[str, object] = {"events": plain}
    if draw(st.integers(0, 14)) == 0:
        body[draw(KEYS)] = draw(JSON)
    return body


@st.composite
def wire(draw, bodies) -> bytes:
    """A JSON-like value as the bytes a client might send: Python's json with NaN/Infinity
    literals and arbitrary-precision integers, ASCII-escaped (lone surrogates as \\udxxx) or
    raw UTF-8 (lone surrogates as invalid bytes); sometimes cut short or left empty."""
    value = draw(bodies)
    text = json.dumps(value, ensure_ascii=draw(st.booleans()), allow_nan=True)
    raw = text.encode("utf-8", "surrogatepass")
    cut = draw(st.integers(0, 29))
    if cut == 0:
        raw = raw[: draw(st.integers(0, max(len(raw) - 1, 0)))]
    elif cut == 1:
        raw = draw(st.binary(max_size=32))
    return raw


# -- the records -----------------------------------------------------------------------------


def _stored_and_read_back(event: Event) -> None:
    """What the records accept, the log can store (orjson, as storage/codec.py) and read back."""
    raw = orjson.dumps(event.model_dump(mode="json", exclude_none=True))
    assert Event.model_validate(orjson.loads(raw)) == event


@settings(FUZZ, max_examples=1000)
@given(event_like())
def test_event_record_accepts_or_raises_validation_error(value):
    try:
        event = Event.model_validate(value)
    except pydantic.ValidationError:
        return
    _stored_and_read_back(event)


@settings(FUZZ, max_examples=500)
@given(events_body())
def test_events_body_accepts_or_raises_validation_error(value):
    try:
        body = EventsIn.model_validate(value)
    except pydantic.ValidationError as exc:
        assert exc.errors(), exc
        return
    assert 1 <= len(body.events) <= MAX_BATCH
    for event in body.events:
        _stored_and_read_back(event)


@settings(FUZZ, max_examples=200)
@given(st.one_of(st.tuples(st.sampled_from([ItemsIn, RecommendIn, FeedbackIn, PreferencesIn]), JSON),
                st.tuples(st.just(ItemsIn), ITEMS_BODY), st.tuples(st.just(RecommendIn), RECOMMEND_BODY),
                st.tuples(st.just(PreferencesIn), PREFERENCES_BODY)))
def test_other_bodies_accept_or_raise_validation_error(model_and_value):
    """The other request bodies: accepted values serialize with orjson (they are logged,
    stored or echoed), anything else is a ValidationError."""
    model, value = model_and_value
    try:
        parsed = model.model_validate(value)
    except pydantic.ValidationError:
        return
    orjson.dumps(parsed.model_dump(mode="json"))


# -- over HTTP -------------------------------------------------------------------------------


def _check_answer(response, before: int, after: int) -> None:
    assert 200 <= response.status_code < 500, response.text
    body = response.json()
    if response.status_code < 300:
        assert set(body) == {"accepted", "duplicates"}, body
        assert after - before == body["accepted"], (before, after, body)
        return
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) <= {"code", "message", "field"}, error
    assert isinstance(error["code"], str) and error["code"], error
    assert isinstance(error["message"], str) and error["message"], error
    assert isinstance(error.get("field", ""), str), error
    assert after == before, f"a rejected batch ({response.status_code} {error}) wrote {after - before} events"


@settings(FUZZ, max_examples=300)
@given(raw=wire(events_body()))
def test_post_events_is_2xx_or_a_documented_4xx_and_a_rejected_batch_writes_nothing(client, engine, raw):
    before = engine.events.count()
    response = client.post("/v1/events", content=raw, headers={"content-type": "application/json"})
    _check_answer(response, before, engine.events.count())


@st.composite
def batch_with_one_bad_event(draw):
    """Valid events around one invalid one: the whole batch must be refused."""
    good = {"user_id": "u1", "item_id": draw(st.sampled_from(KNOWN_ITEMS)), "type": "click"}
    bad = draw(st.sampled_from([
        {**good, "item_id": "ghost"},  # unknown item: caught by the engine, after the records
        {**good, "type": "like"},
        {**good, "type": "rating"},
        {**good, "type": "rating", "value": 7},
        {**good, "type": "review"},
        {**good, "user_id": 12},
        {**good, "user_id": "a/b"},
        {**good, "context": {"x": 10**30}},
        {**good, "context": {"x": [1, 2]}},
        {**good, "value": 10**400},
        {**good, "timestamp": "yesterday"},
        {**good, "timestamp": 1e12},
        {**good, "colour": "red"},
        {"item_id": good["item_id"], "type": "click"},
    ]))
    events = [dict(good, user_id=f"u{i}") for i in range(draw(st.integers(0, 6)))]
    events.insert(draw(st.integers(0, len(events))), bad)
    return {"events": events}


@settings(FUZZ, max_examples=60)
@given(body=batch_with_one_bad_event())
def test_a_batch_with_one_bad_event_writes_nothing(client, engine, body):
    before = engine.events.count()
    response = client.post("/v1/events", content=json.dumps(body).encode(),
                           headers={"content-type": "application/json"})
    assert 400 <= response.status_code < 500, response.text
    _check_answer(response, before, engine.events.count())


ROUTES = [("POST", "/v1/items"), ("POST", "/v1/recommendations"), ("POST", "/v1/feedback"),
          ("PUT", "/v1/users/u1/preferences"), ("PUT", "/v1/users/u1/consent"), ("POST", "/v1/experiments")]


SHAPED = {"/v1/items": ITEMS_BODY, "/v1/recommendations": RECOMMEND_BODY, "/v1/users/u1/preferences": PREFERENCES_BODY}


@st.composite
def route_and_body(draw) -> tuple[str, str, bytes]:
    method, path = draw(st.sampled_from(ROUTES))
    shape = SHAPED.get(path)
    body = draw(shape if shape is not None and draw(st.booleans()) else JSON)
    return method, path, draw(wire(st.just(body)))


@settings(FUZZ, max_examples=150)
@given(request=route_and_body())
def test_other_json_routes_are_2xx_or_a_documented_4xx(client, engine, request):
    method, path, raw = request
    items = len(engine.catalog)
    response = client.request(method, path, content=raw, headers={"content-type": "application/json"})
    assert 200 <= response.status_code < 500, response.text
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) <= {"code", "message", "field"} and error["code"] and error["message"], error
        assert len(engine.catalog) == items


BIG = 10**30
DEEP = json.loads("[" * 300 + "]" * 300)
UNSTORABLE = [
    # (method, path, body, field the error names or None): each was a 500 before the fix
    ("POST", "/v1/events", {"events": [{"user_id": "u1", "item_id": "alien", "type": "click", "context": {"x": BIG}}]},
     "events[0].context"),
    ("POST", "/v1/events", {"events": [{"user_id": "u1", "item_id": "alien", "type": "click",
                                        "context": {"x": -(2**63) - 1}}]}, "events[0].context"),
    ("POST", "/v1/items", {"items": [{"id": "z", "title": "t", "attributes": {"x": [1, BIG]}}]}, "items[0].attributes"),
    ("POST", "/v1/recommendations", {"user_id": "u1", "context": {"x": BIG}}, "context"),
    ("POST", "/v1/recommendations", {"user_id": "u1", "filters": {"year": [BIG]}}, "filters"),
    ("PUT", "/v1/users/u1/preferences", {"x": BIG}, None),
    ("PUT", "/v1/users/u1/preferences", {"x": {"y": ["\ud800"]}}, None),
    ("PUT", "/v1/users/u1/preferences", {"x": DEEP}, None),
    ("PUT", "/v1/users/u1/preferences", {"x": float("nan")}, None),  # was stored as null
]


@pytest.mark.parametrize("method, path, body, field", UNSTORABLE, ids=[f"{m} {p} {i}" for i, (m, p, _, _) in
                                                                      enumerate(UNSTORABLE)])
def test_values_json_stores_cannot_hold_are_a_422_not_a_500(client, engine, method, path, body, field):
    """Found by the fuzzers: integers past 64 bits, lone surrogates (``\\ud800`` escapes) and
    nesting deeper than orjson's limit passed validation, then orjson raised when the log,
    the decision log or the feature store wrote them ("Integer exceeds 64-bit range",
    "surrogates not allowed", "Recursion limit reached") and the request was a 500."""
    before, items = engine.events.count(), len(engine.catalog)
    response = client.request(method, path, content=json.dumps(body, allow_nan=True).encode(),
                              headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_field" and error.get("field") == field, error
    assert engine.events.count() == before and len(engine.catalog) == items
    if path.endswith("/preferences"):
        assert client.get(path).json() == {}


@pytest.mark.parametrize("raw", [b'{"events": [{"user_id": "\xff"}]}', b'{"events": ' + b"9" * 5000 + b"}"])
def test_a_body_that_cannot_be_decoded_is_malformed_json(client, raw):
    """Found by the fuzzer: bytes that are not UTF-8, or an integer past Python's 4300-digit
    limit, were a 400 with the catch-all code "http_error" instead of "malformed_json"."""
    response = client.post("/v1/events", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "malformed_json", response.text
