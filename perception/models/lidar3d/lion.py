"""LION 3D backbone: window-based linear group RNN over large voxel groups (NeurIPS 2024).

The published architecture (``LION3DBackboneOneStride`` of ``happinesslz/LION``), in plain PyTorch
on :class:`SparseVoxels`:

* a **LION layer** sorts the voxels by window (FlatFormer's flattening: windows of
  ``window_shape = (wx, wy, wz)`` cells, x-major for the ``'x'`` direction, y-major for ``'y'``,
  optionally shifted by half a window), cuts each cloud's sorted voxels into groups of exactly
  ``group_size`` (the last one padded and masked) and runs one linear-RNN block per direction
  (:mod:`..layers.linear_rnn`: bidirectional Mamba, RWKV or RetNet);
* a **LION block** is an encoder-decoder of ``depth`` layers: each encoder layer (with a learned
  position embedding) is followed by a voxel merging (3D spatial feature descriptor = submanifold
  3x3x3 conv + LayerNorm + GELU, then coordinates divided by ``down_scale``, features of merged
  voxels summed and LayerNorm-ed), and each decoder layer by a voxel expanding (the coarse
  features added back to the fine voxels they came from, then LayerNorm);
* between the four stages, a merging by ``(1, 1, 2)`` (only the height halves) with **voxel
  generation**: in each cloud the ``diff_scale`` fraction of voxels with the largest mean feature
  are diffused to their four diagonal BEV neighbours ``(x -+ 1, y +- 1)`` with zero features, before
  merging, so foreground gets denser;
* a final LION layer (windows ``(13, 13, 2)``, groups of 256).

Everything is vectorised: sorting, grouping, diffusion and merging use sort / unique / index_add,
with no loop over voxels, groups or clouds.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...registry import MODELS
from ..layers.linear_rnn import build_linear_rnn_block
from ..layers.sparse_voxels import SparseVoxels
from ..ops.sparse_conv import SparseSequential, SubMConv3d

__all__ = ['window_sort_keys', 'group_index', 'diffuse_voxels', 'merge_voxels', 'LIONLayer',
           'PatchMerging3D', 'LIONBlock', 'LION', 'convert_official_state_dict']


def window_sort_keys(coords: Tensor, spatial_shape: Sequence[int], window_shape: Sequence[int],
                     shift: bool = False) -> dict[str, Tensor]:
    """Sort keys flattening voxels window by window (LION's ``get_window_coors_shift_v2``).

    Args:
        coords: (N, 4) int64 ``(batch, z, y, x)``.
        spatial_shape: grid ``(Z, Y, X)``.
        window_shape: window ``(wx, wy, wz)`` in cells.
        shift: shift the windows by half their size.

    Returns:
        ``{'x': (N,), 'y': (N,)}`` int64 keys: batch first, then windows x-major (resp. y-major),
        then cells inside the window in the same order, z last.
    """
    z_size, y_size, x_size = spatial_shape
    wx, wy, wz = (int(w) for w in window_shape)
    sx, sy, sz = (wx // 2, wy // 2, wz // 2) if shift else (0, 0, 0)
    # one more window per axis leaves room for the shift
    nwx, nwy, nwz = (math.ceil(x_size / wx) + 1, math.ceil(y_size / wy) + 1,
                     math.ceil(z_size / wz) + 1)
    b = coords[:, 0]
    z, y, x = coords[:, 1] + sz, coords[:, 2] + sy, coords[:, 3] + sx
    wix, wiy, wiz = x // wx, y // wy, z // wz
    cx, cy, cz = x % wx, y % wy, z % wz
    per_cloud = nwx * nwy * nwz
    win_x = b * per_cloud + wix * nwy * nwz + wiy * nwz + wiz
    win_y = b * per_cloud + wiy * nwx * nwz + wix * nwz + wiz
    volume = wx * wy * wz
    return {'x': win_x * volume + cx * wy * wz + cy * wz + cz,
            'y': win_y * volume + cy * wx * wz + cx * wz + cz}


def group_index(order: Tensor, batch: Tensor, batch_size: int, group_size: int
                ) -> tuple[Tensor, Tensor]:
    """Cut each cloud's sorted voxels into groups of exactly ``group_size``.

    Args:
        order: (N,) voxel indices sorted so that clouds are contiguous (batch-major keys).
        batch: (N,) cloud index of each voxel (unsorted, as ``coords[:, 0]``).
        batch_size: number of clouds.
        group_size: positions per group.

    Returns:
        ``index`` (G, group_size) int64 voxel index per position, ``N`` at padded positions (the
        tail of each cloud's last group), and ``mask`` (G, group_size) bool, True where valid.
    """
    num = order.numel()
    device = order.device
    sorted_batch = batch[order]
    counts = torch.bincount(batch, minlength=batch_size)
    num_groups = (counts + group_size - 1) // group_size
    group_start = torch.cumsum(num_groups, 0) - num_groups
    cloud_start = torch.cumsum(counts, 0) - counts
    pos = torch.arange(num, device=device) - cloud_start[sorted_batch]
    gid = group_start[sorted_batch] + torch.div(pos, group_size, rounding_mode='floor')
    total = int(num_groups.sum())
    index = torch.full((total, group_size), num, dtype=torch.long, device=device)
    index[gid, pos % group_size] = order
    return index, index < num


def diffuse_voxels(coords: Tensor, features: Tensor, spatial_shape: Sequence[int],
                   batch_size: int, diff_scale: float, num_offsets: int = 4
                   ) -> tuple[Tensor, Tensor]:
    """LION's 3D voxel generation: diffuse the strongest voxels to their diagonal BEV neighbours.

    In each cloud the ``int(n * diff_scale)`` voxels with the largest mean feature are copied to
    ``(x-1, y+1), (x+1, y+1), (x-1, y-1), (x+1, y-1)`` (first ``num_offsets`` of them; same z;
    clamped to the grid) with zero features. The copies may coincide with existing voxels; the
    merging that follows sums them (zeros) into one voxel, so no coordinate is duplicated there.

    Args:
        coords: (N, 4) int64 ``(batch, z, y, x)``; features: (N, C).
        spatial_shape: grid ``(Z, Y, X)``.
        batch_size: clouds in the batch.
        diff_scale: fraction of each cloud's voxels to diffuse.
        num_offsets: 4 (published) or 2 (only the ``y + 1`` neighbours).

    Returns:
        ``(coords, features)``: the ``N`` input voxels, then the ``num_offsets * K`` new ones.
    """
    if num_offsets not in (2, 4):
        raise ValueError(f'diffuse_voxels: num_offsets must be 2 or 4, got {num_offsets}')
    num = coords.shape[0]
    batch = coords[:, 0]
    score = features.detach().mean(-1)
    by_score = torch.argsort(score, descending=True, stable=True)
    perm = by_score[torch.argsort(batch[by_score], stable=True)]  # batch-major, score desc.
    counts = torch.bincount(batch, minlength=batch_size)
    keep = (counts.double() * diff_scale).long()  # int() of the official, per cloud
    cloud_start = torch.cumsum(counts, 0) - counts
    rank = torch.arange(num, device=coords.device) - cloud_start[batch[perm]]
    selected = coords[perm[rank < keep[batch[perm]]]]
    _, y_size, x_size = spatial_shape
    offsets = [(-1, 1), (1, 1), (-1, -1), (1, -1)][:num_offsets]
    new = []
    for dx, dy in offsets:  # a loop over 4 offsets, each vectorised over the selected voxels
        c = selected.clone()
        c[:, 3] = (c[:, 3] + dx).clamp(0, x_size - 1)
        c[:, 2] = (c[:, 2] + dy).clamp(0, y_size - 1)
        new.append(c)
    new_coords = torch.cat([coords] + new)
    new_feats = torch.cat([features, features.new_zeros(new_coords.shape[0] - num,
                                                        features.shape[1])])
    return new_coords, new_feats


def merge_voxels(coords: Tensor, features: Tensor, spatial_shape: Sequence[int],
                 down_scale: Sequence[int]) -> tuple[Tensor, Tensor, tuple[int, int, int], Tensor]:
    """Divide coordinates by ``down_scale = (sx, sy, sz)`` and sum the features of voxels merged.

    Returns:
        ``(coords (M, 4), features (M, C), spatial_shape (Z', Y', X'), inverse (N,))`` with
        ``Z' = ceil(Z / sz)`` etc. and ``inverse`` the merged row of each input row.
    """
    sx, sy, sz = (int(s) for s in down_scale)
    z_size, y_size, x_size = spatial_shape
    new_shape = (math.ceil(z_size / sz), math.ceil(y_size / sy), math.ceil(x_size / sx))
    down = torch.stack([coords[:, 0], coords[:, 1] // sz, coords[:, 2] // sy, coords[:, 3] // sx],
                       1)
    key = ((down[:, 0] * new_shape[0] + down[:, 1]) * new_shape[1] + down[:, 2]) * new_shape[2] \
        + down[:, 3]
    unique, inverse = torch.unique(key, return_inverse=True)
    merged = features.new_zeros(unique.numel(), features.shape[1]).index_add(0, inverse, features)
    zyx = new_shape[0] * new_shape[1] * new_shape[2]
    new_coords = torch.stack([unique // zyx, unique // (new_shape[1] * new_shape[2]) % new_shape[0],
                              unique // new_shape[2] % new_shape[1], unique % new_shape[2]], 1)
    return new_coords, merged, new_shape, inverse


class LIONLayer(nn.Module):
    """One linear-RNN block per direction over equal-size window-sorted groups.

    Args:
        dim: channels.
        window_shape: ``(wx, wy, wz)``.
        group_size: positions per group.
        direction: sort axis per block, e.g. ``('x', 'y')``.
        shift: shift windows by half their size.
        operator: ``'mamba' | 'rwkv' | 'retnet'``; operator_cfg: its arguments.
        layer_id, n_layer: ids for the operator's init (block ``i`` gets ``layer_id + i``).
    """

    def __init__(self, dim: int, window_shape: Sequence[int], group_size: int,
                 direction: Sequence[str], shift: bool, operator: str, operator_cfg: dict,
                 layer_id: int = 0, n_layer: int = 1) -> None:
        super().__init__()
        if any(d not in ('x', 'y') for d in direction):
            raise ValueError(f"LIONLayer: direction must be 'x' or 'y', got {direction}")
        self.window_shape, self.group_size = tuple(window_shape), int(group_size)
        self.direction, self.shift = tuple(direction), shift
        self.blocks = nn.ModuleList(
            build_linear_rnn_block(operator, dim, layer_id=layer_id + i, n_layer=n_layer,
                                   **operator_cfg) for i in range(len(direction)))

    def forward(self, voxels: SparseVoxels) -> SparseVoxels:
        """(N, C) voxels -> (N, C) voxels at the same coordinates."""
        feats = voxels.features
        if voxels.num_voxels == 0:
            return voxels
        keys = window_sort_keys(voxels.coords, voxels.spatial_shape, self.window_shape,
                                self.shift)
        for axis, block in zip(self.direction, self.blocks):
            order = torch.argsort(keys[axis], stable=True)
            index, mask = group_index(order, voxels.coords[:, 0], voxels.batch_size,
                                      self.group_size)
            padded = torch.cat([feats, feats.new_zeros(1, feats.shape[1])])
            out = block(padded[index], mask)  # (G, group_size, C)
            feats = feats.new_zeros(feats.shape).index_copy(0, index[mask], out[mask])
        return voxels.with_features(feats)


class PositionEmbeddingLearned(nn.Module):
    """Linear(3, C) -> BatchNorm1d -> ReLU -> Linear(C, C) of normalised voxel coordinates."""

    def __init__(self, input_channel: int, num_pos_feats: int) -> None:
        super().__init__()
        self.position_embedding_head = nn.Sequential(
            nn.Linear(input_channel, num_pos_feats), nn.BatchNorm1d(num_pos_feats),
            nn.ReLU(inplace=True), nn.Linear(num_pos_feats, num_pos_feats))

    def forward(self, xyz: Tensor) -> Tensor:
        linear, norm, act, out = self.position_embedding_head
        h = linear(xyz)
        # batch statistics of a single voxel are undefined: use the running ones then
        training = norm.training and h.shape[0] > 1
        h = F.batch_norm(h, norm.running_mean, norm.running_var, norm.weight, norm.bias,
                         training, norm.momentum if norm.momentum is not None else 0.1, norm.eps)
        return out(act(h))


def _position_input(voxels: SparseVoxels) -> Tensor:
    """(N, 3) ``(x, y, z)`` centred on the grid and scaled to [-pi, pi] (LION's get_pos_embed)."""
    z_size, y_size, x_size = voxels.spatial_shape
    c = voxels.coords.to(voxels.features.dtype)
    x = (c[:, 3] - x_size / 2) / x_size * 2 * 3.1415
    y = (c[:, 2] - y_size / 2) / y_size * 2 * 3.1415
    z = (c[:, 1] - z_size / 2) / z_size * 2 * 3.1415
    return torch.stack([x, y, z], -1)


class PatchMerging3D(nn.Module):
    """Spatial feature descriptor + (optional voxel generation) + voxel merging.

    Args:
        dim: channels.
        down_scale: ``(sx, sy, sz)``.
        diffusion: run :func:`diffuse_voxels` before merging; diff_scale: its fraction.
        num_offsets: diffusion neighbours (4 published).
    """

    def __init__(self, dim: int, down_scale: Sequence[int] = (2, 2, 2), diffusion: bool = False,
                 diff_scale: float = 0.2, num_offsets: int = 4) -> None:
        super().__init__()
        self.sub_conv = SparseSequential(SubMConv3d(dim, dim, 3, bias=False), nn.LayerNorm(dim),
                                         nn.GELU())
        self.norm = nn.LayerNorm(dim)
        self.down_scale = tuple(int(s) for s in down_scale)
        self.diffusion, self.diff_scale, self.num_offsets = diffusion, diff_scale, num_offsets

    def forward(self, voxels: SparseVoxels) -> tuple[SparseVoxels, Tensor]:
        """Returns the merged voxels and (N,) the merged row of each input voxel."""
        voxels = self.sub_conv(voxels)
        coords, feats = voxels.coords, voxels.features
        if self.diffusion:
            coords, feats = diffuse_voxels(coords, feats, voxels.spatial_shape,
                                           voxels.batch_size, self.diff_scale, self.num_offsets)
        new_coords, merged, shape, inverse = merge_voxels(coords, feats, voxels.spatial_shape,
                                                          self.down_scale)
        out = SparseVoxels(self.norm(merged), new_coords, shape, voxels.batch_size)
        return out, inverse[:voxels.num_voxels]


class LIONBlock(nn.Module):
    """``depth`` encoder LION layers with merging, then ``depth`` decoder layers with expanding."""

    def __init__(self, dim: int, depth: int, down_scales: Sequence[Sequence[int]],
                 window_shape: Sequence[int], group_size: int, direction: Sequence[str],
                 shift: bool, operator: str, operator_cfg: dict, layer_id: int = 0,
                 n_layer: int = 1) -> None:
        super().__init__()
        if len(down_scales) != depth:
            raise ValueError(f'LIONBlock: {len(down_scales)} down scales for depth {depth}')
        shifts = [False] + [shift] * (depth - 1)
        self.encoder = nn.ModuleList()
        self.downsample_list = nn.ModuleList()
        self.pos_emb_list = nn.ModuleList()
        self.decoder = nn.ModuleList()
        self.decoder_norm = nn.ModuleList()
        for idx in range(depth):
            self.encoder.append(LIONLayer(dim, window_shape, group_size, direction, shifts[idx],
                                          operator, operator_cfg, layer_id + idx * 2, n_layer))
            self.pos_emb_list.append(PositionEmbeddingLearned(3, dim))
            self.downsample_list.append(PatchMerging3D(dim, down_scales[idx]))
        for idx in range(depth):
            self.decoder.append(LIONLayer(dim, window_shape, group_size, direction, shifts[idx],
                                          operator, operator_cfg, layer_id + 2 * (idx + depth),
                                          n_layer))
            self.decoder_norm.append(nn.LayerNorm(dim))

    def forward(self, voxels: SparseVoxels) -> SparseVoxels:
        """(N, C) voxels -> (N, C) voxels at the same coordinates."""
        skips, inverses = [], []
        x = voxels
        for enc, pos_emb, down in zip(self.encoder, self.pos_emb_list, self.downsample_list):
            x = x.with_features(x.features + pos_emb(_position_input(x)))
            x = enc(x)
            skips.append(x)
            x, inverse = down(x)
            inverses.append(inverse)
        for dec, norm, skip, inverse in zip(self.decoder, self.decoder_norm, skips[::-1],
                                            inverses[::-1]):
            x = dec(x)
            # voxel expanding: every fine voxel gets the coarse voxel it was merged into
            x = skip.with_features(norm(skip.features + x.features[inverse]))
        return x


@MODELS.register_module()
class LION(nn.Module):
    """LION 3D backbone (``LION3DBackboneOneStride``), ``forward(SparseVoxels) -> SparseVoxels``.

    Defaults are the published KITTI ``second_with_lion_mamba_64dim`` sizes.

    Args:
        in_channels: input feature channels (must equal every ``layer_dims``: no projection).
        layer_dims: channels of the four stages.
        depths: encoder (= decoder) layers per LION block.
        layer_down_scales: per stage, per encoder layer, the merging factors ``(sx, sy, sz)``.
        window_shapes: per stage ``(wx, wy, wz)``.
        group_sizes: per stage.
        direction: sort axes of the blocks of each layer.
        shift: shift the windows of every second layer of a block.
        diffusion, diff_scale: voxel generation in the between-stage mergings.
        stage_down_scale: between-stage merging ``(sx, sy, sz)``.
        out_window_shape, out_group_size: the final LION layer.
        operator: ``'mamba' | 'rwkv' | 'retnet'``.
        operator_cfg: operator arguments (published: mamba ``d_state=16, d_conv=4, expand=2,
            drop_path=0.2``).
    """

    def __init__(self, in_channels: int = 64, layer_dims: Sequence[int] = (64, 64, 64, 64),
                 depths: Sequence[int] = (2, 2, 2, 2),
                 layer_down_scales: Sequence = (((2, 2, 2), (2, 2, 2)),) * 4,
                 window_shapes: Sequence[Sequence[int]] = ((13, 13, 32), (13, 13, 16),
                                                           (13, 13, 8), (13, 13, 4)),
                 group_sizes: Sequence[int] = (4096, 2048, 1024, 512),
                 direction: Sequence[str] = ('x', 'y'), shift: bool = True,
                 diffusion: bool = True, diff_scale: float = 0.2,
                 stage_down_scale: Sequence[int] = (1, 1, 2),
                 out_window_shape: Sequence[int] = (13, 13, 2), out_group_size: int = 256,
                 operator: str = 'mamba', operator_cfg: dict | None = None) -> None:
        super().__init__()
        num_stages = len(depths)
        for name, seq in (('layer_dims', layer_dims), ('layer_down_scales', layer_down_scales),
                          ('window_shapes', window_shapes), ('group_sizes', group_sizes)):
            if len(seq) != num_stages:
                raise ValueError(f'LION: {name} has {len(seq)} entries for {num_stages} stages')
        if any(d != in_channels for d in layer_dims):
            raise ValueError(f'LION: every layer_dims entry must equal in_channels '
                             f'{in_channels} (the published model has no projections), got '
                             f'{tuple(layer_dims)}')
        if operator_cfg is None:
            operator_cfg = dict(d_state=16, d_conv=4, expand=2, drop_path=0.2)
        operator_cfg = dict(operator_cfg)
        # the official n_layer (RWKV init): 4 layers per stage and depth, 2 blocks each, + 2
        n_layer = num_stages * depths[0] * 2 * 2 + 2
        self.blocks = nn.ModuleList()
        self.downs = nn.ModuleList()
        for i in range(num_stages):
            self.blocks.append(LIONBlock(layer_dims[i], depths[i], layer_down_scales[i],
                                         window_shapes[i], group_sizes[i], direction, shift,
                                         operator, operator_cfg, layer_id=8 * i, n_layer=n_layer))
            self.downs.append(PatchMerging3D(layer_dims[i], stage_down_scale, diffusion,
                                             diff_scale))
        self.linear_out = LIONLayer(layer_dims[-1], out_window_shape, out_group_size,
                                    ('x', 'y'), shift, operator, operator_cfg,
                                    layer_id=8 * num_stages, n_layer=n_layer)
        self.stage_down_scale = tuple(stage_down_scale)
        self.in_channels = in_channels
        self.out_channels = layer_dims[-1]

    def output_shape(self, spatial_shape: Sequence[int]) -> tuple[int, int, int]:
        """Grid ``(Z, Y, X)`` of the output for an input grid."""
        sx, sy, sz = self.stage_down_scale
        z, y, x = spatial_shape
        for _ in self.downs:
            z, y, x = math.ceil(z / sz), math.ceil(y / sy), math.ceil(x / sx)
        return z, y, x

    def forward(self, voxels: SparseVoxels) -> SparseVoxels:
        """(N, in_channels) voxels -> (M, out_channels) voxels in :meth:`output_shape`."""
        if voxels.num_channels != self.in_channels:
            raise ValueError(f'LION: expected {self.in_channels} input channels, got '
                             f'{voxels.num_channels}')
        if voxels.num_voxels == 0:
            return SparseVoxels(voxels.features.new_zeros(0, self.out_channels),
                                voxels.coords.new_zeros(0, 4),
                                self.output_shape(voxels.spatial_shape), voxels.batch_size)
        x = voxels
        for block, down in zip(self.blocks, self.downs):
            x, _ = down(block(x))
        return self.linear_out(x)


def convert_official_state_dict(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Official ``LION3DBackboneOneStride`` state dict (``happinesslz/LION``) -> :class:`LION`'s.

    Accepts the backbone's own keys or a whole OpenPCDet detector's (then only the
    ``backbone_3d.`` entries are taken). ``linear_<i>`` -> ``blocks.<i-1>``, ``dow<i>`` ->
    ``downs.<i-1>``; everything inside keeps its name and shape (sparse conv weights are spconv
    2.x's ``(out, kz, ky, kx, in)``, as ours).
    """
    prefix = 'backbone_3d.'
    if any(key.startswith(prefix) for key in state):
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    out = {}
    for key, value in state.items():
        match = re.match(r'(linear_|dow)(\d+)\.(.*)', key)
        if match:
            head = 'blocks' if match[1] == 'linear_' else 'downs'
            key = f'{head}.{int(match[2]) - 1}.{match[3]}'
        out[key] = value
    return out
