"""What relevo knows about a recommendation, as plain facts: the only material an
explanation may use (the deterministic reasoner and the LLM prompt are built from it, and
the groundedness checker accepts nothing outside it)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_YEAR = re.compile(r"\s*\((\d{4})\)\s*$")


@dataclass(frozen=True, slots=True)
class ItemFacts:
    item_id: str
    title: str
    tags: tuple[str, ...]
    explored: bool = False
    popular: bool = False  # among the most engaged-with items
    new: bool = False  # recently added, little engagement yet
    similar_to: str | None = None  # the title of the user's recent item nearest to this one
    shared_tags: tuple[str, ...] = ()  # tags it shares with ``similar_to``
    liked_tags: tuple[str, ...] = ()  # the user's stated likes it matches


@dataclass(frozen=True, slots=True)
class UserFacts:
    recent_titles: tuple[str, ...] = ()
    session_tags: tuple[str, ...] = ()  # most frequent tags of the session's items
    liked_tags: tuple[str, ...] = ()
    disliked_tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Evidence:
    user: UserFacts
    items: tuple[ItemFacts, ...]
    vocabulary: frozenset[str] = field(default_factory=frozenset)  # every tag of the catalog, lower-case
    user_id: str = ""  # never sent: it files cached answers under the user, for erasure

    def item(self, item_id: str) -> ItemFacts | None:
        return next((i for i in self.items if i.item_id == item_id), None)


def short_title(title: str) -> str:
    """``Heat (1995)`` -> ``Heat``."""
    return _YEAR.sub("", title).strip()
