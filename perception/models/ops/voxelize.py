"""Voxelisation of point clouds: hard (fixed-size voxel tensors) and dynamic (a voxel per point).

Arithmetic (identical to spconv's and mmcv's CPU kernels)
--------------------------------------------------------
``voxel_size`` and ``point_cloud_range`` are rounded to float32 (both libraries keep them as C
``float``); the grid has ``round((max - min) / size)`` cells per axis (float32 division, halves
rounded away from zero); a point falls in cell ``floor((p - min) / size)``, computed in the points'
dtype, and is dropped when that cell is outside ``[0, grid)`` on any axis. Coordinates are int32
``(z, y, x)``.

Hard voxelisation order
-----------------------
Voxels are numbered in the order their first point appears in the input ("first come"); each voxel
holds its first ``max_points_per_voxel`` points in input order, zero-padded; once ``max_voxels``
voxels exist, points that would open a new voxel are dropped, while points of existing voxels are
still added. spconv 2.x ``PointToVoxel`` on the CPU (``Point2VoxelCPU``) and mmcv's
``hard_voxelize`` (CPU, and CUDA with ``deterministic=True``) all follow this order, so their
outputs and these agree element for element. spconv's CUDA path assigns voxel ids through a hash
table, and mmcv's ``deterministic=False`` through atomics: the same voxels and points, in another
order (and, past ``max_voxels``, possibly another subset).

Everything here is sorting and scattering in torch: no Python loop over points, and it runs on the
points' device.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ...registry import MODELS

__all__ = ['grid_size', 'voxelize_hard', 'voxelize_dynamic', 'unique_voxels', 'scatter_mean',
           'Voxelizer']


def _as_float32_list(values: Sequence[float], length: int, name: str) -> list[float]:
    values = [float(v) for v in (values.tolist() if isinstance(values, Tensor) else values)]
    if len(values) != length:
        raise ValueError(f'{name} must have {length} values, got {len(values)}')
    return torch.tensor(values, dtype=torch.float32).tolist()


def _round_half_away(x: float) -> int:
    # C's round(): halves away from zero (torch.round and Python's round go to even).
    r = math.floor(x)
    return r + 1 if x - r >= 0.5 else r


def grid_size(voxel_size: Sequence[float], point_cloud_range: Sequence[float]) -> list[int]:
    """Cells per axis ``[nx, ny, nz]``: ``round((max - min) / size)`` in float32 arithmetic.

    Args:
        voxel_size: ``[sx, sy, sz]``.
        point_cloud_range: ``[x_min, y_min, z_min, x_max, y_max, z_max]``.
    """
    size = torch.tensor(_as_float32_list(voxel_size, 3, 'voxel_size'), dtype=torch.float32)
    rng = torch.tensor(_as_float32_list(point_cloud_range, 6, 'point_cloud_range'),
                       dtype=torch.float32)
    if (size <= 0).any():
        raise ValueError(f'voxel_size must be positive, got {size.tolist()}')
    cells = ((rng[3:] - rng[:3]) / size).tolist()  # float32 arithmetic, as the C kernels
    out = [_round_half_away(c) for c in cells]
    if min(out) <= 0:
        raise ValueError(f'point_cloud_range {rng.tolist()} gives an empty grid {out}')
    return out


def voxelize_dynamic(points: Tensor, voxel_size: Sequence[float],
                     point_cloud_range: Sequence[float]) -> Tensor:
    """Voxel coordinates of every point (mmcv's ``dynamic_voxelize``).

    Args:
        points: (P, C>=3) points, x y z first.
        voxel_size: ``[sx, sy, sz]``.
        point_cloud_range: ``[x_min, y_min, z_min, x_max, y_max, z_max]``.

    Returns:
        (P, 3) int32 ``(z, y, x)`` cell indices; rows of points outside the range are -1.
    """
    if points.dim() != 2 or points.shape[1] < 3:
        raise ValueError(f'points must have shape (P, 3+), got {tuple(points.shape)}')
    if not points.dtype.is_floating_point:
        raise ValueError(f'points must be floating point, got {points.dtype}')
    grid = torch.tensor(grid_size(voxel_size, point_cloud_range), device=points.device)
    size = torch.tensor(_as_float32_list(voxel_size, 3, 'voxel_size'), dtype=torch.float32)
    low = torch.tensor(_as_float32_list(point_cloud_range, 6, 'point_cloud_range')[:3],
                       dtype=torch.float32)
    # float32 constants promoted to the points' dtype, then one subtraction and one division.
    size = size.to(device=points.device, dtype=points.dtype)
    low = low.to(device=points.device, dtype=points.dtype)
    cells = torch.floor((points[:, :3] - low) / size)
    valid = ((cells >= 0) & (cells < grid)).all(dim=1)
    # NaN coordinates fail both comparisons above and so count as out of range.
    coords = torch.where(valid[:, None], cells, torch.full_like(cells, -1)).to(torch.int32)
    return coords.flip(1).contiguous()


def row_major_keys(coords: Tensor, inner_sizes: Sequence[int]) -> Tensor:
    """(P,) int64 row-major keys of (P, D) int coordinates, the last column fastest.

    ``inner_sizes`` are the sizes of columns ``1 .. D - 1`` (the first column's size does not
    enter), e.g. ``(ny, nx)`` for ``(z, y, x)`` rows: ``(z * ny + y) * nx + x``. For in-range rows
    the keys sort as the rows do lexicographically; a -1 entry gives an out-of-range key.
    """
    if coords.dim() != 2 or coords.shape[1] != len(inner_sizes) + 1:
        raise ValueError(f'row_major_keys: coords {tuple(coords.shape)} need '
                         f'{len(inner_sizes) + 1} columns for inner sizes {tuple(inner_sizes)}')
    columns = coords.to(torch.int64).unbind(1)
    key = columns[0]
    for column, size in zip(columns[1:], inner_sizes):
        key = key * int(size) + column
    return key


def unique_voxels(coords: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Unique voxels of per-point coordinates, for scatter operations (dynamic voxelisation).

    Args:
        coords: (P, D) int coordinates, e.g. ``(z, y, x)`` or ``(batch, z, y, x)``; rows with a
            negative entry (out of range) are ignored.

    Returns:
        ``voxel_coords`` (V, D) sorted lexicographically (as ``torch.unique(dim=0)``),
        ``inverse`` (P,) int64 voxel index of every point or -1, ``counts`` (V,) int64.
    """
    if coords.dim() != 2:
        raise ValueError(f'coords must have shape (P, D), got {tuple(coords.shape)}')
    valid = (coords >= 0).all(dim=1)
    inverse = torch.full((coords.shape[0],), -1, dtype=torch.long, device=coords.device)
    rows = coords[valid]
    radix = (rows.amax(dim=0) + 1).tolist() if len(rows) else [1] * rows.shape[1]
    if math.prod(int(r) for r in radix) >= 2 ** 62:
        # no int64 key: the row-wise unique compares neighbouring rows one by one (slow)
        voxel_coords, inv, counts = torch.unique(rows, dim=0, return_inverse=True,
                                                 return_counts=True)
    else:
        # A 1-D unique of row-major keys (a sort) in place of torch.unique(dim=0), which on CPU
        # calls torch.equal once per pair of rows (measured: 150 ms of LION-Mamba's 1.2 s
        # training step on one thread).
        _, inv, counts = torch.unique(row_major_keys(rows, radix[1:]), return_inverse=True,
                                      return_counts=True)
        voxel_coords = rows.new_empty((len(counts), rows.shape[1]))
        voxel_coords[inv] = rows  # every row of a voxel holds the same coordinates
    inverse[valid] = inv
    return voxel_coords, inverse, counts


def scatter_mean(features: Tensor, inverse: Tensor, num_voxels: int) -> Tensor:
    """Mean of the features of the points in each voxel.

    Args:
        features: (P, C) per-point features.
        inverse: (P,) voxel index per point, -1 for points to ignore (from :func:`unique_voxels`).
        num_voxels: V.

    Returns:
        (V, C) means (0 for voxels without points).
    """
    keep = inverse >= 0
    idx = inverse[keep]
    sums = features.new_zeros((num_voxels, features.shape[1])).index_add_(0, idx, features[keep])
    counts = torch.bincount(idx, minlength=num_voxels).clamp(min=1).to(features.dtype)
    return sums / counts[:, None]


def voxelize_hard(points: Tensor, voxel_size: Sequence[float], point_cloud_range: Sequence[float],
                  max_points_per_voxel: int, max_voxels: int,
                  deterministic: bool = True) -> tuple[Tensor, Tensor, Tensor]:
    """Hard voxelisation in spconv's ``PointToVoxel`` (CPU) order; see the module docstring.

    Args:
        points: (P, C>=3) points, x y z first.
        voxel_size: ``[sx, sy, sz]``.
        point_cloud_range: ``[x_min, y_min, z_min, x_max, y_max, z_max]``.
        max_points_per_voxel: points kept per voxel (the first ones in input order).
        max_voxels: voxels kept (the first ones opened).
        deterministic: kept for mmcv's signature; this implementation is always deterministic.

    Returns:
        ``voxels`` (V, max_points_per_voxel, C) in the points' dtype, zero-padded;
        ``coords`` (V, 3) int32 ``(z, y, x)``; ``num_points`` (V,) int32.
    """
    del deterministic  # sorting gives the first-come order on every device
    if max_points_per_voxel <= 0 or max_voxels <= 0:
        raise ValueError(f'max_points_per_voxel and max_voxels must be positive, got '
                         f'{max_points_per_voxel} and {max_voxels}')
    grid = grid_size(voxel_size, point_cloud_range)
    coords = voxelize_dynamic(points, voxel_size, point_cloud_range)
    point_idx = (coords[:, 0] >= 0).nonzero(as_tuple=True)[0]
    nx, ny, _ = grid
    keys = row_major_keys(coords[point_idx], (ny, nx))
    num_valid = point_idx.numel()
    device = points.device

    # Group points by voxel, keeping input order inside each group (stable sort).
    sorted_keys, order = torch.sort(keys, stable=True)
    new_group = torch.ones(num_valid, dtype=torch.bool, device=device)
    new_group[1:] = sorted_keys[1:] != sorted_keys[:-1]
    group_of_sorted = torch.cumsum(new_group, 0) - 1  # group id of each sorted entry
    group_start = new_group.nonzero(as_tuple=True)[0]  # (G,) first sorted position per group
    rank_in_group = torch.arange(num_valid, device=device) - group_start[group_of_sorted]
    first_point = order[group_start]  # (G,) position (among valid points) of the voxel's 1st point

    # Number the groups by their first point: the first-come voxel order.
    voxel_of_group = torch.empty_like(first_point)
    voxel_of_group[torch.argsort(first_point)] = torch.arange(first_point.numel(), device=device)
    voxel_of_sorted = voxel_of_group[group_of_sorted]
    take = (voxel_of_sorted < max_voxels) & (rank_in_group < max_points_per_voxel)

    num_voxels = min(first_point.numel(), max_voxels)
    voxels = points.new_zeros((num_voxels, max_points_per_voxel, points.shape[1]))
    src = point_idx[order[take]]
    voxels[voxel_of_sorted[take], rank_in_group[take]] = points[src]
    group_sizes = torch.diff(group_start, append=group_start.new_tensor([num_valid]))
    counts = torch.zeros(first_point.numel(), dtype=torch.int64, device=device)
    counts[voxel_of_group] = group_sizes
    num_points = counts[:num_voxels].clamp(max=max_points_per_voxel).to(torch.int32)
    voxel_coords = torch.empty((num_voxels, 3), dtype=torch.int32, device=device)
    kept_groups = voxel_of_group < num_voxels
    voxel_coords[voxel_of_group[kept_groups]] = coords[point_idx[first_point[kept_groups]]]
    return voxels, voxel_coords, num_points


def _spconv_point_to_voxel():
    try:
        from spconv.pytorch.utils import PointToVoxel
    except Exception:  # ImportError, or a broken CUDA build raising at import
        return None
    return PointToVoxel


@MODELS.register_module()
class Voxelizer(nn.Module):
    """Hard or dynamic voxelisation as a module, for a single cloud or a batch.

    Hard mode uses spconv's ``PointToVoxel`` where spconv imports, the points are float32 and on
    the CPU, and ``backend`` allows it; otherwise :func:`voxelize_hard`. Both give identical
    outputs. On CUDA, spconv is used only with ``deterministic=False`` (its voxel order differs).

    Args:
        voxel_size: ``[sx, sy, sz]``.
        point_cloud_range: ``[x_min, y_min, z_min, x_max, y_max, z_max]``.
        max_num_points: points per voxel; -1 selects dynamic voxelisation.
        max_voxels: voxels per cloud (an int, or ``(train, test)`` as mmdetection3d configs).
        deterministic: keep the first-come order on CUDA.
        backend: 'auto', 'spconv' or 'torch'.
    """

    def __init__(self, voxel_size: Sequence[float], point_cloud_range: Sequence[float],
                 max_num_points: int = -1, max_voxels: int | Sequence[int] = 20000,
                 deterministic: bool = True, backend: str = 'auto') -> None:
        super().__init__()
        if backend not in ('auto', 'spconv', 'torch'):
            raise ValueError(f"backend must be 'auto', 'spconv' or 'torch', got {backend!r}")
        self.voxel_size = _as_float32_list(voxel_size, 3, 'voxel_size')
        self.point_cloud_range = _as_float32_list(point_cloud_range, 6, 'point_cloud_range')
        self.grid_size = grid_size(self.voxel_size, self.point_cloud_range)
        self.max_num_points = int(max_num_points)
        if isinstance(max_voxels, int):
            max_voxels = (max_voxels, max_voxels)
        self.max_voxels = tuple(int(v) for v in max_voxels)
        self.deterministic = deterministic
        self.backend = backend
        self._point_to_voxel = _spconv_point_to_voxel() if backend != 'torch' else None
        if backend == 'spconv' and self._point_to_voxel is None:
            raise ImportError("backend='spconv' needs spconv (pip install spconv)")
        self._generators: dict = {}

    def extra_repr(self) -> str:
        return (f'voxel_size={self.voxel_size}, point_cloud_range={self.point_cloud_range}, '
                f'max_num_points={self.max_num_points}, max_voxels={self.max_voxels}')

    def uses_spconv(self, points: Tensor) -> bool:
        """Whether a hard voxelisation of ``points`` runs through spconv."""
        if self._point_to_voxel is None or self.max_num_points <= 0:
            return False
        if points.device.type == 'cpu':
            return points.dtype == torch.float32
        return not self.deterministic and points.dtype == torch.float32

    def _spconv(self, points: Tensor, max_voxels: int) -> tuple[Tensor, Tensor, Tensor]:
        key = (points.shape[1], max_voxels, str(points.device))
        if key not in self._generators:
            self._generators[key] = self._point_to_voxel(
                vsize_xyz=self.voxel_size, coors_range_xyz=self.point_cloud_range,
                num_point_features=points.shape[1], max_num_voxels=max_voxels,
                max_num_points_per_voxel=self.max_num_points, device=points.device)
        voxels, coords, num = self._generators[key](points.contiguous())
        # The generator reuses its buffers between calls: hand out copies.
        return voxels.clone(), coords.clone(), num.clone()

    def voxelize_one(self, points: Tensor) -> tuple[Tensor, ...]:
        """Voxelise one (P, C) cloud.

        Returns:
            hard: ``voxels`` (V, max_num_points, C), ``coords`` (V, 3) int32 zyx, ``num_points``
            (V,) int32; dynamic: ``coords`` (P, 3) int32 zyx with -1 rows.
        """
        if self.max_num_points <= 0:
            return (voxelize_dynamic(points, self.voxel_size, self.point_cloud_range),)
        max_voxels = self.max_voxels[0] if self.training else self.max_voxels[1]
        if self.uses_spconv(points):
            return self._spconv(points, max_voxels)
        return voxelize_hard(points, self.voxel_size, self.point_cloud_range, self.max_num_points,
                             max_voxels)

    def forward(self, points: Tensor | Sequence[Tensor]) -> tuple[Tensor, ...]:
        """Voxelise one cloud (P, C), or a list of clouds.

        For a list, the outputs of the clouds are concatenated and the coordinates get the cloud's
        index as a leading column: ``(batch, z, y, x)``, as mmdetection3d's data preprocessor.
        """
        if isinstance(points, Tensor):
            return self.voxelize_one(points)
        outputs = [self.voxelize_one(p) for p in points]
        coord_pos = 0 if self.max_num_points <= 0 else 1
        merged = []
        for i, parts in enumerate(zip(*outputs)):
            if i == coord_pos:
                parts = [torch.cat([c.new_full((c.shape[0], 1), b), c], dim=1)
                         for b, c in enumerate(parts)]
            merged.append(torch.cat(parts))
        return tuple(merged)
