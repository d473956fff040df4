"""The Redis event log's scale-out behaviour, on one Redis and on the 3-master test cluster:
partitions keyed by user, partition leases shared among consumers, recovery of a dead
consumer's pending entries, dead letters, back-pressure, retention, the item feed."""

from __future__ import annotations

import time

import pytest
import redis

from relevo.errors import ConfigError, Overloaded
from relevo.records import Event
from relevo.storage.registry import open_store


@pytest.fixture(params=["redis", "redis-cluster"])
def base_url(request, redis_prefix):
    if request.param == "redis":
        return f"{request.getfixturevalue('redis_server')}?prefix={redis_prefix}"
    return f"{request.getfixturevalue('redis_cluster').url}?prefix={redis_prefix}"


def log_at(url: str, **options):
    query = "".join(f"&{k}={v}" for k, v in options.items())
    return open_store("event_log", url + query)


def events(n: int, users: int = 20, start: int = 0) -> list[Event]:
    return [Event(id=f"e{i}", user_id=f"u{i % users}", item_id=f"i{i % 7}", type="click") for i in range(start, start + n)]


def drain(log, consumer="c1", group="g", rounds=200):
    out = []
    empty = 0
    for _ in range(rounds):
        batch = log.read(group, consumer, count=50, block_ms=5)
        if not batch:
            empty += 1
            if empty >= 3:
                break
            continue
        empty = 0
        assert len({e.partition for e in batch}) == 1  # a read returns one partition's entries
        out.extend(batch)
        log.ack(group, batch)
    return out


def test_partitions_keep_each_users_order_and_spread_users(base_url):
    log = log_at(base_url, partitions=4)
    log.append(events(200))
    got = drain(log)
    assert sorted(e.event.id for e in got) == sorted(f"e{i}" for i in range(200))
    assert len({e.partition for e in got}) == 4
    for user in {e.event.user_id for e in got}:
        mine = [int(e.event.id[1:]) for e in got if e.event.user_id == user]
        assert mine == sorted(mine)
        assert len({e.partition for e in got if e.event.user_id == user}) == 1
    assert log.lag("g") == 0 and log.count() == 200
    log.close()


def test_a_different_partition_count_is_refused(base_url):
    log_at(base_url, partitions=4).close()
    with pytest.raises(ConfigError, match="have 4 partitions"):
        log_at(base_url, partitions=8)


def test_two_consumers_split_the_partitions_and_read_everything_once(base_url):
    a, b = log_at(base_url, partitions=8, lease_ms=600), log_at(base_url, partitions=8, lease_ms=600)
    a.append(events(400, users=50))
    a.read("g", "A", count=1)  # A joins first and takes every partition
    a.reset_delivery("g")
    time.sleep(0.25)
    b.read("g", "B", count=1)  # B joins: live = 2, but A still holds all 8 leases
    b.reset_delivery("g")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not (a.owned("g") and b.owned("g")):
        for log, name in ((a, "A"), (b, "B")):
            log._balanced_at.clear()
            log.read("g", name, count=1)
            log.reset_delivery("g")
        time.sleep(0.05)
    assert len(a.owned("g")) == 4 and len(b.owned("g")) == 4
    assert set(a.owned("g")).isdisjoint(b.owned("g"))
    seen = [e.event.id for e in drain(a, "A")] + [e.event.id for e in drain(b, "B")]
    assert sorted(seen) == sorted(f"e{i}" for i in range(400))  # each exactly once
    a.close(), b.close()


def test_a_dead_consumers_pending_entries_go_to_the_next_owner_in_order(base_url):
    dead = log_at(base_url, partitions=2, lease_ms=400)
    dead.append(events(60, users=6))
    taken = []
    for _ in range(4):  # read (not ack) a few batches, then vanish without releasing
        taken += dead.read("g", "dead", count=10)
    assert taken
    dead._closing.set()  # its lease keepalive stops, as when the process is killed
    survivor = log_at(base_url, partitions=2, lease_ms=400)
    assert survivor.read("g", "alive", count=10) == []  # the leases are still held
    time.sleep(0.5)  # they expire: no heartbeat
    survivor._balanced_at.clear()
    got = drain(survivor, "alive")
    assert sorted(e.event.id for e in got) == sorted(f"e{i}" for i in range(60))
    for user in {e.event.user_id for e in got}:  # claimed entries come first, still in order
        mine = [int(e.event.id[1:]) for e in got if e.event.user_id == user]
        assert mine == sorted(mine)
    assert survivor.lag("g") == 0
    dead.close(), survivor.close()


def test_an_undecodable_entry_is_dead_lettered_not_a_crash(base_url, redis_prefix):
    log = log_at(base_url, partitions=1)
    log.append(events(3))
    log.r.xadd(log.keys.stream(0), {"e": b"{not json"})  # another producer's garbage
    log.append(events(2, start=3))
    got = drain(log)
    assert [e.event.id for e in got] == ["e0", "e1", "e2", "e3", "e4"]
    (dead,) = log.dead_letters()
    assert dead.reason.startswith("undecodable entry") and dead.body == b"{not json"
    assert log.lag("g") == 0
    log.close()


def test_back_pressure_refuses_appends_and_writes_nothing(base_url):
    log = log_at(base_url, partitions=2, max_backlog=10)
    log.read("g", "c1", count=1)  # the group exists and falls behind
    log.reset_delivery("g")
    log.append(events(11))
    log._backlog_at = 0.0
    with pytest.raises(Overloaded, match="ahead of the stream workers") as info:
        log.append(events(5, start=100))
    assert info.value.status == 429 and info.value.retry_after > 0
    assert log.count() == 11
    drain(log)
    log._backlog_at = 0.0
    assert log.append(events(5, start=100)).accepted == 5  # caught up: accepted again
    log.close()


def test_trim_removes_only_what_every_group_has_acked(base_url):
    log = log_at(base_url, partitions=1, retention_s=0)
    log.append(events(10))
    first = log.read("g", "c1", count=6)
    log.ack("g", first[:4])  # e4, e5 delivered but pending
    other = log.read("h", "c1", count=10)
    log.ack("h", other)
    assert log.trim(now=time.time() + 1) == 4
    log.reset_delivery("g")
    assert [e.event.id for e in drain(log)] == [f"e{i}" for i in range(4, 10)]
    assert log.trim(now=time.time() + 1) >= 5
    log.close()


def test_dedup_ids_expire_after_the_window(base_url):
    log = log_at(base_url, partitions=2, dedup_ttl_s=1)
    assert log.append(events(3)).accepted == 3
    assert log.append(events(3)).duplicates == 3
    ttl = log.r.ttl(log.keys.event_id(log.partition("u0"), "e0"))
    assert 0 < ttl <= 1
    log.close()


def test_outage_on_append_is_unavailable_not_a_crash(redis_prefix):
    from relevo.errors import Unavailable

    from tests.redis_procs import free_ports

    port = free_ports(1)[0]
    with pytest.raises(Unavailable):
        open_store("event_log", f"redis://127.0.0.1:{port}/0?prefix={redis_prefix}&socket_timeout=0.5")


def test_item_feed_delivers_records_after_a_position(base_url):
    log = log_at(base_url, partitions=2)
    head = log.feed_head()
    log.feed_publish(b'{"op":"upsert","ids":["a"]}')
    log.feed_publish(b'{"op":"delete","ids":["b"]}')
    last, records, gap = log.feed_read(head)
    assert records == [b'{"op":"upsert","ids":["a"]}', b'{"op":"delete","ids":["b"]}'] and not gap
    assert log.feed_read(last) == (last, [], False)
    log.close()


def test_cluster_keys_of_one_script_share_a_slot(redis_cluster, redis_prefix):
    """Every key one append script touches hashes to the partition's slot."""
    from redis.crc import key_slot

    log = open_store("event_log", f"{redis_cluster.url}?prefix={redis_prefix}&partitions=4")
    k = log.partition("alice")
    slots = {key_slot(key.encode()) for key in
             (log.keys.stream(k), log.keys.event_id(k, "x"), log.keys.user_events(k, "alice"), log.keys.dead(k))}
    assert len(slots) == 1
    fs = open_store("feature_store", f"{redis_cluster.url}?prefix={redis_prefix}&partitions=4")
    assert key_slot(fs._key("users", "alice").encode()) in slots
    assert key_slot(fs._key(f"item_stats_p{k}", "m1").encode()) in slots
    assert len({key_slot(fs._key(ns, key).encode()) for ns, key in
                (("models", "linear_ts"), ("models", "linear_ts.token"), ("rewards", "d\x1fi"))}) == 1
    log.close(), fs.close()
    with pytest.raises(redis.RedisError):  # and a cross-slot multi-key command is refused there
        redis.Redis(port=redis_cluster.master_ports()[0]).mset({"{a}x": 1, "{b}y": 2})


def test_back_pressure_still_counts_after_an_erasure(base_url):
    """After an XDEL Redis's exact lag is unknown; back-pressure must not go blind."""
    log = log_at(base_url, partitions=1, max_backlog=50)
    log.read("g", "c1", count=1)
    log.reset_delivery("g")
    log.append(events(10, users=2))
    assert log.erase_user("u0") == 5
    log.append(events(100, users=20, start=10))
    log._backlog_at = 0.0
    with pytest.raises(Overloaded):
        log.append(events(1, start=1000))
    log.close()


def test_the_feature_store_refuses_another_partition_count(base_url):
    log_at(base_url, partitions=4).close()
    with pytest.raises(ConfigError, match="have 4 partitions"):
        open_store("feature_store", base_url + "&partitions=8")
