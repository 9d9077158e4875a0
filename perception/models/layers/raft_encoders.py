"""The RAFT family's convolutional encoders and flow head, shared by RAFT, RAFT-small and
RAFT-Stereo.

``EncoderStem`` is a 7x7 conv and three two-block stages; ``FeatureEncoder`` adds a 1x1 output
convolution. With residual blocks and widths ``(64, 96, 128)`` it is the official ``BasicEncoder``
(RAFT's feature and context encoders with ``n_downsample=3``, RAFT-Stereo's feature encoder with
``n_downsample=2``); with bottleneck blocks and widths ``(32, 64, 96)`` it is RAFT-small's
``SmallEncoder``. Module names follow the official ones (``conv1``, ``norm1``, ``layer1..3``,
``conv2``) so that checkpoints load by name.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .raft_blocks import BottleneckBlock, ResidualBlock, norm2d

BLOCKS = {'residual': ResidualBlock, 'bottleneck': BottleneckBlock}


def encoder_stage(in_planes: int, planes: int, norm_fn: str, stride: int,
                  block: str = 'residual') -> nn.Sequential:
    """Two blocks, the first strided (and widening)."""
    cls = BLOCKS[block]
    return nn.Sequential(cls(in_planes, planes, norm_fn, stride), cls(planes, planes, norm_fn, 1))


def init_encoder(module: nn.Module) -> None:
    """The official initialisation: Kaiming-normal (fan_out) convs, unit / zero norm affines."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
        elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d, nn.GroupNorm)):
            if m.weight is not None:
                nn.init.constant_(m.weight, 1)
            if m.bias is not None:
                nn.init.constant_(m.bias, 0)


class EncoderStem(nn.Module):
    """7x7 conv + 3 stages: ``(B, 3, H, W) -> (B, widths[2], H / 2**n_downsample, ...)``.

    Args:
        norm_fn: 'instance', 'batch', 'group' or 'none'.
        n_downsample: 0..3 halvings; stage 3 strides first, then stage 2, then the 7x7 conv
            (RAFT: 3, features at 1/8; RAFT-Stereo: 2).
        widths: the stage widths.
        block: 'residual' (``BasicEncoder``) or 'bottleneck' (``SmallEncoder``).
    """

    def __init__(self, norm_fn: str, n_downsample: int, widths: Sequence[int] = (64, 96, 128),
                 block: str = 'residual') -> None:
        super().__init__()
        if not 0 <= n_downsample <= 3:
            raise ValueError(f'n_downsample must be 0..3, got {n_downsample}')
        if len(widths) != 3:
            raise ValueError(f'encoder widths need 3 entries, got {list(widths)}')
        if block not in BLOCKS:
            raise ValueError(f'encoder block must be one of {sorted(BLOCKS)}, got {block!r}')
        w1, w2, w3 = widths
        self.conv1 = nn.Conv2d(3, w1, 7, stride=1 + (n_downsample > 2), padding=3)
        self.norm1 = norm2d(norm_fn, w1)
        self.relu1 = nn.ReLU(inplace=True)
        self.layer1 = encoder_stage(w1, w1, norm_fn, 1, block)
        self.layer2 = encoder_stage(w1, w2, norm_fn, 1 + (n_downsample > 1), block)
        self.layer3 = encoder_stage(w2, w3, norm_fn, 1 + (n_downsample > 0), block)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.norm1(self.conv1(x)))
        return self.layer3(self.layer2(self.layer1(x)))


class FeatureEncoder(EncoderStem):
    """Stem + 1x1 output conv: ``(B, 3, H, W) -> (B, output_dim, H / 2**n_downsample, ...)``."""

    def __init__(self, output_dim: int = 256, norm_fn: str = 'instance', n_downsample: int = 2,
                 widths: Sequence[int] = (64, 96, 128), block: str = 'residual') -> None:
        super().__init__(norm_fn, n_downsample, widths, block)
        self.conv2 = nn.Conv2d(widths[2], output_dim, 1)
        init_encoder(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.stem(x))


class FlowHead(nn.Module):
    """Hidden state ``(B, input_dim, H, W)`` -> update ``(B, output_dim, H, W)``: two 3x3 convs."""

    def __init__(self, input_dim: int, hidden_dim: int = 256, output_dim: int = 2) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(input_dim, hidden_dim, 3, padding=1)
        self.conv2 = nn.Conv2d(hidden_dim, output_dim, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.relu(self.conv1(x)))
