"""The candidate features the streaming tier's bandit scores (shape (K, 6), float64)."""

from __future__ import annotations

import numpy as np

FEATURES = ("bias", "user_similarity", "session_similarity", "popularity", "recency", "preference_match")
# Prior mean of the linear model: rank by taste and session first, then popularity.
PRIOR_MEAN = (0.0, 1.0, 0.8, 0.15, 0.05, 0.3)
RECENCY_SCALE_S = 30 * 86400.0


def candidate_features(
    item_vectors: np.ndarray,
    user_vector: np.ndarray | None,
    session_vector: np.ndarray | None,
    engagement: np.ndarray,
    max_engagement: float,
    added_at: np.ndarray,
    preference: np.ndarray,
    now: float,
) -> np.ndarray:
    """Rows for K candidates. ``item_vectors`` (K, dim) unit rows; ``user_vector`` and
    ``session_vector`` unit (dim,) or None; ``engagement``, ``added_at`` (epoch s) and
    ``preference`` (in [-1, 1]) have shape (K,)."""
    k = item_vectors.shape[0]
    x = np.zeros((k, len(FEATURES)), dtype=np.float64)
    x[:, 0] = 1.0
    if user_vector is not None:
        x[:, 1] = item_vectors @ user_vector
    if session_vector is not None:
        x[:, 2] = item_vectors @ session_vector
    x[:, 3] = np.log1p(np.maximum(engagement, 0.0)) / np.log1p(max(max_engagement, 1.0))
    x[:, 4] = np.exp(-np.maximum(now - added_at, 0.0) / RECENCY_SCALE_S)
    x[:, 5] = preference
    return x
