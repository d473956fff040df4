"""The Redis key layout (docs/REDIS_KEYS.md), pinned: a fixed sequence of operations on
every store leaves exactly these keys. A change here is a change of the on-Redis format:
update the spec with it."""

from __future__ import annotations

import redis

from relevo.records import Decision, Event, ScoredItem
from relevo.storage.registry import open_store

EXPECTED = [
    "P:dt",
    "P:d:dec1",
    "P:dz:alice",
    "P:feed:items",
    "P:lease:relevo-stream:0",
    "P:lease:relevo-stream:1",
    "P:lease:relevo-stream:2",
    "P:lease:relevo-stream:3",
    "P:m:ranker",
    "P:members:relevo-stream",
    "P:meta:partitions",
    "{P:learn}:f:models:linear_ts",
    "{P:learn}:f:models:linear_ts.token",
    "{P:learn}:f:rewards:dec1\x1fm1",
    "{P:p0}:dead",
    "{P:p0}:eu:bob",
    "{P:p0}:events",
    "{P:p0}:id:e2",
    "{P:p1}:events",
    "{P:p2}:events",
    "{P:p2}:f:item_stats_p2:m1",
    "{P:p3}:eu:alice",
    "{P:p3}:events",
    "{P:p3}:f:consent:alice",
    "{P:p3}:f:items:m1",
    "{P:p3}:f:users:alice",
    "{P:p3}:id:e1",
]


def test_the_exact_keys_of_a_known_sequence(redis_server, redis_prefix):
    url = f"{redis_server}?prefix={redis_prefix}&partitions=4"
    log, fs, dl, ms = (open_store(kind, url) for kind in ("event_log", "feature_store", "decision_log", "model_store"))
    assert (log.partition("alice"), log.partition("bob")) == (3, 0)
    log.append([Event(id="e1", user_id="alice", item_id="m1", type="click"),
                Event(id="e2", user_id="bob", item_id="m1", type="view")])
    batch = log.read("relevo-stream", "w1", count=10)
    while batch:
        if batch[0].event.user_id == "bob":
            log.dead_letter("relevo-stream", batch, "test")
        else:
            log.ack("relevo-stream", batch)
        batch = log.read("relevo-stream", "w1", count=10)
    log.feed_publish(b'{"op":"upsert","ids":["m1"]}')
    fs.put_many([("users", "alice", b"{}"), ("consent", "alice", b"{}"), ("item_stats_p2", "m1", b"{}"),
                 ("items", "m1", b"x")])
    fs.put_many([("models", "linear_ts", b"{}"), ("models", "linear_ts.token", b"t"), ("rewards", "dec1\x1fm1", b"1.0")],
                guard=("models", "linear_ts.token", None))
    dl.append(Decision("dec1", "alice", "linear_ts", 1, 1_700_000_000.0, [ScoredItem("m1", 0.5, 1.0, False)],
                       [[1.0]]))
    ms.put("ranker", b"blob")
    client = redis.Redis.from_url(redis_server)
    keys = sorted(k.decode().replace(redis_prefix, "P:") for pattern in (redis_prefix + "*", "{" + redis_prefix + "*")
                  for k in client.scan_iter(match=pattern))
    assert keys == sorted(EXPECTED)
    assert client.get(f"{redis_prefix}meta:partitions") == b"4"
    assert client.type(f"{{{redis_prefix}p3}}:events") == b"stream"
    assert client.type(f"{redis_prefix}dz:alice") == b"zset"
    assert client.hkeys(f"{redis_prefix}m:ranker") and 0 < client.ttl(f"{{{redis_prefix}p3}}:id:e1")
    for store in (log, fs, dl, ms):
        store.close()
