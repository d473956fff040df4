"""The encoder interface: content in, unit vectors out.

The multi-modal issue adds image, audio and video encoders behind the same shape.
"""

from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np


class TextEncoder(Protocol):
    """Maps texts to L2-normalised vectors.

    ``encode(texts)`` returns float32 of shape (len(texts), dim); row i is unit-norm.
    """

    name: str
    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...
