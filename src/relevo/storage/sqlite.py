"""Embedded durable backends on SQLite in WAL mode (``sqlite:///path/file.db``).

One connection per store, guarded by a lock (SQLite serialises writers anyway). With
``synchronous=NORMAL`` (the default) a committed transaction survives a crash or
``kill -9`` of the process; ``synchronous=FULL`` also survives power loss, at the cost
of an fsync per commit. Each store should get its own file so that the event log's
appends never wait on feature writes.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Iterator, Sequence

from relevo.errors import StaleWrite
from relevo.records import Decision, Event
from relevo.storage.codec import decode_decision, decode_event, encode_decision, encode_event
from relevo.storage.protocols import AppendResult, DeadLetter, Guard, LogEntry, check_namespace


def connect(path: str | Path, synchronous: str = "NORMAL") -> sqlite3.Connection:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute("PRAGMA secure_delete=ON")  # erased rows are overwritten, not just unlinked
    return conn


class _SqliteStore:
    _schema: str = ""

    def __init__(self, path: str | Path, synchronous: str = "NORMAL"):
        self.path = Path(path)
        self._conn = connect(path, synchronous)
        self._lock = threading.RLock()
        with self._lock:
            self._conn.executescript(self._schema)

    def _tx(self, sql: str, rows: Sequence[tuple]) -> None:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(sql, rows)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def _erase(self, sql: str, user_id: str) -> int:
        with self._lock:
            removed = self._conn.execute(sql, (user_id,)).rowcount
            # move the WAL into the database file and truncate it, so no copy of the
            # erased pages stays in the log
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            return removed

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class SqliteEventLog(_SqliteStore):
    """Append-only table; ``seq`` is the position. Consumer-group offsets live beside it.

    A group's committed offset only moves over a contiguous run of acked positions, so an
    entry is never skipped; entries past it are delivered again after a restart.
    """

    _schema = """
    CREATE TABLE IF NOT EXISTS events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        user_id TEXT NOT NULL,
        body BLOB NOT NULL
    );
    CREATE TABLE IF NOT EXISTS offsets (grp TEXT PRIMARY KEY, position INTEGER NOT NULL);
    CREATE INDEX IF NOT EXISTS events_user ON events (user_id);
    CREATE TABLE IF NOT EXISTS dead (
        n INTEGER PRIMARY KEY AUTOINCREMENT, offset TEXT NOT NULL, reason TEXT NOT NULL,
        at REAL NOT NULL, body BLOB NOT NULL
    );
    """

    def __init__(self, path: str | Path, synchronous: str = "NORMAL"):
        super().__init__(path, synchronous)
        self._delivered: dict[str, int] = {}
        self._pending_acks: dict[str, set[int]] = {}
        self._cond = threading.Condition(self._lock)

    def append(self, events: Sequence[Event]) -> AppendResult:
        dups: list[str] = []
        with self._cond:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                for event in events:
                    cur = self._conn.execute(
                        "INSERT OR IGNORE INTO events (id, user_id, body) VALUES (?, ?, ?)",
                        (event.id, event.user_id, encode_event(event)),
                    )
                    if cur.rowcount == 0:
                        dups.append(event.id)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._cond.notify_all()
        return AppendResult(len(events) - len(dups), len(dups), dups)

    def _committed(self, group: str) -> int:
        row = self._conn.execute("SELECT position FROM offsets WHERE grp = ?", (group,)).fetchone()
        return row[0] if row else 0

    def read(self, group: str, consumer: str, count: int = 512, block_ms: int = 0) -> list[LogEntry]:
        deadline = time.monotonic() + block_ms / 1000
        with self._cond:
            while True:
                start = self._delivered.get(group)
                if start is None:
                    start = self._committed(group)
                rows = self._conn.execute(
                    "SELECT seq, body FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (start, count)
                ).fetchall()
                remaining = deadline - time.monotonic()
                if rows or remaining <= 0:
                    break
                # Appends from this process notify; other writers are seen on the next poll.
                self._cond.wait(min(remaining, 0.05))
            if rows:
                self._delivered[group] = rows[-1][0]
            return [LogEntry(seq, str(seq), decode_event(body)) for seq, body in rows]

    def ack(self, group: str, entries: Sequence[LogEntry]) -> None:
        if not entries:
            return
        with self._cond:
            committed = self._committed(group)
            pending = self._pending_acks.setdefault(group, set())
            pending.update(e.position for e in entries)
            # Positions may have gaps (rolled-back AUTOINCREMENT values are not reused), so
            # advance through every acked position in order up to the first unacked one.
            rows = self._conn.execute(
                "SELECT seq FROM events WHERE seq > ? AND seq <= ? ORDER BY seq",
                (committed, max(pending)),
            ).fetchall()
            new = committed
            for (seq,) in rows:
                if seq not in pending:
                    break
                new = seq
                pending.discard(seq)
            if new != committed:
                self._conn.execute(
                    "INSERT INTO offsets (grp, position) VALUES (?, ?) "
                    "ON CONFLICT(grp) DO UPDATE SET position = excluded.position",
                    (group, new),
                )

    def lag(self, group: str) -> int:
        with self._lock:
            committed = self._committed(group)
            return self._conn.execute("SELECT COUNT(*) FROM events WHERE seq > ?", (committed,)).fetchone()[0]

    def count(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]

    def reset_delivery(self, group: str) -> None:
        with self._lock:
            self._delivered.pop(group, None)

    def for_user(self, user_id: str, limit: int = 100_000) -> list[Event]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT body FROM events WHERE user_id = ? ORDER BY seq LIMIT ?", (user_id, limit)
            ).fetchall()
        return [decode_event(r[0]) for r in rows]

    def erase_user(self, user_id: str) -> int:
        return self._erase("DELETE FROM events WHERE user_id = ?", user_id)

    def dead_letter(self, group: str, entries: Sequence[LogEntry], reason: str) -> None:
        now = time.time()
        self._tx("INSERT INTO dead (offset, reason, at, body) VALUES (?, ?, ?, ?)",
                 [(e.offset, reason, now, encode_event(e.event)) for e in entries])
        self.ack(group, entries)

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        with self._lock:
            rows = self._conn.execute("SELECT offset, reason, at, body FROM dead ORDER BY n LIMIT ?", (limit,)).fetchall()
        return [DeadLetter(o, r, a, bytes(b)) for o, r, a, b in rows]


class SqliteFeatureStore(_SqliteStore):
    _schema = """
    CREATE TABLE IF NOT EXISTS features (
        ns TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,
        PRIMARY KEY (ns, key)
    ) WITHOUT ROWID;
    """

    def get(self, ns: str, key: str) -> bytes | None:
        with self._lock:
            row = self._conn.execute("SELECT value FROM features WHERE ns = ? AND key = ?", (ns, key)).fetchone()
        return row[0] if row else None

    def get_many(self, ns: str, keys: Sequence[str]) -> list[bytes | None]:
        found: dict[str, bytes] = {}
        keys = list(keys)
        with self._lock:
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                found.update(
                    self._conn.execute(
                        f"SELECT key, value FROM features WHERE ns = ? AND key IN ({marks})", (ns, *chunk)
                    ).fetchall()
                )
        return [found.get(k) for k in keys]

    def put(self, ns: str, key: str, value: bytes) -> None:
        self.put_many([(ns, key, value)])

    def put_many(self, rows: Sequence[tuple[str, str, bytes]], guard: Guard | None = None) -> None:
        for ns, _key, value in rows:
            check_namespace(ns)
            if not isinstance(value, (bytes, bytearray, memoryview)):
                raise TypeError(f"feature values are bytes, got {type(value).__name__}")
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                if guard is not None:
                    row = self._conn.execute("SELECT value FROM features WHERE ns = ? AND key = ?",
                                             (check_namespace(guard[0]), guard[1])).fetchone()
                    if (bytes(row[0]) if row else None) != guard[2]:
                        raise StaleWrite(f"{guard[0]}/{guard[1]} changed since it was read")
                self._conn.executemany("INSERT OR REPLACE INTO features (ns, key, value) VALUES (?, ?, ?)", rows)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def delete(self, ns: str, key: str) -> bool:
        with self._lock:
            cur = self._conn.execute("DELETE FROM features WHERE ns = ? AND key = ?", (ns, key))
            return cur.rowcount > 0

    def scan(self, ns: str) -> Iterator[tuple[str, bytes]]:
        with self._lock:
            rows = self._conn.execute("SELECT key, value FROM features WHERE ns = ?", (ns,)).fetchall()
        yield from rows

    def erase(self, rows: Sequence[tuple[str, str]]) -> int:
        for ns, _key in rows:
            check_namespace(ns)
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                removed = sum(
                    self._conn.execute("DELETE FROM features WHERE ns = ? AND key = ?", row).rowcount for row in rows
                )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # no copy left in the WAL
            return removed


class SqliteDecisionLog(_SqliteStore):
    _schema = """
    CREATE TABLE IF NOT EXISTS decisions (
        decision_id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        created_at REAL NOT NULL,
        body BLOB NOT NULL
    );
    CREATE INDEX IF NOT EXISTS decisions_user ON decisions (user_id, created_at);
    CREATE INDEX IF NOT EXISTS decisions_time ON decisions (created_at);
    """

    def append(self, decision: Decision) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO decisions (decision_id, user_id, created_at, body) VALUES (?, ?, ?, ?)",
                (decision.decision_id, decision.user_id, decision.created_at, encode_decision(decision)),
            )

    def get(self, decision_id: str) -> Decision | None:
        with self._lock:
            row = self._conn.execute("SELECT body FROM decisions WHERE decision_id = ?", (decision_id,)).fetchone()
        return decode_decision(row[0]) if row else None

    def for_user(self, user_id: str, limit: int = 100) -> list[Decision]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT body FROM decisions WHERE user_id = ? ORDER BY created_at DESC, rowid DESC LIMIT ?",
                (user_id, limit),
            ).fetchall()
        return [decode_decision(r[0]) for r in rows]

    def between(self, start: float, end: float, limit: int = 10_000) -> list[Decision]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT body FROM decisions WHERE created_at >= ? AND created_at < ? ORDER BY created_at, rowid LIMIT ?",
                (start, end, limit),
            ).fetchall()
        return [decode_decision(r[0]) for r in rows]

    def erase_user(self, user_id: str) -> int:
        return self._erase("DELETE FROM decisions WHERE user_id = ?", user_id)

    def expire(self, before: float) -> int:
        return self._erase("DELETE FROM decisions WHERE created_at < ?", before)


class SqliteModelStore(_SqliteStore):
    _schema = """
    CREATE TABLE IF NOT EXISTS snapshots (
        name TEXT NOT NULL, version INTEGER NOT NULL, created_at REAL NOT NULL, blob BLOB NOT NULL,
        PRIMARY KEY (name, version)
    );
    """
    keep = 5

    def put(self, name: str, blob: bytes) -> int:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                row = self._conn.execute("SELECT MAX(version) FROM snapshots WHERE name = ?", (name,)).fetchone()
                version = (row[0] or 0) + 1
                self._conn.execute(
                    "INSERT INTO snapshots (name, version, created_at, blob) VALUES (?, ?, ?, ?)",
                    (name, version, time.time(), blob),
                )
                self._conn.execute(
                    "DELETE FROM snapshots WHERE name = ? AND version <= ?", (name, version - self.keep)
                )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return version

    def latest(self, name: str) -> tuple[int, bytes] | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT version, blob FROM snapshots WHERE name = ? ORDER BY version DESC LIMIT 1", (name,)
            ).fetchone()
        return (row[0], row[1]) if row else None
