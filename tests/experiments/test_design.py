"""Experiment design records: round trips, defaults, and table-driven invalid designs."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relevo.experiments import Experiment, Guardrail, Variant


def body(**overrides):
    d = {
        "id": "home-feed.v2",
        "variants": [
            {"name": "control"},
            {"name": "beta_ts", "weight": 2, "config": {"policy": "beta_ts", "exploration": 0.1}},
        ],
        "allocation": "thompson",
        "metric": "click",
        "guardrails": [{"metric": "latency_ms", "direction": "max", "threshold": 150}],
        "salt": "s1",
        "min_samples_per_variant": 200,
        "status": "running",
        "created_at": 1_700_000_000.0,
    }
    d.update(overrides)
    return {k: v for k, v in d.items() if v is not None}


def test_round_trip_is_exact_and_json_able():
    exp = Experiment.from_dict(body())
    assert exp.names == ("control", "beta_ts") and exp.control.name == "control"
    assert exp.variants[1].config == {"policy": "beta_ts", "exploration": 0.1}
    assert exp.guardrails == (Guardrail("latency_ms", "max", 150.0),)
    d = exp.to_dict()
    assert Experiment.from_dict(json.loads(json.dumps(d))) == exp
    assert d == body(variants=[
        {"name": "control", "weight": 1.0, "config": {}},
        {"name": "beta_ts", "weight": 2.0, "config": {"policy": "beta_ts", "exploration": 0.1}},
    ], guardrails=[{"metric": "latency_ms", "direction": "max", "threshold": 150.0}])
    np.testing.assert_allclose(exp.weights(), [1 / 3, 2 / 3])
    assert exp.adaptive and exp.index("beta_ts") == 1 and exp.stopped().status == "stopped"
    with pytest.raises(KeyError):
        exp.index("nope")


def test_defaults_fill_salt_and_time():
    minimal = {"id": "e1", "variants": [{"name": "a"}, {"name": "b"}]}
    a = Experiment.from_dict(minimal, now=123.0)
    b = Experiment.from_dict(minimal, now=123.0)
    assert a.allocation == "fixed" and a.metric == "reward" and a.status == "running"
    assert a.min_samples_per_variant == 100 and a.created_at == 123.0 and a.guardrails == ()
    assert a.salt != b.salt and len(a.salt) == 16  # fresh buckets for a re-created experiment


def test_config_is_copied_not_aliased():
    cfg = {"policy": "beta_ts", "nested": {"x": [1, 2]}}
    v = Variant("a", config=cfg)
    cfg["nested"]["x"].append(3)
    assert v.config == {"policy": "beta_ts", "nested": {"x": [1, 2]}}
    d = v.to_dict()
    d["config"]["policy"] = "changed"
    assert v.config["policy"] == "beta_ts"


def test_guardrail_direction_semantics():
    assert Guardrail("latency_ms", "max", 100).violated_by(101)
    assert not Guardrail("latency_ms", "max", 100).violated_by(100)
    assert Guardrail("revenue", "min", 1.0).violated_by(0.9)
    assert not Guardrail("revenue", "min", 1.0).violated_by(1.0)


V2 = [{"name": "a"}, {"name": "b"}]

INVALID = [
    ("not a dict", [], r"^experiment: must be an object"),
    ("missing id", body(id=None), r"^id: field required"),
    ("missing variants", body(variants=None), r"^variants: field required"),
    ("unknown field", body(owner="me"), r"^owner: unknown field"),
    ("bad id chars", body(id="has space"), r"^id: must match"),
    ("empty id", body(id=""), r"^id: must match"),
    ("long id", body(id="x" * 65), r"^id: must match"),
    ("id not a string", body(id=5), r"^id: must match"),
    ("variants not a list", body(variants={"name": "a"}), r"^variants: must be a list"),
    ("one variant", body(variants=[{"name": "a"}]), r"^variants: need 2 to 20 variants, got 1"),
    ("21 variants", body(variants=[{"name": f"v{i}"} for i in range(21)]), r"^variants: need 2 to 20 .* got 21"),
    ("duplicate names", body(variants=[{"name": "a"}, {"name": "a"}]), r"^variants\[1\]\.name: duplicate"),
    ("bad variant name", body(variants=[{"name": "a"}, {"name": "b/c"}]), r"^variants\[1\]\.name: must match"),
    ("variant not object", body(variants=[{"name": "a"}, "b"]), r"^variants\[1\]: must be an object"),
    ("variant missing name", body(variants=[{"name": "a"}, {"weight": 1}]), r"^variants\[1\]\.name: field required"),
    ("variant unknown key", body(variants=[{"name": "a", "share": 1}, {"name": "b"}]), r"^variants\[0\]\.share: unknown"),
    ("zero weight", body(variants=[{"name": "a", "weight": 0}, {"name": "b"}]), r"^variants\[0\]\.weight: .*> 0"),
    ("negative weight", body(variants=[{"name": "a"}, {"name": "b", "weight": -1}]), r"^variants\[1\]\.weight: .*> 0"),
    ("nan weight", body(variants=[{"name": "a", "weight": float("nan")}, {"name": "b"}]), r"^variants\[0\]\.weight: must be finite"),
    ("inf weight", body(variants=[{"name": "a", "weight": float("inf")}, {"name": "b"}]), r"^variants\[0\]\.weight: must be finite"),
    ("bool weight", body(variants=[{"name": "a", "weight": True}, {"name": "b"}]), r"^variants\[0\]\.weight: must be a number"),
    ("string weight", body(variants=[{"name": "a", "weight": "2"}, {"name": "b"}]), r"^variants\[0\]\.weight: must be a number"),
    ("config not object", body(variants=[{"name": "a", "config": [1]}, {"name": "b"}]), r"^variants\[0\]\.config: must be an object"),
    ("config not json", body(variants=[{"name": "a", "config": {"x": {1, 2}}}, {"name": "b"}]), r"^variants\[0\]\.config: must be JSON"),
    ("config nan", body(variants=[{"name": "a", "config": {"x": float("nan")}}, {"name": "b"}]), r"^variants\[0\]\.config: must be JSON"),
    ("config too big", body(variants=[{"name": "a", "config": {"x": "y" * 5000}}, {"name": "b"}]), r"^variants\[0\]\.config: is \d+ bytes"),
    ("config many keys", body(variants=[{"name": "a", "config": {str(i): i for i in range(33)}}, {"name": "b"}]), r"^variants\[0\]\.config: has 33 keys"),
    ("unknown allocation", body(allocation="epsilon"), r"^allocation: unknown 'epsilon'; expected one of fixed, thompson, top_two"),
    ("bad metric", body(metric="click rate"), r"^metric: must match"),
    ("guardrails not list", body(guardrails={"metric": "x"}), r"^guardrails: must be a list"),
    ("guardrail direction", body(guardrails=[{"metric": "x", "direction": "up", "threshold": 1}]), r"^guardrails\[0\]\.direction: unknown 'up'"),
    ("guardrail threshold nan", body(guardrails=[{"metric": "x", "direction": "max", "threshold": float("nan")}]), r"^guardrails\[0\]\.threshold: must be finite"),
    ("guardrail missing threshold", body(guardrails=[{"metric": "x", "direction": "max"}]), r"^guardrails\[0\]\.threshold: field required"),
    ("guardrail bad metric", body(guardrails=[{"metric": "", "direction": "max", "threshold": 1}]), r"^guardrails\[0\]\.metric: must match"),
    ("guardrail not object", body(guardrails=[3]), r"^guardrails\[0\]: must be an object"),
    ("duplicate guardrail", body(guardrails=[{"metric": "x", "direction": "max", "threshold": 1}] * 2), r"^guardrails\[1\]: duplicate"),
    ("too many guardrails", body(guardrails=[{"metric": f"m{i}", "direction": "max", "threshold": 1} for i in range(17)]), r"^guardrails: at most 16"),
    ("empty salt", body(salt=""), r"^salt: must be a string of 1 to 128"),
    ("salt not string", body(salt=7), r"^salt: must be a string"),
    ("negative min samples", body(min_samples_per_variant=-1), r"^min_samples_per_variant: must be an integer"),
    ("float min samples", body(min_samples_per_variant=10.5), r"^min_samples_per_variant: must be an integer"),
    ("bool min samples", body(min_samples_per_variant=True), r"^min_samples_per_variant: must be an integer"),
    ("unknown status", body(status="paused"), r"^status: unknown 'paused'; expected one of running, stopped"),
    ("negative created_at", body(created_at=-5), r"^created_at: must be epoch seconds >= 0"),
    ("created_at string", body(created_at="yesterday"), r"^created_at: must be a number"),
]


@pytest.mark.parametrize("payload, pattern", [(p, m) for _, p, m in INVALID], ids=[c for c, _, _ in INVALID])
def test_invalid_designs_name_the_field(payload, pattern):
    with pytest.raises(ValueError, match=pattern):
        Experiment.from_dict(payload)


@pytest.mark.parametrize(
    "make, pattern",
    [
        (lambda: Variant("a", weight=0), r"^weight: "),
        (lambda: Variant("", weight=1), r"^name: must match"),
        (lambda: Guardrail("x", "sideways", 1.0), r"^direction: unknown"),
        (lambda: Experiment(id="e", variants=(Variant("a"), "b"), salt="s", created_at=0.0), r"^variants\[1\]: must be a Variant"),
        (lambda: Experiment(id="e", variants=(Variant("a"),), salt="s", created_at=0.0), r"^variants: need 2"),
        (lambda: Experiment(id="e", variants=(Variant("a"), Variant("b")), salt="s", created_at=0.0, guardrails=("g",)), r"^guardrails\[0\]: must be a Guardrail"),
    ],
)
def test_direct_construction_validates_too(make, pattern):
    with pytest.raises(ValueError, match=pattern):
        make()


names = st.from_regex(re.compile(r"[A-Za-z0-9_.-]{1,64}"), fullmatch=True)


@settings(max_examples=60, deadline=None)
@given(
    exp_id=names,
    variant_names=st.lists(names, min_size=2, max_size=20, unique=True),
    weights=st.lists(st.floats(min_value=1e-6, max_value=1e6), min_size=20, max_size=20),
    allocation=st.sampled_from(["fixed", "thompson", "top_two"]),
    salt=st.text(min_size=1, max_size=128),
)
def test_any_valid_design_round_trips(exp_id, variant_names, weights, allocation, salt):
    exp = Experiment(
        id=exp_id,
        variants=tuple(Variant(n, w) for n, w in zip(variant_names, weights)),
        allocation=allocation,
        salt=salt,
        created_at=1.5,
    )
    assert Experiment.from_dict(json.loads(json.dumps(exp.to_dict()))) == exp
    assert abs(exp.weights().sum() - 1.0) < 1e-12
