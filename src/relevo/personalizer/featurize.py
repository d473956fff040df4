"""Azure Personalizer-style feature documents -> fixed-size vectors (feature hashing).

Personalizer takes context and action features as lists of JSON objects ("namespaces"),
nested at will: ``[{"timeOfDay": "Morning"}, {"user": {"profileType": "AnonymousUser"}}]``.
Each leaf becomes one hashed feature, as Vowpal Wabbit does: a string leaf is the
indicator of ``path=value``; a number is ``path`` with value sign(v) log1p(|v|) (so a price
of 10,000 does not swamp everything else); a boolean is 0/1; a list of scalars hashes
each element under the same path. The feature's slot is blake2b(path[=value]) mod dim and
its sign a second hash bit (collisions cancel on average instead of adding up). Vectors are
L2-normalised, so the bandit sees bounded rows whatever the caller sends.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any, Iterator

import numpy as np

MAX_DEPTH = 8


def _leaves(value: Any, path: str, depth: int = 0) -> Iterator[tuple[str, float]]:
    if depth > MAX_DEPTH:
        raise ValueError(f"features nest deeper than {MAX_DEPTH} levels at {path!r}")
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _leaves(inner, f"{path}.{key}" if path else str(key), depth + 1)
    elif isinstance(value, list):
        for inner in value:
            yield from _leaves(inner, path, depth + 1)
    elif isinstance(value, bool):
        yield path, 1.0 if value else 0.0
    elif isinstance(value, (int, float)):
        v = float(value)
        if not math.isfinite(v):
            raise ValueError(f"feature {path!r} is not a finite number")
        yield path, math.copysign(math.log1p(abs(v)), v)
    elif isinstance(value, str):
        yield f"{path}={value}", 1.0
    elif value is None:
        return
    else:
        raise ValueError(f"feature {path!r} has an unsupported type {type(value).__name__}")


def _slot(name: str, dim: int) -> tuple[int, float]:
    h = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little")
    return h % dim, (1.0 if (h >> 63) & 1 else -1.0)


def hash_features(documents: list | dict | None, dim: int, *, bias: bool = False, prefix: str = "") -> np.ndarray:
    """One (dim,) float64 unit vector for a feature document list. With ``bias`` the last
    slot is a constant 1 (before normalisation) and hashed features use the others."""
    out = np.zeros(dim)
    width = dim - 1 if bias else dim
    for path, value in _leaves(documents or [], prefix):
        if value:
            slot, sign = _slot(path, width)
            out[slot] += sign * value
    if bias:
        out[-1] = 1.0
    norm = np.linalg.norm(out)
    return out / norm if norm > 0 else out
