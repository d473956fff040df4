"""Serving tiers. This release has the streaming tier and the popularity fallback; the
tiers issue adds the edge cache, the origin's deep ranker and the orchestrator."""
