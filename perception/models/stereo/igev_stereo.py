"""IGEV-Stereo (Xu, Wang, Xu and Yang, "Iterative Geometry Encoding Volume for Stereo Matching",
CVPR 2023), written from the paper and the official module definitions (gangweiX/IGEV,
``IGEV-Stereo/core``) at the published size.

Pipeline, all at 1/4 resolution unless said otherwise:

1. Matching features: a MobileNetV2-100 backbone (the shared ``MobileNetV2``, stages 0..5) with
   deconvolution blocks back to 1/4 (``feature``), concatenated with a small stem (``stem_2``,
   ``stem_4``) and projected by ``conv`` + ``desc`` to 96 channels.
2. A group-wise correlation volume (8 groups, ``max_disp / 4`` candidates) regularised by a light
   3D hourglass whose levels are gated by image features (``corr_stem``, ``corr_feature_att``,
   ``cost_agg``): the geometry encoding volume (GEV, 8 channels).
3. Initial disparity: soft-argmin of ``classifier(GEV)`` over the candidates.
4. ConvGRUs at 1/4, 1/8, 1/16 (context from RAFT-Stereo's ``ContextEncoder``) refine the
   disparity; each step looks up the GEV pyramid around ``d`` and the all-pairs correlation
   pyramid around ``x - d`` (2 levels, radius 4).
5. Each disparity is upsampled to full resolution as a 3x3 convex combination whose weights come
   from the GRU state and the 1/2-resolution stem (``spx_2_gru``, ``spx_gru``); the initial
   disparity uses weights from the features (``spx_4``, ``spx_2``, ``spx``).

Disparity is positive, ``x_left - x_right``, in pixels (as ``RAFTStereo``). ``hidden_dims`` lists
the GRU widths finest level first (the official code lists them coarsest first; identical for
``[128] * 3``). Inputs must be multiples of 32 (``predict`` pads) and ``max_disp`` a multiple of
32, so that the hourglass halves the volume three times evenly.

Parameters: 12,598,098 for the default model; the official module has 16 more (12,598,114), the
affine parameters of a BatchNorm3d that ``cost_agg.conv1_up`` creates but never applies
(``bn=False``), which are left out here (``convert_official_state_dict`` drops them).
"""
from __future__ import annotations

import math
import re
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from mmengine.structures import BaseDataElement
from torch import nn

from ...registry import MODELS
from ..layers.batching import stack_sample_field
from ..layers.conv_gru import ConvGRU
from ..layers.raft_encoders import FlowHead
from .raft_stereo import (
    ContextEncoder,
    CorrPyramid1D,
    _linear_taps,
    interp_to,
    pool2x,
    sequence_loss,
)

# IGEV's feature backbone: MobileNetV2-100 stages 1, 2, 4, 5 (strides 4, 8, 16, 32); stage 6 and
# the head are not built.
DEFAULT_BACKBONE = dict(type='MobileNetV2', widen_factor=1.0, num_stages=6,
                        out_indices=(1, 2, 4, 5))

# --------------------------------------------------------------------------------------------
# Building blocks (conv + norm + LeakyReLU in 2D / 3D, as the official ``submodule.py``)


class ConvBN(nn.Module):
    """Conv (or transposed conv), 2D or 3D, without bias, then optional BatchNorm and LeakyReLU
    (slope 0.01). The official ``BasicConv``."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: Any = 3, stride: Any = 1,
                 padding: Any = 1, deconv: bool = False, is_3d: bool = False, bn: bool = True,
                 relu: bool = True) -> None:
        super().__init__()
        conv_type = {(False, False): nn.Conv2d, (True, False): nn.ConvTranspose2d,
                     (False, True): nn.Conv3d, (True, True): nn.ConvTranspose3d}[deconv, is_3d]
        self.conv = conv_type(in_ch, out_ch, kernel_size, stride, padding, bias=False)
        self.bn = (nn.BatchNorm3d if is_3d else nn.BatchNorm2d)(out_ch) if bn else None
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return F.leaky_relu(x) if self.relu else x


class ConvIN(nn.Module):
    """2D conv (or transposed conv) without bias, InstanceNorm (no affine), LeakyReLU.
    The official ``BasicConv_IN``."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, stride: int = 1,
                 padding: int = 1, deconv: bool = False) -> None:
        super().__init__()
        conv_type = nn.ConvTranspose2d if deconv else nn.Conv2d
        self.conv = conv_type(in_ch, out_ch, kernel_size, stride, padding, bias=False)
        self.norm = nn.InstanceNorm2d(out_ch)  # no affine: nothing in the state dict

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(self.norm(self.conv(x)))


class Up2x(nn.Module):
    """x2 up (4x4 stride-2 deconv) or down (3x3 stride-2 conv) of ``x``, concatenated with the
    skip ``rem`` and fused by a 3x3 conv to ``2 * out_ch``. The official ``Conv2x(_IN)`` with
    ``concat=keep_concat=True``.

    ``x`` ``(B, in_ch, h, w)``, ``rem`` ``(B, out_ch, H, W)`` -> ``(B, 2 * out_ch, H, W)``; if the
    resampled ``x`` is not ``H x W`` (odd sizes) it is resized to it by nearest neighbour.
    """

    def __init__(self, in_ch: int, out_ch: int, deconv: bool = True,
                 norm: str = 'instance') -> None:
        super().__init__()
        k = 4 if deconv else 3
        if norm == 'instance':
            self.conv1 = ConvIN(in_ch, out_ch, k, 2, 1, deconv=deconv)
            self.conv2 = ConvIN(out_ch * 2, out_ch * 2, 3, 1, 1)
        elif norm == 'batch':
            self.conv1 = ConvBN(in_ch, out_ch, k, 2, 1, deconv=deconv)
            self.conv2 = ConvBN(out_ch * 2, out_ch * 2, 3, 1, 1)
        else:
            raise ValueError(f"norm must be 'instance' or 'batch', got {norm!r}")

    def forward(self, x: torch.Tensor, rem: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        if x.shape[-2:] != rem.shape[-2:]:
            x = F.interpolate(x, size=rem.shape[-2:], mode='nearest')
        return self.conv2(torch.cat([x, rem], dim=1))


def _conv_in_block(in_ch: int, out_ch: int, stride: int) -> nn.Sequential:
    """ConvIN then a plain 3x3 conv + InstanceNorm + ReLU (the stems and ``spx_4``)."""
    return nn.Sequential(ConvIN(in_ch, out_ch, 3, stride, 1),
                         nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False),
                         nn.InstanceNorm2d(out_ch), nn.ReLU())


class FeatureAtt(nn.Module):
    """Feature excitation of a cost volume: ``cv * sigmoid(att(feat))`` broadcast over disparity.

    ``cv`` ``(B, cv_ch, D, H, W)``, ``feat`` ``(B, feat_ch, H, W)`` -> ``(B, cv_ch, D, H, W)``.
    """

    def __init__(self, cv_ch: int, feat_ch: int) -> None:
        super().__init__()
        self.feat_att = nn.Sequential(ConvBN(feat_ch, feat_ch // 2, 1, 1, 0),
                                      nn.Conv2d(feat_ch // 2, cv_ch, 1))

    def forward(self, cv: torch.Tensor, feat: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.feat_att(feat)).unsqueeze(2) * cv


class Hourglass(nn.Module):
    """3D hourglass over ``(B, c, D, H, W)`` at 1/4 with feature excitation at 1/8, 1/16, 1/32.

    ``features`` are the image features at 1/4, 1/8, 1/16, 1/32 (only the last three are used;
    their channels are ``feat_channels``, 64, 192, 160 with MobileNetV2). Returns the 8-channel
    geometry encoding volume, same size.
    """

    def __init__(self, c: int = 8, feat_channels: Sequence[int] = (64, 192, 160)) -> None:
        super().__init__()

        def conv3d(i: int, o: int, k: int = 3, s: int = 1) -> ConvBN:
            return ConvBN(i, o, k, s, k // 2, is_3d=True)

        def deconv3d(i: int, o: int, act: bool = True) -> ConvBN:
            return ConvBN(i, o, 4, 2, 1, deconv=True, is_3d=True, bn=act, relu=act)

        self.conv1 = nn.Sequential(conv3d(c, 2 * c, s=2), conv3d(2 * c, 2 * c))
        self.conv2 = nn.Sequential(conv3d(2 * c, 4 * c, s=2), conv3d(4 * c, 4 * c))
        self.conv3 = nn.Sequential(conv3d(4 * c, 6 * c, s=2), conv3d(6 * c, 6 * c))
        self.conv3_up = deconv3d(6 * c, 4 * c)
        self.conv2_up = deconv3d(4 * c, 2 * c)
        self.conv1_up = deconv3d(2 * c, 8, act=False)
        self.agg_0 = nn.Sequential(conv3d(8 * c, 4 * c, k=1), conv3d(4 * c, 4 * c),
                                   conv3d(4 * c, 4 * c))
        self.agg_1 = nn.Sequential(conv3d(4 * c, 2 * c, k=1), conv3d(2 * c, 2 * c),
                                   conv3d(2 * c, 2 * c))
        f8, f16, f32 = feat_channels
        self.feature_att_8 = FeatureAtt(2 * c, f8)
        self.feature_att_16 = FeatureAtt(4 * c, f16)
        self.feature_att_32 = FeatureAtt(6 * c, f32)
        self.feature_att_up_16 = FeatureAtt(4 * c, f16)
        self.feature_att_up_8 = FeatureAtt(2 * c, f8)

    def forward(self, x: torch.Tensor, features: Sequence[torch.Tensor]) -> torch.Tensor:
        conv1 = self.feature_att_8(self.conv1(x), features[1])
        conv2 = self.feature_att_16(self.conv2(conv1), features[2])
        conv3 = self.feature_att_32(self.conv3(conv2), features[3])
        conv2 = self.agg_0(torch.cat([self.conv3_up(conv3), conv2], dim=1))
        conv2 = self.feature_att_up_16(conv2, features[2])
        conv1 = self.agg_1(torch.cat([self.conv2_up(conv2), conv1], dim=1))
        conv1 = self.feature_att_up_8(conv1, features[1])
        return self.conv1_up(conv1)


class IGEVFeature(nn.Module):
    """Backbone features at 1/4..1/32, refined top-down by deconvolution blocks.

    ``backbone`` is a registry config of a backbone returning four maps at strides 4, 8, 16, 32
    with ``out_channels`` ``(c4, c8, c16, c32)``; the default is IGEV's MobileNetV2-100 stages
    1, 2, 4, 5 (24, 32, 96, 160 channels).
    ``(B, 3, H, W)`` -> ``[(B, 2 c4, H/4, W/4), (B, 2 c8, H/8, ...), (B, 2 c16, H/16, ...),
    (B, c32, H/32, ...)]`` (48, 64, 192, 160 channels by default); ``out_channels`` lists them.
    """

    def __init__(self, backbone: dict | None = None) -> None:
        super().__init__()
        self.backbone = MODELS.build(backbone or DEFAULT_BACKBONE)
        if len(self.backbone.out_channels) != 4:
            raise ValueError(f'IGEV needs a backbone with 4 outputs (strides 4..32), got '
                             f'out_channels {self.backbone.out_channels}')
        c4, c8, c16, c32 = self.backbone.out_channels
        self.out_channels = [2 * c4, 2 * c8, 2 * c16, c32]
        self.deconv32_16 = Up2x(c32, c16)
        self.deconv16_8 = Up2x(c16 * 2, c8)
        self.deconv8_4 = Up2x(c8 * 2, c4)
        self.conv4 = ConvIN(c4 * 2, c4 * 2, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x4, x8, x16, x32 = self.backbone(x)
        if x32.shape[-1] * 32 != x.shape[-1] or x4.shape[-1] * 4 != x.shape[-1]:
            raise ValueError(f'backbone outputs {[tuple(f.shape) for f in (x4, x32)]} are not at '
                             f'strides 4 and 32 of the input {tuple(x.shape)}')
        x16 = self.deconv32_16(x32, x16)
        x8 = self.deconv16_8(x16, x8)
        x4 = self.conv4(self.deconv8_4(x8, x4))
        return [x4, x8, x16, x32]


# --------------------------------------------------------------------------------------------
# Volumes


def groupwise_correlation_volume(left: torch.Tensor, right: torch.Tensor, num_disp: int,
                                 num_groups: int) -> torch.Tensor:
    """Group-wise correlation for every candidate disparity ``d = 0 .. num_disp - 1``.

    ``volume[b, g, d, y, x] = mean over the channels c of group g of left[b, c, y, x] *
    right[b, c, y, x - d]``, zero where ``x < d``.

    Args:
        left, right: ``(B, C, H, W)`` with ``C`` divisible by ``num_groups``.

    Returns:
        ``(B, num_groups, num_disp, H, W)``.
    """
    if left.shape != right.shape or left.dim() != 4:
        raise ValueError(f'features must be (B, C, H, W) of one size, got {tuple(left.shape)} '
                         f'and {tuple(right.shape)}')
    b, c, h, w = left.shape
    if c % num_groups:
        raise ValueError(f'{c} channels do not split into {num_groups} groups')
    volume = left.new_zeros(b, num_groups, num_disp, h, w)
    # One slice per candidate: the loop is over disparities (<= 48), the pixels are vectorised.
    for d in range(min(num_disp, w)):
        prod = left[..., d:] * right[..., :w - d]
        volume[:, :, d, :, d:] = prod.view(b, num_groups, c // num_groups, h, w - d).mean(2)
    return volume


def disparity_regression(prob: torch.Tensor) -> torch.Tensor:
    """Soft-argmin: expected candidate index. ``prob`` ``(B, D, H, W)`` (sums to 1 over D) ->
    ``(B, 1, H, W)``."""
    values = torch.arange(prob.shape[1], dtype=prob.dtype, device=prob.device)
    return (prob * values.view(1, -1, 1, 1)).sum(1, keepdim=True)


def context_upsample(disp: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Upsample ``disp`` ``(B, 1, h, w)`` x4: each output pixel is a combination, with its own 9
    ``weights`` ``(B, 9, 4h, 4w)``, of the 3x3 neighbourhood (zero padded) of its low-resolution
    pixel. Values are not rescaled (the caller multiplies by 4). Returns ``(B, 1, 4h, 4w)``."""
    b, c, h, w = disp.shape
    if c != 1 or weights.shape != (b, 9, 4 * h, 4 * w):
        raise ValueError(f'context_upsample needs disp (B, 1, h, w) and weights (B, 9, 4h, 4w), '
                         f'got {tuple(disp.shape)} and {tuple(weights.shape)}')
    patches = F.unfold(disp, 3, padding=1).view(b, 9, h, w)
    patches = patches.repeat_interleave(4, dim=2).repeat_interleave(4, dim=3)
    return (patches * weights).sum(1, keepdim=True)


class CombinedGeoEncodingVolume:
    """Lookups in the GEV pyramid and in the all-pairs correlation pyramid (the official
    ``Combined_Geo_Encoding_Volume``).

    Level ``i`` averages pairs of disparity candidates (GEV) or of right-image columns (all-pairs
    correlation) ``i`` times. A lookup at disparity ``d`` (1/4-resolution pixels) samples, with
    linear interpolation and zeros outside, the GEV at candidates ``d / 2**i + k`` and the
    correlation at right columns ``(x - d) / 2**i + k``, ``k = -radius..radius``.

    Args:
        fmap1, fmap2: matching features ``(B, C, H, W)``; the correlation is their plain dot
            product (no ``1 / sqrt(C)`` scaling, unlike RAFT-Stereo).
        geo_volume: ``(B, G, D, H, W)``.
    """

    def __init__(self, fmap1: torch.Tensor, fmap2: torch.Tensor, geo_volume: torch.Tensor,
                 num_levels: int = 2, radius: int = 4) -> None:
        b, g, d, h, w = geo_volume.shape
        if fmap1.shape[0] != b or fmap1.shape[-2:] != (h, w):
            raise ValueError(f'features {tuple(fmap1.shape)} and volume {tuple(geo_volume.shape)}'
                             ' must share batch, height and width')
        self.num_levels, self.radius = num_levels, radius
        self.corr = CorrPyramid1D(fmap1, fmap2, num_levels, radius, 'reg')
        self.corr_scale = math.sqrt(fmap1.shape[1])  # undo CorrPyramid1D's 1 / sqrt(C)
        volume = geo_volume.float().permute(0, 3, 4, 1, 2).reshape(b * h * w, g, d)
        self.geo_pyramid = [volume]
        for _ in range(num_levels - 1):
            volume = F.avg_pool1d(volume, 2, stride=2)
            self.geo_pyramid.append(volume)

    def __call__(self, disp: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        """``disp`` ``(B, 1, H, W)``, ``coords`` ``(B, H, W)`` left-image columns ->
        ``(B, levels * (G + 1) * (2r + 1), H, W)``: per level the GEV samples (group-major),
        then the correlation samples."""
        b, _, h, w = disp.shape
        k = 2 * self.radius + 1
        offsets = torch.arange(-self.radius, self.radius + 1, device=disp.device,
                               dtype=torch.float32)
        corr = self.corr(coords - disp[:, 0]) * self.corr_scale  # (B, levels * k, H, W)
        out = []
        for i, volume in enumerate(self.geo_pyramid):
            n, g, d = volume.shape
            pos = disp.reshape(n, 1) / 2 ** i + offsets  # (N, k) candidate positions
            i0, w0, i1, w1 = _linear_taps(pos, d)
            i0, i1 = i0[:, None].expand(n, g, k), i1[:, None].expand(n, g, k)
            geo = w0[:, None] * volume.gather(2, i0) + w1[:, None] * volume.gather(2, i1)
            out.append(geo.view(b, h, w, g * k).permute(0, 3, 1, 2))
            out.append(corr[:, i * k:(i + 1) * k])
        return torch.cat(out, dim=1).contiguous()


# --------------------------------------------------------------------------------------------
# Update block


class GeoMotionEncoder(nn.Module):
    """Geometry features + current disparity -> 128 motion features (127 learnt + disparity)."""

    def __init__(self, geo_planes: int) -> None:
        super().__init__()
        self.convc1 = nn.Conv2d(geo_planes, 64, 1)
        self.convc2 = nn.Conv2d(64, 64, 3, padding=1)
        self.convd1 = nn.Conv2d(1, 64, 7, padding=3)
        self.convd2 = nn.Conv2d(64, 64, 3, padding=1)
        self.conv = nn.Conv2d(128, 128 - 1, 3, padding=1)

    def forward(self, disp: torch.Tensor, geo: torch.Tensor) -> torch.Tensor:
        cor = F.relu(self.convc2(F.relu(self.convc1(geo))))
        dsp = F.relu(self.convd2(F.relu(self.convd1(disp))))
        return torch.cat([F.relu(self.conv(torch.cat([cor, dsp], dim=1))), disp], dim=1)


class IGEVUpdateBlock(nn.Module):
    """ConvGRUs at 1/4, 1/8, 1/16 (``gru04``, ``gru08``, ``gru16``), a disparity head and the
    32-channel features the upsampling weights are computed from (``mask_feat_4``)."""

    def __init__(self, hidden_dims: Sequence[int], n_gru_layers: int, geo_planes: int) -> None:
        super().__init__()
        self.n_gru_layers = n_gru_layers
        h0, h1, h2 = hidden_dims  # finest first
        self.encoder = GeoMotionEncoder(geo_planes)
        self.gru04 = ConvGRU(h0, 128 + h1 * (n_gru_layers > 1))
        self.gru08 = ConvGRU(h1, h2 * (n_gru_layers == 3) + h0)
        self.gru16 = ConvGRU(h2, h1)
        self.disp_head = FlowHead(h0, hidden_dim=256, output_dim=1)
        self.mask_feat_4 = nn.Sequential(nn.Conv2d(h0, 32, 3, padding=1), nn.ReLU(inplace=True))

    def forward(self, net: list[torch.Tensor], inp: list[list[torch.Tensor]],
                geo: torch.Tensor, disp: torch.Tensor
                ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """One refinement step; returns ``(net, mask_feat (B, 32, h, w), delta (B, 1, h, w))``."""
        n = self.n_gru_layers
        net = list(net)
        if n == 3:
            net[2] = self.gru16(net[2], *inp[2], pool2x(net[1]))
        if n >= 2:
            extra = [interp_to(net[2], net[1])] if n == 3 else []
            net[1] = self.gru08(net[1], *inp[1], pool2x(net[0]), *extra)
        motion = self.encoder(disp, geo)
        extra = [interp_to(net[1], net[0])] if n >= 2 else []
        net[0] = self.gru04(net[0], *inp[0], motion, *extra)
        return net, self.mask_feat_4(net[0]), self.disp_head(net[0])


# --------------------------------------------------------------------------------------------
# Loss


def igev_loss(init_disp: torch.Tensor, preds: Sequence[torch.Tensor], gt: torch.Tensor,
              valid: torch.Tensor, gamma: float = 0.9, max_disp: float = 192,
              init_weight: float = 1.0) -> torch.Tensor:
    """IGEV's training loss: ``init_weight * smooth_l1(init_disp, gt)`` (mean over valid
    pixels, beta 1) + RAFT-Stereo's sequence loss of ``preds`` (gamma rescaled to
    ``gamma ** (15 / (n - 1))``, each term a mean over valid pixels).

    Args:
        init_disp: upsampled initial disparity ``(B, 1, H, W)``.
        preds: ``n`` iteration predictions ``(B, 1, H, W)``.
        gt, valid: ``(B, 1, H, W)``; pixels with ``valid >= 0.5``, finite ``gt`` and
            ``|gt| < max_disp`` count.

    Returns:
        Scalar loss (the smooth-L1 term is 0 if no pixel is valid).
    """
    if init_disp.shape != gt.shape or valid.shape != gt.shape:
        raise ValueError(f'init_disp {tuple(init_disp.shape)}, gt {tuple(gt.shape)} and valid '
                         f'{tuple(valid.shape)} must have one shape')
    mask = (valid.float() >= 0.5) & (gt.abs() < max_disp) & torch.isfinite(gt)
    init_term = (F.smooth_l1_loss(init_disp[mask], gt[mask]) if mask.any()
                 else init_disp.sum() * 0)
    return init_weight * init_term + sequence_loss(preds, gt, valid, gamma, max_disp)


# --------------------------------------------------------------------------------------------
# Model


@MODELS.register_module()
class IGEVStereo(BaseModel):
    """IGEV-Stereo; defaults are the official ``train_stereo.py`` defaults.

    Args:
        hidden_dims: GRU (and context) widths per level, finest first.
        n_gru_layers: 1, 2 or 3 GRU levels.
        backbone: registry config of the feature backbone (default: MobileNetV2-100 stages
            1, 2, 4, 5, as the official model; any backbone with outputs at strides 4..32 fits).
        max_disp: disparity range of the cost volume (full-resolution pixels, multiple of 32);
            also the loss's ground-truth cut-off, as the official training.
        corr_levels, corr_radius: pyramid depth and lookup radius of the combined volume.
        train_iters, test_iters: refinement iterations in 'loss' and 'predict'/'tensor' modes.
        loss_gamma, init_loss_weight: sequence-loss decay and weight of the initial-disparity
            smooth-L1 term.
        freeze_bn: keep the 2D BatchNorms (backbone, context network) in eval mode during
            training, as the official training does (the 3D ones train).
        pad_divisor: 'predict' pads inputs (replicate) to a multiple of this and crops back.
    """

    def __init__(self,
                 hidden_dims: Sequence[int] = (128, 128, 128),
                 n_gru_layers: int = 3,
                 max_disp: int = 192,
                 corr_levels: int = 2,
                 corr_radius: int = 4,
                 train_iters: int = 22,
                 test_iters: int = 32,
                 loss_gamma: float = 0.9,
                 init_loss_weight: float = 1.0,
                 freeze_bn: bool = True,
                 pad_divisor: int = 32,
                 backbone: dict | None = None,
                 data_preprocessor: dict | None = None,
                 init_cfg: dict | None = None) -> None:
        super().__init__(
            data_preprocessor=MODELS.build(data_preprocessor
                                           or dict(type='StereoDataPreprocessor')),
            init_cfg=init_cfg)
        hidden_dims = list(hidden_dims)
        if len(hidden_dims) != 3:
            raise ValueError(f'hidden_dims needs 3 entries (finest first), got {hidden_dims}')
        if n_gru_layers not in (1, 2, 3):
            raise ValueError(f'n_gru_layers must be 1, 2 or 3, got {n_gru_layers}')
        if max_disp <= 0 or max_disp % 32:
            raise ValueError(f'max_disp must be a positive multiple of 32 (the hourglass halves '
                             f'max_disp / 4 candidates three times), got {max_disp}')
        if pad_divisor % 32:
            raise ValueError(f'pad_divisor must be a multiple of 32, got {pad_divisor}')
        self.hidden_dims, self.n_gru_layers = hidden_dims, n_gru_layers
        self.max_disp = max_disp
        self.corr_levels, self.corr_radius = corr_levels, corr_radius
        self.train_iters, self.test_iters = train_iters, test_iters
        self.loss_gamma, self.init_loss_weight = loss_gamma, init_loss_weight
        self.freeze_bn, self.pad_divisor = freeze_bn, pad_divisor

        self.cnet = ContextEncoder(hidden_dims, 'batch', n_downsample=2)
        self.update_block = IGEVUpdateBlock(hidden_dims, n_gru_layers,
                                            corr_levels * (2 * corr_radius + 1) * (8 + 1))
        self.context_zqr_convs = nn.ModuleList(
            nn.Conv2d(hidden_dims[i], hidden_dims[i] * 3, 3, padding=1)
            for i in range(n_gru_layers))
        self.feature = IGEVFeature(backbone)
        # 1/4 features = refined backbone features + the 48-channel stem (96 with MobileNetV2).
        f4, f8, f16, f32 = self.feature.out_channels
        f4 += 48
        self.stem_2 = _conv_in_block(3, 32, 2)
        self.stem_4 = _conv_in_block(32, 48, 2)
        self.spx = nn.Sequential(nn.ConvTranspose2d(2 * 32, 9, 4, 2, 1))
        self.spx_2 = Up2x(24, 32, norm='instance')
        self.spx_4 = _conv_in_block(f4, 24, 1)
        self.spx_2_gru = Up2x(32, 32, norm='batch')
        self.spx_gru = nn.Sequential(nn.ConvTranspose2d(2 * 32, 9, 4, 2, 1))
        self.conv = ConvIN(f4, 96, 3, 1, 1)
        self.desc = nn.Conv2d(96, 96, 1)
        self.corr_stem = ConvBN(8, 8, 3, 1, 1, is_3d=True)
        self.corr_feature_att = FeatureAtt(8, f4)
        self.cost_agg = Hourglass(8, (f8, f16, f32))
        self.classifier = nn.Conv3d(8, 1, 3, 1, 1, bias=False)

    def train(self, mode: bool = True) -> IGEVStereo:
        super().train(mode)
        if mode and self.freeze_bn:
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        return self

    def initial_disparity(self, cost: torch.Tensor) -> torch.Tensor:
        """Soft-argmin over candidates of the classifier's score on the GEV.
        ``(B, 8, D, h, w)`` -> ``(B, 1, h, w)`` in 1/4-resolution pixels."""
        prob = F.softmax(self.classifier(cost).squeeze(1), dim=1)
        return disparity_regression(prob)

    def _upsample(self, disp: torch.Tensor, feat: torch.Tensor, stem_2x: torch.Tensor,
                  up: nn.Module, head: nn.Module) -> torch.Tensor:
        weights = F.softmax(head(up(feat, stem_2x)), dim=1)
        return context_upsample(disp * 4.0, weights)

    def forward_disparity(self, left: torch.Tensor, right: torch.Tensor, iters: int | None = None,
                          test_mode: bool = False
                          ) -> tuple[torch.Tensor | None, list[torch.Tensor]]:
        """Run the network on images already scaled to [-1, 1].

        Args:
            left, right: ``(B, 3, H, W)``, H and W multiples of 32 (``predict`` pads).
            iters: refinement iterations (default ``test_iters`` if ``test_mode`` else
                ``train_iters``).
            test_mode: skip the initial-disparity upsampling and return only the last
                prediction.

        Returns:
            ``(init_disp, preds)``: the upsampled initial disparity ``(B, 1, H, W)`` (``None`` in
            test mode) and positive disparities ``(B, 1, H, W)``, one per iteration (one in test
            mode).
        """
        if left.shape != right.shape or left.dim() != 4 or left.shape[1] != 3:
            raise ValueError(f'left and right must be (B, 3, H, W) of one size, got '
                             f'{tuple(left.shape)} and {tuple(right.shape)}')
        if left.shape[-2] % 32 or left.shape[-1] % 32:
            raise ValueError(f'IGEVStereo needs H and W divisible by 32, got '
                             f'{tuple(left.shape[-2:])} (predict pads; crop training pairs)')
        iters = iters if iters is not None else (self.test_iters if test_mode
                                                 else self.train_iters)
        if iters < 1:
            raise ValueError(f'iters must be >= 1, got {iters}')
        b = left.shape[0]
        # Training: one batch of both images (BatchNorm statistics over the pair). Eval: one image
        # at a time, the same numbers, and on the CPU faster at full size than one batch of 2.
        batches = [torch.cat([left, right], dim=0)] if self.training else [left, right]
        per_batch = []
        for images in batches:
            features = self.feature(images)
            stem_2 = self.stem_2(images)
            features[0] = torch.cat([features[0], self.stem_4(stem_2)], dim=1)
            per_batch.append((features, stem_2, self.desc(self.conv(features[0]))))
        if self.training:
            features, stem_2, match = per_batch[0]
            match_left, match_right = match.split(b, dim=0)
            features_left, stem_2x = [f[:b] for f in features], stem_2[:b]
        else:
            (features_left, stem_2x, match_left), (_, _, match_right) = per_batch

        volume = groupwise_correlation_volume(match_left, match_right, self.max_disp // 4, 8)
        volume = self.corr_feature_att(self.corr_stem(volume), features_left[0])
        geo_volume = self.cost_agg(volume, features_left)
        init_disp = self.initial_disparity(geo_volume)

        n = self.n_gru_layers
        context = self.cnet(left, n_levels=n)
        net = [torch.tanh(level[0]) for level in context]
        inp = [list(conv(torch.relu(level[1])).split(conv.out_channels // 3, dim=1))
               for level, conv in zip(context, self.context_zqr_convs)]

        geo_fn = CombinedGeoEncodingVolume(match_left.float(), match_right.float(),
                                           geo_volume.float(), self.corr_levels,
                                           self.corr_radius)
        _, _, h, w = match_left.shape
        coords = torch.arange(w, device=left.device, dtype=torch.float32).expand(b, h, w)
        disp = init_disp
        preds = []
        for itr in range(iters):
            disp = disp.detach()
            geo = geo_fn(disp, coords)
            net, mask_feat, delta = self.update_block(net, inp, geo, disp)
            disp = disp + delta
            if test_mode and itr < iters - 1:
                continue
            preds.append(self._upsample(disp, mask_feat, stem_2x, self.spx_2_gru, self.spx_gru))
        if test_mode:
            return None, preds
        init_up = self._upsample(init_disp, self.spx_4(features_left[0]), stem_2x, self.spx_2,
                                 self.spx)
        return init_up, preds

    def _pad(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
        h, w = x.shape[-2:]
        d = self.pad_divisor
        ph, pw = (-h) % d, (-w) % d
        pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
        return F.pad(x, pad, mode='replicate'), pad

    def predict_disparity(self, inputs: torch.Tensor, iters: int | None = None) -> torch.Tensor:
        """``(B, 2, 3, H, W)`` in [-1, 1], any H, W -> disparity ``(B, H, W)``."""
        if inputs.dim() != 5 or inputs.shape[1:3] != (2, 3):
            raise ValueError(f'stereo inputs must be (B, 2, 3, H, W), got {tuple(inputs.shape)}')
        b, _, _, h, w = inputs.shape
        padded, (left, _, top, _) = self._pad(inputs.flatten(0, 1))
        padded = padded.view(b, 2, 3, *padded.shape[-2:])
        _, preds = self.forward_disparity(padded[:, 0], padded[:, 1], iters, test_mode=True)
        return preds[-1][:, 0, top:top + h, left:left + w]

    def forward(self,
                inputs: torch.Tensor,
                data_samples: Sequence[BaseDataElement] | None = None,
                mode: str = 'tensor') -> Any:
        if mode == 'tensor':
            return self.predict_disparity(inputs)
        if mode == 'loss':
            if not data_samples:
                raise ValueError("mode='loss' needs data_samples with gt_disp")
            gt = stack_sample_field(data_samples, 'gt_disp', 'IGEVStereo').to(inputs)
            valid = stack_sample_field(data_samples, 'gt_valid', required=False)
            valid = (gt > 0 if valid is None else valid).to(inputs)
            if inputs.shape[-2:] != gt.shape[-2:]:
                raise ValueError(f'inputs {tuple(inputs.shape[-2:])} and gt_disp '
                                 f'{tuple(gt.shape[-2:])} differ in size')
            init_disp, preds = self.forward_disparity(inputs[:, 0], inputs[:, 1])
            loss = igev_loss(init_disp, preds, gt, valid, self.loss_gamma, self.max_disp,
                             self.init_loss_weight)
            with torch.no_grad():
                mask = (valid >= 0.5) & (gt < self.max_disp)
                epe = (preds[-1] - gt).abs()[mask].mean() if mask.any() else gt.new_zeros(())
            return {'loss_disp': loss, 'epe': epe}
        if mode == 'predict':
            pred = self.predict_disparity(inputs)
            samples = list(data_samples) if data_samples else [
                BaseDataElement() for _ in range(len(pred))
            ]
            for sample, disp in zip(samples, pred):
                sample.pred_disp = disp
            return samples
        raise ValueError(f"mode must be 'tensor', 'loss' or 'predict', got {mode!r}")


# --------------------------------------------------------------------------------------------
# Official checkpoints

# Official ``Feature`` wraps timm's mobilenetv2_100 stages as block0..block4, where ``block3``
# holds stages 3 and 4: (official block, index inside it) -> our backbone stage.
_FEATURE_STAGE = {('0', '0'): 0, ('1', '0'): 1, ('2', '0'): 2, ('3', '0'): 3, ('3', '1'): 4,
                  ('4', '0'): 5}
# The official context network names its levels by stride (04, 08, 16); ours by RAFT-Stereo's
# names (08, 16, 32) for the same modules.
_CNET_LEVEL = {'04': '08', '08': '16', '16': '32'}


def convert_official_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official gangweiX/IGEV ``IGEVStereo`` weights (``module.`` already stripped) -> ours.

    Renames the timm backbone inside ``feature`` and the context levels, and drops the
    duplicated ``norm3`` entries of the context network's residual blocks (the same tensors as
    ``downsample.1``) and the unused BatchNorm of ``cost_agg.conv1_up``.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if re.match(r'cnet\..*\.norm3\.', key) or key.startswith('cost_agg.conv1_up.bn.'):
            continue
        new = re.sub(r'^feature\.(conv_stem|bn1)\.', r'feature.backbone.\1.', key)
        new = re.sub(r'^feature\.block(\d)\.(\d)\.',
                     lambda m: f'feature.backbone.blocks.{_FEATURE_STAGE[m.group(1), m.group(2)]}.',
                     new)
        new = re.sub(r'^cnet\.outputs(04|08|16)\.',
                     lambda m: f'cnet.outputs{_CNET_LEVEL[m.group(1)]}.', new)
        out[new] = value
    return out
