"""The deterministic reasoner, the groundedness checker (crafted hallucinations and
correct outputs), the cold-start fallback and the re-rank constraint: pure, no model."""

from __future__ import annotations

import pytest

from relevo.llm import reasoner
from relevo.llm.evidence import Evidence, ItemFacts, UserFacts
from relevo.llm.grounding import Checker
from relevo.llm.service import constrained_order, keyword_preferences

TITLES = ["Alien (1979)", "Aliens (1986)", "The Thing (1982)", "Toy Story (1995)", "Heat (1995)",
          "Blade Runner (1982)", "Finding Nemo (2003)"]
TAGS = ["Horror", "Sci-Fi", "Animation", "Children", "Action", "Crime", "Thriller", "Comedy"]


@pytest.fixture
def evidence():
    user = UserFacts(recent_titles=("Alien (1979)", "Blade Runner (1982)"), session_tags=("Sci-Fi", "Horror"),
                     liked_tags=("Sci-Fi",))
    items = (
        ItemFacts("m2", "Aliens (1986)", ("Action", "Horror", "Sci-Fi"), similar_to="Alien (1979)",
                  shared_tags=("Horror", "Sci-Fi"), liked_tags=("Sci-Fi",)),
        ItemFacts("m3", "The Thing (1982)", ("Horror", "Sci-Fi"), explored=True),
        ItemFacts("m4", "Toy Story (1995)", ("Animation", "Children"), popular=True),
    )
    return Evidence(user, items, frozenset(t.lower() for t in TAGS))


@pytest.fixture
def checker():
    return Checker(TITLES, TAGS)


def test_the_reasoner_explains_from_evidence_and_passes_the_checker(evidence, checker):
    texts = reasoner.explain(evidence)
    assert texts["m2"] == ("Because you engaged with Alien: both are Horror and Sci-Fi. "
                           "It matches your stated liking for Sci-Fi.")
    assert "learn whether it suits you" in texts["m3"] and "Popular with other users" in texts["m4"]
    for item_id, text in texts.items():
        assert checker.problems(item_id, text, evidence) == [], (item_id, text)


@pytest.mark.parametrize("text", [
    "Because you liked Alien, another Sci-Fi horror classic.",
    "A Horror and Sci-Fi sequel to Alien, which you watched.",
    "You enjoyed Blade Runner and this shares its Sci-Fi tone.",
])
def test_correct_outputs_are_accepted(evidence, checker, text):
    assert checker.problems("m2", text, evidence) == []


@pytest.mark.parametrize("item_id, text, problem", [
    ("m2", "Because you loved Finding Nemo, you will like this.", "unknown_item"),  # an item not in evidence
    ("m2", "Fans of Heat will enjoy this one.", "unknown_item"),
    ("m4", "A gripping Crime thriller for your evening.", "wrong_genre"),  # Toy Story is not crime
    ("m3", "A Comedy like the ones you watched.", "wrong_genre"),
    ("m2", "Directed by James Cameron, a sequel to Alien.", "fabricated_fact"),  # a person not in evidence
    ("m2", "It won 2 Oscars and sequels Alien.", "fabricated_fact"),  # a number not in evidence
    ("m2", "Rated 9.1 by critics.", "fabricated_fact"),
    ("m9", "Because you engaged with Alien.", "unknown_id"),
    ("m2", "   ", "empty"),
    ("m2", "Sci-Fi " * 80, "too_long"),
])
def test_crafted_hallucinations_are_caught(evidence, checker, item_id, text, problem):
    assert problem in checker.problems(item_id, text, evidence), text


def test_years_in_titles_are_facts(evidence, checker):
    assert checker.problems("m2", "The 1986 sequel to Alien (1979).", evidence) == []


def test_cold_start_fallback_reads_tags_synonyms_and_negations():
    prefs = keyword_preferences("quiet sci-fi with strong female leads, nothing violent or scary", TAGS)
    assert prefs.liked_tags == ["Sci-Fi"] and prefs.disliked_tags == ["Action", "Horror"]
    assert keyword_preferences("funny animated films for kids", TAGS).liked_tags == ["Comedy", "Animation",
                                                                                       "Children"]
    assert "[EMAIL]" in keyword_preferences("I'm into crime, mail me at a@b.com", TAGS).description


def test_rerank_answers_stay_inside_the_candidates():
    original = ["a", "b", "c", "d"]
    assert constrained_order('{"order": ["c", "a"]}', original) == ["c", "a", "b", "d"]
    assert constrained_order('{"order": ["zzz", "c", "c", "b"]}', original) == ["c", "b", "a", "d"]
    assert constrained_order("not json", original) is None
    assert constrained_order('{"order": "c"}', original) is None
