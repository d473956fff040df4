"""Offline evaluation: metrics against hand-computed values, the temporal split's invariants
on MovieLens latest-small, and a replay of its train part through a real Engine."""

from __future__ import annotations

import math
import time

import pytest

from relevo.datasets.movielens import iter_ratings
from relevo.errors import ValidationError
from relevo.evaluation import (
    coverage,
    item_popularity,
    ndcg_at_k,
    novelty,
    popularity_ranking,
    recall_at_k,
    replay,
    temporal_split,
)
from relevo.records import Event
from relevo.tiers.streaming import RecommendRequest


def ev(user: str, item: str, ts: float, value: float | None = 5.0) -> Event:
    if value is None:
        return Event(user_id=user, item_id=item, type="click", timestamp=ts)
    return Event(user_id=user, item_id=item, type="rating", value=value, timestamp=ts)


@pytest.fixture(scope="module")
def ml_ratings(movielens_dir) -> list[Event]:
    return list(iter_ratings(movielens_dir))


@pytest.fixture(scope="module")
def ml_split(ml_ratings):
    return temporal_split(ml_ratings)


# -- metrics -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("recommended", "relevant", "k", "expected"),
    [
        (["a", "b", "c"], {"a", "c"}, 3, 1.0),
        (["a", "b", "c"], {"a", "c"}, 2, 0.5),  # min(k, |rel|) = 2, one hit in the top 2
        (["x", "y"], {"a"}, 2, 0.0),
        (["a", "b"], {"a", "b", "c", "d"}, 2, 1.0),  # a full list of hits is perfect
        ([], {"a"}, 5, 0.0),
    ],
)
def test_recall_at_k(recommended, relevant, k, expected):
    assert recall_at_k(recommended, relevant, k) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("recommended", "relevant", "k", "expected"),
    [
        (["a", "x", "c"], {"a", "c"}, 3, (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))),
        (["x", "a"], {"a"}, 2, 1 / math.log2(3)),
        (["a", "b"], {"a", "b"}, 10, 1.0),
        (["x", "y", "a"], {"a", "b"}, 2, 0.0),  # the hit is below k
        (["a", "x", "c"], {"a", "c", "d", "e"}, 3, (1 + 0.5) / (1 + 1 / math.log2(3) + 0.5)),
    ],
)
def test_ndcg_at_k(recommended, relevant, k, expected):
    assert ndcg_at_k(recommended, relevant, k) == pytest.approx(expected)


def test_coverage_and_novelty():
    lists = [["a", "b"], ["b", "c"]]
    assert coverage(lists, 10) == pytest.approx(0.3)
    pop = {"a": 8, "b": 2}  # c unseen: counted as popularity 1
    expected = (-math.log2(8 / 8) - 2 * math.log2(2 / 8) - math.log2(1 / 8)) / 4
    assert novelty(lists, pop, 8) == pytest.approx(expected)
    assert novelty([], pop, 8) == 0.0


@pytest.mark.parametrize(
    ("call", "pattern"),
    [
        (lambda: recall_at_k(["a"], {"a"}, 0), "k must be >= 1"),
        (lambda: ndcg_at_k(["a"], {"a"}, -1), "k must be >= 1"),
        (lambda: ndcg_at_k(["a"], set(), 5), "relevant is empty"),
        (lambda: coverage([["a"]], 0), "catalog_size must be >= 1"),
        (lambda: novelty([["a"]], {}, 0), "n_users must be >= 1"),
        (lambda: popularity_ranking([], 0), "k must be >= 1"),
        (lambda: temporal_split([]), "empty event stream"),
        (lambda: temporal_split([ev("u", "a", 1)], test_fraction=0.0), r"must be in \(0, 1\)"),
        (lambda: temporal_split([ev("u", "a", 1)], test_fraction=1.0), r"must be in \(0, 1\)"),
        (lambda: temporal_split([Event(user_id="u", item_id="a", type="click")]), "timestamp"),
        # u's only later positive was already seen in train; v has no train event
        (lambda: temporal_split([ev("u", "a", 1), ev("u", "a", 9), ev("v", "b", 10)], 0.4),
         "no user"),
        (lambda: temporal_split([ev("u", "a", 1), ev("u", "b", 9, value=2.0)], 0.5), "no user"),
    ],
)
def test_invalid_input_is_rejected(call, pattern):
    with pytest.raises(ValidationError, match=pattern):
        call()


# -- split and baseline --------------------------------------------------------------------


def test_split_on_a_hand_made_stream():
    events = [
        ev("u", "a", 1), ev("u", "b", 2), ev("v", "a", 3), ev("v", "c", 4), ev("u", "c", 5),
        ev("u", "a", 6),  # seen in train: not a test item
        ev("u", "d", 7), ev("u", "e", 8, value=3.0),  # e is below the threshold
        ev("v", "f", 9, value=None),  # no value (a click): positive
        ev("w", "g", 10),  # w has no train event
    ]
    split = temporal_split(events, test_fraction=0.5)
    assert split.cutoff == pytest.approx(5.5)
    assert [e.timestamp for e in split.train] == [1, 2, 3, 4, 5]
    assert split.test == {"u": {"d"}, "v": {"f"}}


def test_popularity_ranking_excludes_seen_and_breaks_ties_by_id():
    train = [ev("u1", "b", 1), ev("u2", "b", 2), ev("u2", "a", 3), ev("u3", "c", 4),
             ev("u3", "z", 5, value=1.0)]
    assert item_popularity(train) == {"b": 2, "a": 1, "c": 1}
    ranks = popularity_ranking(train, 2)
    assert ranks == {"u1": ["a", "c"], "u2": ["c"], "u3": ["b", "a"]}
    assert popularity_ranking(train, 2, exclude_seen=False)["u1"] == ["b", "a"]


def test_movielens_split_invariants(ml_ratings, ml_split):
    split = ml_split
    train_ts = [e.timestamp for e in split.train]
    assert train_ts == sorted(train_ts) and train_ts[-1] <= split.cutoff
    assert len(split.train) == sum(e.timestamp <= split.cutoff for e in ml_ratings)
    assert 0.79 <= len(split.train) / len(ml_ratings) <= 0.81  # the 0.8 quantile
    seen: dict[str, set[str]] = {}
    for e in split.train:
        seen.setdefault(e.user_id, set()).add(e.item_id)
    later = {(e.user_id, e.item_id): e for e in ml_ratings if e.timestamp > split.cutoff}
    assert split.test and all(split.test.values())
    for user, items in split.test.items():
        assert user in seen and not items & seen[user]
        assert all(later[(user, item)].value >= 4.0 for item in items)


# -- replay --------------------------------------------------------------------------------


@pytest.mark.slow
def test_replay_streaming_against_popularity(
    make_engine, movielens_items, movielens_vectors, ml_split,
):
    engine = make_engine()
    engine.add_items(movielens_items, vectors=movielens_vectors)
    calls: list[tuple[int, int]] = []
    started = time.perf_counter()
    report = replay(engine, ml_split, tiers=("streaming",), k=10, max_users=60,
                    progress=lambda done, total: calls.append((done, total)))
    elapsed = time.perf_counter() - started
    n = min(60, len(ml_split.test))
    assert report["users"] == n and report["k"] == 10 and report["skipped_events"] == 0
    assert calls[-1] == (n, n) and len(calls) == n
    assert set(report["tiers"]) == {"streaming"}
    streaming, popular = report["tiers"]["streaming"], report["popularity"]
    assert sum(streaming["answered_by"].values()) == n
    for metrics in (streaming, popular):
        for name in ("recall", "ndcg", "coverage"):
            assert 0.0 <= metrics[name] <= 1.0, (name, metrics)
        assert metrics["novelty"] > 0.0
    assert streaming["ndcg"] > 0.0 and popular["ndcg"] > 0.0, report
    users = sorted(ml_split.test)[:n]
    assert not any(engine.decisions.for_user(u) for u in users)  # previews log nothing
    # exploration_scale=0: the posterior-mean order, the same list on every ask
    again = [
        [s.item_id for s in engine.recommend(RecommendRequest(
            user_id=users[0], n=10, exploration_scale=0.0, preview=True,
        )).items]
        for _ in range(2)
    ]
    assert again[0] == again[1] and len(again[0]) == 10
    print(f"\nreplay {elapsed:.1f} s: {report}")
