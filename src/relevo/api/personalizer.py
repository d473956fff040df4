"""Azure Personalizer v1.0 REST endpoints (same paths and JSON shapes), for applications
moving off the retired service. Errors use Personalizer's envelope:
``{"error": {"code", "message", "target"?, "innerError": {"code"}}}``."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from relevo.personalizer.service import PersonalizerError, PersonalizerService, bad, reward_value

__all__ = ["PersonalizerError", "error_response", "router"]

PREFIX = "/personalizer/v1.0"
_STATUS_CODES = {400: "BadRequest", 404: "ResourceNotFound", 409: "Conflict", 413: "PayloadTooLarge",
                 422: "BadRequest"}


def error_response(exc: PersonalizerError) -> Response:
    body: dict[str, Any] = {"code": _STATUS_CODES.get(exc.status, "BadRequest"), "message": exc.message,
                            "innerError": {"code": exc.code}}
    if exc.target:
        body["target"] = exc.target
    return Response(orjson.dumps({"error": body}), status_code=exc.status, media_type="application/json")


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        data = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        raise bad("the request body is not valid JSON", None, "InvalidJson") from None
    if not isinstance(data, dict):
        raise bad("the request body must be a JSON object", None, "InvalidJson")
    return data


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


# Request bodies, documented for OpenAPI (the routes read them themselves, as Personalizer
# clients send them: unknown fields are ignored, each field is checked by the service).
_FEATURES = {"type": "array", "items": {"type": "object"}, "description": "feature documents (JSON objects)"}
_ACTIONS = {"type": "array", "minItems": 1, "items": {
    "type": "object", "required": ["id"],
    "properties": {"id": {"type": "string", "minLength": 1}, "features": _FEATURES}}}
_EXCLUDED = {"type": "array", "items": {"type": "string"}}
_EVENT_ID = {"type": "string", "minLength": 1, "maxLength": 256}
_SLOT = {"type": "object", "required": ["id", "baselineAction"],
         "properties": {"id": {"type": "string", "minLength": 1}, "baselineAction": {"type": "string"},
                        "positionFeatures": _FEATURES, "excludedActions": _EXCLUDED}}
_TIME = {"anyOf": [{"type": "string", "description": "ISO 8601"}, {"type": "number", "description": "epoch s"}]}
_REWARD = {"type": "number", "minimum": -1, "maximum": 1}


def _body_doc(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", **schema}}}}}


_RANK = _body_doc({"required": ["actions"], "properties": {
    "contextFeatures": _FEATURES, "actions": _ACTIONS, "excludedActions": _EXCLUDED, "eventId": _EVENT_ID,
    "deferActivation": {"type": "boolean"}}})
_MULTISLOT_RANK = _body_doc({"required": ["actions", "slots"], "properties": {
    "contextFeatures": _FEATURES, "actions": _ACTIONS, "slots": {"type": "array", "minItems": 1, "items": _SLOT},
    "eventId": _EVENT_ID, "deferActivation": {"type": "boolean"}}})
_REWARD_BODY = _body_doc({"required": ["value"], "properties": {"value": _REWARD}})
_MULTISLOT_REWARD = _body_doc({"required": ["reward"], "properties": {"reward": {
    "type": "array", "minItems": 1, "items": {"type": "object", "required": ["slotId", "value"],
                                              "properties": {"slotId": {"type": "string"}, "value": _REWARD}}}}})
_CONFIGURATION = _body_doc({"required": ["learningMode"], "properties": {
    "learningMode": {"type": "string", "enum": ["Online", "Apprentice"]}}})
_EVALUATION = _body_doc({"required": ["name"], "properties": {
    "name": {"type": "string", "minLength": 1}, "startTime": _TIME, "endTime": _TIME,
    "policies": {"type": "array", "maxItems": 10, "items": {
        "type": "object", "required": ["name"],
        "properties": {"name": {"type": "string", "minLength": 1},
                       "arguments": {"type": "string", "description": "exploration=<v> lam=<v>"}}}}}})


def router(service_of) -> APIRouter:
    """``service_of(request) -> PersonalizerService``."""
    r = APIRouter(prefix=PREFIX, tags=["personalizer"])

    def svc(request: Request) -> PersonalizerService:
        return service_of(request)

    @r.post("/rank", status_code=201, openapi_extra=_RANK)
    async def rank(request: Request) -> Response:
        return _json(await run_in_threadpool(svc(request).rank, await _body(request)), 201)

    @r.post("/multislot/rank", status_code=201, openapi_extra=_MULTISLOT_RANK)
    async def multislot_rank(request: Request) -> Response:
        return _json(await run_in_threadpool(svc(request).multislot_rank, await _body(request)), 201)

    @r.post("/events/{event_id}/reward", status_code=204, openapi_extra=_REWARD_BODY)
    async def reward(event_id: str, request: Request) -> Response:
        body = await _body(request)
        if "value" not in body:
            raise bad("value is required", "value")
        await run_in_threadpool(svc(request).reward, event_id, body["value"])
        return Response(status_code=204)

    @r.post("/multislot/events/{event_id}/reward", status_code=204, openapi_extra=_MULTISLOT_REWARD)
    async def multislot_reward(event_id: str, request: Request) -> Response:
        body = await _body(request)
        rewards = body.get("reward")
        if not isinstance(rewards, list) or not rewards:
            raise bad("reward must be a non-empty list of {slotId, value}", "reward")
        service = svc(request)
        for i, item in enumerate(rewards):
            if not isinstance(item, dict) or not isinstance(item.get("slotId"), str) or "value" not in item:
                raise bad(f"reward[{i}] must be an object with slotId and value", f"reward[{i}]")
            if isinstance(item["value"], bool) or not isinstance(item["value"], (int, float)):
                raise bad(f"reward[{i}].value must be a number", f"reward[{i}].value")

        def apply() -> None:  # all slots and values are checked before any reward is learned
            for item in rewards:
                reward_value(item["value"])
            service.check_slots(event_id, [item["slotId"] for item in rewards])
            for item in rewards:
                service.reward(event_id, item["value"], slot_id=item["slotId"])

        await run_in_threadpool(apply)
        return Response(status_code=204)

    @r.post("/events/{event_id}/activate", status_code=204)
    @r.post("/multislot/events/{event_id}/activate", status_code=204)
    async def activate(event_id: str, request: Request) -> Response:
        await run_in_threadpool(svc(request).activate, event_id)
        return Response(status_code=204)

    @r.get("/configurations/service")
    async def get_configuration(request: Request) -> Response:
        return _json(svc(request).configuration())

    @r.put("/configurations/service", openapi_extra=_CONFIGURATION)
    async def put_configuration(request: Request) -> Response:
        body = await _body(request)
        return _json(svc(request).set_mode(body.get("learningMode")))

    @r.post("/evaluations", status_code=201, openapi_extra=_EVALUATION)
    async def evaluate(request: Request) -> Response:
        return _json(await run_in_threadpool(svc(request).evaluate, await _body(request)), 201)

    @r.get("/evaluations/{evaluation_id}")
    async def get_evaluation(evaluation_id: str, request: Request) -> Response:
        return _json(svc(request).get_evaluation(evaluation_id))

    return r
