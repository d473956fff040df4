"""The streaming tier: fresh context -> ANN candidates -> linear Thompson Sampling -> top n.

Falls back to popularity when the user has no usable vector yet (unknown user, or only
impressions so far). Every answer is logged as a Decision with its propensities.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from opentelemetry import trace

from relevo.bandits.base import Candidates
from relevo.bandits.persisted import PersistedPolicy
from relevo.context import consent as consent_registry
from relevo.context.state import PREFERENCES_NS, USERS_NS, UserState
from relevo.embeddings.streaming import unit
from relevo.emotion import rerank
from relevo.emotion.behaviour import SessionAffect
from relevo.observability.metrics import Metrics
from relevo.records import Decision, Recommendation, ScoredItem
from relevo.retrieval.catalog import Catalog
from relevo.retrieval.protocol import VectorIndex
from relevo.storage.protocols import DecisionLog, FeatureStore
from relevo.deadline import Deadline
from relevo.ranking.features import FEATURES, candidate_features

import orjson


@dataclass(slots=True)
class RecommendRequest:
    user_id: str
    n: int = 10
    context: dict[str, Any] = field(default_factory=dict)
    filters: dict[str, Any] = field(default_factory=dict)
    explain: bool = False
    tier: str = "auto"
    # set by an experiment's variant: multiplies the exploration spread; overrides the
    # number of ANN candidates
    exploration_scale: float = 1.0
    candidates: int | None = None
    experiment: str | None = None
    variant: str | None = None
    # True: answer without the user's history (popularity and the request's filters only),
    # whatever their consent; the EU DSA Art. 38 option
    non_profiled: bool = False
    # the request's deadline in ms (None: the deployment's default, settings.tiers.budget_ms)
    budget_ms: float | None = None
    # True: not shown to the user (a dashboard or QA look): not logged, so no reward is ever
    # learned from it, no experiment exposure counts and the user's history does not grow
    preview: bool = False


def derived_seed(base_seed: int, user_id: str, decision_id: str) -> int:
    """The exploration seed of one decision: replaying (seed, user, decision) replays it."""
    digest = hashlib.blake2b(f"{base_seed}\x00{user_id}\x00{decision_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


@dataclass(slots=True)
class UserContext:
    """What a request may use about its user, read once per request (consent first: a
    user's stored state is not even read without personalization consent)."""

    allowed: dict[str, bool]
    profiled: bool
    state: UserState | None
    prefs: dict[str, Any]
    user_vec: np.ndarray | None
    session_vec: np.ndarray | None
    exclude: set[str]
    predicate: Any
    now: float

    @property
    def has_vector(self) -> bool:
        return self.user_vec is not None or self.session_vec is not None

    @property
    def history(self) -> int:
        return 0 if self.state is None else sum(self.state.counters.values())


@dataclass(slots=True)
class Served:
    """A tier's answer with what the edge cache keeps of it."""

    recommendation: Recommendation
    decision: Decision
    candidates: list[str]


class StreamingTier:
    """Also the base of the origin tier, which widens the candidates and adds the deep
    ranker's score (``_candidates`` and ``_bonus``)."""

    name = "streaming"

    def __init__(
        self,
        features: FeatureStore,
        index: VectorIndex,
        catalog: Catalog,
        decisions: DecisionLog,
        policy: PersistedPolicy,
        *,
        candidates: int = 100,
        session_gap_s: float = 1800.0,
        seed: int = 0,
        emotion: rerank.RerankConfig | None = None,
        consent_defaults: consent_registry.ConsentDefaults | None = None,
        metrics: Metrics | None = None,
        tracer: trace.Tracer | None = None,
    ):
        self.consent_defaults = consent_defaults or consent_registry.ConsentDefaults()
        self.metrics = metrics
        self.tracer = tracer or trace.NoOpTracer()
        self.features = features
        self.index = index
        self.catalog = catalog
        self.decisions = decisions
        self.policy = policy
        self.candidates = candidates
        self.session_gap_s = session_gap_s
        self.seed = seed
        self.emotion = emotion  # None: emotion-aware re-ranking is off for the deployment

    def context(self, req: RecommendRequest) -> UserContext:
        compiled = self.catalog.compile_filter(req.filters)
        allowed = consent_registry.read(self.features, req.user_id).resolved(self.consent_defaults)
        profiled = allowed["personalization"] and not req.non_profiled
        state, prefs = None, {}
        if profiled:  # the user's stored state is not even read otherwise
            raw = self.features.get(USERS_NS, req.user_id)
            state = UserState.decode(raw) if raw is not None else None
            prefs = self._preferences(req.user_id)
        stated = prefs.get("exclude_tags") if isinstance(prefs.get("exclude_tags"), list) else None
        if stated:  # tags the user said they do not want (natural-language cold start): a hard filter
            merged = dict(req.filters)
            merged["exclude_tags"] = [*merged.get("exclude_tags", []), *stated] \
                if isinstance(merged.get("exclude_tags"), list) else stated
            compiled = self.catalog.compile_filter(merged)
        now = time.time()
        user_vec = session_vec = None
        if state is not None:
            if allowed["profiling"]:
                user_vec = unit(state.vector)
            if now - state.received_at <= self.session_gap_s:
                session_vec = unit(state.session_vector)
        exclude = set(compiled.exclude_ids)
        if state is not None:
            exclude.update(state.seen if allowed["profiling"] else state.recent)
        return UserContext(allowed, profiled, state, prefs, user_vec, session_vec, exclude, compiled.predicate, now)

    def recommend(self, req: RecommendRequest, ctx: UserContext | None = None, *, deadline: Deadline | None = None,
                  reason: str | None = None, skipped: list[str] | None = None) -> Served:
        """``skipped`` collects the stages left out to meet the deadline ("ranker:budget")."""
        started = time.perf_counter()
        ctx = ctx or self.context(req)
        decision_id = uuid.uuid4().hex
        seed = derived_seed(self.seed, req.user_id, decision_id)
        tier, policy, fallback, ranker_version, candidates = self.name, self.policy.name, None, None, []
        if not ctx.profiled:
            fallback = "non_profiled"
        elif not self._can_rank(ctx):
            fallback = "no_user_vector" if ctx.state is None or ctx.state.vector is None else "no_positive_signal"
        else:
            affect = self._affect(ctx.state, ctx.now, ctx.allowed)
            items, features, candidates, ranker_version = self._bandit(req, ctx, seed, affect, deadline,
                                                                       skipped if skipped is not None else [])
            if not items:  # everything filtered out of the neighbourhood
                fallback = "no_candidates"
        if fallback is not None:
            items, features, policy, tier = self._popular(req.n, ctx.exclude, ctx.predicate), [], "popularity", "popularity"
        latency_ms = (time.perf_counter() - started) * 1000
        decision = Decision(
            decision_id=decision_id,
            user_id=req.user_id,
            policy=policy,
            policy_version=self.policy.version,
            created_at=ctx.now,
            items=items,
            features=features,
            context=req.context,
            tier=tier,
            seed=seed,
            experiment=req.experiment,
            variant=req.variant,
            consent=ctx.allowed,
            fallback=fallback,
            activated=not req.preview,
            feature_names=list(FEATURES) if features else [],
            ranker_version=ranker_version,
            tier_reason=reason,
        )
        self.log(decision, req)
        rec = Recommendation(decision_id, decision.tier, items, round(latency_ms, 3), fallback, reason)
        return Served(rec, decision, candidates)

    def popular(self, req: RecommendRequest, ctx: UserContext, reason: str | None) -> Served:
        """The last resort: items by engagement, propensity 1, logged like any answer."""
        decision_id = uuid.uuid4().hex
        items = self._popular(req.n, ctx.exclude, ctx.predicate)
        decision = Decision(decision_id, req.user_id, "popularity", self.policy.version, ctx.now, items, [],
                            req.context, "popularity", 0, not req.preview, req.experiment, req.variant,
                            consent=ctx.allowed, fallback="degraded", tier_reason=reason)
        self.log(decision, req)
        return Served(Recommendation(decision_id, "popularity", items, 0.0, "degraded", reason), decision, [])

    def log(self, decision: Decision, req: RecommendRequest) -> None:
        if not req.preview:  # a preview was not shown to anyone: nothing to log, audit or learn
            logged = time.perf_counter()
            self.decisions.append(decision)
            self._stage("log", logged)

    def _can_rank(self, ctx: UserContext) -> bool:
        return ctx.has_vector

    def _stage(self, stage: str, since: float) -> float:
        """Record the stage that ran from ``since`` (perf_counter) to now: its histogram and
        a child span of the request's span. Returns now."""
        now = time.perf_counter()
        if self.metrics is not None:
            self.metrics.stage_latency.labels(stage).observe(now - since)
        end_ns = time.time_ns()
        span = self.tracer.start_span(stage, start_time=end_ns - int((now - since) * 1e9))
        span.end(end_time=end_ns)
        return now

    def _preferences(self, user_id: str) -> dict[str, Any]:
        raw = self.features.get(PREFERENCES_NS, user_id)
        return orjson.loads(raw) if raw is not None else {}

    def _affect(self, state: UserState | None, now: float, allowed: dict[str, bool]) -> SessionAffect | None:
        """The session's affect, if the deployment allows it, the user consented (checked
        here, on the read path, as well as on the write path) and the session is live."""
        if self.emotion is None or state is None or state.affect is None or now - state.received_at > self.session_gap_s:
            return None
        return state.affect if allowed["emotion"] else None

    def _candidates(self, req: RecommendRequest, ctx: UserContext) -> list[str]:
        ids: dict[str, None] = {}
        n_cand = req.candidates or self.candidates
        for query, k in ((ctx.user_vec, n_cand), (ctx.session_vec, n_cand // 2)):
            if query is not None:
                found, _ = self.index.search(query, k, exclude=ctx.exclude, allow=ctx.predicate)
                ids.update(dict.fromkeys(found))
        return [i for i in ids if i in self.catalog]

    def _bonus(self, x: np.ndarray, vectors: np.ndarray, ctx: UserContext, deadline: Deadline | None,
               skipped: list[str]):
        """Extra score per candidate added to every posterior draw, and the model version
        that produced it (the origin's deep ranker); the streaming tier adds none."""
        return None, None

    def _bandit(self, req, ctx: UserContext, seed: int, affect=None, deadline=None, skipped=None):
        t = time.perf_counter()
        cand = self._candidates(req, ctx)
        t = self._stage("retrieve", t)
        if not cand:
            return [], [], [], None
        vectors = self.index.get_many(cand)
        rows = self.catalog.rows(cand)
        preference = self._preference_match(cand, ctx.prefs)
        x = candidate_features(
            vectors, ctx.user_vec, ctx.session_vec,
            self.catalog.engagement[rows], self.catalog.max_engagement, self.catalog.added_at[rows],
            preference, ctx.now,
        )
        candidates = Candidates(cand, x)
        t = self._stage("features", t)
        bonus, ranker_version = self._bonus(x, vectors, ctx, deadline, skipped if skipped is not None else [])
        t = time.perf_counter()
        adjustment = None
        scale = req.exploration_scale
        if affect is not None:
            adjustment = rerank.adjust(affect, x[:, 1], x[:, 3], self.catalog.valence[rows], self.emotion)
            scale *= adjustment.exploration_scale
            bonus = adjustment.bonus if bonus is None else bonus + adjustment.bonus
        slate = self.policy.policy.select(None, candidates, req.n, seed, exploration_scale=scale, bonus=bonus)
        self._stage("bandit", t)
        items = []
        for pos, row in enumerate(slate.order.tolist()):
            items.append(
                ScoredItem(
                    item_id=cand[row],
                    score=round(float(slate.scores[pos]), 6),
                    propensity=round(float(slate.propensity[pos]), 6),
                    explored=bool(slate.explored[pos]),
                    reasons=_reasons(x[row], bool(slate.explored[pos]), adjustment.reason if adjustment else None),
                )
            )
        features = [x[row].round(6).tolist() for row in slate.order.tolist()]
        return items, features, cand, ranker_version

    def _preference_match(self, cand: list[str], prefs: dict[str, Any]) -> np.ndarray:
        liked = set(prefs.get("liked_tags", []))
        disliked = set(prefs.get("disliked_tags", []))
        out = np.zeros(len(cand))
        if not liked and not disliked:
            return out
        for i, item_id in enumerate(cand):
            tags = self.catalog.items[item_id].tags
            out[i] = (1.0 if liked.intersection(tags) else 0.0) - (1.0 if disliked.intersection(tags) else 0.0)
        return out

    def _popular(self, n: int, exclude: set[str], predicate) -> list[ScoredItem]:
        out: list[ScoredItem] = []
        taken: set[str] = set()  # the order may be recomputed between widenings
        top = max(self.catalog.max_engagement, 1.0)
        start, limit = 0, max(4 * n, 1000)
        while True:  # the top of the popularity order, widened only when filters leave too few
            order = self.catalog.popular_order(limit)
            for row in order[start:].tolist():
                item_id = self.catalog.id_at(row)
                if item_id in exclude or item_id in taken or (predicate is not None and not predicate(item_id)):
                    continue
                taken.add(item_id)
                score = float(self.catalog.engagement[row]) / top
                out.append(ScoredItem(item_id, round(score, 6), 1.0, False, ["popular"]))
                if len(out) >= n:
                    return out
            if len(order) < limit:
                return out
            start, limit = len(order), 4 * limit


def _reasons(x: np.ndarray, explored: bool, affect_reason: str | None = None) -> list[str]:
    named = dict(zip(FEATURES, x.tolist()))
    reasons = []
    if named["session_similarity"] >= 0.5:
        reasons.append("similar to what you engaged with this session")
    if named["user_similarity"] >= 0.5:
        reasons.append("matches your long-term taste")
    if named["preference_match"] > 0:
        reasons.append("matches your stated preferences")
    if named["popularity"] >= 0.5:
        reasons.append("popular")
    elif named["recency"] >= 0.9 and named["popularity"] <= 0.0:
        reasons.append("new in the catalog")
    if explored:
        reasons.append("exploring: shown to learn whether it suits you")
    if affect_reason:
        reasons.append(affect_reason)
    return reasons or ["related to your activity"]
