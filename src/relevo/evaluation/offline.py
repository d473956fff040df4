"""Offline evaluation: a temporal split, top-k metrics and a replay through the Engine.

The split cuts the event stream at one time for everybody (no peeking at the future of
other users, but few users have events on both sides), or per user (each user's last
part held out: every user counts, and other users' later events can be in the training
part, the usual leave-last-out compromise; ``relevo eval offline`` uses this one). The replay feeds the train part through ``Engine.ingest`` as it would have
arrived, then asks each tier for a preview slate (not logged, nothing learned) in
posterior-mean order and scores it against the user's held-out positives, next to a
most-popular baseline computed from the same events. Relevance is binary throughout.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import numpy as np

from relevo.errors import ValidationError
from relevo.records import Event

if TYPE_CHECKING:
    from relevo.engine import Engine


@dataclass(frozen=True)
class Split:
    """``train``: events at or before ``cutoff`` (epoch s), in timestamp order.
    ``test``: user -> items rated positively after the cutoff and unseen in train.
    ``positive_threshold``: the rating that counted as positive (kept for the baseline)."""

    train: list[Event]
    test: dict[str, set[str]]
    cutoff: float
    positive_threshold: float = 4.0


def _positive(event: Event, threshold: float) -> bool:
    return event.value is None or event.value >= threshold


def temporal_split(
    events: Iterable[Event], test_fraction: float = 0.2, positive_threshold: float = 4.0, *,
    per_user: bool = False,
) -> Split:
    """Split at the global ``1 - test_fraction`` quantile of event timestamps, or with
    ``per_user=True`` at each user's own quantile (each user's last ``test_fraction`` of
    events is held out: every user with enough history is evaluated; ``cutoff`` is then
    the median of the users' cutoffs).

    Only users with at least one train event and a non-empty test set are in ``test``;
    ``train`` keeps every event at or before the cutoff (stable order on equal times)."""
    if not 0.0 < test_fraction < 1.0:
        raise ValidationError(
            f"test_fraction must be in (0, 1); got {test_fraction}", field="test_fraction",
        )
    events = list(events)
    if not events:
        raise ValidationError("cannot split an empty event stream", field="events")
    if any(e.timestamp is None for e in events):
        raise ValidationError("every event needs a timestamp for a temporal split",
                              field="timestamp")
    ts = np.fromiter((e.timestamp for e in events), dtype=np.float64, count=len(events))
    if per_user:
        users = np.array([e.user_id for e in events], dtype=object)
        _, inverse = np.unique(users, return_inverse=True)
        cutoffs = np.zeros(inverse.max() + 1)
        for u in range(len(cutoffs)):
            cutoffs[u] = np.quantile(ts[inverse == u], 1.0 - test_fraction, method="lower")
        limit = cutoffs[inverse]
        cutoff = float(np.median(cutoffs))
    else:
        cutoff = float(np.quantile(ts, 1.0 - test_fraction))
        limit = np.full(len(ts), cutoff)
    order = np.argsort(ts, kind="stable")
    train = [events[i] for i in order[ts[order] <= limit[order]].tolist()]
    seen: dict[str, set[str]] = defaultdict(set)
    for e in train:
        seen[e.user_id].add(e.item_id)
    test: dict[str, set[str]] = defaultdict(set)
    for i in np.flatnonzero(ts > limit).tolist():
        e = events[i]
        unseen = e.user_id in seen and e.item_id not in seen[e.user_id]
        if unseen and _positive(e, positive_threshold):
            test[e.user_id].add(e.item_id)
    if not test:
        raise ValidationError(
            f"no user has both a train event and a positive (>= {positive_threshold}) unseen "
            f"item after the cutoff {cutoff}; use more events or a larger test_fraction",
            field="events",
        )
    return Split(train, dict(test), cutoff, positive_threshold)


# -- metrics -------------------------------------------------------------------------------


def _check_k(k: int) -> None:
    if k < 1:
        raise ValidationError(f"k must be >= 1; got {k}", field="k")


def _hits(recommended: Sequence[str], relevant: set[str], k: int) -> np.ndarray:
    """Binary relevance of the top k, shape (min(k, len(recommended)),), bool."""
    _check_k(k)
    if not relevant:
        raise ValidationError("relevant is empty: the metric is undefined", field="relevant")
    return np.array([r in relevant for r in recommended[:k]], dtype=bool)


def recall_at_k(recommended: Sequence[str], relevant: set[str], k: int) -> float:
    """hits@k / min(k, |relevant|): 1.0 when the list holds as many positives as it can."""
    return float(_hits(recommended, relevant, k).sum() / min(k, len(relevant)))


def ndcg_at_k(recommended: Sequence[str], relevant: set[str], k: int) -> float:
    """DCG@k / IDCG@k with DCG = sum over hits of 1 / log2(rank + 1), rank from 1, and the
    ideal list holding min(k, |relevant|) hits at the top."""
    hits = _hits(recommended, relevant, k)
    discount = 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))  # rank 1..k
    return float(discount[: len(hits)][hits].sum() / discount[: min(k, len(relevant))].sum())


def coverage(lists: Iterable[Sequence[str]], catalog_size: int) -> float:
    """Share of the catalog that appears in at least one list."""
    if catalog_size < 1:
        raise ValidationError(f"catalog_size must be >= 1; got {catalog_size}", field="catalog_size")
    return len(set().union(*lists)) / catalog_size


def novelty(lists: Iterable[Sequence[str]], popularity: dict[str, int], n_users: int) -> float:
    """Mean self-information of the recommended items, in bits:
    mean over every recommended item i of -log2(max(pop_i, 1) / n_users).

    ``popularity``: item -> number of users with a positive train interaction."""
    if n_users < 1:
        raise ValidationError(f"n_users must be >= 1; got {n_users}", field="n_users")
    pop = np.array([popularity.get(i, 0) for lst in lists for i in lst], dtype=np.float64)
    if pop.size == 0:
        return 0.0
    return float(np.mean(-np.log2(np.maximum(pop, 1.0) / n_users)))


# -- baseline ------------------------------------------------------------------------------


def item_popularity(train: Iterable[Event], positive_threshold: float = 4.0) -> dict[str, int]:
    """Item -> number of distinct users with a positive interaction with it."""
    pairs = {(e.user_id, e.item_id) for e in train if _positive(e, positive_threshold)}
    return dict(Counter(item for _, item in pairs))


def popularity_ranking(
    train: Sequence[Event], k: int, exclude_seen: bool = True, *,
    users: Iterable[str] | None = None, positive_threshold: float = 4.0,
) -> dict[str, list[str]]:
    """Most-popular baseline: per user (every train user, or ``users``) the k items with the
    most positive train interactions, ties broken by item id, minus the items the user
    interacted with in train when ``exclude_seen``."""
    _check_k(k)
    pop = item_popularity(train, positive_threshold)
    ids = np.array(sorted(pop), dtype=object)
    counts = np.array([pop[i] for i in ids], dtype=np.int64)
    ranked: list[str] = ids[np.argsort(-counts, kind="stable")].tolist()  # ties: by id
    seen: dict[str, set[str]] = defaultdict(set)
    for e in train:
        seen[e.user_id].add(e.item_id)
    out = {}
    for user in (sorted(seen) if users is None else users):
        mine = seen.get(user, set()) if exclude_seen else set()
        head = ranked[: k + len(mine)]  # enough: at most len(mine) of them are excluded
        out[user] = [i for i in head if i not in mine][:k]
    return out


# -- replay --------------------------------------------------------------------------------


def _scores(
    lists: dict[str, list[str]], split: Split, k: int, catalog_size: int,
    pop: dict[str, int], n_users: int,
) -> dict[str, float]:
    users = list(lists)
    return {
        "recall": float(np.mean([recall_at_k(lists[u], split.test[u], k) for u in users])),
        "ndcg": float(np.mean([ndcg_at_k(lists[u], split.test[u], k) for u in users])),
        "coverage": coverage(lists.values(), catalog_size),
        "novelty": novelty(lists.values(), pop, n_users),
    }


def replay(
    engine: Engine,
    split: Split,
    tiers: Sequence[str] = ("streaming",),
    k: int = 10,
    max_users: int | None = None,
    batch: int = 5000,
    idle_timeout: float = 120.0,
    progress: Callable[[int, int], None] | None = None,
    ranker_steps: int = 0,
    stage: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Ingest ``split.train`` into ``engine``, then score each tier's top k for the test users.

    Events whose item is not in the engine's catalog are skipped (``skipped_events``); the
    popularity baseline and novelty use the same ingested events. Requests are previews
    (nothing logged or learned) with ``exploration_scale=0`` (posterior-mean order). A tier
    may be answered by a lower one; ``answered_by`` counts ``rec.tier`` per request.
    ``progress(done, total)`` is called after each user; ``stage(name, done, total)``
    during ingestion ("ingest") and ranker training ("train").

    ``ranker_steps``: the replay compresses months of events into seconds, faster than the
    deep ranker's online trainer (capped at a share of one core) keeps up with; this many
    mini-batch steps are run on its buffer before ranking, then the ranker is published
    (what the trainer would have done over the trace's real duration).

    Returns ``{"users", "k", "skipped_events", "tiers": {tier: metrics}, "popularity": metrics}``
    where metrics = ``{"recall", "ndcg", "coverage", "novelty"}`` (+ ``"answered_by"`` per tier).
    """
    from relevo.tiers.streaming import RecommendRequest

    _check_k(k)
    if batch < 1:
        raise ValidationError(f"batch must be >= 1; got {batch}", field="batch")
    if max_users is not None and max_users < 1:
        raise ValidationError(f"max_users must be >= 1; got {max_users}", field="max_users")
    kept = [e for e in split.train if e.item_id in engine.catalog]
    if not kept:
        raise ValidationError("no train event names an item of the engine's catalog", field="train")
    for start in range(0, len(kept), batch):
        engine.ingest(kept[start : start + batch])
        if stage is not None:
            stage("ingest", min(start + batch, len(kept)), len(kept))
    if not engine.wait_idle(idle_timeout):
        raise RuntimeError(
            f"the stream processor did not apply {len(kept)} train events within {idle_timeout} s"
        )
    ranker = getattr(engine, "ranker", None)
    if ranker_steps > 0 and ranker is not None:
        for done in range(0, ranker_steps, 50):
            ranker.train(min(50, ranker_steps - done))
            if stage is not None:
                stage("train", min(done + 50, ranker_steps), ranker_steps)
        ranker.publish()

    users = sorted(split.test)[:max_users]
    lists: dict[str, dict[str, list[str]]] = {tier: {} for tier in tiers}
    answered: dict[str, Counter[str]] = {tier: Counter() for tier in tiers}
    for done, user in enumerate(users, 1):
        for tier in tiers:
            rec = engine.recommend(RecommendRequest(
                user_id=user, n=k, tier=tier, exploration_scale=0.0, preview=True,
            ))
            lists[tier][user] = [s.item_id for s in rec.items]
            answered[tier][rec.tier] += 1
        if progress is not None:
            progress(done, len(users))

    pop = item_popularity(kept, split.positive_threshold)
    n_train_users = len({e.user_id for e in kept})
    size = len(engine.catalog)
    baseline = popularity_ranking(kept, k, users=users, positive_threshold=split.positive_threshold)
    return {
        "users": len(users),
        "k": k,
        "ranker_steps": ranker_steps if ranker is not None else 0,
        "skipped_events": len(split.train) - len(kept),
        "tiers": {
            tier: {
                **_scores(lists[tier], split, k, size, pop, n_train_users),
                "answered_by": dict(answered[tier]),
            }
            for tier in tiers
        },
        "popularity": _scores(baseline, split, k, size, pop, n_train_users),
    }
