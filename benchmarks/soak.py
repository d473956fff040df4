"""Soak: a bounded load held for minutes on the scale-out deployment (`relevo serve` API
process + one `relevo worker`, over Redis). First the maximum recommend throughput is
measured (closed loop, 8 clients); then requests run open loop at 70% of it while events
are ingested at a steady rate. Every window reports p50/p99 and the resident memory of
the API and worker processes; the summary compares the end with the start (after a
warm-up window): p99 should stay flat and memory grow by under 5%."""

from __future__ import annotations

import threading
import time

from benchmarks._cluster import Deployment, catalog, events, load, rss_of
from benchmarks._common import emit, parser, table
from relevo.engine import Engine
from relevo.settings import Settings


def soak(seconds: float, windows: int = 10, users: int = 2000, items: int = 5000, events_per_s: int = 500) -> dict:
    with Deployment() as d:
        loader = Engine(Settings(home=d.tmp.name + "/loader", storage={"url": d.url}, stream={"consume": False},
                                 ranker={"enabled": False}, emotion={"enabled": False}, tiers={"refresh": False})).open()
        catalog(loader, items)
        worker = d.worker("worker")
        server, base = d.serve(1)
        history = events(20 * users, users, items, tag="h")
        for s in range(0, len(history), 2000):
            loader.ingest(history[s : s + 2000])
        deadline = time.monotonic() + 300
        while loader.events.lag("relevo-stream") and time.monotonic() < deadline:
            time.sleep(0.1)
        load(base, users, 5)  # warm-up
        peak = load(base, users, 5)["rps"]
        rate = 0.7 * peak
        stop = threading.Event()

        def ingest() -> None:
            i = 0
            t0 = time.monotonic()
            while not stop.is_set():
                loader.ingest(events(events_per_s // 10, users, items, seed=1000 + i, tag=f"s{i}-"))
                i += 1
                time.sleep(max(0.0, t0 + i * 0.1 - time.monotonic()))

        feeder = threading.Thread(target=ingest, daemon=True)
        feeder.start()
        series = []
        window_s = seconds / windows
        for w in range(windows):
            res = load(base, users, window_s, concurrency=8, rate=rate)
            series.append({"t_s": round((w + 1) * window_s, 1), "rps": res["rps"], "p50_ms": res["p50_ms"],
                           "p99_ms": res["p99_ms"], "errors": res["errors"], "rss_api_mb": rss_of(server.pid),
                           "rss_worker_mb": rss_of(worker.pid), "lag": loader.events.lag("relevo-stream")})
            print(series[-1], flush=True)
        stop.set()
        feeder.join(5)
        loader.close()
    steady = series[1:] if len(series) > 2 else series  # the first window is the warm-up
    first, last = steady[0], steady[-1]
    half = len(steady) // 2 or 1
    early = sorted(s["p99_ms"] for s in steady[:half])[half // 2]
    late = sorted(s["p99_ms"] for s in steady[half:])[len(steady[half:]) // 2]
    return {
        "peak_rps": peak, "target_rps": round(rate, 1), "seconds": seconds, "events_per_s": events_per_s,
        "series": series,
        "p99_early_median_ms": early, "p99_late_median_ms": late, "p99_ratio_late_vs_early": round(late / early, 2),
        "rss_api_growth_pct": round(100 * (last["rss_api_mb"] - first["rss_api_mb"]) / first["rss_api_mb"], 2),
        "rss_worker_growth_pct": round(100 * (last["rss_worker_mb"] - first["rss_worker_mb"]) / first["rss_worker_mb"], 2),
        "errors": sum(s["errors"] for s in series),
    }


def main(argv=None) -> dict:
    p = parser("soak", __doc__)
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--seconds", type=float, help="overrides --minutes (tests use a short run)")
    args = p.parse_args(argv)
    seconds = args.seconds or (40.0 if args.quick else args.minutes * 60)
    figures = {"bench": "soak", **soak(seconds)}
    table("soak", [("t_s", "rps", "p50_ms", "p99_ms", "rss_api_mb", "rss_worker_mb", "lag")] +
          [tuple(s[k] for k in ("t_s", "rps", "p50_ms", "p99_ms", "rss_api_mb", "rss_worker_mb", "lag"))
           for s in figures["series"]])
    emit(figures)
    return figures


if __name__ == "__main__":
    main()
