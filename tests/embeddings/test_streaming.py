"""Event weights and the decayed vector update."""

from __future__ import annotations

import numpy as np
import pytest

from relevo.embeddings.streaming import decayed_add, event_weight, unit
from relevo.records import Event


def e(kind, value=None):
    return Event(user_id="u", item_id="i", type=kind, value=value)


def test_weights_order_engagement():
    w = {k: event_weight(e(k)) for k in ("view", "click", "add_to_cart", "purchase")}
    assert w["purchase"] > w["add_to_cart"] > w["click"] > w["view"] > 0
    assert event_weight(e("skip")) < 0 and event_weight(e("impression")) == 0
    assert event_weight(e("rating", 5)) > 0 > event_weight(e("rating", 1))
    assert event_weight(e("dwell", 600)) == 2.0 and event_weight(e("dwell", 3)) == pytest.approx(0.1)


def test_decayed_add_and_unit():
    v = np.array([1.0, 0.0], dtype=np.float32)
    u = decayed_add(None, v, 2.0, 0.5)
    np.testing.assert_allclose(u, [2.0, 0.0])
    u = decayed_add(u, np.array([0.0, 1.0], dtype=np.float32), 1.0, 0.5)
    np.testing.assert_allclose(u, [1.0, 1.0])
    np.testing.assert_allclose(unit(u), [2 ** -0.5, 2 ** -0.5], rtol=1e-6)
    assert unit(np.zeros(2)) is None and unit(None) is None
