"""The edge tier: a personalized response cache, and on a miss the lightweight ONNX
scorer plus a Beta-Bernoulli bandit over the user's cached candidates.

- ``ResponseCache``: per user, per (n, filters, context bucket), the last answer of the
  streaming or origin tier, for ``ttl_s``. A user's event clears all their entries (the
  invalidation bus); an answer computed from state older than the latest invalidation is
  not stored (per-user generation counter), so a stale list is never served after an
  event. Bounded: least recently used users are dropped past ``max_users``.
- ``EdgeTier.rescore``: the candidates of the user's last origin/streaming answer, features
  recomputed from the user's current state, scored by the scorer distilled from the deep
  ranker, and a Beta-Bernoulli Thompson Sampling bandit over the items (policy
  ``edge_beta``, learned from rewards on edge decisions like any policy) picks the slate,
  with propensities.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, replace

import numpy as np
import orjson

from relevo.bandits.base import Candidates
from relevo.bandits.persisted import PersistedPolicy
from relevo.records import Decision, Recommendation, ScoredItem
from relevo.ranking.online import OnlineRanker
from relevo.ranking.features import FEATURES, PRIOR_MEAN, candidate_features
from relevo.tiers.streaming import RecommendRequest, Served, StreamingTier, UserContext, _reasons, derived_seed

CONTEXT_KEYS = ("device", "page", "surface", "locale", "country", "placement")
MAX_REQUESTS_PER_USER = 4
MAX_ENTRIES_PER_USER = 8


def cache_key(req: RecommendRequest, context_keys=CONTEXT_KEYS) -> bytes:
    """n, filters, the experiment variant and the context bucket (the context keys that
    select a different page; other context keys do not split the cache)."""
    bucket = {k: req.context[k] for k in context_keys if k in req.context}
    return orjson.dumps([req.n, req.filters, req.variant, bucket], option=orjson.OPT_SORT_KEYS)


@dataclass(slots=True)
class CacheEntry:
    recommendation: Recommendation
    decision: Decision
    created_at: float  # epoch s
    catalog_version: int


class ResponseCache:
    """Thread-safe. Users are kept in LRU order (at most ``max_users``; a user's answers,
    cached candidates and remembered requests leave together), at most
    ``MAX_ENTRIES_PER_USER`` answers each.

    Generations: every invalidation takes the next number of one global sequence and
    records it for the user (``_marks``, bounded by an LRU of ``max_marks`` users whose
    evictions raise a floor that stands in for every unrecorded user). A reader takes
    ``generation(user)`` before computing; ``put`` refuses if it changed meanwhile. An
    eviction can only refuse more puts than needed (a miss later), never accept a stale one."""

    def __init__(self, ttl_s: float = 60.0, max_users: int = 100_000, max_marks: int = 1_000_000):
        self.ttl_s = ttl_s
        self.max_users = max_users
        self.max_marks = max_marks
        self._users: OrderedDict[str, dict[bytes, CacheEntry]] = OrderedDict()
        self._entries = 0
        self._candidates: dict[str, tuple[float, list[str]]] = {}
        # the last requests each user made, per key: what the refresher recomputes after their events
        self._requests: dict[str, dict[bytes, RecommendRequest]] = {}
        self._marks: OrderedDict[str, int] = OrderedDict()
        self._seq = 0
        self._floor = 0
        self._lock = threading.Lock()

    def generation(self, user_id: str) -> int:
        with self._lock:
            return self._marks.get(user_id, self._floor)

    def get(self, user_id: str, key: bytes, now: float, max_age_s: float | None = None) -> CacheEntry | None:
        with self._lock:
            entries = self._users.get(user_id)
            entry = entries.get(key) if entries else None
            if entry is None:
                return None
            if now - entry.created_at > (self.ttl_s if max_age_s is None else max_age_s):
                return None
            self._users.move_to_end(user_id)
            return entry

    def put(self, user_id: str, key: bytes, entry: CacheEntry, generation: int,
            candidates: list[str] | None = None, request: RecommendRequest | None = None) -> bool:
        """Store unless the user was invalidated since ``generation`` was read."""
        with self._lock:
            if self._marks.get(user_id, self._floor) != generation:
                return False
            entries = self._users.setdefault(user_id, {})
            self._entries += key not in entries
            entries.pop(key, None)
            entries[key] = entry  # most recent last
            while len(entries) > MAX_ENTRIES_PER_USER:
                del entries[next(iter(entries))]
                self._entries -= 1
            self._users.move_to_end(user_id)
            if candidates:
                self._candidates[user_id] = (entry.created_at, candidates)
            if request is not None:
                requests = self._requests.setdefault(user_id, {})
                requests.pop(key, None)
                requests[key] = request
                while len(requests) > MAX_REQUESTS_PER_USER:
                    del requests[next(iter(requests))]
            while len(self._users) > self.max_users:
                evicted, gone = self._users.popitem(last=False)
                self._entries -= len(gone)
                self._candidates.pop(evicted, None)
                self._requests.pop(evicted, None)
            return True

    def requests(self, user_id: str) -> list[RecommendRequest]:
        with self._lock:
            return list(self._requests.get(user_id, {}).values())

    def candidates(self, user_id: str, now: float, ttl_s: float) -> list[str] | None:
        with self._lock:
            found = self._candidates.get(user_id)
        if found is None or now - found[0] > ttl_s:
            return None
        return found[1]

    def _mark(self, user_id: str) -> None:
        self._seq += 1
        self._marks[user_id] = self._seq
        self._marks.move_to_end(user_id)
        while len(self._marks) > self.max_marks:
            _, seq = self._marks.popitem(last=False)
            self._floor = max(self._floor, seq)

    def invalidate(self, user_ids) -> int:
        """Drop the users' cached answers; their candidates and requests stay (re-scored and
        recomputed with fresh state) and leave with the user from the LRU. Returns the
        number of answers dropped."""
        dropped = 0
        with self._lock:
            for user_id in user_ids:
                self._mark(user_id)
                entries = self._users.get(user_id)
                if entries:
                    dropped += len(entries)
                    self._entries -= len(entries)
                    entries.clear()
        return dropped

    def forget(self, user_id: str) -> int:
        """Erasure or withdrawn consent: everything about the user (an in-flight put is
        refused). Returns what was dropped (answers + candidate lists)."""
        with self._lock:
            self._mark(user_id)
            entries = self._users.pop(user_id, None) or {}
            self._entries -= len(entries)
            dropped = len(entries) + (self._candidates.pop(user_id, None) is not None)
            self._requests.pop(user_id, None)
        return dropped

    def clear(self) -> None:
        with self._lock:
            self._seq += 1
            self._floor = self._seq  # every generation read before now is refused
            self._marks.clear()
            self._users.clear()
            self._candidates.clear()
            self._requests.clear()
            self._entries = 0

    def __len__(self) -> int:
        return self._entries

    def __contains__(self, user_id: object) -> bool:
        with self._lock:
            return user_id in self._users or user_id in self._requests or user_id in self._candidates


class EdgeTier:
    name = "edge"

    def __init__(self, cache: ResponseCache, streaming: StreamingTier, bandit: PersistedPolicy,
                 ranker: OnlineRanker | None, *, candidate_ttl_s: float = 900.0, max_candidates: int = 50,
                 context_keys: tuple[str, ...] = CONTEXT_KEYS):
        self.cache = cache
        self.streaming = streaming  # its stores, catalog, index and decision log
        self.bandit = bandit
        self.ranker = ranker
        self.candidate_ttl_s = candidate_ttl_s
        self.max_candidates = max_candidates
        self.context_keys = context_keys

    def key(self, req: RecommendRequest) -> bytes:
        return cache_key(req, self.context_keys)

    def lookup(self, req: RecommendRequest, now: float) -> CacheEntry | None:
        return self.cache.get(req.user_id, self.key(req), now)

    def serve_hit(self, req: RecommendRequest, entry: CacheEntry, reason: str, now: float) -> Served:
        """The cached answer under a new decision id, logged like any answer; rewards for it
        teach the policy that made the original (same items, features and propensities)."""
        decision = replace(entry.decision, decision_id=uuid.uuid4().hex, created_at=now, tier="edge",
                           activated=not req.preview, experiment=req.experiment, variant=req.variant,
                           rewards=None, tier_reason=reason)
        self.streaming.log(decision, req)
        rec = replace(entry.recommendation, decision_id=decision.decision_id, tier="edge", tier_reason=reason,
                      degraded=(), explanation=None)  # explain=true requests are explained again (from cache)
        return Served(rec, decision, [])

    def store(self, req: RecommendRequest, served: Served, generation: int, now: float, catalog_version: int) -> bool:
        """``generation`` and ``catalog_version`` as read before the answer was computed."""
        entry = CacheEntry(served.recommendation, served.decision, now, catalog_version)
        return self.cache.put(req.user_id, self.key(req), entry, generation,
                              served.candidates[: self.max_candidates] if served.candidates else None, req)

    def rescore(self, req: RecommendRequest, ctx: UserContext, reason: str, now: float) -> Served | None:
        """The user's cached candidates, re-scored with fresh features by the edge scorer and
        the edge bandit; None when there are none. ``now``: the cache's clock."""
        s = self.streaming
        cached = self.cache.candidates(req.user_id, now, self.candidate_ttl_s)
        if not cached or not ctx.profiled:
            return None
        cand = [i for i in cached if i in s.catalog and i in s.index and i not in ctx.exclude
                and (ctx.predicate is None or ctx.predicate(i))]
        if not cand:
            return None
        started = time.perf_counter()
        vectors = s.index.get_many(cand)
        rows = s.catalog.rows(cand)
        x = candidate_features(vectors, ctx.user_vec, ctx.session_vec, s.catalog.engagement[rows],
                               s.catalog.max_engagement, s.catalog.added_at[rows],
                               s._preference_match(cand, ctx.prefs), ctx.now)
        scorers = self.ranker.scorers if self.ranker is not None else None
        if scorers is not None and scorers.edge is not None:
            bonus = scorers.edge.score(x.astype(np.float32)).astype(np.float64)
        else:
            bonus = x @ np.asarray(PRIOR_MEAN, dtype=np.float64)
        decision_id = uuid.uuid4().hex
        seed = derived_seed(s.seed, req.user_id, decision_id)
        slate = self.bandit.policy.select(None, Candidates(cand, x), req.n, seed,
                                          exploration_scale=req.exploration_scale, bonus=bonus)
        items = [ScoredItem(cand[row], round(float(slate.scores[pos]), 6), round(float(slate.propensity[pos]), 6),
                            bool(slate.explored[pos]), _reasons(x[row], bool(slate.explored[pos])))
                 for pos, row in enumerate(slate.order.tolist())]
        decision = Decision(
            decision_id=decision_id, user_id=req.user_id, policy=self.bandit.name, policy_version=self.bandit.version,
            created_at=ctx.now, items=items, features=[x[r].round(6).tolist() for r in slate.order.tolist()],
            context=req.context, tier="edge", seed=seed, activated=not req.preview, experiment=req.experiment,
            variant=req.variant, consent=ctx.allowed, feature_names=list(FEATURES),
            ranker_version=scorers.version if scorers is not None and scorers.edge is not None else None,
            tier_reason=reason,
        )
        s.log(decision, req)
        latency = round((time.perf_counter() - started) * 1000, 3)
        return Served(Recommendation(decision_id, "edge", items, latency, None, reason), decision, cand)
