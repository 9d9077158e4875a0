"""Loading transforms: point clouds (single frame and multi-sweep), images and 3D annotations.

Each transform is a plain callable ``results -> results`` registered in ``TRANSFORMS``; the frame
dict it receives is the one the datasets build (``KittiDataset.parse_data_info``, nuScenes infos).
"""
from __future__ import annotations

import os.path as osp
from typing import Any, Sequence

import numpy as np

from ...engine.errors import ConfigError, DataError
from ...registry import TRANSFORMS
from ...structures import Points
from ..points_io import read_points_bin

# Names of the columns after x, y, z in the files the toolkit reads (docs/conventions.md, sec. 5):
# KITTI x, y, z, reflectance; nuScenes x, y, z, intensity, ring index.
DEFAULT_ATTRIBUTE_NAMES = ('intensity', 'ring')


def _as_dims(use_dims: int | Sequence[int], num_features: int, where: str) -> list[int]:
    """``use_dims`` as a list of column indices (an int ``n`` means the first ``n`` columns)."""
    dims = list(range(use_dims)) if isinstance(use_dims, int) else [int(d) for d in use_dims]
    if len(dims) < 3 or dims[:3] != [0, 1, 2]:
        raise ConfigError(f'{where}: use_dims must start with the coordinates 0, 1, 2, got {dims}')
    if max(dims) >= num_features or len(set(dims)) != len(dims):
        raise ConfigError(f'{where}: use_dims {dims} must be distinct columns below '
                          f'num_features={num_features}')
    return dims


def _attribute_map(dims: Sequence[int], names: Sequence[str]) -> dict[str, int]:
    """Map the names of the selected file columns (beyond x, y, z) to their new column index."""
    attributes = {}
    for new_column, file_column in enumerate(dims[3:], start=3):
        index = file_column - 3
        attributes[names[index] if index < len(names) else f'feature{file_column}'] = new_column
    return attributes


@TRANSFORMS.register_module()
class LoadPointsFromFile:
    """Read ``results['lidar_path']`` (a float32 ``.bin``) into ``results['points']``.

    Args:
        num_features: columns stored per point in the file (KITTI 4, nuScenes 5).
        use_dims: file columns kept, in order; must start with 0, 1, 2. An int ``n`` keeps the
            first ``n`` columns.
        frame: frame of the points, ``'lidar'`` or ``'camera'``.
        attribute_names: names of the file columns 3, 4, ... (default ``intensity``, ``ring``);
            kept columns are reachable as ``points.attribute(name)``.

    Adds ``points`` (``Points`` ``(N, len(use_dims))``) and ``num_pts_feats``.
    """

    def __init__(self, num_features: int = 4, use_dims: int | Sequence[int] = (0, 1, 2, 3),
                 frame: str = 'lidar',
                 attribute_names: Sequence[str] = DEFAULT_ATTRIBUTE_NAMES) -> None:
        if frame not in ('lidar', 'camera'):
            raise ConfigError(f"LoadPointsFromFile: frame must be 'lidar' or 'camera', "
                              f'got {frame!r}')
        self.num_features = num_features
        self.use_dims = _as_dims(use_dims, num_features, 'LoadPointsFromFile')
        self.frame = frame
        self.attribute_names = tuple(attribute_names)

    def __call__(self, results: dict) -> dict:
        if 'lidar_path' not in results:
            raise DataError(f'LoadPointsFromFile: the frame (sample_idx '
                            f'{results.get("sample_idx")}) has no lidar_path; is it a '
                            'camera-only frame?')
        raw = read_points_bin(results['lidar_path'], num_features=self.num_features)
        results['points'] = Points(raw[:, self.use_dims], frame=self.frame,
                                   attributes=_attribute_map(self.use_dims, self.attribute_names))
        results['num_pts_feats'] = len(self.use_dims)
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(num_features={self.num_features}, '
                f'use_dims={self.use_dims}, frame={self.frame!r})')


def remove_close(points: np.ndarray, radius: float) -> np.ndarray:
    """Drop points with ``|x| < radius`` and ``|y| < radius`` (the ego vehicle's own returns).

    A square, not a disc, as mmdetection3d's ``_remove_close``. ``(N, C)`` -> ``(M, C)``.
    """
    close = (np.abs(points[:, 0]) < radius) & (np.abs(points[:, 1]) < radius)
    return points[~close]


@TRANSFORMS.register_module()
class LoadPointsFromMultiSweeps:
    """Accumulate previous LiDAR sweeps into the key frame (nuScenes), as mmdetection3d.

    Column 4 of every point becomes the time lag in seconds: 0 for the key frame's points,
    ``results['timestamp'] - sweep['timestamp']`` for a sweep's (the ring index it held is dropped).
    Each sweep is read with ``load_dim`` columns, points within ``remove_close`` m of the sweep's
    sensor (square in x, y) are removed, and the rest are moved into the key frame's LiDAR frame by
    ``sweep['lidar_points']['lidar2sensor']`` (4x4, sweep LiDAR -> key LiDAR, column vectors).

    Args:
        sweeps_num: sweeps added. With more available, training draws them at random without
            replacement, ``test_mode`` takes the first (newest) ones.
        load_dim: columns per point in the sweep files (5 for nuScenes).
        use_dims: columns kept from the accumulated points; must include 4 to keep the time lag.
        remove_close: radius in metres; 0 or None keeps every point.
        pad_empty: a frame without sweeps gets ``sweeps_num`` copies of its own points (after
            ``remove_close``, time lag 0), so the number of points does not collapse.
        test_mode: deterministic choice of sweeps.
        data_root: joined to relative sweep paths (nuScenes infos store paths relative to the root).

    Needs ``points`` (from ``LoadPointsFromFile`` with at least 5 columns), ``timestamp`` and
    ``lidar_sweeps`` (list of ``{'lidar_points': {'lidar_path', 'lidar2sensor'}, 'timestamp'}``).
    """

    def __init__(self, sweeps_num: int = 10, load_dim: int = 5,
                 use_dims: Sequence[int] = (0, 1, 2, 3, 4), remove_close: float | None = 1.0,
                 pad_empty: bool = True, test_mode: bool = False,
                 data_root: str | None = None) -> None:
        if sweeps_num < 0:
            raise ConfigError(f'LoadPointsFromMultiSweeps: sweeps_num must be >= 0, '
                              f'got {sweeps_num}')
        if load_dim < 5:
            raise ConfigError('LoadPointsFromMultiSweeps: load_dim must be >= 5 (column 4 carries '
                              f'the time lag), got {load_dim}')
        self.sweeps_num = sweeps_num
        self.load_dim = load_dim
        self.use_dims = _as_dims(use_dims, load_dim, 'LoadPointsFromMultiSweeps')
        self.remove_close = remove_close
        self.pad_empty = pad_empty
        self.test_mode = test_mode
        self.data_root = data_root

    def _choose(self, available: int) -> np.ndarray:
        if available <= self.sweeps_num:
            return np.arange(available)
        if self.test_mode:
            return np.arange(self.sweeps_num)
        return np.random.choice(available, self.sweeps_num, replace=False)

    def _load_sweep(self, sweep: dict, key_timestamp: float, index: int) -> np.ndarray:
        try:
            path = sweep['lidar_points']['lidar_path']
            lidar2sensor = np.asarray(sweep['lidar_points']['lidar2sensor'], dtype=np.float64)
            timestamp = float(sweep['timestamp'])
        except (KeyError, TypeError) as error:
            raise DataError(f'lidar_sweeps[{index}]: expected {{"lidar_points": {{"lidar_path", '
                            f'"lidar2sensor"}}, "timestamp"}}, missing {error}') from None
        if lidar2sensor.shape not in ((4, 4), (3, 4)):
            raise DataError(f'lidar_sweeps[{index}].lidar_points.lidar2sensor: expected a 4x4 '
                            f'matrix, got shape {lidar2sensor.shape}')
        if self.data_root is not None and not osp.isabs(path):
            path = osp.join(self.data_root, path)
        points = read_points_bin(path, num_features=self.load_dim)
        if self.remove_close:
            points = remove_close(points, self.remove_close)
        xyz = points[:, :3].astype(np.float64) @ lidar2sensor[:3, :3].T + lidar2sensor[:3, 3]
        points[:, :3] = xyz
        points[:, 4] = key_timestamp - timestamp
        return points

    def __call__(self, results: dict) -> dict:
        key_points: Points = results['points']
        if key_points.tensor.shape[1] < 5:
            raise ConfigError('LoadPointsFromMultiSweeps needs key-frame points with >= 5 columns '
                              '(LoadPointsFromFile(num_features=5, use_dims=5)), got '
                              f'{key_points.tensor.shape[1]}')
        if key_points.tensor.shape[1] > self.load_dim:
            raise ConfigError(f'LoadPointsFromMultiSweeps: key-frame points have '
                              f'{key_points.tensor.shape[1]} columns, sweeps only load_dim='
                              f'{self.load_dim}')
        # Sweeps keep the key frame's columns: the first ones of the file, as the key frame is
        # loaded with use_dims=range(n).
        key = key_points.numpy().copy()
        key[:, 4] = 0.0
        sweeps = results.get('lidar_sweeps') or []
        parts = [key]
        if not sweeps:
            if self.pad_empty:
                padded = remove_close(key, self.remove_close) if self.remove_close else key
                parts += [padded] * self.sweeps_num
        else:
            if 'timestamp' not in results:
                raise DataError(f'frame {results.get("sample_idx")}: lidar_sweeps given but no '
                                'key-frame timestamp')
            key_timestamp = float(results['timestamp'])
            for index in self._choose(len(sweeps)):
                parts.append(self._load_sweep(sweeps[index], key_timestamp, int(index))
                             [:, :key.shape[1]])
        merged = np.concatenate(parts, axis=0)[:, self.use_dims]
        attributes = {}
        names = {column: name for name, column in key_points.attributes.items()}
        names[4] = 'time_lag'
        for new_column, old_column in enumerate(self.use_dims[3:], start=3):
            attributes[names.get(old_column, f'feature{old_column}')] = new_column
        results['points'] = Points(merged, frame=key_points.frame, attributes=attributes)
        results['num_pts_feats'] = len(self.use_dims)
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(sweeps_num={self.sweeps_num}, use_dims={self.use_dims}, '
                f'remove_close={self.remove_close}, pad_empty={self.pad_empty}, '
                f'test_mode={self.test_mode})')


def read_rgb(path: str) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB image; a clear ``DataError`` if missing or unreadable."""
    import cv2  # OpenCV is only needed where images are read

    if not osp.isfile(path):
        raise DataError(f'{path}: image file not found')
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise DataError(f'{path}: cannot decode the image (not a PNG/JPEG, or truncated)')
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


@TRANSFORMS.register_module()
class LoadImage:
    """Read ``results['img_path']`` (and ``img_right_path`` with ``stereo``) as RGB.

    Adds ``img`` ``(H, W, 3)`` (uint8, or float32 with ``to_float32``; values 0-255), ``img_right``
    for stereo, ``img_shape`` and ``ori_shape`` ``(H, W)``. A right image of another size than the
    left one is an error.
    """

    def __init__(self, to_float32: bool = False, stereo: bool = False) -> None:
        self.to_float32 = to_float32
        self.stereo = stereo

    def _read(self, results: dict, key: str) -> np.ndarray:
        if key not in results:
            raise DataError(f'LoadImage: the frame (sample_idx {results.get("sample_idx")}) has '
                            f'no {key}')
        image = read_rgb(str(results[key]))
        return image.astype(np.float32) if self.to_float32 else image

    def __call__(self, results: dict) -> dict:
        results['img'] = self._read(results, 'img_path')
        shape = results['img'].shape[:2]
        if self.stereo:
            results['img_right'] = self._read(results, 'img_right_path')
            if results['img_right'].shape[:2] != shape:
                raise DataError(f'{results["img_right_path"]}: right image is '
                                f'{results["img_right"].shape[:2]}, left image '
                                f'{results["img_path"]} is {shape}')
        results['img_shape'] = shape
        results['ori_shape'] = shape
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(to_float32={self.to_float32}, stereo={self.stereo})'


@TRANSFORMS.register_module()
class LoadAnnotations3D:
    """Copy annotation entries from ``results['ann_info']`` to the top level of ``results``.

    Args:
        with_bbox_3d: ``gt_bboxes_3d``. with_label_3d: ``gt_labels_3d``.
        with_bbox: ``gt_bboxes`` (2D, x1y1x2y2). with_label: ``gt_labels``.
        with_bbox_depth: ``centers_2d`` and ``depths`` (monocular 3D).
        extra_keys: further ``ann_info`` entries to copy (e.g. ``num_lidar_pts``, ``difficulty``).

    The arrays are copied so augmentations never modify the dataset's cached annotations.
    """

    def __init__(self, with_bbox_3d: bool = True, with_label_3d: bool = True,
                 with_bbox: bool = False, with_label: bool = False,
                 with_bbox_depth: bool = False, extra_keys: Sequence[str] = ()) -> None:
        keys = []
        keys += ['gt_bboxes_3d'] if with_bbox_3d else []
        keys += ['gt_labels_3d'] if with_label_3d else []
        keys += ['gt_bboxes'] if with_bbox else []
        keys += ['gt_labels'] if with_label else []
        keys += ['centers_2d', 'depths'] if with_bbox_depth else []
        self.keys = tuple(keys) + tuple(k for k in extra_keys if k not in keys)

    def __call__(self, results: dict) -> dict:
        ann_info = results.get('ann_info')
        if ann_info is None:
            raise DataError(f'LoadAnnotations3D: the frame (sample_idx '
                            f'{results.get("sample_idx")}) has no ann_info (test split?)')
        missing = [k for k in self.keys if k not in ann_info]
        if missing:
            raise DataError(f'LoadAnnotations3D: ann_info of frame {results.get("sample_idx")} '
                            f'lacks {missing}; it has {sorted(ann_info)}')
        for key in self.keys:
            value: Any = ann_info[key]
            results[key] = value.clone() if hasattr(value, 'clone') else np.array(value, copy=True)
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(keys={self.keys})'
