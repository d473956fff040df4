"""Durable events/s through Engine.ingest into the SQLite log and into Redis Streams,
beside raw-insert baselines measured in the same run.

    python -m benchmarks.ingest [--quick] [--events 200000] [--batch 1000]
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

from benchmarks._common import emit, parser, table
from relevo.records import Event, Item
from relevo.settings import Settings, StorageSettings

REDIS = "redis://127.0.0.1:6379/0"
ENCODER = None  # the real MiniLM encoder, loaded once in main()


def make_events(n: int, items: int, seed: int = 0) -> list[Event]:
    rng = np.random.default_rng(seed)
    kinds = ["view", "click", "click", "purchase", "skip", "add_to_cart"]
    users = rng.integers(10_000, size=n)
    its = rng.integers(items, size=n)
    ks = rng.integers(len(kinds), size=n)
    now = time.time()
    return [Event(id=f"b{seed}-{i}", user_id=f"u{users[i]}", item_id=f"i{its[i]}", type=kinds[ks[i]], timestamp=now)
            for i in range(n)]


def rate(n: int, seconds: float) -> float:
    return round(n / seconds, 1)


def engine_ingest(storage: StorageSettings, events: list[Event], batch: int, home: Path) -> float:
    from relevo.engine import Engine

    settings = Settings(home=home, storage=storage)
    engine = Engine(settings, encoder=ENCODER).open()
    engine.processor.stop()  # measure the write path alone
    n_items = 1000
    rng = np.random.default_rng(0)
    engine.add_items([Item(id=f"i{i}", title=f"item {i}") for i in range(n_items)], vectors=rng.normal(size=(n_items, ENCODER.dim)))
    started = time.perf_counter()
    for s in range(0, len(events), batch):
        engine.ingest(events[s : s + batch])
    elapsed = time.perf_counter() - started
    assert engine.events.count() == len(events)
    engine.close()
    return elapsed


def raw_sqlite(events: list[Event], batch: int, path: Path) -> float:
    from relevo.storage.codec import encode_event

    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE t (seq INTEGER PRIMARY KEY, body BLOB)")
    started = time.perf_counter()
    for s in range(0, len(events), batch):
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO t (body) VALUES (?)", [(encode_event(e),) for e in events[s : s + batch]])
        conn.execute("COMMIT")
    return time.perf_counter() - started


def raw_redis(events: list[Event], batch: int, key: str) -> float:
    import redis

    from relevo.storage.codec import encode_event

    r = redis.Redis.from_url(REDIS)
    started = time.perf_counter()
    for s in range(0, len(events), batch):
        pipe = r.pipeline(transaction=False)
        for e in events[s : s + batch]:
            pipe.xadd(key, {"e": encode_event(e)})
        pipe.execute()
    elapsed = time.perf_counter() - started
    r.delete(key)
    return elapsed


def validate_rate(events: list[Event]) -> float:
    raw = [e.model_dump(mode="json", exclude_none=True) for e in events]
    started = time.perf_counter()
    for d in raw:
        Event.model_validate(d)
    return time.perf_counter() - started


def main() -> None:
    p = parser("ingest", __doc__)
    p.add_argument("--events", type=int, default=200_000)
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    global ENCODER
    from relevo.embeddings.minilm import MiniLMEncoder

    ENCODER = MiniLMEncoder()
    n = 30_000 if args.quick else args.events
    repeats = 1 if args.quick else args.repeats
    import redis

    r = redis.Redis.from_url(REDIS)
    res: dict[str, list[float]] = {k: [] for k in ("engine_sqlite", "raw_sqlite", "engine_redis", "raw_redis", "validate")}
    for rep in range(repeats):
        events = make_events(n, 1000, seed=rep)
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            res["engine_sqlite"].append(rate(n, engine_ingest(StorageSettings(), events, args.batch, tmp / "a")))
            res["raw_sqlite"].append(rate(n, raw_sqlite(events, args.batch, tmp / "raw.db")))
            prefix = f"bench-{uuid.uuid4().hex[:8]}:"
            url = f"{REDIS}?prefix={prefix}"
            storage = StorageSettings(event_log=url, feature_store=url, decision_log=url, model_store=url)
            res["engine_redis"].append(rate(n, engine_ingest(storage, events, args.batch, tmp / "b")))
            keys = list(r.scan_iter(match=prefix + "*"))
            if keys:
                r.delete(*keys)
            res["raw_redis"].append(rate(n, raw_redis(events, args.batch, f"bench-raw-{uuid.uuid4().hex[:8]}")))
            res["validate"].append(rate(n, validate_rate(events[:20_000]) * n / 20_000))
    med = {k: float(np.median(v)) for k, v in res.items()}
    table(f"durable ingest, {n} events in batches of {args.batch}, median of {repeats} (events/s)", [
        ("path", "events/s", "baseline", "baseline events/s", "ratio"),
        ("Engine.ingest -> SQLite WAL log", med["engine_sqlite"], "raw SQLite insert", med["raw_sqlite"],
         round(med["engine_sqlite"] / med["raw_sqlite"], 2)),
        ("Engine.ingest -> Redis Streams", med["engine_redis"], "raw pipelined XADD", med["raw_redis"],
         round(med["engine_redis"] / med["raw_redis"], 2)),
        ("pydantic validation of events (API edge)", med["validate"], "-", "-", "-"),
    ])
    emit({"bench": "ingest", "events": n, "batch": args.batch, "repeats": repeats,
          "sqlite_events_per_s": med["engine_sqlite"], "baseline_sqlite_raw_events_per_s": med["raw_sqlite"],
          "redis_events_per_s": med["engine_redis"], "baseline_redis_raw_events_per_s": med["raw_redis"],
          "validate_events_per_s": med["validate"], "runs": res})


if __name__ == "__main__":
    main()
