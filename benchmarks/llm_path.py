"""The LLM on the request path: explain=true under a 200 ms budget, per backend.

Per backend (the deterministic reasoner alone; llama.cpp in process on the packaged GGUF;
llama-cpp-python's OpenAI-compatible server on loopback, same GGUF), one engine with the
first 3,000 MovieLens movies and 20 users who consented to LLM processing, each with 30
ratings of history:

1. cold: each user asks for 5 explained recommendations (budget 200 ms) with nothing
   precomputed: the LLM must answer inside the request or the reasoner does;
2. warm: each user's next event is ingested; once it is applied the refresher recomputes
   the user's cached slate and has the LLM explain it in the background (10 s budget);
   then each user asks again (200 ms), 3 times.

Reported per phase: p50 / p95 of the request latency, the share of explanations written
by the LLM (source llm or mixed) vs the reasoner, the explanation cache hits, that every
explanation shown passed the groundedness checker, and the local model's tokens/s.
Latency is measured in process (Engine.recommend); the HTTP stack adds what
``benchmarks.serve_latency`` measures.

    python -m benchmarks.llm_path [--quick] [--users 20] [--data-dir DIR]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

from benchmarks._common import emit, parser, pct, table
from relevo.cli.server import free_port


def start_server(gguf: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
                             "--port", str(port), "--n_ctx", "2048", "--n_threads", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{base}/v1/models", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("llama_cpp.server did not start")


def run_backend(name: str, llm: dict, folder: Path, users: int, rounds: int) -> dict:
    from relevo.datasets.movielens import iter_ratings, load_items
    from relevo.engine import Engine
    from relevo.llm.grounding import Checker
    from relevo.settings import Settings
    from relevo.tiers import reasoning
    from relevo.tiers.streaming import RecommendRequest

    items = load_items(folder)[:3000]
    ids = {it.id for it in items}
    by_user: dict[str, list] = {}
    for e in iter_ratings(folder):
        if e.item_id in ids:
            by_user.setdefault(e.user_id, []).append(e)
    chosen = [u for u, evs in sorted(by_user.items(), key=lambda kv: int(kv[0][2:])) if len(evs) >= 31][:users]
    with tempfile.TemporaryDirectory() as home:
        engine = Engine(Settings(home=home, llm=llm, ranker={"enabled": False})).open()
        try:
            engine.add_items(items)
            for u in chosen:
                engine.put_consent(u, {"llm": True})
                engine.ingest(by_user[u][:30])
            engine.wait_idle(60)
            checker = Checker((it.title for it in items), engine.catalog.tags())
            figures = {}
            for phase in ("cold", "warm"):
                if phase == "warm":
                    for u in chosen:  # a fresh event: applied, then refreshed and explained in the background
                        engine.ingest([by_user[u][30]])
                    engine.wait_idle(600)
                lat, sources, reasons, grounded, total = [], Counter(), Counter(), 0, 0
                for _ in range(1 if phase == "cold" else rounds):
                    for u in chosen:
                        started = time.perf_counter()
                        rec = engine.recommend(RecommendRequest(u, 5, explain=True, budget_ms=200))
                        lat.append((time.perf_counter() - started) * 1000)
                        sources[rec.explanation["source"]] += 1
                        reasons[rec.explanation["reason"] or ("cache" if rec.explanation["source"] == "llm" else "ok")] += 1
                        ev = reasoning.evidence(engine.catalog, engine.index, engine.streaming.context(
                            RecommendRequest(u, 5)), rec.items)
                        total += len(rec.items)
                        grounded += sum(checker.problems(i.item_id, i.reasons[0], ev) == [] for i in rec.items)
                p50, p95, p99 = pct(lat, 50, 95, 99)
                n = sum(sources.values())
                figures[phase] = {"p50_ms": p50, "p95_ms": p95, "p99_ms": p99, "requests": n,
                                  "llm_share": round((sources["llm"] + sources["mixed"]) / n, 3),
                                  "reasons": dict(reasons), "grounded_share": round(grounded / max(total, 1), 4)}
            m = engine.metrics
            samples = {(s.labels.get("use"), s.labels.get("outcome")): s.value
                       for s in m.llm_calls.collect()[0].samples if s.name.endswith("_total")}
            calls_ok = sum(v for (use, o), v in samples.items() if o == "ok")
            hits = sum(v for (use, o), v in samples.items() if o == "cache_hit")
            tokens = {s.labels["direction"]: s.value for s in m.llm_tokens.collect()[0].samples
                      if s.name.endswith("_total")}
            seconds = sum(s.value for s in m.llm_latency.collect()[0].samples if s.name.endswith("_sum"))
            answers = {(s.labels["use"], s.labels["source"], s.labels["reason"]): s.value
                       for s in m.llm_answers.collect()[0].samples if s.name.endswith("_total")}
            explained_from_cache = sum(v for (use, src, r), v in answers.items() if use == "explain" and r == "cache")
            figures.update({"llm_calls_ok": calls_ok, "prompt_cache_hits": hits,
                            "explanations_from_cache": explained_from_cache,
                            "tokens_out_per_s": round(tokens.get("out", 0) / seconds, 1) if seconds else None,
                            "tokens_in": tokens.get("in", 0), "tokens_out": tokens.get("out", 0)})
            return figures
        finally:
            engine.close()


def main() -> None:
    p = parser("llm_path", __doc__)
    p.add_argument("--users", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--data-dir", default=None)
    args = p.parse_args()
    from relevo.datasets.movielens import find_folder
    from relevo.llm.backends import packaged_gguf

    folder = find_folder(args.data_dir or os.environ.get("RELEVO_DATA_DIR") or Path("../shared/datasets"))
    if folder is None:
        raise SystemExit("MovieLens latest-small not found: --data-dir or RELEVO_DATA_DIR")
    users = 5 if args.quick else args.users
    rounds = 1 if args.quick else args.rounds
    gguf = packaged_gguf()
    figures: dict = {"bench": "llm_path", "budget_ms": 200, "users": users, "model": gguf.name}
    figures["reasoner"] = run_backend("reasoner", {"backend": "none"}, folder, users, rounds)
    figures["llamacpp"] = run_backend("llamacpp", {"backend": "llamacpp", "model_path": str(gguf)}, folder, users,
                                      rounds)
    server, base = start_server(gguf)
    try:
        figures["openai"] = run_backend("openai", {"backend": "openai", "base_url": base}, folder, users, rounds)
    finally:
        server.terminate()
        server.wait(30)
    rows = [("backend", "phase", "p50 ms", "p95 ms", "p99 ms", "LLM-written", "grounded", "reasons")]
    for backend in ("reasoner", "llamacpp", "openai"):
        for phase in ("cold", "warm"):
            f = figures[backend][phase]
            rows.append((backend, phase, f["p50_ms"], f["p95_ms"], f["p99_ms"], f["llm_share"], f["grounded_share"],
                         f["reasons"]))
    table("explain=true under a 200 ms budget (in process)", rows)
    for backend in ("llamacpp", "openai"):
        f = figures[backend]
        print(f"  {backend}: {f['llm_calls_ok']:.0f} LLM calls answered, {f['explanations_from_cache']:.0f} requests "
              f"explained from the cache, {f['tokens_out_per_s']} tokens/s out")
    emit(figures)


if __name__ == "__main__":
    main()
