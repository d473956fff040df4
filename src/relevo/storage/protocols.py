"""Narrow storage contracts. Each has one conformance suite that every backend passes.

Calls are synchronous: the embedded backends answer in microseconds and the Redis
backends use a pooled client; the engine keeps them off the event loop's hot path.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Iterator, Protocol, Sequence

from relevo.records import Decision, Event


@dataclass(slots=True, frozen=True)
class LogEntry:
    """An event as delivered by the log.

    ``position`` is strictly increasing in append order within the entry's ``partition``
    (all of one user's events share a partition), so a consumer can tell an already-applied
    redelivery from a new event; ``offset`` is the backend's own id. The embedded logs have
    one partition, 0.
    """

    position: int
    offset: str
    event: Event
    partition: int = 0


@dataclass(slots=True)
class AppendResult:
    accepted: int
    duplicates: int
    duplicate_ids: list[str] = field(default_factory=list)


class EventLog(Protocol):
    """Durable, append-only, idempotent by event id, at-least-once to each consumer group.

    ``append`` returns only once the events are durable (per the backend's settings) and
    skips ids it already holds. ``read`` hands a group the entries it has not yet acked:
    after a restart, unacked entries are delivered again. ``ack`` marks entries done.
    """

    def append(self, events: Sequence[Event]) -> AppendResult: ...

    def read(self, group: str, consumer: str, count: int = 512, block_ms: int = 0) -> list[LogEntry]: ...

    def ack(self, group: str, entries: Sequence[LogEntry]) -> None: ...

    def lag(self, group: str) -> int:
        """Entries appended but not yet acked by ``group``."""
        ...

    def count(self) -> int: ...

    def reset_delivery(self, group: str) -> None:
        """Forget what this process handed ``group`` but has not acked, so it is read again
        (what a restart does; the stream processor calls it after a failed batch)."""
        ...

    def erase_user(self, user_id: str) -> int:
        """Remove every event of ``user_id`` from the log (and from the id index, so the
        same ids sent again are new data); returns how many were removed."""
        ...

    def dead_letter(self, group: str, entries: Sequence[LogEntry], reason: str) -> None:
        """Move poison entries out of ``group``'s way: each is kept, with ``reason``, in the
        dead-letter list and acked, in one step."""
        ...

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The dead-lettered entries, oldest first."""
        ...

    def close(self) -> None: ...


@dataclass(slots=True, frozen=True)
class DeadLetter:
    offset: str
    reason: str
    at: float
    body: bytes  # the entry as stored (it may not decode: that can be why it is here)


Guard = tuple[str, str, "bytes | None"]


@functools.cache
def outage_errors() -> tuple[type[BaseException], ...]:
    """The exception types that mean a store is unreachable or busy (retry later), not that
    the data is bad: connection and timeout errors of every backend, a cluster failing
    over, a Redis loading its data or out of memory. The one list the backends, the stream
    processor and the HTTP layer share."""
    import sqlite3

    import redis

    return (ConnectionError, TimeoutError, sqlite3.OperationalError,
            redis.ConnectionError, redis.TimeoutError, redis.exceptions.ClusterError,
            redis.exceptions.TryAgainError, redis.exceptions.MasterDownError,
            redis.exceptions.BusyLoadingError, redis.exceptions.ReadOnlyError, redis.exceptions.OutOfMemoryError)


def is_outage(exc: BaseException) -> bool:
    """``exc`` is one of :func:`outage_errors` or ``Unavailable`` (already translated)."""
    from relevo.errors import Unavailable

    return isinstance(exc, (Unavailable, *outage_errors()))


_NAMESPACE = re.compile(r"[A-Za-z0-9_]{1,64}")


def check_namespace(ns: str) -> str:
    """Namespaces are identifiers (they appear unescaped in Redis keys); keys are free text."""
    if not _NAMESPACE.fullmatch(ns):
        raise ValueError(f"feature namespace {ns!r} must match [A-Za-z0-9_]{{1,64}}")
    return ns


class FeatureStore(Protocol):
    """Namespaced key -> bytes documents with read-your-writes.

    Namespaces match ``[A-Za-z0-9_]{1,64}``; keys are any string. ``put_many`` is atomic:
    either every row is visible afterwards or none is.
    """

    def get(self, ns: str, key: str) -> bytes | None: ...

    def get_many(self, ns: str, keys: Sequence[str]) -> list[bytes | None]: ...

    def put(self, ns: str, key: str, value: bytes) -> None: ...

    def put_many(self, rows: Sequence[tuple[str, str, bytes]], guard: Guard | None = None) -> None:
        """Write every row, atomically. With ``guard`` (ns, key, expected), write only if
        that key's current value is ``expected`` (None: absent), else raise
        :class:`relevo.errors.StaleWrite` and write nothing (optimistic concurrency
        between processes). The Redis Cluster backend is atomic per partition (the rows
        of one hash slot); rows and guard of a guarded write must share a partition."""
        ...

    def delete(self, ns: str, key: str) -> bool: ...

    def scan(self, ns: str) -> Iterator[tuple[str, bytes]]: ...

    def erase(self, rows: Sequence[tuple[str, str]]) -> int:
        """Delete (ns, key) rows so that no copy stays readable, in memory or on disk;
        returns how many existed. Used for erasure; plain ``delete`` may leave freed bytes."""
        ...

    def close(self) -> None: ...


class DecisionLog(Protocol):
    """Every decision served: the input to reward joining and off-policy evaluation."""

    def append(self, decision: Decision) -> None: ...

    def get(self, decision_id: str) -> Decision | None: ...

    def for_user(self, user_id: str, limit: int = 100) -> list[Decision]:
        """The user's decisions, newest first."""
        ...

    def between(self, start: float, end: float, limit: int = 10_000) -> list[Decision]:
        """Decisions with ``start <= created_at < end``, oldest first, at most ``limit``.
        Appending a decision id again replaces its body (e.g. on activation)."""
        ...

    def erase_user(self, user_id: str) -> int:
        """Remove every decision made for ``user_id``; returns how many."""
        ...

    def expire(self, before: float) -> int:
        """Remove decisions created before ``before`` (retention); returns how many."""
        ...

    def close(self) -> None: ...


class ModelStore(Protocol):
    """Versioned snapshots of learned state (bandit posteriors, index metadata)."""

    def put(self, name: str, blob: bytes) -> int:
        """Store a new snapshot; returns its version (1, 2, ...)."""
        ...

    def latest(self, name: str) -> tuple[int, bytes] | None: ...

    def close(self) -> None: ...
