"""App factory: ``create_app(engine)`` serves an open Engine; ``create_app()`` opens one
from Settings in the lifespan and closes it on shutdown."""

from __future__ import annotations

import time
from contextlib import asynccontextmanager
from urllib.parse import quote
from typing import Any

import orjson
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException as StarletteHTTPException

from relevo import __version__
from relevo.api import auth, dashboard, errors, personalizer
from relevo.api.schemas import (ERROR_RESPONSES, ConsentIn, DescribeIn, EventsIn, FeedbackIn, ItemsIn, PreferencesIn,
                                RecommendIn)
from relevo.engine import Engine
from relevo.errors import RelevoError
from relevo.records import Id
from relevo.settings import Settings
from relevo.tenants import Tenants
from relevo.tiers.streaming import RecommendRequest


def _json(data, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


class BodyLimit:
    """Reject bodies over ``limit`` bytes with 413 before they are parsed."""

    def __init__(self, app, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = errors.error_response(413, "payload_too_large", f"request body over {self.limit} bytes")
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await too_large(scope, receive, send)
                return
        if any(name == b"content-length" for name, _ in scope.get("headers", ())):
            await self.app(scope, receive, send)
            return
        # no Content-Length (chunked): read the body here, up to the limit, then replay it
        body, more = [], True
        size = 0
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                await self.app(scope, _replay([message]), send)
                return
            size += len(message.get("body", b""))
            if size > self.limit:
                await too_large(scope, receive, send)
                return
            body.append(message)
            more = message.get("more_body", False)
        await self.app(scope, _replay(body, receive), send)


def _replay(messages: list[dict], then=None):
    """An ASGI ``receive`` that hands out ``messages`` first, then defers to ``then``."""
    queue = list(messages)

    async def receive():
        if queue:
            return queue.pop(0)
        if then is not None:
            return await then()
        return {"type": "http.disconnect"}

    return receive





class Timing:
    """Records every HTTP request in ``relevo_http_request_seconds{method, route, status}``
    (route = the matched path template, so ids never become label values)."""

    def __init__(self, app, metrics_of):
        self.app = app
        self.metrics_of = metrics_of

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def send_status(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            metrics = self.metrics_of(scope)
            if metrics is not None:
                route = scope.get("route")
                path = getattr(route, "path", None) or "unmatched"
                metrics.http_latency.labels(scope["method"], path, f"{status[0] // 100}xx").observe(
                    time.perf_counter() - started)


def create_app(engine: Engine | None = None, settings: Settings | None = None) -> FastAPI:
    """Raises ``auth.AuthConfigError`` when API keys are required and none is configured."""
    owned = engine is None
    api_settings = (engine.settings if engine else (settings or Settings())).api
    keyring = auth.keyring_for(api_settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if owned:
            app.state.engine = Engine(settings or Settings()).open()
        app.state.tenants = Tenants(app.state.engine)
        try:
            yield
        finally:
            app.state.tenants.close()
            if owned:
                app.state.engine.close()

    # every operation documents the error envelope (errors.py) for the statuses it can answer,
    # in place of FastAPI's default 422 schema ({"detail": [...]}), which the app never sends
    app = FastAPI(title="relevo", version=__version__, lifespan=lifespan, responses=ERROR_RESPONSES)
    if engine is not None:
        app.state.engine = engine
    app.add_exception_handler(RequestValidationError, errors.on_validation_error)
    app.add_exception_handler(RelevoError, errors.on_relevo_error)
    app.add_exception_handler(StarletteHTTPException, errors.on_http_error)
    for outage in errors.OUTAGES:  # handled, not re-raised: an unreachable store is a 503
        app.add_exception_handler(outage, errors.on_unexpected)
    app.add_exception_handler(Exception, errors.on_unexpected)
    app.add_middleware(BodyLimit, limit=api_settings.max_body_bytes)
    if keyring is not None:  # added last: runs first, before the body limit and the routing

        def count_rejection(code: str) -> None:
            if getattr(app.state, "engine", None) is not None:
                app.state.engine.metrics.errors.labels(code).inc()

        app.add_middleware(auth.ApiKeyAuth, keyring=keyring, on_reject=count_rejection)
    def metrics_of(scope) -> Any:
        """The metrics of the engine that served the request: its tenant's, if any."""
        tenant = (scope.get("state") or {}).get("tenant")
        tenants = getattr(app.state, "tenants", None)
        engine = tenants.engine(tenant) if tenant is not None and tenants is not None else \
            getattr(app.state, "engine", None)
        return getattr(engine, "metrics", None)

    app.add_middleware(Timing, metrics_of=metrics_of)

    def eng(request: Request) -> Engine:
        """The engine serving this request: the key's tenant's, else the default one."""
        tenant = getattr(request.state, "tenant", None)
        if tenant is None:
            return request.app.state.engine
        return request.app.state.tenants.engine(tenant)

    app.add_exception_handler(personalizer.PersonalizerError, lambda request, exc: personalizer.error_response(exc))
    app.include_router(personalizer.router(lambda request: eng(request).personalizer))
    dashboard.install(app, eng)  # GET /dashboard, /v1/dashboard/..., the recent-users tap

    @app.post("/v1/items", tags=["items"])
    def add_items(body: ItemsIn, request: Request) -> Response:
        return _json({"accepted": eng(request).add_items(body.items)})

    @app.get("/v1/items/{item_id}", tags=["items"])
    async def get_item(item_id: Id, request: Request) -> Response:
        return _json(eng(request).get_item(item_id).model_dump(mode="json", exclude_none=True))

    @app.delete("/v1/items/{item_id}", tags=["items"])
    def delete_item(item_id: Id, request: Request) -> Response:
        eng(request).delete_item(item_id)
        return _json({"deleted": item_id})

    @app.post("/v1/events", status_code=202, tags=["events"])
    def add_events(body: EventsIn, request: Request) -> Response:
        result = eng(request).ingest(body.events)
        return _json({"accepted": result.accepted, "duplicates": result.duplicates}, 202)

    @app.put("/v1/users/{user_id}/preferences", tags=["users"])
    async def put_preferences(user_id: Id, body: PreferencesIn, request: Request) -> Response:
        return _json(eng(request).put_preferences(user_id, body.as_dict()))

    @app.post("/v1/users/{user_id}/preferences/describe", tags=["users"])
    def describe_preferences(user_id: Id, body: DescribeIn, request: Request) -> Response:
        """Free text -> structured preferences (the LLM if consented, else keywords) and, for a
        user with no history, a first taste vector."""
        return _json(eng(request).describe_preferences(user_id, body.text, budget_ms=body.budget_ms))

    @app.get("/v1/users/{user_id}/preferences", tags=["users"])
    async def get_preferences(user_id: Id, request: Request) -> Response:
        return _json(eng(request).get_preferences(user_id))

    @app.delete("/v1/users/{user_id}", tags=["users"])
    def erase_user(user_id: Id, request: Request) -> Response:
        return _json(eng(request).erase_user(user_id).to_dict())

    def consent_body(request: Request, consent) -> Response:
        return _json({"personalization": consent.personalization, "profiling": consent.profiling,
                      "emotion": consent.emotion, "llm": consent.llm, "updated_at": consent.updated_at or None,
                      "emotion_available": eng(request).settings.emotion.enabled})

    @app.put("/v1/users/{user_id}/consent", tags=["users"])
    async def put_consent(user_id: Id, body: ConsentIn, request: Request) -> Response:
        return consent_body(request, eng(request).put_consent(user_id, body.model_dump(exclude_unset=True)))

    @app.get("/v1/users/{user_id}/consent", tags=["users"])
    async def get_consent(user_id: Id, request: Request) -> Response:
        return consent_body(request, eng(request).get_consent(user_id))

    @app.get("/v1/users/{user_id}/export", tags=["users"])
    def export_user(user_id: Id, request: Request) -> Response:
        filename = quote(f"relevo-export-{user_id}.json", safe="")
        return Response(orjson.dumps(eng(request).export_user(user_id)), media_type="application/json",
                        headers={"Content-Disposition": f"attachment; filename=\"relevo-export.json\"; "
                                                        f"filename*=UTF-8''{filename}"})

    @app.get("/v1/users/{user_id}/decisions", tags=["users"])
    def user_decisions(user_id: Id, request: Request, limit: int = 100) -> Response:
        return _json({"decisions": eng(request).audits_for_user(user_id, max(1, min(limit, 1000)))})

    @app.get("/v1/decisions/{decision_id}/audit", tags=["recommendations"])
    def audit(decision_id: Id, request: Request) -> Response:
        return _json(eng(request).audit(decision_id))

    @app.post("/v1/recommendations", tags=["recommendations"])
    async def recommend(body: RecommendIn, request: Request) -> Response:
        rec = eng(request).recommend(
            RecommendRequest(body.user_id, body.n, body.context, body.filters, body.explain, body.tier,
                             non_profiled=body.non_profiled, preview=body.preview, budget_ms=body.budget_ms)
        )
        return _json(rec.to_dict())

    @app.get("/v1/popular", tags=["recommendations"])
    async def popular(request: Request, n: int = Query(100, ge=1, le=1000)) -> Response:
        """Items by engagement (what an edge process serves when it cannot reach this origin)."""
        return _json({"items": eng(request).popular(n)})

    @app.post("/v1/feedback", tags=["recommendations"])
    async def feedback(body: FeedbackIn, request: Request) -> Response:
        status = eng(request).feedback(body.decision_id, body.item_id, body.reward)
        return _json({"learned": status == "joined", "status": status})

    @app.post("/v1/experiments", status_code=201, tags=["experiments"])
    def create_experiment(body: dict[str, Any], request: Request) -> Response:
        return _json(eng(request).experiments.create(body), 201)

    @app.get("/v1/experiments/{experiment_id}", tags=["experiments"])
    def get_experiment(experiment_id: Id, request: Request) -> Response:
        return _json(eng(request).experiments.describe(experiment_id))

    @app.get("/v1/experiments/{experiment_id}/results", tags=["experiments"])
    def experiment_results(experiment_id: Id, request: Request) -> Response:
        return _json(eng(request).experiments.results(experiment_id))

    @app.post("/v1/experiments/{experiment_id}/stop", tags=["experiments"])
    def stop_experiment(experiment_id: Id, request: Request) -> Response:
        return _json(eng(request).experiments.stop(experiment_id))

    @app.get("/v1/stats", tags=["operations"])
    async def stats(request: Request) -> Response:
        return _json(eng(request).stats())

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    @app.get("/metrics", tags=["operations"], response_class=PlainTextResponse)
    async def metrics(request: Request) -> Response:
        return Response(eng(request).metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return app
