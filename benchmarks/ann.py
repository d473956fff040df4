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


def bench_hnswlib(base, queries, truth, n_updates):
    import hnswlib

    gc.collect()
    before = rss_mb()
    t = time.perf_counter()
    index = hnswlib.Index(space="ip", dim=DIM)
    index.init_index(max_elements=len(base), ef_construction=200, M=16, allow_replace_deleted=True)
    index.add_items(base, np.arange(len(base)))
    build = time.perf_counter() - t
    mem = rss_mb() - before
    index.set_ef(128)
    index.set_num_threads(1)
    lat, found = [], []
    for q in queries:
        s = time.perf_counter()
        labels, _ = index.knn_query(q, k=K)
        lat.append((time.perf_counter() - s) * 1000)
        found.append(labels[0])
    blocked = set(range(0, len(base), 2))
    flat = []
    for q in queries[:200]:
        s = time.perf_counter()
        index.knn_query(q, k=K, filter=lambda label: label not in blocked)
        flat.append((time.perf_counter() - s) * 1000)
    rng = np.random.default_rng(1)
    ids = rng.choice(len(base), n_updates, replace=False)
    upd = []
    for i in ids:
        s = time.perf_counter()
        index.add_items(base[(i + 1) % len(base)][None, :], np.array([i]))
        upd.append((time.perf_counter() - s) * 1000)
    dels = []
    for i in ids:
        s = time.perf_counter()
        index.mark_deleted(int(i))
        dels.append((time.perf_counter() - s) * 1000)
    return {
        "build_s": round(build, 2), "memory_mb": round(mem, 1),
        "query_p50_ms": pct(lat, 50)[0], "query_p99_ms": pct(lat, 99)[0], "recall_at_10": round(recall(found, truth), 4),
        "filtered_p50_ms": pct(flat, 50)[0], "upsert_p50_ms": pct(upd, 50)[0], "upsert_p99_ms": pct(upd, 99)[0],
        "delete_p50_ms": pct(dels, 50)[0],
    }


def bench_usearch(base, queries, truth, n_updates):
    from usearch.index import Index

    gc.collect()
    before = rss_mb()
    t = time.perf_counter()
    index = Index(ndim=DIM, metric="ip", dtype="f32", connectivity=16, expansion_add=200, expansion_search=128)
    index.add(np.arange(len(base)), base, threads=0)  # all cores, as hnswlib builds
    build = time.perf_counter() - t
    mem = rss_mb() - before
    lat, found = [], []
    for q in queries:
        s = time.perf_counter()
        m = index.search(q, K, threads=1)
        lat.append((time.perf_counter() - s) * 1000)
        found.append(np.asarray(m.keys))
    rng = np.random.default_rng(1)
    ids = rng.choice(len(base), n_updates, replace=False)
    upd = []
    for i in ids:  # usearch has no in-place update: remove, then add
        s = time.perf_counter()
        index.remove(int(i))
        index.add(int(i), base[(i + 1) % len(base)])
        upd.append((time.perf_counter() - s) * 1000)
    dels = []
    for i in ids:
        s = time.perf_counter()
        index.remove(int(i))
        dels.append((time.perf_counter() - s) * 1000)
    return {
        "build_s": round(build, 2), "memory_mb": round(mem, 1),
        "query_p50_ms": pct(lat, 50)[0], "query_p99_ms": pct(lat, 99)[0], "recall_at_10": round(recall(found, truth), 4),
        "filtered_p50_ms": None, "upsert_p50_ms": pct(upd, 50)[0], "upsert_p99_ms": pct(upd, 99)[0],
        "delete_p50_ms": pct(dels, 50)[0],
    }


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
        for name, fn in (("hnswlib", lambda: bench_hnswlib(base, queries, truth, 200)),
                         ("usearch", lambda: bench_usearch(base, queries, truth, 200)),
                         ("brute", lambda: bench_brute(base, queries))):
            r = fn()
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
