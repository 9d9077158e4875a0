"""The sparse voxel tensor that LiDAR front ends, 3D backbones and sparse convolutions pass on.

A batch of non-empty voxels is a feature row per voxel and its integer coordinates
``(batch, z, y, x)`` in a grid of ``spatial_shape = (Z, Y, X)`` cells. Coordinates are unique
within a batch (one row per occupied cell); rows need not be sorted. This is spconv's
``SparseConvTensor`` without its index caches, so models written against it run with or without
spconv.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

__all__ = ['SparseVoxels', 'make_sparse_voxels', 'sparse_to_bev']


@dataclass(frozen=True)
class SparseVoxels:
    """Non-empty voxels of a batch.

    Attributes:
        features: (N, C) float features, a row per voxel.
        coords: (N, 4) int64 ``(batch, z, y, x)``, each inside ``[0, batch_size) x spatial_shape``.
        spatial_shape: grid size ``(Z, Y, X)``.
        batch_size: clouds in the batch (some may have no voxel).
    """

    features: Tensor
    coords: Tensor
    spatial_shape: tuple[int, int, int]
    batch_size: int

    def __post_init__(self) -> None:
        if self.features.dim() != 2:
            raise ValueError('SparseVoxels.features must be (N, C), got '
                             f'{tuple(self.features.shape)}')
        if self.coords.dim() != 2 or self.coords.shape[1] != 4:
            raise ValueError(f'SparseVoxels.coords must be (N, 4) (batch, z, y, x), '
                             f'got {tuple(self.coords.shape)}')
        if self.coords.shape[0] != self.features.shape[0]:
            raise ValueError(f'SparseVoxels: {self.features.shape[0]} feature rows but '
                             f'{self.coords.shape[0]} coordinate rows')
        if len(self.spatial_shape) != 3:
            raise ValueError('SparseVoxels.spatial_shape must be (Z, Y, X), got '
                             f'{self.spatial_shape}')

    @property
    def num_voxels(self) -> int:
        return self.features.shape[0]

    @property
    def num_channels(self) -> int:
        return self.features.shape[1]

    def with_features(self, features: Tensor) -> SparseVoxels:
        """The same voxels with new ``(N, C')`` features."""
        return replace(self, features=features)

    def linear_index(self) -> Tensor:
        """(N,) int64 row-major index of each voxel in the dense ``(B, Z, Y, X)`` grid."""
        z_size, y_size, x_size = self.spatial_shape
        b, z, y, x = self.coords.long().unbind(1)
        return ((b * z_size + z) * y_size + y) * x_size + x

    def dense(self) -> Tensor:
        """The dense ``(B, C, Z, Y, X)`` grid, zeros where no voxel is."""
        z_size, y_size, x_size = self.spatial_shape
        grid = self.features.new_zeros(self.batch_size * z_size * y_size * x_size,
                                       self.num_channels)
        grid[self.linear_index()] = self.features
        return grid.view(self.batch_size, z_size, y_size, x_size, -1).permute(0, 4, 1, 2, 3)


def sparse_to_bev(voxels: SparseVoxels) -> Tensor:
    """Scatter voxels into a bird's-eye-view map, stacking the height cells as channels.

    As mmdetection3d's ``SparseEncoder`` output: channel ``c * Z + z`` holds feature ``c`` of
    height cell ``z``.

    Args:
        voxels: ``N`` voxels with ``C`` channels in a ``(Z, Y, X)`` grid.

    Returns:
        (B, C * Z, Y, X) features, zero in empty cells.
    """
    dense = voxels.dense()  # (B, C, Z, Y, X)
    batch, channels, z_size, y_size, x_size = dense.shape
    return dense.reshape(batch, channels * z_size, y_size, x_size)


def _check_int(coords: Tensor) -> None:
    if coords.dtype.is_floating_point:
        raise TypeError(f'voxel coordinates must be integers, got {coords.dtype}')


def make_sparse_voxels(features: Tensor, coords: Tensor, spatial_shape: tuple[int, int, int],
                       batch_size: int) -> SparseVoxels:
    """Build :class:`SparseVoxels`, casting ``coords`` to int64 after checking they are integers."""
    _check_int(coords)
    return SparseVoxels(features, coords.to(torch.int64), tuple(int(s) for s in spatial_shape),
                        int(batch_size))

