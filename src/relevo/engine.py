"""The Engine: composition root and the one facade the API, CLI, tests and benchmarks use.

    engine = Engine(Settings(home="/tmp/relevo"))
    with engine:
        engine.add_items([Item(id="m1", title="Heat (1995)", tags=["Action"])])
        engine.ingest([Event(user_id="u1", item_id="m1", type="click")])
        engine.wait_idle()
        engine.recommend(RecommendRequest(user_id="u1", n=10))
"""

from __future__ import annotations

import dataclasses
import math
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import orjson
import structlog

from relevo.bandits.linear_ts import LinearTS, LinTSConfig
from relevo.bandits.logistic import LogisticTS, LogisticTSConfig
from relevo.bandits.persisted import PersistedPolicy
from relevo.context import consent as consent_registry
from relevo.context.state import ITEMS_NS, PREFERENCES_NS, USERS_NS, UserState
from relevo.emotion import behaviour, rerank
from relevo.embeddings.encoder import TextEncoder
from relevo.embeddings.streaming import StreamingConfig
from relevo.errors import NotFound, Overloaded, ValidationError
from relevo.experiments.service import ExperimentService
from relevo.observability.metrics import Metrics
from relevo.observability.tracing import make_tracer
from relevo.personalizer.service import PersonalizerConfig, PersonalizerService
from relevo.privacy import access, pii
from relevo.records import ErasureReceipt, Event, Item, Recommendation
from relevo.retrieval.catalog import Catalog
from relevo.retrieval.exact import ExactIndex
from relevo.retrieval.hnsw import HnswIndex
from relevo.settings import Settings
from relevo.storage.protocols import AppendResult
from relevo.storage.registry import open_store
from relevo.stream.processor import ERASED_NS, GROUP, StreamProcessor, strip_profile, tombstone
from relevo.stream.replication import Handlers, Replicator, node_name
from relevo.stream.rewards import REWARDS_NS, JoinConfig, Outcome, RewardJoiner, marker_key
from relevo.bandits.beta import BetaTS, BetaTSConfig
from relevo.llm.backends import LlamaCppBackend, OpenAICompatBackend
from relevo.llm.gateway import Gateway, GatewayConfig
from relevo.llm.grounding import Checker
from relevo.llm.service import LLMService
from relevo.ranking.online import OnlineRanker, RankerConfig
from relevo.deadline import CostModel, Deadline
from relevo.tiers.edge import EdgeTier, ResponseCache
from relevo.ranking.features import FEATURES, PRIOR_MEAN
from relevo.tiers.invalidation import InvalidationBus
from relevo.tiers.orchestrator import COST_PRIORS_MS, Orchestrator, OrchestratorConfig
from relevo.tiers.origin import OriginTier
from relevo.tiers.refresh import Refresher
from relevo.tiers.streaming import RecommendRequest, StreamingTier

log = structlog.get_logger(__name__)

META_NS = "meta"
MAX_PREFERENCES_BYTES = 16 * 1024


def _encode_item(item: Item, vector: np.ndarray) -> bytes:
    body = orjson.dumps(item.model_dump(mode="json", exclude_none=True))
    return len(body).to_bytes(4, "little") + body + np.asarray(vector, dtype=np.float32).tobytes()


def _decode_item(raw: bytes, dim: int) -> tuple[Item, np.ndarray]:
    size = int.from_bytes(raw[:4], "little")
    item = Item.model_validate(orjson.loads(raw[4 : 4 + size]))
    return item, np.frombuffer(raw, dtype=np.float32, count=dim, offset=4 + size).copy()


class Engine:
    def __init__(self, settings: Settings | None = None, *, encoder: TextEncoder | None = None,
                 span_exporter=None):
        self.settings = settings or Settings()
        self._encoder = encoder
        self.metrics = Metrics()
        t = self.settings.tracing
        self.tracer, self._tracer_provider = make_tracer(
            t.otlp_endpoint, service_name=t.service_name, sample_ratio=t.sample_ratio, exporter=span_exporter)
        self._opened = False
        self._items_lock = threading.Lock()

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def encoder(self) -> TextEncoder:
        if self._encoder is None:
            from relevo.embeddings.minilm import MiniLMEncoder

            cfg = self.settings.encoder
            self._encoder = MiniLMEncoder(
                cfg.model_dir or None, cfg.cache_dir or None, batch_size=cfg.batch_size, threads=cfg.threads
            )
        return self._encoder

    def open(self, progress: Callable[[str, int, int], None] | None = None) -> "Engine":
        """``progress(stage, done, total)`` follows the slow parts of a start (rebuilding the
        vector index from the stored vectors when no matching snapshot exists)."""
        s = self.settings
        s.home.mkdir(parents=True, exist_ok=True)
        sync = s.storage.sqlite_synchronous
        self.events = open_store("event_log", s.store_url("event_log"), sqlite_synchronous=sync)
        self.features = open_store("feature_store", s.store_url("feature_store"), sqlite_synchronous=sync)
        self.decisions = open_store("decision_log", s.store_url("decision_log"), sqlite_synchronous=sync)
        self.models = open_store("model_store", s.store_url("model_store"), sqlite_synchronous=sync)
        self.node = s.stream.consumer or node_name()
        # several processes over one Redis: follow the item-update feed from where the
        # copies below are loaded, so nothing published meanwhile is missed
        feed_from = self.events.feed_head() if hasattr(self.events, "feed_head") else None
        dim = self.encoder.dim
        self.catalog = Catalog()
        self.index = self._new_index(dim)
        self._load_items(dim, progress)
        self.affect = self._affect_analyzer()
        pv = s.privacy
        self.consent_defaults = consent_registry.ConsentDefaults(
            pv.default_personalization, pv.default_profiling, pv.default_emotion, pv.default_llm)
        self.policy = PersistedPolicy(self._new_policy(), self.features, self.models)
        self.policy.load()
        self.experiments = ExperimentService(self.features, seed=s.recommend.seed)
        self._exploration_share = 0.0
        self.joiner = RewardJoiner(
            self.decisions, self.features, self.policy,
            JoinConfig(s.bandit.attribution_window_s, s.bandit.default_reward),
            on_reward=self.experiments.on_reward,
        )
        st = s.stream
        self.processor = StreamProcessor(
            self.events, self.features, self.index, self.catalog, self.joiner, self.metrics,
            StreamingConfig(st.long_decay, st.session_decay, st.session_gap_s),
            batch_size=st.batch_size, poll_ms=st.poll_ms, consumer=self.node,
            affect_analyzer=self.affect, behaviour_config=behaviour.BehaviourConfig(s.emotion.half_life_s),
            consent_defaults=self.consent_defaults,
        )
        ps = s.personalizer
        self.personalizer = PersonalizerService(self.decisions, self.features, self.models, PersonalizerConfig(
            context_dim=ps.context_dim, action_dim=ps.action_dim, exploration=ps.exploration,
            propensity_samples=s.recommend.propensity_samples, reward_wait_s=ps.reward_wait_s,
            default_reward=ps.default_reward, apprentice_exploration=ps.apprentice_exploration,
            min_events=ps.min_events, max_actions=ps.max_actions, seed=s.recommend.seed,
        ))
        self.processor.joiners.append(self.personalizer.joiner)
        for joiner in self.processor.joiners:
            joiner.metrics = self.metrics
        self.processor.retention_s = s.privacy.decision_retention_days * 86400.0
        self.processor.load()
        self._open_tiers()
        self.replicator = None
        if feed_from is not None:
            self.replicator = Replicator(self.events, Handlers(
                upsert=self._replicate_upsert, delete=self._replicate_delete,
                engagement=self.processor.set_engagements, reload=self._replicate_reload,
                every_second=[self.policy.refresh, self.edge_policy.refresh]), self.node, feed_from)
            self.processor.on_items = lambda k, items: self.replicator.publish("engagement", p=k, items=items)
            self.replicator.start()
        self.processor.tracer = self.tracer
        if s.stream.consume:
            self.processor.start()
        if self.ranker is not None:
            self.ranker.start()
        if self.refresher is not None:
            self.refresher.start()
        self._opened = True
        log.info("engine_opened", home=str(s.home), items=len(self.catalog))
        return self

    def _open_tiers(self) -> None:
        """Ranker, edge bandit, the three tiers, the orchestrator and the invalidation bus."""
        s, t = self.settings, self.settings.tiers
        self.ranker = None
        if s.ranker.enabled:
            r = s.ranker
            self.ranker = OnlineRanker(self.models, self.index, self.catalog, self.index.dim, RankerConfig(
                buffer=r.buffer, batch=r.batch, lr=r.lr, publish_every_s=r.publish_every_s,
                max_cpu_share=r.max_cpu_share, seed=s.recommend.seed), metrics=self.metrics)
            self.ranker.load()
            self.metrics.ranker_version.set(self.ranker.scorers.version)
            self.processor.on_example = self._on_example
        self.edge_policy = PersistedPolicy(BetaTS(BetaTSConfig(
            propensity_samples=s.recommend.propensity_samples, examination=s.bandit.examination)),
            self.features, self.models, name="edge_beta")
        self.edge_policy.load()
        self.edge_joiner = RewardJoiner(self.decisions, self.features, self.edge_policy,
                                        JoinConfig(s.bandit.attribution_window_s, s.bandit.default_reward))
        self.edge_joiner.metrics = self.metrics
        self.processor.joiners.append(self.edge_joiner)
        self.processor.event_joiners.append(self.edge_joiner)  # clicks on edge decisions teach edge_beta
        common = dict(session_gap_s=s.stream.session_gap_s, seed=s.recommend.seed, emotion=self._rerank_config(),
                      consent_defaults=self.consent_defaults, metrics=self.metrics, tracer=self.tracer)
        stores = (self.features, self.index, self.catalog, self.decisions, self.policy)
        self.streaming = StreamingTier(*stores, candidates=s.recommend.candidates, **common)
        costs = CostModel(COST_PRIORS_MS)
        self.origin = OriginTier(*stores, candidates=t.origin_candidates, ranker=self.ranker, costs=costs,
                                 weight=s.ranker.weight, cold_candidates=t.cold_candidates,
                                 popular_candidates=t.popular_candidates, **common)
        self.cache = ResponseCache(t.cache_ttl_s, t.cache_users)
        self.edge = EdgeTier(self.cache, self.streaming, self.edge_policy, self.ranker,
                             candidate_ttl_s=t.candidate_ttl_s, max_candidates=t.edge_candidates)
        self.llm = self._open_llm()
        self.orchestrator = Orchestrator(self.streaming, self.origin, self.edge, costs, OrchestratorConfig(
            budget_ms=t.budget_ms, min_history=t.min_history, session_gap_s=s.stream.session_gap_s,
            llm_budget_ms=s.llm.budget_ms, precompute_budget_ms=s.llm.precompute_budget_ms,
            rerank_low_confidence=s.llm.rerank_low_confidence), self.metrics, self.llm)
        self.refresher = Refresher(self.orchestrator, metrics=self.metrics) if t.refresh else None
        self.bus = InvalidationBus(t.invalidation_url, t.invalidation_channel)
        self.bus.subscribe(self._invalidate)
        self.processor.on_changed = lambda changed: self.bus.publish(changed, applied=True)

    def _open_llm(self) -> LLMService:
        """The LLM layer: the configured backend behind the gateway, or none (the
        deterministic reasoner answers every explanation, with reason ``no_backend``)."""
        c = self.settings.llm
        gateway = None
        if c.backend != "none":
            if c.backend == "openai":
                if not c.base_url:
                    raise ValidationError("llm.backend=openai needs llm.base_url", field="llm.base_url")
                backend = OpenAICompatBackend(c.base_url, c.model, c.api_key, c.schema_style)
            else:
                backend = LlamaCppBackend(c.model_path or None, n_ctx=c.n_ctx, threads=c.threads,
                                          seed=self.settings.recommend.seed)
            gateway = Gateway(backend, GatewayConfig(max_concurrency=c.max_concurrency, retries=c.retries,
                                                     rate_per_s=c.rate_per_s, burst=max(1, int(c.rate_per_s))),
                              self.metrics)
        checkers: dict[str, Checker] = {}

        def checker() -> Checker:
            key = str(self.catalog.version)
            if key not in checkers:
                checkers.clear()
                checkers[key] = Checker((it.title for it in self.catalog.items.values()), self.catalog.tags())
            return checkers[key]

        return LLMService(gateway, checker, max_tokens=c.max_tokens, metrics=self.metrics)

    def _on_example(self, example) -> None:
        self.ranker.observe(example)
        self.metrics.ranker_examples.inc()

    def _invalidate(self, changed: dict[str, float], applied: bool) -> None:
        dropped = self.cache.invalidate(changed)
        self.metrics.invalidations.inc(dropped)
        if applied:
            now = time.time()
            for received_at in changed.values():
                self.metrics.invalidation_lag.observe(max(now - received_at, 0.0))
            if self.refresher is not None:
                self.refresher.schedule(changed)

    def _new_policy(self):
        rec, b = self.settings.recommend, self.settings.bandit
        if b.policy == "logistic_ts":
            # logits: the prior ranks by similarity like the linear prior, scaled up
            return LogisticTS(LogisticTSConfig(
                dim=len(FEATURES), prior_mean=tuple(4.0 * v for v in PRIOR_MEAN),
                exploration=rec.exploration, propensity_samples=rec.propensity_samples, examination=b.examination,
            ))
        return LinearTS(LinTSConfig(
            dim=len(FEATURES), prior_mean=PRIOR_MEAN, exploration=rec.exploration,
            propensity_samples=rec.propensity_samples, refresh_every=b.refresh_every, examination=b.examination,
        ))

    def _affect_analyzer(self):
        if not self.settings.emotion.enabled:
            return None
        from relevo.emotion.text import TextAffectAnalyzer

        return TextAffectAnalyzer(self.encoder)

    def _rerank_config(self) -> rerank.RerankConfig | None:
        e = self.settings.emotion
        if not e.enabled:
            return None
        return rerank.RerankConfig(e.frustration_threshold, e.familiarity_weight, e.congruence_weight, e.max_shift)

    def _item_valence(self, items: Sequence[Item], vectors: np.ndarray, encoded: bool) -> np.ndarray:
        """Item text affect: the full analyzer when the vectors are MiniLM's own (encoded
        here), VADER's compound when the caller supplied vectors of another space."""
        texts = [it.content_text() for it in items]
        if not encoded:
            return self.affect.vader.valence(texts)
        return self.affect.valences(texts, vectors)

    def _new_index(self, dim: int):
        cfg = self.settings.index
        if cfg.kind == "exact":
            return ExactIndex(dim)
        return HnswIndex(dim, m=cfg.m, ef_construction=cfg.ef_construction, ef_search=cfg.ef_search)

    @property
    def _index_path(self) -> Path:
        return self.settings.home / f"index-{self.settings.index.kind}.bin"

    def _load_items(self, dim: int, progress: Callable[[str, int, int], None] | None = None) -> None:
        """Catalog from the durable item store; the index from its snapshot when the
        snapshot matches the store's item version, else rebuilt from the stored vectors."""
        ids: list[str] = []
        vectors: list[np.ndarray] = []
        for _key, raw in self.features.scan(ITEMS_NS):
            item, vector = _decode_item(raw, dim)
            self.catalog.upsert(item, added_at=item.created_at)
            ids.append(item.id)
            vectors.append(vector)
        version = self._items_version()
        snapshot_meta = self._index_path.with_suffix(".version")
        if ids and snapshot_meta.exists() and snapshot_meta.read_text() == str(version):
            try:
                self.index.load(self._index_path)
                if len(self.index) == len(ids):
                    return
            except (OSError, ValueError, RuntimeError) as exc:
                log.warning("index_snapshot_unusable", error=repr(exc))
            self.index = self._new_index(dim)
        if ids:
            for start in range(0, len(ids), 10_000):
                self.index.upsert(ids[start : start + 10_000], np.vstack(vectors[start : start + 10_000]))
                if progress is not None:
                    progress("rebuilding the vector index", min(start + 10_000, len(ids)), len(ids))
        self.metrics.items.set(len(self.catalog))

    def _items_version(self) -> int:
        raw = self.features.get(META_NS, "items_version")
        return int(raw) if raw else 0

    def close(self) -> None:
        if not self._opened:
            return
        self.processor.stop()
        if self.replicator is not None:
            self.replicator.stop()
        if self.refresher is not None:
            self.refresher.stop()
        if self.ranker is not None:
            self.ranker.stop()
        self.llm.close()
        self.bus.close()
        for joiner in self.processor.joiners:
            with joiner.policy.lock:
                joiner.policy.maybe_snapshot(force=True)
        try:  # processes sharing a home each write a whole file and rename it into place
            tmp = self._index_path.with_name(f"{self._index_path.name}.{os.getpid()}.tmp")
            self.index.save(tmp)
            os.replace(tmp, self._index_path)
            self._index_path.with_suffix(".version").write_text(str(self._items_version()))
        except OSError as exc:
            log.warning("index_snapshot_failed", error=repr(exc))
        for store in (self.events, self.features, self.decisions, self.models):
            store.close()
        if self._tracer_provider is not None:
            self._tracer_provider.shutdown()  # flushes the spans still batched
        self._opened = False

    def __enter__(self) -> "Engine":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- catalog -------------------------------------------------------------------------

    def add_items(self, items: Sequence[Item], vectors: np.ndarray | None = None) -> int:
        """Embed (unless ``vectors`` (n, dim) are given) and store items; they are
        recommendable when this returns."""
        if not items:
            return 0
        seen: set[str] = set()
        for i, item in enumerate(items):
            if item.id in seen:
                raise ValidationError(f"item id {item.id!r} appears twice in the batch", field=f"items[{i}].id")
            seen.add(item.id)
        encoded = vectors is None
        if encoded:
            vectors = self.encoder.encode([it.content_text() for it in items])
        else:
            vectors = np.asarray(vectors, dtype=np.float32)
            if vectors.shape != (len(items), self.index.dim):
                raise ValidationError(f"vectors have shape {vectors.shape}, expected ({len(items)}, {self.index.dim})")
            vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        now = time.time()
        stamped = [it if it.created_at is not None else it.model_copy(update={"created_at": now}) for it in items]
        with self._items_lock:
            version = self._items_version() + 1
            rows = [(ITEMS_NS, it.id, _encode_item(it, v)) for it, v in zip(stamped, vectors)]
            rows.append((META_NS, "items_version", str(version).encode()))
            self.features.put_many(rows)
            valence = self._item_valence(stamped, vectors, encoded) if self.affect is not None else None
            self._serve_items(stamped, vectors, valence)
        if self.replicator is not None:
            self.replicator.publish("upsert", ids=[it.id for it in stamped])
        self.metrics.items.set(len(self.catalog))
        return len(items)

    # -- replication (several processes over Redis) --------------------------------------

    def _serve_items(self, items: Sequence[Item], vectors: np.ndarray, valence: np.ndarray | None) -> None:
        """Make stored items servable here: index, catalog, valence (caller holds the items lock)."""
        self.index.upsert([it.id for it in items], vectors)
        for it in items:
            self.catalog.upsert(it)
        if valence is not None:
            for it, v in zip(items, valence):
                self.catalog.set_valence(it.id, float(v))

    def _unserve_items(self, ids: list[str]) -> None:
        """The reverse, for items present here (caller holds the items lock)."""
        self.index.delete(ids)
        for i in ids:
            self.catalog.delete(i)
            self.processor.forget_item(i)

    def _replicate_upsert(self, ids: list[str]) -> None:
        """Items another process added: read them (with their vectors) from the store."""
        self._replicate_raw([raw for raw in self.features.get_many(ITEMS_NS, ids) if raw is not None])

    def _replicate_raw(self, raws: list[bytes]) -> None:
        if not raws:
            return
        decoded = [_decode_item(raw, self.index.dim) for raw in raws]
        items = [item for item, _ in decoded]
        valence = self.affect.vader.valence([it.content_text() for it in items]) if self.affect is not None else None
        with self._items_lock:
            self._serve_items(items, np.vstack([v for _, v in decoded]), valence)
        self.metrics.items.set(len(self.catalog))

    def _replicate_delete(self, ids: list[str]) -> None:
        with self._items_lock:
            present = [i for i in ids if i in self.catalog]
            if present:
                self._unserve_items(present)
        self.metrics.items.set(len(self.catalog))

    def _replicate_reload(self) -> None:
        """The feed dropped records this process had not read: re-read every item and count."""
        keep: set[str] = set()
        batch: list[bytes] = []
        for key, raw in self.features.scan(ITEMS_NS):
            keep.add(key)
            batch.append(raw)
            if len(batch) == 10_000:
                self._replicate_raw(batch)
                batch = []
        self._replicate_raw(batch)
        self._replicate_delete([i for i in list(self.catalog.items) if i not in keep])
        self.processor.load()

    def delete_item(self, item_id: str) -> None:
        with self._items_lock:
            if item_id not in self.catalog:
                raise NotFound(f"no item {item_id!r}", field="item_id")
            self.features.delete(ITEMS_NS, item_id)
            self.features.put(META_NS, "items_version", str(self._items_version() + 1).encode())
            self._unserve_items([item_id])
        if self.replicator is not None:
            self.replicator.publish("delete", ids=[item_id])
        self.metrics.items.set(len(self.catalog))

    def get_item(self, item_id: str) -> Item:
        item = self.catalog.items.get(item_id)
        if item is None:
            raise NotFound(f"no item {item_id!r}", field="item_id")
        return item

    # -- events --------------------------------------------------------------------------

    def ingest(self, events: Sequence[Event]) -> AppendResult:
        """Validate the whole batch against the catalog, then append it durably.

        All-or-nothing: one unknown item rejects the batch before anything is written."""
        for i, event in enumerate(events):
            if event.item_id not in self.catalog:
                raise ValidationError(
                    f"unknown item {event.item_id!r}: add it with POST /v1/items first",
                    field=f"events[{i}].item_id", code="unknown_item",
                )
        now = time.time()
        redact_text = self.settings.privacy.redact_text
        stamped = []
        for e in events:
            update: dict[str, Any] = {"received_at": now}
            if redact_text and e.text:
                redacted = pii.redact(e.text)
                if redacted.found:  # PII never reaches the log, the models or an export
                    update["text"] = redacted.text
                    self.metrics.pii_redacted.inc(len(redacted.found))
            stamped.append(e.model_copy(update=update))
        try:
            result = self.events.append(stamped)
        except Overloaded:
            self.metrics.overloaded.inc()
            raise
        self.bus.publish(dict.fromkeys((e.user_id for e in events), now), applied=False)
        self.metrics.events_ingested.inc(result.accepted)
        self.metrics.events_duplicate.inc(result.duplicates)
        return result

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Until the stream has applied everything in the log and the refresher has
        recomputed the cached answers of the users it touched."""
        started = time.monotonic()
        if not self.processor.wait_idle(timeout):
            return False
        if self.refresher is None:
            return True
        return self.refresher.wait_idle(max(timeout - (time.monotonic() - started), 0.0))

    # -- serving -------------------------------------------------------------------------

    def recommend(self, request: RecommendRequest) -> Recommendation:
        if request.n < 1 or request.n > self.settings.recommend.max_n:
            raise ValidationError(f"n must be between 1 and {self.settings.recommend.max_n}", field="n")
        with self.tracer.start_as_current_span("recommend") as span:
            rec = self._recommend(request)
            span.set_attribute("relevo.tier", rec.tier)
            span.set_attribute("relevo.items", len(rec.items))
            if rec.fallback:
                span.set_attribute("relevo.fallback", rec.fallback)
        return rec

    def _recommend(self, request: RecommendRequest) -> Recommendation:
        started = time.perf_counter()
        assigned = None if request.preview else self.experiments.assign(request.user_id)
        if assigned is not None:
            exp, variant, config, _ = assigned
            request = dataclasses.replace(
                request, experiment=exp.id, variant=variant,
                exploration_scale=float(config.get("exploration_scale", request.exploration_scale)),
                candidates=int(config["candidates"]) if "candidates" in config else request.candidates,
            )
        served = self.orchestrator.recommend(request)
        rec = served.recommendation
        elapsed = time.perf_counter() - started
        if request.preview:  # not served to anyone: kept out of the serving metrics
            return rec
        if assigned is not None:
            self.experiments.expose(assigned[0], assigned[1], elapsed * 1000)
        if rec.items:  # exponentially weighted over about the last 100 answers
            share = sum(s.explored for s in rec.items) / len(rec.items)
            self._exploration_share += 0.01 * (share - self._exploration_share)
            self.metrics.exploration_share.set(self._exploration_share)
        self.metrics.request_latency.labels("recommend").observe(elapsed)
        self.metrics.recommend_recent.add(elapsed)
        self.metrics.recommendations.labels(rec.tier, served.decision.policy).inc()
        self.metrics.shown.inc(len(rec.items))
        self.metrics.explored.inc(sum(1 for s in rec.items if s.explored))
        return rec

    def popular(self, n: int) -> list[dict[str, Any]]:
        """The ``n`` most engaged-with items, ``[{"item_id", "score"}]`` (score in [0, 1])."""
        return [{"item_id": s.item_id, "score": s.score} for s in self.streaming._popular(n, set(), None)]

    def feedback(self, decision_id: str, item_id: str, reward: float, at: float | None = None) -> str:
        """Join an explicit reward to an item of a logged decision (RewardJoiner rules).
        Returns "joined", "duplicate" (already rewarded) or "late" (window closed)."""
        if not math.isfinite(reward) or not 0.0 <= reward <= 1.0:
            raise ValidationError("reward must be a number from 0 to 1", field="reward")
        if self.settings.bandit.policy == "logistic_ts" and reward not in (0.0, 1.0):
            raise ValidationError("with the logistic_ts policy a reward is 0 or 1", field="reward")
        decision = self.decisions.get(decision_id)
        if decision is None:
            raise NotFound(f"no decision {decision_id!r}", field="decision_id")
        if item_id not in {i.item_id for i in decision.items}:
            raise ValidationError(f"item {item_id!r} was not shown in decision {decision_id!r}", field="item_id")
        # the joiner of the policy that made the decision (the same routing as rewards carried by events)
        joiner = next((j for j in self.processor.event_joiners if j.policy.name == decision.policy), None)
        if joiner is None:
            raise ValidationError(f"decision {decision_id!r} was served by {decision.policy!r}; it has no model to reward",
                                  field="decision_id", code="not_learnable")
        outcome = Outcome(decision_id, item_id, float(reward), time.time() if at is None else at, "feedback")
        joined = joiner.record([outcome])
        status = joined.status[0]
        self.metrics.rewards.labels(status).inc()
        return status

    def close_windows(self, now: float | None = None) -> int:
        """Close the attribution windows due at ``now`` (the stream processor does this
        every second); returns how many default rewards were learned."""
        return self.processor.close_windows(time.time() if now is None else now)

    # -- preferences ---------------------------------------------------------------------

    def put_preferences(self, user_id: str, preferences: dict[str, Any]) -> dict[str, Any]:
        raw = orjson.dumps(preferences)
        if len(raw) > MAX_PREFERENCES_BYTES:
            raise ValidationError(f"preferences exceed {MAX_PREFERENCES_BYTES} bytes", field="preferences")
        for key in ("liked_tags", "disliked_tags", "exclude_tags"):
            value = preferences.get(key, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValidationError(f"{key} must be a list of strings", field=key)
        self.features.put(PREFERENCES_NS, user_id, raw)
        return preferences

    def describe_preferences(self, user_id: str, text: str, budget_ms: float | None = None) -> dict[str, Any]:
        """Natural-language cold start: ``text`` -> liked / disliked tags (the LLM when the user
        consented to LLM processing, else keywords; PII redacted before any prompt), stored
        as the user's preferences (disliked tags become an ``exclude_tags`` filter); for a
        user with no taste vector yet (and profiling consent) the description, embedded by
        the text encoder, becomes their first vector. Returns the preferences with
        ``source`` and ``reason``."""
        text = text.strip()
        if not text:
            raise ValidationError("text must not be empty", field="text")
        allowed = consent_registry.read(self.features, user_id).resolved(self.consent_defaults)
        deadline = Deadline(budget_ms or self.settings.llm.budget_ms)
        found = self.llm.cold_start(text, self.catalog.tags(), deadline, consent=allowed["llm"], owner=user_id)
        prefs = {**self.get_preferences(user_id), "liked_tags": found.liked_tags,
                 "disliked_tags": found.disliked_tags, "exclude_tags": found.disliked_tags,
                 "description": found.description}
        self.put_preferences(user_id, prefs)
        seeded = False
        if allowed["personalization"] and allowed["profiling"]:
            vector = self.encoder.encode([found.description or pii.redact(text).text])[0]
            with self.processor.write_lock:
                raw = self.features.get(USERS_NS, user_id)
                state = UserState.decode(raw) if raw is not None else UserState(user_id, self.index.dim)
                if state.vector is None:
                    state.vector = np.asarray(vector, dtype=np.float32)
                    state.updated_at = time.time()
                    self.features.put(USERS_NS, user_id, state.encode())
                    seeded = True
        if seeded:
            self.bus.publish({user_id: time.time()}, applied=False)
        return {**prefs, "source": found.source, "reason": found.reason, "seeded_vector": seeded}

    def get_preferences(self, user_id: str) -> dict[str, Any]:
        raw = self.features.get(PREFERENCES_NS, user_id)
        return orjson.loads(raw) if raw is not None else {}

    # -- access and audit ------------------------------------------------------------------

    def export_user(self, user_id: str) -> dict[str, Any]:
        """Everything stored about ``user_id`` as one JSON-able document (GDPR Art. 15/20)."""
        return access.export_user(
            user_id, self.events, self.features, self.decisions, self.consent_defaults,
            model=self._model_name(), retention_days=self.settings.privacy.decision_retention_days,
        )

    def audit(self, decision_id: str) -> dict[str, Any]:
        decision = self.decisions.get(decision_id)
        if decision is None:
            raise NotFound(f"no decision {decision_id!r}", field="decision_id")
        return access.audit_record(decision, model=self._model_name(),
                                   retention_days=self.settings.privacy.decision_retention_days)

    def audits_for_user(self, user_id: str, limit: int = 100) -> list[dict[str, Any]]:
        return [access.audit_record(d, model=self._model_name(),
                                    retention_days=self.settings.privacy.decision_retention_days)
                for d in self.decisions.for_user(user_id, limit)]

    def _model_name(self) -> str:
        return f"encoder={getattr(self.encoder, 'name', type(self.encoder).__name__)}"

    # -- erasure -------------------------------------------------------------------------

    def erase_user(self, user_id: str) -> ErasureReceipt:
        """Remove the user from every store relevo keeps: their events from the log, their
        context, vectors, affect, preferences and consent, their decisions and the
        feedback markers of those decisions. Returns a receipt of what was removed.

        Aggregates are kept and are not personal data: item popularity counters and the
        bandit posterior (sums over all users' rewards, from which no single user's events
        can be read back)."""
        # the write lock stops an in-flight batch from writing the user back; the policy lock
        # stops a concurrent feedback from re-creating a reward marker through a cached decision
        with self.processor.write_lock, self.policy.lock, self.edge_policy.lock:
            self.processor.erased_users.add(user_id)
            # stream workers in other processes: drop what they read before this instant
            self.features.put(ERASED_NS, tombstone(user_id), repr(time.time()).encode())
            decisions = self.decisions.for_user(user_id, limit=1_000_000)
            for joiner in (self.joiner, self.edge_joiner):
                joiner.forget([d.decision_id for d in decisions])
            markers = [(REWARDS_NS, marker_key(d.decision_id, i.item_id)) for d in decisions for i in d.items]
            own = {ns: self.features.erase([(ns, user_id)]) > 0
                   for ns in (USERS_NS, PREFERENCES_NS, consent_registry.CONSENT_NS)}
            receipt = ErasureReceipt(
                user_id=user_id,
                events=self.events.erase_user(user_id),
                decisions=self.decisions.erase_user(user_id),
                user_state=own[USERS_NS],
                preferences=own[PREFERENCES_NS],
                consent=own[consent_registry.CONSENT_NS],
                feedback_markers=self.features.erase(markers),
                cached_responses=self.cache.forget(user_id) + self.llm.forget(user_id),
                ranker_examples=self.ranker.forget(user_id) if self.ranker is not None else 0,
            )
        # edge processes drop the user's cached answers too (Redis pub/sub when configured)
        self.bus.publish({user_id: time.time()}, applied=False)
        self.metrics.erasures.inc()
        return receipt

    # -- consent -------------------------------------------------------------------------

    def put_consent(self, user_id: str, grants: dict[str, Any]) -> consent_registry.Consent:
        """Grant or withdraw consent per purpose (read-your-writes). What a withdrawal no
        longer allows is deleted in the same write: ``personalization`` -> the user's whole
        derived state; ``profiling`` -> the cross-session profile (long-term vector,
        counters, tag affinities, history beyond the session); ``emotion`` -> stored affect."""
        unknown = set(grants) - set(consent_registry.PURPOSES)
        if unknown:
            raise ValidationError(f"unknown consent purposes {sorted(unknown)}; known: {list(consent_registry.PURPOSES)}",
                                  field=sorted(unknown)[0])
        for key, value in grants.items():
            if not isinstance(value, bool):
                raise ValidationError(f"consent {key!r} must be true or false", field=key)
        with self.processor.write_lock:
            current = consent_registry.read(self.features, user_id)
            for key, value in grants.items():
                setattr(current, key, value)
            rows = [consent_registry.row(user_id, current)]
            allowed = current.resolved(self.consent_defaults)
            raw = self.features.get(USERS_NS, user_id)
            if raw is not None and allowed["personalization"]:
                state = UserState.decode(raw)
                if not allowed["profiling"]:
                    strip_profile(state)
                if not allowed["emotion"]:
                    state.affect, state.abandoned_sessions = None, 0
                rows.append((USERS_NS, user_id, state.encode()))
            self.features.put_many(rows)
            if raw is not None and not allowed["personalization"]:
                self.features.erase([(USERS_NS, user_id)])
        # answers and candidates cached under the previous consent are not used again
        self.cache.forget(user_id)
        self.bus.publish({user_id: time.time()}, applied=False)
        return current.filled(self.consent_defaults)

    def get_consent(self, user_id: str) -> consent_registry.Consent:
        """The consent in force for ``user_id`` (recorded choices, else the defaults)."""
        return consent_registry.read(self.features, user_id).filled(self.consent_defaults)

    # -- introspection -------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        f50, f95, f99 = self.metrics.freshness_recent.percentiles(50, 95, 99)
        r50, r95, r99 = self.metrics.recommend_recent.percentiles(50, 95, 99)
        ms = lambda v: None if v is None else round(v * 1000, 3)  # noqa: E731
        return {
            "items": len(self.catalog),
            "events_in_log": self.events.count(),
            "consumer_lag": self.events.lag(GROUP),
            "freshness_ms": {"p50": ms(f50), "p95": ms(f95), "p99": ms(f99)},
            "recommend_ms": {"p50": ms(r50), "p95": ms(r95), "p99": ms(r99)},
            "policy_version": self.policy.version,
            "processor_error": self.processor.last_error,
        }
