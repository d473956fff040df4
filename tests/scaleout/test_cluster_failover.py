"""Stop one master of a 3-master / 3-replica Redis Cluster under a running engine: after
the replica takes over, ingest and recommendations continue, and every acknowledged event
(acknowledged once a replica has it: ``min_replicas=1``) is in the log and applied once."""

from __future__ import annotations

import time
from collections import Counter

import pytest
from fastapi.testclient import TestClient

from relevo.api.app import create_app
from relevo.context.state import UserState
from tests.api.conftest import AUTH
from tests.redis_procs import RedisClusterProcs
from tests.scaleout.procs import engine_with_ratings, events_body

pytestmark = pytest.mark.slow


def test_cluster_master_failover_loses_nothing_acknowledged(tmp_path, encoder, movielens_items, movielens_vectors,
                                                            movielens_dir):
    cluster = RedisClusterProcs(tmp_path / "cluster", masters=3, replicas=1).start()
    url = f"{cluster.url}?prefix=fo:&partitions=6&lease_ms=2000&min_replicas=1&socket_timeout=1"
    engine, ratings = engine_with_ratings(url, tmp_path / "home", encoder, movielens_items, movielens_vectors,
                                          movielens_dir, 3000)
    try:
        batches = [ratings[i : i + 100] for i in range(0, len(ratings), 100)]
        acked, statuses = [], Counter()
        users = sorted({e.user_id for e in ratings})[:5]
        with TestClient(create_app(engine), headers=AUTH) as client:
            for batch in batches[:5]:
                assert client.post("/v1/events", json=events_body(batch)).status_code == 202
                acked += batch
            victim = cluster.master_ports()[1]
            cluster.stop_node(victim)  # kill -9 a master
            started = time.monotonic()
            for batch in batches[5:]:
                while True:  # a client retrying what is refused, as Retry-After says
                    r = client.post("/v1/events", json=events_body(batch))
                    statuses[r.status_code] += 1
                    assert r.status_code in (202, 503), r.text
                    if r.status_code == 202:
                        acked += batch
                        break
                    assert int(r.headers["Retry-After"]) >= 1
                    assert time.monotonic() - started < 60, "the cluster did not fail over"
                    time.sleep(0.2)
                for user in users[:2]:
                    r = client.post("/v1/recommendations", json={"user_id": user, "n": 5})
                    statuses[f"rec {r.status_code}"] += 1
                    assert r.status_code in (200, 503), r.text
            assert victim not in cluster.master_ports()  # its replica is the master now
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and not engine.wait_idle(1):
                pass
            assert engine.wait_idle(1), f"lag {engine.events.lag('relevo-stream')}"
            for user in users:
                assert client.post("/v1/recommendations", json={"user_id": user, "n": 5}).status_code == 200
        assert statuses[202] == len(batches) - 5  # every batch after the kill got in, some after retries
        assert engine.events.count() == len(acked)
        per_user = Counter(e.user_id for e in acked)
        states = engine.features.get_many("users", list(per_user))
        for (u, n), raw in zip(per_user.items(), states):
            assert sum(UserState.decode(raw).counters.values()) == n, u
    finally:
        engine.close()
        cluster.stop()
