"""The VectorIndex contract.

Vectors are float32 of shape (n, dim), L2-normalised by the caller; scores are inner
products (cosine similarity), highest first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Collection, Protocol, Sequence

import numpy as np

Predicate = Callable[[str], bool]


class VectorIndex(Protocol):
    dim: int

    def upsert(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        """Insert or replace; ``vectors`` has shape (len(ids), dim)."""
        ...

    def delete(self, ids: Sequence[str]) -> int:
        """Remove ids (unknown ids are ignored); returns how many were removed."""
        ...

    def search(
        self,
        query: np.ndarray,
        k: int,
        *,
        exclude: Collection[str] = (),
        allow: Predicate | None = None,
    ) -> tuple[list[str], np.ndarray]:
        """Top-k ids by inner product with ``query`` (shape (dim,)), skipping ``exclude``
        and ids for which ``allow`` is false. Returns (ids, float32 scores), best first;
        fewer than k when fewer items pass."""
        ...

    def get(self, item_id: str) -> np.ndarray | None: ...

    def get_many(self, ids: Sequence[str]) -> np.ndarray:
        """Vectors of ``ids`` (all present), float32 shape (len(ids), dim)."""
        ...

    def __contains__(self, item_id: object) -> bool: ...

    def __len__(self) -> int: ...

    def save(self, path: Path) -> None: ...

    def load(self, path: Path) -> None: ...
