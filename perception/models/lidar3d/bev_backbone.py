"""Bird's-eye-view 2D backbone and neck of SECOND / PointPillars / CenterPoint.

``SECOND`` (Yan et al., Sensors 2018) is mmdetection3d's 2D ``SECOND`` backbone: stages of a
strided 3x3 conv followed by ``layer_nums[i]`` 3x3 convs, each conv without bias followed by
``BatchNorm2d(eps=1e-3, momentum=0.01)`` and ReLU. ``SECONDFPN`` is its neck: every stage is brought
to a common resolution by a transposed conv (stride > 1, or 1 without ``use_conv_for_no_stride``) or
a strided conv (stride < 1, kernel = stride = 1 / s), then BN and ReLU, and the maps are
concatenated. Weights are initialised as mmdetection3d's ``init_cfg`` (Kaiming normal, fan-out,
for the convs of the backbone and the transposed convs of the neck).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ...registry import MODELS

__all__ = ['SECOND', 'SECONDFPN']


def _conv_bn_relu(conv: nn.Module, channels: int, eps: float, momentum: float) -> list[nn.Module]:
    return [conv, nn.BatchNorm2d(channels, eps=eps, momentum=momentum), nn.ReLU(inplace=True)]


def _kaiming_init(modules: Sequence[nn.Module], kind: type) -> None:
    # mmengine's KaimingInit defaults: normal, fan_out, relu gain, bias 0.
    for module in modules:
        if isinstance(module, kind):
            nn.init.kaiming_normal_(module.weight, a=0, mode='fan_out', nonlinearity='relu')
            if module.bias is not None:
                nn.init.zeros_(module.bias)


@MODELS.register_module()
class SECOND(nn.Module):
    """SECOND 2D backbone.

    Args:
        in_channels: channels of the BEV map.
        out_channels: channels of each stage.
        layer_nums: stride-1 convs after each stage's first conv.
        layer_strides: stride of each stage's first conv.
        norm_eps, norm_momentum: BatchNorm2d settings.
    """

    def __init__(self, in_channels: int = 128, out_channels: Sequence[int] = (128, 128, 256),
                 layer_nums: Sequence[int] = (3, 5, 5), layer_strides: Sequence[int] = (2, 2, 2),
                 norm_eps: float = 1e-3, norm_momentum: float = 0.01) -> None:
        super().__init__()
        if not len(out_channels) == len(layer_nums) == len(layer_strides):
            raise ValueError(f'SECOND: out_channels {list(out_channels)}, layer_nums '
                             f'{list(layer_nums)} and layer_strides {list(layer_strides)} must '
                             'have one entry per stage')
        self.in_channels = int(in_channels)
        self.out_channels = [int(c) for c in out_channels]
        self.strides = [int(s) for s in layer_strides]
        c_in = [self.in_channels, *self.out_channels[:-1]]
        blocks = []
        for i, (num, stride) in enumerate(zip(layer_nums, self.strides)):
            c = self.out_channels[i]
            layers = _conv_bn_relu(nn.Conv2d(c_in[i], c, 3, stride=stride, padding=1, bias=False),
                                   c, norm_eps, norm_momentum)
            for _ in range(int(num)):
                layers += _conv_bn_relu(nn.Conv2d(c, c, 3, padding=1, bias=False), c, norm_eps,
                                        norm_momentum)
            blocks.append(nn.Sequential(*layers))
        self.blocks = nn.ModuleList(blocks)
        _kaiming_init(list(self.modules()), nn.Conv2d)

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        """(B, C, H, W) -> one (B, out_channels[i], H_i, W_i) map per stage."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f'SECOND: expected (B, {self.in_channels}, H, W), '
                             f'got {tuple(x.shape)}')
        outs = []
        for block in self.blocks:
            x = block(x)
            outs.append(x)
        return tuple(outs)


@MODELS.register_module()
class SECONDFPN(nn.Module):
    """SECOND FPN neck: upsample (or downsample) every stage to one size and concatenate.

    Args:
        in_channels: channels of the backbone stages.
        out_channels: channels of each stage after resampling.
        upsample_strides: resampling factor of each stage (e.g. 0.5, 1, 2).
        use_conv_for_no_stride: a stride-1 stage uses a 1x1 conv (not a 1x1 transposed conv).
        norm_eps, norm_momentum: BatchNorm2d settings.
    """

    def __init__(self, in_channels: Sequence[int] = (128, 128, 256),
                 out_channels: Sequence[int] = (256, 256, 256),
                 upsample_strides: Sequence[float] = (1, 2, 4),
                 use_conv_for_no_stride: bool = False, norm_eps: float = 1e-3,
                 norm_momentum: float = 0.01) -> None:
        super().__init__()
        if not len(in_channels) == len(out_channels) == len(upsample_strides):
            raise ValueError(f'SECONDFPN: in_channels {list(in_channels)}, out_channels '
                             f'{list(out_channels)} and upsample_strides '
                             f'{list(upsample_strides)} must have one entry per stage')
        self.in_channels = [int(c) for c in in_channels]
        self.out_channels = [int(c) for c in out_channels]
        deblocks = []
        for c_in, c_out, stride in zip(self.in_channels, self.out_channels, upsample_strides):
            if stride > 1 or (stride == 1 and not use_conv_for_no_stride):
                k = int(stride)
                resample = nn.ConvTranspose2d(c_in, c_out, k, stride=k, bias=False)
            else:
                k = int(round(1 / stride))
                resample = nn.Conv2d(c_in, c_out, k, stride=k, bias=False)
            deblocks.append(nn.Sequential(*_conv_bn_relu(resample, c_out, norm_eps,
                                                         norm_momentum)))
        self.deblocks = nn.ModuleList(deblocks)
        _kaiming_init(list(self.modules()), nn.ConvTranspose2d)

    def forward(self, feats: Sequence[Tensor]) -> list[Tensor]:
        """Stage maps -> ``[(B, sum(out_channels), H', W')]`` (a one-element list)."""
        if len(feats) != len(self.deblocks):
            raise ValueError(f'SECONDFPN: {len(self.deblocks)} stages configured, '
                             f'got {len(feats)} maps')
        ups = [deblock(x) for deblock, x in zip(self.deblocks, feats)]
        sizes = {tuple(u.shape[-2:]) for u in ups}
        if len(sizes) > 1:
            raise ValueError(f'SECONDFPN: the resampled stages have different sizes {sorted(sizes)}'
                             '; the BEV grid must be divisible by the total backbone stride')
        return [torch.cat(ups, dim=1) if len(ups) > 1 else ups[0]]
