"""``relevo edge``: a separate edge process in front of an origin (``relevo serve``).

It keeps a personalized response cache (the same ``ResponseCache`` as the in-process edge
tier), cleared per user by the invalidation messages the origin publishes on Redis pub/sub
(``settings.tiers.invalidation_url``), and forwards misses to the origin over HTTP with a
timeout. When the origin cannot answer (down, timing out, 5xx) it keeps serving: the
user's expired entry, if younger than ``ttl + max_stale_s``, labelled ``"stale": true``, else
the popular items it refreshes from the origin's ``GET /v1/popular`` every 30 s, labelled
``"tier": "popularity"``; both with ``"fallback": "origin_unavailable"``. Only when it has
never reached the origin does it answer 503 with Retry-After.

A cache hit answers with the cached decision's id: rewards for it join that decision
(first reward wins), since this process keeps no decision log of its own. Other routes are
not served here: events, feedback and everything else go to the origin.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from relevo import __version__
from relevo.api import auth, errors
from relevo.api.schemas import RecommendIn
from relevo.observability.metrics import FRESHNESS_BUCKETS, LATENCY_BUCKETS
from relevo.records import Decision, Recommendation, ScoredItem
from relevo.settings import Settings
from relevo.tiers.edge import CacheEntry, ResponseCache, cache_key
from relevo.tiers.invalidation import RedisSubscriber
from relevo.tiers.streaming import RecommendRequest

log = structlog.get_logger(__name__)

POPULAR_REFRESH_S = 30.0


class EdgeMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.latency = Histogram("relevo_edge_seconds", "Edge process latency by the tier that answered", ["tier"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.lookups = Counter("relevo_edge_cache_lookups", "Edge cache lookups, by result", ["result"], registry=r)
        self.origin = Counter("relevo_edge_origin_calls", "Calls to the origin, by outcome", ["outcome"], registry=r)
        self.invalidation_lag = Histogram(
            "relevo_invalidation_lag_seconds", "Time from the origin receiving a user's event to this edge clearing "
            "their cached answers", buckets=FRESHNESS_BUCKETS, registry=r)


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json", headers=headers)


def create_edge_app(origin_url: str, settings: Settings | None = None, *, timeout_s: float = 0.5,
                    origin_key: str = "") -> FastAPI:
    """``origin_key``: a key with the ``recommend`` scope for the edge's own calls to the
    origin (the popular list); client requests are forwarded with the client's key."""
    settings = settings or Settings()
    t = settings.tiers
    origin_url = origin_url.rstrip("/")
    cache = ResponseCache(t.cache_ttl_s, t.cache_users)
    metrics = EdgeMetrics()
    state: dict[str, Any] = {"popular": None}
    keyring = auth.keyring_for(settings.api)

    tenants_seen: set[str] = set()

    def slot(tenant: str | None, user_id: str) -> str:
        """The cache's user key: tenants' users never share entries."""
        return user_id if tenant is None else f"{tenant}\x1f{user_id}"

    def on_invalidate(changed: dict[str, float], applied: bool) -> None:
        # messages name users, not tenants: the user is cleared in every tenant seen here
        # (more than needed for a user id two tenants share; never less)
        cache.invalidate([slot(t, u) for u in changed for t in (None, *tenants_seen)])
        if applied:
            now = time.time()
            for received_at in changed.values():
                metrics.invalidation_lag.observe(max(now - received_at, 0.0))

    async def refresh_popular(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
        while True:
            try:
                r = await client.get(f"{origin_url}/v1/popular", params={"n": 1000}, headers=headers)
                if r.status_code == 200:
                    state["popular"] = [{"item_id": str(p["item_id"]), "score": float(p["score"])}
                                        for p in r.json()["items"]]
                elif r.status_code in (401, 403):
                    log.warning("edge_popular_refused", status=r.status_code,
                                hint="RELEVO_EDGE_ORIGIN_KEY must hold a key with the recommend scope")
            except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:  # keep refreshing whatever happens
                log.warning("edge_popular_failed", error=type(exc).__name__)
            await asyncio.sleep(POPULAR_REFRESH_S if state["popular"] else 1.0)  # empty: the catalog is filling

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        client = httpx.AsyncClient(timeout=timeout_s, limits=httpx.Limits(max_connections=64))
        app.state.client = client
        subscriber = None
        if t.invalidation_url:
            # messages missed while disconnected cannot be known: drop everything cached
            subscriber = RedisSubscriber(t.invalidation_url, t.invalidation_channel, on_invalidate,
                                         on_reconnect=cache.clear).start()
        headers = {"Authorization": f"Bearer {origin_key}"} if origin_key else {}
        refresher = asyncio.create_task(refresh_popular(client, headers))
        try:
            yield
        finally:
            refresher.cancel()
            if subscriber is not None:
                subscriber.stop()
            await client.aclose()

    app = FastAPI(title="relevo edge", version=__version__, lifespan=lifespan)
    app.add_exception_handler(RequestValidationError, errors.on_validation_error)
    app.add_exception_handler(StarletteHTTPException, errors.on_http_error)
    if keyring is not None:
        app.add_middleware(auth.ApiKeyAuth, keyring=keyring)

    def answer(body: dict[str, Any], started: float) -> Response:
        body["latency_ms"] = round((time.perf_counter() - started) * 1000, 3)
        metrics.latency.labels(body["tier"]).observe(body["latency_ms"] / 1000)
        return _json(body)

    @app.post("/v1/recommendations", tags=["recommendations"])
    async def recommend(body: RecommendIn, request: Request) -> Response:
        started = time.perf_counter()
        req = RecommendRequest(body.user_id, body.n, body.context, body.filters, body.explain, body.tier,
                               non_profiled=body.non_profiled, preview=body.preview, budget_ms=body.budget_ms)
        key = cache_key(req)
        now = time.time()
        tenant = getattr(request.state, "tenant", None)
        if tenant is not None:
            tenants_seen.add(tenant)
        user = slot(tenant, body.user_id)
        cacheable = not body.preview and not body.non_profiled
        if cacheable and body.tier in ("auto", "edge") and not body.explain:
            entry = cache.get(user, key, now)
            metrics.lookups.labels("hit" if entry is not None else "miss").inc()
            if entry is not None:
                out = entry.recommendation.to_dict()
                out.update(tier="edge", tier_reason="cached")
                return answer(out, started)
        generation = cache.generation(user)
        forward = {k: v for k, v in request.headers.items() if k.lower() in ("authorization", "x-api-key")}
        # the origin gets what is left of the budget, less a margin for the way back
        left_s = (body.budget_ms or t.budget_ms) / 1000.0 - (time.perf_counter() - started)
        timeout_s = max(min(left_s, request.app.state.client.timeout.read or left_s), 0.001)
        forwarded = body.model_dump(mode="json")
        forwarded["budget_ms"] = max(timeout_s * 1000.0 - 2.0, 1.0)
        try:
            r = await request.app.state.client.post(
                f"{origin_url}/v1/recommendations", content=orjson.dumps(forwarded),
                headers={**forward, "content-type": "application/json"}, timeout=timeout_s)
        except httpx.HTTPError as exc:
            metrics.origin.labels("unreachable").inc()
            log.warning("origin_unreachable", error=type(exc).__name__)
            return fallback(body, user, tenant, key, now, started)
        if r.status_code >= 500:
            metrics.origin.labels("error").inc()
            return fallback(body, user, tenant, key, now, started)
        metrics.origin.labels("ok" if r.status_code < 400 else "rejected").inc()
        if r.status_code >= 400:  # the client's error: passed through as the origin said it
            return Response(r.content, status_code=r.status_code, media_type="application/json")
        try:
            out = r.json()
            rec = Recommendation(str(out["decision_id"]), str(out["tier"]), [ScoredItem(**i) for i in out["items"]],
                                 float(out["latency_ms"]), out.get("fallback"), out.get("tier_reason"))
        except (ValueError, KeyError, TypeError):  # not an answer this edge can read: as if the origin failed
            metrics.origin.labels("error").inc()
            return fallback(body, user, tenant, key, now, started)
        if cacheable and out.get("tier") in ("streaming", "origin", "edge") and not out.get("stale"):
            cache.put(user, key, CacheEntry(rec, _placeholder(out), now, 0), generation)
        return answer(out, started)

    def fallback(body: RecommendIn, user: str, tenant: str | None, key: bytes, now: float,
                 started: float) -> Response:
        entry = cache.get(user, key, now, max_age_s=t.cache_ttl_s + t.max_stale_s)
        if entry is not None:
            out = entry.recommendation.to_dict()
            out.update(tier="edge", tier_reason="origin unavailable", stale=True, fallback="origin_unavailable")
            return answer(out, started)
        popular = state["popular"]
        excluded = body.filters.get("exclude_ids", [])
        # the popular list is the default tenant's (the edge's own key); other filters need the catalog
        if popular is None or tenant is not None or set(body.filters) - {"exclude_ids"}:
            return _json({"error": {"code": "origin_unavailable",
                                    "message": "the origin is unreachable and this edge has no answer for this "
                                               "request cached"}}, 503, headers={"Retry-After": "1"})
        exclude = set(excluded) if isinstance(excluded, list) else {excluded}
        items = [{"item_id": p["item_id"], "score": p["score"], "propensity": 1.0, "explored": False,
                  "reasons": ["popular"]} for p in popular if p["item_id"] not in exclude][: body.n]
        return answer({"decision_id": None, "tier": "popularity", "items": items, "latency_ms": 0.0,
                       "tier_reason": "origin unavailable", "fallback": "origin_unavailable"}, started)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> Response:
        return _json({"status": "ok", "role": "edge", "cached": len(cache)})

    @app.get("/metrics", tags=["ops"])
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.state.cache = cache
    return app


def _placeholder(out: dict[str, Any]) -> Decision:
    """The edge process keeps no decision log: a cache entry's decision carries the id only."""
    return Decision(out["decision_id"], "", out.get("tier", ""), 0, 0.0, [], [])
