"""ResNet-18/34/50/101 (He et al., "Deep residual learning for image recognition").

The v1.5 variant torchvision, timm and mmdetection use: bottlenecks stride on the 3x3 conv, not
the first 1x1. Module names are torchvision's (``conv1``, ``bn1``, ``layer1.0.conv1``,
``layer1.0.downsample.0``, ...), so torchvision, timm and mmdetection checkpoints load by dropping
the classifier ``fc`` (see ``CHECKPOINT_LAYOUTS`` and
:func:`perception.engine.checkpoint_mapping.load_pretrained`).
"""
from __future__ import annotations

from typing import Callable, Sequence

from torch import Tensor, nn

from ...engine.checkpoint_mapping import CheckpointLayout
from ...registry import MODELS
from ..layers.drop import DropPath
from .stages import check_stage_args, freeze_modules

_CLASSIFIER = CheckpointLayout(drop=[r'^fc\.'])


class BasicBlock(nn.Module):
    """Two 3x3 convs (ResNet-18/34). ``x``: ``(B, inplanes, H, W)`` ->
    ``(B, planes, H / stride, W / stride)``."""
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None, drop_path: float = 0.0,
                 conv_bias: bool = False, relu_before_add: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=conv_bias)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=conv_bias)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.relu_before_add = relu_before_add

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.relu_before_add:
            out = self.relu(out)
        return self.relu(self.drop_path(out) + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride: v1.5), 1x1 expand by 4 (ResNet-50/101).
    ``x``: ``(B, inplanes, H, W)`` -> ``(B, 4 * planes, H / stride, W / stride)``."""
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None, drop_path: float = 0.0) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(self.drop_path(out) + identity)


@MODELS.register_module()
class ResNet(nn.Module):
    """ResNet backbone returning multi-scale features.

    Args:
        depth: 18, 34, 50 or 101.
        in_channels: input image channels.
        out_indices: which stages to return (0..3 = ``layer1``..``layer4``, strides 4..32).
        frozen_stages: ``-1`` trains everything; ``k >= 0`` freezes the stem and the first ``k``
            stages (``requires_grad=False``, kept in eval mode).
        norm_eval: keep every BatchNorm in eval mode (running statistics frozen) while training,
            as detectors fine-tuning with small batches do. The affine parameters still train
            unless frozen.
        drop_path_rate: stochastic depth on the residual branches, rising linearly over blocks
            from 0 to this value (0 = the published model).
        zero_init_residual: start each block's last BN at gamma 0 (Goyal et al.), so blocks begin
            as identities.
        num_stages: build only the first ``num_stages`` stages (the RAFT family's truncated
            encoders use 3); ``out_indices`` must lie below it.
        stem_pool: the stem's 3x3 max-pool; without it the stages run at strides 2..16.
        conv_bias: biases on the convolutions (SEA-RAFT's encoders have them).
        relu_before_add: ReLU the residual branch before the addition as well (SEA-RAFT's
            BasicBlock; ResNet-18/34 only).
        base_channels: the stem's and first stage's width; stage ``i`` has
            ``base_channels * 2**i`` (published 64; narrower only for small test variants).

    Input ``(B, in_channels, H, W)``; output a tuple of ``(B, out_channels[i], H / s, W / s)`` for
    the selected stages, ``s`` in 4, 8, 16, 32 (rounded up for sizes not divisible by 32).
    """

    ARCH: dict[int, tuple[type[nn.Module], tuple[int, int, int, int]]] = {
        18: (BasicBlock, (2, 2, 2, 2)),
        34: (BasicBlock, (3, 4, 6, 3)),
        50: (Bottleneck, (3, 4, 6, 3)),
        101: (Bottleneck, (3, 4, 23, 3)),
    }
    # torchvision, timm and mmdetection name ResNet weights as we do; only the classifier goes.
    CHECKPOINT_LAYOUTS = {'torchvision': _CLASSIFIER, 'timm': _CLASSIFIER}

    def __init__(self,
                 depth: int = 50,
                 in_channels: int = 3,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 drop_path_rate: float = 0.0,
                 zero_init_residual: bool = False,
                 num_stages: int = 4,
                 stem_pool: bool = True,
                 conv_bias: bool = False,
                 relu_before_add: bool = False,
                 base_channels: int = 64) -> None:
        super().__init__()
        if depth not in self.ARCH:
            raise ValueError(f'ResNet depth must be one of {sorted(self.ARCH)}, got {depth}')
        if not 1 <= num_stages <= 4:
            raise ValueError(f'ResNet num_stages must be 1..4, got {num_stages}')
        if base_channels < 1:
            raise ValueError(f'ResNet base_channels must be >= 1, got {base_channels}')
        out_indices = check_stage_args('ResNet', out_indices, frozen_stages, num_stages)
        block, layers = self.ARCH[depth]
        if relu_before_add and block is not BasicBlock:
            raise ValueError('ResNet relu_before_add applies to BasicBlock depths (18, 34) only')
        layers = layers[:num_stages]
        block_args = dict(conv_bias=conv_bias, relu_before_add=relu_before_add) \
            if block is BasicBlock else {}
        self.depth = depth
        self.out_indices = out_indices
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval

        self.conv1 = nn.Conv2d(in_channels, base_channels, 7, 2, 3, bias=conv_bias)
        self.bn1 = nn.BatchNorm2d(base_channels)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1) if stem_pool else nn.Identity()

        total = sum(layers)
        rates = [drop_path_rate * i / max(total - 1, 1) for i in range(total)]
        widths = tuple(base_channels * 2 ** i for i in range(4))
        inplanes, stage_channels = base_channels, []
        for i, (num_blocks, planes) in enumerate(zip(layers, widths)):
            stride = 1 if i == 0 else 2
            downsample = None
            if stride != 1 or inplanes != planes * block.expansion:
                downsample = nn.Sequential(
                    nn.Conv2d(inplanes, planes * block.expansion, 1, stride, bias=conv_bias),
                    nn.BatchNorm2d(planes * block.expansion))
            first = sum(layers[:i])
            blocks = [block(inplanes, planes, stride, downsample, rates[first], **block_args)]
            inplanes = planes * block.expansion
            blocks += [block(inplanes, planes, drop_path=rates[first + j], **block_args)
                       for j in range(1, num_blocks)]
            self.add_module(f'layer{i + 1}', nn.Sequential(*blocks))
            stage_channels.append(inplanes)
        self.out_channels = [stage_channels[i] for i in out_indices]
        self._init_weights(zero_init_residual)
        freeze_modules(self._frozen_modules())

    def _init_weights(self, zero_init_residual: bool) -> None:
        # torchvision's initialisation, so an untrained model matches its statistics.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                last = getattr(m, 'bn3', None) if isinstance(m, Bottleneck) else (
                    getattr(m, 'bn2', None) if isinstance(m, BasicBlock) else None)
                if last is not None:
                    nn.init.zeros_(last.weight)

    def _frozen_modules(self) -> list[nn.Module]:
        if self.frozen_stages < 0:
            return []
        return [self.conv1, self.bn1] + [getattr(self, f'layer{i}')
                                         for i in range(1, self.frozen_stages + 1)]

    def train(self, mode: bool = True) -> ResNet:
        """Switch mode, keeping frozen stages (and with ``norm_eval`` every BN) in eval mode."""
        super().train(mode)
        freeze_modules(self._frozen_modules())
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        if x.dim() != 4 or x.shape[1] != self.conv1.in_channels:
            raise ValueError(f'ResNet expects (B, {self.conv1.in_channels}, H, W), '
                             f'got {tuple(x.shape)}')
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outs = []
        for i in range(max(self.out_indices) + 1):
            x = getattr(self, f'layer{i + 1}')(x)
            if i in self.out_indices:
                outs.append(x)
            if i >= max(self.out_indices):  # later stages would be computed for nothing
                break
        return tuple(outs)


def resnet18(**kwargs) -> ResNet:
    """ResNet-18: 11,176,512 parameters (torchvision's 11,689,512 less the 1000-class fc)."""
    return ResNet(depth=18, **kwargs)


def resnet34(**kwargs) -> ResNet:
    """ResNet-34: 21,284,672 parameters (torchvision's 21,797,672 less the fc)."""
    return ResNet(depth=34, **kwargs)


def resnet50(**kwargs) -> ResNet:
    """ResNet-50 (v1.5): 23,508,032 parameters (torchvision's 25,557,032 less the fc)."""
    return ResNet(depth=50, **kwargs)


def resnet101(**kwargs) -> ResNet:
    """ResNet-101 (v1.5): 42,500,160 parameters (torchvision's 44,549,160 less the fc)."""
    return ResNet(depth=101, **kwargs)


# Builders by name, collected by tools/benchmark_backbones.py.
BUILDERS: dict[str, Callable[..., ResNet]] = {
    'resnet18': resnet18, 'resnet34': resnet34, 'resnet50': resnet50, 'resnet101': resnet101}
