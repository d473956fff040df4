"""Byte encodings shared by the backends (events and decisions as JSON via orjson)."""

from __future__ import annotations

import orjson

from relevo.records import Decision, Event, EventType, ScoredItem


def encode_event(event: Event) -> bytes:
    return orjson.dumps(event.model_dump(mode="json", exclude_none=True))


def decode_event(raw: bytes | str) -> Event:
    # Entries in the log were validated on the way in; rebuild without re-validating.
    data = orjson.loads(raw)
    data.setdefault("context", {})
    return Event.model_construct(**{**_EVENT_DEFAULTS, **data, "type": EventType(data["type"])})


_EVENT_DEFAULTS = {"value": None, "text": None, "decision_id": None, "timestamp": None, "received_at": None}


def encode_decision(decision: Decision) -> bytes:
    return orjson.dumps(decision)


def decode_decision(raw: bytes | str) -> Decision:
    data = orjson.loads(raw)
    data["items"] = [ScoredItem(**s) for s in data["items"]]
    return Decision(**data)
