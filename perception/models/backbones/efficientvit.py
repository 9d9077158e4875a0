"""EfficientViT backbone (Liu et al., CVPR 2023, "Memory Efficient Vision Transformer with Cascaded
Group Attention", Microsoft), variants M0-M5, for dense prediction.

Layout (official code, microsoft/Cream ``EfficientViT``):

- overlapping patch embedding: four 3x3 stride-2 Conv-BN (ReLU between), stride 16;
- every block is a sandwich: DWConv+FFN, cascaded group attention (CGA) in local windows,
  DWConv+FFN, each a residual;
- CGA: head ``i`` sees its own channel split plus the output of head ``i-1`` (the cascade), its
  query passes a depthwise "token interaction" conv, and attention carries a learnt bias per
  absolute offset ``(|dy|, |dx|)`` inside the window;
- between stages a subsample block: DWConv+FFN, an inverted-residual patch merging (1x1 conv,
  3x3 stride-2 depthwise conv, squeeze-excite, 1x1 conv), DWConv+FFN.

Outputs: the three stages at strides 16, 32, 64. Module names are the official ones (``blocks1``,
``blocks2.1.conv2.c``...); ``EfficientViT.CHECKPOINT_LAYOUTS`` also maps timm's names.

Any input size: a map larger than the window is zero-padded to whole windows and cropped back (as
the official detection backbone); a map that fits in one window is attended whole, with the bias
of the offsets it contains. The official ImageNet models at 224 x 224 attend their 4 x 4 last stage
with a 4 x 4 bias table; with the default 7 x 7 windows that table is embedded into the 7 x 7 one at
load time (offsets beyond 3 repeat the edge value), so the 224 x 224 numerics are kept exactly.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...engine.checkpoint_mapping import CheckpointLayout
from ...registry import MODELS
from ..layers.drop import DropPath
from .stages import freeze_modules

# Official model configs (microsoft/Cream EfficientViT/classification/model/build.py); key_dim is
# 16 in every stage and window 7 for all variants.
EFFICIENTVIT_ARCHS: dict[str, dict] = {
    'm0': dict(embed_dim=(64, 128, 192), depth=(1, 2, 3), num_heads=(4, 4, 4),
               kernels=(5, 5, 5, 5)),
    'm1': dict(embed_dim=(128, 144, 192), depth=(1, 2, 3), num_heads=(2, 3, 3),
               kernels=(7, 5, 3, 3)),
    'm2': dict(embed_dim=(128, 192, 224), depth=(1, 2, 3), num_heads=(4, 3, 2),
               kernels=(7, 5, 3, 3)),
    'm3': dict(embed_dim=(128, 240, 320), depth=(1, 2, 3), num_heads=(4, 3, 4),
               kernels=(5, 5, 5, 5)),
    'm4': dict(embed_dim=(128, 256, 384), depth=(1, 2, 3), num_heads=(4, 4, 4),
               kernels=(7, 5, 3, 3)),
    'm5': dict(embed_dim=(192, 288, 384), depth=(1, 3, 4), num_heads=(3, 3, 4),
               kernels=(7, 5, 3, 3)),
}


class ConvBN(nn.Sequential):
    """Conv2d without bias followed by BatchNorm2d (children ``c``, ``bn`` as the official code).

    ``bn_weight_init=0`` starts a residual branch at zero, as the official initialisation.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1,
                 padding: int = 0, groups: int = 1, bn_weight_init: float = 1.0) -> None:
        super().__init__()
        self.add_module('c', nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding,
                                       groups=groups, bias=False))
        self.add_module('bn', nn.BatchNorm2d(out_channels))
        nn.init.constant_(self.bn.weight, bn_weight_init)
        nn.init.zeros_(self.bn.bias)


class Residual(nn.Module):
    """``x + DropPath(m(x))`` (child ``m``)."""

    def __init__(self, m: nn.Module, drop_path: float = 0.0) -> None:
        super().__init__()
        self.m = m
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.drop_path(self.m(x))


class FFN(nn.Sequential):
    """1x1 ConvBN -> ReLU -> 1x1 ConvBN (children ``pw1``, ``act``, ``pw2``), hidden = 2 x dim."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.add_module('pw1', ConvBN(dim, hidden))
        self.add_module('act', nn.ReLU())
        self.add_module('pw2', ConvBN(hidden, dim, bn_weight_init=0.0))


def _make_divisible(value: float, divisor: int = 8) -> int:
    # timm's rounding for squeeze-excite widths (round to nearest multiple, at least `divisor`).
    return max(divisor, int(value + divisor / 2) // divisor * divisor)


class SqueezeExcite(nn.Module):
    """Channel gate: mean -> 1x1 conv -> ReLU -> 1x1 conv -> sigmoid (timm's ``SEModule``)."""

    def __init__(self, channels: int, ratio: float = 0.25) -> None:
        super().__init__()
        hidden = _make_divisible(channels * ratio)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.act = nn.ReLU()
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        gate = self.fc2(self.act(self.fc1(x.mean((2, 3), keepdim=True))))
        return x * gate.sigmoid()


class PatchMerging(nn.Module):
    """Stride-2 inverted residual: 1x1 (4x) -> ReLU -> 3x3 dw s2 -> ReLU -> SE -> 1x1.

    ``(B, C, H, W)`` -> ``(B, C_out, ceil(H/2), ceil(W/2))``.
    """

    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        hidden = 4 * dim
        self.conv1 = ConvBN(dim, hidden)
        self.act = nn.ReLU()
        self.conv2 = ConvBN(hidden, hidden, 3, 2, 1, groups=hidden)
        self.se = SqueezeExcite(hidden, 0.25)
        self.conv3 = ConvBN(hidden, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv3(self.se(self.act(self.conv2(self.act(self.conv1(x))))))


def offset_bias_index(window: int) -> Tensor:
    """Index ``(w*w, w*w)``: entry ``|dy| * w + |dx|`` for the query/key offset ``(dy, dx)``.

    This is the order in which the official code enumerates the offsets, so its
    ``attention_biases`` ``(heads, w*w)`` table is used unchanged.
    """
    ys, xs = torch.meshgrid(torch.arange(window), torch.arange(window), indexing='ij')
    ys, xs = ys.flatten(), xs.flatten()
    return (ys[:, None] - ys[None]).abs() * window + (xs[:, None] - xs[None]).abs()


class CascadedGroupAttention(nn.Module):
    """Cascaded group attention on one window (or a whole map no larger than a window).

    Args:
        dim: channels; split into ``num_heads`` equal parts.
        key_dim: query/key channels per head.
        num_heads: heads.
        attn_ratio: value channels per head = ``attn_ratio * key_dim``.
        window: side of the bias table (the largest map attended at once).
        kernels: depthwise kernel of each head's query conv.

    Forward: ``(B, dim, H, W)`` with ``H, W <= window`` -> ``(B, dim, H, W)``.
    """

    def __init__(self, dim: int, key_dim: int, num_heads: int, attn_ratio: float, window: int,
                 kernels: Sequence[int]) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'CascadedGroupAttention: dim {dim} not divisible by {num_heads}')
        if len(kernels) < num_heads:
            raise ValueError(f'CascadedGroupAttention: {num_heads} heads but kernels {kernels}')
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.d = int(attn_ratio * key_dim)
        self.scale = key_dim ** -0.5
        self.window = window
        self.qkvs = nn.ModuleList(ConvBN(dim // num_heads, 2 * key_dim + self.d)
                                  for _ in range(num_heads))
        self.dws = nn.ModuleList(ConvBN(key_dim, key_dim, k, 1, k // 2, groups=key_dim)
                                 for k in kernels[:num_heads])
        self.proj = nn.Sequential(nn.ReLU(), ConvBN(self.d * num_heads, dim, bn_weight_init=0.0))
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, window * window))
        # Derived from `window`: not saved (official checkpoints carry it; the layouts drop it).
        self.register_buffer('attention_bias_idxs', offset_bias_index(window), persistent=False)

    def bias(self, height: int, width: int) -> Tensor:
        """Attention bias ``(heads, H*W, H*W)`` for an ``H x W`` map (``H, W <= window``)."""
        w = self.window
        idx = self.attention_bias_idxs.view(w, w, w, w)[:height, :width, :height, :width]
        return self.attention_biases[:, idx.reshape(height * width, height * width)]

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        if h > self.window or w > self.window:
            raise ValueError(f'CascadedGroupAttention: map {h}x{w} exceeds window {self.window}')
        bias = self.bias(h, w)
        splits = x.chunk(self.num_heads, dim=1)
        outs = []
        feat = splits[0]
        for i in range(self.num_heads):  # the cascade is sequential over heads by design
            if i > 0:
                feat = feat + splits[i]
            q, k, v = self.qkvs[i](feat).split([self.key_dim, self.key_dim, self.d], dim=1)
            q = self.dws[i](q)  # token interaction: local context into the query
            q, k, v = q.flatten(2), k.flatten(2), v.flatten(2)  # (B, c, N)
            attn = (q.transpose(1, 2) @ k) * self.scale + bias[i]  # (B, N, N)
            feat = (v @ attn.softmax(dim=-1).transpose(1, 2)).view(b, self.d, h, w)
            outs.append(feat)
        return self.proj(torch.cat(outs, dim=1))


class LocalWindowAttention(nn.Module):
    """:class:`CascadedGroupAttention` in non-overlapping ``window x window`` windows.

    A map larger than one window is zero-padded at the bottom/right to whole windows (as the
    official code), partitioned with reshape/permute, attended and cropped back.
    Forward: ``(B, C, H, W)`` -> ``(B, C, H, W)``.
    """

    def __init__(self, dim: int, key_dim: int, num_heads: int, attn_ratio: float, window: int,
                 kernels: Sequence[int]) -> None:
        super().__init__()
        self.window = window
        self.attn = CascadedGroupAttention(dim, key_dim, num_heads, attn_ratio, window, kernels)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        ws = self.window
        if h <= ws and w <= ws:
            return self.attn(x)
        pad_b, pad_r = (-h) % ws, (-w) % ws
        x = F.pad(x, (0, pad_r, 0, pad_b))
        nh, nw = (h + pad_b) // ws, (w + pad_r) // ws
        x = x.view(b, c, nh, ws, nw, ws).permute(0, 2, 4, 1, 3, 5).reshape(b * nh * nw, c, ws, ws)
        x = self.attn(x)
        x = x.view(b, nh, nw, c, ws, ws).permute(0, 3, 1, 4, 2, 5).reshape(b, c, nh * ws, nw * ws)
        return x[:, :, :h, :w]


def _dw_ffn(dim: int, drop_path: float = 0.0) -> list[nn.Module]:
    """The sandwich's bread: residual 3x3 depthwise ConvBN and residual FFN."""
    return [Residual(ConvBN(dim, dim, 3, 1, 1, groups=dim, bn_weight_init=0.0), drop_path),
            Residual(FFN(dim, 2 * dim), drop_path)]


class EfficientViTBlock(nn.Module):
    """Sandwich block: DWConv, FFN, local-window CGA, DWConv, FFN, each residual."""

    def __init__(self, dim: int, key_dim: int, num_heads: int, attn_ratio: float, window: int,
                 kernels: Sequence[int], drop_path: float = 0.0) -> None:
        super().__init__()
        self.dw0, self.ffn0 = _dw_ffn(dim, drop_path)
        self.mixer = Residual(
            LocalWindowAttention(dim, key_dim, num_heads, attn_ratio, window, kernels), drop_path)
        self.dw1, self.ffn1 = _dw_ffn(dim, drop_path)

    def forward(self, x: Tensor) -> Tensor:
        return self.ffn1(self.dw1(self.mixer(self.ffn0(self.dw0(x)))))


def _fit_bias_table(table: Tensor, window: int) -> Tensor:
    """Resize an ``(heads, r*r)`` offset-bias table to ``(heads, window*window)``.

    Offsets both tables have keep their values exactly; offsets beyond ``r - 1`` repeat the value
    of the largest offset the checkpoint knows (edge replication).
    """
    heads, n = table.shape
    r = math.isqrt(n)
    if r * r != n:
        raise ValueError(f'attention bias table with {n} entries is not a square window')
    grid = table.view(1, heads, r, r)
    if r < window:
        grid = F.pad(grid, (0, window - r, 0, window - r), mode='replicate')
    return grid[0, :, :window, :window].reshape(heads, window * window).contiguous()


# timm's efficientvit_msra names: ConvBN children `conv`, patch embedding `conv1..4`, stages with
# `downsample.{res1, patchmerge, res2}` then `blocks`, head `head.{bn, linear}`.
_TIMM_RULES = [
    (r'^patch_embed\.conv(\d)\.', lambda m: f'patch_embed.{2 * (int(m.group(1)) - 1)}.'),
    (r'\.conv\.weight$', '.c.weight'),
    (r'^stages\.(\d)\.downsample\.res1\.', lambda m: f'blocks{int(m.group(1)) + 1}.0.'),
    (r'^stages\.(\d)\.downsample\.patchmerge\.', lambda m: f'blocks{int(m.group(1)) + 1}.1.'),
    (r'^stages\.(\d)\.downsample\.res2\.', lambda m: f'blocks{int(m.group(1)) + 1}.2.'),
    # Blocks come after the 3 subsample modules in every stage but the first.
    (r'^stages\.(\d)\.blocks\.(\d+)\.',
     lambda m: f'blocks{int(m.group(1)) + 1}.{int(m.group(2)) + (3 if m.group(1) != "0" else 0)}.'),
]
_DROP = (r'^head\.', r'^head_dist\.', r'attention_bias_idxs$')


@MODELS.register_module()
class EfficientViT(nn.Module):
    """EfficientViT (cascaded group attention) backbone returning NCHW maps at strides 16, 32, 64.

    Args:
        arch: ``'m0'`` .. ``'m5'`` (see :data:`EFFICIENTVIT_ARCHS`) or a dict with ``embed_dim``,
            ``depth``, ``num_heads``, ``kernels`` (3 stages).
        in_channels: image channels.
        key_dim: query/key channels per head, per stage.
        window_size: attention window side per stage (official detection backbone: 7, 7, 7).
        drop_path_rate: stochastic depth on the residuals of the attention blocks, rising linearly
            over the blocks from 0 to this value (the official models train without it).
        out_indices: stages (0, 1, 2) whose outputs are returned.
        frozen_stages: -1 freezes nothing, 0 the patch embedding, ``i >= 1`` also ``blocks1`` ..
            ``blocks{i}``; frozen parts (their BatchNorms included) stay in eval mode.

    Forward: ``(B, in_channels, H, W)`` -> tuple of ``(B, C_i, H_i, W_i)`` for ``i`` in
    ``out_indices``, with ``H_0 = ceil(H / 16)`` and each later stage ``ceil(H_{i-1} / 2)``;
    ``out_channels`` lists the ``C_i``.
    """

    def __init__(self, arch: str | dict = 'm5', in_channels: int = 3,
                 key_dim: Sequence[int] = (16, 16, 16), window_size: Sequence[int] = (7, 7, 7),
                 drop_path_rate: float = 0.0, out_indices: Sequence[int] = (0, 1, 2),
                 frozen_stages: int = -1) -> None:
        super().__init__()
        cfg = EFFICIENTVIT_ARCHS[arch] if isinstance(arch, str) else dict(arch)
        embed_dim, depth, num_heads = cfg['embed_dim'], cfg['depth'], cfg['num_heads']
        kernels = cfg['kernels']
        if not len(embed_dim) == len(depth) == len(num_heads) == len(key_dim) == len(
                window_size) == 3:
            raise ValueError('EfficientViT: embed_dim, depth, num_heads, key_dim and window_size '
                             'need 3 entries each')
        self.out_indices = tuple(out_indices)
        if not self.out_indices or any(i not in range(3) for i in self.out_indices):
            raise ValueError(f'EfficientViT: out_indices {self.out_indices} must be a non-empty '
                             'subset of 0..2')
        if not -1 <= frozen_stages <= 3:
            raise ValueError(f'EfficientViT: frozen_stages={frozen_stages} not in [-1, 3]')
        self.frozen_stages = frozen_stages
        self.embed_dim = tuple(embed_dim)
        self.out_channels = tuple(embed_dim[i] for i in self.out_indices)
        self.window_size = tuple(window_size)

        e0 = embed_dim[0]
        self.patch_embed = nn.Sequential(
            ConvBN(in_channels, e0 // 8, 3, 2, 1), nn.ReLU(),
            ConvBN(e0 // 8, e0 // 4, 3, 2, 1), nn.ReLU(),
            ConvBN(e0 // 4, e0 // 2, 3, 2, 1), nn.ReLU(),
            ConvBN(e0 // 2, e0, 3, 2, 1))
        rates = torch.linspace(0, drop_path_rate, sum(depth)).tolist()
        for i in range(3):
            modules: list[nn.Module] = []
            if i > 0:  # subsample block from the previous stage (official: head of blocks{i+1})
                prev = embed_dim[i - 1]
                modules += [nn.Sequential(*_dw_ffn(prev)), PatchMerging(prev, embed_dim[i]),
                            nn.Sequential(*_dw_ffn(embed_dim[i]))]
            attn_ratio = embed_dim[i] / (key_dim[i] * num_heads[i])
            start = sum(depth[:i])
            modules += [EfficientViTBlock(embed_dim[i], key_dim[i], num_heads[i], attn_ratio,
                                          window_size[i], kernels, rates[start + j])
                        for j in range(depth[i])]
            self.add_module(f'blocks{i + 1}', nn.Sequential(*modules))
        freeze_modules(self._frozen_modules())

    @property
    def CHECKPOINT_LAYOUTS(self) -> dict[str, CheckpointLayout]:  # noqa: N802 (mapping API name)
        """Official and timm layouts; both fit bias tables saved for other window sizes."""
        official = CheckpointLayout(drop=_DROP, convert=self._fit_bias_tables)
        timm = dataclasses.replace(official, rules=_TIMM_RULES)
        return {'official': official, 'timm': timm}

    def _fit_bias_tables(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        own = dict(self.named_parameters())
        for key, value in state.items():
            if key.endswith('attention_biases') and key in own and value.dim() == 2 \
                    and value.shape != own[key].shape and value.shape[0] == own[key].shape[0]:
                state[key] = _fit_bias_table(value, math.isqrt(own[key].shape[1]))
        return state

    def _frozen_modules(self) -> list[nn.Module]:
        modules: list[nn.Module] = [self.patch_embed] if self.frozen_stages >= 0 else []
        return modules + [getattr(self, f'blocks{i + 1}') for i in range(self.frozen_stages)]

    def train(self, mode: bool = True) -> EfficientViT:
        super().train(mode)
        freeze_modules(self._frozen_modules())  # frozen BatchNorms keep their running statistics
        return self

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        if x.dim() != 4:
            raise ValueError(f'EfficientViT expects (B, C, H, W), got {tuple(x.shape)}')
        x = self.patch_embed(x)
        outs = []
        for i in range(3):
            x = getattr(self, f'blocks{i + 1}')(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)


def efficientvit_m0(**kwargs) -> EfficientViT:
    """EfficientViT-M0 (see ``EFFICIENTVIT_ARCHS['m0']``)."""
    return EfficientViT(arch='m0', **kwargs)


def efficientvit_m1(**kwargs) -> EfficientViT:
    """EfficientViT-M1 (see ``EFFICIENTVIT_ARCHS['m1']``)."""
    return EfficientViT(arch='m1', **kwargs)


def efficientvit_m2(**kwargs) -> EfficientViT:
    """EfficientViT-M2 (see ``EFFICIENTVIT_ARCHS['m2']``)."""
    return EfficientViT(arch='m2', **kwargs)


def efficientvit_m3(**kwargs) -> EfficientViT:
    """EfficientViT-M3 (see ``EFFICIENTVIT_ARCHS['m3']``)."""
    return EfficientViT(arch='m3', **kwargs)


def efficientvit_m4(**kwargs) -> EfficientViT:
    """EfficientViT-M4 (see ``EFFICIENTVIT_ARCHS['m4']``)."""
    return EfficientViT(arch='m4', **kwargs)


def efficientvit_m5(**kwargs) -> EfficientViT:
    """EfficientViT-M5 (see ``EFFICIENTVIT_ARCHS['m5']``)."""
    return EfficientViT(arch='m5', **kwargs)


BUILDERS: dict[str, Callable[..., EfficientViT]] = {
    'efficientvit_m0': efficientvit_m0, 'efficientvit_m1': efficientvit_m1,
    'efficientvit_m2': efficientvit_m2, 'efficientvit_m3': efficientvit_m3,
    'efficientvit_m4': efficientvit_m4, 'efficientvit_m5': efficientvit_m5}
