"""ESPCN: efficient sub-pixel convolutional network.

Shi et al., "Real-Time Single Image and Video Super-Resolution Using an Efficient Sub-Pixel
Convolutional Neural Network", CVPR 2016. Three convolutions work at low resolution
(5x5 -> 64, 3x3 -> 32, 3x3 -> C * r^2, tanh between them) and one periodic shuffle rearranges the
last ``C * r^2`` channels into an ``r``-times larger image. With ``C = 1`` (the paper's Y channel)
and ``r = 3`` the network has 22,729 parameters.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ...registry import MODELS


@MODELS.register_module()
class ESPCN(nn.Module):
    """ESPCN super-resolution network.

    Args:
        scale: upscaling factor ``r``.
        in_channels: image channels (1 for Y as in the paper, 3 for RGB).
        hidden_channels: widths of the first two layers; the paper uses (64, 32).
        kernel_sizes: kernel sizes of the three layers; the paper uses (5, 3, 3).

    Shapes:
        input ``(B, C, H, W)`` -> output ``(B, C, H * r, W * r)``.
    """

    def __init__(self,
                 scale: int = 3,
                 in_channels: int = 1,
                 hidden_channels: tuple[int, int] = (64, 32),
                 kernel_sizes: tuple[int, int, int] = (5, 3, 3)) -> None:
        super().__init__()
        if scale < 1:
            raise ValueError(f'ESPCN scale must be >= 1, got {scale}')
        self.scale = scale
        self.in_channels = in_channels
        widths = (in_channels, *hidden_channels, in_channels * scale**2)
        self.convs = nn.ModuleList(
            nn.Conv2d(c_in, c_out, k, padding=k // 2)
            for c_in, c_out, k in zip(widths[:-1], widths[1:], kernel_sizes))
        self.shuffle = nn.PixelShuffle(scale)
        self.init_weights()

    def init_weights(self) -> None:
        # The paper initialises with small Gaussians; fan-in scaled normal keeps tanh unsaturated.
        for conv in self.convs:
            fan_in = conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1]
            nn.init.normal_(conv.weight, std=math.sqrt(1.0 / fan_in))
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f'ESPCN expects (B, {self.in_channels}, H, W), got {tuple(x.shape)}')
        for conv in self.convs[:-1]:
            x = torch.tanh(conv(x))
        return self.shuffle(self.convs[-1](x))


def espcn_x2(in_channels: int = 1) -> ESPCN:
    """ESPCN at the paper's size for x2."""
    return ESPCN(scale=2, in_channels=in_channels)


def espcn_x3(in_channels: int = 1) -> ESPCN:
    """ESPCN at the paper's size for x3 (22,729 parameters on Y)."""
    return ESPCN(scale=3, in_channels=in_channels)


def espcn_x4(in_channels: int = 1) -> ESPCN:
    """ESPCN at the paper's size for x4."""
    return ESPCN(scale=4, in_channels=in_channels)
