"""nuScenes detection evaluation (``detection_cvpr_2019``) in NumPy, exact to nuscenes-devkit 1.2.0.

The devkit's evaluation is reproduced step by step so that every number agrees with it to floating
point rounding (a test compares both on random boxes when the devkit is installed):

1. Filtering (``filter_boxes``): a box is kept when its BEV distance to the ego vehicle is below its
   class range, when it does not have zero LiDAR + radar points (GT; predictions carry -1), and, for
   bicycles and motorcycles, when its centre is not inside a bike rack (racks are optional input).
2. Matching (``accumulate``), per class and centre-distance threshold: predictions in descending
   score order (ties: the later box first, as the devkit's ``sorted(...)[::-1]``) each take the
   nearest untaken GT of their sample when that is closer than the threshold.
3. Precision on 101 recall points; ``calc_ap`` with min recall / precision 0.1; ``calc_tp`` for ATE,
   ASE (1 - IoU of aligned sizes), AOE (period pi for barriers), AVE and AAE, NaN where the devkit
   leaves them undefined (traffic cone: AOE, AVE, AAE; barrier: AVE, AAE).
4. mAP over classes and thresholds, mean TP errors (NaN-mean over classes) and
   ``NDS = (5 mAP + sum(1 - min(1, err))) / 10``.

Box input
---------
Boxes are given in the devkit's GLOBAL frame, per sample, as a dict of arrays (``NusBoxes``)::

    translation      (N, 3)  box centre (gravity centre), metres, global frame
    size             (N, 3)  w, l, h (the devkit's order)
    rotation         (N, 4)  quaternion w, x, y, z (global frame)
    velocity         (N, 2)  vx, vy in m/s, global frame (NaN allowed, as in the devkit's GT)
    detection_name   (N,)    one of DETECTION_NAMES
    detection_score  (N,)    predictions only (GT: omitted, -1)
    attribute_name   (N,)    one of ATTRIBUTE_NAMES or '' (optional, default '')
    ego_translation  (N, 3)  box centre minus the ego position (``ego2global[:3, 3]``), both global:
                             exactly the devkit's ``add_center_dist``; only its x, y are used
    num_pts          (N,)    LiDAR + radar points in the box (GT; optional, default -1)

``evaluate_detection(gt, pred)`` takes two ``{sample_token: NusBoxes}`` mappings with the same
tokens. Internally they become one :class:`BoxTable` each (all samples concatenated, with a sample
index), in the order of the mapping and of the boxes inside each sample: the order of the devkit's
``EvalBoxes.all``, which decides ties between equal scores.

``lidar_boxes_to_global`` converts the toolkit's LiDAR boxes ``[x, y, z, l, w, h, yaw, vx, vy]``
(bottom centre, docs/conventions.md) with ``lidar2ego`` / ``ego2global`` into ``NusBoxes`` fields,
as mmdetection3d's ``output_to_nusc_box`` + ``lidar_nusc_box_to_global`` do;
``global_boxes_to_lidar`` is its inverse (as mmdetection3d's info converter). ``NuScenesMetric``
wraps both for mmengine and ``export_submission`` writes the official results JSON.
"""
from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from mmengine.evaluator import BaseMetric

from ..engine.errors import DataError
from ..engine.fileio import atomic_write_bytes
from ..registry import METRICS
from ..structures import quaternion_to_matrix
from .sample_fields import sample_field

DETECTION_NAMES = ('car', 'truck', 'bus', 'trailer', 'construction_vehicle', 'pedestrian',
                   'motorcycle', 'bicycle', 'traffic_cone', 'barrier')
ATTRIBUTE_NAMES = ('pedestrian.moving', 'pedestrian.sitting_lying_down', 'pedestrian.standing',
                   'cycle.with_rider', 'cycle.without_rider', 'vehicle.moving', 'vehicle.parked',
                   'vehicle.stopped')
TP_METRICS = ('trans_err', 'scale_err', 'orient_err', 'vel_err', 'attr_err')
TP_METRIC_KEYS = {'trans_err': 'mATE', 'scale_err': 'mASE', 'orient_err': 'mAOE',
                  'vel_err': 'mAVE', 'attr_err': 'mAAE'}
# TP errors the devkit does not define for a class (set to NaN, skipped in the class mean).
UNDEFINED_TP = {'traffic_cone': ('attr_err', 'vel_err', 'orient_err'),
                'barrier': ('attr_err', 'vel_err')}
# Class order of mmdetection3d's nuScenes dataset (the labels its models predict).
MMDET3D_CLASSES = ('car', 'truck', 'trailer', 'bus', 'construction_vehicle', 'bicycle',
                   'motorcycle', 'pedestrian', 'traffic_cone', 'barrier')
# mmdetection3d's attribute index order (``attr_label`` in its info files); 8 = no attribute.
MMDET3D_ATTRIBUTES = ('cycle.with_rider', 'cycle.without_rider', 'pedestrian.moving',
                      'pedestrian.standing', 'pedestrian.sitting_lying_down', 'vehicle.moving',
                      'vehicle.parked', 'vehicle.stopped')
# Attribute written for a prediction that has none, as mmdetection3d's submissions do.
DEFAULT_ATTRIBUTE = {'car': 'vehicle.parked', 'pedestrian': 'pedestrian.moving',
                     'trailer': 'vehicle.parked', 'truck': 'vehicle.parked',
                     'bus': 'vehicle.moving', 'motorcycle': 'cycle.without_rider',
                     'construction_vehicle': 'vehicle.parked', 'bicycle': 'cycle.without_rider',
                     'barrier': '', 'traffic_cone': ''}
NUM_RECALL_POINTS = 101
_NAME_INDEX = {name: i for i, name in enumerate(DETECTION_NAMES)}
_ATTR_INDEX = {name: i for i, name in enumerate(ATTRIBUTE_NAMES)}
_ATTR_INDEX[''] = -1


@dataclass(frozen=True)
class DetectionConfig:
    """The devkit's ``DetectionConfig``; the defaults are ``detection_cvpr_2019``."""
    class_range: Mapping[str, float] = field(default_factory=lambda: {
        'car': 50, 'truck': 50, 'bus': 50, 'trailer': 50, 'construction_vehicle': 50,
        'pedestrian': 40, 'motorcycle': 40, 'bicycle': 40, 'traffic_cone': 30, 'barrier': 30})
    dist_ths: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
    dist_th_tp: float = 2.0
    min_recall: float = 0.1
    min_precision: float = 0.1
    max_boxes_per_sample: int = 500
    mean_ap_weight: float = 5

    def __post_init__(self) -> None:
        if set(self.class_range) != set(DETECTION_NAMES):
            raise ValueError(f'class_range must name exactly {DETECTION_NAMES}, '
                             f'got {sorted(self.class_range)}')
        if self.dist_th_tp not in self.dist_ths:
            raise ValueError(f'dist_th_tp {self.dist_th_tp} must be one of '
                             f'dist_ths {self.dist_ths}')

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.class_range)


CVPR_2019 = DetectionConfig()


# ---------------------------------------------------------------------------------------------
# Box table
# ---------------------------------------------------------------------------------------------
@dataclass
class BoxTable:
    """All boxes of a set of samples as flat arrays (row ``i`` belongs to sample ``sample[i]``).

    Shapes: ``sample (N,) int64``, ``translation (N, 3)``, ``size (N, 3)`` (w, l, h),
    ``rotation (N, 4)`` (w, x, y, z), ``velocity (N, 2)``, ``label (N,) int64`` (index into
    ``DETECTION_NAMES``), ``score (N,)`` (-1 for GT), ``attribute (N,) int64`` (index into
    ``ATTRIBUTE_NAMES``, -1 = none), ``ego_translation (N, 3)``, ``num_pts (N,) int64``
    (-1 = unknown). Floats are float64.
    """
    sample: np.ndarray
    translation: np.ndarray
    size: np.ndarray
    rotation: np.ndarray
    velocity: np.ndarray
    label: np.ndarray
    score: np.ndarray
    attribute: np.ndarray
    ego_translation: np.ndarray
    num_pts: np.ndarray

    def __len__(self) -> int:
        return len(self.sample)

    def take(self, index: np.ndarray) -> BoxTable:
        """Rows ``index`` (a bool mask, integer indices or a slice)."""
        return BoxTable(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    @classmethod
    def from_samples(cls, samples: Mapping[str, Mapping[str, Any]], tokens: Sequence[str],
                     what: str = 'boxes') -> BoxTable:
        """Concatenate per-sample ``NusBoxes`` dicts; ``tokens`` fixes the sample index.

        ``samples`` may miss tokens (no boxes there) but must not hold unknown ones.
        """
        index = {token: i for i, token in enumerate(tokens)}
        unknown = [t for t in samples if t not in index]
        if unknown:
            raise DataError(f'{what}: sample token {unknown[0]!r} is not among the GT samples '
                            f'({len(unknown)} unknown tokens)')
        parts = [_sample_arrays(boxes, f'{what}[{token!r}]', index[token])
                 for token, boxes in samples.items()]
        if not parts:
            return empty_table()
        return BoxTable(**{f.name: np.concatenate([p[f.name] for p in parts])
                           for f in fields(cls)})


def empty_table() -> BoxTable:
    """A table with no rows."""
    return BoxTable(sample=np.zeros(0, np.int64), translation=np.zeros((0, 3)),
                    size=np.zeros((0, 3)), rotation=np.zeros((0, 4)), velocity=np.zeros((0, 2)),
                    label=np.zeros(0, np.int64), score=np.zeros(0), attribute=np.zeros(0, np.int64),
                    ego_translation=np.zeros((0, 3)), num_pts=np.zeros(0, np.int64))


def _sample_arrays(boxes: Mapping[str, Any], where: str, sample: int) -> dict[str, np.ndarray]:
    """Validate one sample's ``NusBoxes`` dict and turn it into ``BoxTable`` columns."""
    for key in ('translation', 'size', 'rotation', 'velocity', 'detection_name', 'ego_translation'):
        if key not in boxes:
            raise DataError(f'{where}: missing field {key!r}')
    names = np.asarray(boxes['detection_name']).reshape(-1)
    n = len(names)

    def column(key: str, width: int | None, default: float | None = None,
               allow_nan: bool = False) -> np.ndarray:
        value = boxes.get(key)
        if value is None:
            value = np.full(n if width is None else (n, width), default, dtype=np.float64)
        value = np.asarray(value, dtype=np.float64)
        shape = (n,) if width is None else (n, width)
        if value.shape != shape and not (n == 0 and value.size == 0):
            raise DataError(f'{where}: field {key!r} has shape {value.shape}, expected {shape}')
        value = value.reshape(shape)
        if not allow_nan and np.isnan(value).any():
            row = int(np.nonzero(np.isnan(value).reshape(n, -1).any(1))[0][0])
            raise DataError(f'{where}: field {key!r} is NaN in box {row}')
        return value

    try:
        label = np.array([_NAME_INDEX[x] for x in names.tolist()], dtype=np.int64).reshape(n)
    except KeyError as exc:
        raise DataError(f'{where}: unknown detection_name {exc.args[0]!r}; expected one of '
                        f'{DETECTION_NAMES}') from None
    attrs = boxes.get('attribute_name')
    if attrs is None:
        attribute = np.full(n, -1, dtype=np.int64)
    else:
        attrs = np.asarray(attrs).reshape(-1)
        if len(attrs) != n:
            raise DataError(f'{where}: attribute_name has {len(attrs)} entries for {n} boxes')
        try:
            attribute = np.array([_ATTR_INDEX[x] for x in attrs.tolist()],
                                 dtype=np.int64).reshape(n)
        except KeyError as exc:
            raise DataError(f'{where}: unknown attribute_name {exc.args[0]!r}; expected one of '
                            f'{ATTRIBUTE_NAMES} or ""') from None
    size = column('size', 3)
    if (size <= 0).any():
        row = int(np.nonzero((size <= 0).any(1))[0][0])
        raise DataError(f'{where}: size must be > 0, box {row} has {size[row].tolist()}')
    num_pts = column('num_pts', None, -1)
    return dict(
        sample=np.full(n, sample, dtype=np.int64), translation=column('translation', 3),
        size=size, rotation=column('rotation', 4),
        velocity=column('velocity', 2, allow_nan=True),
        label=label, score=column('detection_score', None, -1.0), attribute=attribute,
        ego_translation=column('ego_translation', 3), num_pts=num_pts.astype(np.int64))


# ---------------------------------------------------------------------------------------------
# Quaternions (w, x, y, z), vectorised
# ---------------------------------------------------------------------------------------------
def matrix_to_quaternion(matrix: np.ndarray) -> np.ndarray:
    """Unit quaternion ``(4,)`` (w >= 0) of a 3x3 rotation matrix.

    Uses the largest of the four ``4 q_i^2`` diagonal combinations for numerical stability
    (the same case split as pyquaternion, which mmdetection3d uses).
    """
    m = np.asarray(matrix, dtype=np.float64)[:3, :3]
    trace = np.trace(m)
    candidates = [1 + trace, 1 + m[0, 0] - m[1, 1] - m[2, 2],
                  1 - m[0, 0] + m[1, 1] - m[2, 2], 1 - m[0, 0] - m[1, 1] + m[2, 2]]
    k = int(np.argmax(candidates))
    t = candidates[k]
    if k == 0:
        q = [t, m[2, 1] - m[1, 2], m[0, 2] - m[2, 0], m[1, 0] - m[0, 1]]
    elif k == 1:
        q = [m[2, 1] - m[1, 2], t, m[0, 1] + m[1, 0], m[0, 2] + m[2, 0]]
    elif k == 2:
        q = [m[0, 2] - m[2, 0], m[0, 1] + m[1, 0], t, m[1, 2] + m[2, 1]]
    else:
        q = [m[1, 0] - m[0, 1], m[0, 2] + m[2, 0], m[1, 2] + m[2, 1], t]
    q = np.array(q) * (0.5 / math.sqrt(t))
    # Poses stored as float32 are orthonormal to ~1e-8 only; return a unit quaternion.
    q /= np.linalg.norm(q)
    return q if q[0] >= 0 else -q


def quaternion_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton products ``a * b`` of quaternions ``(..., 4)`` (broadcast)."""
    aw, ax, ay, az = np.moveaxis(np.asarray(a, dtype=np.float64), -1, 0)
    bw, bx, by, bz = np.moveaxis(np.asarray(b, dtype=np.float64), -1, 0)
    return np.stack([aw * bw - ax * bx - ay * by - az * bz,
                     aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw], axis=-1)


def quaternion_yaw(q: np.ndarray) -> np.ndarray:
    """Yaw ``(...)`` of quaternions ``(..., 4)``: the angle of the rotated +x axis in the x-y plane.

    As the devkit's ``quaternion_yaw``; the terms are homogeneous in ``q``, so no normalisation.
    """
    w, x, y, z = np.moveaxis(np.asarray(q, dtype=np.float64), -1, 0)
    return np.arctan2(2 * (x * y + w * z), w * w + x * x - y * y - z * z)


def _yaw_quaternion(yaw: np.ndarray) -> np.ndarray:
    half = np.asarray(yaw, dtype=np.float64) / 2
    zero = np.zeros_like(half)
    return np.stack([np.cos(half), zero, zero, np.sin(half)], axis=-1)


def _pose(matrix: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(unit quaternion (4,), translation (3,)) of a 4x4 rigid transform."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (4, 4):
        raise DataError(f'{name} must be a 4x4 matrix, got shape {m.shape}')
    return matrix_to_quaternion(m[:3, :3]), m[:3, 3]


# ---------------------------------------------------------------------------------------------
# Frame conversion (toolkit LiDAR boxes <-> devkit global boxes)
# ---------------------------------------------------------------------------------------------
def lidar_boxes_to_global(boxes: np.ndarray, lidar2ego: Any, ego2global: Any,
                          origin: str = 'bottom') -> dict[str, np.ndarray]:
    """LiDAR-frame boxes to the devkit's global boxes.

    Args:
        boxes: ``(N, 7)`` or ``(N, 9)`` ``[x, y, z, l, w, h, yaw(, vx, vy)]`` in the LiDAR frame;
            velocities are zero when absent.
        lidar2ego, ego2global: 4x4 rigid transforms.
        origin: ``'bottom'`` if (x, y, z) is the bottom centre (the toolkit's convention),
            ``'gravity'`` if it is already the gravity centre (nuScenes info files).

    Returns:
        ``translation (N, 3)`` gravity centre, ``size (N, 3)`` w, l, h, ``rotation (N, 4)``
        w, x, y, z (w >= 0), ``velocity (N, 2)``, ``ego_translation (N, 3)`` (global centre minus
        the ego position, as the devkit's ``add_center_dist``) and ``ego_centre (N, 3)`` (the
        centre in the ego frame, which mmdetection3d's range pre-filter uses).

    As mmdetection3d: each pose's rotation is turned into a quaternion and the box is rotated by
    the quaternion's matrix (so slightly non-orthonormal float32 poses are handled as it does); the
    velocity ``(vx, vy, 0)`` is rotated with the box and its global x, y are kept.
    """
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] not in (7, 9):
        raise DataError(f'LiDAR boxes must have shape (N, 7) or (N, 9), got {boxes.shape}')
    if origin not in ('bottom', 'gravity'):
        raise ValueError(f"origin must be 'bottom' or 'gravity', got {origin!r}")
    q_l2e, t_l2e = _pose(lidar2ego, 'lidar2ego')
    q_e2g, t_e2g = _pose(ego2global, 'ego2global')
    r_l2e, r_e2g = quaternion_to_matrix(q_l2e), quaternion_to_matrix(q_e2g)
    centre = boxes[:, :3].copy()
    if origin == 'bottom':
        centre[:, 2] += boxes[:, 5] / 2
    ego_centre = centre @ r_l2e.T + t_l2e
    translation = ego_centre @ r_e2g.T + t_e2g
    rotation = quaternion_multiply(quaternion_multiply(q_e2g, q_l2e), _yaw_quaternion(boxes[:, 6]))
    rotation *= np.where(rotation[:, :1] < 0, -1.0, 1.0)
    velocity = np.zeros((len(boxes), 3))
    if boxes.shape[1] == 9:
        velocity[:, :2] = boxes[:, 7:9]
    velocity = velocity @ r_l2e.T @ r_e2g.T
    return dict(translation=translation, size=boxes[:, [4, 3, 5]], rotation=rotation,
                velocity=velocity[:, :2], ego_translation=translation - t_e2g,
                ego_centre=ego_centre)


def global_boxes_to_lidar(translation: np.ndarray, size: np.ndarray, rotation: np.ndarray,
                          velocity: np.ndarray | None, lidar2ego: Any, ego2global: Any,
                          origin: str = 'bottom') -> np.ndarray:
    """Devkit global boxes back to LiDAR boxes ``(N, 9)`` ``[x, y, z, l, w, h, yaw, vx, vy]``.

    The inverse of :func:`lidar_boxes_to_global`, as mmdetection3d's nuScenes converter does it:
    yaw is the heading of the box's +x axis in the LiDAR x-y plane; the velocity ``(vx, vy, 0)``
    (global) is rotated into the LiDAR frame and its x, y are kept. ``origin='bottom'`` returns
    the bottom centre (toolkit convention), ``'gravity'`` the gravity centre.
    """
    translation = np.asarray(translation, dtype=np.float64).reshape(-1, 3)
    size = np.asarray(size, dtype=np.float64).reshape(-1, 3)
    rotation = np.asarray(rotation, dtype=np.float64).reshape(-1, 4)
    q_l2e, t_l2e = _pose(lidar2ego, 'lidar2ego')
    q_e2g, t_e2g = _pose(ego2global, 'ego2global')
    r_l2e, r_e2g = quaternion_to_matrix(q_l2e), quaternion_to_matrix(q_e2g)
    # Row vectors: v @ R applies R^T, the inverse rotation.
    centre = ((translation - t_e2g) @ r_e2g - t_l2e) @ r_l2e
    inverse = quaternion_multiply(q_l2e * [1, -1, -1, -1], q_e2g * [1, -1, -1, -1])
    yaw = quaternion_yaw(quaternion_multiply(inverse, rotation))
    if origin == 'bottom':
        centre[:, 2] -= size[:, 2] / 2
    elif origin != 'gravity':
        raise ValueError(f"origin must be 'bottom' or 'gravity', got {origin!r}")
    vel = np.zeros((len(translation), 3))
    if velocity is not None:
        vel[:, :2] = np.asarray(velocity, dtype=np.float64).reshape(-1, 2)
    vel = vel @ r_e2g @ r_l2e
    return np.concatenate([centre, size[:, [1, 0, 2]], yaw[:, None], vel[:, :2]], axis=1)


def default_attributes(names: Sequence[str], velocity: np.ndarray) -> list[str]:
    """The attribute mmdetection3d writes for each prediction (it predicts none).

    Faster than 0.2 m/s (global x, y speed): vehicles ``vehicle.moving``, bicycles / motorcycles
    ``cycle.with_rider``; otherwise pedestrians ``pedestrian.standing``, buses
    ``vehicle.stopped``; everything else the class default (``DEFAULT_ATTRIBUTE``).
    """
    label = np.array([_NAME_INDEX[name] for name in names], dtype=np.int64)
    return _ATTRIBUTE_STRINGS[_default_attribute_index(label, velocity)].tolist()


def _attribute_table(moving: bool) -> np.ndarray:
    """Attribute index (into ATTRIBUTE_NAMES, -1 = none) per detection class, moving or not."""
    special = ({'car': 'vehicle.moving', 'construction_vehicle': 'vehicle.moving',
                'bus': 'vehicle.moving', 'truck': 'vehicle.moving', 'trailer': 'vehicle.moving',
                'bicycle': 'cycle.with_rider', 'motorcycle': 'cycle.with_rider'} if moving
               else {'pedestrian': 'pedestrian.standing', 'bus': 'vehicle.stopped'})
    return np.array([_ATTR_INDEX[special.get(name, DEFAULT_ATTRIBUTE[name])]
                     for name in DETECTION_NAMES], dtype=np.int64)


_MOVING_ATTRIBUTE, _STILL_ATTRIBUTE = _attribute_table(True), _attribute_table(False)
# Attribute strings indexed like ATTRIBUTE_NAMES, with index -1 giving ''.
_ATTRIBUTE_STRINGS = np.array(ATTRIBUTE_NAMES + ('',), dtype=object)


def _default_attribute_index(label: np.ndarray, velocity: np.ndarray) -> np.ndarray:
    """``default_attributes`` as indices into ATTRIBUTE_NAMES (-1 = none); ``label`` (N,)
    indexes DETECTION_NAMES, ``velocity`` (N, 2) global."""
    velocity = np.asarray(velocity, dtype=np.float64).reshape(-1, 2)
    moving = np.hypot(velocity[:, 0], velocity[:, 1]) > 0.2
    return np.where(moving, _MOVING_ATTRIBUTE[label], _STILL_ATTRIBUTE[label])


# ---------------------------------------------------------------------------------------------
# Filtering
# ---------------------------------------------------------------------------------------------
def _points_in_boxes(points: np.ndarray, translation: np.ndarray, size: np.ndarray,
                     rotation: np.ndarray) -> np.ndarray:
    """Point ``i`` inside box ``i`` (pairwise, ``(M,)`` bool), boundaries included.

    The devkit's ``points_in_box``: project onto the box edges from corner 0.
    """
    rot = quaternion_to_matrix(rotation)                       # (M, 3, 3)
    # Corners 0, 4, 1, 3 of the devkit's Box.corners(): (length, width, height) / 2 times these
    # signs on the box's x, y, z axes.
    signs = np.array([[1, 1, 1], [-1, 1, 1], [1, -1, 1], [1, 1, -1]], dtype=np.float64)
    local = signs[None] * size[:, None, [1, 0, 2]] / 2             # (M, 4, 3)
    corners = np.einsum('mij,mkj->mki', rot, local) + translation[:, None, :]
    p1 = corners[:, 0]
    inside = np.ones(len(points), dtype=bool)
    for k in (1, 2, 3):
        axis = corners[:, k] - p1
        proj = np.einsum('mi,mi->m', axis, points - p1)
        inside &= (proj >= 0) & (proj <= np.einsum('mi,mi->m', axis, axis))
    return inside


def filter_boxes(table: BoxTable, config: DetectionConfig = CVPR_2019,
                 bike_racks: BoxTable | None = None) -> BoxTable:
    """The devkit's ``filter_eval_boxes``: the rows of ``table`` that ``filter_mask`` keeps."""
    return table.take(filter_mask(table, config, bike_racks))


def filter_mask(table: BoxTable, config: DetectionConfig = CVPR_2019,
                bike_racks: BoxTable | None = None) -> np.ndarray:
    """Rows ``(N,) bool`` the devkit's ``filter_eval_boxes`` keeps: class range, zero-point GT,
    bikes in bike racks.

    Args:
        table: GT or predicted boxes.
        bike_racks: optional rack boxes (only ``sample``, ``translation``, ``size``,
            ``rotation`` are used), e.g. from the nuScenes ``static_object.bicycle_rack``
            annotations of each sample. Without racks, no box is removed for being in one.
    """
    ranges = np.array([config.class_range[name] for name in DETECTION_NAMES], dtype=np.float64)
    ego_dist = np.sqrt(np.sum(table.ego_translation[:, :2] ** 2, axis=1))
    keep = (ego_dist < ranges[table.label]) & (table.num_pts != 0)
    if bike_racks is not None and len(bike_racks):
        cycles = np.nonzero(keep & np.isin(table.label, [_NAME_INDEX['bicycle'],
                                                          _NAME_INDEX['motorcycle']]))[0]
        # All (cycle, rack) pairs of the same sample.
        order = np.argsort(bike_racks.sample, kind='stable')
        rack_samples = bike_racks.sample[order]
        start = np.searchsorted(rack_samples, table.sample[cycles], side='left')
        count = np.searchsorted(rack_samples, table.sample[cycles], side='right') - start
        pair_box = np.repeat(cycles, count)
        offsets = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
        pair_rack = order[np.repeat(start, count) + offsets]
        inside = _points_in_boxes(table.translation[pair_box], bike_racks.translation[pair_rack],
                                  bike_racks.size[pair_rack], bike_racks.rotation[pair_rack])
        keep[pair_box[inside]] = False
    return keep


# ---------------------------------------------------------------------------------------------
# Accumulation, AP and TP errors
# ---------------------------------------------------------------------------------------------
@dataclass
class MetricData:
    """The devkit's ``DetectionMetricData``: 101-point curves of one class and threshold."""
    recall: np.ndarray
    precision: np.ndarray
    confidence: np.ndarray
    trans_err: np.ndarray
    vel_err: np.ndarray
    scale_err: np.ndarray
    orient_err: np.ndarray
    attr_err: np.ndarray

    @classmethod
    def no_predictions(cls) -> MetricData:
        n = NUM_RECALL_POINTS
        return cls(recall=np.linspace(0, 1, n), precision=np.zeros(n), confidence=np.zeros(n),
                   trans_err=np.ones(n), vel_err=np.ones(n), scale_err=np.ones(n),
                   orient_err=np.ones(n), attr_err=np.ones(n))

    @property
    def max_recall_ind(self) -> int:
        """Index of the last recall point with a non-zero confidence (0 if none)."""
        nonzero = np.nonzero(self.confidence)[0]
        return int(nonzero[-1]) if len(nonzero) else 0


def _cummean(x: np.ndarray) -> np.ndarray:
    """Running mean ignoring NaNs; all NaN gives ones (the devkit's ``cummean``)."""
    valid = ~np.isnan(x)
    if not valid.any():
        return np.ones(len(x))
    sums = np.nancumsum(x)
    counts = np.cumsum(valid)
    return np.divide(sums, counts, out=np.zeros_like(sums), where=counts != 0)


def _greedy_match(gt_xy: np.ndarray, gt_sample: np.ndarray, pred_xy: np.ndarray,
                  pred_sample: np.ndarray, dist_ths: Sequence[float]
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Greedy matching of predictions (already in matching order) for several thresholds.

    Each prediction in turn takes the nearest untaken GT of its sample (first one on ties) if it is
    closer than the threshold. Samples are independent, so the k-th prediction of every sample is
    handled at once: one vectorised step per k (at most max predictions per sample).

    Args:
        gt_xy: ``(G, 2)``, gt_sample: ``(G,)``; pred_xy: ``(P, 2)``, pred_sample: ``(P,)``.

    Returns:
        ``match (T, P)`` GT row (into ``gt_xy``) or -1, ``dist (T, P)`` BEV distance of the match.
    """
    n_th, n_pred = len(dist_ths), len(pred_xy)
    match = np.full((n_th, n_pred), -1, dtype=np.int64)
    dist = np.full((n_th, n_pred), np.nan)
    if len(gt_xy) == 0 or n_pred == 0:
        return match, dist
    # Pad the GT per sample: row = sample (only samples with GT), column = GT order in the sample.
    samples, gt_row = np.unique(gt_sample, return_inverse=True)
    gt_order = np.argsort(gt_row, kind='stable')
    counts = np.bincount(gt_row, minlength=len(samples))
    starts = np.cumsum(counts) - counts
    gt_col = np.empty(len(gt_row), dtype=np.int64)
    gt_col[gt_order] = np.arange(len(gt_row)) - np.repeat(starts, counts)
    width = int(counts.max())
    pad_x = np.zeros((len(samples), width))
    pad_y = np.zeros((len(samples), width))
    pad_index = np.full((len(samples), width), -1, dtype=np.int64)
    pad_x[gt_row, gt_col] = gt_xy[:, 0]
    pad_y[gt_row, gt_col] = gt_xy[:, 1]
    pad_index[gt_row, gt_col] = np.arange(len(gt_row))
    taken = np.repeat((pad_index < 0)[None], n_th, axis=0)      # padding counts as taken

    # Predictions in samples without GT of the class are false positives; drop them here.
    pos = np.minimum(np.searchsorted(samples, pred_sample), len(samples) - 1)
    active = np.nonzero(samples[pos] == pred_sample)[0]
    if len(active) == 0:
        return match, dist
    rows = pos[active]
    # Rank of each prediction among its sample's predictions, keeping the matching order.
    by_row = np.argsort(rows, kind='stable')
    row_counts = np.bincount(rows, minlength=len(samples))
    rank = np.empty(len(active), dtype=np.int64)
    rank[by_row] = np.arange(len(active)) - np.repeat(np.cumsum(row_counts) - row_counts,
                                                      row_counts)
    step_order = np.argsort(rank, kind='stable')
    bounds = np.searchsorted(rank[step_order], np.arange(int(rank.max()) + 2))
    for k in range(len(bounds) - 1):
        sel = step_order[bounds[k]:bounds[k + 1]]
        pred_index, row = active[sel], rows[sel]
        dx = pred_xy[pred_index, 0, None] - pad_x[row]
        dy = pred_xy[pred_index, 1, None] - pad_y[row]
        d = np.sqrt(dx * dx + dy * dy)
        for t, th in enumerate(dist_ths):
            masked = np.where(taken[t, row], np.inf, d)
            col = np.argmin(masked, axis=1)
            best = masked[np.arange(len(sel)), col]
            hit = best < th
            taken[t, row[hit], col[hit]] = True
            match[t, pred_index[hit]] = pad_index[row[hit], col[hit]]
            dist[t, pred_index[hit]] = best[hit]
    return match, dist


def _angle_diff(x: np.ndarray, y: np.ndarray, period: float) -> np.ndarray:
    """Smallest signed angle from ``y`` to ``x`` (the devkit's ``angle_diff``)."""
    diff = np.mod(x - y + period / 2, period) - period / 2
    return np.where(diff > np.pi, diff - 2 * np.pi, diff)


def accumulate(gt: BoxTable, pred: BoxTable, class_name: str,
               dist_ths: Sequence[float]) -> list[MetricData]:
    """The devkit's ``accumulate`` for one class, for each threshold in ``dist_ths``.

    ``gt`` and ``pred`` are the filtered tables of all samples; rows are in the devkit's
    ``EvalBoxes.all`` order.
    """
    label = _NAME_INDEX[class_name]
    return _accumulate_class(gt.take(gt.label == label), pred.take(pred.label == label),
                             class_name, dist_ths)


def _accumulate_class(gt: BoxTable, pred: BoxTable, class_name: str,
                      dist_ths: Sequence[float]) -> list[MetricData]:
    """``accumulate`` on tables that hold only boxes of ``class_name``."""
    npos = len(gt)
    if npos == 0:
        return [MetricData.no_predictions() for _ in dist_ths]
    # Descending score; equal scores: the later box first, as the devkit's
    # sorted((score, index))[::-1] (a stable ascending sort, reversed).
    order = np.argsort(pred.score, kind='stable')[::-1]
    # Only the columns matching needs are gathered for all predictions; the rest for matches.
    score = pred.score[order]
    match, dist = _greedy_match(gt.translation[:, :2], gt.sample, pred.translation[order, :2],
                                pred.sample[order], dist_ths)
    period = np.pi if class_name == 'barrier' else 2 * np.pi
    out = []
    for t in range(len(dist_ths)):
        is_tp = match[t] >= 0
        if not is_tp.any():
            out.append(MetricData.no_predictions())
            continue
        tp = np.cumsum(is_tp).astype(float)
        fp = np.cumsum(~is_tp).astype(float)
        conf = score
        prec = tp / (fp + tp)
        rec = tp / float(npos)
        rec_interp = np.linspace(0, 1, NUM_RECALL_POINTS)
        prec = np.interp(rec_interp, rec, prec, right=0)
        conf = np.interp(rec_interp, rec, conf, right=0)

        m_gt = match[t][is_tp]
        m_pred = order[is_tp]                       # rows of ``pred``
        dv = pred.velocity[m_pred] - gt.velocity[m_gt]
        g_size, p_size = gt.size[m_gt], pred.size[m_pred]
        inter = np.prod(np.minimum(g_size, p_size), axis=1)
        iou = inter / (np.prod(g_size, axis=1) + np.prod(p_size, axis=1) - inter)
        g_attr = gt.attribute[m_gt]
        errors = {
            'trans_err': dist[t][is_tp],
            'vel_err': np.sqrt(np.sum(dv * dv, axis=1)),
            'scale_err': 1 - iou,
            'orient_err': np.abs(_angle_diff(quaternion_yaw(gt.rotation[m_gt]),
                                             quaternion_yaw(pred.rotation[m_pred]), period)),
            'attr_err': np.where(g_attr < 0, np.nan,
                                 1 - (g_attr == pred.attribute[m_pred]).astype(float)),
        }
        match_conf = score[is_tp]
        # Running means of the errors, resampled at the recall points' confidences
        # (np.interp needs increasing abscissae, hence the reversals).
        resampled = {key: np.interp(conf[::-1], match_conf[::-1], _cummean(err)[::-1])[::-1]
                     for key, err in errors.items()}
        out.append(MetricData(recall=rec_interp, precision=prec, confidence=conf, **resampled))
    return out


def calc_ap(md: MetricData, min_recall: float, min_precision: float) -> float:
    """AP over recall > ``min_recall`` of the precision above ``min_precision``, renormalised."""
    if not (0 <= min_precision < 1 and 0 <= min_recall <= 1):
        raise ValueError(f'need 0 <= min_precision < 1 and 0 <= min_recall <= 1, '
                         f'got {min_precision}, {min_recall}')
    prec = md.precision[round(100 * min_recall) + 1:] - min_precision
    prec = np.maximum(prec, 0)
    return float(np.mean(prec)) / (1.0 - min_precision)


def calc_tp(md: MetricData, min_recall: float, metric_name: str) -> float:
    """Mean of a TP error over recall points above ``min_recall`` up to the max recall reached."""
    first = round(100 * min_recall) + 1
    last = md.max_recall_ind
    if last < first:
        return 1.0
    return float(np.mean(getattr(md, metric_name)[first:last + 1]))


# ---------------------------------------------------------------------------------------------
# Full evaluation
# ---------------------------------------------------------------------------------------------
def evaluate_tables(gt: BoxTable, pred: BoxTable, config: DetectionConfig = CVPR_2019,
                    bike_racks: BoxTable | None = None, max_boxes_check: bool = True,
                    return_metric_data: bool = False) -> dict[str, Any]:
    """Evaluate unfiltered GT and prediction tables (same sample indices); see ``summarise``.

    Raises :class:`DataError` when a sample has more than ``config.max_boxes_per_sample``
    predictions (the devkit refuses such result files) unless ``max_boxes_check`` is False.
    """
    if max_boxes_check and len(pred):
        per_sample = np.bincount(pred.sample)
        if per_sample.max() > config.max_boxes_per_sample:
            worst = int(np.argmax(per_sample))
            raise DataError(f'sample {worst} has {int(per_sample[worst])} predictions; the '
                            f'nuScenes evaluation allows at most {config.max_boxes_per_sample} '
                            f'per sample')
    gt_groups = _split_by_label(gt, filter_mask(gt, config, bike_racks))
    pred_groups = _split_by_label(pred, filter_mask(pred, config, bike_racks))
    metric_data = {}
    for name in config.class_names:
        label = _NAME_INDEX[name]
        mds = _accumulate_class(gt_groups[label], pred_groups[label], name, config.dist_ths)
        for th, md in zip(config.dist_ths, mds):
            metric_data[(name, th)] = md
    summary = summarise(metric_data, config)
    if return_metric_data:
        summary['metric_data'] = metric_data
    return summary


def _split_by_label(table: BoxTable, keep: np.ndarray) -> list[BoxTable]:
    """The rows ``keep`` (bool mask) as one table per label of ``DETECTION_NAMES``.

    Row order is kept inside each label (the devkit's order); one gather for all labels.
    """
    rows = np.nonzero(keep)[0]
    table = table.take(rows[np.argsort(table.label[rows], kind='stable')])
    bounds = np.searchsorted(table.label, np.arange(len(DETECTION_NAMES) + 1))
    return [table.take(slice(bounds[i], bounds[i + 1])) for i in range(len(DETECTION_NAMES))]


def summarise(metric_data: Mapping[tuple[str, float], MetricData],
              config: DetectionConfig = CVPR_2019) -> dict[str, Any]:
    """The devkit's ``DetectionEval.evaluate`` step 2 and ``DetectionMetrics`` summary.

    Returns ``label_aps {class: {th: AP}}``, ``label_tp_errors {class: {err: value}}``,
    ``mean_dist_aps {class: AP}``, ``mean_ap``, ``tp_errors {err: mean}``, ``tp_scores`` and
    ``nd_score``: the fields of the devkit's ``metrics_summary.json``.
    """
    label_aps: dict[str, dict[float, float]] = {}
    label_tp: dict[str, dict[str, float]] = {}
    for name in config.class_names:
        label_aps[name] = {th: calc_ap(metric_data[(name, th)], config.min_recall,
                                       config.min_precision) for th in config.dist_ths}
        md = metric_data[(name, config.dist_th_tp)]
        label_tp[name] = {err: (math.nan if err in UNDEFINED_TP.get(name, ())
                                else calc_tp(md, config.min_recall, err)) for err in TP_METRICS}
    mean_dist_aps = {name: float(np.mean(list(aps.values()))) for name, aps in label_aps.items()}
    mean_ap = float(np.mean(list(mean_dist_aps.values())))
    tp_errors = {}
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', RuntimeWarning)   # an all-NaN column stays NaN
        for err in TP_METRICS:
            tp_errors[err] = float(np.nanmean([label_tp[name][err] for name in config.class_names]))
    # max(0.0, x) as the devkit (Python's max keeps 0.0 when x is NaN).
    tp_scores = {err: max(0.0, 1.0 - value) for err, value in tp_errors.items()}
    nd_score = float(config.mean_ap_weight * mean_ap + np.sum(list(tp_scores.values())))
    nd_score /= float(config.mean_ap_weight + len(tp_scores))
    return dict(label_aps=label_aps, label_tp_errors=label_tp, mean_dist_aps=mean_dist_aps,
                mean_ap=mean_ap, tp_errors=tp_errors, tp_scores=tp_scores, nd_score=nd_score)


def evaluate_detection(gt: Mapping[str, Mapping[str, Any]], pred: Mapping[str, Mapping[str, Any]],
                       config: DetectionConfig = CVPR_2019,
                       bike_racks: Mapping[str, Mapping[str, Any]] | None = None,
                       return_metric_data: bool = False) -> dict[str, Any]:
    """nuScenes detection metrics of ``{sample_token: NusBoxes}`` GT and predictions.

    Both mappings must hold the same sample tokens (as the devkit asserts). ``bike_racks``
    (optional) maps tokens to rack boxes (``translation``, ``size``, ``rotation``, and the other
    required ``NusBoxes`` fields are not needed). Returns the summary of :func:`summarise`
    (plus ``metric_data {(class, th): MetricData}`` when asked).
    """
    tokens = list(gt)
    if set(pred) != set(tokens):
        missing = [t for t in tokens if t not in pred][:3]
        extra = [t for t in pred if t not in gt][:3]
        raise DataError(f'predictions and GT must cover the same samples; missing predictions for '
                        f'{missing}, predictions for unknown samples {extra}')
    gt_table = BoxTable.from_samples(gt, tokens, 'gt')
    pred_table = BoxTable.from_samples(pred, tokens, 'pred')
    racks = None
    if bike_racks is not None:
        racks = _rack_table(bike_racks, tokens)
    return evaluate_tables(gt_table, pred_table, config, racks,
                           return_metric_data=return_metric_data)


def _rack_table(racks: Mapping[str, Mapping[str, Any]], tokens: Sequence[str]) -> BoxTable:
    filled = {}
    for token, boxes in racks.items():
        n = len(np.asarray(boxes['translation']).reshape(-1, 3))
        filled[token] = dict(boxes, detection_name=['car'] * n, velocity=np.zeros((n, 2)),
                             ego_translation=np.zeros((n, 3)))
    return BoxTable.from_samples(filled, tokens, 'bike_racks')


def metric_keys(summary: Mapping[str, Any]) -> dict[str, float]:
    """Flat keys as mmdetection3d names them: ``mAP``, ``NDS``, ``mATE``..``mAAE``,
    ``{class}_AP_dist_{th}``, ``{class}_{trans_err|scale_err|...}`` (NaN where undefined)."""
    out = {'mAP': summary['mean_ap'], 'NDS': summary['nd_score']}
    for err, key in TP_METRIC_KEYS.items():
        out[key] = summary['tp_errors'][err]
    for name, aps in summary['label_aps'].items():
        for th, ap in aps.items():
            out[f'{name}_AP_dist_{float(th)}'] = ap
        for err, value in summary['label_tp_errors'][name].items():
            out[f'{name}_{err}'] = value
    return out


# ---------------------------------------------------------------------------------------------
# Submission file
# ---------------------------------------------------------------------------------------------
def limit_boxes(boxes: Mapping[str, Any], max_boxes: int = 500,
                overflow: str = 'error', token: str = '?') -> dict[str, Any]:
    """Keep at most ``max_boxes`` boxes of one sample.

    ``overflow='error'`` raises :class:`DataError` (the devkit rejects such files);
    ``'topk'`` keeps the ``max_boxes`` highest scores (stable: earlier boxes win ties).
    """
    scores = np.asarray(boxes['detection_score'], dtype=np.float64).reshape(-1)
    if len(scores) <= max_boxes:
        return dict(boxes)
    if overflow == 'error':
        raise DataError(f'sample {token!r} has {len(scores)} predictions; nuScenes allows at most '
                        f'{max_boxes} per sample (pass overflow="topk" to keep the best)')
    if overflow != 'topk':
        raise ValueError(f"overflow must be 'error' or 'topk', got {overflow!r}")
    keep = np.sort(np.argsort(-scores, kind='stable')[:max_boxes])
    return {key: (np.asarray(value)[keep] if key in _PER_BOX_FIELDS else value)
            for key, value in boxes.items()}


_PER_BOX_FIELDS = ('translation', 'size', 'rotation', 'velocity', 'detection_name',
                   'detection_score', 'attribute_name', 'ego_translation', 'num_pts')


def submission_dict(results_per_sample: Mapping[str, Mapping[str, Any]], meta: Mapping[str, Any],
                    max_boxes: int = 500, overflow: str = 'error') -> dict[str, Any]:
    """The official results structure ``{'meta': ..., 'results': {token: [box, ...]}}``.

    ``results_per_sample`` maps sample tokens to ``NusBoxes`` dicts (``ego_translation`` and
    ``num_pts`` are not written; ``attribute_name`` defaults to :func:`default_attributes`).
    ``meta`` must give the five ``use_*`` flags (``use_camera``, ``use_lidar``, ``use_radar``,
    ``use_map``, ``use_external``); missing ones are written as False.
    """
    flags = ('use_camera', 'use_lidar', 'use_radar', 'use_map', 'use_external')
    unknown = set(meta) - set(flags)
    if unknown:
        raise DataError(f'submission meta: unknown keys {sorted(unknown)}; expected {flags}')
    results = {}
    for token, boxes in results_per_sample.items():
        where = f'results[{token!r}]'
        boxes = limit_boxes(boxes, max_boxes, overflow, token)
        if 'detection_score' not in boxes:
            raise DataError(f'{where}: missing field detection_score')
        if 'ego_translation' not in boxes:   # not written; only needed for validation
            boxes = dict(boxes, ego_translation=np.zeros((len(boxes['detection_score']), 3)))
        if boxes.get('attribute_name') is None:
            boxes = dict(boxes, attribute_name=default_attributes(
                [str(x) for x in np.asarray(boxes['detection_name']).reshape(-1)],
                np.asarray(boxes['velocity'], dtype=np.float64).reshape(-1, 2)))
        cols = _sample_arrays(boxes, where, 0)
        if not np.isfinite(cols['score']).all():
            raise DataError(f'{where}: detection_score must be finite')
        attrs = [ATTRIBUTE_NAMES[a] if a >= 0 else '' for a in cols['attribute'].tolist()]
        results[token] = [
            dict(sample_token=token, translation=t, size=s, rotation=r, velocity=v,
                 detection_name=DETECTION_NAMES[n], detection_score=c, attribute_name=a)
            for t, s, r, v, n, c, a in zip(
                cols['translation'].tolist(), cols['size'].tolist(), cols['rotation'].tolist(),
                cols['velocity'].tolist(), cols['label'].tolist(), cols['score'].tolist(), attrs)]
    return {'meta': {flag: bool(meta.get(flag, False)) for flag in flags}, 'results': results}


def export_submission(results_per_sample: Mapping[str, Mapping[str, Any]],
                      path: str | os.PathLike, meta: Mapping[str, Any], max_boxes: int = 500,
                      overflow: str = 'error') -> Path:
    """Write the official nuScenes detection submission JSON to ``path`` atomically.

    See :func:`submission_dict` for the input; more than ``max_boxes`` boxes in a sample raise a
    :class:`DataError` (``overflow='error'``) or keep the best ``max_boxes`` (``'topk'``).
    The file is written beside ``path`` and renamed into place, so an interrupted run never leaves
    a truncated file. Returns the path.
    """
    payload = json.dumps(submission_dict(results_per_sample, meta, max_boxes, overflow),
                         allow_nan=True).encode()
    return atomic_write_bytes(path, payload)


# ---------------------------------------------------------------------------------------------
# mmengine metric
# ---------------------------------------------------------------------------------------------
def _numpy(value: Any) -> np.ndarray:
    value = getattr(value, 'tensor', value)          # box structures keep their data in .tensor
    if hasattr(value, 'detach'):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


@METRICS.register_module()
class NuScenesMetric(BaseMetric):
    """nuScenes detection metrics (mAP, NDS, TP errors) of LiDAR-frame 3D detections.

    Each data sample (dict or data sample object) carries ``pred_instances_3d`` (``bboxes_3d``
    ``(N, 9)`` ``[x, y, z, l, w, h, yaw, vx, vy]`` in the LiDAR frame with the bottom centre,
    ``scores_3d``, ``labels_3d``; ``(N, 7)`` boxes mean zero velocity), ``gt_instances_3d`` (the
    same layout plus ``num_lidar_pts`` (GT with 0 points are not evaluated; missing = -1, kept),
    optional ``num_radar_pts`` (added, as the devkit counts LiDAR + radar points), optional
    ``attr_labels`` in mmdetection3d's attribute order, 8 or -1 = none), and in its metainfo
    ``lidar2ego``, ``ego2global`` (4x4) and ``token``. Labels index ``classes``
    (``dataset_meta['classes']`` when set); labels outside the ten detection classes (or < 0) are
    dropped. Bike-rack filtering needs rack annotations, which data samples do not carry: the
    metric does not apply it (use :func:`evaluate_detection` with ``bike_racks``).

    Predictions are converted like mmdetection3d's submission formatting: global frame, default
    attributes by speed, boxes beyond the class range in the ego frame dropped
    (``ego_range_filter``), and at most ``max_boxes_per_sample`` per sample (``overflow``:
    ``'topk'`` keeps the highest scores, ``'error'`` refuses). Without GT attributes, AAE is 1
    for every class (the devkit's rule for all-undefined attributes).

    Args:
        classes: class names of the labels (mmdetection3d's order by default).
        submission_file: also write the official submission JSON there.
        modality: the submission's ``meta`` flags.
    """
    default_prefix = 'nus'

    def __init__(self, classes: Sequence[str] = MMDET3D_CLASSES,
                 config: DetectionConfig | Mapping[str, Any] | None = None,
                 ego_range_filter: bool = True, overflow: str = 'topk',
                 submission_file: str | None = None,
                 modality: Mapping[str, bool] | None = None,
                 collect_device: str = 'cpu', prefix: str | None = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if config is None:
            config = CVPR_2019
        elif isinstance(config, Mapping):
            config = DetectionConfig(**config)
        self.config = config
        self.classes = tuple(classes)
        self.ego_range_filter = ego_range_filter
        if overflow not in ('topk', 'error'):
            raise ValueError(f"overflow must be 'topk' or 'error', got {overflow!r}")
        self.overflow = overflow
        self.submission_file = submission_file
        self.modality = dict(modality or {'use_lidar': True})

    def _class_names(self) -> tuple[str, ...]:
        meta = self.dataset_meta or {}
        return tuple(meta.get('classes', meta.get('CLASSES', self.classes)))

    def _convert(self, instances: Any, sample: Any, token: str, is_gt: bool) -> dict[str, Any]:
        classes = self._class_names()
        boxes = sample_field(instances, 'bboxes_3d')
        boxes = np.zeros((0, 9)) if boxes is None else _numpy(boxes).astype(np.float64)
        if boxes.ndim != 2 or boxes.shape[1] not in (7, 9):
            raise DataError(f'sample {token!r}: bboxes_3d must be (N, 9) [x, y, z, l, w, h, yaw, '
                            f'vx, vy] or (N, 7), got shape {boxes.shape}')
        labels = _numpy(sample_field(instances, 'labels_3d', np.zeros(0)))
        labels = labels.astype(np.int64).reshape(-1)
        if len(labels) != len(boxes):
            raise DataError(f'sample {token!r}: {len(boxes)} boxes but {len(labels)} labels')
        if len(labels) and (labels.max() >= len(classes)):
            raise DataError(f'sample {token!r}: label {int(labels.max())} but only '
                            f'{len(classes)} classes {classes}')
        # Detection class of each label (-1: not one of the ten classes, or a negative label).
        to_det = np.array([_NAME_INDEX.get(name, -1) for name in classes] + [-1], dtype=np.int64)
        det = to_det[np.where(labels < 0, -1, labels)]
        keep = det >= 0
        det = np.maximum(det, 0)            # placeholder class for dropped rows
        lidar2ego = sample_field(sample, 'lidar2ego')
        ego2global = sample_field(sample, 'ego2global')
        if lidar2ego is None or ego2global is None:
            raise DataError(f'sample {token!r}: metainfo needs lidar2ego and ego2global (4x4)')
        out = lidar_boxes_to_global(boxes, lidar2ego, ego2global)
        ranges = np.array([self.config.class_range[n] for n in DETECTION_NAMES])[det]
        if is_gt:
            n_pts = _numpy(sample_field(instances, 'num_lidar_pts', np.full(len(boxes), -1)))
            radar = sample_field(instances, 'num_radar_pts')
            out['num_pts'] = n_pts.astype(np.int64).reshape(-1) + (
                0 if radar is None else _numpy(radar).astype(np.int64).reshape(-1))
            attr = sample_field(instances, 'attr_labels')
            attr = (np.full(len(boxes), -1) if attr is None
                    else _numpy(attr).astype(np.int64).reshape(-1))
            out['attribute_name'] = np.array(
                [MMDET3D_ATTRIBUTES[a] if 0 <= a < len(MMDET3D_ATTRIBUTES) else '' for a in attr],
                dtype=object)
        else:
            scores = _numpy(sample_field(instances, 'scores_3d')).astype(np.float64).reshape(-1)
            if len(scores) != len(boxes):
                raise DataError(f'sample {token!r}: {len(boxes)} boxes but {len(scores)} scores')
            if np.isnan(scores).any():
                raise DataError(f'sample {token!r}: NaN prediction score')
            out['detection_score'] = scores
            out['attribute_name'] = _ATTRIBUTE_STRINGS[
                _default_attribute_index(det, out['velocity'])]
            if self.ego_range_filter:
                # mmdetection3d drops predictions beyond the class range in the ego frame.
                keep &= ~(np.linalg.norm(out['ego_centre'][:, :2], axis=1) > ranges)
        out.pop('ego_centre')
        out['detection_name'] = np.array(DETECTION_NAMES, dtype=object)[det]
        out = {key: np.asarray(value)[keep] for key, value in out.items()}
        if not is_gt:
            out = limit_boxes(out, self.config.max_boxes_per_sample, self.overflow, token)
        return out

    def process(self, data_batch: Any, data_samples: Sequence[Any]) -> None:
        for sample in data_samples:
            token = sample_field(sample, 'token') or sample_field(sample, 'sample_token')
            if token is None:
                raise DataError('NuScenesMetric: data sample metainfo has no token')
            pred = sample_field(sample, 'pred_instances_3d')
            gt = sample_field(sample, 'gt_instances_3d')
            if pred is None or gt is None:
                raise DataError(f'sample {token!r}: needs pred_instances_3d and gt_instances_3d')
            self.results.append(dict(token=str(token),
                                     pred=self._convert(pred, sample, token, False),
                                     gt=self._convert(gt, sample, token, True)))

    def compute_metrics(self, results: list[dict]) -> dict[str, float]:
        tokens = [r['token'] for r in results]
        if len(set(tokens)) != len(tokens):
            dup = next(t for t in tokens if tokens.count(t) > 1)
            raise DataError(f'NuScenesMetric: sample token {dup!r} evaluated twice')
        gt = {r['token']: r['gt'] for r in results}
        pred = {r['token']: r['pred'] for r in results}
        if self.submission_file:
            export_submission(pred, self.submission_file, self.modality,
                              self.config.max_boxes_per_sample, self.overflow)
        return metric_keys(evaluate_detection(gt, pred, self.config))
