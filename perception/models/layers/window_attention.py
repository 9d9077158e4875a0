"""Window multi-head self-attention with a relative position bias (Liu et al., Swin Transformer).

The pieces are kept apart so that Swin-style super-resolution models can reuse them:

- :func:`window_partition` / :func:`window_reverse`: ``(B, H, W, C)`` <-> ``(B * nW, w, w, C)``
  with reshape/permute only;
- :func:`relative_position_index`: the ``(w*w, w*w)`` lookup into a ``(2w-1)^2``-row bias table;
- :func:`shifted_window_mask`: the additive mask that keeps a token of a cyclically shifted window
  from attending to tokens that came from another region of the image;
- :class:`WindowAttention`: the attention itself, names and numerics as the official Swin code
  (``qkv``, ``proj``, ``relative_position_bias_table``), so its checkpoints load unchanged.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .drop import trunc_normal_

# Additive value the official Swin code gives to masked pairs; softmax makes them ~exp(-100) = 0.
MASK_VALUE = -100.0


def window_partition(x: Tensor, window_size: int) -> Tensor:
    """Cut ``x`` ``(B, H, W, C)`` into windows ``(B * H/w * W/w, w, w, C)``, row-major per image.

    ``H`` and ``W`` must be multiples of ``window_size`` (pad first).
    """
    if x.dim() != 4:
        raise ValueError(f'window_partition expects (B, H, W, C), got shape {tuple(x.shape)}')
    b, h, w, c = x.shape
    if h % window_size or w % window_size:
        raise ValueError(f'window_partition: H={h}, W={w} are not multiples of {window_size}')
    x = x.view(b, h // window_size, window_size, w // window_size, window_size, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window_size, window_size, c)


def window_reverse(windows: Tensor, window_size: int, height: int, width: int) -> Tensor:
    """Inverse of :func:`window_partition`: ``(B * nW, w, w, C)`` -> ``(B, H, W, C)``."""
    nh, nw = height // window_size, width // window_size
    c = windows.shape[-1]
    x = windows.view(-1, nh, nw, window_size, window_size, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, height, width, c)


def relative_position_index(window_size: int) -> Tensor:
    """Index ``(w*w, w*w)`` of the bias-table row for each (query, key) pair of a window.

    Row ``(dy + w - 1) * (2w - 1) + (dx + w - 1)`` holds the bias for the offset
    ``(dy, dx) = query - key``, as in the official Swin code.
    """
    coords = torch.stack(torch.meshgrid(torch.arange(window_size), torch.arange(window_size),
                                        indexing='ij')).flatten(1)            # (2, w*w)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)  # (w*w, w*w, 2)
    rel = rel + (window_size - 1)
    return rel[..., 0] * (2 * window_size - 1) + rel[..., 1]


def shifted_window_mask(height: int, width: int, window_size: int, shift: int,
                        device: torch.device | None = None) -> Tensor:
    """Additive attention mask ``(nW, w*w, w*w)`` for windows of a map rolled by ``-shift``.

    ``height`` and ``width`` are the padded sizes (multiples of ``window_size``). The map is split
    into 3 x 3 regions by the cuts at ``-window_size`` and ``-shift``; a pair of tokens from
    different regions gets :data:`MASK_VALUE`, a pair from the same region 0.
    """
    region = torch.zeros(height, width, dtype=torch.long, device=device)
    cuts = (slice(0, -window_size), slice(-window_size, -shift), slice(-shift, None))
    label = 0
    for rows in cuts:  # 3 x 3 regions: a loop over regions, not over tokens
        for cols in cuts:
            region[rows, cols] = label
            label += 1
    windows = window_partition(region[None, :, :, None], window_size).flatten(1)  # (nW, w*w)
    differ = windows[:, None, :] != windows[:, :, None]
    return torch.zeros(differ.shape, device=device).masked_fill(differ, MASK_VALUE)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows, with a learnt relative position bias.

    Args:
        dim: channels ``C``.
        window_size: window side ``w``.
        num_heads: heads; ``C`` must be divisible by it.
        qkv_bias: bias on the q/k/v projection.
        attn_drop, proj_drop: dropout rates.

    Forward: ``x`` ``(B * nW, w*w, C)``, optional additive ``mask`` ``(nW, w*w, w*w)``;
    returns ``(B * nW, w*w, C)``.
    """

    def __init__(self, dim: int, window_size: int, num_heads: int, qkv_bias: bool = True,
                 attn_drop: float = 0.0, proj_drop: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'WindowAttention: dim {dim} is not divisible by {num_heads} heads')
        self.dim = dim
        self.window_size = window_size
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window_size - 1) ** 2, num_heads))
        # Recomputed from window_size, so not saved: checkpoints may carry it, the mapping drops it.
        self.register_buffer('relative_position_index', relative_position_index(window_size),
                             persistent=False)
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        trunc_normal_(self.relative_position_bias_table, std=0.02)

    def relative_position_bias(self) -> Tensor:
        """The bias ``(heads, w*w, w*w)`` gathered from the table."""
        n = self.window_size ** 2
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        return bias.view(n, n, -1).permute(2, 0, 1)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        bw, n, c = x.shape
        if n != self.window_size ** 2 or c != self.dim:
            raise ValueError(f'WindowAttention expects (B*nW, {self.window_size ** 2}, {self.dim}),'
                             f' got {tuple(x.shape)}')
        qkv = self.qkv(x).reshape(bw, n, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B*nW, heads, n, c/heads)
        attn = (q * self.scale) @ k.transpose(-2, -1) + self.relative_position_bias()[None]
        if mask is not None:
            nw = mask.shape[0]
            attn = attn.view(bw // nw, nw, self.num_heads, n, n) + mask[None, :, None]
            attn = attn.view(bw, self.num_heads, n, n)
        attn = self.attn_drop(attn.softmax(dim=-1))
        x = (attn @ v).transpose(1, 2).reshape(bw, n, c)
        return self.proj_drop(self.proj(x))


def pad_to_multiple(x: Tensor, multiple: int) -> tuple[Tensor, int, int]:
    """Zero-pad ``x`` ``(B, H, W, C)`` at the bottom/right to multiples of ``multiple``.

    Returns the padded tensor and the padded ``(Hp, Wp)``.
    """
    h, w = x.shape[1:3]
    pad_b, pad_r = (-h) % multiple, (-w) % multiple
    if pad_b or pad_r:
        x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
    return x, h + pad_b, w + pad_r


def attend_in_windows(x: Tensor, attn: WindowAttention, shift: int = 0,
                      mask: Tensor | None = None) -> Tensor:
    """Window attention over a whole map, with the optional cyclic shift of Swin's SW-MSA.

    Rolls ``x`` ``(B, H, W, C)`` by ``-shift``, runs ``attn`` in each ``w x w`` window (with the
    additive ``mask`` ``(nW, w*w, w*w)``, e.g. :func:`shifted_window_mask`, when ``shift > 0``),
    and rolls back. ``H`` and ``W`` must be multiples of ``attn.window_size``. Returns
    ``(B, H, W, C)``.
    """
    if x.dim() != 4:
        raise ValueError(f'attend_in_windows expects (B, H, W, C), got shape {tuple(x.shape)}')
    _, h, w, c = x.shape
    ws = attn.window_size
    if shift:
        x = torch.roll(x, shifts=(-shift, -shift), dims=(1, 2))
    windows = attn(window_partition(x, ws).view(-1, ws * ws, c), mask)
    x = window_reverse(windows.view(-1, ws, ws, c), ws, h, w)
    if shift:
        x = torch.roll(x, shifts=(shift, shift), dims=(1, 2))
    return x
