"""Exact brute-force inner-product search: the oracle for tests and the index for small
catalogs (below a few thousand items it is as fast as HNSW and has perfect recall)."""

from __future__ import annotations

from pathlib import Path
from typing import Collection, Sequence

import numpy as np

from relevo.retrieval.protocol import Predicate


class ExactIndex:
    def __init__(self, dim: int, capacity: int = 1024):
        self.dim = dim
        self._vectors = np.zeros((capacity, dim), dtype=np.float32)
        self._ids: list[str] = []
        self._rows: dict[str, int] = {}

    def upsert(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        vectors = np.asarray(vectors, dtype=np.float32).reshape(len(ids), self.dim)
        for item_id, vec in zip(ids, vectors):
            row = self._rows.get(item_id)
            if row is None:
                row = len(self._ids)
                if row >= len(self._vectors):
                    grown = np.zeros((2 * len(self._vectors), self.dim), dtype=np.float32)
                    grown[:row] = self._vectors[:row]
                    self._vectors = grown
                self._ids.append(item_id)
                self._rows[item_id] = row
            self._vectors[row] = vec

    def delete(self, ids: Sequence[str]) -> int:
        removed = 0
        for item_id in ids:
            row = self._rows.pop(item_id, None)
            if row is None:
                continue
            last = len(self._ids) - 1
            if row != last:  # move the last row into the hole
                moved = self._ids[last]
                self._vectors[row] = self._vectors[last]
                self._ids[row] = moved
                self._rows[moved] = row
            self._ids.pop()
            removed += 1
        return removed

    def search(self, query: np.ndarray, k: int, *, exclude: Collection[str] = (), allow: Predicate | None = None):
        n = len(self._ids)
        if n == 0 or k <= 0:
            return [], np.zeros(0, dtype=np.float32)
        scores = self._vectors[:n] @ np.asarray(query, dtype=np.float32)
        if exclude or allow is not None:
            keep = np.ones(n, dtype=bool)
            for item_id in exclude:
                row = self._rows.get(item_id)
                if row is not None:
                    keep[row] = False
            if allow is not None:
                keep &= np.fromiter((allow(i) for i in self._ids), dtype=bool, count=n)
            scores = np.where(keep, scores, -np.inf)
            k = min(k, int(keep.sum()))
        k = min(k, n)
        if k == 0:
            return [], np.zeros(0, dtype=np.float32)
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [self._ids[i] for i in top], scores[top].astype(np.float32)

    def get(self, item_id: str) -> np.ndarray | None:
        row = self._rows.get(item_id)
        return None if row is None else self._vectors[row].copy()

    def get_many(self, ids: Sequence[str]) -> np.ndarray:
        rows = np.fromiter((self._rows[i] for i in ids), dtype=np.int64, count=len(ids))
        return self._vectors[rows].copy()

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._rows

    def __len__(self) -> int:
        return len(self._ids)

    def save(self, path: Path) -> None:
        path = Path(path)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, vectors=self._vectors[: len(self._ids)], ids=np.array(self._ids, dtype=object))
        tmp.replace(path)

    def load(self, path: Path) -> None:
        data = np.load(Path(path), allow_pickle=True)
        self.__init__(self.dim, max(1024, len(data["ids"])))
        self.upsert(list(data["ids"]), data["vectors"])
