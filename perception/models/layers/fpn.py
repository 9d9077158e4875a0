"""Feature pyramid network (Lin et al., "Feature Pyramid Networks for Object Detection").

Lateral 1x1 convs bring every input level to ``out_channels``; a top-down pass adds each coarser
level, upsampled to the finer one's size by nearest neighbour; a 3x3 conv smooths each sum. Extra
coarser levels come from stride-2 max-pooling (``add_extra_convs=False``, Faster R-CNN) or stride-2
3x3 convs (RetinaNet / FCOS) applied to the last input, lateral or output - mmdetection's
``add_extra_convs`` options, whose checkpoints load via ``CHECKPOINT_LAYOUTS['mmdet']``.
"""
from __future__ import annotations

from typing import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from ...engine.checkpoint_mapping import CheckpointLayout
from ...registry import MODELS

_EXTRA_SOURCES = ('on_input', 'on_lateral', 'on_output')


@MODELS.register_module()
class FPN(nn.Module):
    """Feature pyramid neck.

    Args:
        in_channels: channels of each backbone level, finest first (e.g. ResNet-50's
            ``[256, 512, 1024, 2048]``; a backbone's ``out_channels``).
        out_channels: channels of every output level.
        num_outs: number of output levels; levels beyond the used inputs are extra (coarser,
            stride 2 each).
        start_level: first input level used (e.g. 1 to skip stride 4, as RetinaNet).
        end_level: last input level used, inclusive; ``-1`` for the last.
        add_extra_convs: ``False`` makes extra levels by max-pool (kernel 1, stride 2) of the last
            output; ``True`` / ``'on_input'`` by a stride-2 3x3 conv of the last used input,
            ``'on_lateral'`` of the last lateral, ``'on_output'`` of the last output. Further extra
            levels convolve the previous one.
        relu_before_extra_convs: apply ReLU before every extra conv after the first.

    Input: a sequence of ``(B, in_channels[i], H_i, W_i)``, finest first. Output: a tuple of
    ``num_outs`` maps ``(B, out_channels, H_j, W_j)``.
    """

    # mmdetection wraps each conv in a ConvModule (``lateral_convs.0.conv.weight``).
    CHECKPOINT_LAYOUTS = {'mmdet': CheckpointLayout(
        rules=[(r'^neck\.', ''), (r'^(lateral_convs|fpn_convs)\.(\d+)\.conv\.', r'\1.\2.')])}

    def __init__(self,
                 in_channels: Sequence[int],
                 out_channels: int = 256,
                 num_outs: int = 5,
                 start_level: int = 0,
                 end_level: int = -1,
                 add_extra_convs: bool | str = False,
                 relu_before_extra_convs: bool = False) -> None:
        super().__init__()
        self.in_channels = list(in_channels)
        num_ins = len(self.in_channels)
        end = num_ins - 1 if end_level == -1 else end_level
        if not (0 <= start_level <= end < num_ins):
            raise ValueError(f'FPN needs 0 <= start_level <= end_level < {num_ins} inputs, got '
                             f'start_level={start_level}, end_level={end_level}')
        used = end - start_level + 1
        if num_outs < used:
            raise ValueError(f'FPN num_outs={num_outs} is fewer than the {used} input levels used')
        if add_extra_convs is True:
            add_extra_convs = 'on_input'
        if add_extra_convs not in (False, *_EXTRA_SOURCES):
            raise ValueError(f'FPN add_extra_convs must be False, True or one of {_EXTRA_SOURCES}, '
                             f'got {add_extra_convs!r}')
        self.start_level, self.end_level = start_level, end
        self.num_outs = num_outs
        self.add_extra_convs = add_extra_convs
        self.relu_before_extra_convs = relu_before_extra_convs
        self.out_channels = [out_channels] * num_outs

        self.lateral_convs = nn.ModuleList(
            nn.Conv2d(self.in_channels[i], out_channels, 1) for i in range(start_level, end + 1))
        self.fpn_convs = nn.ModuleList(
            nn.Conv2d(out_channels, out_channels, 3, padding=1) for _ in range(used))
        # Extra convs continue the fpn_convs list, as in mmdetection.
        if add_extra_convs:
            for k in range(num_outs - used):
                source = self.in_channels[end] if k == 0 and add_extra_convs == 'on_input' \
                    else out_channels
                self.fpn_convs.append(nn.Conv2d(source, out_channels, 3, stride=2, padding=1))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):  # mmdetection's FPN init: Xavier uniform, zero bias
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, inputs: Sequence[Tensor]) -> tuple[Tensor, ...]:
        if len(inputs) != len(self.in_channels):
            raise ValueError(f'FPN expects {len(self.in_channels)} input levels, '
                             f'got {len(inputs)}')
        for i, (x, c) in enumerate(zip(inputs, self.in_channels)):
            if x.dim() != 4 or x.shape[1] != c:
                raise ValueError(f'FPN input {i} must be (B, {c}, H, W), got {tuple(x.shape)}')
        laterals = [conv(inputs[self.start_level + i])
                    for i, conv in enumerate(self.lateral_convs)]
        # Top-down: upsample to the finer level's exact size (handles odd sizes).
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(
                laterals[i], size=laterals[i - 1].shape[-2:], mode='nearest')
        used = len(laterals)
        outs = [self.fpn_convs[i](laterals[i]) for i in range(used)]
        if self.num_outs > used:
            if not self.add_extra_convs:
                for _ in range(self.num_outs - used):
                    outs.append(F.max_pool2d(outs[-1], 1, stride=2))
            else:
                source = {'on_input': inputs[self.end_level], 'on_lateral': laterals[-1],
                          'on_output': outs[-1]}[self.add_extra_convs]
                outs.append(self.fpn_convs[used](source))
                for i in range(used + 1, self.num_outs):
                    x = F.relu(outs[-1]) if self.relu_before_extra_convs else outs[-1]
                    outs.append(self.fpn_convs[i](x))
        return tuple(outs)

