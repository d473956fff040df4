"""Acknowledged events survive ``kill -9`` of the server; derived state is restored."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx

from relevo.api.auth import new_key
from relevo.cli.server import free_port, wait_healthy

SECRET, ENTRY = new_key("durability", ["ingest", "recommend", "admin"])
AUTH = {"X-API-Key": SECRET}  # `relevo serve` requires a key: given here through RELEVO_API__KEYS


def start_server(home, port):
    env = {**os.environ, "RELEVO_HOME": str(home), "RELEVO_API__KEYS": f"[{ENTRY.model_dump_json()}]"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "relevo.cli.main", "serve", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    wait_healthy(f"http://127.0.0.1:{port}", proc, timeout=120)
    return proc


def test_kill_9_loses_no_acknowledged_event(tmp_path, movielens_items, encoder):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start_server(tmp_path, port)
    try:
        items = [it.model_dump(mode="json", exclude_none=True) for it in movielens_items[:300]]
        added = httpx.post(f"{base}/v1/items", json={"items": items}, timeout=60, headers=AUTH)
        assert added.json() == {"accepted": 300}
        acked = 0
        for b in range(30):
            batch = [
                {"id": f"k{b}-{i}", "user_id": f"u{i % 7}", "item_id": items[(b * 50 + i) % 300]["id"], "type": "click"}
                for i in range(50)
            ]
            r = httpx.post(f"{base}/v1/events", json={"events": batch}, timeout=30, headers=AUTH)
            assert r.status_code == 202
            acked += r.json()["accepted"]
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # no shutdown hook runs: no index snapshot, no flush
        proc.wait()
    assert acked == 1500

    proc = start_server(tmp_path, port)
    try:
        deadline = time.monotonic() + 30
        while True:
            stats = httpx.get(f"{base}/v1/stats", timeout=5, headers=AUTH).json()
            if stats["consumer_lag"] == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert stats["events_in_log"] == acked
        assert stats["consumer_lag"] == 0
        assert stats["items"] == 300
        rec = httpx.post(f"{base}/v1/recommendations", json={"user_id": "u3", "n": 5}, timeout=10, headers=AUTH).json()
        assert rec["tier"] == "streaming" and len(rec["items"]) == 5
        # replaying everything after the restart is recognised as duplicates
        dup = httpx.post(f"{base}/v1/events", json={"events": [
            {"id": "k0-0", "user_id": "u0", "item_id": items[0]["id"], "type": "click"}]}, timeout=10,
            headers=AUTH).json()
        assert dup == {"accepted": 0, "duplicates": 1}
    finally:
        proc.terminate()
        proc.wait(30)
