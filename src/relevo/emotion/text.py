"""Text affect: valence (VADER baseline, and a trained analyzer that beats it on reviews)
and emotion categories by zero-shot similarity in the MiniLM space.

The trained analyzer is a multinomial logistic regression over [MiniLM sentence vector
(384), VADER neg/neu/pos/compound (4)], trained on the four VADER gold sets; its weights
ship with the package (``weights/sentiment_lr.npz``, rebuilt by
``python -m relevo.emotion.train``). Serving is numpy only: softmax(x W + b).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

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


def features(encoder: TextEncoder, vader: VaderAnalyzer, texts: Sequence[str]) -> np.ndarray:
    """(n, 388) float32: MiniLM vector and VADER's four scores."""
    return np.hstack([encoder.encode(texts), vader.scores(texts).astype(np.float32)]).astype(np.float32)


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


def fit_sentiment(x: np.ndarray, labels: np.ndarray, c: float = 1.0, seed: int = 0) -> SentimentModel:
    """Multinomial logistic regression (scikit-learn, L2, balanced classes)."""
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=c, max_iter=2000, class_weight="balanced", random_state=seed)
    clf.fit(x, labels)
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

    def analyze(self, texts: Sequence[str]) -> list[TextAffect]:
        if not texts:
            return []
        vectors = self.encoder.encode(texts)
        x = np.hstack([vectors, self.vader.scores(texts).astype(np.float32)])
        p = self.model.predict_proba(x)
        e = self.emotions.proba(vectors)
        out = []
        for i in range(len(texts)):
            k = int(np.argmax(p[i]))
            j = int(np.argmax(e[i]))
            out.append(TextAffect(
                valence=round(float(p[i, 2] - p[i, 0]), 4),
                label=("negative", "neutral", "positive")[k],
                confidence=round(float(p[i, k]), 4),
                emotion=self.emotions.names[j],
                emotion_confidence=round(float(e[i, j]), 4),
            ))
        return out
