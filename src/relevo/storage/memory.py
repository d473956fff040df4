"""In-process backends (``memory://``): fast, and gone when the process ends.

Useful for tests and throwaway runs; the embedded default is SQLite.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from typing import Iterator, Sequence

from relevo.errors import StaleWrite
from relevo.records import Decision, Event
from relevo.storage.codec import decode_decision, encode_decision, encode_event
from relevo.storage.protocols import AppendResult, DeadLetter, Guard, LogEntry, check_namespace


def _as_bytes(value: bytes) -> bytes:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError(f"feature values are bytes, got {type(value).__name__}")
    return bytes(value)


class MemoryEventLog:
    def __init__(self) -> None:
        self._entries: list[LogEntry | None] = []  # None: erased
        self._ids: set[str] = set()
        self._acked: dict[str, int] = defaultdict(int)  # group -> entries acked (prefix length)
        self._acked_positions: dict[str, set[int]] = defaultdict(set)
        self._delivered: dict[str, int] = {}
        self._dead: list[DeadLetter] = []
        self._cond = threading.Condition()

    def append(self, events: Sequence[Event]) -> AppendResult:
        dups: list[str] = []
        with self._cond:
            for event in events:
                if event.id in self._ids:
                    dups.append(event.id)
                    continue
                self._ids.add(event.id)
                pos = len(self._entries) + 1
                self._entries.append(LogEntry(pos, str(pos), event))
            self._cond.notify_all()
        return AppendResult(len(events) - len(dups), len(dups), dups)

    def read(self, group: str, consumer: str, count: int = 512, block_ms: int = 0) -> list[LogEntry]:
        with self._cond:
            start = self._delivered.get(group, self._acked[group])
            if start >= len(self._entries) and block_ms > 0:
                self._cond.wait(block_ms / 1000)
            window = self._entries[start : start + count]
            self._delivered[group] = start + len(window)
            erased = [start + i + 1 for i, e in enumerate(window) if e is None]
            if erased:
                self._acked_positions[group].update(erased)
            return [e for e in window if e is not None]

    def ack(self, group: str, entries: Sequence[LogEntry]) -> None:
        with self._cond:
            done = self._acked_positions[group]
            done.update(e.position for e in entries)
            n = self._acked[group]
            while n + 1 in done:
                n += 1
                done.discard(n)
            self._acked[group] = n

    def lag(self, group: str) -> int:
        with self._cond:
            return sum(1 for e in self._entries[self._acked[group] :] if e is not None)

    def count(self) -> int:
        return sum(1 for e in self._entries if e is not None)

    def for_user(self, user_id: str, limit: int = 100_000) -> list[Event]:
        with self._cond:
            found = [e.event for e in self._entries if e is not None and e.event.user_id == user_id]
        return found[:limit]

    def erase_user(self, user_id: str) -> int:
        removed = 0
        with self._cond:
            for i, entry in enumerate(self._entries):
                if entry is not None and entry.event.user_id == user_id:
                    self._ids.discard(entry.event.id)
                    self._entries[i] = None
                    removed += 1
            for group, acked in self._acked.items():  # erased positions count as done
                done = self._acked_positions[group]
                done.update(i + 1 for i, e in enumerate(self._entries) if e is None and i >= acked)
                n = acked
                while n + 1 in done:
                    n += 1
                    done.discard(n)
                self._acked[group] = n
        return removed

    def reset_delivery(self, group: str) -> None:
        with self._cond:
            self._delivered.pop(group, None)

    def dead_letter(self, group: str, entries: Sequence[LogEntry], reason: str) -> None:
        with self._cond:
            now = time.time()
            self._dead.extend(DeadLetter(e.offset, reason, now, encode_event(e.event)) for e in entries)
        self.ack(group, entries)

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        with self._cond:
            return self._dead[:limit]

    def close(self) -> None:
        pass


class MemoryFeatureStore:
    def __init__(self) -> None:
        self._data: dict[str, dict[str, bytes]] = defaultdict(dict)
        self._lock = threading.Lock()

    def get(self, ns: str, key: str) -> bytes | None:
        return self._data[check_namespace(ns)].get(key)

    def get_many(self, ns: str, keys: Sequence[str]) -> list[bytes | None]:
        table = self._data[ns]
        return [table.get(k) for k in keys]

    def put(self, ns: str, key: str, value: bytes) -> None:
        self.put_many([(ns, key, value)])

    def put_many(self, rows: Sequence[tuple[str, str, bytes]], guard: Guard | None = None) -> None:
        staged = [(check_namespace(ns), key, _as_bytes(value)) for ns, key, value in rows]  # fail before writing
        with self._lock:
            if guard is not None and self._data[check_namespace(guard[0])].get(guard[1]) != guard[2]:
                raise StaleWrite(f"{guard[0]}/{guard[1]} changed since it was read")
            for ns, key, value in staged:
                self._data[ns][key] = value

    def delete(self, ns: str, key: str) -> bool:
        with self._lock:
            return self._data[ns].pop(key, None) is not None

    def scan(self, ns: str) -> Iterator[tuple[str, bytes]]:
        with self._lock:
            snapshot = list(self._data[ns].items())
        yield from snapshot

    def erase(self, rows: Sequence[tuple[str, str]]) -> int:
        with self._lock:
            return sum(self._data[check_namespace(ns)].pop(key, None) is not None for ns, key in rows)

    def close(self) -> None:
        pass


class MemoryDecisionLog:
    def __init__(self) -> None:
        self._by_id: dict[str, bytes] = {}
        self._by_user: dict[str, list[str]] = defaultdict(list)
        self._lock = threading.Lock()

    def append(self, decision: Decision) -> None:
        with self._lock:
            if decision.decision_id not in self._by_id:
                self._by_user[decision.user_id].append(decision.decision_id)
            self._by_id[decision.decision_id] = encode_decision(decision)

    def get(self, decision_id: str) -> Decision | None:
        raw = self._by_id.get(decision_id)
        return decode_decision(raw) if raw is not None else None

    def for_user(self, user_id: str, limit: int = 100) -> list[Decision]:
        with self._lock:
            ids = self._by_user.get(user_id, [])[-limit:][::-1]
            return [decode_decision(self._by_id[i]) for i in ids]

    def expire(self, before: float) -> int:
        with self._lock:
            old = {i for i, raw in self._by_id.items() if decode_decision(raw).created_at < before}
            for i in old:
                del self._by_id[i]
            for user, ids in self._by_user.items():
                ids[:] = [i for i in ids if i not in old]
            return len(old)

    def between(self, start: float, end: float, limit: int = 10_000) -> list[Decision]:
        with self._lock:
            found = [d for d in map(decode_decision, self._by_id.values()) if start <= d.created_at < end]
        found.sort(key=lambda d: d.created_at)
        return found[:limit]

    def erase_user(self, user_id: str) -> int:
        with self._lock:
            ids = self._by_user.pop(user_id, [])
            for i in ids:
                self._by_id.pop(i, None)
            return len(ids)

    def close(self) -> None:
        pass


class MemoryModelStore:
    def __init__(self) -> None:
        self._snapshots: dict[str, tuple[int, bytes]] = {}
        self._lock = threading.Lock()

    def put(self, name: str, blob: bytes) -> int:
        with self._lock:
            version = self._snapshots.get(name, (0, b""))[0] + 1
            self._snapshots[name] = (version, bytes(blob))
            return version

    def latest(self, name: str) -> tuple[int, bytes] | None:
        return self._snapshots.get(name)

    def close(self) -> None:
        pass
