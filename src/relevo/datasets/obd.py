"""Open Bandit Dataset (ZOZO; Saito et al. 2020, arXiv:2008.07146) as a :class:`BanditLog`.

Reads ``<data_dir>/<policy>/<campaign>/<campaign>.csv`` and ``item_context.csv`` from
the same folder (``data_dir`` may be the ``obd`` folder or its parent); never copies them.

- context, float64 (n, dc): the four hashed user features one-hot encoded (a category
  outside the vocabulary encodes as all zeros), then the user-item affinity columns as
  they are (click counts, mostly 0).
- action_context, float64 (n_actions, da): item_feature_0 standardised over the items,
  then item_feature_1..3 one-hot. Their categories are numbered by first appearance in
  item-id order rather than by hash: the women ``item_context.csv`` under ``random/`` and
  under ``bts/`` use different hash strings for the same partition of items, and this
  numbering gives both the same columns.
- position: the file's 1..3 made 0-based; pscore: ``propensity_score``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from relevo.bandits.ope import BanditLog

POLICIES = ("random", "bts")
CAMPAIGNS = ("men", "women")
N_POSITIONS = 3
_USER_FEATURES = tuple(f"user_feature_{j}" for j in range(4))
_AFFINITY = "user-item_affinity_"


@dataclass(frozen=True, slots=True)
class ObdVocab:
    """Categories of each hashed user feature, in one-hot column order, and the number of
    affinity columns. Build it once (:func:`build_vocab`) to encode several files alike."""

    user_features: tuple[tuple[str, ...], ...]
    n_affinity: int

    @property
    def width(self) -> int:
        return sum(len(c) for c in self.user_features) + self.n_affinity


def _folder(data_dir: str | Path, policy: str, campaign: str) -> Path:
    if policy not in POLICIES:
        raise ValueError(f"unknown OBD policy {policy!r}; choose from {list(POLICIES)}")
    if campaign not in CAMPAIGNS:
        raise ValueError(f"unknown OBD campaign {campaign!r}; choose from {list(CAMPAIGNS)}")
    base = Path(data_dir)
    if not (base / policy).is_dir() and (base / "obd" / policy).is_dir():
        base = base / "obd"
    return base / policy / campaign


def _read(path: Path) -> tuple[list[str], list[list[str]]]:
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: point --data-dir / RELEVO_DATA_DIR at the Open Bandit Dataset")
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{path} is empty")
        return header, [row for row in reader if row]


def _columns(header: list[str], path: Path, names: tuple[str, ...]) -> list[int]:
    missing = [n for n in names if n not in header]
    if missing:
        raise ValueError(f"{path} lacks columns {missing}")
    return [header.index(n) for n in names]


def _affinity_columns(header: list[str]) -> list[int]:
    cols = [(int(h[len(_AFFINITY):]), i) for i, h in enumerate(header) if h.startswith(_AFFINITY)]
    return [i for _, i in sorted(cols)]


def build_vocab(data_dir: str | Path, campaign: str, policies: tuple[str, ...] = POLICIES) -> ObdVocab:
    """The user-feature vocabulary of ``campaign`` over the logs of ``policies`` (sorted
    hashes), so that the random and BTS logs get the same context columns."""
    seen: list[set[str]] = [set() for _ in _USER_FEATURES]
    n_affinity = None
    for policy in policies:
        path = _folder(data_dir, policy, campaign) / f"{campaign}.csv"
        header, rows = _read(path)
        cols = _columns(header, path, _USER_FEATURES)
        for j, c in enumerate(cols):
            seen[j].update(row[c] for row in rows)
        n = len(_affinity_columns(header))
        if n_affinity is not None and n != n_affinity:
            raise ValueError(f"{path} has {n} affinity columns, another log has {n_affinity}")
        n_affinity = n
    return ObdVocab(user_features=tuple(tuple(sorted(s)) for s in seen), n_affinity=n_affinity or 0)


def _vocab_of(header: list[str], rows: list[list[str]], path: Path) -> ObdVocab:
    cols = _columns(header, path, _USER_FEATURES)
    return ObdVocab(user_features=tuple(tuple(sorted({row[c] for row in rows})) for c in cols),
                    n_affinity=len(_affinity_columns(header)))


def encode_context(header: list[str], rows: list[list[str]], vocab: ObdVocab,
                   path: Path | str = "<rows>") -> np.ndarray:
    """Context of the log rows, float64 (n, vocab.width): one-hot user features, then affinities."""
    path = Path(path)
    cols = _columns(header, path, _USER_FEATURES)
    aff = _affinity_columns(header)
    if len(aff) != vocab.n_affinity:
        raise ValueError(f"{path} has {len(aff)} affinity columns, the vocabulary expects {vocab.n_affinity}")
    out = np.zeros((len(rows), vocab.width))
    offset = 0
    for c, cats in zip(cols, vocab.user_features):
        index = {cat: offset + k for k, cat in enumerate(cats)}
        for i, row in enumerate(rows):
            k = index.get(row[c])
            if k is not None:
                out[i, k] = 1.0
        offset += len(cats)
    if aff:
        out[:, offset:] = np.array([[row[c] for c in aff] for row in rows], dtype=np.float64)
    return out


def load_action_context(data_dir: str | Path, policy: str, campaign: str) -> np.ndarray:
    """Item features, float64 (n_items, 1 + one-hot widths), rows in item-id order."""
    path = _folder(data_dir, policy, campaign) / "item_context.csv"
    header, rows = _read(path)
    names = ("item_id", "item_feature_0", "item_feature_1", "item_feature_2", "item_feature_3")
    cols = _columns(header, path, names)
    rows = sorted(rows, key=lambda r: int(r[cols[0]]))
    ids = [int(r[cols[0]]) for r in rows]
    if ids != list(range(len(ids))):
        raise ValueError(f"{path}: item ids must be 0..{len(ids) - 1}")
    numeric = np.array([float(r[cols[1]]) for r in rows])
    std = numeric.std()
    blocks = [((numeric - numeric.mean()) / (std if std > 0 else 1.0))[:, None]]
    for c in cols[2:]:
        index: dict[str, int] = {}
        for r in rows:
            index.setdefault(r[c], len(index))
        onehot = np.zeros((len(rows), len(index)))
        onehot[np.arange(len(rows)), [index[r[c]] for r in rows]] = 1.0
        blocks.append(onehot)
    return np.hstack(blocks)


def load_obd(data_dir: str | Path, policy: str, campaign: str, *, vocab: ObdVocab | None = None) -> BanditLog:
    """The ``policy`` log of ``campaign`` (10,000 rows in the shipped sample).

    ``vocab``: the user-feature vocabulary (:func:`build_vocab`); None builds it from this
    file alone, which gives another file different context columns. Raises
    FileNotFoundError naming the missing path, ValueError for an unknown policy or campaign.
    """
    path = _folder(data_dir, policy, campaign) / f"{campaign}.csv"
    header, rows = _read(path)
    action_context = load_action_context(data_dir, policy, campaign)
    item, pos, click, ps = _columns(header, path, ("item_id", "position", "click", "propensity_score"))
    vocab = vocab or _vocab_of(header, rows, path)
    position = np.array([int(r[pos]) for r in rows], dtype=np.int64) - 1
    return BanditLog(
        action=np.array([int(r[item]) for r in rows], dtype=np.int64),
        reward=np.array([float(r[click]) for r in rows]),
        pscore=np.array([float(r[ps]) for r in rows]),
        n_actions=action_context.shape[0],
        position=position,
        context=encode_context(header, rows, vocab, path),
        action_context=action_context,
        n_positions=N_POSITIONS,
    )
