"""`relevo serve --workers 2` and `relevo worker` as real processes on loopback, over one
Redis: items added through any API worker are served by every one, events are applied by
the stream worker and recommendations reflect them, and the embedded stores refuse
`--workers 2` with a clear message."""

from __future__ import annotations

import subprocess

import httpx
import pytest

from relevo.cli.server import free_port, wait_healthy
from tests.scaleout.procs import relevo_cmd, start, start_worker, stop, wait_for

pytestmark = pytest.mark.slow


def test_serve_workers_and_a_stream_worker_share_redis(redis_server, redis_prefix, tmp_path):
    url = f"{redis_server}?prefix={redis_prefix}&partitions=4"
    env = {"RELEVO_STORAGE__URL": url, "RELEVO_API__REQUIRE_KEYS": "false", "RELEVO_RANKER__ENABLED": "false",
           "RELEVO_EMOTION__ENABLED": "false", "RELEVO_TIERS__INVALIDATION_URL": redis_server.rsplit("/", 1)[0]}
    port = free_port()
    worker = start_worker(tmp_path / "worker", env)
    api = start(tmp_path / "api", env, "serve", "--workers", "2", "--port", str(port))
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, api, timeout=180)
        with httpx.Client(base_url=base, timeout=10) as http:
            items = [{"id": f"m{i}", "title": f"Film {i}", "tags": ["Drama" if i % 2 else "Comedy"]} for i in range(12)]
            assert http.post("/v1/items", json={"items": items}).json() == {"accepted": 12}
            # each request lands on either worker: both must know every item within the poll
            wait_for(lambda: all(http.get(f"/v1/items/m{i % 12}").status_code == 200 for i in range(24)), 10,
                     "every API worker to serve the new items")
            events = [{"id": f"e{i}", "user_id": "ann", "item_id": f"m{2 * (i % 6) + 1}", "type": "click"}
                      for i in range(12)]
            assert http.post("/v1/events", json={"events": events}).status_code == 202

            def applied() -> bool:
                body = http.get("/v1/users/ann/export").json()
                return ((body.get("profile") or {}).get("counters") or {}).get("click") == 12

            wait_for(applied, 30, "the stream worker to apply the events", every=0.2)
            for _ in range(6):  # whichever worker answers, it ranks from the shared state
                rec = http.post("/v1/recommendations", json={"user_id": "ann", "n": 4}).json()
                assert rec.get("fallback") != "no_profile" and len(rec["items"]) == 4
            metrics = http.get("/metrics").text
            assert "relevo_requests" in metrics or "relevo_" in metrics
    finally:
        stop(api)
        stop(worker)
    assert api.returncode == 0 and worker.returncode == 0


def test_workers_over_the_embedded_stores_are_refused(tmp_path):
    out = subprocess.run(relevo_cmd("serve", "--workers", "2", "--home", str(tmp_path)), capture_output=True,
                         text=True, timeout=120, env={"RELEVO_API__REQUIRE_KEYS": "false", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 2 and "needs the Redis stores" in out.stderr
