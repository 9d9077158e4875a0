"""SwinIR: image restoration with residual Swin transformer blocks (Liang et al., ICCVW 2021).

Classical SR (``embed 180``, six residual groups of six blocks, ``pixelshuffle`` upsampler) and
lightweight SR (``embed 60``, four groups of six blocks, one-step ``pixelshuffledirect``
upsampler), both with window 8, MLP ratio 2 and the one-conv residual of each group (RSTB):

    x -> conv_first -> LN -> [RSTB: 6 x (shifted) window block, conv 3x3, + input] x N -> LN
      -> conv_after_body (+ conv_first output) -> upsampler -> (B, C, s*h, s*w)

Any input size: the image is reflect-padded at the bottom/right to a multiple of the window (as
the official network and test script do) and the output is cropped back to ``s*h x s*w``.

Mean handling: the official network subtracts the DIV2K RGB mean :data:`DIV2K_RGB_MEAN` itself
(``img_range = 1``) and adds it back at the end. Here the network works on **already centred**
images and :class:`~perception.models.super_resolution.SuperResolver` does the centring: use
``SuperResolver(pixel_mean=DIV2K_RGB_MEAN, ...)`` (the configs do), and
``SuperResolver.upscale(x) = net(x - mean) + mean`` equals the official ``forward(x)``.

Module names follow the official code (``conv_first``, ``layers.{i}.blocks.{j}.attn.qkv``,
``conv_after_body``, ``conv_before_upsample.0``, ``upsample.{k}``, ``conv_last``) except for the
two empty wrappers it keeps: see :func:`convert_official_state_dict`. Parameter counts (from the
official definitions): light x2/x3/x4 910,152 / 918,267 / 929,628; classical x2/x3/x4
11,752,487 / 11,937,127 / 11,900,199.
"""
from __future__ import annotations

import math
import re
from typing import Mapping, Sequence

import torch
from torch import Tensor, nn

from ...registry import MODELS
from ..layers.drop import DropPath
from ..layers.padding import reflect_pad_to_multiple
from ..layers.transformer import Mlp, init_transformer_weights
from ..layers.window_attention import WindowAttention, attend_in_windows, shifted_window_mask

# Per-channel RGB mean of DIV2K that the official SwinIR / DRCT networks subtract (img_range 1).


def pixelshuffle_upsample(scale: int, num_feat: int) -> nn.Sequential:
    """The classical upsampler: ``log2(s)`` x (conv 3x3 to ``4C``, shuffle 2), or conv to ``9C``,
    shuffle 3 for ``s = 3``. ``(B, C, h, w)`` -> ``(B, C, s*h, s*w)``."""
    layers: list[nn.Module] = []
    if scale >= 1 and scale & (scale - 1) == 0:
        for _ in range(int(math.log2(scale))):
            layers += [nn.Conv2d(num_feat, 4 * num_feat, 3, 1, 1), nn.PixelShuffle(2)]
    elif scale == 3:
        layers += [nn.Conv2d(num_feat, 9 * num_feat, 3, 1, 1), nn.PixelShuffle(3)]
    else:
        raise ValueError(f'pixelshuffle upsampler supports scales 2^n and 3, got {scale}')
    return nn.Sequential(*layers)


class SwinIRBlock(nn.Module):
    """Swin block: ``x + DP(W-MSA(LN(x)))``, then ``x + DP(MLP(LN(x)))``.

    With ``shift`` the windows are cyclically shifted by ``window_size // 2`` and the caller must
    pass the matching :func:`shifted_window_mask`. SwinIR shifts every second block; DRCT reuses
    the block with its own pattern.

    Forward: ``x`` ``(B, H, W, C)`` with ``H``, ``W`` multiples of the window, ``mask``
    ``(nW, w*w, w*w)`` or None -> ``(B, H, W, C)``.
    """

    def __init__(self, dim: int, num_heads: int, window_size: int = 8, shift: bool = False,
                 mlp_ratio: float = 2.0, qkv_bias: bool = True, drop: float = 0.0,
                 attn_drop: float = 0.0, drop_path: float = 0.0) -> None:
        super().__init__()
        self.shift_size = window_size // 2 if shift else 0
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window_size, num_heads, qkv_bias, attn_drop, drop)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        if self.shift_size and mask is None:
            raise ValueError('a shifted SwinIRBlock needs the shifted-window mask')
        y = attend_in_windows(self.norm1(x), self.attn, self.shift_size,
                              mask if self.shift_size else None)
        x = x + self.drop_path(y)
        return x + self.drop_path(self.mlp(self.norm2(x)))


def conv_channels_last(conv: nn.Module, x: Tensor) -> Tensor:
    """Apply a NCHW convolution to a channels-last map ``(B, H, W, C)`` -> ``(B, H, W, C')``."""
    return conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class RSTB(nn.Module):
    """Residual Swin Transformer Block: ``depth`` blocks (every second one shifted), a 3x3 conv,
    and the group's input added back. ``(B, H, W, C)`` -> ``(B, H, W, C)``."""

    def __init__(self, dim: int, depth: int, num_heads: int, window_size: int,
                 drop_paths: Sequence[float], **block_kwargs) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinIRBlock(dim, num_heads, window_size, shift=bool(j % 2), drop_path=drop_paths[j],
                        **block_kwargs) for j in range(depth))
        self.conv = nn.Conv2d(dim, dim, 3, 1, 1)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        y = x
        for block in self.blocks:
            y = block(y, mask)
        return conv_channels_last(self.conv, y) + x


@MODELS.register_module()
class SwinIR(nn.Module):
    """SwinIR for single-image super-resolution (classical and lightweight variants).

    Args:
        scale: upscaling factor (2, 3, 4, or 2^n for ``pixelshuffle``; any for the direct one).
        in_channels: image channels (output has the same).
        embed_dim: feature channels of the transformer body.
        depths: blocks per residual group (RSTB).
        num_heads: attention heads per group.
        window_size: attention window side; inputs are reflect-padded to a multiple of it.
        mlp_ratio: MLP hidden width over ``embed_dim`` (2 in all SwinIR SR models).
        upsampler: ``'pixelshuffle'`` (conv + LeakyReLU to ``num_feat``, shuffles, conv; classical)
            or ``'pixelshuffledirect'`` (one conv to ``C * s^2`` and one shuffle; lightweight).
        num_feat: channels of the classical reconstruction head.
        qkv_bias, drop_rate, attn_drop_rate: as the official code.
        drop_path_rate: stochastic depth rising linearly from 0 over all blocks (official 0.1).

    Forward: centred LR ``(B, C, h, w)`` (subtract :data:`DIV2K_RGB_MEAN` first, see the module
    docstring) -> ``(B, C, s*h, s*w)``, centred the same way.
    """

    def __init__(self,
                 scale: int = 4,
                 in_channels: int = 3,
                 embed_dim: int = 60,
                 depths: Sequence[int] = (6, 6, 6, 6),
                 num_heads: Sequence[int] = (6, 6, 6, 6),
                 window_size: int = 8,
                 mlp_ratio: float = 2.0,
                 upsampler: str = 'pixelshuffledirect',
                 num_feat: int = 64,
                 qkv_bias: bool = True,
                 drop_rate: float = 0.0,
                 attn_drop_rate: float = 0.0,
                 drop_path_rate: float = 0.1) -> None:
        super().__init__()
        if len(depths) != len(num_heads):
            raise ValueError(f'SwinIR: depths {tuple(depths)} and num_heads {tuple(num_heads)} '
                             'must have the same length')
        if upsampler not in ('pixelshuffle', 'pixelshuffledirect'):
            raise ValueError(f"SwinIR upsampler must be 'pixelshuffle' or 'pixelshuffledirect', "
                             f'got {upsampler!r}')
        self.scale = scale
        self.in_channels = in_channels
        self.window_size = window_size
        self.upsampler = upsampler

        self.conv_first = nn.Conv2d(in_channels, embed_dim, 3, 1, 1)
        # The official PatchEmbed (patch size 1) is a flatten plus this LayerNorm.
        self.embed_norm = nn.LayerNorm(embed_dim)
        self.pos_drop = nn.Dropout(drop_rate)
        rates = torch.linspace(0, drop_path_rate, sum(depths), device='cpu').tolist()
        starts = [sum(depths[:i]) for i in range(len(depths))]
        self.layers = nn.ModuleList(
            RSTB(embed_dim, depth, heads, window_size, rates[start:start + depth],
                 mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, drop=drop_rate, attn_drop=attn_drop_rate)
            for depth, heads, start in zip(depths, num_heads, starts))
        self.norm = nn.LayerNorm(embed_dim)
        self.conv_after_body = nn.Conv2d(embed_dim, embed_dim, 3, 1, 1)

        if upsampler == 'pixelshuffle':
            # nn.LeakyReLU() with its default slope 0.01, as the official head.
            self.conv_before_upsample = nn.Sequential(nn.Conv2d(embed_dim, num_feat, 3, 1, 1),
                                                      nn.LeakyReLU(inplace=True))
            self.upsample = pixelshuffle_upsample(scale, num_feat)
            self.conv_last = nn.Conv2d(num_feat, in_channels, 3, 1, 1)
        else:
            self.upsample = nn.Sequential(nn.Conv2d(embed_dim, scale**2 * in_channels, 3, 1, 1),
                                          nn.PixelShuffle(scale))
        self.apply(init_transformer_weights)

    def forward_features(self, x: Tensor) -> Tensor:
        """Transformer body: ``(B, E, H, W)`` (multiples of the window) -> ``(B, E, H, W)``."""
        _, _, h, w = x.shape
        # One mask for every shifted block of this forward (all share the map size).
        mask = shifted_window_mask(h, w, self.window_size, self.window_size // 2,
                                   device=x.device).to(x.dtype)
        y = self.pos_drop(self.embed_norm(x.permute(0, 2, 3, 1)))
        for layer in self.layers:
            y = layer(y, mask)
        return self.norm(y).permute(0, 3, 1, 2)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f'SwinIR expects (B, {self.in_channels}, H, W), got {tuple(x.shape)}')
        h, w = x.shape[-2:]
        x = reflect_pad_to_multiple(x, self.window_size)
        feat = self.conv_first(x)
        feat = self.conv_after_body(self.forward_features(feat)) + feat
        if self.upsampler == 'pixelshuffle':
            out = self.conv_last(self.upsample(self.conv_before_upsample(feat)))
        else:
            out = self.upsample(feat)
        return out[:, :, :h * self.scale, :w * self.scale]


def swinir_classical_x2(**kwargs) -> SwinIR:
    """SwinIR classical SR x2 (11,752,487 parameters)."""
    return _swinir_classical(2, **kwargs)


def swinir_classical_x3(**kwargs) -> SwinIR:
    """SwinIR classical SR x3 (11,937,127 parameters)."""
    return _swinir_classical(3, **kwargs)


def swinir_classical_x4(**kwargs) -> SwinIR:
    """SwinIR classical SR x4 (11,900,199 parameters; the paper's 11.9M)."""
    return _swinir_classical(4, **kwargs)


def swinir_light_x2(**kwargs) -> SwinIR:
    """SwinIR lightweight SR x2 (910,152 parameters)."""
    return _swinir_light(2, **kwargs)


def swinir_light_x3(**kwargs) -> SwinIR:
    """SwinIR lightweight SR x3 (918,267 parameters)."""
    return _swinir_light(3, **kwargs)


def swinir_light_x4(**kwargs) -> SwinIR:
    """SwinIR lightweight SR x4 (929,628 parameters with the official code; the paper says 897K)."""
    return _swinir_light(4, **kwargs)


def _swinir_classical(scale: int, **kwargs) -> SwinIR:
    cfg = dict(embed_dim=180, depths=(6,) * 6, num_heads=(6,) * 6, window_size=8, mlp_ratio=2.0,
               upsampler='pixelshuffle')
    return SwinIR(scale=scale, **{**cfg, **kwargs})


def _swinir_light(scale: int, **kwargs) -> SwinIR:
    cfg = dict(embed_dim=60, depths=(6,) * 4, num_heads=(6,) * 4, window_size=8, mlp_ratio=2.0,
               upsampler='pixelshuffledirect')
    return SwinIR(scale=scale, **{**cfg, **kwargs})


# Buffers the official code saves that we recompute: the bias-table index and the shifted-window
# mask of its training patch size.
_OFFICIAL_BUFFERS = re.compile(r'\.(relative_position_index|attn_mask)$')


def unwrap_official_checkpoint(state: Mapping, param_key: str | None = None) -> Mapping:
    """The weights inside an official BasicSR/KAIR file: ``params_ema`` if present (the EMA model
    BasicSR evaluates), else ``params``, else ``state`` itself; ``param_key`` picks explicitly."""
    if param_key is not None:
        if param_key not in state:
            raise KeyError(f'checkpoint has no {param_key!r} (keys: {sorted(state)[:5]}...)')
        return state[param_key]
    for key in ('params_ema', 'params'):
        if isinstance(state.get(key), Mapping):
            return state[key]
    return state


def convert_official_state_dict(state: Mapping[str, Tensor],
                                param_key: str | None = None) -> dict[str, Tensor]:
    """Official SwinIR weights (``network_swinir.py``) -> :class:`SwinIR` names.

    ``state``: the official state dict (``module.`` prefix stripped), or the whole file with
    ``params`` / ``params_ema`` (see :func:`unwrap_official_checkpoint`). Renames
    ``patch_embed.norm.`` -> ``embed_norm.`` and ``layers.{i}.residual_group.blocks.`` ->
    ``layers.{i}.blocks.``; drops ``relative_position_index`` and ``attn_mask`` buffers.
    """
    out: dict[str, Tensor] = {}
    for key, value in unwrap_official_checkpoint(state, param_key).items():
        key = key.removeprefix('module.')
        if _OFFICIAL_BUFFERS.search(key):
            continue
        key = re.sub(r'^patch_embed\.norm\.', 'embed_norm.', key)
        key = re.sub(r'^layers\.(\d+)\.residual_group\.blocks\.', r'layers.\1.blocks.', key)
        out[key] = value
    return out
