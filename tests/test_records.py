"""Record validation: precise messages for bad events and items; property tests."""

from __future__ import annotations

import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st

from relevo.records import Event, EventType, Item

OK = {"user_id": "u", "item_id": "i", "type": "click"}


@pytest.mark.parametrize(
    "data, pattern",
    [
        ({**OK, "type": "like"}, "impression"),
        ({"item_id": "i", "type": "click"}, "user_id"),
        ({**OK, "user_id": ""}, "at least 1 character"),
        ({**OK, "type": "rating"}, "needs a numeric value"),
        ({**OK, "type": "rating", "value": 5.5}, r"\[0, 5\]"),
        ({**OK, "type": "dwell", "value": -1}, r"\[0, 86400\]"),
        ({**OK, "type": "dwell", "value": float("nan")}, "finite"),
        ({**OK, "type": "review"}, "needs text"),
        ({**OK, "timestamp": "not a date"}, "ISO 8601"),
        ({**OK, "timestamp": 1e12}, "between 1970 and 2100"),
        ({**OK, "timestamp": True}, "ISO 8601"),
        ({**OK, "context": {f"k{i}": i for i in range(40)}}, "at most 32"),
        ({**OK, "context": {"x": float("inf")}}, "finite"),
        ({**OK, "extra": 1}, "Extra inputs"),
    ],
)
def test_invalid_events_say_what_is_wrong(data, pattern):
    with pytest.raises(pydantic.ValidationError, match=pattern):
        Event.model_validate(data)


def test_event_defaults_and_iso_timestamp():
    e = Event.model_validate({**OK, "timestamp": "2024-01-02T03:04:05+00:00"})
    assert e.timestamp == 1704164645.0 and e.event_time == 1704164645.0
    assert len(e.id) == 32 and e.type is EventType.CLICK
    assert Event.model_validate(OK).id != Event.model_validate(OK).id


@pytest.mark.parametrize(
    "data, pattern",
    [
        ({"id": "x"}, "title or text"),
        ({"id": "x", "title": "t", "tags": ["a"] * 65}, "at most 64"),
        ({"id": "x", "title": "t", "attributes": {"p": float("nan")}}, "finite"),
        ({"id": "x", "title": "t", "attributes": {"p": {"nested": 1}}}, "attributes"),
    ],
)
def test_invalid_items(data, pattern):
    with pytest.raises(pydantic.ValidationError, match=pattern):
        Item.model_validate(data)


def test_item_content_text_orders_title_tags_text():
    item = Item(id="m", title="Heat", tags=["Action", "Crime"], text="A heist.")
    assert item.content_text() == "Heat. Action Crime. A heist."


@given(
    user=st.text(min_size=1, max_size=256).filter(lambda u: "/" not in u),  # ids carry no "/" (URL paths)
    value=st.floats(min_value=0, max_value=5, allow_nan=False),
    kind=st.sampled_from(list(EventType)),
)
def test_valid_events_round_trip_through_the_log_codec(user, value, kind):
    from relevo.storage.codec import decode_event, encode_event

    text = "t" if kind is EventType.REVIEW else None
    event = Event(user_id=user, item_id="i", type=kind, value=value, text=text)
    assert decode_event(encode_event(event)) == event
