"""Scale-out on Redis: ingest into the partitioned Redis Streams log (baseline: raw pipelined
XADD in the same run), stream workers applying events (1 vs 2 `relevo worker` processes),
recommendations with 1 vs 2 API workers (`relevo serve --workers N`), and freshness under a
sustained 5k events/s while serving. Needs Redis on 127.0.0.1:6379 (RELEVO_BENCH_REDIS)."""

from __future__ import annotations

import os
import threading
import time

import redis

from benchmarks._cluster import Deployment, catalog, events, load
from benchmarks._common import emit, parser, pct, table
from relevo.engine import Engine
from relevo.settings import Settings
from relevo.storage.codec import encode_event
from relevo.stream.processor import GROUP


def _append_process(url: str, n: int, start: int, ready, go, done) -> None:
    from relevo.storage.registry import open_store

    log = open_store("event_log", url)
    evs = events(n, users=20_000, items=10_000, seed=start, tag=f"p{start}-")
    ready.set()
    go.wait()
    for s in range(0, n, 1000):
        log.append(evs[s : s + 1000])
    done.put(time.perf_counter())
    log.close()


def _processes(url: str, n: int, k: int) -> float:
    """Appends from ``k`` processes (as ``k`` API workers would), events/s over all."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    go, done = ctx.Event(), ctx.Queue()
    readies = [ctx.Event() for _ in range(k)]
    procs = [ctx.Process(target=_append_process, args=(url, n // k, 10_000_000 * (i + 1), readies[i], go, done))
             for i in range(k)]
    for p in procs:
        p.start()
    for r in readies:
        r.wait(120)
    t0 = time.perf_counter()
    go.set()
    ends = [done.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
    return round(n / (max(ends) - t0))


def ingest(n: int) -> dict:
    """Appends of 1,000-event batches from 1 and 2 threads and from 2 processes vs raw
    pipelined XADD of the same (already encoded) bodies from one client."""
    out = {}
    evs = events(n, users=20_000, items=10_000, tag="x")
    with Deployment() as d:
        from relevo.storage.registry import open_store

        log = open_store("event_log", d.url)
        for threads in (1, 2):
            batches = [evs[s : s + 1000] for s in range(0, n, 1000)]
            tag = f"t{threads}-"
            batches = [[e.model_copy(update={"id": tag + e.id}) for e in b] for b in batches]
            t = time.perf_counter()
            parts = [batches[k::threads] for k in range(threads)]
            workers = [threading.Thread(target=lambda bs: [log.append(b) for b in bs], args=(p,)) for p in parts]
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            out[f"append_eps_{threads}_threads"] = round(n / (time.perf_counter() - t))
        out["append_eps_2_processes"] = _processes(d.url, n, 2)
        bodies = [encode_event(e) for e in evs]
        r = redis.Redis.from_url(d.url.split("?")[0])
        t = time.perf_counter()
        for s in range(0, n, 1000):
            pipe = r.pipeline(transaction=False)
            for body in bodies[s : s + 1000]:
                pipe.xadd(d.prefix + "raw", {"e": body})
            pipe.execute()
        out["baseline_raw_xadd_eps"] = round(n / (time.perf_counter() - t))
        log.close()
    return out


def _apply_rate(engine, evs, k: int, timeout: float = 600) -> float:
    """Events/s applied by ``k`` running workers: once every one holds its share of the
    partitions, append everything (faster than it is applied) and time until lag 0."""
    log = engine.events
    holders = lambda: {log.r.get(log.keys.lease(GROUP, p)) for p in range(log.partitions)}  # noqa: E731
    deadline = time.monotonic() + timeout
    while not (None not in holders() and len(holders()) == k) and time.monotonic() < deadline:
        time.sleep(0.05)
    t0 = time.monotonic()
    for s in range(0, len(evs), 2000):
        engine.ingest(evs[s : s + 2000])
    while log.lag(GROUP) and time.monotonic() < deadline:
        time.sleep(0.02)
    return round(len(evs) / (time.monotonic() - t0), 1)


def apply_and_serve(n_events: int, n_items: int, users: int, seconds: float, fresh_seconds: float) -> dict:
    out: dict = {}
    for k in (1, 2):
        with Deployment() as d:
            settings = Settings(home=d.tmp.name + "/loader", storage={"url": d.url}, stream={"consume": False},
                                ranker={"enabled": False}, emotion={"enabled": False}, tiers={"refresh": False})
            engine = Engine(settings).open()
            catalog(engine, n_items)
            for i in range(k):
                d.worker(f"w{i}")
            out[f"apply_eps_{k}_workers"] = _apply_rate(engine, events(n_events, users, n_items), k)
            # recommendations with k API workers, the stream worker(s) idle
            server, base = d.serve(k)
            # each API worker has its own edge cache: warm until every worker has answered
            # every user a few times, so both runs measure the same (steady) hit ratio
            warm_users = min(users, 500)
            warm_until = time.monotonic() + 90
            while load(base, warm_users, 2.0)["edge_share"] < 0.9 and time.monotonic() < warm_until:
                pass
            res = load(base, warm_users, seconds)
            out[f"recommend_edge_share_{k}_api_workers"] = res["edge_share"]
            out[f"recommend_rps_{k}_api_workers"] = res["rps"]
            out[f"recommend_p95_ms_{k}_api_workers"] = res["p95_ms"]
            out[f"recommend_errors_{k}_api_workers"] = res["errors"]
            if k == 2:
                out.update(freshness_under_load(engine, base, users, n_items, fresh_seconds))
            d.stop(server)
            engine.close()
    return out


def freshness_under_load(engine, base: str, users: int, n_items: int, seconds: float, rate: int = 5000) -> dict:
    """Ingest at ``rate`` events/s (batches of 250 every 50 ms) while a thread asks for
    recommendations; every 0.2 s one event goes to a new user, and the time from its
    acceptance to its user's state being readable in Redis is its freshness."""
    stop = threading.Event()
    served = {}

    def serve() -> None:
        served.update(load(base, users, seconds, concurrency=2, rate=40))

    probes: list[float] = []
    pending: dict[str, float] = {}
    lock = threading.Lock()

    def watch() -> None:
        while not stop.is_set() or pending:
            with lock:
                todo = list(pending.items())
            if todo:
                found = engine.features.get_many("users", [u for u, _ in todo])
                now = time.time()
                with lock:
                    for (u, at), raw in zip(todo, found):
                        if raw is not None:
                            probes.append(now - at)
                            pending.pop(u, None)
            time.sleep(0.002)

    server = threading.Thread(target=serve)
    watcher = threading.Thread(target=watch, daemon=True)
    server.start()
    watcher.start()
    sent = 0
    t0 = time.monotonic()
    next_probe = t0
    i = 0
    while time.monotonic() - t0 < seconds:
        batch = events(rate // 20, users, n_items, seed=i, tag=f"f{i}-")
        if time.monotonic() >= next_probe:
            probe = batch[-1].model_copy(update={"user_id": f"probe{i}", "id": f"probe{i}"})
            batch[-1] = probe
        engine.ingest(batch)
        if batch[-1].user_id.startswith("probe"):
            with lock:
                pending[batch[-1].user_id] = time.time()
            next_probe += 0.2
        sent += len(batch)
        i += 1
        time.sleep(max(0.0, t0 + i * 0.05 - time.monotonic()))
    achieved = sent / (time.monotonic() - t0)
    server.join()
    deadline = time.monotonic() + 60
    while pending and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    p50, p95, p99 = pct(probes, 50, 95, 99)
    return {"fresh_target_eps": rate, "fresh_achieved_eps": round(achieved), "freshness_p50_s": p50,
            "freshness_p95_s": p95, "freshness_p99_s": p99, "freshness_probes": len(probes),
            "fresh_unapplied_probes": len(pending), "recommend_rps_during_ingest": served.get("rps"),
            "recommend_p95_ms_during_ingest": served.get("p95_ms")}


def main(argv=None) -> None:
    args = parser("scale", __doc__).parse_args(argv)
    n_ingest = 20_000 if args.quick else 100_000
    figures = {"bench": "scale", "quick": args.quick, "cores": os.cpu_count()}
    figures.update(ingest(n_ingest))
    figures.update(apply_and_serve(n_events=5_000 if args.quick else 40_000, n_items=2_000 if args.quick else 10_000,
                                   users=1_000 if args.quick else 5_000, seconds=3 if args.quick else 15,
                                   fresh_seconds=4 if args.quick else 30))
    figures["apply_ratio_2_vs_1"] = round(figures["apply_eps_2_workers"] / max(figures["apply_eps_1_workers"], 1e-9), 2)
    figures["recommend_ratio_2_vs_1"] = round(
        figures["recommend_rps_2_api_workers"] / max(figures["recommend_rps_1_api_workers"], 1e-9), 2)
    figures["append_vs_raw_xadd"] = round(figures["append_eps_2_processes"] / figures["baseline_raw_xadd_eps"], 2)
    table("scale-out on Redis", [("figure", "value")] + [(k, v) for k, v in figures.items() if k != "bench"])
    emit(figures)


if __name__ == "__main__":
    main()
