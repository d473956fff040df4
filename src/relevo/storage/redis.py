"""Redis backends (``redis://host:port/db?prefix=relevo:``).

Key layout (single Redis; the scale-out issue adds partitions and cluster hash tags):

- ``{prefix}events``            stream of events, field ``e`` = event JSON
- ``{prefix}event_ids``         hash event id -> stream id (idempotency)
- ``{prefix}eu:{user_id}``      set of "event id<TAB>stream id" of the user's events (erasure)
- ``{prefix}f:{ns}:{key}``      feature document (string)
- ``{prefix}d:{decision_id}``   decision JSON (string, TTL = decision retention)
- ``{prefix}dz:{user_id}``      sorted set decision id -> created_at, the user's decisions
                                within the retention TTL (uncapped, so erasure finds all)
- ``{prefix}dt``                sorted set decision id -> created_at (time-range reads)
- ``{prefix}m:{name}``          hash {version, blob}: latest model snapshot

Durability is Redis's: with ``appendonly yes`` an acknowledged append survives a Redis
restart (up to one second of writes with ``appendfsync everysec``); with persistence off
everything lives in memory only.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import redis

from relevo.errors import Unavailable
from relevo.records import Decision, Event
from relevo.storage.codec import decode_decision, decode_event, encode_decision, encode_event
from relevo.storage.protocols import AppendResult, LogEntry, check_namespace

# Appends every event whose id is new; returns the ids that were already present.
# ARGV: user-index key prefix, then (event id, user index key suffix, body) triples.
_APPEND = """
local dups = {}
for i = 2, #ARGV, 3 do
  if redis.call('HSETNX', KEYS[2], ARGV[i], '') == 1 then
    local sid = redis.call('XADD', KEYS[1], '*', 'e', ARGV[i + 2])
    redis.call('HSET', KEYS[2], ARGV[i], sid)
    redis.call('SADD', ARGV[1] .. ARGV[i + 1], ARGV[i] .. '\t' .. sid)
  else
    table.insert(dups, ARGV[i])
  end
end
return dups
"""


# Stores a decision body; indexes its id (user set, time set) only the first time. The
# user's set drops ids older than the TTL as it grows (their bodies have expired).
# KEYS: body key, user set key, time set key. ARGV: body, ttl, id, created_at.
_APPEND_DECISION = """
local existed = redis.call('EXISTS', KEYS[1])
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
if existed == 0 then
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. (tonumber(ARGV[4]) - tonumber(ARGV[2])))
  redis.call('EXPIRE', KEYS[2], ARGV[2])
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[3])
end
return existed
"""


def _position(stream_id: bytes | str) -> int:
    text = stream_id.decode() if isinstance(stream_id, bytes) else stream_id
    ms, _, seq = text.partition("-")
    return (int(ms) << 20) | int(seq or 0)


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class _RedisStore:
    def __init__(self, client: redis.Redis, prefix: str = "relevo:"):
        self.r = client
        self.prefix = prefix

    def close(self) -> None:
        self.r.close()


class RedisEventLog(_RedisStore):
    """Redis Streams with consumer groups; a consumer first re-reads its own pending
    entries (delivered, never acked) and then new ones."""

    def __init__(self, client: redis.Redis, prefix: str = "relevo:"):
        super().__init__(client, prefix)
        self.stream = f"{prefix}events"
        self.ids = f"{prefix}event_ids"
        self._append = self.r.register_script(_APPEND)
        self._groups: set[str] = set()
        # Per (group, consumer): where re-reading our own pending entries has got to, or
        # None once they have all been handed out again since this process started.
        self._pending_cursor: dict[tuple[str, str], str | None] = {}

    def append(self, events: Sequence[Event]) -> AppendResult:
        if not events:
            return AppendResult(0, 0)
        args: list[bytes | str] = [f"{self.prefix}eu:"]
        for event in events:
            args += [event.id, event.user_id, encode_event(event)]
        try:
            dups = [d.decode() for d in self._append(keys=[self.stream, self.ids], args=args)]
        except redis.ConnectionError as exc:
            raise Unavailable(f"redis event log unreachable: {exc}") from exc
        return AppendResult(len(events) - len(dups), len(dups), dups)

    def _ensure_group(self, group: str) -> None:
        if group in self._groups:
            return
        try:
            self.r.xgroup_create(self.stream, group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._groups.add(group)

    def read(self, group: str, consumer: str, count: int = 512, block_ms: int = 0) -> list[LogEntry]:
        self._ensure_group(group)
        key = (group, consumer)
        cursor = self._pending_cursor.get(key, "0")
        if cursor is not None:
            reply = self.r.xreadgroup(group, consumer, {self.stream: cursor}, count=count)
            entries = self._entries(reply, group)
            if entries:
                self._pending_cursor[key] = entries[-1].offset
                return entries
            self._pending_cursor[key] = None
        reply = self.r.xreadgroup(group, consumer, {self.stream: ">"}, count=count, block=block_ms or None)
        return self._entries(reply, group)

    def _entries(self, reply, group: str) -> list[LogEntry]:
        out: list[LogEntry] = []
        gone: list[bytes] = []
        for _stream, messages in reply or []:
            for sid, fields in messages:
                if not fields:  # erased or trimmed while pending: nothing to deliver
                    gone.append(sid)
                    continue
                out.append(LogEntry(_position(sid), sid.decode(), decode_event(fields[b"e"])))
        if gone:
            self.r.xack(self.stream, group, *gone)
        return out

    def ack(self, group: str, entries: Sequence[LogEntry]) -> None:
        if entries:
            self.r.xack(self.stream, group, *[e.offset for e in entries])

    def lag(self, group: str) -> int:
        """Pending entries plus entries after the group's last delivered id. Redis's own
        ``lag`` keeps counting erased (XDEL) entries that were never delivered, so once the
        stream has had a deletion the undelivered entries are counted with XRANGE instead
        (capped at 1,000: beyond that the figure is a lower bound)."""
        self._ensure_group(group)
        for info in self.r.xinfo_groups(self.stream):
            if info["name"].decode() != group:
                continue
            pending = int(info.get("pending") or 0)
            last = info["last-delivered-id"].decode()
            deleted = self.r.xinfo_stream(self.stream).get("max-deleted-entry-id", b"0-0")
            deleted = deleted.decode() if isinstance(deleted, bytes) else str(deleted)
            if info.get("lag") is not None and _position(deleted) == 0:
                return int(info["lag"]) + pending
            return len(self.r.xrange(self.stream, min=f"({last}", max="+", count=1_000)) + pending
        return 0

    def count(self) -> int:
        return int(self.r.xlen(self.stream))

    def for_user(self, user_id: str, limit: int = 100_000) -> list[Event]:
        index = f"{self.prefix}eu:{user_id}"
        sids = sorted((m.decode().split("\t", 1)[1] for m in self.r.smembers(index)), key=_position)[:limit]
        pipe = self.r.pipeline(transaction=False)
        for sid in sids:
            pipe.xrange(self.stream, sid, sid)
        return [decode_event(found[0][1][b"e"]) for found in pipe.execute() if found]

    def erase_user(self, user_id: str) -> int:
        index = f"{self.prefix}eu:{user_id}"
        members = [m.decode().split("\t", 1) for m in self.r.smembers(index)]
        if not members:
            return 0
        pipe = self.r.pipeline(transaction=True)
        pipe.xdel(self.stream, *[sid for _, sid in members])
        pipe.hdel(self.ids, *[eid for eid, _ in members])
        pipe.delete(index)
        removed = pipe.execute()[0]
        return int(removed)

    def reset_delivery(self, group: str) -> None:
        for key in [k for k in self._pending_cursor if k[0] == group]:
            del self._pending_cursor[key]


class RedisFeatureStore(_RedisStore):
    def _key(self, ns: str, key: str) -> str:
        return f"{self.prefix}f:{check_namespace(ns)}:{key}"

    def get(self, ns: str, key: str) -> bytes | None:
        return self.r.get(self._key(ns, key))

    def get_many(self, ns: str, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        return self.r.mget([self._key(ns, k) for k in keys])

    def put(self, ns: str, key: str, value: bytes) -> None:
        self.r.set(self._key(ns, key), value)

    def put_many(self, rows: Sequence[tuple[str, str, bytes]]) -> None:
        if not rows:
            return
        for _ns, _key, value in rows:
            if not isinstance(value, (bytes, bytearray, memoryview)):
                raise TypeError(f"feature values are bytes, got {type(value).__name__}")
        pipe = self.r.pipeline(transaction=True)  # MULTI/EXEC: all rows or none
        for ns, key, value in rows:
            pipe.set(self._key(ns, key), value)
        pipe.execute()

    def delete(self, ns: str, key: str) -> bool:
        return bool(self.r.delete(self._key(ns, key)))

    def scan(self, ns: str) -> Iterator[tuple[str, bytes]]:
        head = f"{self.prefix}f:{check_namespace(ns)}:"
        batch: list[bytes] = []
        for k in self.r.scan_iter(match=_glob_escape(head) + "*", count=1000):
            batch.append(k)
            if len(batch) >= 500:
                yield from self._fetch(batch, len(head))
                batch = []
        if batch:
            yield from self._fetch(batch, len(head))

    def erase(self, rows: Sequence[tuple[str, str]]) -> int:
        if not rows:
            return 0
        return int(self.r.delete(*[self._key(ns, key) for ns, key in rows]))

    def _fetch(self, keys: list[bytes], cut: int) -> Iterator[tuple[str, bytes]]:
        for k, v in zip(keys, self.r.mget(keys)):
            if v is not None:
                yield k.decode()[cut:], v


class RedisDecisionLog(_RedisStore):
    def __init__(self, client: redis.Redis, prefix: str = "relevo:", ttl_s: int = 30 * 86400):
        super().__init__(client, prefix)
        self.ttl_s = ttl_s
        self._append = self.r.register_script(_APPEND_DECISION)

    def _user_key(self, user_id: str) -> str:
        return f"{self.prefix}dz:{user_id}"

    def append(self, decision: Decision) -> None:
        keys = [f"{self.prefix}d:{decision.decision_id}", self._user_key(decision.user_id), f"{self.prefix}dt"]
        args = [encode_decision(decision), self.ttl_s, decision.decision_id, repr(decision.created_at)]
        self._append(keys=keys, args=args)

    def between(self, start: float, end: float, limit: int = 10_000) -> list[Decision]:
        """Up to ``limit`` live decisions: ids whose bodies expired (TTL) are dropped from
        the time index as they are met and the range is read again, so a short answer
        always means the range is exhausted."""
        time_key = f"{self.prefix}dt"
        while True:
            ids = self.r.zrangebyscore(time_key, start, f"({end!r}", start=0, num=limit)
            if not ids:
                return []
            raws = self.r.mget([f"{self.prefix}d:{i.decode()}" for i in ids])
            gone = [i for i, raw in zip(ids, raws) if raw is None]
            if not gone:
                return [decode_decision(r) for r in raws]
            self.r.zrem(time_key, *gone)

    def get(self, decision_id: str) -> Decision | None:
        raw = self.r.get(f"{self.prefix}d:{decision_id}")
        return decode_decision(raw) if raw is not None else None

    def for_user(self, user_id: str, limit: int = 100) -> list[Decision]:
        ids = self.r.zrevrange(self._user_key(user_id), 0, limit - 1)
        if not ids:
            return []
        raws = self.r.mget([f"{self.prefix}d:{i.decode()}" for i in ids])
        return [decode_decision(r) for r in raws if r is not None]

    def expire(self, before: float) -> int:
        """Bodies also carry a TTL (``ttl_s``); this removes them by creation time and
        trims the time index. User lists drop expired ids as they are read."""
        time_key = f"{self.prefix}dt"
        ids = self.r.zrangebyscore(time_key, "-inf", f"({before!r}")
        if not ids:
            return 0
        pipe = self.r.pipeline(transaction=True)
        pipe.delete(*[f"{self.prefix}d:{i.decode()}" for i in ids])
        pipe.zrem(time_key, *ids)
        return int(pipe.execute()[0])

    def erase_user(self, user_id: str) -> int:
        user_key = self._user_key(user_id)
        ids = self.r.zrange(user_key, 0, -1)
        pipe = self.r.pipeline(transaction=True)
        if ids:
            pipe.delete(*[f"{self.prefix}d:{i.decode()}" for i in ids])
            pipe.zrem(f"{self.prefix}dt", *ids)
        pipe.delete(user_key)
        return int(pipe.execute()[0]) if ids else 0


class RedisModelStore(_RedisStore):
    _PUT = """
    local v = redis.call('HINCRBY', KEYS[1], 'version', 1)
    redis.call('HSET', KEYS[1], 'blob', ARGV[1])
    return v
    """

    def __init__(self, client: redis.Redis, prefix: str = "relevo:"):
        super().__init__(client, prefix)
        self._put = self.r.register_script(self._PUT)

    def put(self, name: str, blob: bytes) -> int:
        return int(self._put(keys=[f"{self.prefix}m:{name}"], args=[blob]))

    def latest(self, name: str) -> tuple[int, bytes] | None:
        version, blob = self.r.hmget(f"{self.prefix}m:{name}", ["version", "blob"])
        if version is None or blob is None:
            return None
        return int(version), blob
