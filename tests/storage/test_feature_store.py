"""FeatureStore conformance: read-your-writes, atomic put_many, awkward keys."""

from __future__ import annotations

import pytest

from tests.storage.conftest import opened
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


def test_read_your_writes(feature_store):
    fs = feature_store.store
    assert fs.get("users", "u1") is None
    fs.put("users", "u1", b"one")
    assert fs.get("users", "u1") == b"one"
    fs.put("users", "u1", b"two")
    assert fs.get("users", "u1") == b"two"


def test_namespaces_are_separate(feature_store):
    fs = feature_store.store
    fs.put("a", "k", b"1")
    fs.put("b", "k", b"2")
    assert (fs.get("a", "k"), fs.get("b", "k")) == (b"1", b"2")
    assert dict(fs.scan("a")) == {"k": b"1"}


def test_get_many_keeps_order_and_marks_missing(feature_store):
    fs = feature_store.store
    fs.put_many([("n", "x", b"X"), ("n", "y", b"Y")])
    assert fs.get_many("n", ["y", "missing", "x"]) == [b"Y", None, b"X"]
    assert fs.get_many("n", []) == []


def test_put_many_is_all_or_nothing(feature_store):
    fs = feature_store.store
    with pytest.raises(Exception):
        fs.put_many([("n", "ok", b"1"), ("n", "bad", object())])
    assert fs.get("n", "ok") is None


def test_delete_and_scan(feature_store):
    fs = feature_store.store
    fs.put_many([("n", f"k{i}", str(i).encode()) for i in range(600)])
    assert fs.delete("n", "k3") is True
    assert fs.delete("n", "k3") is False
    found = dict(fs.scan("n"))
    assert len(found) == 599 and found["k10"] == b"10"


def test_erase_removes_rows_and_counts_them(feature_store):
    fs = feature_store.store
    fs.put_many([("n", "a", b"1"), ("n", "b", b"2"), ("m", "a", b"3")])
    assert fs.erase([("n", "a"), ("n", "missing"), ("m", "a")]) == 2
    assert fs.get("n", "a") is None and fs.get("m", "a") is None and fs.get("n", "b") == b"2"
    assert fs.erase([]) == 0


def test_keys_with_glob_and_separator_characters(feature_store):
    fs = feature_store.store
    keys = ["a:b", "star*", "q?", "[x]", "back\\slash", "ü-ñ", "a"]
    fs.put_many([("weird", k, k.encode()) for k in keys])
    fs.put("weird2", "a", b"other namespace")
    assert dict(fs.scan("weird")) == {k: k.encode() for k in keys}


@pytest.mark.parametrize("ns", ["a:b", "", "sp ace", "x*"])
def test_namespaces_must_be_identifiers(feature_store, ns):
    with pytest.raises(ValueError, match="namespace"):
        feature_store.store.put(ns, "k", b"v")


def test_values_survive_reopen(durable_url):
    for holder in opened("feature_store", durable_url):
        holder.store.put("n", "k", b"\x00\xffbinary")
        assert holder.reopen().get("n", "k") == b"\x00\xffbinary"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.text(min_size=1, max_size=40).filter(lambda s: "\x00" not in s), value=st.binary(max_size=64))
def test_any_key_round_trips(feature_store, key, value):
    fs = feature_store.store
    fs.put("prop", key, value)
    assert fs.get("prop", key) == value
    assert fs.get_many("prop", [key]) == [value]


def test_guarded_put_many_writes_only_while_the_guard_is_unchanged(feature_store):
    from relevo.errors import StaleWrite

    fs = feature_store.store
    fs.put_many([("models", "m", b"v1"), ("models", "m.token", b"t1")], guard=("models", "m.token", None))
    with pytest.raises(StaleWrite):  # expected absent, but present
        fs.put_many([("models", "m", b"lost"), ("rewards", "r1", b"1")], guard=("models", "m.token", None))
    with pytest.raises(StaleWrite):  # expected another value
        fs.put_many([("models", "m", b"lost"), ("rewards", "r1", b"1")], guard=("models", "m.token", b"t0"))
    assert fs.get("models", "m") == b"v1" and fs.get("rewards", "r1") is None  # nothing half-written
    fs.put_many([("models", "m", b"v2"), ("models", "m.token", b"t2"), ("rewards", "r1", b"1")],
                guard=("models", "m.token", b"t1"))
    assert (fs.get("models", "m"), fs.get("rewards", "r1")) == (b"v2", b"1")
