"""Two engines over one Redis, as two processes would be: items added in one are served by
the other (vector index and catalog follow the item-update feed), popularity counted by
the stream worker reaches the API process, and learning done in one process is sampled
from in the other (posteriors refreshed by their guard token)."""

from __future__ import annotations

import numpy as np
import pytest

from relevo.engine import Engine
from relevo.records import Event, Item
from relevo.settings import Settings
from relevo.tiers.streaming import RecommendRequest
from tests.scaleout.procs import wait_for

QUIET = {"ranker": {"enabled": False}, "tiers": {"refresh": False}, "emotion": {"enabled": False}}


@pytest.fixture
def pair(redis_server, redis_prefix, tmp_path, encoder):
    url = f"{redis_server}?prefix={redis_prefix}&partitions=4"
    # one pytest process plays two: each needs its own name (processes differ by host:pid)
    worker = Engine(Settings(home=tmp_path / "worker", storage={"url": url}, stream={"consumer": "worker"}, **QUIET),
                    encoder=encoder).open()
    api = Engine(Settings(home=tmp_path / "api", storage={"url": url}, stream={"consume": False, "consumer": "api"},
                          **QUIET), encoder=encoder).open()
    yield worker, api
    api.close()
    worker.close()


def test_items_popularity_and_learning_reach_the_other_process(pair, encoder):
    worker, api = pair
    items = [Item(id=f"m{i}", title=f"Film number {i}", tags=["Drama" if i % 2 else "Comedy"]) for i in range(20)]
    api.add_items(items[:10])
    wait_for(lambda: len(worker.catalog) == 10 and "m9" in worker.index, 5, "the worker to see the new items")
    assert np.allclose(worker.index.get_many(["m3"])[0], api.index.get_many(["m3"])[0])
    worker.add_items(items[10:])
    wait_for(lambda: len(api.catalog) == 20, 5, "the API process to see the worker's items")
    api.delete_item("m19")
    wait_for(lambda: "m19" not in worker.catalog and "m19" not in worker.index, 5, "the delete to replicate")

    # events through the API process; the worker applies them; popularity comes back
    api.ingest([Event(id=f"e{i}", user_id=f"u{i % 5}", item_id="m7", type="purchase") for i in range(10)])
    assert worker.wait_idle(30)
    eng = lambda e: e.catalog.engagement[e.catalog.row("m7")]  # noqa: E731
    wait_for(lambda: eng(api) > 0, 5, "engagement to reach the API process")
    assert eng(api) == pytest.approx(eng(worker))
    assert api.popular(3)[0]["item_id"] == "m7"

    # feedback taken by the API process is learned into the shared posterior; the worker's
    # copy is refreshed from it
    rec = api.recommend(RecommendRequest(user_id="u1", n=3))
    before = worker.policy.policy.state_dict()["b"]
    assert api.feedback(rec.decision_id, rec.items[0].item_id, 1.0) == "joined"
    wait_for(lambda: worker.policy.policy.state_dict()["b"] != before, 5, "the worker's posterior to refresh")
    assert worker.policy.policy.state_dict() == api.policy.policy.state_dict()
    # and the same reward sent again, to the other process, is a duplicate, not learned twice
    assert worker.feedback(rec.decision_id, rec.items[0].item_id, 1.0) == "duplicate"


def test_concurrent_learning_in_two_processes_merges(pair):
    """Feedback on different decisions, alternating between the processes: every reward is
    in the posterior (guarded writes retry on the other's commit instead of overwriting)."""
    worker, api = pair
    api.add_items([Item(id=f"m{i}", title=f"Film {i}", tags=["Drama"]) for i in range(10)])
    wait_for(lambda: len(worker.catalog) == 10, 5, "items to replicate")
    decisions = [api.recommend(RecommendRequest(user_id=f"v{i}", n=2)) for i in range(12)]
    for i, rec in enumerate(decisions):
        engine = (api, worker)[i % 2]  # the other one's copy is stale every time
        assert engine.feedback(rec.decision_id, rec.items[0].item_id, 1.0) == "joined"
    api.policy.refresh()
    worker.policy.refresh()
    n = api.policy.policy.state_dict()["n_updates"]
    assert n == worker.policy.policy.state_dict()["n_updates"] == 12


def test_an_erasure_in_one_process_stops_a_batch_in_flight_in_another(redis_server, redis_prefix, tmp_path, encoder):
    from relevo.stream.processor import GROUP

    url = f"{redis_server}?prefix={redis_prefix}&partitions=2"
    opts = dict(storage={"url": url}, **QUIET)
    worker = Engine(Settings(home=tmp_path / "w", stream={"consume": False, "consumer": "w"}, **opts), encoder=encoder).open()
    api = Engine(Settings(home=tmp_path / "a", stream={"consume": False, "consumer": "a"}, **opts), encoder=encoder).open()
    try:
        api.add_items([Item(id=f"m{i}", title=f"Film {i}", tags=["Drama"]) for i in range(3)])
        wait_for(lambda: len(worker.catalog) == 3, 5, "items to replicate")
        api.ingest([Event(id=f"x{i}", user_id="zed", item_id=f"m{i}", type="click") for i in range(3)])
        in_flight = []
        while not in_flight:
            in_flight = worker.events.read(GROUP, "w", count=10)
        api.erase_user("zed")  # in the other process, while the worker holds the batch
        worker.processor.process(in_flight)
        assert worker.features.get("users", "zed") is None  # not written back
        assert b"zed" not in b"".join(k for k in worker.events.r.keys(f"*{redis_prefix}*"))
        # events after the erasure are new data
        api.ingest([Event(id="y1", user_id="zed", item_id="m0", type="view")])
        again = []
        while not again:
            again = worker.events.read(GROUP, "w", count=10)
        worker.processor.process(again)
        assert worker.features.get("users", "zed") is not None
    finally:
        api.close()
        worker.close()
