"""Dynamic voxel feature encoder (mmdetection3d's ``DynamicVFE``, after Zhou et al., "End-to-End
Multi-View Fusion for 3D Object Detection in LiDAR Point Clouds", CoRL 2019).

Every point in the range keeps its own row ("dynamic" voxelisation: no per-voxel point cap). A
point's input features are its raw columns (x, y, z, intensity, ...), its offset to the mean of its
voxel's points, its offset to its voxel's centre and optionally its distance to the sensor. Each VFE
layer is ``Linear(bias=False) -> BatchNorm1d(eps=1e-3, momentum=0.01) -> ReLU`` on every point;
between layers each point's feature is concatenated with the max over its voxel, and the last
layer's per-voxel max is the voxel feature. Pillars are voxels whose z size is the whole range.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ...registry import MODELS
from ..ops.voxelize import grid_size, scatter_mean, unique_voxels, voxelize_dynamic
from .sparse_voxels import SparseVoxels, make_sparse_voxels

__all__ = ['DynamicVFE', 'check_points', 'scatter_max']


def scatter_max(features: Tensor, inverse: Tensor, num_voxels: int) -> Tensor:
    """Per-voxel max of point features (differentiable; ties share the gradient as torch does).

    Args:
        features: (P, C) point features.
        inverse: (P,) int64 voxel index of every point, each in ``[0, num_voxels)``.
        num_voxels: V.

    Returns:
        (V, C) maxima (0 for voxels without points).
    """
    index = inverse[:, None].expand(-1, features.shape[1])
    out = features.new_zeros((num_voxels, features.shape[1]))
    return out.scatter_reduce(0, index, features, reduce='amax', include_self=False)


def check_points(points: Tensor, index: int, num_features: int) -> None:
    """Raise a ``ValueError`` naming cloud ``index`` if it is malformed or holds NaN values.

    Args:
        points: (P, C >= num_features) one cloud.
        index: position of the cloud in the batch (for the message).
        num_features: columns the encoder reads.
    """
    if points.dim() != 2 or points.shape[1] < num_features:
        raise ValueError(f'DynamicVFE: point cloud {index} must have shape (P, >={num_features}) '
                         f'(x, y, z, intensity, ...), got {tuple(points.shape)}')
    if not points.dtype.is_floating_point:
        raise ValueError(f'DynamicVFE: point cloud {index} must be floating point, '
                         f'got {points.dtype}')
    used = points[:, :num_features]
    # NaN anywhere, or an infinite feature column: the encoder would produce NaN features.
    # Infinite coordinates are only out of range (dropped).
    bad = torch.isnan(used).any(dim=1) | torch.isinf(used[:, 3:]).any(dim=1)
    num_bad = int(bad.sum())
    if num_bad:
        raise ValueError(f'DynamicVFE: point cloud {index} has {num_bad} of {len(points)} points '
                         f'with NaN (or infinite non-coordinate) values in its first '
                         f'{num_features} columns; drop or repair them before the model')


@MODELS.register_module()
class DynamicVFE(nn.Module):
    """Dynamic voxel feature encoder, as mmdetection3d's ``DynamicVFE`` with ``mode='max'``.

    Args:
        in_channels: point columns used (x, y, z, intensity, ...).
        feat_channels: output channels of the VFE layers; the last is the voxel feature size.
        voxel_size: ``(vx, vy, vz)`` metres.
        point_cloud_range: ``(x0, y0, z0, x1, y1, z1)``; points outside are dropped.
        with_cluster_center: add the offset to the voxel's point mean (3 features).
        with_voxel_center: add the offset to the voxel's centre (3 features).
        with_distance: add the point's distance to the origin (1 feature).
        norm_eps, norm_momentum: BatchNorm1d settings (mmdetection3d: 1e-3, 0.01).
    """

    def __init__(self, in_channels: int = 4, feat_channels: Sequence[int] = (64, 64),
                 voxel_size: Sequence[float] = (0.16, 0.16, 4.0),
                 point_cloud_range: Sequence[float] = (0, -39.68, -3, 69.12, 39.68, 1),
                 with_cluster_center: bool = True, with_voxel_center: bool = True,
                 with_distance: bool = False, norm_eps: float = 1e-3,
                 norm_momentum: float = 0.01) -> None:
        super().__init__()
        if in_channels < 3:
            raise ValueError(f'DynamicVFE: in_channels must be >= 3 (x, y, z), got {in_channels}')
        if len(feat_channels) == 0:
            raise ValueError('DynamicVFE: feat_channels must name at least one layer')
        self.in_channels = int(in_channels)
        self.voxel_size = [float(v) for v in voxel_size]
        self.point_cloud_range = [float(v) for v in point_cloud_range]
        nx, ny, nz = grid_size(self.voxel_size, self.point_cloud_range)
        self.spatial_shape = (nz, ny, nx)
        self.with_cluster_center = with_cluster_center
        self.with_voxel_center = with_voxel_center
        self.with_distance = with_distance
        point_channels = (self.in_channels + 3 * with_cluster_center + 3 * with_voxel_center
                          + int(with_distance))
        channels = [point_channels, *[int(c) for c in feat_channels]]
        layers = []
        for i in range(len(feat_channels)):
            # Every layer after the first sees [point feature, voxel max]: twice the width.
            c_in = channels[i] * (2 if i > 0 else 1)
            layers.append(nn.Sequential(
                nn.Linear(c_in, channels[i + 1], bias=False),
                nn.BatchNorm1d(channels[i + 1], eps=norm_eps, momentum=norm_momentum),
                nn.ReLU(inplace=True)))
        self.vfe_layers = nn.ModuleList(layers)
        self.out_channels = channels[-1]

    def point_features(self, features: Tensor, coords: Tensor, inverse: Tensor,
                       num_voxels: int) -> Tensor:
        """Per-point input features.

        Args:
            features: (P, in_channels) points in range.
            coords: (P, 4) int ``(batch, z, y, x)`` voxel of each point.
            inverse: (P,) voxel index of each point.
            num_voxels: V.

        Returns:
            (P, point_channels) raw columns, cluster offsets, centre offsets, distance.
        """
        xyz = features[:, :3]
        parts = [features]
        if self.with_cluster_center:
            parts.append(xyz - scatter_mean(xyz, inverse, num_voxels)[inverse])
        if self.with_voxel_center:
            size = xyz.new_tensor(self.voxel_size)
            low = xyz.new_tensor(self.point_cloud_range[:3])
            cell = coords[:, [3, 2, 1]].to(xyz.dtype)  # x, y, z cell indices
            parts.append(xyz - (cell * size + (size / 2 + low)))
        if self.with_distance:
            parts.append(torch.linalg.vector_norm(xyz, dim=1, keepdim=True))
        return torch.cat(parts, dim=1)

    def forward(self, points: Sequence[Tensor]) -> SparseVoxels:
        """Encode a batch of clouds.

        Args:
            points: B clouds, each (P_i, C >= in_channels).

        Returns:
            :class:`SparseVoxels` with (N, feat_channels[-1]) features, coords (N, 4)
            ``(batch, z, y, x)`` sorted lexicographically, ``spatial_shape`` (Z, Y, X).

        Raises:
            ValueError: a cloud is malformed or holds NaN values (its index and count are named).
        """
        if isinstance(points, Tensor):
            raise TypeError('DynamicVFE takes a list of (P, C) clouds, not a single tensor')
        batch_size = len(points)
        feats, coords = [], []
        for index, cloud in enumerate(points):
            check_points(cloud, index, self.in_channels)
            cells = voxelize_dynamic(cloud, self.voxel_size, self.point_cloud_range)
            keep = cells[:, 0] >= 0
            feats.append(cloud[keep, :self.in_channels])
            cells = cells[keep].to(torch.int64)
            coords.append(torch.cat([cells.new_full((len(cells), 1), index), cells], dim=1))
        device = points[0].device if batch_size else torch.device('cpu')
        dtype = points[0].dtype if batch_size else torch.float32
        features = (torch.cat(feats) if feats
                    else torch.zeros((0, self.in_channels), device=device, dtype=dtype))
        point_coords = (torch.cat(coords) if coords
                        else torch.zeros((0, 4), dtype=torch.int64, device=device))
        if len(features) == 0:
            # No point in range: no voxel. (BatchNorm on zero rows would write NaN running stats.)
            return make_sparse_voxels(features.new_zeros((0, self.out_channels)),
                                      point_coords, self.spatial_shape, batch_size)
        voxel_coords, inverse, _ = unique_voxels(point_coords)
        num_voxels = len(voxel_coords)
        x = self.point_features(features, point_coords, inverse, num_voxels)
        for i, layer in enumerate(self.vfe_layers):
            point_feats = layer(x)
            voxel_feats = scatter_max(point_feats, inverse, num_voxels)
            if i < len(self.vfe_layers) - 1:
                x = torch.cat([point_feats, voxel_feats[inverse]], dim=1)
        return make_sparse_voxels(voxel_feats, voxel_coords, self.spatial_shape, batch_size)
