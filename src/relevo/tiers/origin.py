"""The origin tier: wider candidates (ANN + popular + newest items), the deep ranker's
score on top of the full linear Thompson Sampling draw, under the request's deadline.

New users and cold items are its job: with no user vector it still ranks popular and
newly added items (the streaming tier would answer by popularity alone). The ranker adds
its learned residual over the linear prior, ``weight * (ranker(x) - prior . x)``, to every
posterior draw, so the propensities stay exact (the bonus is fixed given the candidates)
and an untrained ranker leaves the streaming order unchanged. When the deadline leaves no
room for the ranker, it is skipped and the answer says so (``ranker:budget``).
"""

from __future__ import annotations

import time

import numpy as np

from relevo.ranking.inputs import ranker_rows
from relevo.ranking.online import OnlineRanker
from relevo.deadline import CostModel, Deadline
from relevo.ranking.features import PRIOR_MEAN
from relevo.tiers.streaming import RecommendRequest, StreamingTier, UserContext

_PRIOR = np.asarray(PRIOR_MEAN, dtype=np.float32)


class OriginTier(StreamingTier):
    name = "origin"

    def __init__(self, *args, ranker: OnlineRanker | None, costs: CostModel, weight: float = 1.0,
                 cold_candidates: int = 50, popular_candidates: int = 50, **kwargs):
        super().__init__(*args, **kwargs)
        self.ranker = ranker
        self.costs = costs
        self.weight = weight
        self.cold_candidates = cold_candidates
        self.popular_candidates = popular_candidates

    def _can_rank(self, ctx: UserContext) -> bool:
        return True  # popular and new items are candidates even without a user vector

    def _candidates(self, req: RecommendRequest, ctx: UserContext) -> list[str]:
        ids = dict.fromkeys(super()._candidates(req, ctx))
        for rows, limit in ((self.catalog.popular_order(4 * self.popular_candidates), self.popular_candidates),
                            (self.catalog.newest_order(4 * self.cold_candidates), self.cold_candidates)):
            taken = 0
            for row in rows.tolist():
                if taken >= limit:
                    break
                item_id = self.catalog.id_at(row)
                if item_id in ctx.exclude or item_id in ids or item_id not in self.index:
                    continue
                if ctx.predicate is not None and not ctx.predicate(item_id):
                    continue
                ids[item_id] = None
                taken += 1
        return list(ids)

    def _bonus(self, x: np.ndarray, vectors: np.ndarray, ctx: UserContext, deadline: Deadline | None,
               skipped: list[str]):
        scorers = self.ranker.scorers if self.ranker is not None else None
        if scorers is None or scorers.deep is None or self.weight == 0.0:
            return None, None
        if deadline is not None and not deadline.fits(self.costs.expected_ms("ranker")):
            skipped.append("ranker:budget")
            self.costs.skipped("ranker")
            return None, None
        started = time.perf_counter()
        rows = ranker_rows(x, vectors, ctx.user_vec, ctx.session_vec)
        scores = scorers.deep.score(rows)
        self._stage("rank", started)
        self.costs.observe("ranker", (time.perf_counter() - started) * 1000)
        residual = scores - rows[:, : len(_PRIOR)] @ _PRIOR
        return self.weight * residual.astype(np.float64), scorers.version
