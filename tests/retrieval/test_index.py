"""VectorIndex conformance (HNSW and exact) and HNSW recall against the exact oracle."""

from __future__ import annotations

import numpy as np
import pytest

from relevo.retrieval.exact import ExactIndex
from relevo.retrieval.hnsw import HnswIndex

DIM = 32


def unit_rows(rng, n, dim=DIM):
    x = rng.normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(params=["hnsw", "exact"])
def index(request):
    return HnswIndex(DIM, capacity=8) if request.param == "hnsw" else ExactIndex(DIM, capacity=8)


def test_search_finds_itself_best_first(index):
    rng = np.random.default_rng(0)
    x = unit_rows(rng, 300)
    ids = [f"i{i}" for i in range(300)]
    index.upsert(ids, x)  # grows past the initial capacity
    assert len(index) == 300
    found, scores = index.search(x[17], 5)
    assert found[0] == "i17" and scores[0] == pytest.approx(1.0, abs=1e-5)
    assert list(scores) == sorted(scores, reverse=True)


def test_upsert_replaces_in_place(index):
    rng = np.random.default_rng(1)
    x = unit_rows(rng, 50)
    index.upsert([f"i{i}" for i in range(50)], x)
    index.upsert(["i3"], x[40:41])
    assert len(index) == 50
    np.testing.assert_allclose(index.get("i3"), x[40], atol=1e-6)
    found, _ = index.search(x[40], 2)
    assert set(found) == {"i3", "i40"}


def test_delete_removes_from_results(index):
    rng = np.random.default_rng(2)
    x = unit_rows(rng, 100)
    index.upsert([f"i{i}" for i in range(100)], x)
    assert index.delete(["i5", "nope"]) == 1
    assert "i5" not in index and len(index) == 99
    found, _ = index.search(x[5], 10)
    assert "i5" not in found
    index.upsert(["i5"], x[5:6])  # re-added after delete
    assert index.search(x[5], 1)[0] == ["i5"]


def test_exclude_and_allow_filters(index):
    rng = np.random.default_rng(3)
    x = unit_rows(rng, 200)
    ids = [f"i{i}" for i in range(200)]
    index.upsert(ids, x)
    found, _ = index.search(x[0], 10, exclude={"i0", "i1"})
    assert "i0" not in found and len(found) == 10
    even = lambda item_id: int(item_id[1:]) % 2 == 0  # noqa: E731
    found, _ = index.search(x[0], 10, allow=even)
    assert len(found) == 10 and all(even(i) for i in found)
    only_two = lambda item_id: item_id in ("i7", "i9")  # noqa: E731
    assert sorted(index.search(x[0], 10, allow=only_two)[0]) == ["i7", "i9"]
    assert index.search(x[0], 10, allow=lambda _: False)[0] == []


def test_empty_index_and_k_beyond_size(index):
    assert index.search(np.ones(DIM, dtype=np.float32), 5)[0] == []
    rng = np.random.default_rng(4)
    index.upsert(["a", "b"], unit_rows(rng, 2))
    assert sorted(index.search(np.ones(DIM, dtype=np.float32), 10)[0]) == ["a", "b"]


def test_get_many_matches_inserted(index):
    rng = np.random.default_rng(5)
    x = unit_rows(rng, 20)
    index.upsert([f"i{i}" for i in range(20)], x)
    np.testing.assert_allclose(index.get_many(["i4", "i2"]), x[[4, 2]], atol=1e-6)
    assert index.get("missing") is None


def test_save_load_round_trip(index, tmp_path):
    rng = np.random.default_rng(6)
    x = unit_rows(rng, 120)
    index.upsert([f"i{i}" for i in range(120)], x)
    index.delete(["i9"])
    path = tmp_path / "index.bin"
    index.save(path)
    fresh = type(index)(DIM)
    fresh.load(path)
    assert len(fresh) == 119 and "i9" not in fresh
    assert fresh.search(x[33], 3)[0] == index.search(x[33], 3)[0]
    np.testing.assert_allclose(fresh.get("i50"), x[50], atol=1e-6)
    fresh.upsert(["new"], x[:1])  # still writable after load
    assert "new" in fresh


def test_search_does_not_mutate_query(index):
    rng = np.random.default_rng(7)
    x = unit_rows(rng, 30)
    index.upsert([f"i{i}" for i in range(30)], x)
    q = x[3].copy()
    index.search(q, 5, exclude={"i3"})
    np.testing.assert_array_equal(q, x[3])


def test_hnsw_recall_against_exact_oracle_on_minilm_vectors(movielens_items, movielens_vectors):
    """recall@10 of HNSW (M=16, ef=128) vs brute force on the 9,742 MovieLens MiniLM vectors."""
    ids = [it.id for it in movielens_items]
    hnsw, exact = HnswIndex(384), ExactIndex(384)
    hnsw.upsert(ids, movielens_vectors)
    exact.upsert(ids, movielens_vectors)
    rng = np.random.default_rng(0)
    queries = movielens_vectors[rng.choice(len(ids), 300, replace=False)]
    queries = queries + 0.05 * rng.normal(size=queries.shape).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    hits = 0
    for q in queries:
        truth = set(exact.search(q, 10)[0])
        hits += len(truth & set(hnsw.search(q, 10)[0]))
    recall = hits / (10 * len(queries))
    assert recall >= 0.95, recall
