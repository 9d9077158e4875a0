"""Decode heads for semantic segmentation: SegFormer all-MLP, UPerNet (PPM + FPN) and FCN.

Every head takes the tuple of backbone / neck feature maps (finest first), picks the levels named
by ``in_index``, and returns class logits ``(B, num_classes, H_0, W_0)`` at the resolution of its
finest selected level (stride 4 for ResNet / Swin, 16 for EfficientViT). The segmentor upsamples
logits to the label size for the loss and to the image size for prediction. Layer layout and
defaults follow mmsegmentation (conv + BN + ReLU blocks, ``Dropout2d(0.1)`` before a 1x1
classifier initialised with N(0, 0.01)).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...registry import MODELS


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 1) -> nn.Sequential:
    """mmseg's ``ConvModule`` with BN and ReLU (the conv has no bias, BN supplies it)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


def resize(x: Tensor, size: Sequence[int], align_corners: bool = False) -> Tensor:
    """Bilinear resize of ``(B, C, h, w)`` to ``size``; a no-op when the size already matches."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode='bilinear', align_corners=align_corners)


class BaseDecodeHead(nn.Module):
    """What all heads share: input selection, dropout + classifier, and the loss config.

    Args:
        in_channels: channels of each selected level (an int when ``in_index`` is an int).
        channels: width of the head's internal features.
        num_classes: ``K``.
        in_index: level(s) of the feature tuple this head reads.
        dropout_ratio: ``Dropout2d`` probability before the classifier.
        align_corners: for every bilinear resize in the head.
        loss_decode: loss config (default ``SegCrossEntropyLoss``); the segmentor calls it.
        ignore_index: label value without loss.
    """

    def __init__(self, in_channels: int | Sequence[int], channels: int, num_classes: int,
                 in_index: int | Sequence[int] = -1, dropout_ratio: float = 0.1,
                 align_corners: bool = False, loss_decode: dict | None = None,
                 ignore_index: int = 255) -> None:
        super().__init__()
        multi = not isinstance(in_index, int)
        if multi != (not isinstance(in_channels, int)) or (
                multi and len(in_index) != len(in_channels)):
            raise ValueError(f'{type(self).__name__}: in_channels {in_channels} must match '
                             f'in_index {in_index} (an int for an int, equal lengths for lists)')
        if num_classes < 1:
            raise ValueError(f'{type(self).__name__}: num_classes must be >= 1, got {num_classes}')
        self.in_channels = list(in_channels) if multi else in_channels
        self.in_index = list(in_index) if multi else in_index
        self.channels = channels
        self.num_classes = num_classes
        self.align_corners = align_corners
        self.ignore_index = ignore_index
        self.dropout = nn.Dropout2d(dropout_ratio) if dropout_ratio > 0 else nn.Identity()
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)
        nn.init.normal_(self.conv_seg.weight, 0, 0.01)
        nn.init.zeros_(self.conv_seg.bias)
        self.loss_decode = MODELS.build(loss_decode or dict(type='SegCrossEntropyLoss'))

    def _select(self, feats: Sequence[Tensor]) -> Tensor | list[Tensor]:
        picked = [feats[i] for i in self.in_index] if isinstance(self.in_index, list) \
            else [feats[self.in_index]]
        expected = self.in_channels if isinstance(self.in_index, list) else [self.in_channels]
        for x, c in zip(picked, expected):
            if x.dim() != 4 or x.shape[1] != c:
                raise ValueError(f'{type(self).__name__}: expected a (B, {c}, H, W) level, got '
                                 f'{tuple(x.shape)} (check in_channels / in_index)')
        return picked if isinstance(self.in_index, list) else picked[0]

    def cls_seg(self, x: Tensor) -> Tensor:
        """``(B, channels, h, w)`` -> logits ``(B, num_classes, h, w)``."""
        return self.conv_seg(self.dropout(x))


@MODELS.register_module()
class SegFormerHead(BaseDecodeHead):
    """SegFormer's all-MLP decoder (Xie et al. 2021).

    Each selected level goes through a per-pixel linear layer to ``channels`` (a 1x1 conv; with
    ``norm_levels=True`` a conv + BN + ReLU as mmseg's ``SegformerHead``), is upsampled bilinearly
    to the finest level's size (stride 4 for hierarchical backbones), the maps are concatenated,
    fused by a 1x1 conv + BN + ReLU, and classified after dropout.

    Input: the backbone's feature tuple; output ``(B, num_classes, H_0, W_0)``.
    """

    def __init__(self, in_channels: Sequence[int], channels: int = 256,
                 in_index: Sequence[int] = (0, 1, 2, 3), norm_levels: bool = False,
                 **kwargs) -> None:
        super().__init__(in_channels, channels, in_index=in_index, **kwargs)
        self.linears = nn.ModuleList(
            conv_bn_relu(c, channels) if norm_levels else nn.Conv2d(c, channels, 1)
            for c in self.in_channels)
        self.fusion = conv_bn_relu(channels * len(self.in_channels), channels)

    def forward(self, feats: Sequence[Tensor]) -> Tensor:
        xs = self._select(feats)
        size = xs[0].shape[-2:]
        outs = [resize(linear(x), size, self.align_corners) for linear, x in zip(self.linears, xs)]
        return self.cls_seg(self.fusion(torch.cat(outs, dim=1)))


@MODELS.register_module()
class UPerHead(BaseDecodeHead):
    """UPerNet head (Xiao et al. 2018) as mmseg's ``UPerHead``.

    A pyramid pooling module on the coarsest level (adaptive average pooling to each of
    ``pool_scales``, 1x1 conv + BN + ReLU, bilinear upsampling, concatenation with the input, 3x3
    bottleneck) replaces that level's lateral; the other levels get 1x1 laterals; a top-down pass
    adds each coarser lateral, upsampled bilinearly; 3x3 convs smooth all but the coarsest; all
    levels are upsampled to the finest, concatenated and fused by a 3x3 conv before the classifier.

    Input: the backbone's feature tuple; output ``(B, num_classes, H_0, W_0)``.
    """

    def __init__(self, in_channels: Sequence[int], channels: int = 512,
                 in_index: Sequence[int] = (0, 1, 2, 3),
                 pool_scales: Sequence[int] = (1, 2, 3, 6), **kwargs) -> None:
        super().__init__(in_channels, channels, in_index=in_index, **kwargs)
        last = self.in_channels[-1]
        self.pool_scales = tuple(pool_scales)
        self.psp_modules = nn.ModuleList(conv_bn_relu(last, channels) for _ in self.pool_scales)
        self.bottleneck = conv_bn_relu(last + len(self.pool_scales) * channels, channels, 3)
        self.lateral_convs = nn.ModuleList(conv_bn_relu(c, channels)
                                           for c in self.in_channels[:-1])
        self.fpn_convs = nn.ModuleList(conv_bn_relu(channels, channels, 3)
                                       for _ in self.in_channels[:-1])
        self.fpn_bottleneck = conv_bn_relu(len(self.in_channels) * channels, channels, 3)

    def psp_forward(self, x: Tensor) -> Tensor:
        """Pyramid pooling on the coarsest level ``(B, C, h, w)`` -> ``(B, channels, h, w)``."""
        pooled = [resize(conv(F.adaptive_avg_pool2d(x, scale)), x.shape[-2:], self.align_corners)
                  for scale, conv in zip(self.pool_scales, self.psp_modules)]
        return self.bottleneck(torch.cat([x, *pooled], dim=1))

    def forward(self, feats: Sequence[Tensor]) -> Tensor:
        xs = self._select(feats)
        laterals = [conv(x) for conv, x in zip(self.lateral_convs, xs)]
        laterals.append(self.psp_forward(xs[-1]))
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + resize(laterals[i], laterals[i - 1].shape[-2:],
                                                       self.align_corners)
        outs = [conv(lat) for conv, lat in zip(self.fpn_convs, laterals[:-1])] + [laterals[-1]]
        size = outs[0].shape[-2:]
        outs = [resize(x, size, self.align_corners) for x in outs]
        return self.cls_seg(self.fpn_bottleneck(torch.cat(outs, dim=1)))


@MODELS.register_module()
class FCNHead(BaseDecodeHead):
    """Fully convolutional head (Long et al. 2015), usually the auxiliary head on stride 16.

    ``num_convs`` conv + BN + ReLU blocks (the first maps ``in_channels`` to ``channels``), then,
    with ``concat_input``, a conv of the concatenated input and output, then the classifier.
    mmseg's auxiliary configs use ``num_convs=1, concat_input=False, channels=256, in_index=2``.

    Input: the feature tuple (reads level ``in_index``); output ``(B, num_classes, h, w)`` at that
    level's resolution.
    """

    def __init__(self, in_channels: int, channels: int = 256, in_index: int = 2,
                 num_convs: int = 1, kernel_size: int = 3, concat_input: bool = False,
                 **kwargs) -> None:
        super().__init__(in_channels, channels, in_index=in_index, **kwargs)
        if num_convs < 0 or (num_convs == 0 and in_channels != channels):
            raise ValueError(f'FCNHead: num_convs={num_convs} needs >= 1 (or 0 with '
                             f'in_channels == channels, got {in_channels} vs {channels})')
        self.convs = nn.Sequential(*(conv_bn_relu(in_channels if i == 0 else channels, channels,
                                                  kernel_size) for i in range(num_convs)))
        self.conv_cat = conv_bn_relu(in_channels + channels, channels, kernel_size) \
            if concat_input else None

    def forward(self, feats: Sequence[Tensor]) -> Tensor:
        x = self._select(feats)
        out = self.convs(x)
        if self.conv_cat is not None:
            out = self.conv_cat(torch.cat([x, out], dim=1))
        return self.cls_seg(out)
