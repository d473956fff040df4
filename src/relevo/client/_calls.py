"""The HTTP API as data: each endpoint is a function that builds a ``Call`` (method, path,
body, whether a retry is safe, how to read the answer). The sync and async clients only
execute calls, so the two cannot drift apart."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
import orjson
from pydantic import BaseModel

from relevo.client._models import (
    AppendResult, Consent, ErasureReceipt, FeedbackResult, Recommendation, receipt_from_json, recommendation_from_json,
)
from relevo.records import Event, Item

T = TypeVar("T")
MAX_BATCH = 1000  # records per request the server accepts (POST /v1/items, POST /v1/events)
PERSONALIZER = "/personalizer/v1.0"

ItemLike = Item | Mapping[str, Any]
EventLike = Event | Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One request: ``body`` is serialized once so that every retry sends the same bytes."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    body: bytes | None = None
    params: Mapping[str, Any] | None = None
    idempotent: bool = True


def _seg(value: str) -> str:
    """One URL path segment: ids may hold ``/``, ``?`` or spaces."""
    return quote(str(value), safe="")


def _json(response: httpx.Response) -> Any:
    return orjson.loads(response.content)


def _none(response: httpx.Response) -> None:
    return None


def _record(value: BaseModel | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_none=True)
    return dict(value)


def prepare_event(event: EventLike) -> dict[str, Any]:
    """The event's JSON with an ``id``: a uuid4 hex is filled in when it has none, so a
    retried request is deduplicated by the log instead of appended twice."""
    out = _record(event)
    if out.get("id") is None:
        out["id"] = uuid.uuid4().hex
    return out


def _dumps(data: Any) -> bytes:
    return orjson.dumps(data)


# -- items, events -------------------------------------------------------------------------

def add_items(items: Iterable[ItemLike]) -> Call[int]:
    return Call("POST", "/v1/items", lambda r: int(_json(r)["accepted"]),
                _dumps({"items": [_record(i) for i in items]}))  # upsert by id: idempotent


def get_item(item_id: str) -> Call[Item]:
    return Call("GET", f"/v1/items/{_seg(item_id)}", lambda r: Item.model_validate(_json(r)))


def delete_item(item_id: str) -> Call[None]:
    return Call("DELETE", f"/v1/items/{_seg(item_id)}", _none)


def send_events(events: Iterable[EventLike]) -> Call[AppendResult]:
    return send_prepared([prepare_event(e) for e in events])


def send_prepared(events: Sequence[Mapping[str, Any]]) -> Call[AppendResult]:
    """Events that already carry ids (``prepare_event``): idempotent."""
    return Call("POST", "/v1/events", lambda r: AppendResult.from_json(_json(r)), _dumps({"events": list(events)}))


# -- recommendations -----------------------------------------------------------------------

def recommend(user_id: str, n: int, context: Mapping[str, Any] | None, filters: Mapping[str, Any] | None,
              explain: bool, tier: str, non_profiled: bool, budget_ms: float | None = None) -> Call[Recommendation]:
    body: dict[str, Any] = {"user_id": user_id, "n": n, "explain": explain, "tier": tier,
                            "non_profiled": non_profiled}
    if budget_ms is not None:
        body["budget_ms"] = budget_ms
    if context:
        body["context"] = dict(context)
    if filters:
        body["filters"] = dict(filters)
    # each answer is a new logged decision: retried only when the server surely did not act
    return Call("POST", "/v1/recommendations", lambda r: recommendation_from_json(_json(r)), _dumps(body),
                idempotent=False)


def popular(n: int) -> Call[list[dict[str, Any]]]:
    return Call("GET", f"/v1/popular?n={int(n)}", lambda r: _json(r)["items"])


def feedback(decision_id: str, item_id: str, reward: float) -> Call[FeedbackResult]:
    body = {"decision_id": decision_id, "item_id": item_id, "reward": reward}  # first reward wins: idempotent
    return Call("POST", "/v1/feedback", lambda r: FeedbackResult.from_json(_json(r)), _dumps(body))


def audit(decision_id: str) -> Call[dict[str, Any]]:
    return Call("GET", f"/v1/decisions/{_seg(decision_id)}/audit", _json)


# -- users ---------------------------------------------------------------------------------

def _user(user_id: str, tail: str = "") -> str:
    return f"/v1/users/{_seg(user_id)}{tail}"


def put_preferences(user_id: str, preferences: Mapping[str, Any]) -> Call[dict[str, Any]]:
    return Call("PUT", _user(user_id, "/preferences"), _json, _dumps(dict(preferences)))


def describe_preferences(user_id: str, text: str, budget_ms: float | None) -> Call[dict[str, Any]]:
    body: dict[str, Any] = {"text": text}
    if budget_ms is not None:
        body["budget_ms"] = budget_ms
    # it overwrites the stated preferences with what the text says: repeating it is harmless
    return Call("POST", _user(user_id, "/preferences/describe"), _json, _dumps(body))


def get_preferences(user_id: str) -> Call[dict[str, Any]]:
    return Call("GET", _user(user_id, "/preferences"), _json)


def put_consent(user_id: str, purposes: Mapping[str, bool]) -> Call[Consent]:
    return Call("PUT", _user(user_id, "/consent"), lambda r: Consent.from_json(_json(r)), _dumps(dict(purposes)))


def get_consent(user_id: str) -> Call[Consent]:
    return Call("GET", _user(user_id, "/consent"), lambda r: Consent.from_json(_json(r)))


def erase_user(user_id: str) -> Call[ErasureReceipt]:
    return Call("DELETE", _user(user_id), lambda r: receipt_from_json(_json(r)))


def export_user(user_id: str) -> Call[dict[str, Any]]:
    return Call("GET", _user(user_id, "/export"), _json)


def user_decisions(user_id: str, limit: int) -> Call[list[dict[str, Any]]]:
    return Call("GET", _user(user_id, "/decisions"), lambda r: list(_json(r)["decisions"]), params={"limit": limit})


# -- experiments ---------------------------------------------------------------------------

def create_experiment(design: Mapping[str, Any]) -> Call[dict[str, Any]]:
    return Call("POST", "/v1/experiments", _json, _dumps(dict(design)), idempotent=False)


def get_experiment(experiment_id: str) -> Call[dict[str, Any]]:
    return Call("GET", f"/v1/experiments/{_seg(experiment_id)}", _json)


def experiment_results(experiment_id: str) -> Call[dict[str, Any]]:
    return Call("GET", f"/v1/experiments/{_seg(experiment_id)}/results", _json)


def stop_experiment(experiment_id: str) -> Call[dict[str, Any]]:
    return Call("POST", f"/v1/experiments/{_seg(experiment_id)}/stop", _json, idempotent=False)


# -- operations ----------------------------------------------------------------------------

def stats() -> Call[dict[str, Any]]:
    return Call("GET", "/v1/stats", _json)


def health() -> Call[dict[str, Any]]:
    return Call("GET", "/healthz", _json)


def metrics() -> Call[str]:
    return Call("GET", "/metrics", lambda r: r.text)


# -- Azure Personalizer v1.0 ---------------------------------------------------------------

def rank(request: Mapping[str, Any]) -> Call[dict[str, Any]]:
    # ranking an eventId twice is a 409, so a retry after a lost answer would fail
    return Call("POST", f"{PERSONALIZER}/rank", _json, _dumps(dict(request)), idempotent=False)


def reward(event_id: str, value: float) -> Call[None]:
    return Call("POST", f"{PERSONALIZER}/events/{_seg(event_id)}/reward", _none, _dumps({"value": value}))


def activate(event_id: str) -> Call[None]:
    return Call("POST", f"{PERSONALIZER}/events/{_seg(event_id)}/activate", _none)


def multislot_rank(request: Mapping[str, Any]) -> Call[dict[str, Any]]:
    return Call("POST", f"{PERSONALIZER}/multislot/rank", _json, _dumps(dict(request)), idempotent=False)


def multislot_reward(event_id: str,
                     rewards: Mapping[str, float] | Iterable[Mapping[str, Any]]) -> Call[None]:
    if isinstance(rewards, Mapping):
        items = [{"slotId": slot, "value": value} for slot, value in rewards.items()]
    else:
        items = [dict(r) for r in rewards]
    return Call("POST", f"{PERSONALIZER}/multislot/events/{_seg(event_id)}/reward", _none,
                _dumps({"reward": items}))


def multislot_activate(event_id: str) -> Call[None]:
    return Call("POST", f"{PERSONALIZER}/multislot/events/{_seg(event_id)}/activate", _none)


def get_configuration() -> Call[dict[str, Any]]:
    return Call("GET", f"{PERSONALIZER}/configurations/service", _json)


def put_configuration(configuration: Mapping[str, Any]) -> Call[dict[str, Any]]:
    return Call("PUT", f"{PERSONALIZER}/configurations/service", _json, _dumps(dict(configuration)))


def evaluate(request: Mapping[str, Any]) -> Call[dict[str, Any]]:
    return Call("POST", f"{PERSONALIZER}/evaluations", _json, _dumps(dict(request)), idempotent=False)


def get_evaluation(evaluation_id: str) -> Call[dict[str, Any]]:
    return Call("GET", f"{PERSONALIZER}/evaluations/{_seg(evaluation_id)}", _json)
