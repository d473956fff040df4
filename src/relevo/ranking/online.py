"""Online training of the deep ranker from the event stream, and its hot swap into serving.

The stream processor hands over one example per positive event (the user's long-term and
session vectors *before* the event, the item engaged with, the time). A background thread
trains on mini-batches drawn from a bounded buffer with sampled negatives:

- hard: the items nearest to the user in a random pool of 2,000 catalog items,
- uniform: random catalog items,
- in-batch: the other examples' positives (popular items, in proportion),

with a sampled-softmax loss (the positive against its negatives). Every ``publish_every_s``
the ranker and the edge scorer distilled from it (mean squared error to the ranker's
scores on the same rows) are exported to ONNX, stored as a new ModelStore version
(``ranker``) and swapped into serving: requests in flight keep the scorer they started
with. The trainer uses at most ``max_cpu_share`` of one core.

The buffer holds derived personal data (user vectors), so ``forget(user)`` drops a user's
examples; the trained weights are aggregates over all users, like the bandit posterior.
"""

from __future__ import annotations

import math
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import orjson
import structlog

from relevo.ranking.inputs import N_DENSE, batch_rows, width
from relevo.ranking.scorer import OnnxScorer
from relevo.retrieval.catalog import Catalog
from relevo.retrieval.protocol import VectorIndex
from relevo.storage.protocols import ModelStore
from relevo.ranking.features import RECENCY_SCALE_S

log = structlog.get_logger(__name__)

MODEL_NAME = "ranker"


@dataclass(frozen=True, slots=True)
class RankerConfig:
    buffer: int = 50_000  # examples kept (oldest dropped first)
    batch: int = 256
    hard_negatives: int = 4
    uniform_negatives: int = 2
    in_batch_negatives: int = 2
    pool: int = 2_000  # random catalog items the hard negatives are picked from
    lr: float = 2e-3
    epochs: float = 2.0  # training steps per round = epochs * new examples / batch
    min_new: int = 128  # new examples before a training round
    publish_every_s: float = 10.0
    max_cpu_share: float = 0.3
    seed: int = 0

    def __post_init__(self) -> None:
        if self.buffer < self.batch or self.batch < 2:
            raise ValueError("buffer must hold at least one batch and batch must be >= 2")
        if not 0 < self.max_cpu_share <= 1:
            raise ValueError("max_cpu_share must be in (0, 1]")


class Example(NamedTuple):
    user_id: str
    user: np.ndarray | None  # unit (dim,) float32
    session: np.ndarray | None
    item_id: str
    at: float  # when the event was received (recency is measured from here)


class Scorers(NamedTuple):
    """The scorers in service, swapped as one (a request reads this once)."""

    version: int
    deep: OnnxScorer | None
    edge: OnnxScorer | None


class OnlineRanker:
    def __init__(self, models: ModelStore, index: VectorIndex, catalog: Catalog, dim: int,
                 config: RankerConfig | None = None, metrics=None):
        self.models = models
        self.index = index
        self.catalog = catalog
        self.dim = dim
        self.config = config or RankerConfig()
        self.metrics = metrics
        self.scorers = Scorers(0, None, None)
        self._buffer: deque[Example] = deque(maxlen=self.config.buffer)
        self._buffer_lock = threading.Lock()
        self._train_lock = threading.Lock()
        self._new = 0
        self.examples_seen = 0
        self.steps = 0
        self.last_loss: float | None = None
        self._torch_state: bytes | None = None
        self._torch = None  # (ranker, edge, optimizer, edge optimizer), built on first training
        self._rng = np.random.default_rng(self.config.seed)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._published_at = 0.0
        self._dirty = False

    # -- lifecycle ---------------------------------------------------------------------

    def load(self) -> None:
        """The latest stored version, if its shape matches this catalog's vectors."""
        latest = self.models.latest(MODEL_NAME)
        if latest is None:
            return
        version, blob = latest
        try:
            header, torch_state, deep, edge = _unpack(blob)
            if header["dim"] != self.dim:
                log.warning("ranker_snapshot_other_dim", stored=header["dim"], dim=self.dim)
                return
            self.scorers = Scorers(version, OnnxScorer(deep, version, "deep"), OnnxScorer(edge, version, "edge"))
        except (ValueError, KeyError, RuntimeError) as exc:  # a bad snapshot is skipped, not fatal
            log.warning("ranker_snapshot_unusable", version=version, error=repr(exc))
            return
        self._torch_state = torch_state
        self.examples_seen = int(header.get("examples", 0))
        self.steps = int(header.get("steps", 0))

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="relevo-ranker", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._dirty:
            try:
                self.publish()
            except Exception as exc:  # noqa: BLE001 - closing must not fail on a lost snapshot
                log.warning("ranker_publish_failed", error=repr(exc))

    # -- examples ----------------------------------------------------------------------

    def observe(self, example: Example) -> None:
        """One positive event (called by the stream processor; never blocks on training)."""
        with self._buffer_lock:
            self._buffer.append(example)
            self._new += 1
            self.examples_seen += 1
        if self._new >= self.config.min_new:
            self._wake.set()

    def forget(self, user_id: str) -> int:
        """Drop ``user_id``'s examples from the buffer (erasure); returns how many."""
        with self._buffer_lock:
            kept = [e for e in self._buffer if e.user_id != user_id]
            removed = len(self._buffer) - len(kept)
            if removed:
                self._buffer = deque(kept, maxlen=self.config.buffer)
            return removed

    def buffered(self) -> int:
        return len(self._buffer)

    # -- training ----------------------------------------------------------------------

    def train(self, steps: int) -> float | None:
        """``steps`` mini-batch steps now (synchronous); returns the last loss."""
        if len(self._buffer) < 2 or len(self.catalog) < 2:
            return None
        with self._train_lock:
            ranker, edge, opt, edge_opt = self._models()
            import torch

            for _ in range(steps):
                rows, mask = self._batch()
                x = torch.from_numpy(rows)
                scores = ranker(x).masked_fill(torch.from_numpy(mask), float("-inf"))
                loss = torch.nn.functional.cross_entropy(scores, torch.zeros(len(rows), dtype=torch.long))
                opt.zero_grad()
                loss.backward()
                opt.step()
                # distil: the edge scorer learns the ranker's scores on the same rows
                keep = torch.from_numpy(~mask)
                target = scores.detach()[keep]
                edge_loss = torch.nn.functional.mse_loss(edge(x)[keep], target)
                edge_opt.zero_grad()
                edge_loss.backward()
                edge_opt.step()
                self.steps += 1
                self.last_loss = float(loss.detach())
            self._dirty = True
        return self.last_loss

    def publish(self) -> int:
        """Export both models to ONNX, store them as a new version and swap them in."""
        with self._train_lock:
            ranker, edge, _, _ = self._models()
            from relevo.ranking.model import state_bytes, to_onnx

            deep_onnx = to_onnx(ranker, width(self.dim))
            edge_onnx = to_onnx(edge, N_DENSE)  # the edge has the six dense features only
            torch_state = state_bytes(ranker, edge)
            header = {"dim": self.dim, "examples": self.examples_seen, "steps": self.steps, "loss": self.last_loss}
            version = self.models.put(MODEL_NAME, _pack(header, torch_state, deep_onnx, edge_onnx))
            self.scorers = Scorers(version, OnnxScorer(deep_onnx, version, "deep"), OnnxScorer(edge_onnx, version, "edge"))
            self._published_at = time.monotonic()
            self._dirty = False
        if self.metrics is not None:
            self.metrics.ranker_version.set(version)
        log.info("ranker_published", version=version, steps=self.steps, examples=self.examples_seen, loss=self.last_loss)
        return version

    def _run(self) -> None:
        c = self.config
        while not self._stop.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                new = self._new
                if new >= c.min_new:
                    self._new = 0
                    started = time.perf_counter()
                    steps = max(1, min(50, math.ceil(c.epochs * new / c.batch)))
                    self.train(steps)
                    spent = time.perf_counter() - started
                    self._stop.wait(spent * (1.0 / c.max_cpu_share - 1.0))  # CPU share cap
                if self._dirty and time.monotonic() - self._published_at >= c.publish_every_s:
                    self.publish()
            except Exception as exc:  # noqa: BLE001 - the trainer must outlive a bad batch
                log.warning("ranker_training_failed", error=repr(exc))
                self._stop.wait(1.0)

    def _models(self):
        if self._torch is None:
            import torch

            from relevo.ranking.model import DeepRanker, EdgeScorer, load_state_bytes

            torch.set_num_threads(1)
            torch.manual_seed(self.config.seed)
            ranker, edge = DeepRanker(self.dim), EdgeScorer()
            if self._torch_state is not None:
                load_state_bytes(self._torch_state, ranker, edge)
            opt = torch.optim.Adam(ranker.parameters(), lr=self.config.lr, weight_decay=1e-6)
            edge_opt = torch.optim.Adam(edge.parameters(), lr=self.config.lr * 5)
            self._torch = (ranker, edge, opt, edge_opt)
        return self._torch

    def _batch(self) -> tuple[np.ndarray, np.ndarray]:
        """Rows (B, 1 + negatives, width) with the positive in column 0, and a mask of
        negatives that are the positive itself (excluded from the softmax)."""
        c = self.config
        with self._buffer_lock:
            picks = self._rng.integers(0, len(self._buffer), size=min(c.batch, len(self._buffer)))
            examples = [self._buffer[i] for i in picks.tolist()]
        b, dim = len(examples), self.dim
        users = np.zeros((b, dim), dtype=np.float32)
        sessions = np.zeros((b, dim), dtype=np.float32)
        for i, e in enumerate(examples):
            if e.user is not None:
                users[i] = e.user
            if e.session is not None:
                sessions[i] = e.session
        positives = [e.item_id for e in examples]
        pool = [i for i in self.catalog.sample_ids(self._rng, c.pool) if i in self.index]
        pool_vectors = self.index.get_many(pool)
        near = np.argsort(-(users + sessions) @ pool_vectors.T, axis=1)[:, : 4 * c.hard_negatives]
        columns: list[list[str]] = [positives]
        for j in range(c.hard_negatives):  # a random few of the nearest, not always the same
            pick = near[np.arange(b), self._rng.integers(0, near.shape[1], size=b)]
            columns.append([pool[p] for p in pick.tolist()])
        uniform = self.catalog.sample_ids(self._rng, b * c.uniform_negatives)
        for j in range(c.uniform_negatives):
            columns.append(uniform[j * b : (j + 1) * b])
        for j in range(c.in_batch_negatives):
            shift = self._rng.integers(1, b) if b > 1 else 0
            columns.append(positives[shift:] + positives[:shift])
        ids = [list(row) for row in zip(*columns)]  # (B, M)
        m = len(columns)
        flat = [i for row in ids for i in row]
        present = np.fromiter((i in self.index for i in flat), dtype=bool, count=len(flat))
        vectors = np.zeros((len(flat), dim), dtype=np.float32)
        if present.any():
            vectors[present] = self.index.get_many([i for i, p in zip(flat, present) if p])
        rows = self.catalog.rows_or_none(flat)
        known = rows >= 0
        engagement = np.where(known, self.catalog.engagement[np.maximum(rows, 0)], 0.0)
        added = np.where(known, self.catalog.added_at[np.maximum(rows, 0)], 0.0)
        at = np.repeat(np.array([e.at for e in examples]), m)
        popularity = np.log1p(np.maximum(engagement, 0.0)) / np.log1p(max(self.catalog.max_engagement, 1.0))
        recency = np.exp(-np.maximum(at - added, 0.0) / RECENCY_SCALE_S)
        out = batch_rows(vectors.reshape(b, m, dim), users, sessions, popularity.reshape(b, m), recency.reshape(b, m))
        pos = np.array(positives, dtype=object)[:, None]
        mask = (np.array(ids, dtype=object) == pos) | ~(present & known).reshape(b, m)
        mask[:, 0] = False
        return out, mask


def _pack(header: dict, *parts: bytes) -> bytes:
    head = orjson.dumps({**header, "sizes": [len(p) for p in parts]})
    return struct.pack("<I", len(head)) + head + b"".join(parts)


def _unpack(blob: bytes) -> tuple[dict, bytes, bytes, bytes]:
    if len(blob) < 4:
        raise ValueError("ranker snapshot is truncated")
    (size,) = struct.unpack_from("<I", blob)
    header = orjson.loads(blob[4 : 4 + size])
    sizes = header["sizes"]
    if len(sizes) != 3 or 4 + size + sum(sizes) != len(blob):
        raise ValueError("ranker snapshot sizes do not match its length")
    parts, offset = [], 4 + size
    for n in sizes:
        parts.append(blob[offset : offset + n])
        offset += n
    return header, parts[0], parts[1], parts[2]
