"""The live dashboard: ``GET /dashboard`` serves one self-contained page (vanilla JS, charts
drawn as inline SVG, no external fetch) that polls the JSON under ``/v1/dashboard`` every
second.

``/dashboard`` is public: the page holds no data. The JSON needs the ``admin`` scope; the
page's user explorer also calls ``POST /v1/recommendations`` (scope ``recommend``) and
``GET /v1/items/{id}`` (admin), so a dashboard key holds ``admin`` and ``recommend``.

Time series come from a ring buffer of :class:`Reading` (cumulative metric values of one
engine, read from its Prometheus registry), sampled at most once a second when the summary
is requested: nothing is sampled while nobody watches. Rates are differences of consecutive
readings over their real time apart.

Regret is shown only for a running experiment, as its in-sample regret
``sum_v n_v * (max_u mean_u - mean_v)`` (n_v: rewarded trials of variant v, mean_v its mean
reward): the reward the experiment gave up against serving its best-looking arm to all its
traffic, comparable because users are assigned to arms at random. Per-policy regret is not
shown: the optimum is unknown, and the policies (streaming tier, Personalizer) serve
different requests, so their means are not comparable.

Recently active users are remembered in memory only (never in metrics or logs): the ids in
successful ``POST /v1/events`` and ``POST /v1/recommendations`` bodies while a dashboard is
being watched, and the users of the decisions logged in the last few seconds.
"""

from __future__ import annotations

import bisect
import re
import threading
import time
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import orjson
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response

from relevo.context.state import USERS_NS, UserState
from relevo.engine import Engine
from relevo.observability.metrics import FRESHNESS_BUCKETS
from relevo.records import Id
from relevo.stream.processor import GROUP

__all__ = ["Board", "Reading", "RecentUsers", "RecentUsersTap", "Ring", "bucket_quantile", "in_sample_regret", "install",
           "router", "user_view"]

PAGE_PATH = "/dashboard"
API_PREFIX = "/v1/dashboard"
SOURCE = "dashboard"  # the context flag the page's own recommendation calls carry
CAPACITY = 600  # readings kept per engine: 10 minutes at one a second
MIN_INTERVAL_S = 0.9
WATCH_S = 600.0  # the user tap records for this long after the last dashboard request
FRESHNESS_WINDOW_S = 5.0  # quantiles of the freshness series: over the last 5 s of events
REGRET_DEFINITION = ("in-sample regret of the running experiment: sum over variants of "
                     "trials x (best variant's mean reward - the variant's mean reward)")
NO_REGRET = ("regret needs a running experiment (arms assigned at random); per-policy regret "
             "would need the unknown optimum and comparable traffic")

_CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; "
        "img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def _json(data: Any) -> Response:
    return Response(orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json")


# -- readings ---------------------------------------------------------------------------------


def _samples(metric, suffix: str) -> list[tuple[dict[str, str], float]]:
    """(labels, value) of the samples of ``metric`` whose name ends in ``suffix``."""
    return [(s.labels, s.value) for family in metric.collect() for s in family.samples if s.name.endswith(suffix)]


def _total(metric) -> float:
    return sum(v for _, v in _samples(metric, "_total"))


def _by(metric, label: str, suffix: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for labels, value in _samples(metric, suffix):
        out[labels[label]] = out.get(labels[label], 0.0) + value
    return out


@dataclass(frozen=True, slots=True)
class Reading:
    """Cumulative metric values of one engine at ``t`` (unix seconds).

    ``freshness``: cumulative counts of ``relevo_freshness_seconds`` per bucket, shape
    (len(FRESHNESS_BUCKETS) + 1,), the last one ``+Inf``. ``recommendations``: counts by
    ``"tier/policy"``. ``reward_sum`` / ``reward_count``: ``relevo_reward_value`` by policy.
    ``experiment``: the running experiment's results (``ExperimentService.results``)."""

    t: float
    ingested: float
    processed: float
    lag: int
    freshness: tuple[float, ...]
    recommendations: dict[str, float]
    shown: float
    explored: float
    exploration_share: float
    rewards: dict[str, float]
    reward_sum: dict[str, float]
    reward_count: dict[str, float]
    experiment: dict[str, Any] | None = None
    regret: dict[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, engine: Engine, t: float) -> "Reading":
        m = engine.metrics
        buckets = [v for _, v in sorted(_samples(m.freshness, "_bucket"), key=lambda s: float(s[0]["le"]))]
        experiment = None
        running = engine.experiments.running()
        if running is not None:
            experiment = engine.experiments.results(running.id)
        return cls(
            t=t, ingested=_total(m.events_ingested), processed=_total(m.events_processed),
            lag=engine.events.lag(GROUP), freshness=tuple(buckets),
            recommendations={f"{labels['tier']}/{labels['policy']}": v
                             for labels, v in _samples(m.recommendations, "_total")},
            shown=_total(m.shown), explored=_total(m.explored),
            exploration_share=sum(v for _, v in _samples(m.exploration_share, "")),
            rewards=_by(m.rewards, "outcome", "_total"),
            reward_sum=_by(m.reward_value, "policy", "_sum"), reward_count=_by(m.reward_value, "policy", "_count"),
            experiment=experiment, regret=in_sample_regret(experiment),
        )


def in_sample_regret(results: dict[str, Any] | None) -> dict[str, float]:
    """Variant -> trials x (best mean - its mean) over the variants with trials; {} when
    fewer than two variants have any."""
    if not results:
        return {}
    rows = [v for v in results["variants"] if v["trials"] > 0 and v["mean"] is not None]
    if len(rows) < 2:
        return {}
    best = max(v["mean"] for v in rows)
    return {v["name"]: v["trials"] * (best - v["mean"]) for v in rows}


def bucket_quantile(q: float, bounds: tuple[float, ...], cumulative: list[float]) -> float | None:
    """The ``q`` quantile of a histogram, interpolated linearly within its bucket as
    Prometheus' ``histogram_quantile`` does. ``cumulative``: counts per upper bound in
    ``bounds`` then ``+Inf``; None when empty. A rank in ``+Inf`` answers the top bound."""
    total = cumulative[-1] if cumulative else 0.0
    if total <= 0:
        return None
    rank = q * total
    for i, count in enumerate(cumulative):
        if count >= rank:
            if i >= len(bounds):
                return bounds[-1]
            low = bounds[i - 1] if i else 0.0
            before = cumulative[i - 1] if i else 0.0
            inside = count - before
            return low + (bounds[i] - low) * ((rank - before) / inside if inside > 0 else 1.0)
    return bounds[-1]


def _rate(now: float, before: float, dt: float) -> float:
    return max(0.0, now - before) / dt if dt > 0 else 0.0


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


class Ring:
    """The last ``capacity`` readings of one engine, sampled at most every ``min_interval`` s."""

    def __init__(self, capacity: int = CAPACITY, min_interval: float = MIN_INTERVAL_S):
        self.readings: deque[Reading] = deque(maxlen=capacity)
        self.min_interval = min_interval
        self.lock = threading.Lock()

    def sample(self, engine: Engine, now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self.lock:
            if self.readings and now - self.readings[-1].t < self.min_interval:
                return
            self.readings.append(Reading.of(engine, now))

    def summary(self, engine: Engine, window_s: float) -> dict[str, Any]:
        """The dashboard's figures: series over the last ``window_s`` seconds and the
        latest values (see the module docstring for what each means)."""
        with self.lock:
            readings = list(self.readings)
        last = readings[-1]
        times = [r.t for r in readings]
        start = max(bisect.bisect_left(times, last.t - window_s) - 1, 0)
        pairs = list(zip(readings[start:], readings[start + 1:]))
        tiers = sorted({k.split("/")[0] for r in readings for k in r.recommendations})
        policies = sorted({p for r in readings for p in r.reward_count})
        variants = sorted({v for r in readings for v in r.regret})
        series: dict[str, Any] = {
            "t": [], "events_ingested_per_s": [], "events_processed_per_s": [], "consumer_lag": [],
            "freshness_p50_ms": [], "freshness_p95_ms": [], "recommendations_per_s": {t: [] for t in tiers},
            "fallbacks_per_s": [], "exploration_share": [], "explored_share": [],
            "mean_reward": {p: [] for p in policies}, "regret": {v: [] for v in variants},
        }
        for i, (a, b) in enumerate(pairs):
            dt = b.t - a.t
            series["t"].append(round(b.t, 3))
            series["events_ingested_per_s"].append(round(_rate(b.ingested, a.ingested, dt), 2))
            series["events_processed_per_s"].append(round(_rate(b.processed, a.processed, dt), 2))
            series["consumer_lag"].append(b.lag)
            base = _reading_before(readings, times, b.t - FRESHNESS_WINDOW_S)
            window = [x - y for x, y in zip(b.freshness, base.freshness)] if base is not b else list(b.freshness)
            series["freshness_p50_ms"].append(_ms(bucket_quantile(0.5, FRESHNESS_BUCKETS, window)))
            series["freshness_p95_ms"].append(_ms(bucket_quantile(0.95, FRESHNESS_BUCKETS, window)))
            for tier in tiers:
                series["recommendations_per_s"][tier].append(round(_rate(
                    _tier_total(b, tier), _tier_total(a, tier), dt), 2))
            series["fallbacks_per_s"].append(round(_rate(_fallbacks(b), _fallbacks(a), dt), 2))
            series["exploration_share"].append(round(b.exploration_share, 4))
            shown = b.shown - a.shown
            series["explored_share"].append(round((b.explored - a.explored) / shown, 4) if shown > 0 else None)
            for p in policies:
                n = b.reward_count.get(p, 0.0)
                series["mean_reward"][p].append(round(b.reward_sum.get(p, 0.0) / n, 5) if n else None)
            for v in variants:
                series["regret"][v].append(round(b.regret[v], 4) if v in b.regret else None)
        minute = _reading_before(readings, times, last.t - 60.0)
        recent = [x - y for x, y in zip(last.freshness, minute.freshness)] if minute is not last else None
        f50, f95, f99 = engine.metrics.freshness_recent.percentiles(50, 95, 99)
        by_tier = {t: _tier_total(last, t) for t in tiers}
        return {
            "t": last.t,
            "window_s": window_s,
            "series": series,
            "now": {
                "items": len(engine.catalog),
                "consumer_lag": last.lag,
                "events_ingested": last.ingested,
                "events_processed": last.processed,
                "freshness_ms": {"p50": _ms(f50), "p95": _ms(f95), "p99": _ms(f99),
                                 "over": "the last 10,000 events (exact)"},
                "policy_version": engine.policy.version,
                "processor_error": engine.processor.last_error,
            },
            "freshness_histogram": {
                "le_ms": [b * 1000 for b in FRESHNESS_BUCKETS] + [None],
                "total": _per_bucket(last.freshness),
                "last_60s": _per_bucket(recent) if recent is not None else None,
            },
            "tier_mix": by_tier,
            "recommendations": sum(by_tier.values()),
            "fallbacks": _fallbacks(last),
            "rewards_by_outcome": last.rewards,
            "reward_by_policy": {p: _mean_reward(last, p) for p in policies},
            "experiment": last.experiment,
            "regret": {"definition": REGRET_DEFINITION if last.regret else NO_REGRET, "by_variant": last.regret},
            "cache": _cache(engine),
            "llm": _llm(engine),
        }


def _cache(engine: Engine) -> dict[str, Any]:
    """The edge cache and the degradations, from the engine's own metrics."""
    m = engine.metrics
    value = lambda metric: float(metric._value.get())  # noqa: E731
    degraded: dict[str, float] = {}
    for sample in m.degradations.collect()[0].samples:
        if sample.name.endswith("_total"):
            key = f"{sample.labels['tier']}:{sample.labels['cause']}"
            degraded[key] = degraded.get(key, 0.0) + sample.value
    return {
        "available": True,
        "hit_ratio": value(m.cache_hit_ratio),
        "hits": value(m.cache_lookups.labels("hit")),
        "misses": value(m.cache_lookups.labels("miss")),
        "entries": len(engine.cache),
        "refreshed": value(m.refreshes.labels("stored")),
        "degraded": degraded,
        "ranker_version": engine.ranker.scorers.version if engine.ranker is not None else None,
    }


def _llm(engine: Engine) -> dict[str, Any]:
    """Who wrote the explanations (LLM, mixed, reasoner) and why the reasoner did; tokens."""
    m = engine.metrics
    answers: dict[str, float] = {}
    reasons: dict[str, float] = {}
    for sample in m.llm_answers.collect()[0].samples:
        if sample.name.endswith("_total"):
            answers[sample.labels["source"]] = answers.get(sample.labels["source"], 0.0) + sample.value
            if sample.labels["source"] != "llm":
                reasons[sample.labels["reason"]] = reasons.get(sample.labels["reason"], 0.0) + sample.value
    tokens = {s.labels["direction"]: s.value for s in m.llm_tokens.collect()[0].samples if s.name.endswith("_total")}
    gateway = engine.llm.gateway
    return {"backend": gateway.name if gateway is not None else None, "answers": answers, "fallback_reasons": reasons,
            "tokens": tokens}


def _reading_before(readings: list[Reading], times: list[float], t: float) -> Reading:
    """The latest reading at or before ``t``, else the oldest one."""
    return readings[max(bisect.bisect_right(times, t) - 1, 0)]


def _mean_reward(r: Reading, policy: str) -> dict[str, float | None]:
    n = r.reward_count.get(policy, 0.0)
    return {"mean": r.reward_sum.get(policy, 0.0) / n if n else None, "count": n}


def _tier_total(r: Reading, tier: str) -> float:
    return sum(v for k, v in r.recommendations.items() if k.split("/")[0] == tier)


def _fallbacks(r: Reading) -> float:
    return sum(v for k, v in r.recommendations.items() if k.endswith("/popularity"))


def _per_bucket(cumulative) -> list[float]:
    return [c - (cumulative[i - 1] if i else 0.0) for i, c in enumerate(cumulative)]


# -- recently active users -----------------------------------------------------------------------


class RecentUsers:
    """The last ``size`` distinct user ids seen, with when and where; in memory only."""

    def __init__(self, size: int = 50):
        self.size = size
        self._seen: OrderedDict[str, tuple[float, str]] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, user_ids, source: str, at: float | None = None) -> None:
        at = time.time() if at is None else at
        with self._lock:
            for uid in user_ids:
                if uid in self._seen and self._seen[uid][0] > at:
                    continue
                self._seen[uid] = (at, source)
                self._seen.move_to_end(uid)
            while len(self._seen) > self.size:
                self._seen.popitem(last=False)

    def latest(self) -> list[tuple[str, float, str]]:
        with self._lock:
            rows = [(uid, at, source) for uid, (at, source) in self._seen.items()]
        return sorted(rows, key=lambda row: -row[1])

    def forget(self, user_id: str) -> None:
        with self._lock:
            self._seen.pop(user_id, None)


class Board:
    """Dashboard state of one app: a ring of readings per engine, recent users per tenant."""

    def __init__(self, watch_s: float = WATCH_S):
        self.watch_s = watch_s
        self.watched_at = float("-inf")
        self._rings: weakref.WeakKeyDictionary[Engine, Ring] = weakref.WeakKeyDictionary()
        self._users: dict[str | None, RecentUsers] = {}
        self._lock = threading.Lock()

    def ring(self, engine: Engine) -> Ring:
        with self._lock:
            ring = self._rings.get(engine)
            if ring is None:
                ring = self._rings[engine] = Ring()
            return ring

    def users(self, tenant: str | None) -> RecentUsers:
        with self._lock:
            users = self._users.get(tenant)
            if users is None:
                users = self._users[tenant] = RecentUsers()
            return users

    def watch(self) -> None:
        self.watched_at = time.monotonic()

    def watched(self) -> bool:
        return time.monotonic() - self.watched_at < self.watch_s


class RecentUsersTap:
    """ASGI middleware: while a dashboard is watched, remembers the user ids of successful
    ``POST /v1/events`` and ``POST /v1/recommendations`` (the page's own calls, marked
    ``"source": "dashboard"``, aside), reading the body as it streams past, and forgets a
    user erased by ``DELETE /v1/users/{id}``. Costs nothing while nobody watches."""

    PATHS = {"/v1/events": "events", "/v1/recommendations": "recommendations"}
    USER_ID = re.compile(rb'"user_id"\s*:\s*"((?:[^"\\]|\\.){1,512})"')
    OWN = re.compile(rb'"source"\s*:\s*"' + SOURCE.encode() + rb'"')
    ERASE = re.compile(r"/v1/users/([^/]+)/?")
    MAX_BYTES = 4 * 1024 * 1024
    MAX_IDS = 1000

    def __init__(self, app, board: Board):
        self.app = app
        self.board = board

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] == "DELETE":
            await self._erase(scope, receive, send)
            return
        source = None
        if scope["method"] == "POST" and self.board.watched():
            source = self.PATHS.get(scope["path"].rstrip("/"))
        if source is None:
            await self.app(scope, receive, send)
            return
        body: list[bytes] = []
        size = [0]
        status = [0]

        async def tee():
            message = await receive()
            if message["type"] == "http.request" and size[0] < self.MAX_BYTES:
                chunk = message.get("body", b"")
                body.append(chunk)
                size[0] += len(chunk)
            return message

        async def watch(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        await self.app(scope, tee, watch)
        raw = b"".join(body)
        if 200 <= status[0] < 300 and self.OWN.search(raw) is None:
            ids = []
            for match in self.USER_ID.finditer(raw):
                try:
                    ids.append(orjson.loads(b'"' + match.group(1) + b'"'))
                except orjson.JSONDecodeError:
                    continue
                if len(ids) >= self.MAX_IDS:
                    break
            tenant = (scope.get("state") or {}).get("tenant")
            self.board.users(tenant).add(dict.fromkeys(ids), source)

    async def _erase(self, scope, receive, send):
        """An erased user (``DELETE /v1/users/{id}`` answered 2xx) is forgotten here too."""
        match = self.ERASE.fullmatch(scope["path"])
        if match is None:
            await self.app(scope, receive, send)
            return
        status = [0]

        async def watch(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        await self.app(scope, receive, watch)
        if 200 <= status[0] < 300:
            self.board.users((scope.get("state") or {}).get("tenant")).forget(match.group(1))


# -- the user explorer ----------------------------------------------------------------------------


def user_view(engine: Engine, user_id: str, now: float) -> dict[str, Any]:
    """What relevo holds about one user, for the explorer: session, vectors and their age,
    affect (stored only with ``emotion`` consent), consent in force. No vector values."""
    consent = engine.get_consent(user_id)
    in_force = {p: getattr(consent, p) for p in ("personalization", "profiling", "emotion", "llm")}
    raw = engine.features.get(USERS_NS, user_id)
    out: dict[str, Any] = {"user_id": user_id, "known": raw is not None, "consent": in_force}
    if raw is None:
        return out
    state = UserState.decode(raw)
    gap = engine.settings.stream.session_gap_s
    titles = engine.catalog.items

    def item(item_id: str) -> dict[str, Any]:
        found = titles.get(item_id)
        return {"item_id": item_id, "title": found.title if found else None, "tags": list(found.tags) if found else []}

    out["session"] = {
        "events": state.session_events,
        "started_event_time": state.session_started or None,
        "last_event_time": state.session_last or None,
        "last_received_age_s": now - state.received_at if state.received_at else None,
        "gap_s": gap,
        "recent_items": [item(i) for i in state.recent[-8:][::-1]],
    }
    out["vectors"] = {
        "long_term": state.vector is not None,
        "session": state.session_vector is not None,
        "updated_age_s": now - state.updated_at if state.updated_at else None,
        "event_time": state.event_time or None,
        "event_age_s": now - state.event_time if state.event_time else None,
    }
    out["counters"] = state.counters
    top = sorted(state.tag_affinity.items(), key=lambda kv: -kv[1])[:6]
    out["top_tags"] = [{"tag": t, "affinity": round(v, 4)} for t, v in top]
    if state.affect is not None:
        a = state.affect
        out["affect"] = {"frustration": a.frustration, "engagement": a.engagement, "fatigue": a.fatigue,
                         "valence": a.valence, "emotion": a.emotion}
    return out


def _recent_users(board: Board, engine: Engine, tenant: str | None, now: float) -> list[dict[str, Any]]:
    """The tap's users merged with those of the decisions logged in the last 10 s (callers
    of the Engine directly, such as ``relevo demo``, never pass through HTTP)."""
    users = board.users(tenant)
    decided = [d for d in engine.decisions.between(now - 10.0, now + 1.0, limit=200)
               if d.context.get("source") != SOURCE]
    for d in decided:
        users.add([d.user_id], "recommendations", d.created_at)
    return [{"user_id": uid, "age_s": round(max(0.0, now - at), 3), "source": source}
            for uid, at, source in users.latest()]


# -- routes -----------------------------------------------------------------------------------------


def _page() -> bytes:
    return (resources.files("relevo.api") / "static" / "dashboard.html").read_bytes()


def router(board: Board, engine_of: Callable[[Request], Engine]) -> APIRouter:
    api = APIRouter(tags=["dashboard"])
    page = _page()

    @api.get(PAGE_PATH, include_in_schema=False)
    async def dashboard_page() -> Response:
        return Response(page, media_type="text/html; charset=utf-8", headers={
            "Content-Security-Policy": _CSP, "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer"})

    @api.get(f"{API_PREFIX}/summary")
    def summary(request: Request, window: float = 120.0) -> Response:
        engine = engine_of(request)
        board.watch()
        ring = board.ring(engine)
        ring.sample(engine)
        return _json(ring.summary(engine, max(5.0, min(window, CAPACITY))))

    @api.get(f"{API_PREFIX}/users")
    def recent_users(request: Request) -> Response:
        board.watch()
        tenant = getattr(request.state, "tenant", None)
        return _json({"users": _recent_users(board, engine_of(request), tenant, time.time())})

    @api.get(f"{API_PREFIX}/users/{{user_id}}")
    def user(user_id: Id, request: Request) -> Response:
        board.watch()
        return _json(user_view(engine_of(request), user_id, time.time()))

    return api


def install(app: FastAPI, engine_of: Callable[[Request], Engine]) -> Board:
    """Serve the dashboard on ``app``: its page, its JSON and the recent-users tap."""
    board = Board()
    app.include_router(router(board, engine_of))
    app.add_middleware(RecentUsersTap, board=board)
    return board
