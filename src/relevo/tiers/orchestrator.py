"""The orchestrator: which tier answers a request, under its deadline, and what happens
when a tier fails or does not fit.

Selection (``tier="auto"``), first rule that holds:

1. a valid cached answer for (user, n, filters, context bucket), made after the latest
   catalog change and not invalidated by the user's events -> **edge** ("cached"); with
   ``explain=true`` its items are explained, usually from explanations the refresher had
   the LLM write in the background;
2. ``explain=true`` -> **origin** ("explain requested");
3. no personalization consent, or ``non_profiled`` -> **streaming**, which answers by
   popularity ("non-profiled");
4. no usable user vector -> **origin** ("new user"); a cached answer that predates new
   items -> **origin** ("new items since the cached answer"); fewer than ``min_history``
   events -> **origin** ("low confidence");
5. a session with an event within the session gap -> **streaming** ("active session");
6. otherwise -> **origin** ("returning user, no cached answer").

``tier="edge" | "streaming" | "origin"`` starts at that tier ("requested"). From the chosen
tier the request goes down origin -> streaming -> edge -> popularity: a tier is skipped
when its expected cost does not fit what is left of the deadline ("tier:budget"), when it
raises ("tier:error") or, for the edge, when it has nothing for the user ("edge:miss").
Popularity always answers. Streaming and origin answers are cached for the edge.
"""

from __future__ import annotations

import dataclasses
import time

import structlog

from relevo.observability.metrics import Metrics
from relevo.deadline import CostModel, Deadline
from relevo.llm.service import LLMService
from relevo.tiers import reasoning
from relevo.tiers.edge import EdgeTier
from relevo.tiers.origin import OriginTier
from relevo.tiers.streaming import RecommendRequest, Served, StreamingTier, UserContext

log = structlog.get_logger(__name__)

TIERS = ("origin", "streaming", "edge", "popularity")
COST_PRIORS_MS = {"edge": 2.0, "streaming": 8.0, "origin": 20.0, "ranker": 3.0}


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class OrchestratorConfig:
    budget_ms: float = 150.0
    min_history: int = 5
    session_gap_s: float = 1800.0
    llm_budget_ms: float = 120.0  # at most this much of a request for the LLM
    precompute_budget_ms: float = 10_000.0  # the refresher's explanations, in the background
    rerank_low_confidence: bool = True


class Orchestrator:
    def __init__(self, streaming: StreamingTier, origin: OriginTier, edge: EdgeTier, costs: CostModel,
                 config: OrchestratorConfig, metrics: Metrics | None = None, llm: LLMService | None = None):
        self.streaming = streaming
        self.origin = origin
        self.edge = edge
        self.costs = costs
        self.config = config
        self.metrics = metrics
        self._hits = 0.0  # EWMA of the cache hit ratio over about the last 200 lookups
        self.clock = time.time  # the cache's clock (a replay sets a virtual one)
        self.llm = llm

    def recommend(self, req: RecommendRequest) -> Served:
        deadline = Deadline(req.budget_ms or self.config.budget_ms)
        now = self.clock()
        use_cache = not req.preview and not req.non_profiled
        generation = self.edge.cache.generation(req.user_id)
        catalog_version = self.streaming.catalog.version
        entry = None
        if use_cache and req.tier in ("auto", "edge"):
            entry = self.edge.lookup(req, now)
            hit = entry is not None and entry.catalog_version == catalog_version
            self._count_lookup(hit)
            if hit:
                served = self.edge.serve_hit(req, entry, "cached" if req.tier == "auto" else "requested", now)
                if req.explain:  # explanations precomputed for the cached slate make this fast too
                    served = self._reason(req, self.streaming.context(req), served, deadline, "cached")
                return self._finish(served, deadline, ())
        ctx = self.streaming.context(req)
        start, reason = self.select(req, ctx, entry)
        degraded: list[str] = []
        for tier in TIERS[TIERS.index(start):]:
            if tier == "popularity":
                break
            if not deadline.fits(self.costs.expected_ms(tier)):
                degraded.append(f"{tier}:budget")
                self.costs.skipped(tier)
                continue
            started = time.perf_counter()
            try:
                served = self._run(tier, req, ctx, deadline, reason, degraded, now)
            except Exception as exc:  # noqa: BLE001 - a failing tier degrades, the request does not fail
                log.warning("tier_failed", tier=tier, error=repr(exc))
                degraded.append(f"{tier}:error")
                continue
            if served is None:
                degraded.append(f"{tier}:miss")
                continue
            self.costs.observe(tier, (time.perf_counter() - started) * 1000)
            served = self._reason(req, ctx, served, deadline, reason)
            if use_cache and tier in ("origin", "streaming") and served.recommendation.tier == tier:
                self.edge.store(req, served, generation, now, catalog_version)
            return self._finish(served, deadline, degraded)
        served = self._reason(req, ctx, self.streaming.popular(req, ctx, reason), deadline, reason)
        return self._finish(served, deadline, degraded)

    def _reason(self, req: RecommendRequest, ctx: UserContext, served: Served, deadline: Deadline,
                reason: str) -> Served:
        """The LLM's part, when worth it: explanations for explain=true; a re-rank of the
        origin's slate when confidence is low. Deterministic fallbacks, within the deadline."""
        if self.llm is None or not served.recommendation.items:
            return served
        budget = Deadline(min(deadline.remaining_ms(), self.config.llm_budget_ms))
        changed = False
        if self.config.rerank_low_confidence and served.recommendation.tier == "origin" and not req.preview \
                and reason in ("low confidence", "new user") and served.decision.features:
            reranked = reasoning.rerank(self.llm, self.streaming.catalog, self.streaming.index, ctx, served, budget)
            changed = reranked is not served
            served = reranked
        if req.explain:
            served = reasoning.explain(self.llm, self.streaming.catalog, self.streaming.index, ctx, served, budget)
            changed = True
        if changed:
            self.streaming.log(served.decision, req)  # the logged decision carries the final order and texts
        return served

    def refresh(self, req: RecommendRequest, generation: int) -> bool:
        """Recompute ``req``'s answer as a preview through the tier ``auto`` would pick and
        cache it (the refresher, after the user's events were applied), unless the user
        changed (or was erased) since ``generation`` was read. True if stored."""
        now = self.clock()
        catalog_version = self.streaming.catalog.version
        preview = dataclasses.replace(req, preview=True, tier="auto", explain=False, budget_ms=None)
        ctx = self.streaming.context(preview)
        tier, reason = self.select(preview, ctx, None)
        if tier not in ("origin", "streaming"):
            return False
        started = time.perf_counter()
        served = self._run(tier, preview, ctx, Deadline(self.config.budget_ms), reason, [], now)
        self.costs.observe(tier, (time.perf_counter() - started) * 1000)
        if served is None or served.recommendation.tier != tier:
            return False  # a popularity fallback is not worth a cache entry
        stored = self.edge.store(req, served, generation, now, catalog_version)
        if stored and self.llm is not None and ctx.allowed.get("llm", False):
            # explanations for the items the user will most likely see next, off the request path
            reasoning.explain(self.llm, self.streaming.catalog, self.streaming.index, ctx, served,
                              Deadline(self.config.precompute_budget_ms))
        return stored

    def select(self, req: RecommendRequest, ctx: UserContext, entry) -> tuple[str, str]:
        if req.tier != "auto":
            return req.tier, "requested"
        if req.explain:
            return "origin", "explain requested"
        if not ctx.profiled:
            return "streaming", "non-profiled"
        if not ctx.has_vector:
            return "origin", "new user"
        if entry is not None:  # valid, but older than the catalog's latest change
            return "origin", "new items since the cached answer"
        if ctx.history < self.config.min_history:
            return "origin", "low confidence"
        if ctx.state is not None and ctx.now - ctx.state.received_at <= self.config.session_gap_s:
            return "streaming", "active session"
        return "origin", "returning user, no cached answer"

    def _run(self, tier: str, req, ctx, deadline, reason, degraded, now: float) -> Served | None:
        if tier == "edge":
            return self.edge.rescore(req, ctx, reason, now)
        if tier == "origin":
            return self.origin.recommend(req, ctx, deadline=deadline, reason=reason, skipped=degraded)
        return self.streaming.recommend(req, ctx, deadline=deadline, reason=reason)

    def _finish(self, served: Served, deadline: Deadline, degraded) -> Served:
        elapsed = deadline.elapsed_ms()
        rec = dataclasses.replace(served.recommendation, latency_ms=round(elapsed, 3), degraded=tuple(degraded))
        if self.metrics is not None:
            m = self.metrics
            m.tier_latency.labels(rec.tier).observe(elapsed / 1000)
            m.tier_requests.labels(rec.tier, rec.tier_reason or "").inc()
            for step in degraded:
                tier, cause = step.split(":", 1)
                m.degradations.labels(tier, cause).inc()
        return Served(rec, served.decision, served.candidates)

    def _count_lookup(self, hit: bool) -> None:
        self._hits += 0.005 * (float(hit) - self._hits)
        if self.metrics is not None:
            self.metrics.cache_lookups.labels("hit" if hit else "miss").inc()
            self.metrics.cache_hit_ratio.set(self._hits)
