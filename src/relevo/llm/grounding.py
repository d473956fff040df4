"""The groundedness checker: an explanation may mention only the items and facts it was
given. Problems it names (a reason code each):

- ``unknown_item``: a catalog title that is neither the item, nor one of the user's recent
  items given as evidence;
- ``wrong_genre``: a genre (any tag of the catalog) that is not among the item's tags, the
  tags it shares, or the user's stated or session tags;
- ``fabricated_fact``: a number not in the evidence (years, counts, ratings, prices) or a
  capitalised name that appears nowhere in the evidence (a director, an actor, an award);
- ``unknown_id`` / ``empty`` / ``too_long``: the answer is about another item, says
  nothing, or is an essay.
"""

from __future__ import annotations

import re
from typing import Iterable

from relevo.llm.evidence import Evidence, short_title

_WORD = re.compile(r"[A-Za-z][A-Za-z'’\-]*")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")
_FUNCTION = frozenset(
    "a an the and or but of in on at to for with from by as is are was were be been it its this that these those "
    "you your yours we our they their he she his her i me my because since so if than then also both like liked "
    "likes love loved enjoy enjoyed watch watched watching engaged recommend recommended shown show new popular "
    "other users right now similar more most very just only".split())
MAX_CHARS = 400


class Checker:
    def __init__(self, titles: Iterable[str], vocabulary: Iterable[str]):
        self._titles = {_norm(short_title(t)) for t in titles if len(short_title(t)) >= 4}
        self._max_words = max((len(t.split()) for t in self._titles), default=1)
        self._vocabulary = {v.lower() for v in vocabulary}

    def problems(self, item_id: str, text: str, evidence: Evidence) -> list[str]:
        item = evidence.item(item_id)
        if item is None:
            return ["unknown_id"]
        text = text.strip()
        if not text:
            return ["empty"]
        if len(text) > MAX_CHARS:
            return ["too_long"]
        found: list[str] = []
        allowed_titles = {_norm(short_title(t)) for t in (item.title, *evidence.user.recent_titles)}
        if item.similar_to:
            allowed_titles.add(_norm(short_title(item.similar_to)))
        words = _WORD.findall(text)
        lowered = [w.lower() for w in words]
        for n in range(min(self._max_words, 8), 0, -1):
            for k in range(len(lowered) - n + 1):
                gram = " ".join(lowered[k : k + n])
                if gram in self._titles and gram not in allowed_titles and not _inside_allowed(gram, allowed_titles) \
                        and (n > 1 or words[k][0].isupper()) and gram not in self._vocabulary:
                    found.append("unknown_item")
                    break
            if "unknown_item" in found:
                break
        allowed_tags = {t.lower() for t in (*item.tags, *item.shared_tags, *item.liked_tags,
                                             *evidence.user.liked_tags, *evidence.user.session_tags)}
        lower_text = text.lower()
        for tag in self._vocabulary:
            if tag not in allowed_tags and re.search(rf"(?<![\w-]){re.escape(tag)}(?![\w-])", lower_text):
                found.append("wrong_genre")
                break
        facts = " ".join((item.title, *(item.tags), item.similar_to or "", *evidence.user.recent_titles,
                          *evidence.user.liked_tags, *evidence.user.session_tags)).lower()
        if any(number not in facts for number in _NUMBER.findall(text)):
            found.append("fabricated_fact")
        else:
            fact_words = set(_WORD.findall(facts))
            for k, word in enumerate(words):
                sentence_start = k == 0 or _starts_sentence(text, word, words, k)
                if word[0].isupper() and not sentence_start and word.lower() not in fact_words \
                        and word.lower() not in _FUNCTION and word not in ("I",):
                    found.append("fabricated_fact")
                    break
        return found


def _norm(title: str) -> str:
    return " ".join(w.lower() for w in _WORD.findall(title))


def _inside_allowed(gram: str, allowed: set[str]) -> bool:
    return any(gram in a for a in allowed)


def _starts_sentence(text: str, word: str, words: list[str], k: int) -> bool:
    """Whether ``words[k]`` follows a sentence end (or a colon) in ``text``."""
    idx = -1
    start = 0
    for j in range(k + 1):  # find the k-th word's position
        idx = text.find(words[j], start)
        start = idx + len(words[j])
    before = text[:idx].rstrip()
    return not before or before[-1] in ".!?:;\"'("
