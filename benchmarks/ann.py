"""hnswlib vs usearch vs brute force: build, memory, query latency, recall@10, updates.

    python -m benchmarks.ann [--quick] [--sizes 100000 1000000]
"""

from __future__ import annotations

import gc
import time

import numpy as np

from benchmarks._common import clustered_vectors, emit, parser, pct, rss_mb, table

DIM = 384
K = 10


def brute_topk(base: np.ndarray, queries: np.ndarray) -> np.ndarray:
    out = np.empty((len(queries), K), dtype=np.int64)
    for s in range(0, len(queries), 64):
        scores = queries[s : s + 64] @ base.T
        top = np.argpartition(-scores, K, axis=1)[:, :K]
        order = np.take_along_axis(scores, top, axis=1).argsort(axis=1)[:, ::-1]
        out[s : s + 64] = np.take_along_axis(top, order, axis=1)
    return out


def recall(found: list[np.ndarray], truth: np.ndarray) -> float:
    return float(np.mean([len(set(f.tolist()) & set(t.tolist())) / K for f, t in zip(found, truth)]))


def timed_ms(fn, inputs) -> tuple[list[float], list]:
    """Call ``fn`` on each input; (latencies in ms, results)."""
    lat, out = [], []
    for x in inputs:
        s = time.perf_counter()
        out.append(fn(x))
        lat.append((time.perf_counter() - s) * 1000)
    return lat, out


def measure(build, query, upsert, delete, base, queries, truth, n_updates, filtered=None) -> dict:
    """The same figures for any index: ``build()`` returns it, then the callables get
    (index, input). ``filtered`` is None where the engine has no predicate filter."""
    gc.collect()
    before = rss_mb()
    t = time.perf_counter()
    index = build()
    build_s = time.perf_counter() - t
    mem = rss_mb() - before
    lat, found = timed_ms(lambda q: query(index, q), queries)
    flat = timed_ms(lambda q: filtered(index, q), queries[:200])[0] if filtered else None
    ids = np.random.default_rng(1).choice(len(base), n_updates, replace=False)
    upd = timed_ms(lambda i: upsert(index, int(i), base[(i + 1) % len(base)]), ids)[0]
    dels = timed_ms(lambda i: delete(index, int(i)), ids)[0]
    return {
        "build_s": round(build_s, 2), "memory_mb": round(mem, 1),
        "query_p50_ms": pct(lat, 50)[0], "query_p99_ms": pct(lat, 99)[0], "recall_at_10": round(recall(found, truth), 4),
        "filtered_p50_ms": pct(flat, 50)[0] if flat else None,
        "upsert_p50_ms": pct(upd, 50)[0], "upsert_p99_ms": pct(upd, 99)[0], "delete_p50_ms": pct(dels, 50)[0],
    }


def bench_hnswlib(base, queries, truth, n_updates):
    import hnswlib

    def build():
        index = hnswlib.Index(space="ip", dim=DIM)
        index.init_index(max_elements=len(base), ef_construction=200, M=16, allow_replace_deleted=True)
        index.add_items(base, np.arange(len(base)))
        index.set_ef(128)
        index.set_num_threads(1)
        return index

    blocked = set(range(0, len(base), 2))
    return measure(
        build,
        query=lambda ix, q: ix.knn_query(q, k=K)[0][0],
        upsert=lambda ix, i, v: ix.add_items(v[None, :], np.array([i])),
        delete=lambda ix, i: ix.mark_deleted(i),
        filtered=lambda ix, q: ix.knn_query(q, k=K, filter=lambda label: label not in blocked),
        base=base, queries=queries, truth=truth, n_updates=n_updates,
    )


def bench_usearch(base, queries, truth, n_updates):
    from usearch.index import Index

    def build():
        index = Index(ndim=DIM, metric="ip", dtype="f32", connectivity=16, expansion_add=200, expansion_search=128)
        index.add(np.arange(len(base)), base, threads=0)  # all cores, as hnswlib builds
        return index

    def upsert(ix, i, v):  # usearch has no in-place update: remove, then add
        ix.remove(i)
        ix.add(i, v)

    return measure(
        build,
        query=lambda ix, q: np.asarray(ix.search(q, K, threads=1).keys),
        upsert=upsert,
        delete=lambda ix, i: ix.remove(i),
        base=base, queries=queries, truth=truth, n_updates=n_updates,
    )


def bench_brute(base, queries):
    lat = []
    for q in queries[:100]:
        s = time.perf_counter()
        scores = base @ q
        np.argpartition(-scores, K)[:K]
        lat.append((time.perf_counter() - s) * 1000)
    return {"query_p50_ms": pct(lat, 50)[0], "query_p99_ms": pct(lat, 99)[0], "recall_at_10": 1.0}


def main() -> None:
    p = parser("ann", __doc__)
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    p.add_argument("--queries", type=int, default=1000)
    args = p.parse_args()
    sizes = [20_000] if args.quick else args.sizes
    n_queries = 300 if args.quick else args.queries
    results: dict = {"bench": "ann", "dim": DIM, "k": K, "m": 16, "ef_construction": 200, "ef_search": 128}
    rows = [("n", "engine", "build s", "MB", "p50 ms", "p99 ms", "recall@10", "filtered p50", "upsert p50", "delete p50")]
    for n in sizes:
        base = clustered_vectors(n)
        rng = np.random.default_rng(2)
        queries = base[rng.choice(n, n_queries, replace=False)] + 0.02 * rng.normal(size=(n_queries, DIM)).astype(np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        truth = brute_topk(base, queries)
        for name in ("hnswlib", "usearch", "brute"):
            if name == "brute":
                r = bench_brute(base, queries)
            else:
                r = (bench_hnswlib if name == "hnswlib" else bench_usearch)(base, queries, truth, 200)
            results[f"{name}_{n}"] = r
            rows.append((n, name, r.get("build_s", "-"), r.get("memory_mb", "-"), r["query_p50_ms"], r["query_p99_ms"],
                         r["recall_at_10"], r.get("filtered_p50_ms", "-"), r.get("upsert_p50_ms", "-"), r.get("delete_p50_ms", "-")))
            gc.collect()
        del base
    table("ANN indexes (single-threaded queries, k=10)", rows)
    n = sizes[-1]
    h, u = results[f"hnswlib_{n}"], results[f"usearch_{n}"]
    results["baseline"] = "brute force (exact) at the same size"
    results["query_p50_ms"] = h["query_p50_ms"]
    results["baseline_query_p50_ms"] = results[f"brute_{n}"]["query_p50_ms"]
    results["choice"] = "hnswlib" if h["query_p50_ms"] <= u["query_p50_ms"] and h["recall_at_10"] >= u["recall_at_10"] - 0.01 else "see table"
    emit(results)


if __name__ == "__main__":
    main()
