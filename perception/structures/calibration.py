"""Sensor calibration: KITTI ``calib/*.txt`` files and nuScenes-style pose chains.

All matrices are float64 NumPy arrays; transforms are 4x4 homogeneous matrices that map column
vectors (``X_target = T @ X_source``). Names read ``source2target`` as in mmdetection3d's infos.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..engine.errors import DataError

# Key -> number of values, for the keys every KITTI object calib file has.
_KITTI_KEYS = {'P0': 12, 'P1': 12, 'P2': 12, 'P3': 12, 'R0_rect': 9, 'Tr_velo_to_cam': 12,
               'Tr_imu_to_velo': 12}
_REQUIRED_KITTI_KEYS = ('P0', 'P1', 'P2', 'P3', 'R0_rect', 'Tr_velo_to_cam')


def to_homogeneous(matrix: np.ndarray) -> np.ndarray:
    """Pad a 3x3 or 3x4 matrix to 4x4 (identity elsewhere)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    out = np.eye(4)
    out[:matrix.shape[0], :matrix.shape[1]] = matrix
    return out


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a 4x4 (or 3x4) rigid transform to ``(N, 3)`` points -> ``(N, 3)``."""
    matrix = np.asarray(matrix)
    return points[:, :3] @ matrix[:3, :3].T + matrix[:3, 3]


def project_to_image(points: np.ndarray, projection: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project ``(N, 3)`` camera-frame points with a 3x3 / 3x4 / 4x4 matrix.

    Returns ``(N, 2)`` pixel coordinates and ``(N,)`` depths (the homogeneous scale). Points with
    depth <= 0 are behind the camera; their pixels are meaningless and the caller must mask them.
    """
    projection = to_homogeneous(projection)
    homogeneous = np.concatenate([points[:, :3], np.ones((len(points), 1))], axis=1)
    projected = homogeneous @ projection.T
    depth = projected[:, 2]
    with np.errstate(divide='ignore', invalid='ignore'):
        uv = projected[:, :2] / depth[:, None]
    return uv, depth


@dataclass
class KittiCalibration:
    """One KITTI object-detection calibration file.

    ``P0``..``P3`` are 3x4 projections of rectified camera-0 points into cameras 0-3;
    ``R0_rect`` (3x3) rectifies camera 0; ``Tr_velo_to_cam`` (3x4) maps Velodyne points into the
    unrectified camera 0; ``Tr_imu_to_velo`` (3x4) is absent from some files.
    """
    P0: np.ndarray
    P1: np.ndarray
    P2: np.ndarray
    P3: np.ndarray
    R0_rect: np.ndarray
    Tr_velo_to_cam: np.ndarray
    Tr_imu_to_velo: np.ndarray | None = None
    path: str | None = field(default=None, compare=False)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> 'KittiCalibration':
        """Parse ``calib/XXXXXX.txt``; a missing key or a wrong count names the file and line."""
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as error:
            raise DataError(f'{path}: cannot read calibration file ({error.strerror})') from None
        values: dict[str, np.ndarray] = {}
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            key, sep, rest = line.partition(':')
            key = key.strip()
            if not sep:
                raise DataError(f'{path}, line {number}: expected "KEY: values", got {line!r}')
            try:
                numbers = np.array([float(v) for v in rest.split()], dtype=np.float64)
            except ValueError:
                raise DataError(f'{path}, line {number}: {key} has a non-numeric value') from None
            expected = _KITTI_KEYS.get(key)
            if expected is not None and numbers.size != expected:
                raise DataError(f'{path}, line {number}: {key} has {numbers.size} values, '
                                f'expected {expected}')
            if not np.isfinite(numbers).all():
                raise DataError(f'{path}, line {number}: {key} has non-finite values')
            values[key] = numbers
        missing = [key for key in _REQUIRED_KITTI_KEYS if key not in values]
        if missing:
            raise DataError(f'{path}: calibration is missing {", ".join(missing)} '
                            f'(expected keys {", ".join(_REQUIRED_KITTI_KEYS)})')
        imu = values.get('Tr_imu_to_velo')
        return cls(*(values[k].reshape(3, 4) for k in ('P0', 'P1', 'P2', 'P3')),
                   R0_rect=values['R0_rect'].reshape(3, 3),
                   Tr_velo_to_cam=values['Tr_velo_to_cam'].reshape(3, 4),
                   Tr_imu_to_velo=None if imu is None else imu.reshape(3, 4), path=str(path))

    def projection(self, camera: int = 2) -> np.ndarray:
        """3x4 projection of rectified camera-0 points into camera ``camera`` (0-3)."""
        if camera not in (0, 1, 2, 3):
            raise ValueError(f'KITTI cameras are 0-3, got {camera}')
        return getattr(self, f'P{camera}')

    @property
    def lidar2cam(self) -> np.ndarray:
        """4x4 LiDAR -> rectified camera 0: ``R0_rect @ Tr_velo_to_cam``."""
        return to_homogeneous(self.R0_rect) @ to_homogeneous(self.Tr_velo_to_cam)

    @property
    def cam2lidar(self) -> np.ndarray:
        """4x4 rectified camera 0 -> LiDAR."""
        return np.linalg.inv(self.lidar2cam)

    def lidar2img(self, camera: int = 2) -> np.ndarray:
        """4x4 LiDAR -> image of camera ``camera`` (rows 0-2 give ``[u*s, v*s, s]``)."""
        return to_homogeneous(self.projection(camera)) @ self.lidar2cam

    def lidar_to_camera(self, points: np.ndarray) -> np.ndarray:
        """``(N, 3)`` LiDAR points -> rectified camera frame."""
        return transform_points(points, self.lidar2cam)

    def camera_to_lidar(self, points: np.ndarray) -> np.ndarray:
        """``(N, 3)`` rectified camera points -> LiDAR frame."""
        return transform_points(points, self.cam2lidar)

    def camera_to_image(self, points: np.ndarray, camera: int = 2
                        ) -> tuple[np.ndarray, np.ndarray]:
        """``(N, 3)`` rectified camera points -> ``(N, 2)`` pixels and ``(N,)`` depths."""
        return project_to_image(points, self.projection(camera))

    def lidar_to_image(self, points: np.ndarray, camera: int = 2
                       ) -> tuple[np.ndarray, np.ndarray]:
        """``(N, 3)`` LiDAR points -> ``(N, 2)`` pixels and ``(N,)`` depths in camera ``camera``."""
        return project_to_image(points, self.lidar2img(camera))

    def to_info(self) -> dict[str, list]:
        """The matrices as mmdetection3d v1.x KITTI infos store them (4x4 nested lists)."""
        info = {f'P{i}': to_homogeneous(self.projection(i)).tolist() for i in range(4)}
        info['R0_rect'] = to_homogeneous(self.R0_rect).tolist()
        info['Tr_velo_to_cam'] = to_homogeneous(self.Tr_velo_to_cam).tolist()
        info['lidar2cam'] = self.lidar2cam.tolist()
        if self.Tr_imu_to_velo is not None:
            info['Tr_imu_to_velo'] = to_homogeneous(self.Tr_imu_to_velo).tolist()
        return info


def quaternion_to_matrix(quaternion: np.ndarray) -> np.ndarray:
    """``(..., 4)`` quaternions ``(w, x, y, z)`` (nuScenes order) -> ``(..., 3, 3)`` rotations.

    Quaternions are normalised first (tables store them to float precision); a zero-length one
    is an error.
    """
    q = np.asarray(quaternion, dtype=np.float64)
    if q.shape[-1:] != (4,):
        raise ValueError(f'quaternions must have shape (..., 4) as (w, x, y, z), got {q.shape}')
    norm = np.linalg.norm(q, axis=-1, keepdims=True)
    if not np.all(norm > 1e-9):
        raise ValueError('zero-length quaternion: cannot make a rotation from it')
    w, x, y, z = np.moveaxis(q / norm, -1, 0)
    return np.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
        2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
        2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
    ], axis=-1).reshape(*q.shape[:-1], 3, 3)


def invert_pose(pose: np.ndarray) -> np.ndarray:
    """Inverse of a 4x4 rigid transform as ``[R^T, -R^T t]`` (exact, unlike a general inverse)."""
    pose = np.asarray(pose, dtype=np.float64)
    inverse = np.eye(4)
    inverse[:3, :3] = pose[:3, :3].T
    inverse[:3, 3] = -pose[:3, :3].T @ pose[:3, 3]
    return inverse


def pose_matrix(rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """4x4 transform from a ``(w, x, y, z)`` quaternion or 3x3 rotation and a translation."""
    rotation = np.asarray(rotation, dtype=np.float64)
    matrix = np.eye(4)
    matrix[:3, :3] = quaternion_to_matrix(rotation) if rotation.shape == (4,) else rotation
    matrix[:3, 3] = np.asarray(translation, dtype=np.float64)
    return matrix


@dataclass
class SensorPoses:
    """nuScenes-style calibration of one sample: the chain sensor -> ego -> global.

    ``lidar2ego`` and ``ego2global`` are 4x4; ``cameras`` maps a camera name to its 3x3 intrinsics
    ``cam2img``, 4x4 ``cam2ego`` and, optionally, 4x4 ``lidar2cam``. The cameras are exposed at
    slightly different times from the LiDAR; a given ``lidar2cam`` (as nuScenes infos store it,
    through both ego poses and the global frame) includes the ego motion in between, the chain
    through ``cam2ego`` and ``lidar2ego`` alone does not (a few tens of cm at driving speed).
    """
    lidar2ego: np.ndarray
    ego2global: np.ndarray
    cameras: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    @property
    def lidar2global(self) -> np.ndarray:
        return self.ego2global @ self.lidar2ego

    def lidar2cam(self, camera: str) -> np.ndarray:
        """4x4 LiDAR -> camera ``camera``: the given one, else through the ego frame."""
        calibration = self._camera(camera)
        if calibration.get('lidar2cam') is not None:
            return np.asarray(calibration['lidar2cam'], dtype=np.float64)
        return np.linalg.inv(calibration['cam2ego']) @ self.lidar2ego

    def lidar2img(self, camera: str) -> np.ndarray:
        """4x4 LiDAR -> image of ``camera``."""
        return to_homogeneous(self._camera(camera)['cam2img']) @ self.lidar2cam(camera)

    def lidar_to_image(self, points: np.ndarray, camera: str) -> tuple[np.ndarray, np.ndarray]:
        """``(N, 3)`` LiDAR points -> ``(N, 2)`` pixels and ``(N,)`` depths in ``camera``."""
        return project_to_image(points, self.lidar2img(camera))

    def _camera(self, camera: str) -> dict[str, np.ndarray]:
        if camera not in self.cameras:
            raise KeyError(f'no calibration for camera {camera!r}; have {sorted(self.cameras)}')
        return self.cameras[camera]
