"""Train and evaluate the sentiment analyzer on the VADER gold sets.

    python -m relevo.emotion.train --data-dir ../shared/datasets [--folds 5] [--save]

Evaluation is honest k-fold cross-validation over the union of the four sets (stratified
by set and class): every text is scored by a model that never saw it, then macro-F1 is
computed per set for VADER (compound at +-0.05) and for the trained analyzer. ``--save``
then fits on all texts and writes the shipped weights.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np

from relevo.emotion import gold
from relevo.emotion.text import WEIGHTS, VaderAnalyzer, features, fit_sentiment, vader_labels


@dataclass(slots=True)
class Evaluation:
    per_set: dict[str, dict[str, float]]
    folds: int


def macro_f1(truth: np.ndarray, predicted: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(truth, predicted, average="macro", labels=[0, 1, 2], zero_division=0))


@dataclass(slots=True)
class GoldFeatures:
    x: np.ndarray  # (n, 416) model input
    y: np.ndarray  # (n,) gold class
    which: np.ndarray  # (n,) index of the set each text comes from
    compound: np.ndarray  # (n,) VADER compound
    social: np.ndarray  # (n,) routed to VADER

    def set_weights(self) -> np.ndarray:
        """Each set weighs the same in training, whatever its size."""
        counts = np.bincount(self.which)
        return (len(self.which) / len(counts)) / counts[self.which]


def gold_features(sets: list[gold.GoldSet], encoder, vader: VaderAnalyzer) -> GoldFeatures:
    texts = [t for s in sets for t in s.texts]
    x, scores, social = features(encoder, vader, texts)
    y = np.concatenate([s.labels for s in sets])
    which = np.concatenate([np.full(len(s.texts), i) for i, s in enumerate(sets)])
    return GoldFeatures(x, y, which, scores[:, 3], social)


def cross_validate(sets: list[gold.GoldSet], data: GoldFeatures, folds: int = 5, seed: int = 0) -> Evaluation:
    from sklearn.model_selection import StratifiedKFold

    x, y, which = data.x, data.y, data.which
    weights = data.set_weights()
    predicted = np.empty(len(y), dtype=np.int64)
    strata = which * 3 + y
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, strata):
        model = fit_sentiment(x[train], y[train], weights[train], seed=seed)
        predicted[test] = model.predict_proba(x[test]).argmax(axis=1)
    vader_pred = vader_labels(data.compound)
    predicted = np.where(data.social, vader_pred, predicted)  # the analyzer's routing
    per_set = {}
    for i, s in enumerate(sets):
        m = which == i
        per_set[s.name] = {
            "n": int(m.sum()),
            "vader_f1": round(macro_f1(y[m], vader_pred[m]), 4),
            "relevo_f1": round(macro_f1(y[m], predicted[m]), 4),
        }
    return Evaluation(per_set, folds)


def main(argv: list[str] | None = None) -> None:
    import orjson

    from relevo.embeddings.minilm import MiniLMEncoder

    p = argparse.ArgumentParser(prog="python -m relevo.emotion.train", description=__doc__)
    p.add_argument("--data-dir", required=True, help="folder holding sentiment-gold (or the set files)")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--save", action="store_true", help=f"fit on everything and write {WEIGHTS.name}")
    args = p.parse_args(argv)
    sets = gold.load(args.data_dir)
    data = gold_features(sets, MiniLMEncoder(), VaderAnalyzer())
    result = cross_validate(sets, data, args.folds)
    print(f"{args.folds}-fold cross-validated macro-F1 (three classes, +-0.05)")
    for name, r in result.per_set.items():
        print(f"  {name:7s} n={r['n']:6d}  VADER {r['vader_f1']:.3f}  relevo {r['relevo_f1']:.3f}")
    if args.save:
        fit_sentiment(data.x, data.y, data.set_weights()).save(WEIGHTS)
        print(f"weights written to {WEIGHTS}")
    print(orjson.dumps({"folds": args.folds, "per_set": result.per_set}).decode())


if __name__ == "__main__":
    main()
