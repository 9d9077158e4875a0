"""RAFT: Recurrent All-Pairs Field Transforms for optical flow (Teed and Deng, ECCV 2020).

Written from the paper and the official module definitions (princeton-vl/RAFT) so that the two
published sizes have the official parameter counts and module names (``fnet``, ``cnet``,
``update_block``), which keeps official checkpoints loadable after
:func:`convert_official_state_dict`:

- RAFT: feature encoder (instance norm, 256 channels) and context encoder (batch norm, 128
  hidden + 128 context) at 1/8, a 4-level radius-4 correlation pyramid, a motion encoder, a
  separable (1x5 then 5x1) ConvGRU, a flow head and a learnt 8x convex upsampling: 5,257,536
  parameters.
- RAFT-small: bottleneck encoders (no norm in the context encoder), radius 3, a 3x3 ConvGRU with
  96 hidden channels and bilinear 8x upsampling: 990,162 parameters.

The flow is ``coords1 - coords0``: the position in the second image of each first-image pixel,
minus its own position, in pixels, channels ``(u, v)``.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from mmengine.structures import BaseDataElement, PixelData
from torch import nn

from ...registry import MODELS
from ..layers.batching import stack_sample_field
from ..layers.conv_gru import ConvGRU, SepConvGRU
from ..layers.corr2d import CorrPyramid2D, correlation_planes
from ..layers.raft_blocks import convex_upsample
from ..layers.raft_encoders import FeatureEncoder, FlowHead

DIVISOR = 8  # features and the flow live at 1/8 resolution

# --------------------------------------------------------------------------------------------
# Update blocks


class MotionEncoder(nn.Module):
    """Correlation ``(B, corr_planes, H, W)`` + flow ``(B, 2, H, W)`` -> motion features
    ``(B, out_dim, H, W)`` whose last two channels are the flow itself.

    RAFT: corr 1x1 -> 256, 3x3 -> 192; flow 7x7 -> 128, 3x3 -> 64; fused 3x3 -> 126 (+2).
    RAFT-small: corr 1x1 -> 96; flow 7x7 -> 64, 3x3 -> 32; fused 3x3 -> 80 (+2).
    """

    def __init__(self, corr_planes: int, small: bool = False) -> None:
        super().__init__()
        self.small = small
        corr_dims, flow_dims, out = ((96, ), (64, 32), 80) if small else ((256, 192), (128, 64),
                                                                            126)
        self.convc1 = nn.Conv2d(corr_planes, corr_dims[0], 1)
        if not small:
            self.convc2 = nn.Conv2d(corr_dims[0], corr_dims[1], 3, padding=1)
        self.convf1 = nn.Conv2d(2, flow_dims[0], 7, padding=3)
        self.convf2 = nn.Conv2d(flow_dims[0], flow_dims[1], 3, padding=1)
        self.conv = nn.Conv2d(corr_dims[-1] + flow_dims[1], out, 3, padding=1)
        self.out_dim = out + 2

    def forward(self, flow: torch.Tensor, corr: torch.Tensor) -> torch.Tensor:
        cor = F.relu(self.convc1(corr))
        if not self.small:
            cor = F.relu(self.convc2(cor))
        flo = F.relu(self.convf2(F.relu(self.convf1(flow))))
        return torch.cat([F.relu(self.conv(torch.cat([cor, flo], dim=1))), flow], dim=1)


class UpdateBlock(nn.Module):
    """Motion encoder + GRU + flow head (+ the convex-upsampling mask head for RAFT).

    ``forward(net, inp, corr, flow) -> (net, mask or None, delta_flow)``; ``mask`` is
    ``(B, 9 * 64, H, W)`` logits scaled by 0.25 (the official gradient balancing).
    """

    def __init__(self, corr_planes: int, hidden_dim: int, context_dim: int,
                 small: bool = False) -> None:
        super().__init__()
        self.small = small
        self.encoder = MotionEncoder(corr_planes, small)
        gru_input = context_dim + self.encoder.out_dim
        if small:
            self.gru = ConvGRU(hidden_dim, gru_input)
            self.flow_head = FlowHead(hidden_dim, hidden_dim=128)
        else:
            self.gru = SepConvGRU(hidden_dim, gru_input)
            self.flow_head = FlowHead(hidden_dim, hidden_dim=256)
            self.mask = nn.Sequential(nn.Conv2d(hidden_dim, 256, 3, padding=1),
                                      nn.ReLU(inplace=True),
                                      nn.Conv2d(256, DIVISOR ** 2 * 9, 1))

    def forward(self, net: torch.Tensor, inp: torch.Tensor, corr: torch.Tensor,
                flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        x = torch.cat([inp, self.encoder(flow, corr)], dim=1)
        if self.small:
            net = self.gru(net, 0.0, 0.0, 0.0, x)  # RAFT's GRU has no context biases
        else:
            net = self.gru(net, x)
        delta = self.flow_head(net)
        mask = None if self.small else 0.25 * self.mask(net)
        return net, mask, delta


def upflow8_bilinear(flow: torch.Tensor) -> torch.Tensor:
    """RAFT-small's upsampling: bilinear (corners aligned) 8x, values times 8."""
    h, w = flow.shape[-2:]
    return DIVISOR * F.interpolate(flow, size=(DIVISOR * h, DIVISOR * w), mode='bilinear',
                                   align_corners=True)


# --------------------------------------------------------------------------------------------
# Loss


def flow_sequence_loss(preds: Sequence[torch.Tensor], gt: torch.Tensor,
                       valid: torch.Tensor | None = None, gamma: float = 0.8,
                       max_flow: float = 400.0) -> torch.Tensor:
    """RAFT's sequence loss ``sum_i gamma**(n - 1 - i) * mean(valid * |pred_i - gt|_1)``.

    As the official training, the mean runs over all ``B * 2 * H * W`` entries (invalid ones
    count as zero), and a pixel is valid where ``valid >= 0.5`` and ``|gt| < max_flow``.

    Args:
        preds: ``n`` predictions ``(B, 2, H, W)``.
        gt: ``(B, 2, H, W)``.
        valid: ``(B, 1, H, W)`` or ``(B, H, W)``; all valid when None.
    """
    if gt.dim() != 4 or gt.shape[1] != 2:
        raise ValueError(f'gt flow must be (B, 2, H, W), got {tuple(gt.shape)}')
    b, _, h, w = gt.shape
    valid = gt.new_ones(b, 1, h, w) if valid is None else valid.reshape(b, 1, h, w).to(gt)
    finite = torch.isfinite(gt).all(dim=1, keepdim=True)
    gt = torch.where(finite, gt, torch.zeros_like(gt))
    mag = gt.square().sum(dim=1, keepdim=True).sqrt()
    mask = ((valid >= 0.5) & (mag < max_flow) & finite).to(gt)
    n = len(preds)
    loss = gt.new_zeros(())
    for i, pred in enumerate(preds):
        if pred.shape != gt.shape:
            raise ValueError(f'prediction {tuple(pred.shape)} and gt {tuple(gt.shape)} differ')
        loss = loss + gamma ** (n - 1 - i) * (mask * (pred - gt).abs()).mean()
    return loss


# --------------------------------------------------------------------------------------------
# Checkpoint names


def convert_official_state_dict(state: Mapping[str, torch.Tensor],
                                small: bool = False) -> dict[str, torch.Tensor]:
    """Official RAFT / RAFT-small weights in our names (a leading ``module.`` is stripped).

    The names are the official ones, except that the official encoder blocks register their
    shortcut norm twice (``norm3`` in residual blocks, ``norm4`` in bottleneck blocks, and inside
    ``downsample``): those duplicates are dropped after checking they equal ``downsample.1``.
    """
    dup = '.norm4.' if small else '.norm3.'
    converted = {}
    for key, value in state.items():
        key = key[len('module.'):] if key.startswith('module.') else key
        if key.startswith(('fnet.', 'cnet.')) and dup in key:
            twin = key.replace(dup, '.downsample.1.')
            full_twin = twin if twin in state else 'module.' + twin
            if full_twin not in state or not torch.equal(state[full_twin], value):
                raise KeyError(f'{twin} (the copy of {key}) is missing or differs')
            continue
        converted[key] = value
    return converted


# --------------------------------------------------------------------------------------------
# Model


@MODELS.register_module()
class RAFT(BaseModel):
    """RAFT optical flow; ``small=True`` builds RAFT-small.

    Args:
        small: the RAFT-small architecture (bottleneck encoders, radius 3, ConvGRU, bilinear 8x).
        corr_mode: 'full' (precomputed all-pairs volume) or 'alt' (on-demand lookup, low memory).
        train_iters, test_iters: refinement iterations in 'loss' and in 'predict' / 'tensor'
            (``test_iters`` may be changed on the instance or passed to ``predict_flow``).
        loss_gamma, max_flow: sequence-loss parameters (official 0.8, 400).
        freeze_bn: keep BatchNorms in eval mode while training (the official trainer does, after
            the FlyingChairs stage).
        hidden_dim, context_dim, corr_levels, corr_radius, encoder_widths, feature_dim: override
            the published sizes (None = published) for CPU-sized variants.
        data_preprocessor: default ``StereoDataPreprocessor`` (``(B, 2, 3, H, W)`` 0-255 pairs
            to [-1, 1], exactly RAFT's input scaling).
    """

    def __init__(self,
                 small: bool = False,
                 corr_mode: str = 'full',
                 train_iters: int = 12,
                 test_iters: int = 24,
                 loss_gamma: float = 0.8,
                 max_flow: float = 400.0,
                 freeze_bn: bool = False,
                 hidden_dim: int | None = None,
                 context_dim: int | None = None,
                 corr_levels: int = 4,
                 corr_radius: int | None = None,
                 encoder_widths: Sequence[int] | None = None,
                 feature_dim: int | None = None,
                 data_preprocessor: dict | None = None,
                 init_cfg: dict | None = None) -> None:
        super().__init__(
            data_preprocessor=MODELS.build(data_preprocessor
                                           or dict(type='StereoDataPreprocessor')),
            init_cfg=init_cfg)
        if corr_mode not in ('full', 'alt'):
            raise ValueError(f"corr_mode must be 'full' or 'alt', got {corr_mode!r}")
        self.small = small
        self.hidden_dim = hidden_dim or (96 if small else 128)
        self.context_dim = context_dim or (64 if small else 128)
        self.corr_levels = corr_levels
        self.corr_radius = corr_radius if corr_radius is not None else (3 if small else 4)
        self.corr_mode = corr_mode
        self.train_iters, self.test_iters = train_iters, test_iters
        self.loss_gamma, self.max_flow = loss_gamma, max_flow
        self.freeze_bn = freeze_bn
        widths = tuple(encoder_widths or ((32, 64, 96) if small else (64, 96, 128)))
        feature_dim = feature_dim or (128 if small else 256)
        block = 'bottleneck' if small else 'residual'
        self.fnet = FeatureEncoder(feature_dim, 'instance', 3, widths, block)
        self.cnet = FeatureEncoder(self.hidden_dim + self.context_dim,
                                   'none' if small else 'batch', 3, widths, block)
        self.update_block = UpdateBlock(correlation_planes(corr_levels, self.corr_radius),
                                        self.hidden_dim, self.context_dim, small)

    def train(self, mode: bool = True) -> RAFT:
        super().train(mode)
        if mode and self.freeze_bn:
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        return self

    def forward_flow(self, image1: torch.Tensor, image2: torch.Tensor, iters: int | None = None,
                     flow_init: torch.Tensor | None = None) -> list[torch.Tensor]:
        """The refinement loop on images already scaled to [-1, 1].

        Args:
            image1, image2: ``(B, 3, H, W)``, H and W multiples of 8 (``predict_flow`` pads).
            iters: iterations (default ``train_iters`` when training, else ``test_iters``).
            flow_init: ``(B, 2, H / 8, W / 8)`` initial flow at 1/8 resolution, in 1/8-resolution
                pixels (the official warm start: the previous frame's low-resolution flow).

        Returns:
            The ``iters`` upsampled flows ``(B, 2, H, W)``, first to last.
        """
        if image1.dim() != 4 or image1.shape[1] != 3 or image1.shape != image2.shape:
            raise ValueError(f'RAFT needs two (B, 3, H, W) images of one size, got '
                             f'{tuple(image1.shape)} and {tuple(image2.shape)}')
        h, w = image1.shape[-2:]
        if h % DIVISOR or w % DIVISOR:
            raise ValueError(f'RAFT.forward_flow needs H and W multiples of {DIVISOR}, got '
                             f'{h} x {w} (predict_flow pads)')
        if iters is None:
            iters = self.train_iters if self.training else self.test_iters
        if iters < 1:
            raise ValueError(f'iters must be >= 1, got {iters}')
        b = image1.shape[0]
        fmap1, fmap2 = self.fnet(torch.cat([image1, image2], dim=0)).split(b, dim=0)
        corr_fn = CorrPyramid2D(fmap1, fmap2, self.corr_levels, self.corr_radius, self.corr_mode)
        net, inp = self.cnet(image1).split([self.hidden_dim, self.context_dim], dim=1)
        net, inp = torch.tanh(net), torch.relu(inp)

        hh, ww = h // DIVISOR, w // DIVISOR
        ys, xs = torch.meshgrid(torch.arange(hh, device=image1.device, dtype=fmap1.dtype),
                                torch.arange(ww, device=image1.device, dtype=fmap1.dtype),
                                indexing='ij')
        coords0 = torch.stack([xs, ys])[None].expand(b, 2, hh, ww)
        flow = torch.zeros_like(coords0)
        if flow_init is not None:
            if flow_init.shape != (b, 2, hh, ww):
                raise ValueError(f'flow_init must be {(b, 2, hh, ww)} (1/8 resolution), got '
                                 f'{tuple(flow_init.shape)}')
            flow = flow + flow_init.to(flow)
        preds = []
        for _ in range(iters):
            flow = flow.detach()  # as the official: no gradient through the lookup positions
            corr = corr_fn(coords0 + flow)
            net, mask, delta = self.update_block(net, inp, corr, flow)
            flow = flow + delta
            preds.append(upflow8_bilinear(flow) if mask is None
                         else convex_upsample(flow, mask, DIVISOR))
        self.last_low_res_flow = flow.detach()  # for warm-starting the next frame
        return preds

    @staticmethod
    def _pad(x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
        """Replicate-pad ``(N, C, H, W)`` to multiples of 8, split evenly (official Sintel)."""
        h, w = x.shape[-2:]
        ph, pw = (-h) % DIVISOR, (-w) % DIVISOR
        pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
        return F.pad(x, pad, mode='replicate'), pad

    def predict_flow(self, inputs: torch.Tensor, iters: int | None = None,
                     flow_init: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, 2, 3, H, W)`` preprocessed pairs, any H, W -> flow ``(B, 2, H, W)`` float32.

        ``flow_init`` is the 1/8-resolution flow of the padded input (``last_low_res_flow`` of
        the previous call); ``iters`` defaults to ``test_iters``.
        """
        if inputs.dim() != 5 or inputs.shape[1:3] != (2, 3):
            raise ValueError(f'RAFT inputs must be (B, 2, 3, H, W) pairs, got '
                             f'{tuple(inputs.shape)}')
        iters = self.test_iters if iters is None else iters
        return self._padded_flows(inputs, iters, flow_init)[-1].float()

    def _padded_flows(self, inputs: torch.Tensor, iters: int,
                      flow_init: torch.Tensor | None = None) -> list[torch.Tensor]:
        """``forward_flow`` on ``(B, 2, 3, H, W)`` pairs of any size: padded, then every
        iteration's flow cropped back to ``(B, 2, H, W)``."""
        b, _, _, h, w = inputs.shape
        padded, (left, _, top, _) = self._pad(inputs.flatten(0, 1))
        padded = padded.view(b, 2, 3, *padded.shape[-2:])
        flows = self.forward_flow(padded[:, 0], padded[:, 1], iters, flow_init)
        return [flow[:, :, top:top + h, left:left + w] for flow in flows]

    def forward(self,
                inputs: torch.Tensor,
                data_samples: Sequence[BaseDataElement] | None = None,
                mode: str = 'tensor') -> Any:
        if mode == 'tensor':  # any size (padded), as SEARAFT's; every iteration's flow
            return self._padded_flows(inputs, self.train_iters if self.training
                                      else self.test_iters)
        if mode == 'loss':
            if not data_samples:
                raise ValueError("RAFT mode='loss' needs data_samples with gt_flow")
            gt = stack_sample_field(data_samples, 'gt_flow', 'RAFT').to(inputs)
            valid = stack_sample_field(data_samples, 'gt_valid', required=False)
            preds = self.forward_flow(inputs[:, 0], inputs[:, 1])
            if preds[-1].shape != gt.shape:
                raise ValueError(f'prediction {tuple(preds[-1].shape)} and gt_flow '
                                 f'{tuple(gt.shape)} differ: crop training pairs to a multiple '
                                 f'of {DIVISOR}')
            loss = flow_sequence_loss(preds, gt, valid, self.loss_gamma, self.max_flow)
            with torch.no_grad():
                epe = (preds[-1] - gt).square().sum(1).sqrt()
                mask = torch.isfinite(epe) if valid is None else (
                    valid.reshape(epe.shape).to(inputs) >= 0.5) & torch.isfinite(epe)
                epe = epe[mask].mean() if mask.any() else gt.new_zeros(())
            return {'loss_flow': loss, 'epe': epe}
        if mode == 'predict':
            pred = self.predict_flow(inputs)
            samples = list(data_samples) if data_samples else [
                BaseDataElement() for _ in range(len(pred))
            ]
            for sample, flow in zip(samples, pred):
                sample.pred_flow = PixelData(data=flow)
            return samples
        raise ValueError(f"mode must be 'tensor', 'loss' or 'predict', got {mode!r}")
