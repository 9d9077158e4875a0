"""Swin Transformer backbone (Liu et al., ICCV 2021), T/S/B, for dense prediction.

Module names follow the official classification code (``patch_embed.proj``,
``layers.{i}.blocks.{j}.attn.qkv``, ``layers.{i}.downsample.reduction``...) so official checkpoints
load with a handful of renaming rules. As in mmseg's Swin backbone:

- any input size: the image is padded to a multiple of the patch size, each block pads its map to a
  multiple of the window (and crops back), patch merging pads odd sizes;
- a LayerNorm per output level (``norm{i}``); the official final ``norm`` becomes ``norm3``.

ImageNet weights: ``load_pretrained(model, path, layout='official' | 'timm')`` from
:mod:`perception.engine.checkpoint_mapping` (layouts in ``SwinTransformer.CHECKPOINT_LAYOUTS``).

One deliberate difference from mmseg: a block whose (padded) map is a single window does not shift,
as the official classifier does at 224 x 224 in stage 4 (the pretrained weights saw it that way).
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...engine.checkpoint_mapping import CheckpointLayout
from ...registry import MODELS
from ..layers.drop import DropPath
from ..layers.transformer import Mlp, init_transformer_weights
from ..layers.window_attention import (
    WindowAttention,
    pad_to_multiple,
    shifted_window_mask,
    window_partition,
    window_reverse,
)
from .stages import freeze_modules

SWIN_ARCHS: dict[str, dict] = {
    'tiny': dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24)),
    'small': dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24)),
    'base': dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32)),
}


class PatchEmbed(nn.Module):
    """Non-overlapping ``p x p`` patches -> ``C`` channels, then LayerNorm; pads H, W to ``p``.

    ``(B, 3, H, W)`` -> ``(B, ceil(H/p), ceil(W/p), C)`` (channels last).
    """

    def __init__(self, in_channels: int, embed_dim: int, patch_size: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_channels, embed_dim, patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: Tensor) -> Tensor:
        p = self.patch_size
        pad_b, pad_r = (-x.shape[2]) % p, (-x.shape[3]) % p
        if pad_b or pad_r:
            x = F.pad(x, (0, pad_r, 0, pad_b))
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


class SwinBlock(nn.Module):
    """(Shifted) window attention block: ``x + DP(attn(LN(x)))``, then ``x + DP(mlp(LN(x)))``.

    Forward: ``x`` ``(B, H, W, C)`` -> ``(B, H, W, C)``; any ``H``, ``W``.
    """

    def __init__(self, dim: int, num_heads: int, window_size: int = 7, shift: bool = False,
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, drop: float = 0.0,
                 attn_drop: float = 0.0, drop_path: float = 0.0) -> None:
        super().__init__()
        self.window_size = window_size
        self.shift_size = window_size // 2 if shift else 0
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window_size, num_heads, qkv_bias, attn_drop, drop)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)

    def forward(self, x: Tensor) -> Tensor:
        b, h, w, c = x.shape
        ws = self.window_size
        y, hp, wp = pad_to_multiple(self.norm1(x), ws)
        # A map that is one window has nothing to shift across (official classifier behaviour).
        shift = self.shift_size if (hp > ws or wp > ws) else 0
        mask = None
        if shift:
            y = torch.roll(y, shifts=(-shift, -shift), dims=(1, 2))
            mask = shifted_window_mask(hp, wp, ws, shift, device=x.device).to(y.dtype)
        windows = window_partition(y, ws).view(-1, ws * ws, c)
        windows = self.attn(windows, mask)
        y = window_reverse(windows.view(-1, ws, ws, c), ws, hp, wp)
        if shift:
            y = torch.roll(y, shifts=(shift, shift), dims=(1, 2))
        x = x + self.drop_path(y[:, :h, :w])
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """2 x 2 neighbours -> LayerNorm(4C) -> Linear(4C, 2C); pads odd H, W.

    The concatenation order is the official one: (even row, even col), (odd, even), (even, odd),
    (odd, odd). ``(B, H, W, C)`` -> ``(B, ceil(H/2), ceil(W/2), 2C)``.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        x, hp, wp = pad_to_multiple(x, 2)
        b, _, _, c = x.shape
        # (B, H/2, 2[row], W/2, 2[col], C) -> (B, H/2, W/2, col, row, C): row index varies fastest.
        x = x.view(b, hp // 2, 2, wp // 2, 2, c).permute(0, 1, 3, 4, 2, 5).reshape(
            b, hp // 2, wp // 2, 4 * c)
        return self.reduction(self.norm(x))


class SwinStage(nn.Module):
    """``depth`` blocks alternating regular / shifted windows, then an optional patch merging."""

    def __init__(self, dim: int, depth: int, num_heads: int, window_size: int,
                 drop_paths: Sequence[float], downsample: bool, **block_kwargs) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinBlock(dim, num_heads, window_size, shift=bool(j % 2), drop_path=drop_paths[j],
                      **block_kwargs) for j in range(depth))
        self.downsample = PatchMerging(dim) if downsample else None

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Returns the stage output (before merging) and the merged map for the next stage."""
        for block in self.blocks:
            x = block(x)
        return x, (self.downsample(x) if self.downsample is not None else x)


# Output norms other than the last have no counterpart in a classifier; they start as identity.
_OPTIONAL_NORMS = (r'^norm\d+\.', )
_BUFFERS = (r'\.relative_position_index$', r'\.attn_mask$')

# microsoft/Swin-Transformer: merging at the end of its stage, index/mask buffers saved, the final
# `norm` is our last output norm.
_OFFICIAL = CheckpointLayout(
    rules=[(r'^norm\.', 'norm3.')],
    drop=[r'^head\.', *_BUFFERS],
    optional=_OPTIONAL_NORMS)

# timm >= 0.6: merging at the start of the next stage (`layers.{i+1}.downsample`), classifier in
# `head.fc`.
_TIMM = CheckpointLayout(
    rules=[(r'^norm\.', 'norm3.'),
           (r'^layers\.(\d+)\.downsample\.',
            lambda m: f'layers.{int(m.group(1)) - 1}.downsample.')],
    drop=[r'^head\.', *_BUFFERS],
    optional=_OPTIONAL_NORMS)


@MODELS.register_module()
class SwinTransformer(nn.Module):
    """Swin Transformer backbone returning NCHW maps at strides 4, 8, 16, 32.

    Args:
        arch: ``'tiny'``, ``'small'``, ``'base'`` (see :data:`SWIN_ARCHS`) or a dict with
            ``embed_dim``, ``depths``, ``num_heads``.
        in_channels: image channels.
        window_size: attention window side (7 for the ImageNet-1k 224 models).
        mlp_ratio, qkv_bias, drop_rate, attn_drop_rate: as the official code.
        drop_path_rate: stochastic depth, rising linearly over all blocks from 0 to this value.
        out_indices: stages whose (normalised) outputs are returned.
        frozen_stages: -1 freezes nothing, 0 the patch embedding, ``i >= 1`` also stages ``0..i-1``
            (with their merging layers and output norms); frozen parts stay in eval mode.

    Forward: ``(B, in_channels, H, W)`` -> tuple of ``(B, C_i, ceil(H / 2^(i+2)), ...)`` for
    ``i`` in ``out_indices``; ``out_channels`` lists the ``C_i``.
    """

    CHECKPOINT_LAYOUTS = {'official': _OFFICIAL, 'timm': _TIMM}

    def __init__(self, arch: str | dict = 'tiny', in_channels: int = 3, window_size: int = 7,
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, drop_rate: float = 0.0,
                 attn_drop_rate: float = 0.0, drop_path_rate: float = 0.0,
                 out_indices: Sequence[int] = (0, 1, 2, 3), frozen_stages: int = -1) -> None:
        super().__init__()
        cfg = SWIN_ARCHS[arch] if isinstance(arch, str) else dict(arch)
        embed_dim, depths, num_heads = cfg['embed_dim'], tuple(cfg['depths']), cfg['num_heads']
        if len(depths) != len(num_heads):
            raise ValueError(f'SwinTransformer: {len(depths)} depths but {len(num_heads)} heads')
        num_stages = len(depths)
        self.out_indices = tuple(out_indices)
        if not self.out_indices or any(i < 0 or i >= num_stages for i in self.out_indices):
            raise ValueError(f'SwinTransformer: out_indices {self.out_indices} must lie in '
                             f'[0, {num_stages})')
        if not -1 <= frozen_stages <= num_stages:
            raise ValueError(f'SwinTransformer: frozen_stages={frozen_stages} not in '
                             f'[-1, {num_stages}]')
        self.frozen_stages = frozen_stages
        self.num_features = [embed_dim * 2 ** i for i in range(num_stages)]
        self.out_channels = tuple(self.num_features[i] for i in self.out_indices)

        self.patch_embed = PatchEmbed(in_channels, embed_dim, patch_size=4)
        self.pos_drop = nn.Dropout(drop_rate)
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        self.layers = nn.ModuleList()
        for i, depth in enumerate(depths):
            start = sum(depths[:i])
            self.layers.append(SwinStage(
                self.num_features[i], depth, num_heads[i], window_size,
                rates[start:start + depth], downsample=i < num_stages - 1,
                mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, drop=drop_rate, attn_drop=attn_drop_rate))
        for i in self.out_indices:
            self.add_module(f'norm{i}', nn.LayerNorm(self.num_features[i]))
        self.apply(init_transformer_weights)
        freeze_modules(self._frozen_modules())

    def _frozen_modules(self) -> list[nn.Module]:
        modules: list[nn.Module] = [self.patch_embed] if self.frozen_stages >= 0 else []
        for i in range(self.frozen_stages):
            modules.append(self.layers[i])
            if i in self.out_indices:
                modules.append(getattr(self, f'norm{i}'))
        return modules

    def train(self, mode: bool = True) -> SwinTransformer:
        super().train(mode)
        freeze_modules(self._frozen_modules())  # frozen parts: no dropout / drop path
        return self

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        if x.dim() != 4:
            raise ValueError(f'SwinTransformer expects (B, C, H, W), got {tuple(x.shape)}')
        x = self.pos_drop(self.patch_embed(x))
        outs = []
        for i, stage in enumerate(self.layers):
            out, x = stage(x)
            if i in self.out_indices:
                outs.append(getattr(self, f'norm{i}')(out).permute(0, 3, 1, 2).contiguous())
        return tuple(outs)


def swin_tiny(**kwargs) -> SwinTransformer:
    """Swin-T: C=96, depths (2, 2, 6, 2), heads (3, 6, 12, 24)."""
    return SwinTransformer(arch='tiny', **kwargs)


def swin_small(**kwargs) -> SwinTransformer:
    """Swin-S: C=96, depths (2, 2, 18, 2), heads (3, 6, 12, 24)."""
    return SwinTransformer(arch='small', **kwargs)


def swin_base(**kwargs) -> SwinTransformer:
    """Swin-B: C=128, depths (2, 2, 18, 2), heads (4, 8, 16, 32)."""
    return SwinTransformer(arch='base', **kwargs)


BUILDERS: dict[str, Callable[..., SwinTransformer]] = {
    'swin_tiny': swin_tiny, 'swin_small': swin_small, 'swin_base': swin_base}
