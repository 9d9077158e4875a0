"""3D augmentations and filters: GT-database paste, global rotation/scale/translation, random flip,
point and object range filters, class filter, point shuffle.

Every geometric transform applies the same call to the points and the boxes
(``Points`` and ``Boxes3D`` share the transform semantics), so which points lie in which box never
changes. What a transform did is recorded in ``results`` (``pcd_rotation``, ``pcd_scale_factor``,
``pcd_trans``, ``pcd_horizontal_flip``, ``flip``, ``transformation_3d_flow``, ...) so predictions
can be mapped back. Random draws come from numpy's global RNG (mmengine seeds it per worker), or,
with ``seed``, from the transform's own ``numpy.random.Generator`` (the same sequence in every
dataloader worker that holds a copy).
"""
from __future__ import annotations

import math
import os.path as osp
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from ...engine.errors import ConfigError, DataError
from ...registry import TRANSFORMS
from ...structures import Boxes3D, LiDARBoxes3D, Points, rotation_matrix_about
from ..points_io import read_points_bin

# Keys holding one entry per ground-truth object: filters select them together with the boxes.
INSTANCE_KEYS = ('gt_bboxes_3d', 'gt_labels_3d', 'gt_bboxes', 'gt_labels', 'centers_2d', 'depths',
                 'attr_labels', 'alpha', 'truncated', 'occluded', 'difficulty', 'num_lidar_pts')
# Keys holding one entry per point.
POINT_KEYS = ('pts_instance_mask', 'pts_semantic_mask')
# Per-object keys that only make sense with an image (ObjectSample cannot create them).
IMAGE_INSTANCE_KEYS = ('gt_bboxes', 'gt_labels', 'centers_2d', 'depths')


class _Random:
    """Random source: numpy's global RNG, or a private Generator when ``seed`` is given."""

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed
        self._generator = None if seed is None else np.random.default_rng(seed)

    @property
    def rng(self) -> Any:
        # np.random (module) and np.random.Generator share uniform/normal/random/choice/permutation.
        return np.random if self._generator is None else self._generator


def _index(value: Any, keep: np.ndarray | torch.Tensor) -> Any:
    if isinstance(value, (Boxes3D, Points)):
        return value[torch.as_tensor(keep)]
    if isinstance(value, torch.Tensor):
        return value[torch.as_tensor(keep, device=value.device)]
    return np.asarray(value)[np.asarray(keep)]


def select_instances(results: dict, keep: np.ndarray | torch.Tensor) -> None:
    """Keep the objects ``keep`` (``(N,)`` bool or indices) in every per-object key, in place."""
    count = len(results['gt_bboxes_3d'])
    for key in INSTANCE_KEYS:
        if key in results:
            if len(results[key]) != count:
                raise DataError(f'{key} has {len(results[key])} entries but gt_bboxes_3d has '
                                f'{count}; per-object annotations must stay aligned')
            results[key] = _index(results[key], keep)


def select_points(results: dict, keep: np.ndarray | torch.Tensor) -> None:
    """Keep the points ``keep`` in ``points`` and every per-point key, in place."""
    for key in ('points', *POINT_KEYS):
        if key in results:
            results[key] = _index(results[key], keep)


def _check_same_frame(results: dict, name: str) -> None:
    points, boxes = results.get('points'), results.get('gt_bboxes_3d')
    if points is not None and boxes is not None and points.frame != boxes.frame.name:
        raise ConfigError(f'{name}: points are in the {points.frame} frame but gt_bboxes_3d in the '
                          f'{boxes.frame.name} frame; a rotation/scale about one origin cannot '
                          "keep both consistent (use box_frame='lidar' with LiDAR points)")


def _flow(results: dict) -> list[str]:
    return results.setdefault('transformation_3d_flow', [])


# --------------------------------------------------------------------------------- object paste
def load_gt_database(db_info_path: str, classes: Sequence[str], min_points: Mapping[str, int],
                     drop_difficulties: Sequence[int]) -> dict[str, dict[str, Any]]:
    """Read ``kitti_dbinfos_train.pkl`` and keep the usable objects of each class.

    Returns ``{class: {'boxes': (K, 7) float64 LiDAR boxes, 'paths': [K], 'num_points': (K,),
    'difficulty': (K,)}}`` for every class of ``classes`` (K may be 0).
    """
    from mmengine.fileio import load

    if not osp.isfile(db_info_path):
        raise DataError(f'{db_info_path}: ground-truth database info not found (written by '
                        'tools/create_data.py kitti)')
    infos = load(db_info_path)
    if not isinstance(infos, dict):
        raise DataError(f'{db_info_path}: expected {{class: [object info, ...]}}, got '
                        f'{type(infos).__name__}')
    database = {}
    for name in classes:
        entries = infos.get(name, [])
        try:
            boxes = np.array([e['box3d_lidar'] for e in entries], dtype=np.float64).reshape(-1, 7)
            num_points = np.array([e['num_points_in_gt'] for e in entries], dtype=np.int64)
            difficulty = np.array([e['difficulty'] for e in entries], dtype=np.int64)
            paths = [str(e['path']) for e in entries]
        except (KeyError, TypeError, ValueError) as error:
            raise DataError(f'{db_info_path}: class {name!r}: every object needs box3d_lidar '
                            f'(7 numbers), num_points_in_gt, difficulty and path '
                            f'({error})') from None
        keep = ((num_points >= min_points.get(name, 0))
                & ~np.isin(difficulty, np.asarray(list(drop_difficulties), dtype=np.int64)))
        database[name] = {'boxes': boxes[keep], 'num_points': num_points[keep],
                          'difficulty': difficulty[keep],
                          'paths': [p for p, k in zip(paths, keep) if k]}
    return database


def collision_free(candidates: torch.Tensor, existing: torch.Tensor) -> np.ndarray:
    """Greedy choice of candidate BEV boxes that overlap nothing accepted so far.

    Args:
        candidates: ``(K, 5)`` BEV boxes ``[cx, cy, dx, dy, angle]``, in the order they are tried.
        existing: ``(N, 5)`` boxes already in the scene.

    Returns:
        ``(K,)`` bool: candidate k is accepted when its rotated BEV IoU is 0 with every existing box
        and with every earlier accepted candidate (a positive IoU is a collision).
    """
    from ...models.ops.iou3d import bev_iou

    candidates = candidates.double()
    hits_existing = (bev_iou(candidates, existing.double()) > 0).any(dim=1).numpy() \
        if len(existing) else np.zeros(len(candidates), dtype=bool)
    pairwise = (bev_iou(candidates, candidates) > 0).numpy()
    np.fill_diagonal(pairwise, False)
    accepted = np.zeros(len(candidates), dtype=bool)
    # Acceptance depends on the earlier decisions, so this walk is sequential; it only reads the
    # precomputed (K, K) matrix (K <= the sample group size, e.g. 15).
    for k in np.flatnonzero(~hits_existing):
        accepted[k] = not (pairwise[k] & accepted).any()
    return accepted


@TRANSFORMS.register_module()
class ObjectSample(_Random):
    """Paste ground-truth-database objects into the scene (SECOND's GT sampling, as mmdetection3d).

    For each class, ``sample_groups[class]`` minus the number of such objects already present is
    drawn from the database (without replacement); a drawn box is pasted only if its rotated BEV IoU
    is 0 with every box in the scene, with every box pasted for an earlier class and with every
    earlier accepted box of its class. Scene points inside the pasted boxes are removed and the
    objects' points (stored relative to the box bottom centre) are added, moved to the box.

    Args:
        db_info_path: ``kitti_dbinfos_train.pkl``; relative paths are taken under ``data_root``.
        data_root: folder the database ``path`` entries are relative to.
        sample_groups: ``{class: number of objects wanted per frame}``.
        classes: the dataset's classes; a pasted object's label is its index here.
        min_points: ``{class: n}``: database objects with fewer points are never pasted.
        drop_difficulties: database objects with these difficulties are never pasted (-1: objects
            KITTI does not evaluate).
        num_features, use_dims: columns of the database point files and those kept; the result must
            have as many columns as the scene's points.
        seed: private RNG seed (None: numpy's global RNG).

    Needs LiDAR-frame ``points``, ``gt_bboxes_3d``, ``gt_labels_3d``. Extends those and, where
    present, ``num_lidar_pts`` and ``difficulty``; adds ``pasted_objects`` (database paths).
    """

    def __init__(self, db_info_path: str, data_root: str,
                 sample_groups: Mapping[str, int] | None = None,
                 classes: Sequence[str] = ('Car', 'Pedestrian', 'Cyclist'),
                 min_points: Mapping[str, int] | None = None,
                 drop_difficulties: Sequence[int] = (-1,), num_features: int = 4,
                 use_dims: Sequence[int] = (0, 1, 2, 3), seed: int | None = None) -> None:
        super().__init__(seed)
        self.sample_groups = dict(sample_groups if sample_groups is not None
                                  else {'Car': 15, 'Pedestrian': 10, 'Cyclist': 10})
        self.classes = tuple(classes)
        unknown = [name for name in self.sample_groups if name not in self.classes]
        if unknown:
            raise ConfigError(f'ObjectSample: sample_groups names {unknown}, which are not among '
                              f'classes {self.classes}')
        self.min_points = dict(min_points if min_points is not None
                               else {'Car': 5, 'Pedestrian': 5, 'Cyclist': 5})
        self.drop_difficulties = tuple(drop_difficulties)
        self.data_root = data_root
        self.db_info_path = (db_info_path if osp.isabs(db_info_path)
                             else osp.join(data_root, db_info_path))
        self.num_features = num_features
        self.use_dims = list(use_dims)
        self.database = load_gt_database(self.db_info_path, list(self.sample_groups),
                                         self.min_points, self.drop_difficulties)

    def _object_points(self, name: str, index: int, box: np.ndarray) -> np.ndarray:
        path = self.database[name]['paths'][index]
        full = path if osp.isabs(path) else osp.join(self.data_root, path)
        points = read_points_bin(full, num_features=self.num_features)[:, self.use_dims]
        points[:, :3] += box[:3].astype(np.float32)
        return points

    def __call__(self, results: dict) -> dict:
        boxes: Boxes3D = results['gt_bboxes_3d']
        points: Points = results['points']
        if boxes.frame.name != 'lidar' or points.frame != 'lidar':
            raise ConfigError("ObjectSample pastes LiDAR objects: it needs box_frame='lidar' and "
                              'LiDAR-frame points')
        present_2d = [k for k in IMAGE_INSTANCE_KEYS if k in results]
        if present_2d:
            raise ConfigError(f'ObjectSample cannot paste image annotations; the pipeline loads '
                              f'{present_2d} (load no 2D annotations in a pipeline that pastes)')
        labels = np.asarray(results['gt_labels_3d'])
        scene_bev = boxes.bev.double()
        pasted_boxes, pasted_labels, pasted_points, pasted_meta = [], [], [], []
        for name, wanted in self.sample_groups.items():
            label = self.classes.index(name)
            available = len(self.database[name]['paths'])
            count = min(max(0, int(wanted) - int((labels == label).sum())), available)
            if count == 0:
                continue
            drawn = self.rng.choice(available, count, replace=False)
            candidates = self.database[name]['boxes'][drawn]
            existing = torch.cat([scene_bev, *_bev_of(pasted_boxes)], dim=0)
            accepted = drawn[collision_free(
                LiDARBoxes3D(torch.from_numpy(candidates)).bev, existing)]
            for index in accepted:
                box = self.database[name]['boxes'][index]
                pasted_boxes.append(box)
                pasted_labels.append(label)
                pasted_points.append(self._object_points(name, int(index), box))
                pasted_meta.append((name, int(index)))
        results['pasted_objects'] = [self.database[n]['paths'][i] for n, i in pasted_meta]
        if not pasted_boxes:
            return results

        new_boxes = torch.from_numpy(np.stack(pasted_boxes)).to(boxes.tensor.dtype)
        if boxes.box_dim > 7:  # velocity columns: pasted objects stand still
            new_boxes = torch.cat([new_boxes, new_boxes.new_zeros(len(new_boxes),
                                                                  boxes.box_dim - 7)], dim=1)
        new_boxes = type(boxes)(new_boxes)
        object_points = np.concatenate(pasted_points, axis=0)
        if object_points.shape[1] != points.tensor.shape[1]:
            raise ConfigError(f'ObjectSample: database points have {object_points.shape[1]} '
                              f'columns (use_dims={self.use_dims}) but the scene points have '
                              f'{points.tensor.shape[1]}')
        # Scene points inside a pasted box would sit inside the pasted object: drop them.
        inside = new_boxes.points_in_boxes(points.coord).any(dim=1)
        select_points(results, ~inside)
        scene = results['points']
        results['points'] = scene.new(torch.cat(
            [torch.from_numpy(object_points).to(scene.tensor.dtype), scene.tensor], dim=0))
        for key in POINT_KEYS:  # pasted points belong to no annotated instance / class
            if key in results:
                value = np.asarray(results[key])
                results[key] = np.concatenate([np.full(len(object_points), -1, value.dtype),
                                               value])
        results['gt_bboxes_3d'] = type(boxes).cat([boxes, new_boxes])
        results['gt_labels_3d'] = np.concatenate(
            [labels.astype(np.int64), np.asarray(pasted_labels, dtype=np.int64)])
        extras = {'num_lidar_pts': 'num_points', 'difficulty': 'difficulty'}
        for key, field in extras.items():
            if key in results:
                values = [self.database[n][field][i] for n, i in pasted_meta]
                results[key] = np.concatenate([np.asarray(results[key]),
                                               np.asarray(values, dtype=np.int64)])
        for key in INSTANCE_KEYS:
            if key in results and len(results[key]) != len(results['gt_bboxes_3d']):
                raise ConfigError(f'ObjectSample cannot extend per-object key {key!r}; do not load '
                                  'it in a pipeline that pastes objects')
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(db_info_path={self.db_info_path!r}, '
                f'sample_groups={self.sample_groups}, min_points={self.min_points}, '
                f'drop_difficulties={self.drop_difficulties}, seed={self.seed})')


def _bev_of(boxes: list[np.ndarray]) -> list[torch.Tensor]:
    """BEV rectangles ``(K, 5)`` of boxes pasted so far (an empty list when none)."""
    if not boxes:
        return []
    return [LiDARBoxes3D(torch.from_numpy(np.stack(boxes))).bev.double()]


# --------------------------------------------------------------------------------- global aug
@TRANSFORMS.register_module()
class GlobalRotScaleTrans(_Random):
    """Rotate about the vertical axis, scale and translate the whole scene (in this order).

    Args:
        rot_range: ``(low, high)`` radians of a uniform angle (a number ``r`` means ``(-r, r)``);
            positive turns the scene as ``Boxes3D.rotate`` (counter-clockwise seen from above for
            LiDAR), so every yaw grows by the angle.
        scale_ratio_range: ``(low, high)`` of a uniform scale factor about the origin.
        translation_std: ``(3,)`` standard deviations of a normal translation, metres.
        seed: private RNG seed (None: numpy's global RNG).

    Records ``pcd_rotation_angle``, ``pcd_rotation`` (3x3, applied to column vectors:
    ``p' = R p``; mmdetection3d stores its transpose), ``pcd_scale_factor``, ``pcd_trans`` (3,)
    and appends ``'R', 'S', 'T'`` to ``transformation_3d_flow``. To map a prediction back: subtract
    ``pcd_trans``, divide by ``pcd_scale_factor``, rotate by ``-pcd_rotation_angle``.
    """

    def __init__(self, rot_range: float | Sequence[float] = (-math.pi / 4, math.pi / 4),
                 scale_ratio_range: Sequence[float] = (0.95, 1.05),
                 translation_std: float | Sequence[float] = (0.0, 0.0, 0.0),
                 seed: int | None = None) -> None:
        super().__init__(seed)
        if isinstance(rot_range, (int, float)):
            rot_range = (-abs(rot_range), abs(rot_range))
        self.rot_range = tuple(float(r) for r in rot_range)
        self.scale_ratio_range = tuple(float(s) for s in scale_ratio_range)
        if isinstance(translation_std, (int, float)):
            translation_std = (translation_std,) * 3
        self.translation_std = np.asarray(translation_std, dtype=np.float64)
        if len(self.rot_range) != 2 or len(self.scale_ratio_range) != 2 \
                or self.translation_std.shape != (3,) or (self.translation_std < 0).any():
            raise ConfigError('GlobalRotScaleTrans: rot_range and scale_ratio_range take (low, '
                              'high), translation_std three non-negative numbers')

    def __call__(self, results: dict) -> dict:
        _check_same_frame(results, type(self).__name__)
        angle = float(self.rng.uniform(*self.rot_range))
        scale = float(self.rng.uniform(*self.scale_ratio_range))
        trans = self.rng.normal(0.0, 1.0, 3) * self.translation_std
        for key in ('points', 'gt_bboxes_3d'):
            if key in results:
                results[key] = results[key].rotate(angle).scale(scale).translate(
                    trans.astype(np.float32) if key == 'points' else trans)
        frame = results['points'].frame if 'points' in results else \
            results['gt_bboxes_3d'].frame.name if 'gt_bboxes_3d' in results else 'lidar'
        # Boxes3D.rotate turns LiDAR data about +z and camera data about +y by the same angle.
        results['pcd_rotation'] = rotation_matrix_about(
            2 if frame == 'lidar' else 1, torch.tensor(angle, dtype=torch.float64)).numpy()
        results['pcd_rotation_angle'] = angle
        results['pcd_scale_factor'] = scale
        results['pcd_trans'] = trans
        _flow(results).extend(['R', 'S', 'T'])
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(rot_range={self.rot_range}, '
                f'scale_ratio_range={self.scale_ratio_range}, '
                f'translation_std={self.translation_std.tolist()}, seed={self.seed})')


# --------------------------------------------------------------------------------- flip
_LIDAR_MIRROR = {'horizontal': (1.0, -1.0, 1.0), 'vertical': (-1.0, 1.0, 1.0)}
_CAMERA_MIRROR = {'horizontal': (-1.0, 1.0, 1.0), 'vertical': (1.0, 1.0, -1.0)}


def _mirror(diagonal: Sequence[float], size: int) -> np.ndarray:
    matrix = np.eye(size)
    matrix[:3, :3] = np.diag(diagonal)
    return matrix


def flip_calibration(results: dict, direction: str, image_width: float | None) -> None:
    """Update ``cam2img(_right)``, ``lidar2cam``, ``lidar2img`` after a 3D flip, in place.

    LiDAR-frame data is mirrored by ``G_l`` (horizontal: y -> -y) and camera-frame data by ``G_c``
    (horizontal: x -> -x); with ``image_width`` the image is mirrored too, ``u -> W - 1 - u``
    (matrix ``F``: pixel centres sit at integer ``u``, as KITTI's P2 and 2D labels put them, and
    ``img[:, ::-1]`` moves pixel ``u`` to ``W - 1 - u``). The new matrices keep every projection
    exact: ``cam2img' = F cam2img G_c``,
    ``lidar2cam' = G_c lidar2cam G_l``, ``lidar2img' = F lidar2img G_l``. (Just moving the
    principal point, ``c_u -> W - c_u``, as mmdetection3d does, misses the sign of the ``P[0, 3]``
    baseline term of KITTI's P2: a ``2 P[0, 3] / z`` px error, ~11 px at 8 m.)
    """
    def image_mirror(rows: int) -> np.ndarray:
        matrix = np.eye(rows)
        if image_width is not None:
            matrix[0, 0], matrix[0, 2] = -1.0, float(image_width) - 1.0
        return matrix

    lidar_diag, camera_diag = _LIDAR_MIRROR[direction], _CAMERA_MIRROR[direction]
    for key in ('cam2img', 'cam2img_right'):
        if key in results:
            matrix = np.asarray(results[key], dtype=np.float64)
            results[key] = image_mirror(matrix.shape[0]) @ matrix @ _mirror(camera_diag,
                                                                            matrix.shape[1])
    if 'lidar2cam' in results:
        matrix = np.asarray(results['lidar2cam'], dtype=np.float64)
        results['lidar2cam'] = (_mirror(camera_diag, matrix.shape[0]) @ matrix
                                @ _mirror(lidar_diag, matrix.shape[1]))
    if 'lidar2img' in results:
        matrix = np.asarray(results['lidar2img'], dtype=np.float64)
        results['lidar2img'] = (image_mirror(matrix.shape[0]) @ matrix
                                @ _mirror(lidar_diag, matrix.shape[1]))


def flip_image_annotations(results: dict, width: float) -> None:
    """Mirror images and 2D annotations left-right (``u -> W - 1 - u``, pixel centres), in place."""
    for key in ('img', 'img_right'):
        if key in results:
            results[key] = np.ascontiguousarray(results[key][:, ::-1])
    for key in ('gt_bboxes', 'dontcare_bboxes'):
        if key in results:
            boxes = np.array(results[key], copy=True)
            boxes[:, [0, 2]] = (width - 1) - boxes[:, [2, 0]]
            results[key] = boxes
    if 'centers_2d' in results:
        centers = np.array(results['centers_2d'], copy=True)
        centers[:, 0] = (width - 1) - centers[:, 0]
        results['centers_2d'] = centers
    if 'alpha' in results:  # alpha = ry - atan2(x, z); x -> -x, ry -> pi - ry
        alpha = np.pi - np.asarray(results['alpha'], dtype=np.float64)
        results['alpha'] = (alpha - np.floor(alpha / (2 * np.pi) + 0.5) * 2 * np.pi).astype(
            np.float32)


@TRANSFORMS.register_module()
class RandomFlip3D(_Random):
    """Random mirror of the scene in bird's-eye view, and of the image in step with it.

    Args:
        flip_ratio_bev_horizontal: probability of a left-right mirror (LiDAR y -> -y, camera x ->
            -x); with an image and ``sync_2d`` the image is mirrored with it.
        flip_ratio_bev_vertical: probability of a front-back mirror (LiDAR x -> -x, camera z -> -z);
            never applied when an image is flipped in sync (an image cannot show it).
        sync_2d: tie the image flip to the horizontal 3D flip. Without it images stay as they are
            and only the calibration is updated to match the mirrored 3D data.
        seed: private RNG seed (None: numpy's global RNG).

    Flips ``points``, ``gt_bboxes_3d``; with a flipped image also ``img``/``img_right``,
    ``gt_bboxes``, ``centers_2d``, ``alpha``, ``dontcare_bboxes``; updates ``cam2img``,
    ``cam2img_right``, ``lidar2cam``, ``lidar2img`` (see :func:`flip_calibration`). Records
    ``flip``, ``flip_direction``, ``pcd_horizontal_flip``, ``pcd_vertical_flip`` and appends
    ``'HF'`` / ``'VF'`` to ``transformation_3d_flow``. A decision already in ``results``
    (``pcd_horizontal_flip`` / ``pcd_vertical_flip``, e.g. from test-time augmentation) is kept.
    Flipping a stereo pair mirrors each image; the right camera then lies left of the left one.
    """

    def __init__(self, flip_ratio_bev_horizontal: float = 0.5,
                 flip_ratio_bev_vertical: float = 0.0, sync_2d: bool = True,
                 seed: int | None = None) -> None:
        super().__init__(seed)
        for name, ratio in (('flip_ratio_bev_horizontal', flip_ratio_bev_horizontal),
                            ('flip_ratio_bev_vertical', flip_ratio_bev_vertical)):
            if not 0.0 <= ratio <= 1.0:
                raise ConfigError(f'RandomFlip3D: {name} must lie in [0, 1], got {ratio}')
        self.flip_ratio_bev_horizontal = flip_ratio_bev_horizontal
        self.flip_ratio_bev_vertical = flip_ratio_bev_vertical
        self.sync_2d = sync_2d

    def __call__(self, results: dict) -> dict:
        with_image = 'img' in results
        horizontal = results.get('pcd_horizontal_flip')
        if horizontal is None:
            horizontal = bool(self.rng.random() < self.flip_ratio_bev_horizontal)
        vertical = results.get('pcd_vertical_flip')
        if vertical is None:
            vertical = bool(self.rng.random() < self.flip_ratio_bev_vertical)
        flip_image = bool(with_image and self.sync_2d and horizontal)
        if with_image and self.sync_2d:
            vertical = False
        results['pcd_horizontal_flip'] = bool(horizontal)
        results['pcd_vertical_flip'] = bool(vertical)
        results['flip'] = flip_image
        results['flip_direction'] = 'horizontal' if flip_image else None
        for direction, enabled in (('horizontal', horizontal), ('vertical', vertical)):
            if not enabled:
                continue
            for key in ('points', 'gt_bboxes_3d'):
                if key in results:
                    results[key] = results[key].flip(direction)
            width = None
            if direction == 'horizontal' and flip_image:
                width = float(results['img_shape'][1])
                flip_image_annotations(results, width)
            flip_calibration(results, direction, width)
            _flow(results).append('HF' if direction == 'horizontal' else 'VF')
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(flip_ratio_bev_horizontal='
                f'{self.flip_ratio_bev_horizontal}, flip_ratio_bev_vertical='
                f'{self.flip_ratio_bev_vertical}, sync_2d={self.sync_2d}, seed={self.seed})')


# --------------------------------------------------------------------------------- filters
def _check_range(point_cloud_range: Sequence[float], name: str) -> np.ndarray:
    values = np.asarray(point_cloud_range, dtype=np.float64)
    if values.shape != (6,) or not (values[:3] < values[3:]).all():
        raise ConfigError(f'{name}: point_cloud_range must be [x_min, y_min, z_min, x_max, y_max, '
                          f'z_max] with min < max, got {list(point_cloud_range)}')
    return values


@TRANSFORMS.register_module()
class PointsRangeFilter:
    """Keep points inside ``point_cloud_range`` ``[x0, y0, z0, x1, y1, z1]`` (min inclusive, max
    exclusive, the voxeliser's rule), with their per-point masks."""

    def __init__(self, point_cloud_range: Sequence[float]) -> None:
        self.point_cloud_range = _check_range(point_cloud_range, type(self).__name__)

    def __call__(self, results: dict) -> dict:
        select_points(results, results['points'].in_range_3d(self.point_cloud_range.tolist()))
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(point_cloud_range={self.point_cloud_range.tolist()})'


@TRANSFORMS.register_module()
class ObjectRangeFilter:
    """Keep objects whose bird's-eye-view centre lies strictly inside the range, then wrap every yaw
    to [-pi, pi).

    ``point_cloud_range`` is ``[x0, y0, z0, x1, y1, z1]`` in the boxes' frame: LiDAR boxes test
    (x, y), camera boxes (x, z).
    """

    def __init__(self, point_cloud_range: Sequence[float]) -> None:
        self.point_cloud_range = _check_range(point_cloud_range, type(self).__name__)

    def __call__(self, results: dict) -> dict:
        boxes: Boxes3D = results['gt_bboxes_3d']
        a, b = boxes.frame.plane
        r = self.point_cloud_range
        select_instances(results, boxes.in_range_bev([r[a], r[b], r[a + 3], r[b + 3]]))
        results['gt_bboxes_3d'] = results['gt_bboxes_3d'].limit_yaw(offset=0.5,
                                                                    period=2 * math.pi)
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(point_cloud_range={self.point_cloud_range.tolist()})'


@TRANSFORMS.register_module()
class ObjectNameFilter:
    """Keep objects whose label is one of ``classes`` (labels ``0 .. len(classes) - 1``); drops
    objects labelled -1 or beyond."""

    def __init__(self, classes: Sequence[str]) -> None:
        self.classes = tuple(classes)

    def __call__(self, results: dict) -> dict:
        labels = np.asarray(results['gt_labels_3d'])
        select_instances(results, (labels >= 0) & (labels < len(self.classes)))
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(classes={self.classes})'


@TRANSFORMS.register_module()
class PointShuffle(_Random):
    """Randomly permute the points (and per-point masks); records nothing (order carries none)."""

    def __init__(self, seed: int | None = None) -> None:
        super().__init__(seed)

    def __call__(self, results: dict) -> dict:
        order = self.rng.permutation(len(results['points']))
        select_points(results, torch.from_numpy(np.asarray(order, dtype=np.int64)))
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(seed={self.seed})'
