"""An exported scorer served through onnxruntime (no torch at serving time)."""

from __future__ import annotations

import numpy as np


class OnnxScorer:
    """``score(rows)`` -> (K,) float32 for rows of the layout the model was exported with.

    Built from the ONNX bytes in memory; one intra-op thread (requests run in parallel)."""

    def __init__(self, onnx_bytes: bytes, version: int, kind: str):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
        self.width = int(self.session.get_inputs()[0].shape[1])
        self.version = version
        self.kind = kind

    def score(self, rows: np.ndarray) -> np.ndarray:
        if rows.ndim != 2 or rows.shape[1] < self.width:
            raise ValueError(f"{self.kind} scorer takes rows of width {self.width}; got {rows.shape}")
        x = np.ascontiguousarray(rows[:, : self.width], dtype=np.float32)
        return self.session.run(None, {"x": x})[0].reshape(-1)
