"""DRCT: dense-residual-connected transformer for SR (Hsu et al., CVPRW 2024).

SwinIR's layout (shallow conv, LN, residual groups, LN, conv + long skip, pixel-shuffle head)
with each group replaced by a Residual Dense Group (RDG) of five Swin blocks joined densely, as
RRDB joins convolutions (the paper's Swin-Dense-Residual-Connected blocks):

    x1 = lrelu(adjust1(swin1(x)))             swin_k works on cat(x, x1, ..., x_{k-1}):
    x2 = lrelu(adjust2(swin2([x, x1])))       dim + (k-1) * gc channels, gc = 32 growth
    ...                                       adjust_k: 1x1 conv back to gc channels
    x5 = adjust5(swin5([x, x1, x2, x3, x4]))  (adjust5 to dim, no activation)
    RDG(x) = x + 0.2 * x5

As the official ``DRCT_arch.py``: blocks 2 and 4 use shifted windows; block ``k`` has
``num_heads - (d_k % num_heads)`` heads for its ``d_k = dim + (k-1) gc`` channels (6, 4, 2, 6, 4
at dim 180); blocks 4 and 5 use MLP ratio 1; all five share the group's first stochastic-depth
rate. ``depths`` only sets the number of groups (and the stochastic-depth schedule): every group
has five blocks whatever its depth entry. The official options' ``overlap_ratio``,
``compress_ratio``, ``squeeze_factor`` and ``conv_scale`` are accepted by the official class but
unused (HAT leftovers), so they are not arguments here.

Window 16, embed 180, 6 groups (DRCT, 14.1M at x4) or 12 groups (DRCT-L, 27.6M at x4). Inputs
are reflect-padded to a multiple of the window (the official ``DRCTModel.pre_process``) and the
output cropped back. Like :class:`~perception.models.super_resolution.swinir.SwinIR` the network
works on centred images: use ``SuperResolver(pixel_mean=DIV2K_RGB_MEAN)``, which equals the
official network's own mean subtraction (``img_range = 1``).
"""
from __future__ import annotations

import re
from typing import Mapping, Sequence

import torch
from torch import Tensor, nn

from ...registry import MODELS
from ..layers.padding import reflect_pad_to_multiple
from ..layers.transformer import init_transformer_weights
from ..layers.window_attention import shifted_window_mask
from .swinir import (
    SwinIRBlock,
    conv_channels_last,
    pixelshuffle_upsample,
    unwrap_official_checkpoint,
)

BLOCKS_PER_GROUP = 5


class RDG(nn.Module):
    """Residual Dense Group: five densely connected Swin blocks (see the module docstring).

    Forward: ``x`` ``(B, H, W, dim)`` (multiples of the window), shifted-window ``mask`` ->
    ``(B, H, W, dim)``.
    """

    def __init__(self, dim: int, num_heads: int, window_size: int, mlp_ratio: float = 2.0,
                 gc: int = 32, qkv_bias: bool = True, drop: float = 0.0, attn_drop: float = 0.0,
                 drop_path: float = 0.0) -> None:
        super().__init__()
        blocks, adjusts = [], []
        for k in range(BLOCKS_PER_GROUP):
            width = dim + k * gc
            blocks.append(SwinIRBlock(
                width, num_heads - width % num_heads, window_size, shift=bool(k % 2),
                mlp_ratio=mlp_ratio if k < 3 else 1.0, qkv_bias=qkv_bias, drop=drop,
                attn_drop=attn_drop, drop_path=drop_path))
            adjusts.append(nn.Conv2d(width, gc if k < BLOCKS_PER_GROUP - 1 else dim, 1))
        self.blocks = nn.ModuleList(blocks)
        self.adjusts = nn.ModuleList(adjusts)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        feats = [x]
        for k, (block, adjust) in enumerate(zip(self.blocks, self.adjusts)):
            y = conv_channels_last(adjust, block(torch.cat(feats, dim=-1), mask))
            if k < BLOCKS_PER_GROUP - 1:
                feats.append(self.lrelu(y))
        return y * 0.2 + x


@MODELS.register_module()
class DRCT(nn.Module):
    """DRCT super-resolution network.

    Args:
        scale: upscaling factor (2^n or 3).
        in_channels: image channels.
        embed_dim: body channels.
        depths: one entry per residual dense group (the value only shapes the stochastic-depth
            schedule, as in the official code).
        num_heads: heads per group (blocks adjust it to their width, see the module docstring).
        window_size: attention window side (16 in the published models).
        mlp_ratio: MLP ratio of the first three blocks of each group.
        gc: dense growth channels.
        num_feat: channels of the reconstruction head.
        qkv_bias, drop_rate, attn_drop_rate, drop_path_rate: as the official code.

    Forward: centred LR ``(B, C, h, w)`` -> ``(B, C, s*h, s*w)``, centred the same way.
    """

    def __init__(self,
                 scale: int = 4,
                 in_channels: int = 3,
                 embed_dim: int = 180,
                 depths: Sequence[int] = (6,) * 6,
                 num_heads: Sequence[int] = (6,) * 6,
                 window_size: int = 16,
                 mlp_ratio: float = 2.0,
                 gc: int = 32,
                 num_feat: int = 64,
                 qkv_bias: bool = True,
                 drop_rate: float = 0.0,
                 attn_drop_rate: float = 0.0,
                 drop_path_rate: float = 0.1) -> None:
        super().__init__()
        if len(depths) != len(num_heads):
            raise ValueError(f'DRCT: depths {tuple(depths)} and num_heads {tuple(num_heads)} '
                             'must have the same length')
        self.scale = scale
        self.in_channels = in_channels
        self.window_size = window_size

        self.conv_first = nn.Conv2d(in_channels, embed_dim, 3, 1, 1)
        self.embed_norm = nn.LayerNorm(embed_dim)
        self.pos_drop = nn.Dropout(drop_rate)
        rates = torch.linspace(0, drop_path_rate, sum(depths), device='cpu').tolist()
        self.layers = nn.ModuleList(
            RDG(embed_dim, heads, window_size, mlp_ratio, gc, qkv_bias, drop_rate,
                attn_drop_rate, drop_path=rates[sum(depths[:i])])
            for i, heads in enumerate(num_heads))
        self.norm = nn.LayerNorm(embed_dim)
        self.conv_after_body = nn.Conv2d(embed_dim, embed_dim, 3, 1, 1)
        # nn.LeakyReLU() with its default slope 0.01, as the official head.
        self.conv_before_upsample = nn.Sequential(nn.Conv2d(embed_dim, num_feat, 3, 1, 1),
                                                  nn.LeakyReLU(inplace=True))
        self.upsample = pixelshuffle_upsample(scale, num_feat)
        self.conv_last = nn.Conv2d(num_feat, in_channels, 3, 1, 1)
        self.apply(init_transformer_weights)

    def forward_features(self, x: Tensor) -> Tensor:
        """Body: ``(B, E, H, W)`` (multiples of the window) -> ``(B, E, H, W)``."""
        _, _, h, w = x.shape
        mask = shifted_window_mask(h, w, self.window_size, self.window_size // 2,
                                   device=x.device).to(x.dtype)
        y = self.pos_drop(self.embed_norm(x.permute(0, 2, 3, 1)))
        for layer in self.layers:
            y = layer(y, mask)
        return self.norm(y).permute(0, 3, 1, 2)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f'DRCT expects (B, {self.in_channels}, H, W), got {tuple(x.shape)}')
        h, w = x.shape[-2:]
        x = reflect_pad_to_multiple(x, self.window_size)
        feat = self.conv_first(x)
        feat = self.conv_after_body(self.forward_features(feat)) + feat
        out = self.conv_last(self.upsample(self.conv_before_upsample(feat)))
        return out[:, :, :h * self.scale, :w * self.scale]


def drct_x2(**kwargs) -> DRCT:
    """DRCT x2 (13,991,867 parameters)."""
    return DRCT(scale=2, **kwargs)


def drct_x3(**kwargs) -> DRCT:
    """DRCT x3 (14,176,507 parameters)."""
    return DRCT(scale=3, **kwargs)


def drct_x4(**kwargs) -> DRCT:
    """DRCT x4 (14,139,579 parameters; the paper's 14.1M)."""
    return DRCT(scale=4, **kwargs)


def drct_l_x2(**kwargs) -> DRCT:
    """DRCT-L x2: 12 groups (27,433,007 parameters)."""
    return DRCT(scale=2, **{**_LARGE, **kwargs})


def drct_l_x3(**kwargs) -> DRCT:
    """DRCT-L x3: 12 groups (27,617,647 parameters)."""
    return DRCT(scale=3, **{**_LARGE, **kwargs})


def drct_l_x4(**kwargs) -> DRCT:
    """DRCT-L x4: 12 groups (27,580,719 parameters; the paper's 27.6M)."""
    return DRCT(scale=4, **{**_LARGE, **kwargs})


_LARGE = dict(depths=(6,) * 12, num_heads=(6,) * 12)
_OFFICIAL_BUFFERS = re.compile(r'\.(relative_position_index|attn_mask)$')


def convert_official_state_dict(state: Mapping[str, Tensor],
                                param_key: str | None = None) -> dict[str, Tensor]:
    """Official DRCT weights (``drct/archs/DRCT_arch.py``) -> :class:`DRCT` names.

    ``state``: the official state dict (``module.`` prefix stripped), or the whole BasicSR file
    with ``params`` / ``params_ema``. Renames ``patch_embed.norm.`` -> ``embed_norm.``,
    ``layers.{i}.swin{k}.`` -> ``layers.{i}.blocks.{k-1}.`` and ``layers.{i}.adjust{k}.`` ->
    ``layers.{i}.adjusts.{k-1}.``; drops ``relative_position_index`` and ``attn_mask`` buffers.
    """
    out: dict[str, Tensor] = {}
    for key, value in unwrap_official_checkpoint(state, param_key).items():
        key = key.removeprefix('module.')
        if _OFFICIAL_BUFFERS.search(key):
            continue
        key = re.sub(r'^patch_embed\.norm\.', 'embed_norm.', key)
        key = re.sub(r'^layers\.(\d+)\.(swin|adjust)(\d)\.',
                     lambda m: (f'layers.{m.group(1)}.'
                                f'{"blocks" if m.group(2) == "swin" else "adjusts"}.'
                                f'{int(m.group(3)) - 1}.'), key)
        out[key] = value
    return out
