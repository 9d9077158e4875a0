"""MobileNetV2 (Sandler et al., "MobileNetV2: Inverted residuals and linear bottlenecks", 2018).

The ImageNet layout of timm's ``mobilenetv2_100``: a 3x3 stride-2 stem (32 channels), seven
stages of inverted residual blocks (expansion ``t``, output channels ``c``, repeats ``n``, first
stride ``s``) and a 1x1 head convolution to 1280 channels::

    stage   0    1    2    3    4    5    6     7 (head)
    t       1    6    6    6    6    6    6     -
    c      16   24   32   64   96  160  320  1280
    n       1    2    3    4    3    3    1     -
    s       1    2    2    2    1    2    1     -
    stride  2    4    8   16   16   32   32    32   (of the output, relative to the input)

Module names are timm's (``conv_stem``, ``bn1``, ``blocks.<stage>.<block>.conv_pw`` /
``conv_dw`` / ``conv_pwl`` / ``bn1..3``, ``conv_head``, ``bn2``), so timm checkpoints load by
dropping the classifier (``CHECKPOINT_LAYOUTS['timm']``); torchvision's ``mobilenet_v2``
(``features.<i>.conv.<j>``) maps by renaming (``'torchvision'``). With all eight stages the
backbone has 2,223,872 parameters: timm's (and torchvision's) 3,504,872 less the 1280 x 1000
classifier.

``num_stages`` builds only the first stages (IGEV-Stereo uses stages 0..5 and no head), so
unused layers carry no parameters.
"""
from __future__ import annotations

import re
from typing import Callable, Sequence

from torch import Tensor, nn

from ...engine.checkpoint_mapping import CheckpointLayout
from ...registry import MODELS
from .stages import check_stage_args, freeze_modules

# (expansion t, channels c, repeats n, first stride s) per stage, for width multiplier 1.0.
_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
           (6, 160, 3, 2), (6, 320, 1, 1))
_STEM, _HEAD = 32, 1280

# torchvision numbers the blocks consecutively (``features.1`` .. ``features.17``) and names the
# layers inside a block by position: ``features.<i>`` -> (stage, block), and position -> our name
# for the expansion-1 block (stage 0) and the others.
_TV_BLOCKS = [(s, j) for s, (_, _, n, _) in enumerate(_STAGES) for j in range(n)]
_TV_DS = {'0.0': 'conv_dw', '0.1': 'bn1', '1': 'conv_pw', '2': 'bn2'}
_TV_IR = {'0.0': 'conv_pw', '0.1': 'bn1', '1.0': 'conv_dw', '1.1': 'bn2', '2': 'conv_pwl',
          '3': 'bn3'}


def _tv_block(match: re.Match[str]) -> str:
    index, layer = int(match.group(1)), match.group(2)
    stage, block = _TV_BLOCKS[index - 1]
    return f'blocks.{stage}.{block}.{(_TV_DS if stage == 0 else _TV_IR)[layer]}.'


_TORCHVISION = CheckpointLayout(
    rules=[(r'^features\.0\.0\.', 'conv_stem.'), (r'^features\.0\.1\.', 'bn1.'),
           (r'^features\.18\.0\.', 'conv_head.'), (r'^features\.18\.1\.', 'bn2.'),
           (r'^features\.(\d+)\.conv\.(\d(?:\.\d)?)\.', _tv_block)],
    drop=[r'^classifier\.'])


def _make_divisible(value: float, divisor: int = 8) -> int:
    """Round channels to a multiple of ``divisor``, never below 90 % of ``value`` (timm's rule)."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new


class DepthwiseSeparable(nn.Module):
    """Stage 0 (``t = 1``): 3x3 depthwise conv-BN-ReLU6, 1x1 linear projection-BN.
    ``(B, in_ch, H, W) -> (B, out_ch, H / stride, W / stride)``; residual when shapes allow."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.conv_dw = nn.Conv2d(in_ch, in_ch, 3, stride, 1, groups=in_ch, bias=False)
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv_pw = nn.Conv2d(in_ch, out_ch, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.act = nn.ReLU6(inplace=True)
        self.has_skip = stride == 1 and in_ch == out_ch

    def forward(self, x: Tensor) -> Tensor:
        y = self.bn2(self.conv_pw(self.act(self.bn1(self.conv_dw(x)))))
        return x + y if self.has_skip else y


class InvertedResidual(nn.Module):
    """1x1 expansion conv-BN-ReLU6, 3x3 depthwise conv-BN-ReLU6, 1x1 linear projection-BN.
    ``(B, in_ch, H, W) -> (B, out_ch, H / stride, W / stride)``; residual when shapes allow."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, expansion: int) -> None:
        super().__init__()
        mid = _make_divisible(in_ch * expansion)
        self.conv_pw = nn.Conv2d(in_ch, mid, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv_dw = nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv_pwl = nn.Conv2d(mid, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.act = nn.ReLU6(inplace=True)
        self.has_skip = stride == 1 and in_ch == out_ch

    def forward(self, x: Tensor) -> Tensor:
        y = self.act(self.bn1(self.conv_pw(x)))
        y = self.act(self.bn2(self.conv_dw(y)))
        y = self.bn3(self.conv_pwl(y))
        return x + y if self.has_skip else y


@MODELS.register_module()
class MobileNetV2(nn.Module):
    """MobileNetV2 backbone returning multi-scale features.

    Args:
        widen_factor: channel multiplier (1.0 = ``mobilenetv2_100``); channels are rounded to
            multiples of 8, the head keeps 1280 unless the multiplier is above 1 (as timm).
        in_channels: input image channels.
        num_stages: build stages ``0 .. num_stages - 1`` only (1..8; 8 includes the head).
        out_indices: which stages to return (see the module docstring for their strides).
        frozen_stages: ``-1`` trains everything; ``k >= 0`` freezes the stem and the first ``k``
            stages (``requires_grad=False``, kept in eval mode).
        norm_eval: keep every BatchNorm in eval mode while training.

    Input ``(B, in_channels, H, W)``; output a tuple of ``(B, out_channels[i], H / s, W / s)``
    (sizes rounded up, as stride-2 3x3 convs with padding 1 do).
    """

    # timm names the weights as we do (its classifier goes); torchvision numbers its blocks.
    CHECKPOINT_LAYOUTS = {'timm': CheckpointLayout(drop=[r'^classifier\.']),
                          'torchvision': _TORCHVISION}

    def __init__(self,
                 widen_factor: float = 1.0,
                 in_channels: int = 3,
                 num_stages: int = 8,
                 out_indices: Sequence[int] = (1, 2, 4, 7),
                 frozen_stages: int = -1,
                 norm_eval: bool = False) -> None:
        super().__init__()
        if not 1 <= num_stages <= 8:
            raise ValueError(f'MobileNetV2 num_stages must be in 1..8, got {num_stages}')
        self.out_indices = check_stage_args('MobileNetV2', out_indices, frozen_stages,
                                            num_stages)
        self.num_stages = num_stages
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval

        stem = _make_divisible(_STEM * widen_factor)
        self.conv_stem = nn.Conv2d(in_channels, stem, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.act = nn.ReLU6(inplace=True)
        stages, channels, in_ch = [], [], stem
        for t, c, n, s in _STAGES[:min(num_stages, 7)]:
            out_ch = _make_divisible(c * widen_factor)
            if t == 1:
                blocks = [DepthwiseSeparable(in_ch, out_ch, s)]
            else:
                blocks = [InvertedResidual(in_ch if j == 0 else out_ch, out_ch,
                                           s if j == 0 else 1, t) for j in range(n)]
            stages.append(nn.Sequential(*blocks))
            channels.append(out_ch)
            in_ch = out_ch
        self.blocks = nn.Sequential(*stages)
        if num_stages == 8:
            head = _make_divisible(_HEAD * widen_factor) if widen_factor > 1.0 else _HEAD
            self.conv_head = nn.Conv2d(in_ch, head, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(head)
            channels.append(head)
        self.stage_channels = channels
        self.out_channels = [channels[i] for i in self.out_indices]
        self._init_weights()
        freeze_modules(self._frozen_modules())

    def _init_weights(self) -> None:
        # timm's EfficientNet-family initialisation (fan-out normal convs, unit BatchNorms).
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _frozen_modules(self) -> list[nn.Module]:
        if self.frozen_stages < 0:
            return []
        modules: list[nn.Module] = [self.conv_stem, self.bn1]
        modules += list(self.blocks[:self.frozen_stages])
        if self.frozen_stages == 8:
            modules += [self.conv_head, self.bn2]
        return modules

    def train(self, mode: bool = True) -> MobileNetV2:
        """Switch mode, keeping frozen stages (and with ``norm_eval`` every BN) in eval mode."""
        super().train(mode)
        freeze_modules(self._frozen_modules())
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        if x.dim() != 4 or x.shape[1] != self.conv_stem.in_channels:
            raise ValueError(f'MobileNetV2 expects (B, {self.conv_stem.in_channels}, H, W), '
                             f'got {tuple(x.shape)}')
        x = self.act(self.bn1(self.conv_stem(x)))
        outs = []
        for i in range(max(self.out_indices) + 1):
            x = self.blocks[i](x) if i < 7 else self.act(self.bn2(self.conv_head(x)))
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)


def mobilenet_v2_100(**kwargs) -> MobileNetV2:
    """MobileNetV2 1.0 (timm ``mobilenetv2_100``): 2,223,872 parameters with all 8 stages
    (timm's 3,504,872 less the 1280 x 1000 classifier)."""
    return MobileNetV2(widen_factor=1.0, **kwargs)


# Builders by name, collected by tools/benchmark_backbones.py.
BUILDERS: dict[str, Callable[..., MobileNetV2]] = {'mobilenet_v2_100': mobilenet_v2_100}
