"""`relevo edge` as a separate process in front of `relevo serve`: invalidation over Redis
pub/sub, and answers (labelled) while the origin is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import httpx
import pytest

from relevo.api.auth import new_key
from relevo.cli.server import free_port, wait_healthy

SECRET, ENTRY = new_key("edge-test", ["ingest", "recommend", "admin"])
AUTH = {"X-API-Key": SECRET}
TITLES = ["haunted house", "zombie outbreak", "vampire castle", "slasher camp", "ghost ship", "cursed doll",
          "talking toys", "lost fish", "robot friend", "snow queen", "dragon trainer", "space ranger"]


@pytest.fixture
def pair(tmp_path, redis_server):
    """(origin URL, edge URL, origin process); both killed afterwards."""
    channel = f"relevo-test:invalidate:{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "RELEVO_HOME": str(tmp_path), "RELEVO_API__KEYS": f"[{ENTRY.model_dump_json()}]",
           "RELEVO_TIERS__INVALIDATION_URL": redis_server, "RELEVO_TIERS__INVALIDATION_CHANNEL": channel,
           "RELEVO_TIERS__CACHE_TTL_S": "2", "RELEVO_TIERS__MAX_STALE_S": "300", "RELEVO_EDGE_ORIGIN_KEY": SECRET}
    origin_port, edge_port = free_port(), free_port()
    origin = subprocess.Popen([sys.executable, "-m", "relevo.cli.main", "serve", "--port", str(origin_port)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    edge = subprocess.Popen([sys.executable, "-m", "relevo.cli.main", "edge", "--origin",
                             f"http://127.0.0.1:{origin_port}", "--port", str(edge_port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_healthy(f"http://127.0.0.1:{origin_port}", origin, timeout=120)
        wait_healthy(f"http://127.0.0.1:{edge_port}", edge, timeout=60)
        yield f"http://127.0.0.1:{origin_port}", f"http://127.0.0.1:{edge_port}", origin
    finally:
        for proc in (origin, edge):
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def post(url, body):
    return httpx.post(url, json=body, headers=AUTH, timeout=10)


def settle(origin):
    deadline = time.monotonic() + 30
    while httpx.get(f"{origin}/v1/stats", headers=AUTH, timeout=5).json()["consumer_lag"] and \
            time.monotonic() < deadline:
        time.sleep(0.05)


def test_edge_process_invalidates_over_pubsub_and_survives_the_origin(pair):
    origin, edge, origin_proc = pair
    items = [{"id": f"m{k}", "title": f"A {t} story"} for k, t in enumerate(TITLES)]
    assert post(f"{origin}/v1/items", {"items": items}).json() == {"accepted": len(items)}
    for user in ("fan", "other"):
        events = [{"user_id": user, "item_id": f"m{k}", "type": "click"} for k in range(6)]
        assert post(f"{origin}/v1/events", {"events": events}).status_code == 202
    settle(origin)
    time.sleep(1.2)  # the edge refreshes the popular list (every second while it is empty)

    first = post(f"{edge}/v1/recommendations", {"user_id": "fan", "n": 3}).json()
    assert first["tier"] in ("streaming", "origin")
    cached = post(f"{edge}/v1/recommendations", {"user_id": "fan", "n": 3}).json()
    assert cached["tier"] == "edge" and cached["tier_reason"] == "cached"
    assert [i["item_id"] for i in cached["items"]] == [i["item_id"] for i in first["items"]]
    post(f"{edge}/v1/recommendations", {"user_id": "other", "n": 3})

    clicked = first["items"][0]["item_id"]
    assert post(f"{origin}/v1/events", {"events": [{"user_id": "fan", "item_id": clicked, "type": "click"}]}
                ).status_code == 202
    time.sleep(0.05)  # pub/sub delivery to the other process (its lag is benchmarked: benchmarks.tiers)
    after = post(f"{edge}/v1/recommendations", {"user_id": "fan", "n": 3}).json()
    # not the stale list: the edge process asked the origin again (its hits reuse the cached decision id)
    assert after["decision_id"] != cached["decision_id"]
    settle(origin)
    time.sleep(0.05)
    fresh = post(f"{edge}/v1/recommendations", {"user_id": "fan", "n": 3}).json()
    # from the origin, or the edge's copy of an origin answer made after the event was applied
    assert clicked not in [i["item_id"] for i in fresh["items"]]
    again = post(f"{edge}/v1/recommendations", {"user_id": "other", "n": 3}).json()
    assert again["tier"] == "edge" and again["tier_reason"] == "cached"
    metrics = httpx.get(f"{edge}/metrics", headers=AUTH, timeout=5).text
    assert "relevo_invalidation_lag_seconds_count" in metrics
    assert 'relevo_edge_cache_lookups_total{result="hit"}' in metrics

    os.kill(origin_proc.pid, signal.SIGKILL)
    origin_proc.wait()
    answers = [post(f"{edge}/v1/recommendations", {"user_id": u, "n": 3})
               for u in ("other", "fan", "stranger") for _ in range(5)]
    assert all(r.status_code == 200 for r in answers), [r.text for r in answers if r.status_code != 200]
    bodies = [r.json() for r in answers]
    assert all(len(b["items"]) == 3 for b in bodies)
    assert {b["tier"] for b in bodies[:5]} == {"edge"}  # other: still cached and fresh
    assert all(b["tier"] == "popularity" and b["fallback"] == "origin_unavailable" for b in bodies[10:])
    time.sleep(2.2)  # other's entry expires (TTL 2 s) but stays servable as stale while the origin is down
    stale = post(f"{edge}/v1/recommendations", {"user_id": "other", "n": 3}).json()
    assert stale["tier"] == "edge" and stale["stale"] is True and stale["fallback"] == "origin_unavailable"
    filtered = post(f"{edge}/v1/recommendations", {"user_id": "stranger", "n": 3, "filters": {"tags": ["x"]}})
    assert filtered.status_code == 503 and filtered.headers["retry-after"] == "1"  # no catalog here to filter by
