"""The ranker's input rows (pure numpy; no torch, no storage).

Row layout, float32: ``[x (6 streaming features), u * v (dim), s * v (dim)]`` where ``v``
is the item's unit vector, ``u`` and ``s`` the user's long-term and session vectors (zeros
when absent). The deep ranker reads the whole row; the edge scorer only the first six.
"""

from __future__ import annotations

import numpy as np

from relevo.ranking.features import FEATURES

N_DENSE = len(FEATURES)


def width(dim: int) -> int:
    return N_DENSE + 2 * dim


def ranker_rows(x: np.ndarray, item_vectors: np.ndarray, user_vector: np.ndarray | None,
                session_vector: np.ndarray | None) -> np.ndarray:
    """Rows for K candidates of one user: ``x`` (K, 6), ``item_vectors`` (K, dim) unit rows,
    ``user_vector`` / ``session_vector`` unit (dim,) or None. Returns (K, 6 + 2 dim) float32."""
    k, dim = item_vectors.shape
    out = np.zeros((k, width(dim)), dtype=np.float32)
    out[:, :N_DENSE] = x
    if user_vector is not None:
        np.multiply(item_vectors, user_vector, out=out[:, N_DENSE : N_DENSE + dim])
    if session_vector is not None:
        np.multiply(item_vectors, session_vector, out=out[:, N_DENSE + dim :])
    return out


def batch_rows(vectors: np.ndarray, users: np.ndarray, sessions: np.ndarray, popularity: np.ndarray,
               recency: np.ndarray) -> np.ndarray:
    """Training rows for B examples of M items each: ``vectors`` (B, M, dim) unit rows,
    ``users`` / ``sessions`` (B, dim) unit rows or zeros, ``popularity`` and ``recency``
    (B, M) in [0, 1]. The preference-match feature is 0 (stated preferences are not in
    the stream). Returns (B, M, 6 + 2 dim) float32, the same layout as ``ranker_rows``."""
    b, m, dim = vectors.shape
    out = np.zeros((b, m, width(dim)), dtype=np.float32)
    inter_u = out[:, :, N_DENSE : N_DENSE + dim]
    inter_s = out[:, :, N_DENSE + dim :]
    np.multiply(vectors, users[:, None, :], out=inter_u)
    np.multiply(vectors, sessions[:, None, :], out=inter_s)
    out[:, :, 0] = 1.0
    out[:, :, 1] = inter_u.sum(axis=2)
    out[:, :, 2] = inter_s.sum(axis=2)
    out[:, :, 3] = popularity
    out[:, :, 4] = recency
    return out
