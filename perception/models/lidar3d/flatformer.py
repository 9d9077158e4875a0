"""FlatFormer: flattened window attention over sparse voxels (Liu et al., CVPR 2023).

The voxels of each cloud are sorted window by window ("flattened"), the sorted sequence is cut
into groups of EQUAL SIZE (not windows of equal shape, whose occupancy varies wildly) and
self-attention runs inside each group. Four flattenings alternate layer after layer, as the
official ``mit-han-lab/flatformer`` (``mmdet3d/models/middle_encoders/flatformer.py``):

- ``x``: windows traversed along x, window row after window row (y), snake order; inside a window
  column after column (x major, y minor), snake order;
- ``x`` shifted: the same with windows moved by half a window in x and y;
- ``y`` and ``y`` shifted: the roles of x and y swapped.

A block is these four layers; every layer is post-norm
``x = LN(x + Attn(x + pe, x + pe, x)); x = LN(x + FFN(x))``, the FFN ``2C`` wide with GELU,
the positional encoding the sinusoidal encoding of the integer (x, y) voxel indices
(temperature 10000, unnormalised) added to queries and keys only.

Differences from the official code (deliberate): each cloud's sequence is padded to a multiple of
``group_size`` with MASKED slots (the official fills them with copies of earlier voxels, which then
count twice as keys, and borrows them from the previous cloud when a cloud has fewer voxels than a
group, or crashes when that cloud is the first); clouds are kept apart exactly for any grid size
(the official key offset per cloud can be too small on grids of a few windows); the layers
work on the N voxel rows and gather only queries, keys and values into groups. Results equal the
official module's whenever every cloud's voxel count is a multiple of ``group_size``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...registry import MODELS
from ..layers.positional_encoding import sincos_position_encoding
from ..layers.sparse_voxels import SparseVoxels
from ..layers.transformer import Mlp

__all__ = ['FlatFormer', 'FlatFormerLayer', 'FlatGroupAttention', 'FlatGroups',
           'FLATTEN_VARIANTS', 'convert_official_state_dict', 'flatten_window_groups',
           'flattened_window_keys']

# (sort axis, shifted) of the four layers of a block, in the official order.
FLATTEN_VARIANTS: tuple[tuple[str, bool], ...] = (('x', False), ('x', True), ('y', False),
                                                  ('y', True))


def flattened_window_keys(coords: Tensor, spatial_shape: tuple[int, int, int],
                          window_shape: tuple[int, int], sort_axis: str,
                          shifted: bool) -> Tensor:
    """Sort keys that flatten voxels window by window; sorting them gives FlatFormer's order.

    Order (``sort_axis='x'``): batch; window row ``y // wy``; window column ``x // wx`` (ascending
    in even window rows, descending in odd ones: a snake); inside the window the column
    ``x % wx`` then the row ``y % wy`` (ascending in even columns, descending in odd ones), the
    whole in-window order reversed in odd window rows; finally ``z`` (pillars have one). For
    ``sort_axis='y'`` x and y swap roles. ``shifted`` moves the windows by
    ``(wx // 2, wy // 2)`` cells. This is the official ``FlattenedWindowMapping`` order.

    Args:
        coords: (N, 4) int ``(batch, z, y, x)``.
        spatial_shape: grid ``(Z, Y, X)``.
        window_shape: ``(wx, wy)`` window size in cells.
        sort_axis: ``'x'`` or ``'y'``: the axis windows are traversed along first.
        shifted: shift windows by half a window.

    Returns:
        (N,) int64 keys, distinct for distinct coordinates, batch-major.
    """
    if sort_axis not in ('x', 'y'):
        raise ValueError(f"sort_axis must be 'x' or 'y', got {sort_axis!r}")
    size_z, size_y, size_x = spatial_shape
    win_x, win_y = window_shape
    batch, z, y, x = coords.long().unbind(1)
    if shifted:
        x = x + win_x // 2
        y = y + win_y // 2
    # Window counts, with room for the shift.
    num_win_x = -(-size_x // win_x) + 1
    num_win_y = -(-size_y // win_y) + 1
    if sort_axis == 'x':  # outer: window rows (y); inner: window columns (x)
        outer, inner, outer_size, inner_size = y, x, win_y, win_x
        num_inner_windows = num_win_x
    else:
        outer, inner, outer_size, inner_size = x, y, win_x, win_y
        num_inner_windows = num_win_y
    outer_win, inner_win = outer // outer_size, inner // inner_size
    odd_outer = outer_win % 2 == 1
    inner_win = torch.where(odd_outer, num_inner_windows - 1 - inner_win, inner_win)
    window = outer_win * num_inner_windows + inner_win
    # Inside a window: lines along the inner axis, each line along the outer axis (snake).
    line, pos = inner % inner_size, outer % outer_size
    pos = torch.where(line % 2 == 1, outer_size - 1 - pos, pos)
    cells = win_x * win_y
    in_window = line * outer_size + pos
    in_window = torch.where(odd_outer, cells - 1 - in_window, in_window)
    per_batch = num_win_x * num_win_y * cells * size_z
    return batch * per_batch + (window * cells + in_window) * size_z + z


@dataclass(frozen=True)
class FlatGroups:
    """One flattened-window partition of ``N`` voxels into groups of ``group_size`` slots.

    Each cloud's sorted voxels fill ``ceil(n_b / group_size)`` groups; the slots left at the end of
    its last group are padding. Groups never mix clouds.

    Attributes:
        slot_voxel: (S,) int64 voxel row of each slot (padding slots hold 0: any valid row, masked).
        slot_valid: (S,) bool, False on padding slots.
        voxel_slot: (N,) int64 slot of each voxel (the inverse of ``slot_voxel``).
        group_size: slots per group; ``S = num_groups * group_size``.
    """

    slot_voxel: Tensor
    slot_valid: Tensor
    voxel_slot: Tensor
    group_size: int

    @property
    def num_groups(self) -> int:
        return self.slot_voxel.shape[0] // self.group_size


def flatten_window_groups(coords: Tensor, batch_size: int, spatial_shape: tuple[int, int, int],
                          window_shape: tuple[int, int], group_size: int, sort_axis: str,
                          shifted: bool) -> FlatGroups:
    """Sort voxels by :func:`flattened_window_keys` and cut each cloud into equal-size groups.

    Vectorised: one argsort, a bincount and cumsums, no loop over voxels, groups or clouds.

    Args:
        coords: (N, 4) int ``(batch, z, y, x)``, unique rows, batch in ``[0, batch_size)``.
        batch_size: clouds in the batch (some may have no voxel).
        spatial_shape, window_shape, sort_axis, shifted: as :func:`flattened_window_keys`.
        group_size: slots per group.

    Returns:
        the :class:`FlatGroups`.
    """
    if coords.dim() != 2 or coords.shape[1] != 4:
        raise ValueError(f'coords must be (N, 4) (batch, z, y, x), got {tuple(coords.shape)}')
    if group_size < 1:
        raise ValueError(f'group_size must be >= 1, got {group_size}')
    device = coords.device
    batch = coords[:, 0].long()
    num_voxels = batch.shape[0]
    if num_voxels and (int(batch.min()) < 0 or int(batch.max()) >= batch_size):
        raise ValueError(f'voxel batch indices must lie in [0, {batch_size}), got '
                         f'[{int(batch.min())}, {int(batch.max())}]')
    # Keys of cells outside the grid could collide with another cloud's.
    zyx = coords[:, 1:].long()
    if num_voxels and ((zyx < 0).any() or (zyx >= zyx.new_tensor(spatial_shape)).any()):
        raise ValueError(f'voxel (z, y, x) coordinates must lie inside the grid {spatial_shape}, '
                         f'got minima {zyx.min(0).values.tolist()} and maxima '
                         f'{zyx.max(0).values.tolist()}')
    order = torch.argsort(flattened_window_keys(coords, spatial_shape, window_shape, sort_axis,
                                                shifted))
    counts = torch.bincount(batch, minlength=batch_size)  # (B,)
    padded = (counts + group_size - 1) // group_size * group_size
    start = torch.cumsum(counts, 0) - counts
    padded_start = torch.cumsum(padded, 0) - padded
    sorted_batch = batch[order]
    # The k-th voxel of cloud b (in sorted order) goes to slot padded_start[b] + k.
    rank = torch.arange(num_voxels, device=device) - start[sorted_batch]
    slot = padded_start[sorted_batch] + rank
    num_slots = int(padded.sum())
    slot_voxel = torch.zeros(num_slots, dtype=torch.long, device=device)
    slot_voxel[slot] = order
    slot_valid = torch.zeros(num_slots, dtype=torch.bool, device=device)
    slot_valid[slot] = True
    voxel_slot = torch.empty(num_voxels, dtype=torch.long, device=device)
    voxel_slot[order] = slot
    return FlatGroups(slot_voxel, slot_valid, voxel_slot, group_size)


class FlatGroupAttention(nn.Module):
    """Multi-head self-attention inside the groups of a :class:`FlatGroups`.

    Queries and keys see ``x + pe``, values ``x`` (as DETR / FlatFormer). Padding slots are masked
    out as keys and their query rows are dropped. ``(N, C) -> (N, C)``.
    """

    def __init__(self, channels: int, num_heads: int) -> None:
        super().__init__()
        if channels % num_heads:
            raise ValueError(f'channels ({channels}) must be divisible by num_heads '
                             f'({num_heads})')
        self.channels = channels
        self.num_heads = num_heads
        self.in_proj = nn.Linear(channels, 3 * channels)  # rows: q, k, v projections
        self.out_proj = nn.Linear(channels, channels)

    def forward(self, x: Tensor, pe: Tensor, groups: FlatGroups) -> Tensor:
        num_voxels, channels = x.shape
        if groups.num_groups == 0:
            return self.out_proj(x)  # no voxel: (0, C), still part of the graph
        # Project on the N voxel rows, not the S >= N slots.
        qk = F.linear(x + pe, self.in_proj.weight[:2 * channels],
                      self.in_proj.bias[:2 * channels])
        v = F.linear(x, self.in_proj.weight[2 * channels:], self.in_proj.bias[2 * channels:])
        qkv = torch.cat([qk, v], dim=1).index_select(0, groups.slot_voxel)  # (S, 3C)
        head_dim = channels // self.num_heads
        qkv = qkv.view(groups.num_groups, groups.group_size, 3, self.num_heads, head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (G, heads, group_size, head_dim)
        key_mask = groups.slot_valid.view(groups.num_groups, 1, 1, groups.group_size)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask)
        out = out.transpose(1, 2).reshape(-1, channels).index_select(0, groups.voxel_slot)
        return self.out_proj(out)


class FlatFormerLayer(nn.Module):
    """Post-norm transformer layer on one grouping: attention, add, LN, FFN, add, LN."""

    def __init__(self, channels: int, num_heads: int, ffn_ratio: float = 2.0,
                 activation: str = 'gelu') -> None:
        super().__init__()
        self.attn = FlatGroupAttention(channels, num_heads)
        self.norm1 = nn.LayerNorm(channels)
        self.ffn = Mlp(channels, int(channels * ffn_ratio))
        if activation == 'relu':
            self.ffn.act = nn.ReLU()
        elif activation != 'gelu':
            raise ValueError(f"activation must be 'gelu' or 'relu', got {activation!r}")
        self.norm2 = nn.LayerNorm(channels)

    def forward(self, x: Tensor, pe: Tensor, groups: FlatGroups) -> Tensor:
        x = self.norm1(x + self.attn(x, pe, groups))
        return self.norm2(x + self.ffn(x))


class FlatFormerBlock(nn.Module):
    """Four layers, one per flattening of :data:`FLATTEN_VARIANTS`."""

    def __init__(self, channels: int, num_heads: int, ffn_ratio: float, activation: str) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            FlatFormerLayer(channels, num_heads, ffn_ratio, activation) for _ in FLATTEN_VARIANTS)

    def forward(self, x: Tensor, pe: Tensor, groupings: list[FlatGroups]) -> Tensor:
        for layer, groups in zip(self.layers, groupings):
            x = layer(x, pe, groups)
        return x


@MODELS.register_module()
class FlatFormer(nn.Module):
    """FlatFormer 3D backbone: ``SparseVoxels (N, C) -> SparseVoxels (N, C)``, same coordinates.

    Defaults are the official Waymo model (``flatformer_waymo_D1_2x_3class.py``: 128 channels,
    8 heads, 2 blocks of 4 layers, 13 x 13 windows, groups of 144; 1.06 M parameters).

    Args:
        in_channels: voxel feature width (also the output width, ``out_channels``).
        num_heads: attention heads.
        num_blocks: blocks of four layers (x, x shifted, y, y shifted).
        window_shape: ``(wx, wy)`` window size in cells.
        group_size: voxels per attention group.
        ffn_ratio: FFN hidden width / channels.
        activation: FFN activation, ``'gelu'`` or ``'relu'``.
        pos_temperature: temperature of the sinusoidal encoding of the voxel (x, y) indices.
        normalize_pos: encode ``index / size * 2 * 3.1415`` instead of the raw index (as the
            official option, with its 3.1415).
    """

    def __init__(self, in_channels: int = 128, num_heads: int = 8, num_blocks: int = 2,
                 window_shape: tuple[int, int] = (13, 13), group_size: int = 144,
                 ffn_ratio: float = 2.0, activation: str = 'gelu',
                 pos_temperature: float = 10000.0, normalize_pos: bool = False) -> None:
        super().__init__()
        if len(window_shape) < 2:
            raise ValueError(f'window_shape must be (wx, wy), got {window_shape}')
        self.in_channels = in_channels
        self.out_channels = in_channels
        self.window_shape = (int(window_shape[0]), int(window_shape[1]))
        self.group_size = int(group_size)
        self.pos_temperature = float(pos_temperature)
        self.normalize_pos = normalize_pos
        self.blocks = nn.ModuleList(
            FlatFormerBlock(in_channels, num_heads, ffn_ratio, activation)
            for _ in range(num_blocks))
        self.init_weights()

    def init_weights(self) -> None:
        """The official initialisation: Xavier-uniform matrices, zero attention biases."""
        for name, param in self.named_parameters():
            if param.dim() > 1:
                nn.init.xavier_uniform_(param)
            elif re.search(r'attn\.(in|out)_proj\.bias$', name):
                nn.init.zeros_(param)

    def position_encoding(self, voxels: SparseVoxels, dtype: torch.dtype) -> Tensor:
        """(N, C) sinusoidal encoding of the voxels' (x, y) indices, x first."""
        _, size_y, size_x = voxels.spatial_shape
        xy = voxels.coords[:, [3, 2]].to(dtype)
        if self.normalize_pos:
            xy = xy / xy.new_tensor([size_x, size_y]) * 2 * 3.1415
        return sincos_position_encoding(xy, self.in_channels, self.pos_temperature)

    def groupings(self, voxels: SparseVoxels) -> list[FlatGroups]:
        """The four :class:`FlatGroups` of :data:`FLATTEN_VARIANTS`, shared by all blocks."""
        with torch.no_grad():
            return [flatten_window_groups(voxels.coords, voxels.batch_size, voxels.spatial_shape,
                                          self.window_shape, self.group_size, axis, shifted)
                    for axis, shifted in FLATTEN_VARIANTS]

    def forward(self, voxels: SparseVoxels) -> SparseVoxels:
        if voxels.num_channels != self.in_channels:
            raise ValueError(f'FlatFormer expects {self.in_channels}-channel voxels, got '
                             f'{voxels.num_channels}')
        x = voxels.features
        # float32 encoding (as the official) unless the features are wider.
        pe_dtype = torch.promote_types(x.dtype, torch.float32)
        pe = self.position_encoding(voxels, pe_dtype).to(x.dtype)
        groupings = self.groupings(voxels)
        for block in self.blocks:
            x = block(x, pe, groupings)
        return voxels.with_features(x)


_OFFICIAL_RENAMES = (
    (r'^block_list\.(\d+)\.block\.(\d+)\.attn\.attn\.in_proj_(weight|bias)$',
     r'blocks.\1.layers.\2.attn.in_proj.\3'),
    (r'^block_list\.(\d+)\.block\.(\d+)\.attn\.attn\.out_proj\.(weight|bias)$',
     r'blocks.\1.layers.\2.attn.out_proj.\3'),
    (r'^block_list\.(\d+)\.block\.(\d+)\.(fc1|fc2)\.(weight|bias)$',
     r'blocks.\1.layers.\2.ffn.\3.\4'),
    (r'^block_list\.(\d+)\.block\.(\d+)\.(norm1|norm2)\.(weight|bias)$',
     r'blocks.\1.layers.\2.\3.\4'),
)


def convert_official_state_dict(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename the official ``FlatFormer`` middle encoder's weights to :class:`FlatFormer`'s.

    Takes either the middle encoder's own state dict (``block_list.*``) or a whole official
    detector's (then only its ``middle_encoder.*`` entries are converted; the VFE, 2D backbone,
    neck and head are other modules' business). Shapes are unchanged.

    Raises:
        KeyError: a backbone key this converter does not know.
    """
    prefix = 'middle_encoder.'
    if any(key.startswith(prefix) for key in state):
        state = {key[len(prefix):]: value for key, value in state.items()
                 if key.startswith(prefix)}
    converted = {}
    for key, value in state.items():
        for pattern, replacement in _OFFICIAL_RENAMES:
            new_key, hits = re.subn(pattern, replacement, key)
            if hits:
                converted[new_key] = value
                break
        else:
            raise KeyError(f'unknown official FlatFormer key {key!r}')
    return converted
