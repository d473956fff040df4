"""Behavioural affect on scripted sessions with known states, and on a MovieLens replay."""

from __future__ import annotations

import numpy as np

from relevo.emotion.behaviour import SessionAffect, abandoned, fatigue_of, update
from relevo.records import Event


def session(script, start=1_700_000_000.0):
    """script: (seconds after start, type, value) -> the final SessionAffect."""
    state = SessionAffect()
    for i, (t, kind, value) in enumerate(script):
        update(state, Event(id=f"s{i}", user_id="u", item_id=f"i{i}", type=kind, value=value, timestamp=start + t))
    return state


def test_rapid_skips_are_frustration():
    s = session([(i * 2.0, "skip", None) for i in range(6)])
    assert s.frustration >= 0.9 and s.engagement == 0.0
    assert abandoned(s)


def test_long_dwell_clicks_and_purchase_are_engagement():
    s = session([(0, "click", None), (20, "dwell", 120.0), (150, "add_to_cart", None), (160, "purchase", None),
                 (170, "share", None)])
    assert s.engagement >= 0.8 and s.frustration == 0.0
    assert not abandoned(s)


def test_short_dwells_and_refreshes_raise_frustration_slowly():
    s = session([(i * 10.0, "dwell", 2.0) for i in range(4)])
    assert 0.2 <= s.frustration < 0.5
    refreshes = session([(i * 1.0, "impression", None) for i in range(40)])
    assert refreshes.frustration > 0.5


def test_frustration_decays_with_time_and_engagement_relieves_it():
    s = session([(i * 2.0, "skip", None) for i in range(5)] + [(1800.0, "view", None)])
    assert s.frustration < 0.05  # six half-lives later
    s = session([(i * 2.0, "skip", None) for i in range(5)] + [(12.0, "purchase", None)])
    assert s.frustration <= 0.71 and s.engaged


def test_fatigue_is_declining_dwell():
    assert fatigue_of([60, 50, 40, 30, 20, 10]) > 0.5
    assert fatigue_of([10, 20, 30, 40]) == 0.0
    assert fatigue_of([30, 31]) == 0.0
    s = session([(i * 100.0, "dwell", d) for i, d in enumerate([90, 70, 50, 30, 15, 8])])
    assert s.fatigue > 0.5


def test_negative_review_text_adds_frustration():
    state = SessionAffect()
    update(state, Event(user_id="u", item_id="i", type="review", text="awful", timestamp=1.0e9), text_valence=-0.9)
    assert state.frustration > 0 and state.valence < 0


def test_movielens_replay_is_sane(movielens_dir):
    """Over real rating sessions, low ratings frustrate more than high ones on average."""
    from relevo.datasets.movielens import iter_ratings

    by_user: dict[str, list[Event]] = {}
    for e in iter_ratings(movielens_dir):
        by_user.setdefault(e.user_id, []).append(e)
    low, high = [], []
    for events in list(by_user.values())[:200]:
        state = SessionAffect()
        for e in sorted(events, key=lambda e: e.timestamp)[:50]:
            update(state, e)
        mean = np.mean([e.value for e in events[:50]])
        (low if mean < 3.0 else high).append(state.frustration)
        assert 0.0 <= state.frustration <= 1.0 and 0.0 <= state.engagement <= 1.0
    assert low and high and np.mean(low) > np.mean(high)
