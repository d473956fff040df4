"""The real all-MiniLM-L6-v2 through onnxruntime agrees with the reference torch model."""

from __future__ import annotations

import numpy as np

TEXTS = [
    "Toy Story (1995). Adventure Animation Children Comedy Fantasy",
    "Heat (1995). Action Crime Thriller",
    "a short one",
    "A much longer text " * 40,  # over 256 tokens: truncated like the reference
]


def test_onnx_matches_sentence_transformers(encoder):
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(encoder.model_dir), device="cpu")
    expected = reference.encode(TEXTS, normalize_embeddings=True)
    got = encoder.encode(TEXTS)
    assert got.shape == (len(TEXTS), 384) and got.dtype == np.float32
    cos = (got * expected).sum(axis=1)
    assert cos.min() > 0.999, cos


def test_unit_rows_cache_and_semantics(encoder):
    v = encoder.encode(["horror film with zombies", "scary zombie movie", "tax return spreadsheet"])
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2
    np.testing.assert_array_equal(encoder.encode(["scary zombie movie"])[0], v[1])  # cached, identical
    assert encoder.encode([]).shape == (0, 384)
