"""The VADER gold-standard sentiment sets (Hutto & Gilbert, ICWSM 2014), read from a folder.

Each line is ``id<TAB>mean human rating (-4..+4)<TAB>text``. Three classes use the
paper's thresholds: positive above +0.05, negative below -0.05, neutral between.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from relevo.errors import ConfigError

SETS = {
    "tweets": "tweets_GroundTruth.txt",
    "movie": "movieReviewSnippets_GroundTruth.txt",
    "amazon": "amazonReviewSnippets_GroundTruth.txt",
    "nyt": "nytEditorialSnippets_GroundTruth.txt",
}
THRESHOLD = 0.05
LABELS = ("negative", "neutral", "positive")


def label_of(score: np.ndarray, threshold: float = THRESHOLD) -> np.ndarray:
    """0 = negative, 1 = neutral, 2 = positive, from a signed score (rating or compound)."""
    return np.where(score > threshold, 2, np.where(score < -threshold, 0, 1))


@dataclass(slots=True)
class GoldSet:
    name: str
    texts: list[str]
    ratings: np.ndarray  # float (n,), -4..+4

    @property
    def labels(self) -> np.ndarray:
        return label_of(self.ratings)


def load(folder: str | Path, names: tuple[str, ...] = tuple(SETS)) -> list[GoldSet]:
    folder = Path(folder)
    if (folder / "sentiment-gold").is_dir():
        folder = folder / "sentiment-gold"
    out = []
    for name in names:
        path = folder / SETS[name]
        if not path.exists():
            raise ConfigError(f"{path} not found: point the data folder at sentiment-gold")
        texts, ratings = [], []
        for line in path.read_bytes().decode("utf-8", errors="replace").splitlines():
            parts = line.rstrip("\r").split("\t", 2)
            if len(parts) != 3:
                continue
            texts.append(parts[2].strip())
            ratings.append(float(parts[1]))
        out.append(GoldSet(name, texts, np.asarray(ratings)))
    return out
