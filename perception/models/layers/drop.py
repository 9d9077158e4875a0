"""Stochastic depth and truncated-normal initialisation (what timm provides, without timm)."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def drop_path(x: Tensor, drop_prob: float = 0.0, training: bool = False) -> Tensor:
    """Zero whole samples of a residual branch with probability ``drop_prob`` (stochastic depth).

    Kept samples are scaled by ``1 / (1 - drop_prob)`` so the expectation is unchanged.
    ``x``: ``(B, ...)``.
    """
    if drop_prob == 0.0 or not training:
        return x
    keep = 1.0 - drop_prob
    mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
    return x * mask / keep


class DropPath(nn.Module):
    """Module form of :func:`drop_path` (Huang et al., "Deep networks with stochastic depth")."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: Tensor) -> Tensor:
        return drop_path(x, self.drop_prob, self.training)

    def extra_repr(self) -> str:
        return f'drop_prob={self.drop_prob}'


@torch.no_grad()
def trunc_normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0, a: float = -2.0,
                  b: float = 2.0) -> Tensor:
    """Fill ``tensor`` with N(mean, std) truncated to ``[a, b]`` (absolute bounds, as timm)."""
    low = 0.5 * (1.0 + math.erf((a - mean) / (std * math.sqrt(2.0))))
    high = 0.5 * (1.0 + math.erf((b - mean) / (std * math.sqrt(2.0))))
    # Inverse-CDF sampling: uniform in [2 low - 1, 2 high - 1], then erfinv.
    tensor.uniform_(2 * low - 1, 2 * high - 1)
    tensor.erfinv_()
    tensor.mul_(std * math.sqrt(2.0)).add_(mean)
    return tensor.clamp_(min=a, max=b)
