"""Text affect on the VADER gold sets: cross-validated macro-F1 of the trained analyzer vs
VADER, and the shipped analyzer's behaviour."""

from __future__ import annotations

import numpy as np
import pytest

from relevo.emotion import gold
from relevo.emotion.text import TextAffectAnalyzer, VaderAnalyzer


@pytest.fixture(scope="session")
def gold_dir(movielens_dir):
    folder = movielens_dir.parent / "sentiment-gold"
    assert folder.is_dir(), folder
    return folder


def test_gold_sets_load_with_paper_thresholds(gold_dir):
    sets = {s.name: s for s in gold.load(gold_dir)}
    assert {k: len(v.texts) for k, v in sets.items()} == {"tweets": 4200, "movie": 10605, "amazon": 3708, "nyt": 5190}
    np.testing.assert_array_equal(gold.label_of(np.array([-0.06, -0.05, 0.0, 0.05, 0.06])), [0, 1, 1, 1, 2])


def test_cross_validated_analyzer_beats_vader_on_reviews(gold_dir, encoder):
    """5-fold CV on a stratified sample of every set (1,200 texts each): the analyzer beats
    VADER on movie and Amazon reviews and does not lose more than 0.02 on tweets.
    The full-size figures are in BENCHMARKS.md (python -m benchmarks.emotion)."""
    from relevo.emotion.train import cross_validate, gold_features

    rng = np.random.default_rng(0)
    sets = []
    for s in gold.load(gold_dir):
        keep = rng.choice(len(s.texts), 1200, replace=False)
        sets.append(gold.GoldSet(s.name, [s.texts[i] for i in keep], s.ratings[keep]))
    result = cross_validate(sets, gold_features(sets, encoder, VaderAnalyzer()), folds=5).per_set
    assert result["movie"]["relevo_f1"] >= result["movie"]["vader_f1"] + 0.05, result
    assert result["amazon"]["relevo_f1"] >= result["amazon"]["vader_f1"] + 0.03, result
    assert result["tweets"]["relevo_f1"] >= result["tweets"]["vader_f1"] - 0.03, result


def test_shipped_analyzer_valence_and_emotions(encoder):
    analyzer = TextAffectAnalyzer(encoder)
    texts = ["I absolutely love this, it made my day!", "This is the worst purchase I have ever made. Furious.",
             "The package arrived on Tuesday.", "I'm terrified of what happens next, so scary."]
    out = analyzer.analyze(texts)
    assert out[0].label == "positive" and out[0].valence > 0.5
    assert out[1].label == "negative" and out[1].valence < -0.5
    assert abs(out[2].valence) < abs(out[0].valence)
    assert out[0].emotion == "joy" and out[1].emotion in ("anger", "disgust") and out[3].emotion == "fear"
    assert all(0 < a.confidence <= 1 and 0 < a.emotion_confidence <= 1 for a in out)
    assert analyzer.analyze([]) == []
