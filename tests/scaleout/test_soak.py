"""A short soak (the benchmark runs 10 minutes): the scale-out deployment held at 70% of its
measured maximum with events streaming in keeps p99 flat, answers every request and does
not grow in memory."""

from __future__ import annotations

import pytest

from benchmarks.soak import soak

pytestmark = pytest.mark.slow


def test_a_short_soak_stays_flat(redis_server):
    figures = soak(seconds=30, windows=6, users=1000, items=2000, events_per_s=300)
    assert figures["errors"] == 0
    assert figures["p99_ratio_late_vs_early"] < 2.0, figures["series"]
    assert figures["rss_api_growth_pct"] < 5.0 and figures["rss_worker_growth_pct"] < 5.0, figures["series"]
    assert max(s["lag"] for s in figures["series"][1:]) < 5000  # the worker keeps up
