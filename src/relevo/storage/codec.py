"""Byte encodings shared by the backends (events and decisions as JSON via orjson)."""

from __future__ import annotations

import orjson

from relevo.records import Decision, Event, EventType, ScoredItem


_OPTIONAL = ("value", "text", "decision_id", "timestamp", "received_at")


def encode_event(event: Event) -> bytes:
    """The event's JSON, as ``model_dump(mode="json", exclude_none=True)`` would give it,
    built directly (the ingest hot path: ~4x cheaper than going through pydantic)."""
    out = {"id": event.id, "user_id": event.user_id, "item_id": event.item_id, "type": event.type.value}
    fields = event.__dict__
    for name in _OPTIONAL[:2]:
        if fields[name] is not None:
            out[name] = fields[name]
    out["context"] = event.context
    for name in _OPTIONAL[2:]:
        if fields[name] is not None:
            out[name] = fields[name]
    return orjson.dumps(out)


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
