"""HiT-SR: hierarchical transformers with spatial-channel correlation for image super-resolution.

Zhang, Zhang and Yu, "HiT-SR: Hierarchical Transformer for Efficient Image Super-Resolution",
ECCV 2024. Three lightweight SR transformers are turned into HiT versions by replacing their
window attention with two ideas:

- **Hierarchical (expanding) windows.** Block ``j`` of every residual group works on windows of side
  ``base_window * window_ratios[j]``; with the published base 8 and ratios
  ``(0.5, 1, 2, 4, 6, 8)`` the six blocks see windows 4, 8, 16, 32, 48 and 64, so context grows
  from local to large inside every group.
- **Spatial-channel correlation (SCC).** A dual feature extraction (DFE: a 1x1-3x3-1x1 conv branch
  times a 1x1 linear branch) gives per-pixel ``q`` and ``v``; they are split into ``heads`` heads.
  In a window of ``L = w*w`` tokens:

  * *spatial self-correlation*: ``v`` is reduced to a ``b x b`` map (``b = min(w, base_window)``)
    by a learnt linear map over each ``(w/b) x (w/b)`` cell, then
    ``S = (q v_b^T) / d + P`` with ``d`` the head width and ``P`` the dynamic position bias
    (an MLP of the relative offset) averaged over each cell; the output is ``S v_b``. There is no
    softmax, so it is computed as ``q (v_b^T v_b) / d + P v_b``: ``L * (d^2 + b^2 d)`` per head,
    linear in the window area.
  * *channel self-correlation*: with all heads as one, ``A = q^T v / L`` (``C/2 x C/2``) and the
    output is ``v A^T``; also linear in ``L``.

  The two halves are concatenated and projected back to ``C`` channels.

The three variants, as the official code (``basicsr/archs/hit_{sir,sng,srf}_arch.py``):

- ``HiTSIR``: SwinIR-light's skeleton (MLP feed-forward).
- ``HiTSNG``: SwinIR-NG's skeleton: before the SCC, each window gets an N-gram context (a learnt
  per-window "unigram" embedding, a Swin window attention over its 2 x 2 neighbourhood, looking
  forward and backward, averaged and merged by a 1x1 conv); blocks pad to twice their window.
- ``HiTSRF``: SRFormer-light's skeleton (a feed-forward with a 5x5 depth-wise conv).

Any input size: as the official code, each block reflect-pads its features to a multiple of its
own window (twice the window for HiT-SNG) and crops back after the SCC; the rest of the network is
convolutional. (One pad of the input cannot serve all six windows: 48 does not divide 64.) The
official code fails when a pad exceeds the feature size; here the reflection is repeated instead,
which gives the same numbers wherever the official code runs.

Mean handling: the official network subtracts the DIV2K RGB mean :data:`DIV2K_RGB_MEAN` from its
input and adds it back to its output (``img_range = 1``). These networks do not: wrap them in
``SuperResolver(pixel_mean=DIV2K_RGB_MEAN)``, which does exactly that, so
``SuperResolver.upscale(x) == official(x)``.
"""
from __future__ import annotations

import math
import re
from typing import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...registry import MODELS
from ..layers.drop import DropPath
from ..layers.padding import reflect_pad_to_multiple
from ..layers.transformer import init_transformer_weights
from ..layers.window_attention import WindowAttention, window_partition

# The official models subtract this RGB mean (DIV2K's) from their [0, 1] input.
# Published hierarchy: window side of block j = base_window * ratio[j].
HIER_WINDOW_RATIOS = (0.5, 1, 2, 4, 6, 8)
VARIANTS = ('sir', 'sng', 'srf')


# ----------------------------------------------------------------------------------------------
# Pure helpers
# ----------------------------------------------------------------------------------------------
def cell_averaged_position_bias(table: Tensor, window: int, base: int) -> Tensor:
    """Bias ``(heads, w*w, b*b)`` of each query for each cell of the ``b x b`` key map.

    ``table`` ``((2w-1)^2, heads)`` holds the bias for the offset ``(dy, dx) = query - key`` at row
    ``(dy + w - 1) * (2w - 1) + dx + w - 1``. A cell groups ``s x s`` keys (``s = w / b``); its
    bias is the mean of the keys' biases. The mean over a cell of offsets is a stride-1 average
    pool of the table seen as an image, so the ``(w*w)^2`` gather is never built.
    """
    heads = table.shape[-1]
    side = 2 * window - 1
    stride = window // base
    image = table.t().reshape(1, heads, side, side)
    pooled = F.avg_pool2d(image, stride, stride=1)[0]              # (heads, 2w - s, 2w - s)
    coord = torch.arange(window, device=table.device)
    cell = torch.arange(base, device=table.device)
    # Keys of cell a span offsets q - (a+1)s + 1 .. q - a s; shifted by w - 1 the window starts at
    # q - (a+1)s + w.
    start = coord[:, None] - (cell[None, :] + 1) * stride + window  # (w, b)
    rows = start[:, None, :, None]                                  # (qy, 1, ay, 1)
    cols = start[None, :, None, :]                                  # (1, qx, 1, ax)
    bias = pooled[:, rows, cols]                                    # (heads, w, w, b, b)
    return bias.reshape(heads, window * window, base * base)


def relative_offsets(window: int, device: torch.device | None = None) -> Tensor:
    """All offsets ``(dy, dx)`` in a ``w x w`` window, ``((2w-1)^2, 2)`` float, row-major."""
    span = torch.arange(1 - window, window, device=device, dtype=torch.float32)
    dy, dx = torch.meshgrid(span, span, indexing='ij')
    return torch.stack([dy.flatten(), dx.flatten()], dim=1)


def spatial_self_correlation(q: Tensor, v: Tensor, cell_weight: Tensor, cell_bias: Tensor,
                             position_bias: Tensor, window: int, base: int,
                             value_drop: Callable[[Tensor], Tensor] | None = None) -> Tensor:
    """Spatial self-correlation of windows.

    Args:
        q, v: ``(N, heads, w*w, d)`` per window, tokens row-major.
        cell_weight, cell_bias: the linear map ``(1, s*s)``, ``(1,)`` that reduces each
            ``s x s`` cell of ``v`` to one token (``s = w / b``).
        position_bias: ``(heads, w*w, b*b)`` (:func:`cell_averaged_position_bias`).
        value_drop: dropout on the right-hand ``v_b`` (the official code's ``value_drop``).

    Returns:
        ``(N, w*w, heads * d)``: ``((q v_b^T) / d + P) v_b`` with heads concatenated.
    """
    n, heads, length, d = v.shape
    s = window // base
    cells = v.reshape(n, heads, base, s, base, s, d).permute(0, 1, 2, 4, 6, 3, 5)
    v_b = F.linear(cells.reshape(n, heads, base, base, d, s * s), cell_weight, cell_bias)
    v_b = v_b.reshape(n, heads, base * base, d)
    right = value_drop(v_b) if value_drop is not None else v_b
    # ((q v_b^T) / d + P) v_b = q (v_b^T v_b) / d + P v_b: the (L, b*b) map of every window is
    # never built, and P (the same for all windows) multiplies all of them in one product.
    out = q @ (v_b.transpose(-2, -1) @ right / d)                       # (N, heads, L, d)
    bias_term = position_bias @ right.permute(1, 2, 0, 3).reshape(heads, base * base, n * d)
    out = out + bias_term.view(heads, length, n, d).permute(2, 0, 1, 3)
    return out.transpose(1, 2).reshape(n, length, heads * d)


def channel_self_correlation(q: Tensor, v: Tensor,
                             value_drop: Callable[[Tensor], Tensor] | None = None) -> Tensor:
    """Channel self-correlation: ``q``, ``v`` ``(N, heads, L, d)`` -> ``(N, L, heads*d)``.

    All heads are one: ``A = q^T v / L`` ``(heads*d, heads*d)``, output ``v A^T`` (``value_drop``
    applied to that right-hand ``v``).
    """
    n, heads, length, d = q.shape
    q = q.transpose(1, 2).reshape(n, length, heads * d)
    v = v.transpose(1, 2).reshape(n, length, heads * d)
    corr = (q.transpose(-2, -1) @ v) / length
    if value_drop is not None:
        v = value_drop(v)
    return v @ corr.transpose(-2, -1)


# ----------------------------------------------------------------------------------------------
# Modules
# ----------------------------------------------------------------------------------------------
class DualFeatureExtraction(nn.Module):
    """DFE: ``conv(x) * linear(x)``, with ``conv`` a 1x1 -> 3x3 -> 1x1 bottleneck (width C/5).

    ``(B, C_in, H, W)`` -> ``(B, C_out, H, W)``.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        mid = in_channels // 5
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, mid, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(mid, mid, 3, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(mid, out_channels, 1))
        self.linear = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x) * self.linear(x)


class DynamicPositionBias(nn.Module):
    """MLP from a relative offset ``(dy, dx)`` to one bias per head (CrossFormer's DPB).

    ``(N, 2)`` -> ``(N, heads)``; hidden width ``hidden``; LayerNorm-ReLU-Linear three times.
    """

    def __init__(self, hidden: int, num_heads: int) -> None:
        super().__init__()
        self.proj = nn.Linear(2, hidden)
        self.layers = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(hidden), nn.ReLU(), nn.Linear(hidden, out))
            for out in (hidden, hidden, num_heads))

    def forward(self, offsets: Tensor) -> Tensor:
        x = self.proj(offsets)
        for layer in self.layers:
            x = layer(x)
        return x


class NGramContext(nn.Module):
    """Per-window context from the neighbouring windows (SwinIR-NG's N-gram, N = 2, no shift).

    Each window is embedded to one token per channel pair by a ``w x w``-kernel, stride-``w``
    conv (the "unigram"); the ``N x N`` unigrams starting at each window (looking forward: down and
    right; backward: up and left, the grid reflect-padded by ``N - 1``) attend to each other in
    a Swin window attention, are averaged, and the two directions are merged by a 1x1 conv.

    ``(B, C, Hp, Wp)`` (``Hp``, ``Wp`` multiples of ``w``, at least ``2w``) ->
    ``(B, C, Hp/w, Wp/w)``, one context vector per window.
    """

    def __init__(self, channels: int, window: int, num_heads: int, ngram: int = 2) -> None:
        super().__init__()
        if channels % 2:
            raise ValueError(f'NGramContext needs an even channel count, got {channels}')
        self.channels = channels
        self.window = window
        self.ngram = ngram
        self.unigram_embed = nn.Conv2d(2, 1, window, stride=window)
        self.attn = WindowAttention(channels // 2, ngram, num_heads)
        self.merge = nn.Conv2d(channels, channels, 1)

    def _neighbourhood_context(self, grid: Tensor) -> Tensor:
        """``(B, c, gh + N - 1, gw + N - 1)`` padded unigrams -> ``(B, c, gh, gw)``."""
        b, c = grid.shape[:2]
        n = self.ngram
        patches = grid.unfold(2, n, 1).unfold(3, n, 1)                  # (B, c, gh, gw, N, N)
        gh, gw = patches.shape[2:4]
        tokens = patches.permute(0, 2, 3, 4, 5, 1).reshape(b * gh * gw, n * n, c)
        context = self.attn(tokens).mean(dim=1)                          # (B*gh*gw, c)
        return context.view(b, gh, gw, c).permute(0, 3, 1, 2)

    def forward(self, x: Tensor) -> Tensor:
        b, c, hp, wp = x.shape
        gh, gw = hp // self.window, wp // self.window
        if gh < self.ngram or gw < self.ngram:
            raise ValueError(f'NGramContext needs at least {self.ngram} windows per side, got '
                             f'{gh} x {gw} for {hp} x {wp} features and window {self.window}')
        # Consecutive channel pairs (2k, 2k+1) share one unigram kernel.
        unigram = self.unigram_embed(x.reshape(b * c // 2, 2, hp, wp)).view(b, c // 2, gh, gw)
        pad = self.ngram - 1
        forward = F.pad(unigram, (0, pad, 0, pad), mode='reflect')
        backward = F.pad(unigram, (pad, 0, pad, 0), mode='reflect')
        both = torch.cat([self._neighbourhood_context(forward),
                          self._neighbourhood_context(backward)], dim=1)
        return self.merge(both)


class SpatialChannelCorrelation(nn.Module):
    """SCC on ``w x w`` windows of a padded map.

    Args:
        dim: channels ``C``.
        window: window side ``w``.
        base_window: side of the key map of the spatial branch (capped at ``w``); ``w`` must be a
            multiple of it.
        num_heads: heads of the spatial branch.
        ngram_context: add SwinIR-NG's per-window context to ``q`` and ``v`` (HiT-SNG).
        value_drop, proj_drop: dropout on ``v`` and the output.

    Forward: ``(B, C, Hp, Wp)`` with ``Hp``, ``Wp`` multiples of ``w`` -> ``(B, Hp, Wp, C)``.
    """

    def __init__(self, dim: int, window: int, base_window: int, num_heads: int,
                 ngram_context: bool = False, value_drop: float = 0.0,
                 proj_drop: float = 0.0) -> None:
        super().__init__()
        base = min(window, base_window)
        if window % base:
            raise ValueError(f'SCC: window {window} is not a multiple of base window {base}')
        # HiT-SNG rounds the head width up when C is not divisible by 2 * heads; the others
        # require divisibility.
        head_dim = math.ceil(dim / (2 * num_heads)) if ngram_context else dim // (2 * num_heads)
        if not ngram_context and dim % (2 * num_heads):
            raise ValueError(f'SCC: dim {dim} is not divisible by 2 * {num_heads} heads')
        self.dim = dim
        self.window = window
        self.base = base
        self.num_heads = num_heads
        self.head_dim = head_dim
        attn_dim = 2 * num_heads * head_dim
        self.dfe = DualFeatureExtraction(dim, attn_dim)
        self.ngram = NGramContext(attn_dim, window, num_heads) if ngram_context else None
        self.spatial_linear = nn.Linear((window // base) ** 2, 1)
        self.pos_bias = DynamicPositionBias(dim // 16, num_heads)
        self.value_drop = nn.Dropout(value_drop)
        self.proj = nn.Linear(attn_dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def position_bias(self) -> Tensor:
        """``(heads, w*w, b*b)`` cell-averaged dynamic position bias."""
        offsets = relative_offsets(self.window, device=self.spatial_linear.weight.device)
        table = self.pos_bias(offsets.to(self.spatial_linear.weight.dtype))
        return cell_averaged_position_bias(table, self.window, self.base)

    def forward(self, x: Tensor) -> Tensor:
        b, _, hp, wp = x.shape
        w = self.window
        if hp % w or wp % w:
            raise ValueError(f'SCC: padded size {hp} x {wp} is not a multiple of window {w}')
        qv = self.dfe(x)                                                 # (B, Ca, Hp, Wp)
        ca = qv.shape[1]
        nh, nw = hp // w, wp // w
        windows = window_partition(qv.permute(0, 2, 3, 1), w).reshape(-1, w * w, ca)
        if self.ngram is not None:
            # One context vector per window, added to all its tokens (q and v halves alike).
            context = self.ngram(qv).permute(0, 2, 3, 1).reshape(-1, 1, ca)  # (B*nh*nw, 1, Ca)
            windows = windows + context
        n, length, _ = windows.shape
        q, v = windows.view(n, length, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        spatial = spatial_self_correlation(q, v, self.spatial_linear.weight,
                                           self.spatial_linear.bias, self.position_bias(), w,
                                           self.base, self.value_drop)
        channel = channel_self_correlation(q, v, self.value_drop)
        out = torch.cat([spatial, channel], dim=-1)                      # (N, w*w, Ca)
        out = out.view(b, nh, nw, w, w, -1).permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, -1)
        return self.proj_drop(self.proj(out))


class FeedForward(nn.Module):
    """Token MLP ``C -> hidden -> C`` with GELU; with ``conv=True`` SRFormer's ConvFFN, which
    adds a 5x5 depth-wise conv + GELU branch to the hidden features.

    Forward: ``x`` ``(B, H*W, C)``, ``size`` ``(H, W)`` -> ``(B, H*W, C)``.
    """

    def __init__(self, dim: int, hidden: int, conv: bool = False, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.dwconv = nn.Conv2d(hidden, hidden, 5, padding=2, groups=hidden) if conv else None
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor, size: tuple[int, int]) -> Tensor:
        x = self.act(self.fc1(x))
        if self.dwconv is not None:
            b, hw, c = x.shape
            image = x.transpose(1, 2).reshape(b, c, *size)
            x = x + F.gelu(self.dwconv(image)).flatten(2).transpose(1, 2)
        return self.drop(self.fc2(self.drop(x)))


class HierarchicalTransformerBlock(nn.Module):
    """One HiT block: ``x + norm1(SCC(pad(x)))``, then ``x + norm2(FFN(x))`` (norm after the
    branch, as the official code).

    Args:
        dim: channels ``C``.
        window: this block's window side.
        base_window: the SCC's key-map side.
        num_heads: SCC heads.
        variant: ``'sir'``, ``'sng'`` or ``'srf'`` (see the module docstring).
        mlp_ratio: FFN hidden width over ``C``.
        drop, value_drop, drop_path: dropout rates (0 in the published models).

    Forward: ``x`` ``(B, H*W, C)``, ``size`` ``(H, W)`` -> ``(B, H*W, C)``; any ``H``, ``W``.
    """

    def __init__(self, dim: int, window: int, base_window: int, num_heads: int,
                 variant: str = 'sir', mlp_ratio: float = 2.0, drop: float = 0.0,
                 value_drop: float = 0.0, drop_path: float = 0.0) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f'HiT-SR variant must be one of {VARIANTS}, got {variant!r}')
        self.window = window
        # The N-gram context needs at least two windows per side.
        self.pad_multiple = 2 * window if variant == 'sng' else window
        self.norm1 = nn.LayerNorm(dim)
        self.scc = SpatialChannelCorrelation(dim, window, base_window, num_heads,
                                             ngram_context=variant == 'sng',
                                             value_drop=value_drop, proj_drop=drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = FeedForward(dim, int(dim * mlp_ratio), conv=variant == 'srf', drop=drop)

    def forward(self, x: Tensor, size: tuple[int, int]) -> Tensor:
        b, hw, c = x.shape
        h, w = size
        if hw != h * w:
            raise ValueError(f'HiT block: {hw} tokens do not make a {h} x {w} map')
        image = x.transpose(1, 2).reshape(b, c, h, w)
        corr = self.scc(reflect_pad_to_multiple(image, self.pad_multiple))
        corr = corr[:, :h, :w].reshape(b, hw, c)
        x = x + self.drop_path(self.norm1(corr))
        return x + self.drop_path(self.norm2(self.ffn(x, size)))


class ResidualHierarchicalGroup(nn.Module):
    """RHTB: blocks with expanding windows, a 3x3 conv, and a residual over the group.

    Forward: ``(B, H*W, C)``, ``(H, W)`` -> ``(B, H*W, C)``.
    """

    def __init__(self, dim: int, depth: int, num_heads: int, windows: Sequence[int],
                 base_window: int, variant: str, mlp_ratio: float, drop: float,
                 value_drop: float, drop_paths: Sequence[float]) -> None:
        super().__init__()
        if len(windows) < depth:
            raise ValueError(f'HiT group of depth {depth} needs {depth} window sizes, '
                             f'got {list(windows)}')
        self.blocks = nn.ModuleList(
            HierarchicalTransformerBlock(dim, windows[i], base_window, num_heads, variant,
                                         mlp_ratio, drop, value_drop, drop_paths[i])
            for i in range(depth))
        self.conv = nn.Conv2d(dim, dim, 3, padding=1)

    def forward(self, x: Tensor, size: tuple[int, int]) -> Tensor:
        y = x
        for block in self.blocks:
            y = block(y, size)
        b, hw, c = y.shape
        y = self.conv(y.transpose(1, 2).reshape(b, c, *size))
        return y.flatten(2).transpose(1, 2) + x


class HiTSR(nn.Module):
    """HiT-SR network (lightweight SwinIR-style skeleton with HiT blocks).

    conv 3x3 -> LayerNorm -> residual hierarchical groups -> LayerNorm -> conv 3x3 (+ the first
    conv's features) -> one-step pixel-shuffle upsampler.

    Args:
        scale: upscaling factor.
        variant: ``'sir'``, ``'sng'`` or ``'srf'``.
        in_channels: image channels.
        embed_dim: feature channels ``C`` (60 published).
        depths: blocks per group (``(6, 6, 6, 6)`` published).
        num_heads: SCC heads per group (``(6, 6, 6, 6)``).
        base_window: base window side (8).
        window_ratios: window side of block ``j`` is ``int(base_window * ratio[j])``.
        mlp_ratio: FFN width ratio (2).
        drop_rate, value_drop_rate, drop_path_rate: dropout / stochastic depth (0 published).

    Shapes: ``(B, in_channels, H, W)`` mean-subtracted (see the module docstring) ->
    ``(B, in_channels, H * scale, W * scale)``; any ``H``, ``W``.
    """

    def __init__(self,
                 scale: int = 4,
                 variant: str = 'sir',
                 in_channels: int = 3,
                 embed_dim: int = 60,
                 depths: Sequence[int] = (6, 6, 6, 6),
                 num_heads: Sequence[int] = (6, 6, 6, 6),
                 base_window: int = 8,
                 window_ratios: Sequence[float] = HIER_WINDOW_RATIOS,
                 mlp_ratio: float = 2.0,
                 drop_rate: float = 0.0,
                 value_drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0) -> None:
        super().__init__()
        if scale < 1:
            raise ValueError(f'HiT-SR scale must be >= 1, got {scale}')
        if len(depths) != len(num_heads):
            raise ValueError(f'HiT-SR: depths {list(depths)} and num_heads {list(num_heads)} '
                             'differ in length')
        self.scale = scale
        self.variant = variant
        self.in_channels = in_channels
        self.windows = [int(base_window * r) for r in window_ratios]
        self.conv_first = nn.Conv2d(in_channels, embed_dim, 3, padding=1)
        self.embed_norm = nn.LayerNorm(embed_dim)
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        starts = [sum(depths[:i]) for i in range(len(depths))]
        self.groups = nn.ModuleList(
            ResidualHierarchicalGroup(embed_dim, depth, heads, self.windows, base_window, variant,
                                      mlp_ratio, drop_rate, value_drop_rate,
                                      rates[start:start + depth])
            for depth, heads, start in zip(depths, num_heads, starts))
        self.norm = nn.LayerNorm(embed_dim)
        self.conv_after_body = nn.Conv2d(embed_dim, embed_dim, 3, padding=1)
        self.upsample = nn.Sequential(
            nn.Conv2d(embed_dim, in_channels * scale**2, 3, padding=1), nn.PixelShuffle(scale))
        self.apply(init_transformer_weights)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f'HiT-SR expects (B, {self.in_channels}, H, W), got {tuple(x.shape)}')
        size = (x.shape[2], x.shape[3])
        shallow = self.conv_first(x)
        tokens = self.embed_norm(shallow.flatten(2).transpose(1, 2))     # (B, H*W, C)
        for group in self.groups:
            tokens = group(tokens, size)
        deep = self.norm(tokens).transpose(1, 2).reshape(shallow.shape)
        return self.upsample(self.conv_after_body(deep) + shallow)


@MODELS.register_module()
class HiTSIR(HiTSR):
    """HiT-SR on SwinIR-light's skeleton (:class:`HiTSR` with ``variant='sir'``)."""

    def __init__(self, scale: int = 4, **kwargs) -> None:
        super().__init__(scale=scale, variant='sir', **kwargs)


@MODELS.register_module()
class HiTSNG(HiTSR):
    """HiT-SR on SwinIR-NG's skeleton (:class:`HiTSR` with ``variant='sng'``)."""

    def __init__(self, scale: int = 4, **kwargs) -> None:
        super().__init__(scale=scale, variant='sng', **kwargs)


@MODELS.register_module()
class HiTSRF(HiTSR):
    """HiT-SR on SRFormer-light's skeleton (:class:`HiTSR` with ``variant='srf'``)."""

    def __init__(self, scale: int = 4, **kwargs) -> None:
        super().__init__(scale=scale, variant='srf', **kwargs)


def hit_sir_x2(**kwargs) -> HiTSIR:
    """HiT-SIR x2 at the published size."""
    return HiTSIR(scale=2, **kwargs)


def hit_sir_x3(**kwargs) -> HiTSIR:
    """HiT-SIR x3 at the published size."""
    return HiTSIR(scale=3, **kwargs)


def hit_sir_x4(**kwargs) -> HiTSIR:
    """HiT-SIR x4 at the published size."""
    return HiTSIR(scale=4, **kwargs)


def hit_sng_x2(**kwargs) -> HiTSNG:
    """HiT-SNG x2 at the published size."""
    return HiTSNG(scale=2, **kwargs)


def hit_sng_x3(**kwargs) -> HiTSNG:
    """HiT-SNG x3 at the published size."""
    return HiTSNG(scale=3, **kwargs)


def hit_sng_x4(**kwargs) -> HiTSNG:
    """HiT-SNG x4 at the published size."""
    return HiTSNG(scale=4, **kwargs)


def hit_srf_x2(**kwargs) -> HiTSRF:
    """HiT-SRF x2 at the published size."""
    return HiTSRF(scale=2, **kwargs)


def hit_srf_x3(**kwargs) -> HiTSRF:
    """HiT-SRF x3 at the published size."""
    return HiTSRF(scale=3, **kwargs)


def hit_srf_x4(**kwargs) -> HiTSRF:
    """HiT-SRF x4 at the published size."""
    return HiTSRF(scale=4, **kwargs)


# ----------------------------------------------------------------------------------------------
# Official checkpoints
# ----------------------------------------------------------------------------------------------
# (official pattern, our replacement), applied in order to every key.
_KEY_RULES = (
    (r'^layers\.(\d+)\.residual_group\.blocks\.', r'groups.\1.blocks.'),
    (r'^layers\.(\d+)\.conv\.', r'groups.\1.conv.'),
    (r'^patch_embed\.norm\.', 'embed_norm.'),
    (r'\.correlation\.ngram_window_partition\.ngram_context\.ngram_attn\.', '.scc.ngram.attn.'),
    (r'\.correlation\.ngram_window_partition\.ngram_context\.', '.scc.ngram.'),
    (r'\.correlation\.qv\.', '.scc.dfe.'),
    (r'\.correlation\.pos\.pos_proj\.', '.scc.pos_bias.proj.'),
    (r'\.correlation\.pos\.pos([123])\.', lambda m: f'.scc.pos_bias.layers.{int(m[1]) - 1}.'),
    (r'\.correlation\.', '.scc.'),
    (r'(blocks\.\d+)\.mlp\.dwconv\.depthwise_conv\.0\.', r'\1.ffn.dwconv.'),
    (r'(blocks\.\d+)\.mlp\.', r'\1.ffn.'),
)
# Keys whose names are already ours.
_SAME_KEYS = re.compile(r'^(conv_first|norm|conv_after_body|upsample\.0)\.(weight|bias)$')


def convert_official_state_dict(state: Mapping[str, Tensor],
                                param_key: str | None = None) -> dict[str, Tensor]:
    """Map an official HiT-SIR / HiT-SNG / HiT-SRF state dict to :class:`HiTSR`'s names.

    Args:
        state: the official ``state_dict`` (``module.`` prefixes already stripped), or the
            checkpoint file's dict holding it under ``'params'`` / ``'params_ema'``.
        param_key: which of those to take; default ``'params'`` (what the official test options
            load), else ``'params_ema'``.

    Returns:
        Our state dict. The recomputed ``relative_position_index`` buffers are dropped; nothing
        needs reshaping. Raises ``KeyError`` naming any official key it does not know.
    """
    keys = [k for k in (param_key, 'params', 'params_ema') if k]
    for key in keys:
        if isinstance(state.get(key), Mapping):
            state = state[key]
            break
    out: dict[str, Tensor] = {}
    for name, value in state.items():
        if name.endswith('relative_position_index'):
            continue
        new = name
        for pattern, repl in _KEY_RULES:
            new = re.sub(pattern, repl, new)
        if new == name and not _SAME_KEYS.match(name):
            raise KeyError(f'convert_official_state_dict: unknown official HiT-SR key {name!r}')
        out[new] = value
    return out
