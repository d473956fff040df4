"""Redis and Redis Cluster backends (``redis://host:port/db``, ``redis+cluster://host:port``).

URL options: ``prefix`` (default ``relevo:``), ``partitions`` (event-log partitions,
default 8, fixed once the log exists), ``dedup_ttl_s`` (how long an event id is
remembered, default 7 days), ``retention_s`` (acked events older than this are trimmed,
default 1 day), ``max_backlog`` (events appended but not yet acked by a consumer group,
past which appends are refused with 429, default 1,000,000), ``lease_ms`` (how long a
dead stream worker keeps its partitions, default 10 s), ``min_replicas`` (an append is
acknowledged only once that many replicas of the partition's master have it, ``WAIT``,
or by every replica attached if fewer are; default 0: acknowledged when the master has it).

Key layout (docs/REDIS_KEYS.md is the spec, tests/storage/test_redis_keys.py pins it).
``P`` is the prefix; a ``{...}`` part is a Redis Cluster hash tag, so every key that one
script or transaction touches lands in one slot:

- ``{Pp<k>}:events``        partition k's stream (field ``e`` = event JSON); a user's events
                            all go to partition crc32(user id) mod N, so they stay ordered
- ``{Pp<k>}:id:<event id>`` "1": the id was appended (deduplication, expires after dedup_ttl_s)
- ``{Pp<k>}:eu:<user id>``  set of "event id<TAB>stream id" (erasure, access export)
- ``{Pp<k>}:dead``          dead-letter stream: fields ``e`` (raw entry), ``reason``,
                            ``offset``, ``at``
- ``Pmeta:partitions``      N, written by the first process (a different N is refused)
- ``Please:<group>:<k>``    the consumer that owns partition k for the group (PX lease)
- ``Pmembers:<group>``      sorted set consumer -> last heartbeat (ms): live consumers
- ``Pfeed:items``           item-update stream (field ``r`` = JSON record: items added or
                            deleted, a partition's new engagement counts); every serving
                            process tails it to keep its vector index and catalog current
- ``{Pp<k>}:f:<ns>:<key>``  feature document; k = crc32(key) mod N, so a user's documents
                            share their events' partition, or k from a ``<ns>_p<k>``
                            namespace (per-partition documents such as ``item_stats_p3``)
- ``{Plearn}:f:<ns>:<key>`` feature documents of the namespaces ``models`` and ``rewards``
                            (bandit posteriors and reward markers: written together)
- ``Pd:<decision id>``      decision JSON (string, TTL = decision retention)
- ``Pdz:<user id>``         sorted set decision id -> created_at (the user's decisions)
- ``Pdt``                   sorted set decision id -> created_at (time-range reads)
- ``Pm:<name>``             hash {version, blob}: latest model snapshot

Durability is Redis's: with ``appendonly yes`` an acknowledged append survives a Redis
restart (up to one second of writes with ``appendfsync everysec``, none with ``always``);
with persistence off everything lives in memory only (docs/DURABILITY.md).
"""

from __future__ import annotations

import math
import re
import threading
import time
import zlib
from collections import defaultdict, deque
from typing import Iterator, Sequence

import redis
from redis.cluster import RedisCluster

from relevo.errors import ConfigError, Overloaded, StaleWrite, Unavailable
from relevo.records import Decision, Event
from relevo.storage.codec import decode_decision, decode_event, encode_decision, encode_event
from relevo.storage.protocols import AppendResult, DeadLetter, Guard, LogEntry, check_namespace, outage_errors

OUTAGE = outage_errors()  # "not reachable now": a restart, a failover, a timeout
LEARN_NS = frozenset({"models", "rewards"})
_PARTITION_NS = re.compile(r".*_p(\d+)")

# Appends each event whose id is new; returns the ids already present. KEYS[1]: the
# partition's stream; the id and user-index keys are built here from ARGV[2], the
# partition's tag (same slot). ARGV: dedup ttl, tag, then (event id, user id, body) triples.
_APPEND = """
local dups = {}
local tag = ARGV[2]
for i = 3, #ARGV, 3 do
  if redis.call('SET', tag .. ':id:' .. ARGV[i], '1', 'NX', 'EX', ARGV[1]) then
    local sid = redis.call('XADD', KEYS[1], '*', 'e', ARGV[i + 2])
    redis.call('SADD', tag .. ':eu:' .. ARGV[i + 1], ARGV[i] .. '\t' .. sid)
  else
    table.insert(dups, ARGV[i])
  end
end
return dups
"""


# Moves entries to the dead-letter stream and acks them. KEYS: stream, dead stream.
# ARGV: group, reason, at, then stream ids.
_DEAD = """
for i = 4, #ARGV do
  local found = redis.call('XRANGE', KEYS[1], ARGV[i], ARGV[i])
  local body = ''
  if found[1] then
    local fields = found[1][2]
    for j = 1, #fields, 2 do
      if fields[j] == 'e' then body = fields[j + 1] end
    end
  end
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', 100000, '*', 'e', body, 'reason', ARGV[2], 'offset', ARGV[i], 'at', ARGV[3])
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[i])
end
return #ARGV - 3
"""

# Renews (ARGV[2] = ms) or releases (ARGV[2] = 0) a lease held by ARGV[1]; with
# ARGV[3] = 'take', also takes a free one (a restarted consumer finds its own lease).
_LEASE = """
local holder = redis.call('GET', KEYS[1])
if not holder and ARGV[3] == 'take' then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if holder ~= ARGV[1] then return 0 end
if ARGV[2] == '0' then redis.call('DEL', KEYS[1]) else redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
"""

# Writes values to keys, optionally guarded. ARGV[1]: '0' no guard, '1' KEYS[1] must be
# absent, '2' KEYS[1] must equal ARGV[2]. Data keys follow the guard key; values from ARGV[3].
_MSET = """
local first = 1
if ARGV[1] ~= '0' then
  local current = redis.call('GET', KEYS[1])
  if ARGV[1] == '1' and current then return 0 end
  if ARGV[1] == '2' and current ~= ARGV[2] then return 0 end
  first = 2
end
for i = first, #KEYS do
  redis.call('SET', KEYS[i], ARGV[i - first + 3])
end
return 1
"""

# Erases a user's events. KEYS: stream, user index, then id keys. ARGV: stream ids.
_ERASE = """
local removed = 0
if #ARGV > 0 then removed = redis.call('XDEL', KEYS[1], unpack(ARGV)) end
for i = 2, #KEYS do redis.call('DEL', KEYS[i]) end
return removed
"""


def _position(stream_id: bytes | str) -> int:
    text = stream_id.decode() if isinstance(stream_id, bytes) else stream_id
    ms, _, seq = text.partition("-")
    return (int(ms) << 20) | int(seq or 0)


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def partition_of(key: str, partitions: int) -> int:
    """The partition of a user id (or any feature key): stable across processes."""
    return zlib.crc32(key.encode()) % partitions


class Keys:
    """The key layout in one place (module docstring; docs/REDIS_KEYS.md)."""

    def __init__(self, prefix: str, partitions: int):
        if "{" in prefix or "}" in prefix:
            raise ConfigError(f"redis prefix {prefix!r} must not contain braces (they are hash tags)", field="prefix")
        if not 1 <= partitions <= 1024:
            raise ConfigError(f"partitions must be 1..1024, got {partitions}", field="partitions")
        self.prefix, self.partitions = prefix, partitions
        self._tags = [self.tag(k) for k in range(partitions)]
        self._ns_tags: dict[str, str | None] = {}

    def tag(self, k: int | str) -> str:
        return f"{{{self.prefix}{k if isinstance(k, str) else f'p{k}'}}}"

    def stream(self, k: int) -> str:
        return f"{self.tag(k)}:events"

    def event_id(self, k: int, event_id: str) -> str:
        return f"{self.tag(k)}:id:{event_id}"

    def user_events(self, k: int, user_id: str) -> str:
        return f"{self.tag(k)}:eu:{user_id}"

    def dead(self, k: int) -> str:
        return f"{self.tag(k)}:dead"

    def meta_partitions(self) -> str:
        return f"{self.prefix}meta:partitions"

    def lease(self, group: str, k: int) -> str:
        return f"{self.prefix}lease:{group}:{k}"

    def members(self, group: str) -> str:
        return f"{self.prefix}members:{group}"

    def feed(self) -> str:
        return f"{self.prefix}feed:items"

    def _fixed_tag(self, ns: str) -> str | None:
        """The tag of a namespace whose documents all share one (learn, ``<ns>_p<k>``),
        else None (the tag follows the key); validates the namespace. Cached per namespace."""
        cached = self._ns_tags.get(ns, False)
        if cached is not False:
            return cached
        check_namespace(ns)
        m = _PARTITION_NS.fullmatch(ns)
        tag = self.tag("learn") if ns in LEARN_NS else self.tag(int(m.group(1)) % self.partitions) if m else None
        if len(self._ns_tags) < 10_000:
            self._ns_tags[ns] = tag
        return tag

    def feature_tag(self, ns: str, key: str) -> str:
        return self._fixed_tag(ns) or self._tags[partition_of(key, self.partitions)]

    def feature(self, ns: str, key: str) -> str:
        return f"{self.feature_tag(ns, key)}:f:{ns}:{key}"

    def decision(self, decision_id: str) -> str:
        return f"{self.prefix}d:{decision_id}"

    def user_decisions(self, user_id: str) -> str:
        return f"{self.prefix}dz:{user_id}"

    def decision_times(self) -> str:
        return f"{self.prefix}dt"

    def model(self, name: str) -> str:
        return f"{self.prefix}m:{name}"


class _RedisStore:
    def __init__(self, client: redis.Redis | RedisCluster, prefix: str = "relevo:", partitions: int = 8):
        self.r = client
        self.prefix = prefix
        self.partitions = partitions
        self.keys = Keys(prefix, partitions)
        self.cluster = isinstance(client, RedisCluster)

    def _check_partitions(self) -> None:
        """The first process stores N; one that asks for another N is refused (a user's
        partition, and so the slot of their documents, would change)."""
        key = self.keys.meta_partitions()
        try:
            self.r.set(key, self.partitions, nx=True)
            stored = int(self.r.get(key))
        except OUTAGE as exc:
            raise Unavailable(f"redis unreachable: {exc}") from exc
        if stored != self.partitions:
            raise ConfigError(
                f"the stores under prefix {self.prefix!r} have {stored} partitions; this process asks for "
                f"{self.partitions} (a user's partition would change): use partitions={stored}", field="partitions")

    def _mget(self, keys: list[str]) -> list[bytes | None]:
        if not keys:
            return []
        return self.r.mget_nonatomic(keys) if self.cluster else self.r.mget(keys)

    def close(self) -> None:
        self.r.close()


class RedisEventLog(_RedisStore):
    """N Redis Streams, one consumer group per reader, partitions owned by leases.

    Each partition is read by one consumer of a group at a time (its lease holder), so a
    user's events are applied in order. A consumer renews its leases as it reads and takes
    a fair share (N / live consumers); when one dies its leases expire, another takes its
    partitions and claims (XAUTOCLAIM) the entries it had read but not acked, which are
    then delivered again, in order, before new ones. A read returns entries of a single
    partition.
    """

    def __init__(self, client, prefix: str = "relevo:", *, partitions: int = 8, dedup_ttl_s: int = 7 * 86400,
                 retention_s: float = 86400.0, max_backlog: int = 1_000_000, lease_ms: int = 10_000,
                 min_replicas: int = 0, replica_wait_ms: int = 500):
        super().__init__(client, prefix, partitions)
        self.dedup_ttl_s = int(dedup_ttl_s)
        self.retention_s = float(retention_s)
        self.max_backlog = int(max_backlog)
        self.lease_ms = int(lease_ms)
        self.min_replicas = int(min_replicas)
        self.replica_wait_ms = int(replica_wait_ms)
        self._append = self.r.register_script(_APPEND)
        self._dead = self.r.register_script(_DEAD)
        self._lease = self.r.register_script(_LEASE)
        self._erase = self.r.register_script(_ERASE)
        self._groups: set[tuple[str, int]] = set()
        # group -> partition -> pending cursor ("0": re-read my pending entries; None: new ones)
        self._owned: dict[str, dict[int, str | None]] = defaultdict(dict)
        self._balanced_at: dict[str, float] = {}
        self._buffer: dict[str, deque[tuple[int, list[LogEntry]]]] = defaultdict(deque)
        self._next: dict[str, int] = defaultdict(int)
        self._backlog_at = 0.0
        self._backlog = 0
        self._lost: set[tuple[str, int]] = set()
        self._keepalive: dict[str, threading.Thread] = {}
        self._closing = threading.Event()
        self._check_partitions()

    def partition(self, user_id: str) -> int:
        return partition_of(user_id, self.partitions)

    def close(self) -> None:
        self._closing.set()
        super().close()

    # -- write ---------------------------------------------------------------------------

    def append(self, events: Sequence[Event]) -> AppendResult:
        """Each partition's events go in with one script (atomic per partition). If Redis
        fails part-way the call raises and the caller retries: ids already in are
        reported as duplicates, so nothing is lost or doubled."""
        if not events:
            return AppendResult(0, 0)
        by_partition: dict[int, list[Event]] = defaultdict(list)
        for event in events:
            by_partition[self.partition(event.user_id)].append(event)
        dups: list[str] = []
        try:
            self._check_backlog()
            calls = []
            for k, batch in by_partition.items():
                args: list[bytes | str | int] = [self.dedup_ttl_s, self.keys.tag(k)]
                for event in batch:
                    args += [event.id, event.user_id, encode_event(event)]
                calls.append(([self.keys.stream(k)], args))
            if self.min_replicas or self.cluster:  # (a cluster pipeline cannot carry EVALSHA)
                for keys, args in calls:
                    dups += [_text(d) for d in self._append_replicated(keys, args)]
            else:  # one round trip for every partition's script
                pipe = self.r.pipeline(transaction=False)
                for keys, args in calls:
                    self._append(keys=keys, args=args, client=pipe)
                for reply in pipe.execute():
                    dups += [_text(d) for d in reply]
        except OUTAGE as exc:
            if self.cluster:  # a failover moves slots: learn the new masters before the retry
                try:
                    self.r.nodes_manager.initialize()
                except Exception:  # noqa: BLE001 - still failing over; the caller retries
                    pass
            raise Unavailable(f"redis event log unreachable: {exc}") from exc
        return AppendResult(len(events) - len(dups), len(dups), dups)

    def _append_replicated(self, keys: list[str], args: list) -> list:
        """Run the append script; with ``min_replicas``, on the same connection follow it
        with WAIT, so the events are on that many replicas before the append returns."""
        if not self.min_replicas:
            return self._append(keys=keys, args=args)  # on a cluster, routed by KEYS[1]
        node_client = self.r.get_redis_connection(self.r.get_node_from_key(keys[0])) if self.cluster else self.r
        pipe = node_client.pipeline(transaction=False)
        self._append(keys=keys, args=args, client=pipe)
        pipe.execute_command("WAIT", self.min_replicas, self.replica_wait_ms)
        dups, replicas = pipe.execute()
        if int(replicas) < self.min_replicas and int(replicas) < self._online_replicas(node_client):
            raise Unavailable(f"the events reached {replicas} of {self.min_replicas} replicas in "
                              f"{self.replica_wait_ms} ms; retry (ids already in are reported as duplicates)")
        return dups

    @staticmethod
    def _online_replicas(node_client) -> int:
        """Replicas attached to this master now. After a failover the promoted master has
        none until its old master comes back as a replica: meanwhile its writes are
        acknowledged by it alone (Redis's own WAIT semantics; docs/DURABILITY.md)."""
        info = node_client.info("replication")
        return sum(1 for k, v in info.items() if k.startswith("slave") and isinstance(v, dict) and v.get("state") == "online")

    def _check_backlog(self) -> None:
        """Refuse appends while some consumer group is more than ``max_backlog`` entries
        behind (measured at most every 250 ms)."""
        now = time.monotonic()
        if now - self._backlog_at >= 0.25:
            self._backlog_at = now
            self._backlog = self.backlog()
        if self._backlog > self.max_backlog:
            raise Overloaded(
                f"ingest is {self._backlog} events ahead of the stream workers (limit {self.max_backlog}); "
                "retry later or add workers", retry_after=1.0)

    def backlog(self) -> int:
        """The largest lag of any consumer group (0 when there is none yet)."""
        lags: dict[str, int] = defaultdict(int)
        for k in range(self.partitions):
            for name, lag in self._lags(k, exact=False).items():
                lags[name] += lag
        return max(lags.values(), default=0)

    def _lags(self, k: int, exact: bool = True) -> dict[str, int]:
        """Per group: pending entries plus entries after its last delivered id. Not
        ``exact`` (back-pressure): Redis's own lag, which after an XDEL may still count the
        deleted entries (an upper bound), else the entries in the stream."""
        stream = self.keys.stream(k)
        try:
            groups = self.r.xinfo_groups(stream)
        except redis.ResponseError:  # no stream yet
            return {}
        out: dict[str, int] = {}
        deleted = None
        for info in groups:
            pending = int(info.get("pending") or 0)
            if not exact:
                lag = info.get("lag")
                out[_text(info["name"])] = (int(lag) if lag is not None else int(self.r.xlen(stream))) + pending
                continue
            if info.get("lag") is not None:
                if deleted is None:
                    deleted = _position(_text(self.r.xinfo_stream(stream).get("max-deleted-entry-id", b"0-0")))
                if deleted == 0:
                    out[_text(info["name"])] = int(info["lag"]) + pending
                    continue
            # after an XDEL Redis's own lag is unknown: count (capped at 1,000: a lower bound)
            last = _text(info["last-delivered-id"])
            out[_text(info["name"])] = len(self.r.xrange(stream, min=f"({last}", max="+", count=1_000)) + pending
        return out

    # -- read ----------------------------------------------------------------------------

    def _ensure_group(self, group: str, k: int) -> None:
        if (group, k) in self._groups:
            return
        try:
            self.r.xgroup_create(self.keys.stream(k), group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._groups.add((group, k))

    def owned(self, group: str) -> list[int]:
        return sorted(self._owned[group])

    def _balance(self, group: str, consumer: str) -> dict[int, str | None]:
        """Heartbeat, renew my leases, give back what is over my fair share, take free
        partitions up to it (claiming their pending entries). At most every lease/3."""
        mine = self._owned[group]
        for k in [k for g, k in list(self._lost) if g == group]:
            self._lost.discard((group, k))
            self._drop(group, k)  # the keepalive could not renew it: someone else may own it now
        now = time.monotonic()
        if group not in self._keepalive:
            thread = threading.Thread(target=self._renew, args=(group, consumer), daemon=True,
                                      name=f"relevo-lease-{group}")
            self._keepalive[group] = thread
            thread.start()
        if now - self._balanced_at.get(group, -1e9) < self.lease_ms / 3000:
            return mine
        self._balanced_at[group] = now
        now_ms = int(time.time() * 1000)
        members = self.keys.members(group)
        pipe = self.r.pipeline(transaction=False)
        pipe.zadd(members, {consumer: now_ms})
        pipe.zremrangebyscore(members, "-inf", now_ms - 10 * self.lease_ms)
        pipe.zcount(members, now_ms - self.lease_ms, "+inf")
        live = max(int(pipe.execute()[-1]), 1)
        fair = math.ceil(self.partitions / live)
        for k in list(mine):
            if not self._lease(keys=[self.keys.lease(group, k)], args=[consumer, self.lease_ms, "keep"]):
                self._drop(group, k)  # expired and taken: the new owner claims its entries
        for k in sorted(mine, reverse=True)[: max(len(mine) - fair, 0)]:
            self._lease(keys=[self.keys.lease(group, k)], args=[consumer, 0, "keep"])
            self._drop(group, k)
        if len(mine) < fair:
            start = partition_of(consumer, self.partitions)
            for i in range(self.partitions):
                k = (start + i) % self.partitions
                if len(mine) >= fair:
                    break
                if k in mine or not self._lease(keys=[self.keys.lease(group, k)], args=[consumer, self.lease_ms, "take"]):
                    continue
                self._ensure_group(group, k)
                self._claim(group, consumer, k)
                mine[k] = "0"
        return mine

    def _renew(self, group: str, consumer: str) -> None:
        """Renew my leases every lease/3 from a thread of its own, so a slow batch does not
        lose its partition; only a process that stops altogether (killed, frozen) does."""
        while not self._closing.wait(self.lease_ms / 3000):
            try:
                self.r.zadd(self.keys.members(group), {consumer: int(time.time() * 1000)})
                for k in list(self._owned[group]):
                    if not self._lease(keys=[self.keys.lease(group, k)], args=[consumer, self.lease_ms, "keep"]):
                        self._lost.add((group, k))
            except Exception:  # noqa: BLE001 - an outage: the reader sees it too; try again
                continue

    def _drop(self, group: str, k: int) -> None:
        self._owned[group].pop(k, None)
        buffered = self._buffer[group]
        kept = [(p, entries) for p, entries in buffered if p != k]
        buffered.clear()
        buffered.extend(kept)

    def _claim(self, group: str, consumer: str, k: int) -> int:
        """Move every pending entry of partition k (a dead owner's) to ``consumer``."""
        stream, start, moved = self.keys.stream(k), "0-0", 0
        while True:
            reply = self.r.xautoclaim(stream, group, consumer, min_idle_time=0, start_id=start, count=1000)
            start = _text(reply[0])
            moved += len(reply[1])
            if start == "0-0":
                return moved

    def release(self, group: str, consumer: str) -> None:
        """Give back every lease (a clean shutdown: others take over at once)."""
        self._closing.set()
        for k in list(self._owned[group]):
            try:
                self._lease(keys=[self.keys.lease(group, k)], args=[consumer, 0, "keep"])
            except OUTAGE:
                pass
            self._drop(group, k)
        self._balanced_at.pop(group, None)
        try:
            self.r.zrem(self.keys.members(group), consumer)
        except OUTAGE:
            pass

    def read(self, group: str, consumer: str, count: int = 512, block_ms: int = 0) -> list[LogEntry]:
        for g, k in list(self._lost):  # the keepalive lost these: their buffered entries are not mine
            if g == group:
                self._lost.discard((g, k))
                self._drop(group, k)
        buffered = self._buffer[group]
        if buffered:
            return buffered.popleft()[1]
        owned = self._balance(group, consumer)
        if not owned:
            if block_ms:
                time.sleep(block_ms / 1000)
            return []
        order = sorted(owned)
        first = self._next[group] % len(order)
        order = order[first:] + order[:first]
        self._next[group] += 1
        if self._fetch(group, consumer, order, owned, count) and not buffered:
            self._fetch(group, consumer, order, owned, count)  # pending ones done: the new ones
        if not buffered and block_ms:
            if self.cluster:  # one blocking read across slots is not possible: wait, read again
                time.sleep(min(block_ms, 100) / 1000)
                self._fetch(group, consumer, order, owned, count)
            else:
                streams = {self.keys.stream(k): ">" for k in order if owned.get(k, "0") is None}
                if streams:
                    reply = self.r.xreadgroup(group, consumer, streams, count=count,
                                              block=min(block_ms, max(self.lease_ms // 3, 1)))
                    for name, messages in reply or []:
                        k = int(_text(name).rsplit("}", 1)[0].rsplit("p", 1)[1])
                        entries = self._entries([(name, messages)], group, k)
                        if entries:
                            buffered.append((k, entries))
        return buffered.popleft()[1] if buffered else []

    def _fetch(self, group: str, consumer: str, order: list[int], owned: dict[int, str | None], count: int) -> bool:
        """One pipelined read of every owned partition into the buffer: my pending entries
        where the cursor says so, else new ones. True if some partition just finished
        re-reading its pending entries."""
        buffered = self._buffer[group]
        pipe = self.r.pipeline(transaction=False)
        for k in order:
            pipe.xreadgroup(group, consumer, {self.keys.stream(k): owned[k] or ">"}, count=count)
        switched = False
        for k, reply in zip(order, pipe.execute()):
            entries = self._entries(reply, group, k)
            if owned.get(k) is not None:
                ids = [sid for _stream, messages in reply or [] for sid, _fields in messages]
                if ids:  # (erased or undecodable ones included: the cursor passes them too)
                    owned[k] = _text(ids[-1])
                else:
                    owned[k] = None  # my pending entries are all handed out again
                    switched = True
            if entries:
                buffered.append((k, entries))
        return switched

    def _entries(self, reply, group: str, k: int) -> list[LogEntry]:
        out: list[LogEntry] = []
        gone: list[bytes] = []
        poison: list[tuple[str, str]] = []
        for _stream, messages in reply or []:
            for sid, fields in messages:
                if not fields:  # erased or trimmed while pending: nothing to deliver
                    gone.append(sid)
                    continue
                try:
                    event = decode_event(fields[b"e"])
                except Exception as exc:  # written by something else: keep it aside, move on
                    poison.append((_text(sid), f"undecodable entry: {exc!r}"[:500]))
                    continue
                out.append(LogEntry(_position(sid), f"{k}/{_text(sid)}", event, k))
        if gone:
            self.r.xack(self.keys.stream(k), group, *gone)
        for sid, reason in poison:
            self._dead(keys=[self.keys.stream(k), self.keys.dead(k)], args=[group, reason, time.time(), sid])
        return out

    def ack(self, group: str, entries: Sequence[LogEntry]) -> None:
        by_partition: dict[int, list[str]] = defaultdict(list)
        for e in entries:
            by_partition[e.partition].append(e.offset.split("/", 1)[1])
        if not by_partition:
            return
        pipe = self.r.pipeline(transaction=False)
        for k, sids in by_partition.items():
            pipe.xack(self.keys.stream(k), group, *sids)
        pipe.execute()

    def reset_delivery(self, group: str) -> None:
        """Re-read my pending entries (in order) before new ones, from every partition I own."""
        self._buffer[group].clear()
        for k in self._owned[group]:
            self._owned[group][k] = "0"

    def dead_letter(self, group: str, entries: Sequence[LogEntry], reason: str) -> None:
        by_partition: dict[int, list[str]] = defaultdict(list)
        for e in entries:
            by_partition[e.partition].append(e.offset.split("/", 1)[1])
        for k, sids in by_partition.items():
            self._dead(keys=[self.keys.stream(k), self.keys.dead(k)], args=[group, reason[:500], time.time(), *sids])

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        found: list[DeadLetter] = []
        for k in range(self.partitions):
            for _sid, fields in self.r.xrange(self.keys.dead(k), count=limit):
                found.append(DeadLetter(f"{k}/{_text(fields[b'offset'])}", _text(fields[b"reason"]),
                                        float(fields[b"at"]), bytes(fields[b"e"])))
        found.sort(key=lambda d: d.at)
        return found[:limit]

    # -- upkeep --------------------------------------------------------------------------

    def trim(self, partitions: Sequence[int] | None = None, now: float | None = None) -> int:
        """Remove entries that every consumer group has acked and that are older than
        ``retention_s``; a partition nobody consumes yet keeps everything. Returns how
        many entries went."""
        cutoff = f"{int(((now or time.time()) - self.retention_s) * 1000)}-0"
        removed = 0
        for k in range(self.partitions) if partitions is None else partitions:
            stream = self.keys.stream(k)
            try:
                groups = self.r.xinfo_groups(stream)
            except redis.ResponseError:
                continue
            if not groups:
                continue
            safe = cutoff
            for info in groups:
                candidates = [_text(info["last-delivered-id"])]
                if int(info.get("pending") or 0):
                    summary = self.r.xpending(stream, info["name"])
                    if summary.get("min"):
                        candidates.append(_text(summary["min"]))
                safe = min([safe, *candidates], key=_position)
            if _position(safe) > 0:
                removed += int(self.r.xtrim(stream, minid=safe, approximate=False))
        return removed

    def lag(self, group: str) -> int:
        total = 0
        for k in range(self.partitions):
            self._ensure_group(group, k)
            total += self._lags(k).get(group, 0)
        return total

    def count(self) -> int:
        pipe = self.r.pipeline(transaction=False)
        for k in range(self.partitions):
            pipe.xlen(self.keys.stream(k))
        return sum(int(n) for n in pipe.execute())

    # -- item-update feed ----------------------------------------------------------------

    FEED_MAXLEN = 100_000

    def feed_publish(self, record: bytes) -> str:
        return _text(self.r.xadd(self.keys.feed(), {"r": record}, maxlen=self.FEED_MAXLEN, approximate=True))

    def feed_head(self) -> str:
        """The id of the newest record ("0-0" when none): read after it to see what comes next."""
        last = self.r.xrevrange(self.keys.feed(), count=1)
        return _text(last[0][0]) if last else "0-0"

    def feed_read(self, after: str, count: int = 1000, block_ms: int = 0) -> tuple[str, list[bytes], bool]:
        """Records after ``after``: (the last id read, the records, whether records were
        trimmed away unread: the reader must then reload everything)."""
        reply = self.r.xread({self.keys.feed(): after}, count=count, block=block_ms or None)
        records: list[bytes] = []
        last = after
        for _name, messages in reply or []:
            for sid, fields in messages:
                records.append(fields[b"r"])
                last = _text(sid)
        # the oldest record kept is newer than the last one this reader saw: what lay
        # between may have been trimmed (MAXLEN) unread
        oldest = self.r.xrange(self.keys.feed(), count=1) if after != "0-0" else []
        gap = bool(oldest) and _position(oldest[0][0]) > _position(after)
        return last, records, gap

    # -- per user ------------------------------------------------------------------------

    def _user_index(self, user_id: str) -> tuple[int, list[tuple[str, str]]]:
        k = self.partition(user_id)
        members = [_text(m).split("\t", 1) for m in self.r.smembers(self.keys.user_events(k, user_id))]
        return k, [(eid, sid) for eid, sid in members]

    def for_user(self, user_id: str, limit: int = 100_000) -> list[Event]:
        k, members = self._user_index(user_id)
        sids = sorted((sid for _, sid in members), key=_position)[:limit]
        pipe = self.r.pipeline(transaction=False)
        for sid in sids:
            pipe.xrange(self.keys.stream(k), sid, sid)
        return [decode_event(found[0][1][b"e"]) for found in pipe.execute() if found]

    def erase_user(self, user_id: str) -> int:
        """The user's entries, id keys and index go in one script (one partition)."""
        k, members = self._user_index(user_id)
        if not members:
            return 0
        keys = [self.keys.stream(k), self.keys.user_events(k, user_id),
                *[self.keys.event_id(k, eid) for eid, _ in members]]
        return int(self._erase(keys=keys, args=[sid for _, sid in members]))


class RedisFeatureStore(_RedisStore):
    def __init__(self, client, prefix: str = "relevo:", partitions: int = 8):
        super().__init__(client, prefix, partitions)
        self._mset = self.r.register_script(_MSET)
        self._check_partitions()
        self._shape = re.compile(re.escape("{" + prefix) + r"(?:p\d+|learn)\}:f:([A-Za-z0-9_]{1,64}):(.*)", re.S)

    def _key(self, ns: str, key: str) -> str:
        return self.keys.feature(ns, key)  # validates ns (once per namespace)

    def get(self, ns: str, key: str) -> bytes | None:
        return self.r.get(self._key(ns, key))

    def get_many(self, ns: str, keys: Sequence[str]) -> list[bytes | None]:
        fixed = self.keys._fixed_tag(ns)
        if fixed is not None:
            return self._mget([f"{fixed}:f:{ns}:{k}" for k in keys])
        tags, n = self.keys._tags, self.keys.partitions
        return self._mget([f"{tags[partition_of(k, n)]}:f:{ns}:{k}" for k in keys])

    def put(self, ns: str, key: str, value: bytes) -> None:
        self.put_many([(ns, key, value)])

    def put_many(self, rows: Sequence[tuple[str, str, bytes]], guard: Guard | None = None) -> None:
        """One script call: atomic on one Redis; on a cluster, one call per hash tag
        (atomic per partition), with the guard checked in its own slot's call."""
        if not rows:
            return
        staged: dict[str, list[tuple[str, bytes]]] = defaultdict(list)
        for ns, key, value in rows:
            if not isinstance(value, (bytes, bytearray, memoryview)):
                raise TypeError(f"feature values are bytes, got {type(value).__name__}")
            tag = self.keys.feature_tag(check_namespace(ns), key) if self.cluster else ""
            staged[tag].append((self._key(ns, key), bytes(value)))
        guard_tag = None
        if guard is not None:
            guard_tag = self.keys.feature_tag(check_namespace(guard[0]), guard[1]) if self.cluster else ""
            if guard_tag not in staged or len(staged) > 1:
                raise ValueError("a guarded put_many writes only rows of the guard's partition")
        for tag, items in staged.items():
            keys = [k for k, _ in items]
            mode, expected = "0", b""
            if tag == guard_tag and guard is not None:
                keys.insert(0, self._key(guard[0], guard[1]))
                mode, expected = ("1", b"") if guard[2] is None else ("2", bytes(guard[2]))
            if not self._mset(keys=keys, args=[mode, expected, *[v for _, v in items]]):
                raise StaleWrite(f"{guard[0]}/{guard[1]} changed since it was read")

    def delete(self, ns: str, key: str) -> bool:
        return bool(self.r.delete(self._key(ns, key)))

    def scan(self, ns: str) -> Iterator[tuple[str, bytes]]:
        check_namespace(ns)
        pattern = _glob_escape("{" + self.prefix) + "*}:f:" + _glob_escape(ns) + ":*"
        batch: list[bytes] = []
        for k in self.r.scan_iter(match=pattern, count=1000):
            m = self._shape.fullmatch(_text(k))
            if m is None or m.group(1) != ns:
                continue
            batch.append(k)
            if len(batch) >= 500:
                yield from self._fetch(batch)
                batch = []
        if batch:
            yield from self._fetch(batch)

    def erase(self, rows: Sequence[tuple[str, str]]) -> int:
        if not rows:
            return 0
        return int(self.r.delete(*[self._key(ns, key) for ns, key in rows]))

    def _fetch(self, keys: list[bytes]) -> Iterator[tuple[str, bytes]]:
        for k, v in zip(keys, self._mget(keys)):
            if v is not None:
                yield self._shape.fullmatch(_text(k)).group(2), v


class RedisDecisionLog(_RedisStore):
    """Body, user index and time index are written in order (body first) without a
    transaction, so it works on a cluster too: readers drop index entries whose body
    is missing, and a body without index entries expires with its TTL."""

    def __init__(self, client, prefix: str = "relevo:", ttl_s: int = 30 * 86400, partitions: int = 8):
        super().__init__(client, prefix, partitions)
        self.ttl_s = ttl_s

    def append(self, decision: Decision) -> None:
        k = self.keys
        user_key = k.user_decisions(decision.user_id)
        pipe = self.r.pipeline(transaction=False)
        pipe.set(k.decision(decision.decision_id), encode_decision(decision), ex=self.ttl_s)
        pipe.zadd(user_key, {decision.decision_id: decision.created_at})
        pipe.zremrangebyscore(user_key, "-inf", f"({decision.created_at - self.ttl_s!r}")
        pipe.expire(user_key, self.ttl_s)
        pipe.zadd(k.decision_times(), {decision.decision_id: decision.created_at})
        pipe.execute()

    def between(self, start: float, end: float, limit: int = 10_000) -> list[Decision]:
        """Up to ``limit`` live decisions: ids whose bodies expired (TTL) are dropped from
        the time index as they are met and the range is read again, so a short answer
        always means the range is exhausted."""
        time_key = self.keys.decision_times()
        while True:
            ids = self.r.zrangebyscore(time_key, start, f"({end!r}", start=0, num=limit)
            if not ids:
                return []
            raws = self._mget([self.keys.decision(_text(i)) for i in ids])
            gone = [i for i, raw in zip(ids, raws) if raw is None]
            if not gone:
                return [decode_decision(r) for r in raws]
            self.r.zrem(time_key, *gone)

    def get(self, decision_id: str) -> Decision | None:
        raw = self.r.get(self.keys.decision(decision_id))
        return decode_decision(raw) if raw is not None else None

    def for_user(self, user_id: str, limit: int = 100) -> list[Decision]:
        ids = self.r.zrevrange(self.keys.user_decisions(user_id), 0, limit - 1)
        raws = self._mget([self.keys.decision(_text(i)) for i in ids])
        return [decode_decision(r) for r in raws if r is not None]

    def expire(self, before: float) -> int:
        """Bodies also carry a TTL (``ttl_s``); this removes them by creation time and
        trims the time index. User lists drop expired ids as they are read."""
        time_key = self.keys.decision_times()
        ids = self.r.zrangebyscore(time_key, "-inf", f"({before!r}")
        if not ids:
            return 0
        removed = int(self.r.delete(*[self.keys.decision(_text(i)) for i in ids]))
        self.r.zrem(time_key, *ids)
        return removed

    def erase_user(self, user_id: str) -> int:
        user_key = self.keys.user_decisions(user_id)
        ids = self.r.zrange(user_key, 0, -1)
        removed = int(self.r.delete(*[self.keys.decision(_text(i)) for i in ids])) if ids else 0
        if ids:
            self.r.zrem(self.keys.decision_times(), *ids)
        self.r.delete(user_key)
        return removed


class RedisModelStore(_RedisStore):
    _PUT = """
    local v = redis.call('HINCRBY', KEYS[1], 'version', 1)
    redis.call('HSET', KEYS[1], 'blob', ARGV[1])
    return v
    """

    def __init__(self, client, prefix: str = "relevo:", partitions: int = 8):
        super().__init__(client, prefix, partitions)
        self._put = self.r.register_script(self._PUT)

    def put(self, name: str, blob: bytes) -> int:
        return int(self._put(keys=[self.keys.model(name)], args=[blob]))

    def latest(self, name: str) -> tuple[int, bytes] | None:
        version, blob = self.r.hmget(self.keys.model(name), ["version", "blob"])
        if version is None or blob is None:
            return None
        return int(version), blob
