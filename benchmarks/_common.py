"""Helpers shared by the benchmarks: data, percentiles, reporting."""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import orjson


def parser(name: str, doc: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python -m benchmarks.{name}", description=doc)
    p.add_argument("--quick", action="store_true", help="a reduced run that finishes in under 60 s")
    return p


def clustered_vectors(n: int, dim: int = 384, clusters: int = 1000, seed: int = 0, spread: float = 0.35) -> np.ndarray:
    """Unit vectors around ``clusters`` random centres: closer to real embeddings than
    uniform noise (which makes every ANN look bad and every neighbour meaningless)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        labels = rng.integers(clusters, size=m)
        x = centres[labels] + spread * rng.normal(size=(m, dim)).astype(np.float32) / np.sqrt(dim) * 4
        out[start : start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def pct(samples, *qs) -> list[float]:
    data = np.asarray(samples, dtype=np.float64)
    return [round(float(v), 4) for v in np.percentile(data, qs)] if data.size else [None] * len(qs)


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def machine() -> dict:
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "machine": platform.machine()}


def table(title: str, rows: list[tuple]) -> None:
    print(f"\n{title}")
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  " + "  ".join(str(c).ljust(w) for c, w in zip(r, widths)))


def emit(figures: dict) -> None:
    figures = {**figures, "machine": machine(), "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    print(orjson.dumps(figures).decode())
