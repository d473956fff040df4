"""ModelStore conformance: versions increase, latest wins, durable."""

from __future__ import annotations

from tests.storage.conftest import opened


def test_versions_increase(model_store):
    ms = model_store.store
    assert ms.latest("m") is None
    assert ms.put("m", b"one") == 1
    assert ms.put("m", b"two") == 2
    assert ms.latest("m") == (2, b"two")
    assert ms.put("other", b"x") == 1


def test_durable(durable_url):
    for holder in opened("model_store", durable_url):
        holder.store.put("m", b"\x00snapshot")
        assert holder.reopen().latest("m") == (1, b"\x00snapshot")
