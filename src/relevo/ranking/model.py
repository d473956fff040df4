"""The torch models: the deep ranker (origin) and the lightweight scorer (edge).

Both start from the streaming tier's linear prior (``PRIOR_MEAN . x``) plus a learned
residual whose last layer starts at zero, so an untrained model ranks exactly as the
streaming tier's posterior mean would, and training only moves it from there. Imported
only by the trainer: serving runs the ONNX exports (``ranking.scorer``).
"""

from __future__ import annotations

import io

import torch
from torch import nn

from relevo.ranking.inputs import N_DENSE
from relevo.ranking.features import PRIOR_MEAN


class DeepRanker(nn.Module):
    """DCN-v2-style cross layer over the six dense features, a projection of the user x item
    and session x item interactions, and an MLP over both."""

    def __init__(self, dim: int, hidden: int = 64, proj: int = 32):
        super().__init__()
        self.dim = dim
        self.cross = nn.Linear(N_DENSE, N_DENSE)
        self.proj = nn.Linear(2 * dim, proj)
        self.mlp = nn.Sequential(nn.Linear(N_DENSE + proj, hidden), nn.ReLU(), nn.Linear(hidden, hidden // 2),
                                 nn.ReLU(), nn.Linear(hidden // 2, 1))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)
        nn.init.zeros_(self.cross.weight)
        nn.init.zeros_(self.cross.bias)
        self.register_buffer("prior", torch.tensor(PRIOR_MEAN, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dense = x[..., :N_DENSE]
        crossed = dense * self.cross(dense) + dense  # x0 * (W x0 + b) + x0
        h = torch.cat([crossed, torch.relu(self.proj(x[..., N_DENSE:]))], dim=-1)
        return dense @ self.prior + self.mlp(h).squeeze(-1)


class EdgeScorer(nn.Module):
    """Six dense features -> 16 -> 1, distilled from the deep ranker's scores."""

    def __init__(self, hidden: int = 16):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(N_DENSE, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)
        self.register_buffer("prior", torch.tensor(PRIOR_MEAN, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dense = x[..., :N_DENSE]
        return dense @ self.prior + self.mlp(dense).squeeze(-1)


def to_onnx(model: nn.Module, width: int) -> bytes:
    """Export ``model`` (rows of ``width`` floats -> one score each) to ONNX bytes."""
    model.eval()
    buffer = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(model, (torch.zeros(2, width),), buffer, input_names=["x"], output_names=["score"],
                          dynamic_axes={"x": {0: "k"}, "score": {0: "k"}}, opset_version=17, dynamo=False)
    model.train()
    return buffer.getvalue()


def state_bytes(*modules: nn.Module) -> bytes:
    buffer = io.BytesIO()
    torch.save([m.state_dict() for m in modules], buffer)
    return buffer.getvalue()


def load_state_bytes(blob: bytes, *modules: nn.Module) -> None:
    states = torch.load(io.BytesIO(blob), weights_only=True)
    if len(states) != len(modules):
        raise ValueError(f"ranker snapshot holds {len(states)} models, expected {len(modules)}")
    for module, state in zip(modules, states):
        module.load_state_dict(state)
