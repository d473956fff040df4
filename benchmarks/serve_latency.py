"""HTTP latency of POST /v1/recommendations at a fixed concurrency, with GET /healthz
measured in the same run as the baseline (the cost of the HTTP stack alone). Access control
is on, as in production: recommendations carry an API key, /healthz is public.

The server runs in its own process (uvicorn, embedded default stores); the load comes from
this process over loopback, so on a 2-core machine client and server share the CPUs.

    python -m benchmarks.serve_latency [--quick] [--sizes 10000 100000] [--concurrency 4] [--seconds 20]
    python -m benchmarks.serve_latency --tracing [--sizes 10000]   # tracing off vs on, same run

With ``--tracing`` each size is served twice, without and with OpenTelemetry tracing
exported over OTLP/HTTP to a local sink in this process, and the recommend p95 of both is
reported with the overhead. Prometheus metrics are always on (in both runs).
"""

from __future__ import annotations

import asyncio
import http.server
import os
import threading
import subprocess
import sys
import time

import httpx
import numpy as np

from benchmarks._common import emit, parser, pct, table
from relevo.api.auth import new_key
from relevo.cli.server import free_port, wait_healthy

SECRET, ENTRY = new_key("bench", ["recommend"])


async def load(url: str, body_for, concurrency: int, seconds: float) -> tuple[list[float], int, float]:
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=10, headers={"Authorization": f"Bearer {SECRET}"}) as client:
        async def worker(w: int) -> None:
            nonlocal errors
            rng = np.random.default_rng(w)
            while time.perf_counter() < stop_at:
                body = body_for(rng)
                t = time.perf_counter()
                r = await (client.post(url, json=body) if body is not None else client.get(url))
                latencies.append((time.perf_counter() - t) * 1000)
                if r.status_code != 200:
                    errors += 1
        started = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(concurrency)))
        elapsed = time.perf_counter() - started
    return latencies, errors, elapsed


class _Sink(http.server.BaseHTTPRequestHandler):
    """An OTLP/HTTP endpoint that accepts and counts span exports (the collector stand-in
    is a real HTTP server: the exporter's cost is paid in full)."""

    received = 0

    def do_POST(self):  # noqa: N802 (http.server's naming)
        length = int(self.headers.get("content-length", 0))
        self.rfile.read(length)
        type(self).received += 1
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args):
        pass


def start_sink() -> tuple[http.server.ThreadingHTTPServer, str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/v1/traces"


def start(items: int, port: int, env: dict | None = None) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks._server", "--items", str(items), "--port", str(port)],
                            stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "RELEVO_BENCH_KEY_HASH": ENTRY.hash, **(env or {})})
    for line in proc.stdout:
        if line.startswith("READY"):
            break
    wait_healthy(f"http://127.0.0.1:{port}", proc, timeout=60)
    return proc


def main() -> None:
    p = parser("serve_latency", __doc__)
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--n", type=int, default=20, help="items per recommendation")
    p.add_argument("--tracing", action="store_true", help="compare tracing off vs on (OTLP to a local sink)")
    args = p.parse_args()
    if args.tracing:
        tracing_overhead(args)
        return
    sizes = [10_000] if args.quick else args.sizes
    seconds = 8.0 if args.quick else args.seconds
    figures: dict = {"bench": "serve_latency", "concurrency": args.concurrency, "seconds": seconds, "n": args.n}
    rows = [("items", "endpoint", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors")]
    for size in sizes:
        port = free_port()
        proc = start(size, port)
        try:
            base = f"http://127.0.0.1:{port}"
            asyncio.run(load(f"{base}/healthz", lambda r: None, args.concurrency, 2.0))  # warm-up
            h_lat, h_err, h_el = asyncio.run(load(f"{base}/healthz", lambda r: None, args.concurrency, seconds))
            body = lambda r: {"user_id": f"u{int(r.integers(1000))}", "n": args.n}  # noqa: E731
            asyncio.run(load(f"{base}/v1/recommendations", body, args.concurrency, 2.0))
            r_lat, r_err, r_el = asyncio.run(load(f"{base}/v1/recommendations", body, args.concurrency, seconds))
        finally:
            proc.terminate()
            proc.wait(30)
        hp, rp = pct(h_lat, 50, 95, 99), pct(r_lat, 50, 95, 99)
        rows.append((size, "GET /healthz (baseline)", round(len(h_lat) / h_el, 1), *hp, h_err))
        rows.append((size, "POST /v1/recommendations", round(len(r_lat) / r_el, 1), *rp, r_err))
        figures[f"items_{size}"] = {
            "p50_ms": rp[0], "p95_ms": rp[1], "p99_ms": rp[2], "req_per_s": round(len(r_lat) / r_el, 1), "errors": r_err,
            "baseline_p50_ms": hp[0], "baseline_p95_ms": hp[1], "baseline_p99_ms": hp[2],
            "baseline_req_per_s": round(len(h_lat) / h_el, 1),
        }
    table(f"HTTP latency at concurrency {args.concurrency}, {seconds:.0f} s per endpoint", rows)
    last = figures[f"items_{sizes[-1]}"]
    figures.update({"p50_ms": last["p50_ms"], "p95_ms": last["p95_ms"], "p99_ms": last["p99_ms"],
                    "baseline_p95_ms": last["baseline_p95_ms"], "items": sizes[-1]})
    emit(figures)


def recommend_run(size: int, args, seconds: float, env: dict | None = None) -> list[float]:
    port = free_port()
    proc = start(size, port, env)
    try:
        base = f"http://127.0.0.1:{port}"
        body = lambda r: {"user_id": f"u{int(r.integers(1000))}", "n": args.n}  # noqa: E731
        asyncio.run(load(f"{base}/v1/recommendations", body, args.concurrency, 2.0))
        lat, err, _ = asyncio.run(load(f"{base}/v1/recommendations", body, args.concurrency, seconds))
        assert err == 0, f"{err} errors"
        return lat
    finally:
        proc.terminate()
        proc.wait(30)


def tracing_overhead(args) -> None:
    sizes = [10_000] if args.quick else args.sizes
    seconds = 8.0 if args.quick else args.seconds
    sink, endpoint = start_sink()
    rows = [("items", "tracing", "p50 ms", "p95 ms", "p99 ms", "requests")]
    figures: dict = {"bench": "serve_latency", "mode": "tracing", "concurrency": args.concurrency, "seconds": seconds}
    for size in sizes:
        off = recommend_run(size, args, seconds)
        on = recommend_run(size, args, seconds, {"RELEVO_TRACING__OTLP_ENDPOINT": endpoint})
        p_off, p_on = pct(off, 50, 95, 99), pct(on, 50, 95, 99)
        rows.append((size, "off (baseline)", *p_off, len(off)))
        rows.append((size, "on (OTLP/HTTP)", *p_on, len(on)))
        figures[f"items_{size}"] = {"p95_off_ms": p_off[1], "p95_on_ms": p_on[1], "p50_off_ms": p_off[0],
                                    "p50_on_ms": p_on[0],
                                    "p95_overhead_pct": round(100 * (p_on[1] - p_off[1]) / p_off[1], 1)}
    sink.shutdown()
    table(f"Tracing overhead on POST /v1/recommendations, concurrency {args.concurrency}, {seconds:.0f} s each", rows)
    figures["exports_received"] = _Sink.received
    emit(figures)


if __name__ == "__main__":
    main()
