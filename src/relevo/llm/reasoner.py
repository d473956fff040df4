"""The deterministic reasoner: an explanation per item from relevo's own evidence, in
plain templated language. The fallback whenever the LLM is not used or not trusted, and
the baseline an LLM must beat."""

from __future__ import annotations

from relevo.llm.evidence import Evidence, ItemFacts, short_title


def explain(evidence: Evidence) -> dict[str, str]:
    """item id -> one or two sentences, each grounded in ``evidence`` by construction."""
    return {item.item_id: explain_item(item, evidence) for item in evidence.items}


def explain_item(item: ItemFacts, evidence: Evidence) -> str:
    parts: list[str] = []
    if item.similar_to:
        shared = f": both are {_join(item.shared_tags)}" if item.shared_tags else ""
        parts.append(f"Because you engaged with {short_title(item.similar_to)}{shared}")
    if item.liked_tags:
        parts.append(f"It matches your stated liking for {_join(item.liked_tags)}")
    session = [t for t in evidence.user.session_tags if t in item.tags and t not in item.shared_tags]
    if session and len(parts) < 2:
        parts.append(f"You have been watching {_join(session[:2])} this session")
    if item.explored and len(parts) < 2:
        parts.append("Shown partly to learn whether it suits you")
    if item.popular and len(parts) < 2:
        parts.append("Popular with other users right now")
    if item.new and len(parts) < 2:
        parts.append("New in the catalog")
    if not parts:
        parts.append(f"Related to your recent activity{f' in {_join(item.tags[:2])}' if item.tags else ''}")
    return ". ".join(parts[:2]) + "."


def _join(words) -> str:
    words = list(words)
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]
