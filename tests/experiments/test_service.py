"""The engine's experiment service: adaptive allocation follows rewards recorded through
the reward joiner's hook, expected shares keep the SRM check honest, state is durable."""

from __future__ import annotations

import numpy as np
import pytest

from relevo.errors import Conflict, NotFound, ValidationError
from relevo.experiments.service import ExperimentService
from relevo.records import Decision, ScoredItem
from relevo.storage.memory import MemoryFeatureStore


def decision(i: int, exp: str, variant: str) -> Decision:
    return Decision(decision_id=f"d{i}", user_id=f"u{i}", policy="linear_ts", policy_version=0, created_at=0.0,
                    items=[ScoredItem("a", 0.0, 0.5, False, [])], features=[[1.0]], experiment=exp, variant=variant)


def test_thompson_allocation_follows_rewards_and_survives_restart():
    store = MemoryFeatureStore()
    svc = ExperimentService(store, refresh_s=0.0, seed=1)
    svc.create({"id": "ctr", "allocation": "thompson", "salt": "x", "min_samples_per_variant": 50,
                "variants": [{"name": "a"}, {"name": "b"}, {"name": "c"}]})
    rate = {"a": 0.05, "b": 0.05, "c": 0.15}
    rng = np.random.default_rng(0)
    for i in range(3000):
        exp, variant, config, p = svc.assign(f"u{i}")
        assert config == {} and 0 < p <= 1
        svc.expose(exp, variant, latency_ms=5.0)
        svc.on_reward(decision(i, exp.id, variant), 0, float(rng.random() < rate[variant]))
    probs = svc.describe("ctr")["allocation_probabilities"]
    assert probs["c"] > 0.8, probs
    res = svc.results("ctr")
    assert res["leader"] == "c"
    assert res["srm"] is not None and not res["srm"]["mismatch"]  # expected share accumulated as it moved
    again = ExperimentService(store, refresh_s=0.0, seed=1)
    assert again.running().id == "ctr" and again.results("ctr") == res


def test_refusals():
    svc = ExperimentService(MemoryFeatureStore())
    with pytest.raises(ValidationError, match="variants"):
        svc.create({"id": "x", "variants": [{"name": "a"}]})
    with pytest.raises(ValidationError, match="candidates"):
        svc.create({"id": "x", "variants": [{"name": "a"}, {"name": "b", "config": {"candidates": 2.5}}]})
    svc.create({"id": "x", "variants": [{"name": "a"}, {"name": "b"}]})
    with pytest.raises(Conflict):
        svc.create({"id": "y", "variants": [{"name": "a"}, {"name": "b"}]})
    with pytest.raises(NotFound):
        svc.results("nope")
    svc.on_reward(decision(1, "nope", "a"), 0, 1.0)  # an unknown experiment is ignored
    assert svc.results("x")["variants"][0]["trials"] == 0
