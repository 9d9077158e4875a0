"""SEA-RAFT (Wang, Lipson and Deng, "SEA-RAFT: Simple, Efficient, Accurate RAFT for Optical Flow",
ECCV 2024).

RAFT's recurrent all-pairs refinement with three changes that buy speed and accuracy:

* the context network sees *both* frames and directly regresses an initial flow (iteration 0),
  so few refinement iterations are needed (4 for S / M, 12 for L);
* truncated ResNet-18 / ResNet-34 encoders (3 stages, output stride 8) and a ConvNeXt-style
  update block instead of the ConvGRU;
* every prediction carries a mixture of two Laplace distributions per flow component, and the
  loss is its negative log-likelihood (:func:`mixture_of_laplace_loss`).

Published sizes (official configs, all with ``dim=128``, radius 4, 2 update blocks):
``S`` = ResNet-18, 4 iterations; ``M`` = ResNet-34, 4 iterations; ``L`` = the M network at
12 iterations. Parameter counts are asserted against the official code in the tests.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from mmengine.structures import BaseDataElement, PixelData
from torch import Tensor, nn

from ...registry import MODELS
from ..layers.batching import stack_sample_field
from ..layers.corr2d import CorrPyramid2D
from ..layers.raft_blocks import convex_upsample

FACTOR = 8  # features at 1/8 resolution; convex upsampling by 8


class ResNetEncoder(nn.Module):
    """A truncated ResNet from the backbone registry (3 stages, no stem pooling: stride 8) and a
    1x1 projection. ``(B, in_channels, H, W)`` -> ``(B, out_dim, H / 8, W / 8)``."""

    def __init__(self, depth: int, in_channels: int, out_dim: int,
                 base_channels: int = 64) -> None:
        super().__init__()
        self.backbone = MODELS.build(dict(
            type='ResNet', depth=depth, in_channels=in_channels, out_indices=(2,), num_stages=3,
            stem_pool=False, conv_bias=True, relu_before_add=True, base_channels=base_channels))
        self.proj = nn.Conv2d(self.backbone.out_channels[-1], out_dim, 1)
        nn.init.kaiming_normal_(self.proj.weight, mode='fan_out', nonlinearity='relu')
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(self.backbone(x)[-1])


class ConvNeXtUpdate(nn.Module):
    """ConvNeXt block with a width change: 7x7 depthwise conv, LayerNorm, MLP (``4 * out_dim``
    hidden), layer scale, residual, then a 1x1 conv to ``out_dim``.
    ``(B, dim, H, W)`` -> ``(B, out_dim, H, W)``."""

    def __init__(self, dim: int, out_dim: int, layer_scale: float = 1e-6) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * out_dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * out_dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale))
        self.final = nn.Conv2d(dim, out_dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.gamma * self.pwconv2(self.act(self.pwconv1(self.norm(y))))
        return self.final(x + y.permute(0, 3, 1, 2))


class MotionEncoder(nn.Module):
    """RAFT's motion encoder: correlation and flow features fused to ``dim - 2`` channels, the
    flow appended. corr ``(B, corr_planes, H, W)``, flow ``(B, 2, H, W)`` -> ``(B, dim, H, W)``."""

    def __init__(self, corr_planes: int, dim: int) -> None:
        super().__init__()
        self.convc1 = nn.Conv2d(corr_planes, 2 * dim, 1)
        self.convc2 = nn.Conv2d(2 * dim, dim + dim // 2, 3, padding=1)
        self.convf1 = nn.Conv2d(2, dim, 7, padding=3)
        self.convf2 = nn.Conv2d(dim, dim // 2, 3, padding=1)
        self.conv = nn.Conv2d(2 * dim, dim - 2, 3, padding=1)

    def forward(self, flow: Tensor, corr: Tensor) -> Tensor:
        c = F.relu(self.convc2(F.relu(self.convc1(corr))))
        f = F.relu(self.convf2(F.relu(self.convf1(flow))))
        return torch.cat([F.relu(self.conv(torch.cat([c, f], dim=1))), flow], dim=1)


class UpdateBlock(nn.Module):
    """Motion encoder then ``num_blocks`` ConvNeXt blocks, each reading the hidden state with
    the context and motion features. Hidden and context ``(B, dim, H, W)``."""

    def __init__(self, corr_planes: int, dim: int, num_blocks: int) -> None:
        super().__init__()
        self.encoder = MotionEncoder(corr_planes, dim)
        self.refine = nn.ModuleList(ConvNeXtUpdate(3 * dim, dim) for _ in range(num_blocks))

    def forward(self, net: Tensor, context: Tensor, corr: Tensor, flow: Tensor) -> Tensor:
        inp = torch.cat([context, self.encoder(flow, corr)], dim=1)
        for block in self.refine:
            net = block(torch.cat([net, inp], dim=1))
        return net


def laplace_log_scales(info: Tensor, var_min: float = 0.0, var_max: float = 10.0) -> Tensor:
    """The two mixture components' ``log b`` from the raw ``info[:, 2:4]``: the first clamped
    to ``[0, var_max]`` (the wide component), the second to ``[var_min, 0]`` (the paper fixes
    it at ``b = 1``: published ``var_min = 0``). ``info``: ``(B, 4, H, W)`` -> ``(B, 2, H, W)``."""
    raw = info[:, 2:4]
    return torch.stack([raw[:, 0].clamp(0, var_max), raw[:, 1].clamp(var_min, 0)], dim=1)


def mixture_of_laplace_nll(flow: Tensor, info: Tensor, gt: Tensor, var_min: float = 0.0,
                           var_max: float = 10.0) -> Tensor:
    """Per-pixel negative log-likelihood of ``gt`` under the predicted mixture of Laplace.

    For each flow component ``u`` (x and y separately), with mixture logits ``info[:, 0:2]``
    (weights ``alpha = softmax``) and scales ``b_j = exp(log b_j)`` (:func:`laplace_log_scales`):
    ``-log sum_j alpha_j / (2 b_j) * exp(-|u_gt - u| / b_j)``.

    Shapes: flow, gt ``(B, 2, H, W)``; info ``(B, 4, H, W)`` -> ``(B, 2, H, W)``.
    """
    log_b = laplace_log_scales(info, var_min, var_max)          # (B, 2 comps, H, W)
    logits = info[:, :2]
    err = (gt - flow).abs().unsqueeze(2)                          # (B, 2 uv, 1, H, W)
    log_comp = (logits - math.log(2) - log_b).unsqueeze(1) - err * torch.exp(-log_b).unsqueeze(1)
    return torch.logsumexp(logits, dim=1, keepdim=True) - torch.logsumexp(log_comp, dim=2)


def mixture_of_laplace_loss(flows: Sequence[Tensor], infos: Sequence[Tensor], gt: Tensor,
                            valid: Tensor, gamma: float = 0.85, max_flow: float = 400.0,
                            var_min: float = 0.0, var_max: float = 10.0) -> Tensor:
    """SEA-RAFT's sequence loss: ``sum_i gamma**(n-1-i) * mean NLL_i`` over the ``n``
    predictions, the mean over valid pixels (``valid``, ``|gt| < max_flow``) and both flow
    components, skipping non-finite values. ``valid``: ``(B, 1, H, W)`` or ``(B, H, W)``."""
    if len(flows) != len(infos) or not flows:
        raise ValueError(f'need matching non-empty flow and info lists, got {len(flows)} and '
                         f'{len(infos)}')
    valid = valid.reshape(gt.shape[0], 1, *gt.shape[-2:]).bool()
    valid = valid & (gt.square().sum(dim=1, keepdim=True).sqrt() < max_flow)
    n = len(flows)
    total = gt.new_zeros(())
    for i, (flow, info) in enumerate(zip(flows, infos)):
        nll = mixture_of_laplace_nll(flow, info, gt, var_min, var_max)
        mask = valid & torch.isfinite(nll.detach())
        total = total + gamma ** (n - 1 - i) * torch.where(mask, nll, 0).sum() / mask.sum()
    return total


@MODELS.register_module()
class SEARAFT(BaseModel):
    """SEA-RAFT; defaults are the published M model (``sea_raft_s`` / ``_m`` / ``_l`` build the
    published sizes).

    Args:
        depth: ResNet depth of both encoders (18 for S, 34 for M / L).
        dim: hidden and context width (published 128); features are ``2 * dim`` wide.
        encoder_channels: the encoders' ResNet base width (published 64; narrower for small
            test variants).
        num_blocks: ConvNeXt blocks in the update block (published 2).
        corr_levels, corr_radius: correlation pyramid (published 4 levels, radius 4). Level
            ``k`` pools ``fmap2`` ``2**k`` times, as SEA-RAFT's bilinear half-scaling does.
        corr_mode: 'full' (all-pairs volume, official) or 'alt' (on-demand, O(HW) memory).
        train_iters, test_iters: refinement iterations after the direct regression in 'loss'
            and 'predict' / 'tensor' modes (``test_iters`` may be set on the instance or passed to
            ``predict_flow``); 0 keeps only the regressed flow.
        loss_gamma, max_flow, var_min, var_max: the mixture-of-Laplace sequence loss (published
            0.85 (0.8 on Chairs), 400, 0, 10).
    """

    def __init__(self,
                 depth: int = 34,
                 dim: int = 128,
                 encoder_channels: int = 64,
                 num_blocks: int = 2,
                 corr_levels: int = 4,
                 corr_radius: int = 4,
                 corr_mode: str = 'full',
                 train_iters: int = 4,
                 test_iters: int = 4,
                 loss_gamma: float = 0.85,
                 max_flow: float = 400.0,
                 var_min: float = 0.0,
                 var_max: float = 10.0,
                 data_preprocessor: dict | None = None,
                 init_cfg: dict | None = None) -> None:
        super().__init__(
            data_preprocessor=MODELS.build(data_preprocessor
                                           or dict(type='StereoDataPreprocessor')),
            init_cfg=init_cfg)
        if depth not in (18, 34):
            raise ValueError(f'SEARAFT depth must be 18 or 34, got {depth}')
        if train_iters < 0 or test_iters < 0:
            raise ValueError(f'iterations must be >= 0, got train_iters={train_iters}, '
                             f'test_iters={test_iters}')
        self.dim = dim
        self.corr_levels, self.corr_radius, self.corr_mode = corr_levels, corr_radius, corr_mode
        self.train_iters, self.test_iters = train_iters, test_iters
        self.loss_gamma, self.max_flow = loss_gamma, max_flow
        self.var_min, self.var_max = var_min, var_max

        self.cnet = ResNetEncoder(depth, 6, 2 * dim, encoder_channels)
        self.init_conv = nn.Conv2d(2 * dim, 2 * dim, 3, padding=1)
        self.upsample_weight = nn.Sequential(
            nn.Conv2d(dim, 2 * dim, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(2 * dim, 9 * FACTOR ** 2, 1))
        # flow (2), mixture logits (2), raw log-scales (2)
        self.flow_head = nn.Sequential(
            nn.Conv2d(dim, 2 * dim, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(2 * dim, 6, 3, padding=1))
        self.fnet = ResNetEncoder(depth, 3, 2 * dim, encoder_channels)
        self.update_block = UpdateBlock(corr_levels * (2 * corr_radius + 1) ** 2, dim, num_blocks)

    def _head(self, net: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        out = self.flow_head(net)
        return out[:, :2], out[:, 2:], 0.25 * self.upsample_weight(net)

    @staticmethod
    def _upsample(flow: Tensor, info: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        # One convex combination for both; dividing info by the factor (a power of two, exact)
        # undoes the value scaling meant for the flow.
        up = convex_upsample(torch.cat([flow, info / FACTOR], dim=1), mask, FACTOR)
        return up[:, :2], up[:, 2:]

    def forward_flow(self, image1: Tensor, image2: Tensor, iters: int | None = None,
                     flow_init: Tensor | None = None) -> tuple[list[Tensor], list[Tensor]]:
        """Run the direct regression and ``iters`` refinements on images scaled to [-1, 1].

        Args:
            image1, image2: ``(B, 3, H, W)``, any H, W (replicate-padded to a multiple of 8
                around the centre, as the official code does, and cropped back).
            iters: refinements (default ``test_iters`` in eval mode, ``train_iters`` in training).
            flow_init: optional ``(B, 2, H, W)`` flow in pixels replacing the regressed initial
                flow (warm start, e.g. from the previous frame).

        Returns:
            ``iters + 1`` flows ``(B, 2, H, W)`` and as many infos ``(B, 4, H, W)`` (mixture
            logits, raw log-scales; :func:`laplace_log_scales`).
        """
        if image1.dim() != 4 or image1.shape[1] != 3 or image1.shape != image2.shape:
            raise ValueError(f'SEARAFT images must be (B, 3, H, W) of one size, got '
                             f'{tuple(image1.shape)} and {tuple(image2.shape)}')
        b, _, h, w = image1.shape
        if flow_init is not None and flow_init.shape != (b, 2, h, w):
            raise ValueError(f'SEARAFT flow_init must be {(b, 2, h, w)}, got '
                             f'{tuple(flow_init.shape)}')
        if iters is None:
            iters = self.train_iters if self.training else self.test_iters
        if iters < 0:
            raise ValueError(f'iters must be >= 0, got {iters}')
        ph, pw = (-h) % FACTOR, (-w) % FACTOR
        smallest = FACTOR * 2 ** (self.corr_levels - 1)  # the coarsest level keeps >= 1 cell
        if iters > 0 and min(h + ph, w + pw) < smallest:
            raise ValueError(f'SEARAFT with {self.corr_levels} correlation levels needs images of '
                             f'at least {smallest}x{smallest} (padded), got {h}x{w}')
        pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
        image1, image2 = (F.pad(x, pad, mode='replicate') for x in (image1, image2))

        net, context = self.init_conv(self.cnet(torch.cat([image1, image2], dim=1))).split(
            self.dim, dim=1)
        flow, info, mask = self._head(net)
        if flow_init is not None:
            padded = F.pad(flow_init, pad, mode='replicate')
            flow = F.avg_pool2d(padded, FACTOR) / FACTOR
        up_flow, up_info = self._upsample(flow, info, mask)
        flows, infos = [up_flow], [up_info]
        if iters > 0:
            if self.training:  # one batch: BatchNorm statistics over both images
                fmap1, fmap2 = self.fnet(torch.cat([image1, image2], dim=0)).split(b, dim=0)
            else:  # same numbers; on the CPU ~20% faster than batch 2 at 440x1024
                fmap1, fmap2 = self.fnet(image1), self.fnet(image2)
            corr_fn = CorrPyramid2D(fmap1, fmap2, self.corr_levels, self.corr_radius,
                                    self.corr_mode)
            hf, wf = fmap1.shape[-2:]
            ys, xs = torch.meshgrid(torch.arange(hf, device=flow.device, dtype=flow.dtype),
                                    torch.arange(wf, device=flow.device, dtype=flow.dtype),
                                    indexing='ij')
            grid = torch.stack([xs, ys])[None]
        for _ in range(iters):
            flow = flow.detach()
            net = self.update_block(net, context, corr_fn(grid + flow), flow)
            delta, info, mask = self._head(net)
            flow = flow + delta
            up_flow, up_info = self._upsample(flow, info, mask)
            flows.append(up_flow)
            infos.append(up_info)
        crop = (..., slice(pad[2], pad[2] + h), slice(pad[0], pad[0] + w))
        return [f[crop] for f in flows], [i[crop] for i in infos]

    def predict_flow(self, inputs: Tensor, iters: int | None = None,
                     flow_init: Tensor | None = None) -> Tensor:
        """``(B, 2, 3, H, W)`` preprocessed pairs, any H, W -> flow ``(B, 2, H, W)`` of the first
        image in pixels (``iters`` defaults to ``test_iters``)."""
        if inputs.dim() != 5 or inputs.shape[1:3] != (2, 3):
            raise ValueError(f'SEARAFT inputs must be (B, 2, 3, H, W), got {tuple(inputs.shape)}')
        iters = self.test_iters if iters is None else iters
        return self.forward_flow(inputs[:, 0], inputs[:, 1], iters, flow_init)[0][-1]

    def forward(self,
                inputs: Tensor,
                data_samples: Sequence[BaseDataElement] | None = None,
                mode: str = 'tensor') -> Any:
        if inputs.dim() != 5 or inputs.shape[1:3] != (2, 3):
            raise ValueError(f'SEARAFT inputs must be (B, 2, 3, H, W), got {tuple(inputs.shape)}')
        if mode == 'tensor':
            return self.forward_flow(inputs[:, 0], inputs[:, 1], self.test_iters)[0]
        if mode == 'loss':
            if not data_samples:
                raise ValueError("SEARAFT mode='loss' needs data_samples with gt_flow")
            gt = stack_sample_field(data_samples, 'gt_flow', 'SEARAFT').to(inputs)
            valid = stack_sample_field(data_samples, 'gt_valid', required=False)
            if valid is None:
                valid = torch.ones_like(gt[:, :1], dtype=torch.bool)
            valid = valid.to(inputs.device)
            if gt.shape[1] != 2 or gt.shape[-2:] != inputs.shape[-2:]:
                raise ValueError(f'SEARAFT gt_flow must be (2, H, W) of the input size '
                                 f'{tuple(inputs.shape[-2:])}, got {tuple(gt.shape[1:])}')
            flows, infos = self.forward_flow(inputs[:, 0], inputs[:, 1], self.train_iters)
            loss = mixture_of_laplace_loss(flows, infos, gt, valid, self.loss_gamma,
                                           self.max_flow, self.var_min, self.var_max)
            with torch.no_grad():
                epe = (flows[-1] - gt).norm(dim=1, keepdim=True)
                mask = valid.reshape(epe.shape).bool()
                epe = epe[mask].mean() if mask.any() else epe.new_zeros(())
            return {'loss_flow': loss, 'epe': epe.detach()}
        if mode == 'predict':
            flow = self.predict_flow(inputs)
            samples = list(data_samples) if data_samples else [
                BaseDataElement() for _ in range(inputs.shape[0])]
            for sample, pred in zip(samples, flow):
                sample.pred_flow = PixelData(data=pred)
            return samples
        raise ValueError(f"mode must be 'tensor', 'loss' or 'predict', got {mode!r}")


def sea_raft_s(**kwargs) -> SEARAFT:
    """SEA-RAFT (S): ResNet-18 encoders, 4 iterations."""
    return SEARAFT(**{'depth': 18, 'test_iters': 4, **kwargs})


def sea_raft_m(**kwargs) -> SEARAFT:
    """SEA-RAFT (M): ResNet-34 encoders, 4 iterations."""
    return SEARAFT(**{'depth': 34, 'test_iters': 4, **kwargs})


def sea_raft_l(**kwargs) -> SEARAFT:
    """SEA-RAFT (L): the M network evaluated with 12 iterations."""
    return SEARAFT(**{'depth': 34, 'test_iters': 12, **kwargs})


def _official_encoder_key(key: str) -> str | None:
    """``cnet.layer2.0.conv1.weight`` -> ``cnet.backbone.layer2.0.conv1.weight``; the official
    blocks hold their downsample norm twice (``bn3`` is ``downsample.1``): ``bn3`` is dropped."""
    prefix, rest = key.split('.', 1)
    if rest.startswith('final_conv.'):
        return f'{prefix}.proj.{rest[len("final_conv."):]}'
    if rest.split('.')[2:3] == ['bn3']:
        return None
    return f'{prefix}.backbone.{rest}'


def convert_official_state_dict(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """Map an official SEA-RAFT checkpoint (``princeton-vl/SEA-RAFT`` ``core/raft.py`` names,
    with or without DataParallel's ``module.``) onto :class:`SEARAFT`'s names."""
    out = {}
    for key, value in state_dict.items():
        key = key[len('module.'):] if key.startswith('module.') else key
        if key.startswith(('cnet.', 'fnet.')):
            key = _official_encoder_key(key)
            if key is None:
                continue
        out[key] = value
    return out
