"""Blocks shared by the RAFT family (RAFT, RAFT-Stereo, IGEV, SEA-RAFT): residual encoder blocks,
convex upsampling, the sequence-loss weights and the image-pair scaling of their preprocessors."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .batching import stack_same_size


def norm2d(norm_fn: str, channels: int) -> nn.Module:
    if norm_fn == 'batch':
        return nn.BatchNorm2d(channels)
    if norm_fn == 'instance':
        return nn.InstanceNorm2d(channels)  # affine=False, as the official: no parameters
    if norm_fn == 'group':
        return nn.GroupNorm(channels // 8, channels)
    if norm_fn == 'none':
        return nn.Identity()
    raise ValueError(f"norm_fn must be 'batch', 'instance', 'group' or 'none', got {norm_fn!r}")


class ResidualBlock(nn.Module):
    """Two 3x3 conv-norm-ReLU layers plus a (1x1 conv + norm when the shape changes) shortcut."""

    def __init__(self, in_planes: int, planes: int, norm_fn: str, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, padding=1, stride=stride)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1)
        self.norm1 = norm2d(norm_fn, planes)
        self.norm2 = norm2d(norm_fn, planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride),
                                            norm2d(norm_fn, planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.norm1(self.conv1(x)))
        y = self.relu(self.norm2(self.conv2(y)))
        if self.downsample is not None:
            x = self.downsample(x)
        return self.relu(x + y)


def convex_upsample(flow: torch.Tensor, mask: torch.Tensor, factor: int) -> torch.Tensor:
    """Upsample ``flow`` ``(B, D, H, W)`` by ``factor`` as a convex combination of its 3x3
    neighbourhood, values scaled by ``factor``.

    Args:
        mask: ``(B, 9 * factor**2, H, W)`` logits, softmax-normalised over the 9 neighbours.

    Returns:
        ``(B, D, factor * H, factor * W)``.
    """
    b, d, h, w = flow.shape
    if mask.shape != (b, 9 * factor ** 2, h, w):
        raise ValueError(f'mask must be {(b, 9 * factor ** 2, h, w)}, got {tuple(mask.shape)}')
    weights = torch.softmax(mask.view(b, 1, 9, factor, factor, h, w), dim=2)
    patches = F.unfold(factor * flow, 3, padding=1).view(b, d, 9, 1, 1, h, w)
    up = (weights * patches).sum(dim=2)  # (B, D, f, f, H, W)
    return up.permute(0, 1, 4, 2, 5, 3).reshape(b, d, factor * h, factor * w)


def sequence_loss_weights(n: int, gamma: float = 0.9) -> torch.Tensor:
    """Weights ``g ** (n - 1 - i)``, ``g = gamma ** (15 / (n - 1))``, of the ``n`` predictions.

    The exponent rescaling (official) makes the first prediction's weight ``gamma ** 15`` for any
    ``n``; with one prediction the weight is 1.
    """
    if n < 1:
        raise ValueError('sequence loss needs at least one prediction')
    if n == 1:
        return torch.ones(1, dtype=torch.float64)
    g = gamma ** (15 / (n - 1))
    return g ** torch.arange(n - 1, -1, -1, dtype=torch.float64)


def scale_image_pairs(inputs: Sequence[torch.Tensor] | torch.Tensor, what: str) -> torch.Tensor:
    """Stack ``(2, 3, H, W)`` pairs (0-255) into ``(B, 2, 3, H, W)`` float in [-1, 1]."""
    inputs = stack_same_size(inputs, f'{what} pairs')
    if inputs.dim() != 5 or inputs.shape[1:3] != (2, 3):
        raise ValueError(f'{what} inputs must be (B, 2, 3, H, W), got {tuple(inputs.shape)}')
    return 2 * (inputs.float() / 255.0) - 1.0


class BottleneckBlock(nn.Module):
    """1x1 -> 3x3 (stride) -> 1x1 conv-norm-ReLU at ``planes / 4`` width plus a shortcut (1x1 conv
    + norm when strided): the block of RAFT-small's encoders."""

    def __init__(self, in_planes: int, planes: int, norm_fn: str, stride: int = 1) -> None:
        super().__init__()
        mid = planes // 4
        self.conv1 = nn.Conv2d(in_planes, mid, 1)
        self.conv2 = nn.Conv2d(mid, mid, 3, padding=1, stride=stride)
        self.conv3 = nn.Conv2d(mid, planes, 1)
        self.norm1, self.norm2 = norm2d(norm_fn, mid), norm2d(norm_fn, mid)
        self.norm3 = norm2d(norm_fn, planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride),
                                            norm2d(norm_fn, planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.norm1(self.conv1(x)))
        y = self.relu(self.norm2(self.conv2(y)))
        y = self.relu(self.norm3(self.conv3(y)))
        if self.downsample is not None:
            x = self.downsample(x)
        return self.relu(x + y)
