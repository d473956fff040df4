"""StreamProcessor: EventLog -> user/session context, vectors, item stats, rewards.

Each batch is applied to copies of the affected documents and written with one atomic
``FeatureStore.put_many``; only then is the batch acked. Every document records the log
position it reflects, so a batch redelivered after a crash (written but not acked) is
recognised and skipped: at-least-once delivery, exactly-once effect.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass

import numpy as np
import structlog
from opentelemetry import trace

from relevo.bandits.persisted import PersistedPolicy
from relevo.context import consent as consent_registry
from relevo.context.state import ITEM_STATS_NS, MAX_RECENT, MAX_SEEN, USERS_NS, ItemStats, UserState
from relevo.emotion import behaviour
from relevo.emotion.text import TextAffect
from relevo.embeddings.streaming import StreamingConfig, decayed_add, event_weight, unit
from relevo.observability.metrics import Metrics
from relevo.ranking.online import Example
from relevo.records import Event, EventType
from relevo.retrieval.catalog import Catalog
from relevo.retrieval.protocol import VectorIndex
from relevo.errors import StaleWrite
from relevo.failpoints import failpoint
from relevo.storage.protocols import EventLog, FeatureStore, LogEntry, is_outage
from relevo.stream.rewards import Joined, Outcome, RewardJoiner

log = structlog.get_logger(__name__)

GROUP = "relevo-stream"
ERASED_NS = "erased"  # tombstone(user) -> time of erasure: tells stream workers in other processes
TOMBSTONE_S = 86400.0  # how long a tombstone is kept (far longer than any batch is in flight)


def tombstone(user_id: str) -> str:
    """The key under which an erasure is remembered: a SHA-256 of the id, not the id."""
    return hashlib.sha256(user_id.encode()).hexdigest()
LEARN_ATTEMPTS = 8  # guarded learning writes retried this often when other processes write first
POISON_ATTEMPTS = 3  # an entry that fails alone this often (not a storage outage) is dead-lettered


def _retry_later(exc: BaseException) -> bool:
    """A storage outage or a lost learning race: the entries are fine, try again later
    (never dead-lettered)."""
    return is_outage(exc) or isinstance(exc, StaleWrite)


def item_stats_ns(partition: int) -> str:
    """Item counters are kept per log partition: a partition has one writer at a time, so
    counters never race and each records the position (in its partition) it reflects."""
    return f"{ITEM_STATS_NS}_p{partition}"
REWARDING = {EventType.CLICK, EventType.ADD_TO_CART, EventType.PURCHASE, EventType.SHARE}


def strip_profile(state: UserState) -> None:
    """Keep only the current session (no cross-session profiling consent)."""
    state.vector = None
    state.counters = {}
    state.tag_affinity = {}
    state.seen = list(state.recent)


def reward_of(event: Event) -> float | None:
    """Reward in [0, 1] carried by an event that names a decision, or None."""
    if event.type in REWARDING:
        return 1.0
    if event.type is EventType.SKIP:
        return 0.0
    if event.type is EventType.RATING:
        return 1.0 if event.value >= 4.0 else 0.0
    if event.type is EventType.DWELL:
        return 1.0 if event.value >= 30.0 else 0.0
    return None


@dataclass(slots=True)
class BatchResult:
    applied: int
    skipped: int
    rewards: int


class StreamProcessor:
    def __init__(
        self,
        log_: EventLog,
        features: FeatureStore,
        index: VectorIndex,
        catalog: Catalog,
        joiner: RewardJoiner,
        metrics: Metrics,
        config: StreamingConfig,
        *,
        batch_size: int = 512,
        poll_ms: int = 50,
        consumer: str = "embedded",
        affect_analyzer=None,
        behaviour_config: behaviour.BehaviourConfig | None = None,
        consent_defaults: consent_registry.ConsentDefaults | None = None,
    ):
        self.log = log_
        self.features = features
        self.index = index
        self.catalog = catalog
        self.joiner = joiner
        self.decisions = joiner.decisions
        self.policy: PersistedPolicy = joiner.policy
        self.joiners = [joiner]  # every joiner whose windows the loop closes (engine + Personalizer)
        self.event_joiners = [joiner]  # joiners offered the rewards carried by events, in order
        self.close_every_s = 1.0
        self._closed_at = 0.0
        self.tracer = trace.NoOpTracer()  # the engine's tracer
        self.retention_s = 0.0  # decisions older than this are removed (0: kept); set by the engine
        self._expired_at = 0.0
        self.metrics = metrics
        self.config = config
        self.batch_size = batch_size
        self.poll_ms = poll_ms
        self.consumer = consumer
        # Emotion signals: None disables them for the deployment; otherwise they are
        # computed only for users whose consent grants ``emotion``.
        self.affect_analyzer = affect_analyzer
        self.consent_defaults = consent_defaults or consent_registry.ConsentDefaults()
        self.behaviour_config = behaviour_config or behaviour.BehaviourConfig()
        self.write_lock = threading.Lock()
        # users erased while a batch was in flight: their rows are dropped at write time
        self.erased_users: set[str] = set()
        self.partitions = int(getattr(log_, "partitions", 1))
        # item -> partition -> engagement: the catalog's popularity is the sum over partitions
        self.engagement: dict[str, dict[int, float]] = {}
        self.poison_attempts: dict[str, int] = {}
        self.trim_every_s = 30.0
        self._trimmed_at = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._idle = threading.Event()
        self.last_error: str | None = None
        # hooks set by the engine: one ranker training example per positive event (called
        # after the batch is written), and "these users changed" after each batch
        self.on_example = None
        self.on_changed = None
        self.on_items = None  # (partition, {item: engagement}) after each batch: replication

    # -- lifecycle -------------------------------------------------------------------

    def load(self) -> None:
        self.engagement.clear()
        for k in range(self.partitions):
            for item_id, raw in self.features.scan(item_stats_ns(k)):
                self.engagement.setdefault(item_id, {})[k] = ItemStats.decode(item_id, raw).engagement
        for item_id, parts in self.engagement.items():
            self.catalog.set_engagement(item_id, sum(parts.values()))

    def set_engagements(self, partition: int, values: dict[str, float]) -> None:
        for item_id, value in values.items():
            self.set_engagement(item_id, partition, float(value))

    def forget_item(self, item_id: str) -> None:
        self.engagement.pop(item_id, None)

    def set_engagement(self, item_id: str, partition: int, value: float) -> None:
        """One partition's count of an item changed (here or, through the item-update
        stream, in another worker): the catalog gets the new total."""
        parts = self.engagement.setdefault(item_id, {})
        parts[partition] = value
        self.catalog.set_engagement(item_id, sum(parts.values()))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="relevo-stream", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        release = getattr(self.log, "release", None)
        if release is not None:  # partitioned logs: hand my partitions over at once
            release(GROUP, self.consumer)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until every appended event has been applied (lag 0) or ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.log.lag(GROUP) == 0:
                return True
            time.sleep(0.005)
        return False

    def _run(self) -> None:
        try:
            self._loop()
        finally:  # however the thread ends, its partitions go to the other workers
            release = getattr(self.log, "release", None)
            if release is not None:
                try:
                    release(GROUP, self.consumer)
                except Exception:  # noqa: BLE001 - the leases then expire on their own
                    pass

    def _loop(self) -> None:
        while not self._stop.is_set():
            entries: list[LogEntry] = []
            try:
                entries = self.log.read(GROUP, self.consumer, self.batch_size, self.poll_ms)
                if entries:
                    self._process_traced(entries)
                    self.metrics.consumer_lag.set(self.log.lag(GROUP))
                else:
                    self.metrics.consumer_lag.set(0)
                if time.monotonic() - self._closed_at >= self.close_every_s:
                    self.close_windows(time.time())
                if time.monotonic() - self._expired_at >= 60.0:
                    self._expired_at = time.monotonic()
                    if self.retention_s:
                        self.decisions.expire(time.time() - self.retention_s)
                    self.expire_tombstones(time.time() - TOMBSTONE_S)
                trim = getattr(self.log, "trim", None)
                if trim is not None and time.monotonic() - self._trimmed_at >= self.trim_every_s:
                    self._trimmed_at = time.monotonic()
                    trim(self.log.owned(GROUP))
            except Exception as exc:  # keep consuming; the batch is redelivered
                self.last_error = repr(exc)
                log.exception("stream_batch_failed", error=repr(exc))
                try:
                    if entries and not _retry_later(exc):
                        self._isolate(entries)
                    else:
                        self._back_off()
                except Exception as again:  # even isolating failed (e.g. the store refuses writes)
                    self.last_error = repr(again)
                    log.exception("stream_isolate_failed", error=repr(again))
                    self._back_off()

    def _back_off(self) -> None:
        """Read the pending entries again after a pause (jittered: processes that lost a
        learning race do not retry in step)."""
        self.log.reset_delivery(GROUP)
        self.poison_attempts.clear()
        self._stop.wait(0.2 + random.random() * 0.6)

    def _process_traced(self, entries: list[LogEntry]) -> BatchResult:
        with self.tracer.start_as_current_span("stream_batch") as span:
            result = self.process(entries)
            span.set_attribute("relevo.events", len(entries))
            span.set_attribute("relevo.applied", result.applied)
            span.set_attribute("relevo.rewards", result.rewards)
        return result

    def _isolate(self, entries: list[LogEntry]) -> None:
        """A batch failed for a reason other than a storage outage: apply its entries one by
        one, in order, so one poison event cannot hold back the others. An entry that fails
        alone POISON_ATTEMPTS times goes to the dead-letter list with the error; on an
        outage, stop and let the whole rest be delivered again."""
        for entry in entries:
            while True:
                try:
                    self._process_traced([entry])
                    self.poison_attempts.pop(entry.offset, None)
                    break
                except Exception as exc:
                    if _retry_later(exc):
                        self._back_off()
                        return
                    tries = self.poison_attempts[entry.offset] = self.poison_attempts.get(entry.offset, 0) + 1
                    if tries >= POISON_ATTEMPTS:
                        reason = f"{type(exc).__name__}: {exc}"[:500]
                        log.error("event_dead_lettered", offset=entry.offset, event_id=entry.event.id, reason=reason)
                        self.log.dead_letter(GROUP, [entry], reason)
                        self.metrics.dead_letters.inc()
                        self.poison_attempts.pop(entry.offset, None)
                        break
        self.log.reset_delivery(GROUP)  # what was read after this batch is read again, in order

    # -- one batch -----------------------------------------------------------------------

    def process(self, entries: list[LogEntry]) -> BatchResult:
        """Apply a batch of one partition's entries (every log returns them so)."""
        partition = entries[0].partition
        stats_ns = item_stats_ns(partition)
        item_ids = list(dict.fromkeys(e.event.item_id for e in entries if e.event.item_id))
        item_stats = {i: ItemStats.decode(i, raw) for i, raw in zip(item_ids, self.features.get_many(stats_ns, item_ids))
                      if raw is not None}
        user_ids = list(dict.fromkeys(e.event.user_id for e in entries))
        erased_at = self._tombstones(user_ids)
        states: dict[str, UserState] = {}
        for user_id, raw in zip(user_ids, self.features.get_many(USERS_NS, user_ids)):
            states[user_id] = UserState.decode(raw) if raw is not None else UserState(user_id, self.index.dim)
        vectors = self._item_vectors({e.event.item_id for e in entries})
        allowed = self._allowed(user_ids)
        consented = {u for u in user_ids if self.affect_analyzer is not None and allowed[u]["emotion"]}
        text_affect = self._text_affect(entries, consented)
        touched_items: dict[str, ItemStats] = {}
        outcomes: list[Outcome] = []
        applied = skipped = 0
        changed: set[str] = set()
        freshness: list[float] = []
        examples: list[Example] = []
        for entry in entries:
            event = entry.event
            state = states[event.user_id]
            if event.decision_id and event.item_id:
                # collected even when the user's state already reflects the entry: reward
                # markers make learning idempotent on their own
                reward = reward_of(event)
                if reward is not None:
                    outcomes.append(Outcome(event.decision_id, event.item_id, reward, event.event_time))
            if entry.position <= state.applied_through:
                skipped += 1
                continue
            if event.user_id in erased_at and (event.received_at or 0.0) <= erased_at[event.user_id]:
                skipped += 1  # read before its user was erased (in another process): gone
                continue
            if allowed[event.user_id]["personalization"]:  # else: no per-user state at all
                if self.on_example is not None and event.item_id in vectors and event_weight(event) > 0:
                    examples.append(self._example(state, event, allowed[event.user_id]["profiling"]))
                self._apply_to_user(state, event, entry.position, vectors.get(event.item_id))
                if not allowed[event.user_id]["profiling"]:
                    strip_profile(state)
                if event.user_id in consented:
                    self._apply_affect(state, event, text_affect.get(entry.position))
                changed.add(event.user_id)
            stats = self._apply_to_item(item_stats, event, entry.position) if event.item_id else None
            if stats is not None:
                touched_items[event.item_id] = stats
            applied += 1
        now = time.time()
        rows: list[tuple[str, str, bytes]] = []
        rows.extend((stats_ns, s.item_id, s.encode()) for s in touched_items.values())
        joins: list[tuple[RewardJoiner, Joined]] = []
        statuses: Counter[str] = Counter()
        with contextlib.ExitStack() as held:
            held.enter_context(self.write_lock)
            for joiner in self.event_joiners:  # always in this order (erasure takes them in the same)
                held.enter_context(joiner.policy.lock)
            changed -= self.erased_users
            self.erased_users.clear()
            # an erasure in another process while this batch was computed
            fresh = self._tombstones(sorted(changed))
            changed -= {u for u, at in fresh.items() if at > erased_at.get(u, 0.0)}
            # consent may have changed while this batch was computed: the choice at write
            # time decides what is stored
            kept: dict[str, bool] = {}  # user -> profiling allowed, for users whose state is written
            for user_id, now_allowed in self._allowed(sorted(changed)).items():
                state = states[user_id]
                if not now_allowed["personalization"]:
                    continue
                if not now_allowed["profiling"]:
                    strip_profile(state)
                if not now_allowed["emotion"]:
                    state.affect, state.abandoned_sessions = None, 0
                state.updated_at = now
                rows.append((USERS_NS, user_id, state.encode()))
                kept[user_id] = now_allowed["profiling"]
            # two writes, each idempotent on its own: the users' and items' documents (one
            # partition: atomic everywhere, one hash slot on a cluster), then the learning
            # (reward markers and posteriors, guarded against other processes' writes)
            self.features.put_many(rows)
            joins = self._learn(outcomes, statuses)
            for joiner, joined in joins:
                if joined.rewards:
                    joiner.policy.maybe_snapshot()
            # hooks run before the ack and under the write lock: an erasure or a consent
            # withdrawal cannot slip in between, and wait_idle sees what they schedule
            if self.on_example is not None:
                for example in examples:
                    if example.user_id in kept:
                        self.on_example(example if kept[example.user_id] else example._replace(user=None))
            if self.on_changed is not None and changed:
                received: dict[str, float] = {}
                for entry in entries:
                    e = entry.event
                    if e.user_id in changed:
                        received[e.user_id] = max(received.get(e.user_id, 0.0), e.received_at or now)
                self.on_changed(received)
        failpoint("stream.before_ack")
        self.log.ack(GROUP, entries)
        for joiner, joined in joins:
            joiner.notify(joined)
        for name, count in statuses.items():
            if count:
                self.metrics.rewards.labels(name).inc(count)
        for stats in touched_items.values():
            self.set_engagement(stats.item_id, partition, stats.engagement)
        if self.on_items is not None and touched_items:
            self.on_items(partition, {s.item_id: s.engagement for s in touched_items.values()})
        for entry in entries:
            if entry.event.received_at is not None:
                freshness.append(now - entry.event.received_at)
        for value in freshness:
            self.metrics.freshness.observe(value)
        self.metrics.freshness_recent.extend(freshness)
        self.metrics.events_processed.inc(applied)
        self.metrics.events_redelivered.inc(skipped)
        return BatchResult(applied, skipped, sum(len(joined.rewards) for _, joined in joins))

    def _tombstones(self, user_ids: list[str]) -> dict[str, float]:
        if not user_ids:
            return {}
        raws = self.features.get_many(ERASED_NS, [tombstone(u) for u in user_ids])
        return {u: float(raw) for u, raw in zip(user_ids, raws) if raw is not None}

    def expire_tombstones(self, before: float) -> int:
        old = [(ERASED_NS, u) for u, raw in self.features.scan(ERASED_NS) if float(raw) < before]
        return self.features.erase(old) if old else 0

    def _learn(self, outcomes: list[Outcome], statuses: Counter) -> list[tuple[RewardJoiner, Joined]]:
        """Join the outcomes and persist what they teach (caller holds every event joiner's
        policy lock). Each outcome goes to the joiner of the policy that made its decision:
        what one joiner calls an orphan is offered to the next. A write that finds another
        process's learning committed first is retried on the reloaded posterior."""
        joins: list[tuple[RewardJoiner, Joined]] = []
        pending = outcomes
        for joiner in self.event_joiners:
            if not pending:
                break
            for attempt in range(LEARN_ATTEMPTS):
                try:
                    with joiner.policy.transaction():  # a failed write reloads the posterior
                        joined = joiner.join(pending)
                        if joined.rewards:
                            joiner.commit(joined)
                    break
                except StaleWrite:
                    self.metrics.learn_conflicts.inc()
                    if attempt == LEARN_ATTEMPTS - 1:
                        raise
                    time.sleep(random.random() * 0.002 * (attempt + 1))  # out of step with the winner
            joins.append((joiner, joined))
            pending = [o for o, status in zip(pending, joined.status) if status == "orphan"]
            statuses.update(status for status in joined.status if status != "orphan")
        statuses["orphan"] += len(pending)
        return joins

    def close_windows(self, now: float) -> int:
        """Give unrewarded shown items of decisions past their attribution window the
        default reward, for every joiner; returns how many rows were learned."""
        self._closed_at = time.monotonic()
        return sum(self._close(joiner, now) for joiner in self.joiners)

    def _close(self, joiner: RewardJoiner, now: float) -> int:
        # under the write lock: an erasure cannot interleave and have a settled decision
        # of the erased user appended back
        with self.write_lock, joiner.policy.lock:
            try:
                with joiner.policy.transaction():  # a failed write restores closed_through too
                    joined, stale, settled = joiner.close_due(now)
                    if not joined.rewards and not stale and not settled:
                        return 0
                    joiner.commit(joined)
            except StaleWrite:  # another process closed or learned first: next tick, on its state
                self.metrics.learn_conflicts.inc()
                return 0
            if joined.rewards:
                joiner.policy.maybe_snapshot()
            for decision in settled:  # the log keeps each shown item's final reward
                self.decisions.append(decision)
        if stale:
            self.features.erase(stale)
        joiner.notify(joined)
        if joined.rewards:
            self.metrics.rewards.labels("defaulted").inc(len(joined.rewards))
        return len(joined.rewards)

    def _allowed(self, user_ids: list[str]) -> dict[str, dict[str, bool]]:
        """Each user's consent per purpose (recorded choice, else the deployment default)."""
        if not user_ids:
            return {}
        return {u: c.resolved(self.consent_defaults) for u, c in consent_registry.read_many(self.features, user_ids).items()}

    def _text_affect(self, entries: list[LogEntry], consented: set[str]) -> dict[int, TextAffect]:
        """Affect of the text carried by consented users' events, by log position."""
        todo = [e for e in entries if e.event.text and e.event.user_id in consented]
        if not todo:
            return {}
        return dict(zip((e.position for e in todo), self.affect_analyzer.analyze([e.event.text for e in todo])))

    def _apply_affect(self, state: UserState, event: Event, text: TextAffect | None) -> None:
        affect = state.affect or behaviour.SessionAffect()
        if state.session_events == 1 and affect.last_event:  # _apply_to_user opened a new session
            if behaviour.abandoned(affect):
                state.abandoned_sessions += 1
            affect = behaviour.SessionAffect()
        behaviour.update(affect, event, self.behaviour_config, text.valence if text else None)
        self.metrics.affect_updates.labels("behaviour").inc()
        if text is not None:
            self.metrics.affect_updates.labels("text").inc()
        if text is not None:
            affect.emotion = text.emotion
        state.affect = affect

    def _item_vectors(self, item_ids: set[str]) -> dict[str, np.ndarray]:
        present = [i for i in item_ids if i in self.index]
        if not present:
            return {}
        return dict(zip(present, self.index.get_many(present)))

    def _example(self, state: UserState, event: Event, profiling: bool) -> Example:
        """A ranker training example: the user's vectors before this event, its item."""
        t = event.event_time
        live = state.session_events > 0 and abs(t - state.session_last) <= self.config.session_gap_s
        return Example(event.user_id, unit(state.vector) if profiling else None,
                       unit(state.session_vector) if live else None, event.item_id, event.received_at or time.time())

    def _apply_to_user(self, state: UserState, event: Event, position: int, vector: np.ndarray | None) -> None:
        t = event.event_time
        cfg = self.config
        if state.session_events == 0 or abs(t - state.session_last) > cfg.session_gap_s:
            state.session_vector = None
            state.session_started = t
            state.session_events = 0
            state.recent = []
        state.session_last = max(state.session_last, t) if state.session_events else t
        state.session_events += 1
        state.counters[event.type.value] = state.counters.get(event.type.value, 0) + 1
        weight = event_weight(event)
        if vector is not None and weight != 0.0:
            state.vector = decayed_add(state.vector, vector, weight, cfg.long_decay)
            state.session_vector = decayed_add(state.session_vector, vector, weight, cfg.session_decay)
        item = self.catalog.items.get(event.item_id)
        if item is not None and weight != 0.0:
            for tag in item.tags:
                state.tag_affinity[tag] = round(state.tag_affinity.get(tag, 0.0) * cfg.long_decay + weight, 4)
        if event.type is not EventType.IMPRESSION:
            if event.item_id in state.seen:
                state.seen.remove(event.item_id)
            state.seen.append(event.item_id)
            del state.seen[:-MAX_SEEN]
            state.recent.append(event.item_id)
            del state.recent[:-MAX_RECENT]
        state.applied_through = position
        state.event_time = max(state.event_time, t)
        state.received_at = event.received_at or state.received_at

    def _apply_to_item(self, item_stats: dict[str, ItemStats], event: Event, position: int) -> ItemStats | None:
        stats = item_stats.get(event.item_id)
        if stats is None:
            stats = item_stats[event.item_id] = ItemStats(event.item_id)
        if position <= stats.applied_through:
            return None
        weight = event_weight(event)
        stats.engagement += max(weight, 0.0)
        stats.events += 1
        stats.last_event = max(stats.last_event, event.event_time)
        stats.applied_through = position
        return stats
