"""Three tiers over HTTP: per-tier latency at a fixed concurrency on a large catalog,
invalidation lag across processes, and the edge cache's hit ratio on a replayed MovieLens
trace.

1. Latency: one `relevo` server (uvicorn, the embedded default; the feature store in
   memory so that a 1M-item catalog loads in minutes) with N items of clustered 384-d
   vectors, 1,000 users with 20 events each and a trained deep ranker, plus a separate
   `relevo edge` process in front of it. Closed-loop clients (keep-alive ``http.client``,
   one thread each) measure, one after the other: GET /healthz (the HTTP stack alone: the
   baseline), edge hits in the server's own cache, the streaming tier, the origin tier
   (deep ranker, no LLM) and hits in the edge process.
2. Invalidation lag: events posted to the server one at a time; a Redis pub/sub subscriber
   in this process (as an edge process would) records, per event, the time from the
   server receiving it to the "applied" invalidation message arriving.
3. Hit ratio: MovieLens latest-small ratings of the first users (by id), replayed in time
   order in-process with the trace's own clock for the cache TTL (60 s): before each
   rating the user asks for 10 recommendations; then the rating is ingested and applied.
   Run with the refresher (cached answers recomputed after each applied event) and, as the
   baseline in the same run, without it (invalidation only).

    python -m benchmarks.tiers [--quick] [--items 1000000] [--concurrency 1] [--seconds 10]
"""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import orjson

from benchmarks._common import clustered_vectors, emit, parser, pct, table
from relevo.api.auth import new_key
from relevo.cli.server import free_port, wait_healthy

SECRET, ENTRY = new_key("bench", ["recommend", "ingest"])
HEADERS = {"Authorization": f"Bearer {SECRET}", "Content-Type": "application/json"}
REDIS_URL = os.environ.get("RELEVO_TEST_REDIS", "redis://127.0.0.1:6379/0")


def load(port: int, method: str, path: str, body_for, concurrency: int, seconds: float):
    """(latencies ms, tiers, errors) of a closed loop of ``concurrency`` clients."""
    latencies: list[float] = []
    tiers: list[str] = []
    errors = [0]
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def worker(w: int) -> None:
        rng = np.random.default_rng(w)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        mine, mine_tiers, errs = [], [], 0
        while time.perf_counter() < stop_at:
            body = body_for(rng)
            t = time.perf_counter()
            conn.request(method, path, body=orjson.dumps(body) if body is not None else None, headers=HEADERS)
            resp = conn.getresponse()
            data = resp.read()
            mine.append((time.perf_counter() - t) * 1000)
            if resp.status != 200:
                errs += 1
                mine_tiers.append("error")
            else:
                mine_tiers.append(orjson.loads(data).get("tier", "-") if body is not None else "-")
        conn.close()
        with lock:
            latencies.extend(mine)
            tiers.extend(mine_tiers)
            errors[0] += errs

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, tiers, errors[0]


def start_servers(items: int, channel: str):
    env = {**os.environ, "RELEVO_BENCH_KEY_HASH": ENTRY.hash, "RELEVO_BENCH_SCOPES": "recommend,ingest",
           "RELEVO_TIERS__INVALIDATION_URL": REDIS_URL, "RELEVO_TIERS__INVALIDATION_CHANNEL": channel,
           "RELEVO_STORAGE__FEATURE_STORE": "memory://", "RELEVO_API__KEYS": f"[{ENTRY.model_dump_json()}]",
           "RELEVO_EDGE_ORIGIN_KEY": SECRET}
    if items >= 500_000:
        env["RELEVO_INDEX__EF_CONSTRUCTION"] = "64"  # a 1M build in minutes, not six
    port, edge_port = free_port(), free_port()
    server = subprocess.Popen([sys.executable, "-m", "benchmarks._server", "--items", str(items), "--port", str(port),
                               "--ranker-steps", "100"], stdout=subprocess.PIPE, text=True, env=env)
    for line in server.stdout:
        if line.startswith("READY"):
            break
    wait_healthy(f"http://127.0.0.1:{port}", server, timeout=120)
    edge = subprocess.Popen([sys.executable, "-m", "relevo.cli.main", "edge", "--origin", f"http://127.0.0.1:{port}",
                             "--port", str(edge_port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_healthy(f"http://127.0.0.1:{edge_port}", edge, timeout=60)
    return server, edge, port, edge_port


def latency_part(args, items: int, seconds: float, figures: dict, rows: list) -> None:
    channel = f"relevo-bench:invalidate:{uuid.uuid4().hex[:8]}"
    started = time.perf_counter()
    server, edge, port, edge_port = start_servers(items, channel)
    print(f"servers ready in {time.perf_counter() - started:.0f} s ({items:,} items)", flush=True)
    users = 200 if args.quick else 1000  # of the 1,000 with histories
    user = lambda r: f"u{int(r.integers(users))}"  # noqa: E731
    try:
        c = args.concurrency
        load(port, "GET", "/healthz", lambda r: None, c, 1.0)
        runs = {"baseline: GET /healthz": load(port, "GET", "/healthz", lambda r: None, c, seconds)}
        for u in range(200 if args.quick else users):  # warm: answers cached in the server and the edge process
            for p in (port, edge_port):
                load_one(p, {"user_id": f"u{u}", "n": 20})
        runs["edge hit (in-process cache)"] = load(port, "POST", "/v1/recommendations",
                                                   lambda r: {"user_id": user(r), "n": 20}, c, seconds)
        runs["streaming"] = load(port, "POST", "/v1/recommendations",
                                 lambda r: {"user_id": user(r), "n": 20, "tier": "streaming"}, c, seconds)
        runs["origin (deep ranker, no LLM)"] = load(port, "POST", "/v1/recommendations",
                                                    lambda r: {"user_id": user(r), "n": 20, "tier": "origin"}, c, seconds)
        runs["edge hit (relevo edge process)"] = load(edge_port, "POST", "/v1/recommendations",
                                                      lambda r: {"user_id": user(r), "n": 20}, c, seconds)
        lags = invalidation_lag(port, channel, 1.5 if args.quick else 8.0)
    finally:
        for proc in (edge, server):
            proc.terminate()
            proc.wait(60)
    keys = {"baseline: GET /healthz": "baseline", "edge hit (in-process cache)": "edge",
            "streaming": "streaming", "origin (deep ranker, no LLM)": "origin", "edge hit (relevo edge process)": "edge_process"}
    for name, (lat, tiers, errors) in runs.items():
        expected = {"edge": "edge", "streaming": "streaming", "origin": "origin", "edge_process": "edge"}.get(keys[name])
        share = round(sum(t == expected for t in tiers) / len(tiers), 4) if expected else None
        if expected:  # latency of the answers the named tier gave
            lat = [v for v, t in zip(lat, tiers) if t == expected]
        p50, p95, p99 = pct(lat, 50, 95, 99)
        rows.append((f"{items:,}", name, round(len(tiers) / seconds, 1), p50, p95, p99, share, errors))
        figures[keys[name]] = {"p50_ms": p50, "p95_ms": p95, "p99_ms": p99, "answered_share": share,
                               "errors": errors, "requests": len(tiers)}
    figures["invalidation_lag_ms"] = dict(zip(("p50", "p95", "p99"), pct(lags, 50, 95, 99)), samples=len(lags))


def load_one(port: int, body: dict) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("POST", "/v1/recommendations", body=orjson.dumps(body), headers=HEADERS)
    out = orjson.loads(conn.getresponse().read())
    conn.close()
    return out


def invalidation_lag(port: int, channel: str, seconds: float) -> list[float]:
    """ms from the server receiving an event to the applied-invalidation message here."""
    from relevo.tiers.invalidation import RedisSubscriber

    lags: list[float] = []

    def listener(changed: dict[str, float], applied: bool) -> None:
        if applied:
            now = time.time()
            lags.extend((now - t) * 1000 for u, t in changed.items() if u.startswith("lag"))

    sub = RedisSubscriber(REDIS_URL, channel, listener).start()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    stop_at = time.perf_counter() + seconds
    k = 0
    while time.perf_counter() < stop_at:
        body = {"events": [{"user_id": f"lag{k % 50}", "item_id": f"i{k % 1000}", "type": "click"}]}
        conn.request("POST", "/v1/events", body=orjson.dumps(body), headers=HEADERS)
        conn.getresponse().read()
        k += 1
        time.sleep(0.02)
    time.sleep(0.5)
    sub.stop()
    conn.close()
    return lags


def hit_ratio_part(args, figures: dict, rows: list) -> None:
    from relevo.datasets.movielens import find_folder, iter_ratings, load_items
    from relevo.engine import Engine
    from relevo.settings import Settings
    from relevo.tiers.streaming import RecommendRequest

    folder = find_folder(args.data_dir or os.environ.get("RELEVO_DATA_DIR") or Path("../shared/datasets"))
    if folder is None:
        raise SystemExit("MovieLens latest-small not found: --data-dir or RELEVO_DATA_DIR")
    items = load_items(folder)
    vectors = clustered_vectors(len(items), 384, clusters=50)
    ratings = sorted(iter_ratings(folder), key=lambda e: (int(e.user_id[2:]), e.timestamp))
    budget = 800 if args.quick else 8000
    chosen, count = set(), 0
    for e in ratings:
        if e.user_id not in chosen and count >= budget:
            break
        chosen.add(e.user_id)
        count += 1
    trace = sorted((e for e in ratings if e.user_id in chosen), key=lambda e: e.timestamp)
    for refresh in (True, False):
        with tempfile.TemporaryDirectory() as tmp:
            engine = Engine(Settings(home=Path(tmp), stream={"poll_ms": 1}, ranker={"enabled": False},
                                     tiers={"refresh": refresh})).open()
            try:
                engine.add_items(items, vectors=vectors)
                clock = [0.0]
                engine.orchestrator.clock = lambda: clock[0]
                hits = 0
                started = time.perf_counter()
                for event in trace:
                    clock[0] = event.timestamp
                    rec = engine.recommend(RecommendRequest(event.user_id, 10))
                    hits += rec.tier == "edge" and rec.tier_reason == "cached"
                    engine.ingest([event])
                    engine.wait_idle(10)
                elapsed = time.perf_counter() - started
            finally:
                engine.close()
        name = "with refresher" if refresh else "invalidation only (baseline)"
        ratio = round(hits / len(trace), 4)
        rows.append((name, len(chosen), len(trace), ratio, round(elapsed, 1)))
        figures["hit_ratio" if refresh else "baseline_hit_ratio"] = ratio
    figures["trace"] = {"users": len(chosen), "requests": len(trace), "ttl_s": 60}


def main() -> None:
    p = parser("tiers", __doc__)
    p.add_argument("--items", type=int, default=1_000_000)
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--skip-latency", action="store_true")
    args = p.parse_args()
    items = 10_000 if args.quick else args.items
    seconds = 2.0 if args.quick else args.seconds
    figures: dict = {"bench": "tiers", "items": items, "concurrency": args.concurrency, "seconds": seconds}
    rows = [("items", "what", "req/s", "p50 ms", "p95 ms", "p99 ms", "answered by it", "errors")]
    if not args.skip_latency:
        latency_part(args, items, seconds, figures, rows)
        table(f"HTTP latency per tier, concurrency {args.concurrency}, {seconds:.0f} s each", rows)
        lag = figures["invalidation_lag_ms"]
        table("invalidation lag across processes (Redis pub/sub), ms",
              [("p50", "p95", "p99", "samples"), (lag["p50"], lag["p95"], lag["p99"], lag["samples"])])
    hit_rows = [("cache", "users", "requests", "hit ratio", "s")]
    hit_ratio_part(args, figures, hit_rows)
    table("edge cache hit ratio on the replayed MovieLens trace (TTL 60 s, trace clock)", hit_rows)
    for key in ("edge", "streaming", "origin", "edge_process", "baseline"):
        if key in figures:
            figures[f"{key}_p95_ms"] = figures[key]["p95_ms"]
    emit(figures)


if __name__ == "__main__":
    main()
