"""Kill -9 a `relevo worker` process in the middle of a batch: another worker claims its
partitions and pending entries, and every acknowledged event is applied exactly once in
effect (user counters and vectors, item counters, rewards), checked against a single
process that applied the same events on in-memory stores."""

from __future__ import annotations

import os
import signal
import socket
import time

import numpy as np
import orjson
import pytest

from relevo.bandits.linear_ts import LinearTS
from relevo.context.state import ItemStats, UserState
from relevo.datasets.movielens import iter_ratings
from relevo.engine import Engine
from relevo.records import Event
from relevo.settings import Settings
from relevo.stream.processor import GROUP
from relevo.stream.rewards import REWARDS_NS, marker_key
from relevo.tiers.streaming import RecommendRequest
from tests.scaleout.procs import start_worker, stop, wait_for

pytestmark = pytest.mark.slow
QUIET = {"ranker": {"enabled": False}, "tiers": {"refresh": False}, "emotion": {"enabled": False}}


def _pending_of(client, log, consumer: str) -> int:
    total = 0
    for k in range(log.partitions):
        for row in client.xpending(log.keys.stream(k), GROUP).get("consumers", []):
            if row["name"].decode() == consumer:
                total += int(row["pending"])
    return total


def test_kill_9_of_a_worker_mid_batch_loses_and_doubles_nothing(redis_server, redis_prefix, tmp_path, encoder,
                                                                  movielens_items, movielens_vectors, movielens_dir):
    url = f"{redis_server}?prefix={redis_prefix}&partitions=4&lease_ms=1500"
    api = Engine(Settings(home=tmp_path / "api", storage={"url": url}, stream={"consume": False}, **QUIET),
                 encoder=encoder).open()
    items, vectors = movielens_items[:400], movielens_vectors[:400]
    api.add_items(items, vectors)
    ids = {it.id for it in items}
    ratings = [e for e in iter_ratings(movielens_dir) if e.item_id in ids][:4000]
    # decisions for some of these users, and clicks on what they were shown (rewards)
    clicks = []
    for i, user in enumerate(sorted({e.user_id for e in ratings})[:30]):
        rec = api.recommend(RecommendRequest(user_id=user, n=5))
        for item in rec.items[: 1 + i % 2]:
            clicks.append(Event(id=f"click-{rec.decision_id}-{item.item_id}", user_id=user, item_id=item.item_id,
                                type="click", decision_id=rec.decision_id, timestamp=time.time()))
    events = ratings + clicks

    env = {"RELEVO_STORAGE__URL": url, "RELEVO_STREAM__BATCH_SIZE": "64", "RELEVO_RANKER__ENABLED": "false",
           "RELEVO_TIERS__REFRESH": "false", "RELEVO_EMOTION__ENABLED": "false"}
    # the doomed worker pauses 3 s between writing a batch and acking it: the kill lands there,
    # the worst moment (its effects are stored, the log still says "not done")
    doomed = start_worker(tmp_path / "w1", {**env, "RELEVO_FAILPOINTS": "stream.before_ack=sleep:3000"})
    survivor = start_worker(tmp_path / "w2", env)
    try:
        client, log = api.events.r, api.events
        leases = lambda: {client.get(log.keys.lease(GROUP, k)) for k in range(4)}  # noqa: E731
        wait_for(lambda: None not in leases() and len(leases()) == 2, 120, "both workers own partitions")
        for start in range(0, len(events), 500):
            assert api.ingest(events[start : start + 500]).accepted == len(events[start : start + 500])
        doomed_name = f"{socket.gethostname()}:{doomed.pid}"
        # kill -9 while it holds entries it has read and not acked (a batch in flight)
        wait_for(lambda: _pending_of(client, log, doomed_name) > 0, 60, "the worker to have a batch in flight")
        time.sleep(1.0)  # well inside the pause: the batch is written, not acked
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.wait(10)
        assert _pending_of(client, log, doomed_name) > 0  # it died mid-batch
        wait_for(lambda: log.lag(GROUP) == 0, 120, "the survivor to apply everything, claimed entries included")
        assert _pending_of(client, log, doomed_name) == 0  # claimed
        assert len({client.get(log.keys.lease(GROUP, k)) for k in range(4)}) == 1  # the survivor owns all
    finally:
        stop(survivor)
        if doomed.poll() is None:
            doomed.kill()

    # the reference: one process, in-memory stores, the same events
    ref = Engine(Settings(home=tmp_path / "ref", storage={"url": "memory://"}, **QUIET), encoder=encoder).open()
    ref.add_items(items, vectors)
    assert ref.ingest(events).accepted == len(events)
    assert ref.wait_idle(120)
    users = sorted({e.user_id for e in events})
    got = dict(zip(users, api.features.get_many("users", users)))
    want = dict(zip(users, ref.features.get_many("users", users)))
    for user in users:
        a, b = UserState.decode(got[user]), UserState.decode(want[user])
        assert a.counters == b.counters, user  # every event counted once
        assert a.seen == b.seen and a.recent == b.recent
        assert np.allclose(a.vector, b.vector, atol=1e-5) and np.allclose(a.session_vector, b.session_vector, atol=1e-5)
        assert a.tag_affinity.keys() == b.tag_affinity.keys()
    # item counters: per partition here, one partition there
    totals: dict[str, list[float]] = {}
    for k in range(4):
        for item_id, raw in api.features.scan(f"item_stats_p{k}"):
            s = ItemStats.decode(item_id, raw)
            t = totals.setdefault(item_id, [0.0, 0])
            t[0] += s.engagement
            t[1] += s.events
    reference = {i: ItemStats.decode(i, raw) for i, raw in ref.features.scan("item_stats_p0")}
    assert totals.keys() == reference.keys()
    for item_id, (engagement, count) in totals.items():
        assert count == reference[item_id].events and engagement == pytest.approx(reference[item_id].engagement)
    # rewards: each click learned exactly once into the shared posterior
    pairs = [(e.decision_id, e.item_id) for e in clicks]
    markers = api.features.get_many(REWARDS_NS, [marker_key(d, i) for d, i in pairs])
    assert all(m is not None for m in markers)
    doc = orjson.loads(api.features.get("models", "linear_ts"))
    expected = LinearTS(api.policy.policy.config)
    arms, rows, weights = [], [], []
    for decision_id, item_id in pairs:
        decision = api.decisions.get(decision_id)
        position = [s.item_id for s in decision.items].index(item_id)
        arms.append(item_id)
        rows.append(decision.features[position])
        weights.append(float(expected.positions.weights(np.array([position]))[0]))
    expected.learn(arms, np.asarray(rows), np.ones(len(rows)), np.asarray(weights))
    assert np.allclose(doc["state"]["A"], expected.A) and np.allclose(doc["state"]["b"], expected.b)
    ref.close()
    api.close()
