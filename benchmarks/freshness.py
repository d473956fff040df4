"""Event-to-servable latency (freshness) at a steady event rate while serving.

Freshness of an event = the moment the stream processor has committed its effect (user,
session and item state readable by the next request) minus the moment relevo received it.
The baseline is the same figure for single events on an idle engine, in the same run.

    python -m benchmarks.freshness [--quick] [--rate 1000] [--seconds 60] [--items 10000]
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks._common import clustered_vectors, emit, parser, pct, table
from relevo.engine import Engine
from relevo.observability.metrics import Reservoir
from relevo.records import Event, Item
from relevo.settings import Settings
from relevo.tiers.streaming import RecommendRequest


def main() -> None:
    p = parser("freshness", __doc__)
    p.add_argument("--rate", type=float, default=1000.0, help="events per second")
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--items", type=int, default=10_000)
    p.add_argument("--users", type=int, default=2_000)
    args = p.parse_args()
    seconds = 15.0 if args.quick else args.seconds
    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine(Settings(home=Path(tmp))).open()
        engine.metrics.freshness_recent = Reservoir(10_000_000)
        vectors = clustered_vectors(args.items, engine.index.dim)
        items = [Item(id=f"i{i}", title=f"item {i}", tags=[f"t{i % 20}"]) for i in range(args.items)]
        for s in range(0, args.items, 5000):
            engine.add_items(items[s : s + 5000], vectors=vectors[s : s + 5000])
        rng = np.random.default_rng(0)

        def event(k: int) -> Event:
            return Event(id=f"f{k}", user_id=f"u{int(rng.integers(args.users))}",
                         item_id=f"i{int(rng.integers(args.items))}", type="click")

        # baseline: single events, idle engine
        engine.metrics.freshness_recent.drain()
        for k in range(200):
            engine.ingest([event(k)])
            engine.wait_idle(5)
        idle = engine.metrics.freshness_recent.drain()

        # steady load: batches every 10 ms at the target rate, with a serving thread
        stop = threading.Event()
        served: list[float] = []

        def serve() -> None:
            r = np.random.default_rng(1)
            while not stop.is_set():
                t = time.perf_counter()
                engine.recommend(RecommendRequest(user_id=f"u{int(r.integers(args.users))}", n=10))
                served.append((time.perf_counter() - t) * 1000)

        server = threading.Thread(target=serve, daemon=True)
        server.start()
        per_tick = max(1, int(round(args.rate / 100)))
        k = 1_000
        started = time.monotonic()
        next_at = started
        sent = 0
        while time.monotonic() - started < seconds:
            engine.ingest([event(k + j) for j in range(per_tick)])
            k += per_tick
            sent += per_tick
            next_at += 0.01
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        achieved = sent / (time.monotonic() - started)
        engine.wait_idle(30)
        stop.set()
        server.join(5)
        loaded = engine.metrics.freshness_recent.drain()
        engine.close()
    f50, f95, f99 = (v * 1000 for v in pct(loaded, 50, 95, 99))
    b50, b95, b99 = (v * 1000 for v in pct(idle, 50, 95, 99))
    s50, s95, s99 = pct(served, 50, 95, 99)
    table(f"freshness at {achieved:.0f} events/s for {seconds:.0f} s while serving ({len(served)} requests)", [
        ("figure", "p50 ms", "p95 ms", "p99 ms"),
        ("freshness under load", round(f50, 2), round(f95, 2), round(f99, 2)),
        ("baseline: freshness, single events, idle", round(b50, 2), round(b95, 2), round(b99, 2)),
        ("recommend latency meanwhile (engine)", s50, s95, s99),
    ])
    emit({"bench": "freshness", "events_per_s": round(achieved, 1), "seconds": seconds, "items": args.items,
          "events": len(loaded), "p50_ms": round(f50, 2), "p95_ms": round(f95, 2), "p99_ms": round(f99, 2),
          "baseline_idle_p50_ms": round(b50, 2), "baseline_idle_p95_ms": round(b95, 2),
          "recommend_p50_ms": s50, "recommend_p95_ms": s95, "recommend_p99_ms": s99, "requests": len(served)})


if __name__ == "__main__":
    main()
