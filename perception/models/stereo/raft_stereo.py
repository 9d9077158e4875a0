"""RAFT-Stereo (Lipson, Teed and Deng, 3DV 2021), written from the paper and the official module
definitions (princeton-vl/RAFT-Stereo) so that the default model has the official parameter count
(11,116,176) and the same module layout (``fnet``, ``cnet``, ``context_zqr_convs``,
``update_block``), which keeps official checkpoints convertible by renaming only.

Sign convention: internally the network, like RAFT, tracks the horizontal *flow* from the left to
the right image, ``x_right - x_left``, which is negative for a point in front of the cameras.
Everything this module returns (``forward_disparity``, ``pred_disp``) is **disparity**
``d = x_left - x_right = -flow_x`` in pixels, positive, as the ground truth files store it.

Resolution levels: with ``n_downsample=2`` features, the correlation pyramid and the finest GRU
are at 1/4 resolution, the other GRUs at 1/8 and 1/16. ``hidden_dims`` lists the GRU widths
finest level first (the official code lists them coarsest first; identical for ``[128] * 3``).
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from mmengine.model import BaseDataPreprocessor, BaseModel
from mmengine.structures import BaseDataElement
from torch import nn

from ...registry import MODELS
from ..layers.batching import stack_sample_field
from ..layers.conv_gru import ConvGRU
from ..layers.raft_blocks import (
    ResidualBlock,
    convex_upsample,
    scale_image_pairs,
    sequence_loss_weights,
)
from ..layers.raft_encoders import (
    EncoderStem,
    FeatureEncoder,
    FlowHead,
    encoder_stage,
    init_encoder,
)

# --------------------------------------------------------------------------------------------
# Context encoder (the feature encoder is the shared ``layers.raft_encoders`` one)


class ContextEncoder(EncoderStem):
    """Hidden-state and context features at 1/f, 1/2f, 1/4f (the official ``MultiBasicEncoder``).

    Returns ``n_levels`` pairs ``(hidden, context)``, finest first, each ``(B, dims[i], ...)``.
    """

    def __init__(self, dims: Sequence[int], norm_fn: str = 'batch', n_downsample: int = 2,
                 widths: Sequence[int] = (64, 96, 128)) -> None:
        super().__init__(norm_fn, n_downsample, widths)
        if len(dims) != 3:
            raise ValueError(f'ContextEncoder needs 3 level widths, got {list(dims)}')
        c = widths[2]
        self.layer4 = encoder_stage(c, c, norm_fn, 2)
        self.layer5 = encoder_stage(c, c, norm_fn, 2)
        # Two heads per level (hidden state, context), as the official ``output_dim=[h, c]``.
        self.outputs08 = nn.ModuleList(
            nn.Sequential(ResidualBlock(c, c, norm_fn), nn.Conv2d(c, dims[0], 3, padding=1))
            for _ in range(2))
        self.outputs16 = nn.ModuleList(
            nn.Sequential(ResidualBlock(c, c, norm_fn), nn.Conv2d(c, dims[1], 3, padding=1))
            for _ in range(2))
        self.outputs32 = nn.ModuleList(nn.Conv2d(c, dims[2], 3, padding=1) for _ in range(2))
        init_encoder(self)

    def forward(self, x: torch.Tensor, n_levels: int = 3) -> list[tuple[torch.Tensor, ...]]:
        x = self.stem(x)
        levels = [tuple(head(x) for head in self.outputs08)]
        if n_levels > 1:
            x = self.layer4(x)
            levels.append(tuple(head(x) for head in self.outputs16))
        if n_levels > 2:
            x = self.layer5(x)
            levels.append(tuple(head(x) for head in self.outputs32))
        return levels


# --------------------------------------------------------------------------------------------
# 1D correlation


def correlation_volume(fmap1: torch.Tensor, fmap2: torch.Tensor) -> torch.Tensor:
    """All-pairs correlation along rows: ``(B, D, H, W1), (B, D, H, W2) -> (B, H, W1, W2)``,
    scaled by ``1 / sqrt(D)``."""
    if fmap1.shape[:3] != fmap2.shape[:3]:
        raise ValueError(f'feature maps must share (B, D, H): {tuple(fmap1.shape)} vs '
                         f'{tuple(fmap2.shape)}')
    return torch.einsum('bdhi,bdhj->bhij', fmap1, fmap2) / math.sqrt(fmap1.shape[1])


def _linear_taps(x: torch.Tensor, width: int) -> tuple[torch.Tensor, ...]:
    """Indices and weights of 1D linear interpolation at ``x``, zero outside ``[0, width - 1]``.

    Equals ``grid_sample(..., align_corners=True, padding_mode='zeros')`` along one axis. Returns
    ``(i0, w0, i1, w1)`` with clamped indices and weights already zeroed for out-of-range taps.
    """
    x0 = torch.floor(x)
    frac = x - x0
    i0 = x0.long()
    i1 = i0 + 1
    w0 = (1 - frac) * ((i0 >= 0) & (i0 < width))
    w1 = frac * ((i1 >= 0) & (i1 < width))
    return i0.clamp(0, width - 1), w0, i1.clamp(0, width - 1), w1


class CorrPyramid1D:
    """The 1D correlation pyramid and its lookup around the current match positions.

    Level ``i`` averages ``2**i`` neighbouring right-image columns. Lookup samples each level at
    ``x / 2**i + k`` for ``k = -radius..radius`` with linear interpolation (zero outside the
    image) and returns ``(B, levels * (2 * radius + 1), H, W1)``, level-major.

    ``mode='reg'`` builds the full ``(B, H, W1, W2)`` volume once and samples it;
    ``mode='alt'`` keeps only the pooled right feature maps and computes the ``levels * (2r + 1)``
    dot products at the sampled positions on each call (memory ``O(B H W D)`` instead of
    ``O(B H W^2)``). Both give the same numbers (pooling commutes with the dot product).

    Args:
        fmap1, fmap2: left / right features ``(B, D, H, W)``.
    """

    def __init__(self, fmap1: torch.Tensor, fmap2: torch.Tensor, num_levels: int = 4,
                 radius: int = 4, mode: str = 'reg') -> None:
        if mode not in ('reg', 'alt'):
            raise ValueError(f"correlation mode must be 'reg' or 'alt', got {mode!r}")
        self.num_levels, self.radius, self.mode = num_levels, radius, mode
        fmap1, fmap2 = fmap1.float(), fmap2.float()
        if mode == 'reg':
            corr = correlation_volume(fmap1, fmap2)
            b, h, w1, w2 = corr.shape
            corr = corr.reshape(b * h * w1, 1, w2)
            self.pyramid = [corr]
            for _ in range(num_levels - 1):
                corr = F.avg_pool1d(corr, 2, stride=2)
                self.pyramid.append(corr)
        else:
            self.fmap1 = fmap1
            self.pyramid = [fmap2]
            for _ in range(num_levels - 1):
                fmap2 = F.avg_pool2d(fmap2, (1, 2), stride=(1, 2))
                self.pyramid.append(fmap2)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Look up at match columns ``x`` ``(B, H, W1)`` (right-image x, level-0 pixels)."""
        offsets = torch.arange(-self.radius, self.radius + 1, device=x.device, dtype=x.dtype)
        b, h, w1 = x.shape
        out = []
        for i, level in enumerate(self.pyramid):
            pos = x[..., None] / 2 ** i + offsets  # (B, H, W1, K)
            if self.mode == 'reg':
                out.append(self._lookup_volume(level, pos.reshape(b * h * w1, -1)).reshape(
                    b, h, w1, -1))
            else:
                out.append(self._lookup_features(level, pos))
        return torch.cat(out, dim=-1).permute(0, 3, 1, 2).contiguous()

    @staticmethod
    def _lookup_volume(corr: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """``corr`` ``(N, 1, W2)`` sampled at ``pos`` ``(N, K)`` -> ``(N, K)``."""
        row = corr[:, 0]
        i0, w0, i1, w1 = _linear_taps(pos, row.shape[1])
        return w0 * row.gather(1, i0) + w1 * row.gather(1, i1)

    def _lookup_features(self, fmap2: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Dot products of left features with right features interpolated at ``pos``
        ``(B, H, W1, K)`` -> ``(B, H, W1, K)``."""
        b, d, h, w2 = fmap2.shape
        i0, w0, i1, w1 = _linear_taps(pos, w2)
        out = []
        # Loop over the 2r+1 offsets only, so peak memory is one (B, D, H, W1) gather.
        for k in range(pos.shape[-1]):
            f0 = fmap2.gather(3, i0[None, ..., k].expand(d, -1, -1, -1).transpose(0, 1))
            f1 = fmap2.gather(3, i1[None, ..., k].expand(d, -1, -1, -1).transpose(0, 1))
            c0 = (self.fmap1 * f0).sum(1)
            c1 = (self.fmap1 * f1).sum(1)
            out.append(w0[..., k] * c0 + w1[..., k] * c1)
        return torch.stack(out, dim=-1) / math.sqrt(d)


# --------------------------------------------------------------------------------------------
# Update block


class MotionEncoder(nn.Module):
    """Correlation + current flow -> 128 motion features (126 learnt + the 2 flow channels)."""

    def __init__(self, corr_planes: int) -> None:
        super().__init__()
        self.convc1 = nn.Conv2d(corr_planes, 64, 1)
        self.convc2 = nn.Conv2d(64, 64, 3, padding=1)
        self.convf1 = nn.Conv2d(2, 64, 7, padding=3)
        self.convf2 = nn.Conv2d(64, 64, 3, padding=1)
        self.conv = nn.Conv2d(128, 128 - 2, 3, padding=1)

    def forward(self, flow: torch.Tensor, corr: torch.Tensor) -> torch.Tensor:
        cor = F.relu(self.convc2(F.relu(self.convc1(corr))))
        flo = F.relu(self.convf2(F.relu(self.convf1(flow))))
        return torch.cat([F.relu(self.conv(torch.cat([cor, flo], dim=1))), flow], dim=1)


def pool2x(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, 3, stride=2, padding=1)


def interp_to(x: torch.Tensor, dest: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, dest.shape[2:], mode='bilinear', align_corners=True)


class MultiUpdateBlock(nn.Module):
    """ConvGRUs at up to three resolutions exchanging hidden states, plus flow and mask heads.

    The finest GRU reads the motion features and the upsampled middle state; the middle GRU the
    pooled fine and upsampled coarse states; the coarse GRU the pooled middle state.
    """

    def __init__(self, hidden_dims: Sequence[int], n_gru_layers: int, corr_planes: int,
                 factor: int) -> None:
        super().__init__()
        self.n_gru_layers = n_gru_layers
        h0, h1, h2 = hidden_dims
        self.encoder = MotionEncoder(corr_planes)
        self.gru08 = ConvGRU(h0, 128 + h1 * (n_gru_layers > 1))
        self.gru16 = ConvGRU(h1, h2 * (n_gru_layers == 3) + h0)
        self.gru32 = ConvGRU(h2, h1)
        self.flow_head = FlowHead(h0, hidden_dim=256, output_dim=2)
        self.mask = nn.Sequential(nn.Conv2d(h0, 256, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(256, factor ** 2 * 9, 1))

    def forward(self, net: list[torch.Tensor], inp: list[list[torch.Tensor]],
                corr: torch.Tensor | None = None, flow: torch.Tensor | None = None,
                iter08: bool = True, iter16: bool = True, iter32: bool = True,
                update: bool = True) -> Any:
        net = list(net)
        if iter32:
            net[2] = self.gru32(net[2], *inp[2], pool2x(net[1]))
        if iter16:
            extra = [interp_to(net[2], net[1])] if self.n_gru_layers > 2 else []
            net[1] = self.gru16(net[1], *inp[1], pool2x(net[0]), *extra)
        if iter08:
            motion = self.encoder(flow, corr)
            extra = [interp_to(net[1], net[0])] if self.n_gru_layers > 1 else []
            net[0] = self.gru08(net[0], *inp[0], motion, *extra)
        if not update:
            return net
        delta_flow = self.flow_head(net[0])
        mask = 0.25 * self.mask(net[0])  # the official scaling, to balance gradients
        return net, mask, delta_flow


# --------------------------------------------------------------------------------------------
# Loss


def sequence_loss(preds: Sequence[torch.Tensor], gt: torch.Tensor, valid: torch.Tensor,
                  gamma: float = 0.9, max_flow: float = 700) -> torch.Tensor:
    """Weighted sum over iterations of the mean L1 disparity error on valid pixels.

    Args:
        preds: ``n`` predictions ``(B, 1, H, W)``.
        gt: ground truth ``(B, 1, H, W)`` (same sign as the predictions).
        valid: ``(B, 1, H, W)`` mask; pixels with ``valid >= 0.5`` and ``|gt| < max_flow`` count.

    Returns:
        Scalar loss (0 if no pixel is valid).
    """
    if valid.shape != gt.shape:
        raise ValueError(f'valid {tuple(valid.shape)} and gt {tuple(gt.shape)} differ')
    mask = (valid.float() >= 0.5) & (gt.abs() < max_flow) & torch.isfinite(gt)
    count = mask.sum().clamp(min=1)
    gt = torch.where(mask, gt, torch.zeros_like(gt))
    weights = sequence_loss_weights(len(preds), gamma)
    loss = gt.new_zeros(())
    for weight, pred in zip(weights.tolist(), preds):
        if pred.shape != gt.shape:
            raise ValueError(f'prediction {tuple(pred.shape)} and gt {tuple(gt.shape)} differ')
        loss = loss + weight * ((pred - gt).abs() * mask).sum() / count
    return loss


# --------------------------------------------------------------------------------------------
# Network and mmengine model


def convert_official_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official RAFT-Stereo weights (``module.`` already stripped) in our names.

    The names are the official ones, but the official residual blocks register their shortcut
    norm twice (as ``norm3`` and inside ``downsample``): batch-norm blocks (the context encoder)
    store every such tensor under both names. The ``norm3`` copies are dropped after checking
    that they equal the ``downsample.1`` ones.
    """
    converted = {}
    for key, value in state.items():
        if '.norm3.' in key:
            twin = key.replace('.norm3.', '.downsample.1.')
            if twin not in state or not torch.equal(state[twin], value):
                raise KeyError(f'{twin} (the copy of {key})')
            continue
        converted[key] = value
    return converted


@MODELS.register_module()
class StereoDataPreprocessor(BaseDataPreprocessor):
    """Stack ``(2, 3, H, W)`` pairs (0-255) into ``(B, 2, 3, H, W)`` float in [-1, 1]."""

    def forward(self, data: dict, training: bool = False) -> dict:
        data = self.cast_data(data)
        inputs = scale_image_pairs(data['inputs'], 'stereo')
        return {'inputs': inputs, 'data_samples': data.get('data_samples')}


@MODELS.register_module()
class RAFTStereo(BaseModel):
    """RAFT-Stereo; defaults are the official ``train_stereo.py`` defaults (11,116,176 params).

    Args:
        hidden_dims: GRU widths per level, finest first (context widths are the same).
        n_gru_layers: 1, 2 or 3 GRU levels.
        n_downsample: features at 1 / 2**n_downsample; convex upsampling by the same factor.
        context_norm: norm of the context encoder ('batch' as official).
        corr_levels, corr_radius: correlation pyramid depth and lookup radius.
        corr_implementation: 'reg' (full volume) or 'alt' (on-demand dot products).
        slow_fast_gru: update the coarse GRUs extra times per iteration.
        train_iters, test_iters: refinement iterations in 'loss' and 'predict'/'tensor' modes
            (``test_iters`` may be changed on the instance or passed to ``forward_disparity``).
        loss_gamma, max_disp: sequence-loss parameters.
        freeze_bn: keep the BatchNorms in eval mode during training (the official training does).
        pad_divisor: 'predict' pads inputs (replicate) to a multiple of this and crops back.
        encoder_widths: stage widths of the feature and context encoders (published
            ``(64, 96, 128)``); smaller for CPU-sized variants.
        feature_dim: width of the matching features (published 256).
    """

    def __init__(self,
                 hidden_dims: Sequence[int] = (128, 128, 128),
                 n_gru_layers: int = 3,
                 n_downsample: int = 2,
                 context_norm: str = 'batch',
                 corr_levels: int = 4,
                 corr_radius: int = 4,
                 corr_implementation: str = 'reg',
                 slow_fast_gru: bool = False,
                 train_iters: int = 16,
                 test_iters: int = 32,
                 loss_gamma: float = 0.9,
                 max_disp: float = 700,
                 freeze_bn: bool = True,
                 pad_divisor: int = 32,
                 encoder_widths: Sequence[int] = (64, 96, 128),
                 feature_dim: int = 256,
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
        if corr_implementation not in ('reg', 'alt'):
            raise ValueError(f"corr_implementation must be 'reg' or 'alt', got "
                             f'{corr_implementation!r}')
        self.hidden_dims = hidden_dims
        self.n_gru_layers = n_gru_layers
        self.factor = 2 ** n_downsample
        self.corr_levels, self.corr_radius = corr_levels, corr_radius
        self.corr_implementation = corr_implementation
        self.slow_fast_gru = slow_fast_gru
        self.train_iters, self.test_iters = train_iters, test_iters
        self.loss_gamma, self.max_disp = loss_gamma, max_disp
        self.freeze_bn = freeze_bn
        self.pad_divisor = pad_divisor

        self.cnet = ContextEncoder(hidden_dims, context_norm, n_downsample, encoder_widths)
        self.update_block = MultiUpdateBlock(hidden_dims, n_gru_layers,
                                             corr_levels * (2 * corr_radius + 1), self.factor)
        self.context_zqr_convs = nn.ModuleList(
            nn.Conv2d(hidden_dims[i], hidden_dims[i] * 3, 3, padding=1)
            for i in range(n_gru_layers))
        self.fnet = FeatureEncoder(feature_dim, 'instance', n_downsample, encoder_widths)

    def train(self, mode: bool = True) -> RAFTStereo:
        super().train(mode)
        if mode and self.freeze_bn:
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        return self

    def forward_disparity(self, left: torch.Tensor, right: torch.Tensor, iters: int | None = None,
                          test_mode: bool = False) -> list[torch.Tensor]:
        """Run the refinement loop on images already scaled to [-1, 1].

        Args:
            left, right: ``(B, 3, H, W)``; H and W should be multiples of ``2**n_downsample * 4``
                (``predict`` pads).
            iters: refinement iterations (default ``test_iters`` if ``test_mode`` else
                ``train_iters``).
            test_mode: return only the final upsampled prediction.

        Returns:
            Positive disparities ``(B, 1, H, W)``, one per iteration (one in test mode).
        """
        if left.shape != right.shape or left.dim() != 4 or left.shape[1] != 3:
            raise ValueError(f'left and right must be (B, 3, H, W) of one size, got '
                             f'{tuple(left.shape)} and {tuple(right.shape)}')
        iters = iters if iters is not None else (self.test_iters if test_mode
                                                 else self.train_iters)
        if iters < 1:
            raise ValueError(f'iters must be >= 1, got {iters}')
        n = self.n_gru_layers
        context = self.cnet(left, n_levels=n)
        net = [torch.tanh(level[0]) for level in context]
        inp = [list(conv(torch.relu(level[1])).split(conv.out_channels // 3, dim=1))
               for level, conv in zip(context, self.context_zqr_convs)]
        fmaps = self.fnet(torch.cat([left, right], dim=0))
        fmap1, fmap2 = fmaps.split(left.shape[0], dim=0)
        corr_fn = CorrPyramid1D(fmap1, fmap2, self.corr_levels, self.corr_radius,
                                self.corr_implementation)

        b, _, h, w = fmap1.shape
        x0 = torch.arange(w, device=left.device, dtype=torch.float32).expand(b, h, w)
        flow_x = torch.zeros(b, 1, h, w, device=left.device)  # x_right - x_left, <= 0 usually
        preds = []
        for itr in range(iters):
            flow_x = flow_x.detach()
            corr = corr_fn(x0 + flow_x[:, 0])
            flow = torch.cat([flow_x, torch.zeros_like(flow_x)], dim=1)
            if n == 3 and self.slow_fast_gru:
                net = self.update_block(net, inp, iter08=False, iter16=False, iter32=True,
                                        update=False)
            if n >= 2 and self.slow_fast_gru:
                net = self.update_block(net, inp, iter08=False, iter16=True, iter32=n == 3,
                                        update=False)
            net, mask, delta = self.update_block(net, inp, corr, flow, iter16=n >= 2,
                                                 iter32=n == 3)
            # Stereo: project the update onto the epipolar line (drop the y component).
            flow_x = flow_x + delta[:, :1]
            if test_mode and itr < iters - 1:
                continue
            preds.append(-convex_upsample(flow_x, mask, self.factor))
        return preds

    def _pad(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
        h, w = x.shape[-2:]
        d = self.pad_divisor
        ph, pw = (-h) % d, (-w) % d
        pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
        return F.pad(x, pad, mode='replicate'), pad

    def predict_disparity(self, inputs: torch.Tensor, iters: int | None = None) -> torch.Tensor:
        """``(B, 2, 3, H, W)`` in [-1, 1], any H, W -> disparity ``(B, H, W)``."""
        b, _, _, h, w = inputs.shape
        padded, (left, _, top, _) = self._pad(inputs.flatten(0, 1))
        padded = padded.view(b, 2, 3, *padded.shape[-2:])
        disp = self.forward_disparity(padded[:, 0], padded[:, 1], iters, test_mode=True)[-1]
        return disp[:, 0, top:top + h, left:left + w]

    def forward(self,
                inputs: torch.Tensor,
                data_samples: Sequence[BaseDataElement] | None = None,
                mode: str = 'tensor') -> Any:
        if mode == 'tensor':
            return self.predict_disparity(inputs)
        if mode == 'loss':
            if not data_samples:
                raise ValueError("mode='loss' needs data_samples with gt_disp")
            gt = stack_sample_field(data_samples, 'gt_disp', 'RAFTStereo').to(inputs)
            valid = stack_sample_field(data_samples, 'gt_valid', required=False)
            valid = (gt > 0 if valid is None else valid).to(inputs)
            preds = self.forward_disparity(inputs[:, 0], inputs[:, 1])
            if preds[-1].shape != gt.shape:
                raise ValueError(f'prediction {tuple(preds[-1].shape)} and gt_disp '
                                 f'{tuple(gt.shape)} differ: crop training pairs to a multiple '
                                 f'of {self.pad_divisor}')
            loss = sequence_loss(preds, gt, valid, self.loss_gamma, self.max_disp)
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
