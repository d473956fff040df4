"""Bad input over HTTP, table-driven: a 4xx with {"error": {code, message, field}}, never
a 500, and a rejected batch writes nothing."""

from __future__ import annotations

import pytest

GOOD = {"user_id": "u1", "item_id": "alien", "type": "click"}


def events(*evs):
    return {"events": list(evs)}


CASES = [
    # (name, method, path, raw body or json, status, code, field or None, message pattern)
    ("malformed json", "post", "/v1/events", b'{"events": [', 400, "malformed_json", None, "JSON"),
    ("not an object", "post", "/v1/events", b"[1, 2]", 400, "malformed_json", None, ""),
    ("unknown event type", "post", "/v1/events", events(GOOD, {**GOOD, "type": "like"}), 422,
     "unknown_event_type", "events[1].type", "impression"),
    ("missing user_id", "post", "/v1/events", events({"item_id": "alien", "type": "click"}), 422,
     "missing_field", "events[0].user_id", "required"),
    ("wrong type user_id", "post", "/v1/events", events({**GOOD, "user_id": 12}), 422,
     "invalid_field", "events[0].user_id", "string"),
    ("wrong type value", "post", "/v1/events", events({**GOOD, "type": "rating", "value": "five"}), 422,
     "invalid_field", "events[0].value", "number"),
    ("NaN value", "post", "/v1/events", b'{"events":[{"user_id":"u","item_id":"alien","type":"dwell","value":NaN}]}',
     422, "not_finite", "events[0].value", "finite"),
    ("inf value", "post", "/v1/events", b'{"events":[{"user_id":"u","item_id":"alien","type":"dwell","value":Infinity}]}',
     422, "not_finite", "events[0].value", "finite"),
    ("NaN in context", "post", "/v1/events", b'{"events":[{"user_id":"u","item_id":"alien","type":"view","context":{"x":NaN}}]}',
     422, None, "events[0].context.x", "finite"),
    ("rating out of range", "post", "/v1/events", events({**GOOD, "type": "rating", "value": 7}), 422,
     "invalid_field", "events[0]", r"\[0, 5\]"),
    ("rating without value", "post", "/v1/events", events({**GOOD, "type": "rating"}), 422,
     "invalid_field", "events[0]", "needs a numeric value"),
    ("review without text", "post", "/v1/events", events({**GOOD, "type": "review"}), 422,
     "invalid_field", "events[0]", "needs text"),
    ("unknown field", "post", "/v1/events", events({**GOOD, "colour": "red"}), 422,
     "unknown_field", "events[0].colour", "xtra"),
    ("bad timestamp", "post", "/v1/events", events({**GOOD, "timestamp": "yesterday"}), 422,
     "invalid_field", "events[0].timestamp", "ISO 8601"),
    ("oversized batch", "post", "/v1/events", events(*[GOOD] * 1001), 413, "batch_too_large", "events", "1000"),
    ("empty batch", "post", "/v1/events", events(), 422, "empty_batch", "events", ""),
    ("oversized string", "post", "/v1/events", events({**GOOD, "user_id": "u" * 300}), 422, "too_long",
     "events[0].user_id", "256"),
    ("oversized text", "post", "/v1/events", events({**GOOD, "type": "review", "text": "x" * 9000}), 422,
     "too_long", "events[0].text", "8192"),
    ("unknown item", "post", "/v1/events", events(GOOD, {**GOOD, "item_id": "ghost"}), 422, "unknown_item",
     "events[1].item_id", "ghost"),
    ("item without content", "post", "/v1/items", {"items": [{"id": "x"}]}, 422, "invalid_field", "items[0]",
     "title or text"),
    ("item bad tags", "post", "/v1/items", {"items": [{"id": "x", "title": "t", "tags": "Horror"}]}, 422,
     "invalid_field", "items[0].tags", "list"),
    ("duplicate items", "post", "/v1/items", {"items": [{"id": "x", "title": "t"}, {"id": "x", "title": "u"}]},
     422, "invalid_field", "items[1].id", "twice"),
    ("recommend n too big", "post", "/v1/recommendations", {"user_id": "u", "n": 1000}, 422, "invalid_field",
     "n", "100"),
    ("recommend bad tier", "post", "/v1/recommendations", {"user_id": "u", "tier": "fast"}, 422, "invalid_value",
     "tier", "auto"),
    ("recommend bad filter", "post", "/v1/recommendations", {"user_id": "u", "filters": {"tags": {"a": 1}}}, 422,
     None, "filters.tags", ""),
    ("feedback unknown decision", "post", "/v1/feedback", {"decision_id": "nope", "item_id": "alien", "reward": 1},
     404, "not_found", "decision_id", "nope"),
    ("feedback NaN reward", "post", "/v1/feedback", b'{"decision_id":"d","item_id":"i","reward":NaN}', 422,
     "not_finite", "reward", ""),
    ("delete unknown item", "delete", "/v1/items/ghost", None, 404, "not_found", "item_id", "ghost"),
    ("unknown route", "get", "/v1/nothing", None, 404, "not_found", None, ""),
    ("preferences not list", "put", "/v1/users/u1/preferences", {"liked_tags": "Horror"}, 422, "invalid_field",
     "liked_tags", "list"),
]


@pytest.mark.parametrize("name, method, path, body, status, code, field, pattern", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_a_clear_4xx_and_writes_nothing(client, engine, name, method, path, body, status, code, field, pattern):
    import re

    before_log, before_items = engine.events.count(), len(engine.catalog)
    kwargs = {}
    if isinstance(body, bytes):
        kwargs = {"content": body, "headers": {"content-type": "application/json"}}
    elif body is not None:
        kwargs = {"json": body}
    response = client.request(method.upper(), path, **kwargs)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) <= {"code", "message", "field"} and error["message"]
    if code:
        assert error["code"] == code, error
    if field:
        assert error.get("field") == field, error
    assert re.search(pattern, error["message"]), error
    assert engine.events.count() == before_log
    assert len(engine.catalog) == before_items


def test_body_over_the_limit_is_413(client):
    response = client.post("/v1/events", content=b"x" * (9 * 1024 * 1024), headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_rejections_are_counted_in_metrics(client):
    client.post("/v1/events", content=b"{", headers={"content-type": "application/json"})
    assert 'relevo_errors_total{code="malformed_json"} 1.0' in client.get("/metrics").text
