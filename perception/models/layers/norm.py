"""Normalisation layers that PyTorch does not provide in the layout we need."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW tensor, at every pixel independently.

    Same parameters (``weight``/``bias`` of shape ``(C,)``) and numerics as ConvNeXt's
    ``channels_first`` LayerNorm and timm's ``LayerNorm2d``, so their checkpoints load unchanged.
    ``x``: ``(B, C, H, W)`` -> ``(B, C, H, W)``.
    """

    def __init__(self, num_channels: int, eps: float = 1e-6, affine: bool = True) -> None:
        super().__init__(num_channels, eps=eps, elementwise_affine=affine)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.normalized_shape[0]:
            raise ValueError(f'LayerNorm2d({self.normalized_shape[0]}) expects (B, '
                             f'{self.normalized_shape[0]}, H, W), got {tuple(x.shape)}')
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)
