"""Pieces every ViT-style network here shares: the token MLP and the official initialisation."""
from __future__ import annotations

from torch import Tensor, nn

from .drop import trunc_normal_


class Mlp(nn.Module):
    """Linear -> GELU -> Linear with dropout after each; ``(..., dim) -> (..., dim)``.

    Sub-module names ``fc1``, ``fc2`` are the official Swin / SwinIR ones (checkpoints load by
    renaming nothing here).
    """

    def __init__(self, dim: int, hidden: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


def init_transformer_weights(module: nn.Module) -> None:
    """Swin's / SwinIR's / HiT-SR's initialisation: Linear weights truncated ``N(0, 0.02)``, zero
    biases; LayerNorm 1, 0. Convolutions keep PyTorch's default.

    Use as ``model.apply(init_transformer_weights)``.
    """
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
