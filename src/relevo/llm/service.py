"""The LLM's three uses, each with its deterministic fallback and a reason code.

- ``explain``: a prompt grounded by retrieval (the items, their tags, the user's recent
  items, stated and session tags, the ranking evidence), JSON out (schema-constrained where
  the backend supports it); every explanation is checked (``grounding.Checker``) and any
  that fails is replaced by the reasoner's. Cached per (user, item, evidence).
- ``cold_start``: free text ("quiet sci-fi with strong female leads, nothing violent") ->
  ``{"liked_tags", "disliked_tags", "description"}`` restricted to the catalog's tags (an
  enum in the schema) -> preferences, and a text the encoder turns into the user's first
  vector. Fallback: tag names and a few synonyms found in the text, with negations.
- ``rerank``: the top k as ``{"order": [ids]}`` with the ids an enum of the candidates, so an
  answer outside the list cannot be produced; validated again (duplicates and missing ids
  are put back in the original order).

PII: every string that goes into a prompt is passed through ``privacy.pii.redact`` first
(the test asserts on what the server received). The caller checks the user's ``llm``
consent; without it nothing is sent.
"""

from __future__ import annotations

import dataclasses
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

import orjson

from relevo.llm import reasoner
from relevo.llm.backends import LLMError
from relevo.llm.evidence import Evidence
from relevo.llm.gateway import Gateway
from relevo.llm.grounding import Checker
from relevo.privacy import pii
from relevo.deadline import Deadline

SYSTEM_EXPLAIN = ("You explain why items were recommended to a user. Use only the facts given in the JSON input: "
                  "the item's title and tags, the user's recent items and tags. Do not mention any other title, "
                  "genre, person, number or fact. One short sentence per item. Answer in JSON.")
SYSTEM_COLD = ("Turn the user's description of what they want into preferences. Use only the tags listed. "
               "Answer in JSON.")
SYSTEM_RERANK = ("Order the candidate items from best to worst for this user, using only the facts given. "
                 "Answer in JSON with every candidate id once.")


@dataclass(slots=True)
class Explained:
    texts: dict[str, str]  # item id -> explanation
    source: str  # "llm" (every item grounded), "mixed" (some replaced), "reasoner"
    reason: str | None  # why the reasoner answered (no_consent, budget, timeout, ungrounded, ...)
    backend: str | None = None
    cached: bool = False
    prompt: str | None = None  # as sent (redacted)
    output: str | None = None
    problems: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StatedPreferences:
    """What a natural-language description says the user wants, and who read it."""

    liked_tags: list[str]
    disliked_tags: list[str]
    description: str  # redacted
    source: str = "reasoner"  # "llm" or "reasoner"
    reason: str | None = None  # why the reasoner read it


class LLMService:
    def __init__(self, gateway: Gateway | None, checker: Callable[[], Checker], *, max_tokens: int = 200,
                 min_budget_ms: float = 20.0, cache_size: int = 50_000, metrics=None):
        self.gateway = gateway
        self.checker = checker
        self.max_tokens = max_tokens
        self.min_budget_ms = min_budget_ms
        self.metrics = metrics
        self._explained: OrderedDict[tuple[str, bytes], str] = OrderedDict()
        self._lock = threading.Lock()  # request threads and the refresher share the cache
        self._cache_size = cache_size

    # -- explanations ------------------------------------------------------------------

    def explain(self, evidence: Evidence, deadline: Deadline, *, consent: bool) -> Explained:
        """Explanations for ``evidence.items``: from the cache where an earlier call (often the
        refresher's, in the background) explained the same item on the same evidence, from
        the LLM for the rest, and from the reasoner for whatever the LLM did not answer
        in time or got wrong."""
        fallback = reasoner.explain(evidence)
        reason = self._skip_reason(consent, deadline)
        if reason is not None:
            self._count("explain", "reasoner", reason)
            return Explained(fallback, "reasoner", reason)
        texts: dict[str, str] = {}
        for item in evidence.items:
            with self._lock:
                hit = self._explained.get((evidence.user_id, _explain_key(item, evidence)))
            if hit is not None:
                texts[item.item_id] = hit
        missing = tuple(i for i in evidence.items if i.item_id not in texts)
        if not missing:
            self._count("explain", "llm", "cache")
            return Explained(texts, "llm", None, self.gateway.name, cached=True)
        ask = Evidence(evidence.user, missing, evidence.vocabulary)
        prompt = _explain_prompt(ask)
        messages = [{"role": "system", "content": SYSTEM_EXPLAIN}, {"role": "user", "content": prompt}]
        schema = _explain_schema([i.item_id for i in missing])
        try:
            completion, _ = self.gateway.complete("explain", messages, deadline, max_tokens=self.max_tokens,
                                                  schema=schema, owner=evidence.user_id)
        except LLMError as exc:
            return self._partial(texts, fallback, missing, exc.reason, prompt, None, {})
        answers = _parse_explanations(completion.text)
        if answers is None:
            return self._partial(texts, fallback, missing, "invalid_output", prompt, completion.text, {})
        problems: dict[str, list[str]] = {}
        checker = self.checker()
        for item in missing:
            text = answers.get(item.item_id, "").strip()
            found = checker.problems(item.item_id, text, evidence) if text else ["missing"]
            if found:
                problems[item.item_id] = found
            else:
                texts[item.item_id] = text
                self._remember((evidence.user_id, _explain_key(item, evidence)), text)
        bad = [i for i in missing if i.item_id in problems]
        return self._partial(texts, fallback, bad, "ungrounded" if bad else None, prompt, completion.text, problems)

    def _partial(self, texts, fallback, missing, reason, prompt, output, problems) -> Explained:
        for item in missing:
            texts[item.item_id] = fallback[item.item_id]
        llm_count = len(texts) - len(missing)
        source = "llm" if not missing else ("mixed" if llm_count else "reasoner")
        self._count("explain", source, reason if missing else None)
        return Explained(texts, source, reason if missing else None, self.gateway.name, prompt=prompt,
                         output=output, problems=problems)

    # -- natural-language cold start ---------------------------------------------------------

    def cold_start(self, text: str, vocabulary: list[str], deadline: Deadline, *, consent: bool,
                   owner: str = "") -> StatedPreferences:
        fallback = keyword_preferences(text, vocabulary)
        reason = self._skip_reason(consent, deadline)
        if reason is None:
            redacted = pii.redact(text).text
            messages = [{"role": "system", "content": SYSTEM_COLD},
                        {"role": "user", "content": orjson.dumps({"tags": vocabulary, "text": redacted}).decode()}]
            try:
                completion, _ = self.gateway.complete("cold_start", messages, deadline, max_tokens=self.max_tokens,
                                                      schema=_cold_schema(vocabulary), owner=owner)
                parsed = _parse_cold(completion.text, vocabulary)
                if parsed is not None:
                    self._count("cold_start", "llm", "ok")
                    return dataclasses.replace(parsed, source="llm")
                reason = "invalid_output"
            except LLMError as exc:
                reason = exc.reason
        self._count("cold_start", "reasoner", reason)
        return dataclasses.replace(fallback, reason=reason)

    # -- re-ranking --------------------------------------------------------------------------

    def rerank(self, evidence: Evidence, deadline: Deadline, *, consent: bool) -> tuple[list[str], str, str | None]:
        """(order of item ids, source, reason): the candidates' order, changed only by a
        valid LLM answer; never an id outside ``evidence.items``."""
        original = [i.item_id for i in evidence.items]
        reason = self._skip_reason(consent, deadline)
        if reason is None:
            prompt = _explain_prompt(evidence)
            messages = [{"role": "system", "content": SYSTEM_RERANK}, {"role": "user", "content": prompt}]
            try:
                completion, _ = self.gateway.complete("rerank", messages, deadline, max_tokens=self.max_tokens,
                                                      schema=_rerank_schema(original), owner=evidence.user_id)
                order = constrained_order(completion.text, original)
                if order is not None:
                    self._count("rerank", "llm", "ok")
                    return order, "llm", None
                reason = "invalid_output"
            except LLMError as exc:
                reason = exc.reason
        self._count("rerank", "reasoner", reason)
        return original, "reasoner", reason

    # -- internals ---------------------------------------------------------------------------

    def _skip_reason(self, consent: bool, deadline: Deadline) -> str | None:
        if self.gateway is None:
            return "no_backend"
        if not consent:
            return "no_consent"
        if deadline.remaining_ms() < self.min_budget_ms:
            return "budget"
        if self.gateway.circuit_open:
            return "circuit_open"
        return None

    def forget(self, user_id: str) -> int:
        """Erasure: the user's cached explanations and the gateway's cached completions of
        prompts that carried their data. Returns how many entries were dropped."""
        with self._lock:
            keys = [k for k in self._explained if k[0] == user_id]
            for k in keys:
                self._explained.pop(k, None)
        return len(keys) + (self.gateway.forget(user_id) if self.gateway is not None else 0)

    def _remember(self, key: tuple[str, bytes], text: str) -> None:
        with self._lock:
            self._explained[key] = text
            self._explained.move_to_end(key)
            while len(self._explained) > self._cache_size:
                self._explained.popitem(last=False)

    def _count(self, use: str, source: str, reason: str | None) -> None:
        if self.metrics is not None:
            self.metrics.llm_answers.labels(use, source, reason or "ok").inc()

    def close(self) -> None:
        if self.gateway is not None:
            self.gateway.close()


def _explain_key(item, evidence: Evidence) -> bytes:
    return orjson.dumps([item, evidence.user], option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_DATACLASS)


def _explain_prompt(evidence: Evidence) -> str:
    red = lambda s: pii.redact(s).text  # noqa: E731
    user = evidence.user
    doc = {
        "user": {"recent_items": [red(t) for t in user.recent_titles], "session_tags": list(user.session_tags),
                 "liked_tags": list(user.liked_tags), "disliked_tags": list(user.disliked_tags)},
        "items": [{"item_id": i.item_id, "title": red(i.title), "tags": list(i.tags),
                   "similar_to": red(i.similar_to) if i.similar_to else None, "shared_tags": list(i.shared_tags),
                   "matches_liked_tags": list(i.liked_tags), "popular": i.popular, "new": i.new,
                   "exploring": i.explored} for i in evidence.items],
    }
    return orjson.dumps(doc).decode()


def _explain_schema(ids: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": {"explanations": {"type": "array", "items": {
        "type": "object", "properties": {"item_id": {"type": "string", "enum": ids},
                                         "text": {"type": "string", "maxLength": 240}},
        "required": ["item_id", "text"]}, "minItems": 1, "maxItems": len(ids)}}, "required": ["explanations"]}


def _parse_explanations(text: str) -> dict[str, str] | None:
    try:
        data = orjson.loads(text)
        return {str(e["item_id"]): str(e["text"]) for e in data["explanations"]}
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None


def _cold_schema(vocabulary: list[str]) -> dict[str, Any]:
    tags = {"type": "array", "items": {"type": "string", "enum": vocabulary}, "maxItems": 8}
    return {"type": "object", "properties": {"liked_tags": tags, "disliked_tags": tags,
                                             "description": {"type": "string", "maxLength": 200}},
            "required": ["liked_tags", "disliked_tags", "description"]}


def _parse_cold(text: str, vocabulary: list[str]) -> StatedPreferences | None:
    try:
        data = orjson.loads(text)
        known = set(vocabulary)
        liked = [t for t in dict.fromkeys(data["liked_tags"]) if t in known]
        disliked = [t for t in dict.fromkeys(data["disliked_tags"]) if t in known and t not in liked]
        return StatedPreferences(liked, disliked, pii.redact(str(data["description"])).text)
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None


def _rerank_schema(ids: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": {"order": {"type": "array", "items": {"type": "string", "enum": ids},
                                                       "minItems": 1, "maxItems": len(ids)}}, "required": ["order"]}


def constrained_order(text: str, original: list[str]) -> list[str] | None:
    """The LLM's order restricted to ``original`` (unknown ids dropped, repeats removed,
    missing ids appended in their original order); None if the answer is unreadable."""
    try:
        order = orjson.loads(text)["order"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    if not isinstance(order, list):
        return None
    known = set(original)
    kept = [i for i in dict.fromkeys(str(o) for o in order) if i in known]
    return kept + [i for i in original if i not in set(kept)]


_SYNONYMS = {"scifi": "Sci-Fi", "sci fi": "Sci-Fi", "science fiction": "Sci-Fi", "animated": "Animation",
             "cartoon": "Animation", "scary": "Horror", "funny": "Comedy", "romantic": "Romance",
             "love story": "Romance", "violent": "Action", "violence": "Action", "war": "War", "kids": "Children",
             "documentaries": "Documentary", "musical": "Musical", "crime": "Crime", "mystery": "Mystery"}
_NEGATION = re.compile(r"\b(?:no|not|nothing|without|never|avoid|hate|dislike|don't|do not)\b[^.,;]*", re.I)


def keyword_preferences(text: str, vocabulary: list[str]) -> StatedPreferences:
    """The reasoner's cold start: catalog tags (and a few synonyms) named in ``text``; those
    inside a negated phrase ("nothing violent", "no horror") are dislikes."""
    lower = text.lower()
    by_lower = {v.lower(): v for v in vocabulary}
    mentions: list[tuple[int, str]] = []
    for phrase, tag in [*((v, by_lower[v]) for v in by_lower), *((k, v) for k, v in _SYNONYMS.items())]:
        if tag.lower() not in by_lower:
            continue
        for m in re.finditer(rf"(?<![\w-]){re.escape(phrase)}(?![\w-])", lower):
            mentions.append((m.start(), by_lower[tag.lower()]))
    negated = [(m.start(), m.end()) for m in _NEGATION.finditer(lower)]
    liked: list[str] = []
    disliked: list[str] = []
    for pos, tag in sorted(mentions):
        (disliked if any(a <= pos < b for a, b in negated) else liked).append(tag)
    disliked = list(dict.fromkeys(disliked))
    liked = [t for t in dict.fromkeys(liked) if t not in disliked]
    return StatedPreferences(liked, disliked, pii.redact(text).text[:200])
