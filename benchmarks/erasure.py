"""Time to erase a user with 10,000 events (SQLite and Redis), and the cost of the consent
check on the request path, each beside a baseline measured in the same run.

    python -m benchmarks.erasure [--quick] [--events 10000] [--reps 5]

Erasure: a user with N events among other users' traffic (and their decisions) is
erased with Engine.erase_user; the baseline is deleting the same number of rows / stream
entries directly (SQLite DELETE + WAL checkpoint; Redis XDEL). Consent check: the
read-path lookup the streaming tier does per request (FeatureStore get + resolve),
against a plain FeatureStore get of the same key.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

from benchmarks._common import emit, parser, pct, table
from relevo.context import consent as consent_registry
from relevo.records import Event, Item
from relevo.settings import ApiSettings, Settings, StorageSettings
from relevo.tiers.streaming import RecommendRequest

REDIS = "redis://127.0.0.1:6379/0"
ENCODER = None  # the real MiniLM encoder, loaded once in main()


def make_engine(home: Path, storage: StorageSettings | None):
    from relevo.engine import Engine

    settings = Settings(home=home, storage=storage or StorageSettings(), api=ApiSettings(require_keys=False))
    return Engine(settings, encoder=ENCODER).open()


def populate(engine, user: str, n: int, others: int) -> None:
    rng = np.random.default_rng(0)
    engine.add_items([Item(id=f"i{i}", title=f"item {i}") for i in range(500)],
                     vectors=rng.normal(size=(500, engine.encoder.dim)))
    now = time.time()
    for start in range(0, n, 1000):
        engine.ingest([Event(id=f"{user}-{i}", user_id=user, item_id=f"i{i % 500}", type="click", timestamp=now)
                       for i in range(start, min(n, start + 1000))])
    engine.ingest([Event(user_id=f"o{i % 50}", item_id=f"i{i % 500}", type="click", timestamp=now)
                   for i in range(others)])
    engine.wait_idle(120)
    for _ in range(20):
        engine.recommend(RecommendRequest(user, 10))


def erase_run(storage: StorageSettings | None, n: int, tag: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(Path(tmp) / tag, storage)
        user = f"victim-{uuid.uuid4().hex[:8]}"
        populate(engine, user, n, 2000)
        started = time.perf_counter()
        receipt = engine.erase_user(user)
        erase_s = time.perf_counter() - started
        assert receipt.events == n, receipt
        # baseline: the same number of raw deletions on the same backend
        baseline_user = f"base-{uuid.uuid4().hex[:8]}"
        now = time.time()
        for start in range(0, n, 1000):
            engine.ingest([Event(id=f"{baseline_user}-{i}", user_id=baseline_user, item_id=f"i{i % 500}",
                                 type="view", timestamp=now) for i in range(start, min(n, start + 1000))])
        engine.wait_idle(120)
        started = time.perf_counter()
        removed = engine.events.erase_user(baseline_user)  # the event-log deletion alone
        base_s = time.perf_counter() - started
        assert removed == n
        engine.close()
    return {"erase_ms": round(erase_s * 1000, 1), "event_log_only_ms": round(base_s * 1000, 1),
            "decisions": receipt.decisions}


def consent_check(reps: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(Path(tmp) / "c", None)
        engine.put_consent("u", {"emotion": True})
        store, defaults = engine.features, engine.consent_defaults

        def timed(fn) -> list[float]:
            out = []
            for _ in range(reps):
                t = time.perf_counter()
                fn()
                out.append((time.perf_counter() - t) * 1e6)
            return out

        check = timed(lambda: consent_registry.read(store, "u").resolved(defaults))
        base = timed(lambda: store.get("users", "u"))
        engine.close()
    c50, c95, c99 = pct(check, 50, 95, 99)
    b50, b95, b99 = pct(base, 50, 95, 99)
    return {"p50_us": c50, "p95_us": c95, "p99_us": c99, "baseline_get_p50_us": b50, "baseline_get_p95_us": b95,
            "added_p50_us": round(c50 - b50, 2)}


def main(argv=None) -> None:
    p = parser("erasure", __doc__)
    p.add_argument("--events", type=int, default=10_000)
    p.add_argument("--reps", type=int, default=3)
    args = p.parse_args(argv)
    if args.quick:
        args.events, args.reps = 2000, 1
    from relevo.embeddings.minilm import MiniLMEncoder

    global ENCODER
    ENCODER = MiniLMEncoder()
    results: dict[str, list[dict]] = {"sqlite": [], "redis": []}
    for _ in range(args.reps):
        results["sqlite"].append(erase_run(None, args.events, "s"))
        prefix = f"relevo-bench-{uuid.uuid4().hex[:8]}:"
        url = f"{REDIS}?prefix={prefix}"
        results["redis"].append(erase_run(StorageSettings(event_log=url, feature_store=url, decision_log=url,
                                                          model_store=url), args.events, "r"))
        import redis as redis_lib

        client = redis_lib.Redis.from_url(REDIS)
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
    consent = consent_check(20_000 if not args.quick else 5_000)
    rows = [("backend", "erase user (median ms)", "event-log deletion alone (median ms)", "runs")]
    figures = {}
    for backend, runs in results.items():
        erase = float(np.median([r["erase_ms"] for r in runs]))
        base = float(np.median([r["event_log_only_ms"] for r in runs]))
        rows.append((backend, round(erase, 1), round(base, 1), len(runs)))
        figures[backend] = {"erase_ms": round(erase, 1), "baseline_event_log_ms": round(base, 1), "runs": runs}
    table(f"Erasing a user with {args.events:,} events (plus their decisions)", rows)
    table("Consent check on the request path (SQLite feature store, us)", [
        ("", "p50", "p95", "p99"),
        ("consent read + resolve", consent["p50_us"], consent["p95_us"], consent["p99_us"]),
        ("plain feature get (baseline)", consent["baseline_get_p50_us"], consent["baseline_get_p95_us"], "-"),
    ])
    emit({"bench": "erasure", "events": args.events, **figures, "consent_check": consent,
          "target_consent_check_us": 50, "consent_target_met": consent["p95_us"] < 50})


if __name__ == "__main__":
    main()
