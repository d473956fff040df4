"""The in-memory item catalog: metadata, filter evaluation and popularity, by row.

Items themselves are durable in the FeatureStore (namespace ``items``); this is the
serving copy, rebuilt from the store on start.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from relevo.errors import ValidationError
from relevo.records import Item

FILTER_KEYS_DOC = (
    "filters: {'tags': [any of], 'exclude_tags': [...], 'exclude_ids': [...], "
    "'<attribute>': value or [any of values]}"
)


@dataclass(frozen=True, slots=True)
class CompiledFilter:
    predicate: Callable[[str], bool] | None
    exclude_ids: frozenset[str]


class Catalog:
    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.items: dict[str, Item] = {}
        self._rows: dict[str, int] = {}
        self._ids: list[str] = []
        self._alive = np.zeros(1024, dtype=bool)
        self.engagement = np.zeros(1024, dtype=np.float64)
        self.added_at = np.zeros(1024, dtype=np.float64)
        self.valence = np.zeros(1024, dtype=np.float64)  # item text affect in [-1, 1]
        self._popular_cache: tuple[float, np.ndarray, bool] | None = None
        self._newest_cache: tuple[int, np.ndarray] | None = None
        self._tags_cache: tuple[int, list[str]] | None = None
        self.max_engagement = 1.0
        # bumped on every insert or delete: caches keyed on the catalog's content use it
        self.version = 0
        self.last_added_at = 0.0

    def __len__(self) -> int:
        return len(self.items)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self.items

    def row(self, item_id: str) -> int | None:
        return self._rows.get(item_id)

    def rows_or_none(self, ids: list[str]) -> np.ndarray:
        """Rows of ``ids``, -1 where an id is unknown."""
        return np.fromiter((self._rows.get(i, -1) for i in ids), dtype=np.int64, count=len(ids))

    def rows(self, ids: list[str]) -> np.ndarray:
        return np.fromiter((self._rows[i] for i in ids), dtype=np.int64, count=len(ids))

    def upsert(self, item: Item, added_at: float | None = None) -> None:
        with self._lock:
            row = self._rows.get(item.id)
            if row is None:
                row = len(self._ids)
                if row >= len(self._alive):
                    self._grow()
                self._ids.append(item.id)
                self._rows[item.id] = row
                self.added_at[row] = added_at or item.created_at or time.time()
                self.last_added_at = max(self.last_added_at, float(self.added_at[row]))
            if not self._alive[row]:
                self.version += 1
            self._alive[row] = True
            self.items[item.id] = item

    def _grow(self) -> None:
        size = 2 * len(self._alive)
        for name in ("_alive", "engagement", "added_at", "valence"):
            old = getattr(self, name)
            new = np.zeros(size, dtype=old.dtype)
            new[: len(old)] = old
            setattr(self, name, new)

    def delete(self, item_id: str) -> bool:
        with self._lock:
            if self.items.pop(item_id, None) is None:
                return False
            row = self._rows[item_id]
            self._alive[row] = False
            self.engagement[row] = 0.0
            self._popular_cache = None
            self.version += 1
            return True

    def tags(self) -> list[str]:
        """Every tag of a live item (cached until the catalog changes)."""
        cached = self._tags_cache
        if cached is not None and cached[0] == self.version:
            return cached[1]
        with self._lock:
            tags = sorted({t for item in self.items.values() for t in item.tags})
            self._tags_cache = (self.version, tags)
            return tags

    def newest_order(self, limit: int) -> np.ndarray:
        """Rows of the ``limit`` most recently added live items, newest first (cached until
        the catalog changes)."""
        cached = self._newest_cache
        if cached is not None and cached[0] == self.version and len(cached[1]) >= min(limit, len(self.items)):
            return cached[1][:limit]
        if limit <= 0:
            return np.zeros(0, dtype=np.int64)
        with self._lock:
            n = len(self._ids)
            added = np.where(self._alive[:n], self.added_at[:n], -np.inf)
            top = min(limit, int(self._alive[:n].sum()))
            rows = np.argpartition(-added, top - 1)[:top] if 0 < top < n else np.arange(n)[self._alive[:n]]
            rows = rows[np.argsort(-added[rows], kind="stable")]
            self._newest_cache = (self.version, rows)
            return rows[:limit]

    def sample_ids(self, rng: np.random.Generator, size: int) -> list[str]:
        """``size`` live item ids drawn uniformly with replacement (negatives for training)."""
        n = len(self._ids)
        alive = np.flatnonzero(self._alive[:n])
        if alive.size == 0:
            return []
        return [self._ids[r] for r in rng.choice(alive, size=size).tolist()]

    def set_valence(self, item_id: str, value: float) -> None:
        row = self._rows.get(item_id)
        if row is not None:
            self.valence[row] = value

    def set_engagement(self, item_id: str, value: float) -> None:
        row = self._rows.get(item_id)
        if row is not None:
            self.engagement[row] = value
            if value > self.max_engagement:
                self.max_engagement = value

    def popular_order(self, limit: int = 1000, max_age_s: float = 1.0) -> np.ndarray:
        """Rows of the ``limit`` most engaged-with live items, highest first (fewer if the
        catalog is smaller). Cached for ``max_age_s``; a partial sort, so a 1M catalog costs
        a few ms a second, not a full argsort per request."""
        now = time.monotonic()
        cached = self._popular_cache
        if cached is not None and now - cached[0] < max_age_s and (len(cached[1]) >= limit or cached[2]):
            return cached[1][:limit]
        with self._lock:
            n = len(self._ids)
            alive = self._alive[:n]
            size = max(limit, 1000)
            score = np.where(alive, self.engagement[:n], -np.inf)
            complete = size >= n
            rows = np.arange(n) if complete else np.argpartition(-score, size - 1)[:size]
            rows = rows[np.lexsort((rows, -score[rows]))]  # by engagement, ties by row (stable)
            rows = rows[alive[rows]]
            self._popular_cache = (now, rows, complete)
            return rows[:limit]

    def id_at(self, row: int) -> str:
        return self._ids[row]

    def compile_filter(self, filters: dict[str, Any] | None) -> CompiledFilter:
        """Turn request filters into a predicate over item ids; unknown shapes are 422s."""
        if not filters:
            return CompiledFilter(None, frozenset())
        tests: list[Callable[[Item], bool]] = []
        exclude: frozenset[str] = frozenset()
        for key, value in filters.items():
            values = value if isinstance(value, list) else [value]
            if not all(isinstance(v, (str, int, float, bool)) for v in values):
                raise ValidationError(f"filter {key!r} takes a scalar or a list of scalars", field=f"filters.{key}")
            if key == "exclude_ids":
                exclude = frozenset(str(v) for v in values)
            elif key == "tags":
                wanted = frozenset(str(v) for v in values)
                tests.append(lambda it, w=wanted: not w.isdisjoint(it.tags))
            elif key == "exclude_tags":
                banned = frozenset(str(v) for v in values)
                tests.append(lambda it, b=banned: b.isdisjoint(it.tags))
            else:
                allowed = set(values)
                tests.append(lambda it, k=key, a=allowed: _attr_matches(it.attributes.get(k), a))
        items = self.items
        predicate = None
        if tests:
            def predicate(item_id: str) -> bool:
                item = items.get(item_id)
                return item is not None and all(t(item) for t in tests)
        return CompiledFilter(predicate, exclude)


def _attr_matches(value: Any, allowed: set) -> bool:
    if value is None:
        return False
    if isinstance(value, list):
        return any(v in allowed for v in value)
    return value in allowed
