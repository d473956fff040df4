"""Offline evaluation of the serving tiers against held-out events."""

from relevo.evaluation.offline import (
    Split,
    coverage,
    item_popularity,
    ndcg_at_k,
    novelty,
    popularity_ranking,
    recall_at_k,
    replay,
    temporal_split,
)

__all__ = [
    "Split",
    "coverage",
    "item_popularity",
    "ndcg_at_k",
    "novelty",
    "popularity_ranking",
    "recall_at_k",
    "replay",
    "temporal_split",
]
