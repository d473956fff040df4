"""UserState and ItemStats encodings round-trip exactly (they are what the stores hold)."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from relevo.context.consent import Consent, ConsentDefaults
from relevo.context.state import ItemStats, UserState
from relevo.emotion.behaviour import SessionAffect


def test_user_state_round_trip_with_and_without_vectors():
    empty = UserState("u", 4)
    assert UserState.decode(empty.encode()) == empty
    full = UserState("u:1", 4, vector=np.arange(4, dtype=np.float32), session_vector=None,
                     counters={"click": 3}, seen=["a", "b"], applied_through=17, event_time=5.5,
                     affect=SessionAffect(frustration=0.5, dwells=[3.0]), abandoned_sessions=2)
    back = UserState.decode(full.encode())
    np.testing.assert_array_equal(back.vector, full.vector)
    assert back.session_vector is None and back.seen == ["a", "b"] and back.affect == full.affect
    assert back.applied_through == 17 and back.abandoned_sessions == 2


@given(st.floats(allow_nan=False, allow_infinity=False), st.integers(0, 10**6), st.integers(0, 2**62))
def test_item_stats_round_trip(engagement, events, position):
    stats = ItemStats("i", engagement, events, 1.5, position)
    assert ItemStats.decode("i", stats.encode()) == stats


def test_consent_records_choices_and_resolves_defaults():
    nothing = Consent.decode(None)
    assert nothing.emotion is None  # no recorded choice
    defaults = ConsentDefaults()
    assert nothing.resolved(defaults) == {"personalization": True, "profiling": True, "emotion": False, "llm": False}
    strict = ConsentDefaults(personalization=False, profiling=False)
    assert not nothing.allows("personalization", strict)
    chosen = Consent.decode(Consent(emotion=True, personalization=False).encode())
    assert chosen.allows("emotion", defaults) and not chosen.allows("personalization", defaults)
    assert chosen.filled(defaults).profiling is True and chosen.filled(strict).profiling is False
    # records written before the purposes were split (emotion only) still decode
    assert Consent.decode(b'{"emotion": true, "updated_at": 5.0}').emotion is True
