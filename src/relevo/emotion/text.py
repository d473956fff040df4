"""Text affect: valence (VADER baseline, and a trained analyzer that beats it on reviews)
and emotion categories by zero-shot similarity in the MiniLM space.

The trained analyzer is a multinomial logistic regression over the MiniLM sentence
vector, VADER's four scores and VADER's class, five style cues of the text (length,
mentions/hashtags/links, exclamations, capitals, emoticons) and the style x VADER
interactions; it is trained on the four VADER gold sets with each set weighted equally,
and its weights ship with the package (``weights/sentiment_lr.npz``, rebuilt by
``python -m relevo.emotion.train --save``). Serving is numpy only: softmax(x W + b).

Texts styled like social media (a mention, hashtag, link or emoticon) are routed to VADER,
whose lexicon was built for them; everything else to the trained model. Cross-validated
on the gold sets this keeps VADER's F1 on tweets and beats it on movie reviews, Amazon
reviews and editorials (figures in BENCHMARKS.md). The routing rule was chosen on these
same sets, so its figures are slightly optimistic for that choice.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import re

import numpy as np

from relevo.embeddings.encoder import TextEncoder

WEIGHTS = Path(__file__).with_name("weights") / "sentiment_lr.npz"

# Ekman's six basic emotions, each described in words the encoder places near
# texts that express it.
EMOTIONS: dict[str, str] = {
    "joy": "I am so happy, delighted and joyful; this is wonderful and I love it.",
    "sadness": "I feel sad, heartbroken and disappointed; this is depressing and I miss it.",
    "anger": "I am angry and furious; this is outrageous, infuriating and unacceptable.",
    "fear": "I am scared, anxious and afraid; this is frightening and worrying.",
    "surprise": "I am surprised and amazed; this is unexpected, I did not see that coming.",
    "disgust": "This is disgusting, gross and revolting; it makes me feel sick.",
}
POSITIVE_EMOTIONS = ("joy", "surprise")


@dataclass(slots=True)
class TextAffect:
    """``valence`` in [-1, 1]; ``label`` negative/neutral/positive with ``confidence``;
    ``emotion`` the most likely category with its probability ``emotion_confidence``."""

    valence: float
    label: str
    confidence: float
    emotion: str
    emotion_confidence: float


class VaderAnalyzer:
    """VADER (Hutto & Gilbert 2014) compound score; three classes at +-0.05."""

    name = "vader"

    def __init__(self) -> None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self._vader = SentimentIntensityAnalyzer()

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        """(n, 4) float: neg, neu, pos, compound."""
        out = np.empty((len(texts), 4))
        for i, text in enumerate(texts):
            s = self._vader.polarity_scores(text)
            out[i] = (s["neg"], s["neu"], s["pos"], s["compound"])
        return out

    def valence(self, texts: Sequence[str]) -> np.ndarray:
        return self.scores(texts)[:, 3]


_SOCIAL = re.compile(r"@\w|#\w|http|www\.")
_EMOTICON = re.compile(r"[:;=][-']?[)(DPp]|<3|\blol\b|\bomg\b", re.IGNORECASE)
VADER_THRESHOLD = 0.05


def style_cues(texts: Sequence[str]) -> np.ndarray:
    """(n, 5): log length / 6, mention-hashtag-link, exclamations (capped 3) / 3,
    share of capitals, emoticon or chat abbreviation."""
    out = np.empty((len(texts), 5))
    for i, t in enumerate(texts):
        n = max(len(t), 1)
        out[i] = (np.log1p(len(t)) / 6, float(bool(_SOCIAL.search(t))), min(t.count("!"), 3) / 3,
                  sum(c.isupper() for c in t) / n, float(bool(_EMOTICON.search(t))))
    return out


def is_social(style: np.ndarray) -> np.ndarray:
    """Rows of :func:`style_cues` that look like social-media text -> routed to VADER."""
    return (style[:, 1] > 0) | (style[:, 4] > 0)


def vader_labels(compound: np.ndarray) -> np.ndarray:
    """0 negative, 1 neutral, 2 positive at VADER's +-0.05."""
    return np.where(compound > VADER_THRESHOLD, 2, np.where(compound < -VADER_THRESHOLD, 0, 1))


def assemble(vectors: np.ndarray, vader_scores: np.ndarray, style: np.ndarray) -> np.ndarray:
    """(n, 416) float32 model input from MiniLM vectors (n, 384), VADER scores (n, 4) and
    style cues (n, 5)."""
    onehot = np.eye(3)[vader_labels(vader_scores[:, 3])]
    inter = (style[:, :, None] * vader_scores[:, None, :]).reshape(len(style), -1)
    return np.hstack([vectors, 4 * vader_scores, 4 * onehot, style, 4 * inter]).astype(np.float32)


def features(encoder: TextEncoder, vader: VaderAnalyzer, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(model input (n, 416), VADER scores (n, 4), social mask (n,)) for ``texts``."""
    scores = vader.scores(texts)
    style = style_cues(texts)
    return assemble(encoder.encode(texts), scores, style), scores, is_social(style)


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class SentimentModel:
    """Three-class sentiment (negative, neutral, positive) from :func:`features`.

    ``predict_proba(x) -> (n, 3)``; valence = P(positive) - P(negative), in [-1, 1]."""

    name = "minilm+vader-lr"

    def __init__(self, weights: np.ndarray, bias: np.ndarray):
        self.weights = np.asarray(weights, dtype=np.float32)  # (388, 3)
        self.bias = np.asarray(bias, dtype=np.float32)  # (3,)

    @classmethod
    def load(cls, path: str | Path = WEIGHTS) -> "SentimentModel":
        data = np.load(Path(path))
        return cls(data["weights"], data["bias"])

    def save(self, path: str | Path = WEIGHTS) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        np.savez(Path(path), weights=self.weights, bias=self.bias)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return softmax(np.asarray(x, dtype=np.float32) @ self.weights + self.bias)


def fit_sentiment(x: np.ndarray, labels: np.ndarray, sample_weight: np.ndarray | None = None,
                  c: float = 4.0, seed: int = 0) -> SentimentModel:
    """Multinomial logistic regression (scikit-learn, L2)."""
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=c, max_iter=3000, random_state=seed)
    clf.fit(x, labels, sample_weight=sample_weight)
    return SentimentModel(clf.coef_.T.copy(), clf.intercept_.copy())


class EmotionCategorizer:
    """Zero-shot emotion categories: softmax over cosine similarity to the descriptions in
    :data:`EMOTIONS` (temperature 0.05), in the encoder's space."""

    def __init__(self, encoder: TextEncoder, temperature: float = 0.05):
        self.names = list(EMOTIONS)
        self.anchors = encoder.encode([EMOTIONS[n] for n in self.names])
        self.temperature = temperature

    def proba(self, vectors: np.ndarray) -> np.ndarray:
        """(n, 6) probabilities from unit text vectors (n, dim)."""
        return softmax((vectors @ self.anchors.T) / self.temperature)


class TextAffectAnalyzer:
    """Valence, class and emotion for texts, in one pass of the encoder."""

    def __init__(self, encoder: TextEncoder, model: SentimentModel | None = None):
        self.encoder = encoder
        self.vader = VaderAnalyzer()
        self.model = model or SentimentModel.load()
        self.emotions = EmotionCategorizer(encoder)

    def _category(self, proba: np.ndarray, label: int) -> int:
        """Most likely category whose polarity agrees with the sentiment class (the
        zero-shot categories alone tell polarity poorly; see BENCHMARKS.md)."""
        if label == 1:
            return int(np.argmax(proba))
        allowed = np.array([(n in POSITIVE_EMOTIONS) == (label == 2) for n in self.emotions.names])
        return int(np.argmax(np.where(allowed, proba, -1.0)))

    def valences(self, texts: Sequence[str], vectors: np.ndarray) -> np.ndarray:
        """Valence (n,) in [-1, 1] of texts whose MiniLM vectors (n, 384) are already known."""
        scores = self.vader.scores(texts)
        style = style_cues(texts)
        p = self.model.predict_proba(assemble(vectors, scores, style))
        return np.where(is_social(style), scores[:, 3], p[:, 2] - p[:, 0])

    def analyze(self, texts: Sequence[str]) -> list[TextAffect]:
        if not texts:
            return []
        vectors = self.encoder.encode(texts)
        scores = self.vader.scores(texts)
        style = style_cues(texts)
        p = self.model.predict_proba(assemble(vectors, scores, style))
        social = is_social(style)
        e = self.emotions.proba(vectors)
        out = []
        for i in range(len(texts)):
            if social[i]:  # VADER's own domain: its compound, its class
                compound = float(scores[i, 3])
                k = int(vader_labels(np.array([compound]))[0])
                valence, confidence = compound, 0.5 + 0.5 * abs(compound) if k != 1 else 1.0 - 10 * abs(compound)
            else:
                k = int(np.argmax(p[i]))
                valence, confidence = float(p[i, 2] - p[i, 0]), float(p[i, k])
            j = self._category(e[i], k)
            out.append(TextAffect(
                valence=round(valence, 4),
                label=("negative", "neutral", "positive")[k],
                confidence=round(confidence, 4),
                emotion=self.emotions.names[j],
                emotion_confidence=round(float(e[i, j]), 4),
            ))
        return out
