"""Reading and writing raw point clouds (``.bin``: float32 rows, as KITTI and nuScenes store)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..engine.errors import DataError


def read_points_bin(path: str | os.PathLike, num_features: int = 4,
                    dtype: np.dtype = np.float32) -> np.ndarray:
    """Read a ``.bin`` point cloud of ``num_features`` float32 columns -> ``(N, num_features)``.

    KITTI Velodyne files have 4 columns (x, y, z, reflectance); nuScenes ``.pcd.bin`` files have 5
    (x, y, z, intensity, ring). A file whose size is not a whole number of rows, or with non-finite
    coordinates, is reported with its name.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f'{path}: point-cloud file not found') from None
    row_bytes = num_features * np.dtype(dtype).itemsize
    if len(raw) % row_bytes:
        raise DataError(f'{path}: {len(raw)} bytes is not a whole number of points of '
                        f'{num_features} x {np.dtype(dtype).name} ({row_bytes} bytes each); '
                        'the file is truncated or has a different number of fields')
    points = np.frombuffer(raw, dtype=dtype).reshape(-1, num_features)
    finite = np.isfinite(points[:, :3]).all(axis=1)
    if not finite.all():
        first = int(np.flatnonzero(~finite)[0])
        raise DataError(f'{path}: {int((~finite).sum())} points have non-finite coordinates '
                        f'(first at row {first})')
    return points.copy()


def points_to_bytes(points: np.ndarray) -> bytes:
    """``(N, C)`` points as the bytes of a float32 ``.bin`` file."""
    return np.ascontiguousarray(points, dtype=np.float32).tobytes()
