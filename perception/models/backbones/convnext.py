"""ConvNeXt-T/S/B (Liu et al., "A ConvNet for the 2020s", CVPR 2022).

4x4 stride-4 patchify stem + LayerNorm; four stages of blocks (7x7 depthwise conv, LayerNorm,
Linear C -> 4C, GELU, Linear 4C -> C, layer scale initialised to 1e-6, stochastic depth rising
linearly over all blocks); between stages LayerNorm + 2x2 stride-2 conv. Module names follow timm
(``stem.0``, ``stages.1.downsample.1``, ``stages.0.blocks.0.conv_dw``, ``.mlp.fc1``, ``.gamma``);
the official (facebookresearch) layout is mapped onto them by ``CHECKPOINT_LAYOUTS``.

For dense prediction, ``out_norm=True`` adds a LayerNorm after each returned stage (``norms.i``),
as the official detection / segmentation code and mmpretrain do; the classifier's final norm
(timm ``head.norm``, official ``norm``) is loaded into ``norms.3``, the others start at identity.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from ...engine.checkpoint_mapping import CheckpointLayout
from ...registry import MODELS
from ..layers.drop import DropPath, trunc_normal_
from ..layers.norm import LayerNorm2d
from .stages import check_stage_args, freeze_modules

_OPTIONAL_NORMS = (r'^norms\.', )

_TIMM = CheckpointLayout(
    rules=[(r'^head\.norm\.', 'norms.3.')],
    drop=[r'^head\.fc\.'],
    optional=_OPTIONAL_NORMS)

_OFFICIAL = CheckpointLayout(
    rules=[
        (r'^downsample_layers\.0\.', 'stem.'),
        (r'^downsample_layers\.(\d)\.', r'stages.\1.downsample.'),
        (r'^stages\.(\d+)\.(\d+)\.', r'stages.\1.blocks.\2.'),
        (r'\.dwconv\.', '.conv_dw.'),
        (r'\.pwconv1\.', '.mlp.fc1.'),
        (r'\.pwconv2\.', '.mlp.fc2.'),
        (r'^norm\.', 'norms.3.'),
    ],
    drop=[r'^head\.'],
    optional=_OPTIONAL_NORMS)


class Mlp(nn.Module):
    """Linear -> GELU -> Linear on the last dimension. ``(..., C) -> (..., C)``."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class ConvNeXtBlock(nn.Module):
    """Depthwise 7x7 -> LN -> MLP(4x) -> layer scale -> stochastic depth, with a residual.
    ``x``: ``(B, C, H, W)`` -> same shape."""

    def __init__(self, dim: int, drop_path: float = 0.0, layer_scale_init: float = 1e-6) -> None:
        super().__init__()
        self.conv_dw = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        # The LN and the MLP run channels-last, where Linear is a 1x1 conv without a reshape.
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, 4 * dim)
        self.gamma = nn.Parameter(torch.full((dim, ), layer_scale_init))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv_dw(x).permute(0, 2, 3, 1)
        y = self.mlp(self.norm(y)) * self.gamma
        return x + self.drop_path(y.permute(0, 3, 1, 2))


class ConvNeXtStage(nn.Module):
    """Optional downsampling (LN + 2x2 stride-2 conv) followed by ``depth`` blocks."""

    def __init__(self, in_dim: int, dim: int, depth: int, drop_paths: Sequence[float],
                 downsample: bool) -> None:
        super().__init__()
        self.downsample = (nn.Sequential(LayerNorm2d(in_dim), nn.Conv2d(in_dim, dim, 2, 2))
                           if downsample else nn.Identity())
        self.blocks = nn.Sequential(*[ConvNeXtBlock(dim, drop_paths[j]) for j in range(depth)])

    def forward(self, x: Tensor) -> Tensor:
        return self.blocks(self.downsample(x))


@MODELS.register_module()
class ConvNeXt(nn.Module):
    """ConvNeXt backbone returning multi-scale features.

    Args:
        variant: ``'tiny'``, ``'small'`` or ``'base'`` (depths 3-3-9-3 / 3-3-27-3 / 3-3-27-3,
            widths 96-192-384-768 / 96-... / 128-256-512-1024).
        in_channels: input image channels.
        out_indices: stages to return (0..3, strides 4, 8, 16, 32).
        frozen_stages: ``-1`` trains everything; ``k >= 0`` freezes the stem and the first ``k``
            stages (``requires_grad=False``, eval mode).
        drop_path_rate: stochastic depth of the last block; block ``i`` of ``N`` gets
            ``rate * i / (N - 1)`` (the paper: 0.1 / 0.4 / 0.5 for T / S / B on ImageNet-1k).
        out_norm: LayerNorm each returned feature map (``norms.i``), as the official dense
            prediction backbones do. ``False`` gives exactly the classifier's trunk.

    Input ``(B, in_channels, H, W)``; output a tuple of ``(B, out_channels[i], H / s, W / s)``
    (sizes not divisible by 32 are floored by the strided convs).
    """

    ARCH: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
        'tiny': ((3, 3, 9, 3), (96, 192, 384, 768)),
        'small': ((3, 3, 27, 3), (96, 192, 384, 768)),
        'base': ((3, 3, 27, 3), (128, 256, 512, 1024)),
    }
    CHECKPOINT_LAYOUTS = {'timm': _TIMM, 'official': _OFFICIAL}

    def __init__(self,
                 variant: str = 'tiny',
                 in_channels: int = 3,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 frozen_stages: int = -1,
                 drop_path_rate: float = 0.0,
                 out_norm: bool = True) -> None:
        super().__init__()
        if variant not in self.ARCH:
            raise ValueError(f'ConvNeXt variant must be one of {sorted(self.ARCH)}, '
                             f'got {variant!r}')
        out_indices = check_stage_args('ConvNeXt', out_indices, frozen_stages)
        depths, dims = self.ARCH[variant]
        self.variant = variant
        self.in_channels = in_channels
        self.out_indices = out_indices
        self.frozen_stages = frozen_stages

        self.stem = nn.Sequential(nn.Conv2d(in_channels, dims[0], 4, 4), LayerNorm2d(dims[0]))
        total = sum(depths)  # linear in the block index, as torch.linspace(0, rate, total)
        rates = [drop_path_rate * i / max(total - 1, 1) for i in range(total)]
        self.stages = nn.ModuleList()
        for i, (depth, dim) in enumerate(zip(depths, dims)):
            first = sum(depths[:i])
            self.stages.append(ConvNeXtStage(dims[max(i - 1, 0)], dim, depth,
                                             rates[first:first + depth], downsample=i > 0))
        self.norms = nn.ModuleDict({str(i): LayerNorm2d(dims[i]) for i in out_indices}
                                   if out_norm else {})
        self.out_channels = [dims[i] for i in out_indices]
        self.apply(self._init_weights)
        freeze_modules(self._frozen_modules())

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        # As the official code: truncated normal (std 0.02) weights, zero biases.
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)

    def _frozen_modules(self) -> list[nn.Module]:
        if self.frozen_stages < 0:
            return []
        return [self.stem, *self.stages[:self.frozen_stages]]

    def train(self, mode: bool = True) -> ConvNeXt:
        """Switch mode, keeping frozen stages in eval mode (no stochastic depth there)."""
        super().train(mode)
        freeze_modules(self._frozen_modules())
        return self

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f'ConvNeXt expects (B, {self.in_channels}, H, W), '
                             f'got {tuple(x.shape)}')
        x = self.stem(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                norm = self.norms[str(i)] if str(i) in self.norms else None
                outs.append(norm(x) if norm is not None else x)
            if i >= max(self.out_indices):
                break
        return tuple(outs)


def convnext_tiny(**kwargs) -> ConvNeXt:
    """ConvNeXt-T: 27,818,592 trunk parameters (28,589,128 with the LN + 1000-class head)."""
    return ConvNeXt(variant='tiny', **kwargs)


def convnext_small(**kwargs) -> ConvNeXt:
    """ConvNeXt-S: 49,453,152 trunk parameters (50,223,688 with the head)."""
    return ConvNeXt(variant='small', **kwargs)


def convnext_base(**kwargs) -> ConvNeXt:
    """ConvNeXt-B: 87,564,416 trunk parameters (88,591,464 with the head)."""
    return ConvNeXt(variant='base', **kwargs)


# Builders by name, collected by tools/benchmark_backbones.py.
BUILDERS: dict[str, Callable[..., ConvNeXt]] = {
    'convnext_tiny': convnext_tiny, 'convnext_small': convnext_small,
    'convnext_base': convnext_base}
