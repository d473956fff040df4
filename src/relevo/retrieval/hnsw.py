"""In-process HNSW index on hnswlib (chosen over usearch by ``benchmarks/ann.py``: faster
queries and in-place updates at 100k-1M vectors, and a predicate filter from Python).

String ids map to integer labels; deletes are tombstones that later inserts reuse
(``allow_replace_deleted``). Filters run inside the graph walk, so a filtered query still
returns k results when k items pass.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Collection, Sequence

import hnswlib
import numpy as np
import orjson

from relevo.retrieval.protocol import Predicate


class HnswIndex:
    def __init__(
        self,
        dim: int,
        *,
        capacity: int = 10_000,
        m: int = 16,
        ef_construction: int = 200,
        ef_search: int = 128,
        seed: int = 0,
    ):
        self.dim = dim
        self.m = m
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self.seed = seed
        self._lock = threading.RLock()
        self._init(capacity)

    def _init(self, capacity: int) -> None:
        self._index = hnswlib.Index(space="ip", dim=self.dim)
        self._index.init_index(
            max_elements=max(capacity, 16),
            ef_construction=self.ef_construction,
            M=self.m,
            random_seed=self.seed,
            allow_replace_deleted=True,
        )
        self._index.set_num_threads(1)
        self._labels: dict[str, int] = {}
        self._ids: dict[int, str] = {}
        # A row-per-label copy of the vectors: hnswlib's get_items costs ~15 us per item,
        # a numpy gather a fraction of that, and the read path needs ~300 per request.
        self._vectors = np.zeros((max(capacity, 16), self.dim), dtype=np.float32)
        self._next = 0

    def upsert(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(ids), self.dim)
        with self._lock:
            labels = np.empty(len(ids), dtype=np.int64)
            fresh: list[int] = []
            for i, item_id in enumerate(ids):
                label = self._labels.get(item_id)
                if label is None:
                    label = self._next
                    self._next += 1
                    self._labels[item_id] = label
                    self._ids[label] = item_id
                    fresh.append(i)
                labels[i] = label
            needed = self._index.get_current_count() + len(fresh)
            if needed > self._index.get_max_elements():
                self._index.resize_index(max(needed, 2 * self._index.get_max_elements()))
            self._index.add_items(vectors, labels, replace_deleted=True)
            if self._next > len(self._vectors):
                grown = np.zeros((max(self._next, 2 * len(self._vectors)), self.dim), dtype=np.float32)
                grown[: len(self._vectors)] = self._vectors
                self._vectors = grown
            self._vectors[labels] = vectors

    def delete(self, ids: Sequence[str]) -> int:
        removed = 0
        with self._lock:
            for item_id in ids:
                label = self._labels.pop(item_id, None)
                if label is None:
                    continue
                del self._ids[label]
                self._index.mark_deleted(label)
                # hnswlib reuses tombstoned slots for new labels; we keep the label itself
                # retired so a stale result can never resolve to another item.
                removed += 1
        return removed

    def search(self, query: np.ndarray, k: int, *, exclude: Collection[str] = (), allow: Predicate | None = None):
        with self._lock:
            live = len(self._labels)
            k = min(k, live)
            if k <= 0:
                return [], np.zeros(0, dtype=np.float32)
            q = np.asarray(query, dtype=np.float32).reshape(1, self.dim)
            if allow is None and len(exclude) <= self.OVERFETCH_LIMIT:
                found = self._search_overfetch(q, k, exclude)
                if found is not None:
                    return found
            predicate = self._predicate(exclude, allow)
            self._index.set_ef(max(self.ef_search, k))
            while True:
                try:
                    labels, dists = self._index.knn_query(q, k=k, filter=predicate)
                    break
                except RuntimeError:
                    # Fewer than k items pass the filter: ask for fewer.
                    if k == 1:
                        return [], np.zeros(0, dtype=np.float32)
                    k = max(1, k // 2)
            ids = [self._ids[int(label)] for label in labels[0]]
            return ids, (1.0 - dists[0]).astype(np.float32)

    # Up to this many exclusions, asking for k + |exclude| and dropping them afterwards is
    # cheaper than a Python filter callback at every node the graph walk visits.
    OVERFETCH_LIMIT = 256

    def _search_overfetch(self, q: np.ndarray, k: int, exclude: Collection[str]):
        blocked = sum(1 for i in exclude if i in self._labels)
        want = min(k + blocked, len(self._labels))
        self._index.set_ef(max(self.ef_search, want))
        try:
            labels, dists = self._index.knn_query(q, k=want)
        except RuntimeError:
            return None
        ids, scores = [], []
        for label, dist in zip(labels[0].tolist(), dists[0].tolist()):
            item_id = self._ids[label]
            if item_id in exclude:
                continue
            ids.append(item_id)
            scores.append(1.0 - dist)
            if len(ids) == k:
                break
        return ids, np.asarray(scores, dtype=np.float32)

    def _predicate(self, exclude: Collection[str], allow: Predicate | None):
        if not exclude and allow is None:
            return None
        blocked = {self._labels[i] for i in exclude if i in self._labels}
        ids = self._ids
        if allow is None:
            return lambda label: label not in blocked
        return lambda label: label not in blocked and allow(ids[label])

    def get(self, item_id: str) -> np.ndarray | None:
        with self._lock:
            label = self._labels.get(item_id)
            if label is None:
                return None
            return self._vectors[label].copy()

    def get_many(self, ids: Sequence[str]) -> np.ndarray:
        if not ids:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            labels = np.fromiter((self._labels[i] for i in ids), dtype=np.int64, count=len(ids))
            return self._vectors[labels]

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._labels

    def __len__(self) -> int:
        return len(self._labels)

    def save(self, path: Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            tmp = path.with_name(path.name + f".tmp{os.getpid()}")
            self._index.save_index(str(tmp))
            meta = {"labels": self._labels, "next": self._next, "dim": self.dim}
            Path(str(tmp) + ".ids").write_bytes(orjson.dumps(meta))
            os.replace(str(tmp) + ".ids", str(path) + ".ids")
            os.replace(tmp, path)

    def load(self, path: Path) -> None:
        path = Path(path)
        meta = orjson.loads(Path(str(path) + ".ids").read_bytes())
        if meta["dim"] != self.dim:
            raise ValueError(f"index at {path} has dim {meta['dim']}, expected {self.dim}")
        with self._lock:
            index = hnswlib.Index(space="ip", dim=self.dim)
            index.load_index(str(path), allow_replace_deleted=True)
            index.set_num_threads(1)
            self._index = index
            self._labels = {k: int(v) for k, v in meta["labels"].items()}
            self._ids = {v: k for k, v in self._labels.items()}
            self._vectors = np.zeros((max(int(meta["next"]), 16), self.dim), dtype=np.float32)
            if self._labels:
                live = np.fromiter(self._ids, dtype=np.int64, count=len(self._ids))
                self._vectors[live] = np.asarray(index.get_items(live.tolist(), return_type="numpy"))
            self._next = int(meta["next"])
