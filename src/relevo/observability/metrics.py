"""Prometheus metrics for one Engine (own registry, so several engines can coexist), plus
bounded reservoirs of recent samples for exact percentiles in the CLI and benchmarks."""

from __future__ import annotations

import threading
from collections import deque

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Summary, generate_latest

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
FRESHNESS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Reservoir:
    """The last ``size`` samples, for percentiles over a recent window."""

    def __init__(self, size: int = 10_000):
        self._samples: deque[float] = deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, value: float) -> None:
        self._samples.append(value)

    def extend(self, values) -> None:
        with self._lock:
            self._samples.extend(values)

    def percentiles(self, *qs: float) -> list[float | None]:
        with self._lock:
            data = np.fromiter(self._samples, dtype=np.float64)
        if data.size == 0:
            return [None for _ in qs]
        return [float(v) for v in np.percentile(data, qs)]

    def drain(self) -> list[float]:
        """Every sample held, oldest first; the reservoir is empty afterwards."""
        with self._lock:
            out = list(self._samples)
            self._samples.clear()
        return out

    def __len__(self) -> int:
        return len(self._samples)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events_ingested = Counter("relevo_events_ingested", "Events accepted into the log", registry=r)
        self.events_duplicate = Counter("relevo_events_duplicate", "Events skipped as duplicates", registry=r)
        self.events_processed = Counter("relevo_events_processed", "Events applied by the stream processor", registry=r)
        self.events_redelivered = Counter(
            "relevo_events_redelivered", "Redelivered events skipped as already applied", registry=r
        )
        self.consumer_lag = Gauge("relevo_consumer_lag", "Events in the log not yet processed", registry=r)
        self.dead_letters = Counter(
            "relevo_dead_letters", "Events moved to the dead-letter list after failing alone repeatedly", registry=r)
        self.learn_conflicts = Counter(
            "relevo_learn_conflicts", "Guarded bandit writes retried because another process wrote first", registry=r)
        self.overloaded = Counter(
            "relevo_ingest_overloaded", "Event batches refused (429) because the stream workers were behind", registry=r)
        self.freshness = Histogram(
            "relevo_freshness_seconds", "Time from receiving an event to its effect being servable",
            buckets=FRESHNESS_BUCKETS, registry=r,
        )
        self.request_latency = Histogram(
            "relevo_request_seconds", "Engine latency by endpoint", ["endpoint"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.http_latency = Histogram(
            "relevo_http_request_seconds", "HTTP latency by method, route template and status class",
            ["method", "route", "status"], buckets=LATENCY_BUCKETS, registry=r,
        )
        self.stage_latency = Histogram(
            "relevo_stage_seconds", "Time in each stage of a streaming-tier decision", ["stage"],
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.reward_value = Summary(
            "relevo_reward_value", "Rewards learned, by policy (sum / count = the policy's mean reward)", ["policy"],
            registry=r,
        )
        self.affect_updates = Counter(
            "relevo_affect_updates", "Emotion-signal updates applied (consented users only), by source", ["source"],
            registry=r,
        )
        self.recommendations = Counter(
            "relevo_recommendations", "Recommendations served", ["tier", "policy"], registry=r
        )
        self.explored = Counter("relevo_items_explored", "Items shown that the greedy policy would not show", registry=r)
        self.shown = Counter("relevo_items_shown", "Items shown", registry=r)
        self.exploration_share = Gauge(
            "relevo_exploration_share", "Share of shown items the greedy policy would not show (EWMA over ~100 answers)",
            registry=r)
        self.rewards = Counter(
            "relevo_rewards", "Outcomes met by the reward joiner: joined, duplicate, late, orphan, inactive, defaulted",
            ["outcome"], registry=r)
        self.errors = Counter("relevo_errors", "Requests rejected, by error code", ["code"], registry=r)
        self.erasures = Counter("relevo_erasures", "Users erased", registry=r)
        self.pii_redacted = Counter("relevo_pii_redacted", "PII spans redacted from event text before storage",
                                    registry=r)
        self.items = Gauge("relevo_items", "Items in the catalog", registry=r)
        # tiers
        self.tier_latency = Histogram(
            "relevo_tier_seconds", "Recommendation latency by the tier that answered", ["tier"],
            buckets=LATENCY_BUCKETS, registry=r)
        self.tier_requests = Counter(
            "relevo_tier_requests", "Recommendations by the tier that answered and why it was chosen (tier mix)",
            ["tier", "reason"], registry=r)
        self.degradations = Counter(
            "relevo_degradations", "Tiers skipped on the way down, by tier and cause (budget, error, miss)",
            ["tier", "cause"], registry=r)
        self.cache_lookups = Counter("relevo_edge_cache_lookups", "Edge cache lookups, by result", ["result"],
                                     registry=r)
        self.cache_hit_ratio = Gauge(
            "relevo_edge_cache_hit_ratio", "Edge cache hit ratio (EWMA over about the last 200 lookups)", registry=r)
        self.invalidation_lag = Histogram(
            "relevo_invalidation_lag_seconds", "Time from receiving a user's event to clearing their cached answers "
            "after the event was applied", buckets=FRESHNESS_BUCKETS, registry=r)
        self.invalidations = Counter("relevo_edge_invalidations", "Cached answers dropped by user events",
                                     registry=r)
        self.llm_calls = Counter("relevo_llm_calls", "LLM gateway calls by backend, use and outcome "
                                 "(ok, cache_hit, timeout, unavailable, busy, budget, circuit_open, rate_limited, error)",
                                 ["backend", "use", "outcome"], registry=r)
        self.llm_answers = Counter("relevo_llm_answers", "Answers by use, by who gave them (llm, mixed, reasoner) and "
                                   "why the reasoner did (fallback reason; ok when the LLM answered)",
                                   ["use", "source", "reason"], registry=r)
        self.llm_tokens = Counter("relevo_llm_tokens", "LLM tokens by backend and direction (in, out)",
                                  ["backend", "direction"], registry=r)
        self.llm_latency = Histogram("relevo_llm_seconds", "LLM call latency (answered calls)", ["backend"],
                                     buckets=LATENCY_BUCKETS, registry=r)
        self.refreshes = Counter("relevo_edge_refreshes", "Cached answers recomputed after a user's events, by result",
                                 ["result"], registry=r)
        self.ranker_version = Gauge("relevo_ranker_version", "Version of the deep ranker in service", registry=r)
        self.ranker_examples = Counter("relevo_ranker_examples", "Training examples handed to the deep ranker",
                                       registry=r)
        self.freshness_recent = Reservoir()
        self.recommend_recent = Reservoir()

    def render(self) -> bytes:
        return generate_latest(self.registry)
