"""A relevo server for the latency benchmark: N items with clustered vectors, users with
histories, then the HTTP API on uvicorn (one process, the embedded default), with access
control on: the key hash comes from RELEVO_BENCH_KEY_HASH (serve_latency makes the key)."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import uvicorn

from benchmarks._common import clustered_vectors
from relevo.api.app import create_app
from relevo.engine import Engine
from relevo.records import Event, Item
from relevo.settings import ApiSettings, Settings


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--items", type=int, required=True)
    p.add_argument("--users", type=int, default=1000)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ranker-steps", type=int, default=0, help="train and publish the deep ranker before serving")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        scopes = tuple(os.environ.get("RELEVO_BENCH_SCOPES", "recommend").split(","))
        key = ApiSettings.Key(id="bench", hash=os.environ["RELEVO_BENCH_KEY_HASH"], scopes=scopes)
        engine = Engine(Settings(home=Path(tmp), api=ApiSettings(keys=[key]))).open()
        vectors = clustered_vectors(args.items, engine.index.dim)
        for s in range(0, args.items, 10_000):
            chunk = range(s, min(s + 10_000, args.items))
            engine.add_items([Item(id=f"i{i}", title=f"item {i}", tags=[f"t{i % 50}"]) for i in chunk],
                             vectors=vectors[s : s + len(chunk)])
        rng = np.random.default_rng(0)
        events = [Event(id=f"h{u}-{k}", user_id=f"u{u}", item_id=f"i{int(rng.integers(args.items))}",
                        type=("click", "purchase", "view")[k % 3]) for u in range(args.users) for k in range(20)]
        for s in range(0, len(events), 1000):
            engine.ingest(events[s : s + 1000])
        engine.wait_idle(120)
        if args.ranker_steps and engine.ranker is not None:
            engine.ranker.train(args.ranker_steps)
            engine.ranker.publish()
        print("READY", flush=True)
        sys.stdout.flush()
        uvicorn.run(create_app(engine), host="127.0.0.1", port=args.port, log_level="warning", access_log=False)
        engine.close()


if __name__ == "__main__":
    main()
