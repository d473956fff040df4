"""Where the orchestrator meets the LLM layer: evidence from relevo's own data, then
explanations (explain=true) and re-ranking (low confidence), each within the deadline and
with the deterministic answer as the fallback."""

from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np

from relevo.llm.evidence import Evidence, ItemFacts, UserFacts
from relevo.llm.service import LLMService
from relevo.records import ScoredItem
from relevo.retrieval.catalog import Catalog
from relevo.retrieval.protocol import VectorIndex
from relevo.deadline import Deadline
from relevo.tiers.streaming import Served, UserContext

RECENT = 10
SIMILAR_MIN = 0.45


def evidence(catalog: Catalog, index: VectorIndex, ctx: UserContext, items: list[ScoredItem]) -> Evidence:
    recent = [i for i in (ctx.state.recent[-RECENT:] if ctx.state is not None else []) if i in catalog.items][::-1]
    tags = Counter(t for i in recent for t in catalog.items[i].tags)
    liked = tuple(ctx.prefs.get("liked_tags", []))
    user = UserFacts(tuple(catalog.items[i].title for i in recent), tuple(t for t, _ in tags.most_common(3)),
                     liked, tuple(ctx.prefs.get("disliked_tags", [])))
    shown = [s for s in items if s.item_id in catalog.items]
    sims = None
    have = [i for i in recent if i in index]
    if have and shown:
        present = [s.item_id for s in shown if s.item_id in index]
        if present:
            sims = dict(zip(present, index.get_many(present) @ index.get_many(have).T))
    facts = []
    for s in shown:
        item = catalog.items[s.item_id]
        similar, shared = None, ()
        if sims is not None and s.item_id in sims:
            row = sims[s.item_id]
            best = int(np.argmax(row))
            if row[best] >= SIMILAR_MIN and have[best] != s.item_id:
                similar = catalog.items[have[best]].title
                shared = tuple(t for t in item.tags if t in catalog.items[have[best]].tags)
        facts.append(ItemFacts(s.item_id, item.title, tuple(item.tags), s.explored, "popular" in s.reasons,
                               "new in the catalog" in s.reasons, similar, shared,
                               tuple(t for t in item.tags if t in liked)))
    return Evidence(user, tuple(facts), frozenset(t.lower() for t in catalog.tags()),
                    ctx.state.user_id if ctx.state is not None else "")


def explain(llm: LLMService, catalog: Catalog, index: VectorIndex, ctx: UserContext, served: Served,
            deadline: Deadline) -> Served:
    ev = evidence(catalog, index, ctx, served.recommendation.items)
    result = llm.explain(ev, deadline, consent=ctx.allowed.get("llm", False))
    items = [dataclasses.replace(s, reasons=[result.texts.get(s.item_id, s.reasons[0] if s.reasons else "")])
             for s in served.recommendation.items]
    block = {"source": result.source, "reason": result.reason, "backend": result.backend}
    record = {"use": "explain", **block, "cached": result.cached, "prompt": result.prompt,
              "output": (result.output or "")[:4000] or None, "problems": result.problems or None}
    decision = dataclasses.replace(served.decision, items=items, llm=record)
    rec = dataclasses.replace(served.recommendation, items=items, explanation=block)
    return Served(rec, decision, served.candidates)


def rerank(llm: LLMService, catalog: Catalog, index: VectorIndex, ctx: UserContext, served: Served,
           deadline: Deadline) -> Served:
    """The slate's order from the LLM (ids constrained to the slate). Each item keeps its
    inclusion propensity; its position changes (the decision records the re-rank)."""
    ev = evidence(catalog, index, ctx, served.recommendation.items)
    order, source, reason = llm.rerank(ev, deadline, consent=ctx.allowed.get("llm", False))
    if source != "llm":
        return served
    by_id = {s.item_id: k for k, s in enumerate(served.recommendation.items)}
    items = [served.recommendation.items[by_id[i]] for i in order]
    features = [served.decision.features[by_id[i]] for i in order] if served.decision.features else []
    decision = dataclasses.replace(served.decision, items=items, features=features,
                                   llm={"use": "rerank", "source": source, "reason": reason,
                                        "backend": llm.gateway.name if llm.gateway else None,
                                        "original_order": list(by_id)})
    return Served(dataclasses.replace(served.recommendation, items=items), decision, served.candidates)
