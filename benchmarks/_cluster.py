"""Scale-out benchmark plumbing: a fresh key prefix on the local Redis, a catalog and user
histories written through an engine, and `relevo worker` / `relevo serve` processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import redis

from benchmarks._common import clustered_vectors, pct
from relevo.cli.server import free_port, wait_healthy
from relevo.records import Event, Item

REDIS = os.environ.get("RELEVO_BENCH_REDIS", "redis://127.0.0.1:6379/0")
QUIET_ENV = {"RELEVO_API__REQUIRE_KEYS": "false", "RELEVO_RANKER__ENABLED": "false", "RELEVO_EMOTION__ENABLED": "false",
             "RELEVO_TIERS__REFRESH": "false"}


class Deployment:
    """Processes over one Redis key prefix; everything is removed on exit."""

    def __init__(self, partitions: int = 8):
        self.prefix = f"relevo-bench:{uuid.uuid4().hex[:8]}:"
        self.url = f"{REDIS}?prefix={self.prefix}&partitions={partitions}"
        self.tmp = tempfile.TemporaryDirectory()
        self.procs: list[subprocess.Popen] = []
        self.env = {**os.environ, **QUIET_ENV, "RELEVO_STORAGE__URL": self.url}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        client = redis.Redis.from_url(REDIS)
        for pattern in (self.prefix + "*", "{" + self.prefix + "*"):
            keys = list(client.scan_iter(match=pattern, count=5000))
            for i in range(0, len(keys), 5000):
                client.delete(*keys[i : i + 5000])
        self.tmp.cleanup()

    def _start(self, name: str, *args: str) -> subprocess.Popen:
        home = Path(self.tmp.name) / name
        home.mkdir(parents=True, exist_ok=True)
        log = open(home / "log", "wb")
        proc = subprocess.Popen([sys.executable, "-c", "import sys; from relevo.cli.main import main; sys.exit(main())",
                                 *args], env={**self.env, "RELEVO_HOME": str(home)}, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def worker(self, name: str) -> subprocess.Popen:
        return self._start(name, "worker", "--status-every", "5")

    def serve(self, workers: int) -> tuple[subprocess.Popen, str]:
        port = free_port()
        # API only: the stream is the workers' job (serve --workers N > 1 sets this itself)
        self.env["RELEVO_STREAM__CONSUME"] = "false"
        try:
            proc = self._start(f"serve{workers}-{port}", "serve", "--workers", str(workers), "--port", str(port))
        finally:
            self.env.pop("RELEVO_STREAM__CONSUME")
        base = f"http://127.0.0.1:{port}"
        wait_healthy(base, proc, timeout=300)
        return proc, base

    def stop(self, proc: subprocess.Popen) -> None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def catalog(engine, n_items: int) -> list[str]:
    vectors = clustered_vectors(n_items, engine.index.dim)
    ids = [f"i{i}" for i in range(n_items)]
    for s in range(0, n_items, 5000):
        engine.add_items([Item(id=ids[i], title=f"item {i}", tags=[f"t{i % 50}"]) for i in range(s, min(s + 5000, n_items))],
                         vectors=vectors[s : s + 5000])
    return ids


def events(n: int, users: int, items: int, seed: int = 0, tag: str = "h") -> list[Event]:
    rng = np.random.default_rng(seed)
    item_ids = rng.integers(items, size=n)
    user_ids = rng.integers(users, size=n)
    kinds = ("click", "view", "purchase", "view")
    return [Event(id=f"{tag}{i}", user_id=f"u{user_ids[i]}", item_id=f"i{item_ids[i]}", type=kinds[i % 4])
            for i in range(n)]


def load(base: str, users: int, seconds: float, concurrency: int = 8, rate: float | None = None) -> dict:
    """Recommendation requests for ``seconds``: closed loop (as fast as answered) or, with
    ``rate``, open loop at that many per second. Returns req/s and latency percentiles."""
    stop = time.monotonic() + seconds
    latencies: list[float] = []
    errors = [0]
    edge = [0]
    lock = threading.Lock()
    interval = concurrency / rate if rate else 0.0

    def run(k: int) -> None:
        rng = np.random.default_rng(k)
        with httpx.Client(base_url=base, timeout=10) as http:
            nxt = time.monotonic()
            while time.monotonic() < stop:
                if interval:
                    nxt += interval
                    time.sleep(max(0.0, nxt - time.monotonic()))
                t = time.perf_counter()
                r = http.post("/v1/recommendations", json={"user_id": f"u{int(rng.integers(users))}", "n": 10})
                dt = (time.perf_counter() - t) * 1000
                with lock:
                    latencies.append(dt)
                    errors[0] += r.status_code != 200
                    edge[0] += r.status_code == 200 and r.json().get("tier") == "edge"

    started = time.monotonic()
    threads = [threading.Thread(target=run, args=(k,)) for k in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    p50, p95, p99 = pct(latencies, 50, 95, 99)
    return {"rps": round(len(latencies) / elapsed, 1), "p50_ms": p50, "p95_ms": p95, "p99_ms": p99,
            "requests": len(latencies), "errors": errors[0], "edge_share": round(edge[0] / max(len(latencies), 1), 3)}


def rss_of(pid: int) -> float:
    """Resident memory of a process and its children (uvicorn workers), MB."""
    total = 0.0
    pids = [pid]
    try:
        pids += [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            pass
    return round(total, 1)
