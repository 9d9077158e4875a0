"""Synthetic LiDAR scenes in the KITTI layout, with exact labels.

A scene is what a spinning 64-beam sensor (KITTI's Velodyne HDL-64E, 1.73 m above a flat ground)
sees of a street: cars, pedestrians and cyclists as oriented boxes (cars and cyclists as unions of
two boxes: body and cabin, bike and rider) with KITTI's size statistics (the dimensions correlated:
bigger cars are longer, wider and taller), and clutter (walls, poles, bushes) that is never
labelled.

* Sensor: 64 beams at HDL-64E elevations (upper block +2 .. -8.33 deg, lower block -8.83 .. -24.9
  deg), one ray per beam and azimuth step over the full 360 deg (``azimuth_step`` 0.08 deg as the
  real sensor at 10 Hz; coarser is faster), up to ``MAX_RANGE`` m. Point density falls off with
  range from this geometry alone.
* Ray casting: every ray against the ground plane ``z = -SENSOR_HEIGHT`` and every box (slab
  method in each box's frame), vectorised over rays x boxes; the nearest hit wins (occlusion).
  Returns get Gaussian range noise along the ray (the direction, hence the beam elevation, is
  exact), an intensity from the surface's reflectance and the incidence angle, and random dropout.
* Objects are rendered 5 cm inside their label box on the sides and top (annotators' boxes enclose
  the points with some slack), so the noisy points of an object fall inside its label box.
* Labels (``label_2``, rectified camera frame, two decimals): the LiDAR box is converted with the
  calibration (:meth:`Boxes3D.convert_to`) and rounded, and the scene is rendered from the box the
  converter will read back, so labels and points agree exactly. ``truncated`` is the fraction of
  the box's volume outside the left colour camera's image (sampled on a 6 x 6 x 6 grid), the 2D box
  the projected 3D box clipped to the image, ``occluded`` 0 / 1 / 2 from the fraction of the rays
  that would hit the object alone but hit something nearer (< 5 %, < 50 %, more), and ``alpha =
  ry - atan2(x, z)``. Only objects in the camera's view are labelled (KITTI labels only the front
  camera), and only those with at least ``min_points`` returns and at most 90 % hidden.

:func:`write_synthetic_kitti_lidar` writes ``training/{velodyne,label_2,calib,image_2}`` and
``ImageSets/{train,val}.txt``; the images are plain grey (the converter reads only their size).
``tools/create_data.py kitti`` converts the result and :class:`KittiMetric` scores it. Every frame
is a pure function of ``(seed, index)``.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ...engine.errors import ConfigError
from ...engine.fileio import atomic_write_bytes
from ...structures import CameraBoxes3D, KittiCalibration, LiDARBoxes3D
from ..points_io import points_to_bytes
from .mono3d import (
    CLASS_SIZES,
    encode_png,
    kitti_calibration,
    write_image_sets,
    write_kitti_frame,
)

__all__ = ['BEAM_ELEVATIONS_DEG', 'CLUTTER', 'GROUND', 'MAX_RANGE', 'SENSOR_HEIGHT',
           'SIZE_CORRELATION',
           'beam_directions', 'cast_rays', 'render_lidar_scene', 'write_synthetic_kitti_lidar']

SENSOR_HEIGHT = 1.73
# Correlation between any two of an object's dimensions (KITTI's per-class means and standard
# deviations, CLASS_SIZES, stay the marginals).
SIZE_CORRELATION = 0.8
MAX_RANGE = 120.0
# HDL-64E: 32 upper lasers spaced ~1/3 deg, 32 lower ones ~1/2 deg (top to bottom).
BEAM_ELEVATIONS_DEG = np.concatenate([np.linspace(2.0, -8.33, 32), np.linspace(-8.83, -24.9, 32)])
IMAGE_SHAPE = (375, 1242)
# Point labels of returns that are not objects.
GROUND, CLUTTER = -1, -2
_LABEL_INSET = 0.05           # object surface inside its label box (sides and top), metres
_MIN_GAP = 0.3                # free space between objects' bounding circles, metres
_CLUTTER_GAP = 1.0            # free space between clutter and objects
_RAY_CHUNK = 1 << 14          # rays per ray-casting step: bounds the (rays, boxes) temporaries
_REFLECTANCE = {'Car': (0.05, 0.6), 'Pedestrian': (0.1, 0.4), 'Cyclist': (0.1, 0.5),
                'wall': (0.2, 0.5), 'pole': (0.4, 0.8), 'bush': (0.05, 0.25)}
_GROUND_REFLECTANCE = (0.1, 0.3)
_LANE_REFLECTANCE = 0.7


# ------------------------------------------------------------------------------------ sensor
def beam_directions(azimuth_step: float, phase: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Unit ray directions of one sweep, beam-major.

    Returns:
        ``(64 * A, 3)`` float64 directions (LiDAR frame) and ``(64 * A,)`` beam indices, with
        ``A = round(360 / azimuth_step)`` azimuths starting at ``phase`` (degrees).
    """
    if not 0 < azimuth_step <= 10:
        raise ConfigError(f'azimuth_step must be in (0, 10] degrees, got {azimuth_step}')
    count = int(round(360.0 / azimuth_step))
    azimuth = np.deg2rad(phase + np.arange(count) * 360.0 / count)
    elevation = np.deg2rad(BEAM_ELEVATIONS_DEG)[:, None]
    directions = np.stack([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth),
                           np.broadcast_to(np.sin(elevation), (len(elevation), count))], axis=-1)
    beams = np.repeat(np.arange(len(elevation)), count)
    return directions.reshape(-1, 3), beams


def cast_rays(directions: np.ndarray, boxes: np.ndarray, groups: np.ndarray | None = None,
              max_range: float = MAX_RANGE) -> dict[str, np.ndarray]:
    """Nearest hit of rays from the origin against the ground and boxes.

    Args:
        directions: ``(R, 3)`` unit ray directions (LiDAR frame, rays start at the origin).
        boxes: ``(P, 7)`` LiDAR boxes ``[x, y, z, l, w, h, yaw]`` (bottom centre); the origin must
            lie outside all of them.
        groups: ``(P,)`` non-negative int, the object each box belongs to (default: its own).
        max_range: hits farther than this are no return.

    Returns:
        ``t`` ``(R,)`` distance to the nearest hit (``inf``: no return), ``box`` ``(R,)`` index of
        the box hit (``-1``: the ground or nothing), ``cos`` ``(R,)`` |cosine| of the incidence
        angle, ``potential`` ``(G,)`` per group the number of rays that would hit it if it were
        alone on the ground (for occlusion levels).
    """
    directions = np.asarray(directions, dtype=np.float64).reshape(-1, 3)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 7)
    groups = np.arange(len(boxes)) if groups is None else np.asarray(groups, dtype=np.int64)
    if groups.shape != (len(boxes),):
        raise ValueError(f'groups must have shape ({len(boxes)},), got {groups.shape}')
    num_groups = int(groups.max()) + 1 if len(groups) else 0
    with np.errstate(divide='ignore', invalid='ignore'):
        t_ground = np.where(directions[:, 2] < 0, -SENSOR_HEIGHT / directions[:, 2], np.inf)
    t_ground = np.where(t_ground <= max_range, t_ground, np.inf)
    out = {'t': t_ground.copy(), 'box': np.full(len(directions), -1),
           'cos': np.abs(directions[:, 2]), 'potential': np.zeros(num_groups, dtype=np.int64)}
    if len(boxes) == 0:
        return out
    # Boxes sorted by group so that a group's columns are contiguous (np.minimum.reduceat).
    order = np.argsort(groups, kind='stable')
    sorted_groups = groups[order]
    group_starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])
    yaw = boxes[order, 6]
    c, s = np.cos(yaw), np.sin(yaw)
    centre = boxes[order, :3].copy()
    centre[:, 2] += boxes[order, 5] / 2
    # The ray origin (0) in each box's frame, -R(-yaw) @ centre (float32: 1e-5 m at 100 m).
    origin = -np.stack([c * centre[:, 0] + s * centre[:, 1], -s * centre[:, 0] + c * centre[:, 1],
                        centre[:, 2]], 1).astype(np.float32)                      # (P, 3)
    half = (boxes[order, 3:6] / 2).astype(np.float32)                              # (P, 3)
    if (np.abs(origin) < half).all(axis=1).any():
        raise ValueError('cast_rays: the sensor (the origin) lies inside a box')
    c32, s32 = c.astype(np.float32), s.astype(np.float32)
    for start in range(0, len(directions), _RAY_CHUNK):       # chunks of rays, not single rays
        span = slice(start, start + _RAY_CHUNK)
        d = directions[span].astype(np.float32)
        local = (d[:, :1] * c32 + d[:, 1:2] * s32, -d[:, :1] * s32 + d[:, 1:2] * c32,
                 np.broadcast_to(d[:, 2:3], (len(d), len(boxes))))                # 3 x (r, P)
        near = np.full((len(d), len(boxes)), -np.inf, np.float32)
        far = np.full((len(d), len(boxes)), np.inf, np.float32)
        with np.errstate(divide='ignore', invalid='ignore'):
            for axis in range(3):                                                  # slab method
                inverse = 1.0 / local[axis]
                t1 = (-half[:, axis] - origin[:, axis]) * inverse
                t2 = (half[:, axis] - origin[:, axis]) * inverse
                near = np.maximum(near, np.minimum(t1, t2))
                far = np.minimum(far, np.maximum(t1, t2))
        t = np.where((near <= far) & (near > 0), near, np.inf)   # NaN (ray along a face): miss
        blocker = np.minimum(out['t'][span], max_range)[:, None]
        # Rays that would reach the group alone: its nearest box comes before the ground.
        alone = np.minimum.reduceat(t, group_starts, axis=1) < blocker
        out['potential'][sorted_groups[group_starts]] += alone.sum(axis=0)
        nearest = np.argmin(t, axis=1)
        rows = np.arange(len(d))
        t_box = t[rows, nearest].astype(np.float64)
        wins = t_box < blocker[:, 0]
        # Incidence: the face entered is the slab with the largest entry distance
        # (-h - o sign(d)) / |d|; its normal is that axis.
        component = np.stack([local[a][rows, nearest] for a in range(3)], 1)       # (r, 3)
        with np.errstate(divide='ignore', invalid='ignore'):
            entry = ((-half[nearest] - origin[nearest] * np.sign(component))
                     / np.abs(component))
        face = np.argmax(np.nan_to_num(entry, nan=-np.inf), axis=1)
        cos_box = np.abs(component[rows, face])
        out['t'][span] = np.where(wins, t_box, out['t'][span])
        out['box'][span] = np.where(wins, order[nearest], -1)
        out['cos'][span] = np.where(wins, cos_box, out['cos'][span])
    return out


# ------------------------------------------------------------------------------------ scene
def _sample_objects(rng: np.random.Generator, classes: Sequence[str],
                    max_objects: int) -> tuple[list[str], np.ndarray]:
    """Class names and ``(N, 7)`` LiDAR boxes on the ground that do not collide in BEV.

    Cars mostly drive in lanes along x (yaw 0 or pi) or park beside them, some stand anywhere at
    any yaw; pedestrians walk on the sidewalks, cyclists at the lane edges. 85 % are placed ahead
    (x > 3 m), the rest behind the sensor (seen by the LiDAR, not by the camera).
    """
    count = int(rng.integers(max(1, max_objects // 3), max_objects + 1))
    names: list[str] = []
    boxes: list[np.ndarray] = []
    for _ in range(count * 4):                      # rejection sampling over objects, not points
        if len(boxes) == count:
            break
        name = classes[0] if rng.random() < 0.7 or len(classes) == 1 else \
            str(rng.choice(list(classes[1:])))
        mean, std = CLASS_SIZES[name]
        # One size factor shared by the three dimensions (correlation SIZE_CORRELATION between
        # any two): a bigger car is longer, wider and taller, as real ones are. With independent
        # draws the length of a car seen end-on (most cars, in lanes along x) could not be told
        # from its points at all.
        shared = rng.normal()
        normal = (SIZE_CORRELATION ** 0.5 * shared
                  + (1 - SIZE_CORRELATION) ** 0.5 * rng.normal(size=3))
        length, height, width = np.clip(np.asarray(mean) + np.asarray(std) * normal,
                                        np.asarray(mean) * 0.7, np.asarray(mean) * 1.3)
        x = rng.uniform(3.0, 70.0) if rng.random() < 0.85 else rng.uniform(-40.0, 0.0)
        side = rng.choice([-1.0, 1.0])
        heading = rng.choice([0.0, np.pi])
        if name == 'Car' and rng.random() < 0.6:
            if rng.random() < 0.7:                  # in a lane, driving along x
                y = rng.choice([-5.25, -1.75, 1.75, 5.25]) + rng.normal(0, 0.3)
            else:                                   # parked at the kerb
                y = side * rng.uniform(7.5, 9.0)
            yaw = heading + rng.normal(0, 0.05)
        elif name == 'Car':
            y, yaw = rng.uniform(-25.0, 25.0), rng.uniform(-np.pi, np.pi)
        elif name == 'Cyclist':
            y, yaw = side * rng.uniform(2.5, 7.0), heading + rng.normal(0, 0.15)
        else:
            y, yaw = side * rng.uniform(4.0, 12.0), rng.uniform(-np.pi, np.pi)
        radius = 0.5 * np.hypot(length, width)
        if np.hypot(x, y) < radius + 2.5 or (abs(y) < 1.5 + radius and -5.0 < x < 3.0 + radius):
            continue                                # the ego vehicle stands there
        box = np.array([x, y, -SENSOR_HEIGHT, length, width, height,
                        np.arctan2(np.sin(yaw), np.cos(yaw))])
        if boxes:
            others = np.stack(boxes)
            gap = np.hypot(others[:, 0] - x, others[:, 1] - y)
            if (gap < radius + 0.5 * np.hypot(others[:, 3], others[:, 4]) + _MIN_GAP).any():
                continue
        names.append(name)
        boxes.append(box)
    return names, np.asarray(boxes, dtype=np.float64).reshape(-1, 7)


def _sample_clutter(rng: np.random.Generator, objects: np.ndarray
                    ) -> tuple[np.ndarray, list[str]]:
    """``(C, 7)`` clutter boxes (walls, poles, bushes) kept ``_CLUTTER_GAP`` clear of objects,
    and their kinds."""
    candidates, kinds = [], []
    for _ in range(int(rng.integers(0, 4))):
        side = rng.choice([-1.0, 1.0])
        candidates.append([rng.uniform(-40, 60), side * rng.uniform(11, 20), -SENSOR_HEIGHT,
                           rng.uniform(5, 30), 0.3, rng.uniform(1.0, 3.5), rng.normal(0, 0.03)])
        kinds.append('wall')
    for _ in range(int(rng.integers(0, 13))):
        side = rng.choice([-1.0, 1.0])
        size = rng.uniform(0.15, 0.3)
        candidates.append([rng.uniform(-40, 70), side * rng.uniform(6.5, 15), -SENSOR_HEIGHT,
                           size, size, rng.uniform(3.0, 8.0), rng.uniform(-np.pi, np.pi)])
        kinds.append('pole')
    for _ in range(int(rng.integers(0, 9))):       # a bush: 1-3 overlapping boxes
        side = rng.choice([-1.0, 1.0])
        x, y = rng.uniform(-40, 70), side * rng.uniform(6, 15)
        for _ in range(int(rng.integers(1, 4))):
            candidates.append([x + rng.normal(0, 0.3), y + rng.normal(0, 0.3), -SENSOR_HEIGHT,
                               rng.uniform(0.4, 1.5), rng.uniform(0.4, 1.5),
                               rng.uniform(0.3, 1.5), rng.uniform(-np.pi, np.pi)])
            kinds.append('bush')
    clutter = np.asarray(candidates, dtype=np.float64).reshape(-1, 7)
    if len(clutter) == 0:
        return clutter, kinds
    # Reject clutter whose rectangle, grown by an object's radius and the gap, holds the object's
    # centre (or the sensor): (C, N) in each clutter box's frame.
    centres = np.concatenate([objects[:, :2], np.zeros((1, 2))])
    radius = np.r_[0.5 * np.hypot(objects[:, 3], objects[:, 4]), 1.0] + _CLUTTER_GAP
    offset = centres[None] - clutter[:, None, :2]
    c, s = np.cos(clutter[:, 6])[:, None], np.sin(clutter[:, 6])[:, None]
    u = c * offset[..., 0] + s * offset[..., 1]
    v = -s * offset[..., 0] + c * offset[..., 1]
    clash = (np.abs(u) < clutter[:, 3:4] / 2 + radius) & (np.abs(v) < clutter[:, 4:5] / 2 + radius)
    keep = ~clash.any(axis=1)
    return clutter[keep], [k for k, kept in zip(kinds, keep) if kept]


def _object_parts(rng: np.random.Generator, names: Sequence[str], boxes: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Solid parts of the objects, ``(P, 7)`` boxes and ``(P,)`` owner indices.

    Every part lies inside its label box inset by ``_LABEL_INSET`` (sides, top) and stands on the
    ground (or the box bottom, if that is above the ground). A car is a body (full length, lower
    50-60 %) and a cabin (45-60 % of the length, 90 % of the width, set back); a cyclist a bike
    (narrow, lower 55 %) and a rider (40 % of the length, full width, on top); a pedestrian a box.
    """
    parts, owners = [], []
    for i, (name, box) in enumerate(zip(names, boxes)):
        x, y, z, length, width, height, yaw = box
        bottom = max(z, -SENSOR_HEIGHT)
        length, width = length - 2 * _LABEL_INSET, width - 2 * _LABEL_INSET
        top = z + height - _LABEL_INSET
        heading = np.array([np.cos(yaw), np.sin(yaw)])
        if name == 'Car':
            split = bottom + rng.uniform(0.5, 0.6) * (top - bottom)
            cabin = rng.uniform(0.45, 0.6) * length
            shift = -rng.uniform(0.0, 0.1) * length
            local = [(0.0, length, width, bottom, split), (shift, cabin, 0.9 * width, split, top)]
        elif name == 'Cyclist':
            split = bottom + 0.55 * (top - bottom)
            local = [(0.0, length, min(width, 0.25), bottom, split),
                     (-0.1 * length, 0.4 * length, width, bottom + 0.4 * (top - bottom), top)]
        else:
            local = [(0.0, length, width, bottom, top)]
        for along, part_length, part_width, low, high in local:
            cx, cy = np.array([x, y]) + along * heading
            parts.append([cx, cy, low, part_length, part_width, high - low, yaw])
            owners.append(i)
    return np.asarray(parts, dtype=np.float64).reshape(-1, 7), np.asarray(owners, dtype=np.int64)


def _calibration(height: int, width: int) -> tuple[dict[str, np.ndarray], KittiCalibration]:
    calib = kitti_calibration(height, width)
    return calib, KittiCalibration(calib['P0'], calib['P1'], calib['P2'], calib['P3'],
                                   calib['R0_rect'], calib['Tr_velo_to_cam'])


def _round_trip(boxes: np.ndarray, calibration: KittiCalibration) -> np.ndarray:
    """``(N, 7)`` camera boxes rounded to the label file's two decimals."""
    camera = LiDARBoxes3D(torch.from_numpy(boxes)).convert_to('camera', calibration.lidar2cam)
    return np.round(camera.tensor.numpy(), 2)


def _image_extent(boxes: np.ndarray, calibration: KittiCalibration, height: int, width: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Truncation ``(N,)`` and clipped 2D boxes ``(N, 4)`` of camera boxes in the image_2 view.

    Truncation is the fraction of a 6 x 6 x 6 grid of points filling the box that does not project
    into the image. The 2D box spans the projected corners when all lie in front of the camera
    (KITTI's rule), else the projected grid points and corners in front of it.
    """
    count = len(boxes)
    steps = (np.arange(6) + 0.5) / 6
    grid = np.stack(np.meshgrid(steps - 0.5, steps - 0.5, steps, indexing='ij'), -1).reshape(-1, 3)
    corners = np.array([[i - 0.5, j - 0.5, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)])
    unit = np.concatenate([corners, grid])                          # (8 + 216, 3): (l, w, up)
    # Camera box axes: heading (cos ry, 0, -sin ry), across (sin ry, 0, cos ry), up -y.
    ry = boxes[:, 6][:, None]
    along = unit[None, :, 0] * boxes[:, None, 3]
    across = unit[None, :, 1] * boxes[:, None, 5]
    points = np.stack([boxes[:, None, 0] + along * np.cos(ry) + across * np.sin(ry),
                       boxes[:, None, 1] - unit[None, :, 2] * boxes[:, None, 4],
                       boxes[:, None, 2] - along * np.sin(ry) + across * np.cos(ry)], -1)
    uv, depth = calibration.camera_to_image(points.reshape(-1, 3))
    uv, depth = uv.reshape(count, len(unit), 2), depth.reshape(count, len(unit))
    in_image = ((depth > 0) & (uv[..., 0] >= 0) & (uv[..., 0] < width) & (uv[..., 1] >= 0)
                & (uv[..., 1] < height))
    truncated = 1.0 - in_image[:, 8:].mean(axis=1)
    front = depth > 0.1
    use = np.where(front[:, :8].all(axis=1, keepdims=True), np.arange(len(unit)) < 8, front)
    low = np.where(use[..., None], uv, np.inf).min(axis=1)
    high = np.where(use[..., None], uv, -np.inf).max(axis=1)
    bbox = np.stack([np.clip(low[:, 0], 0, width - 1), np.clip(low[:, 1], 0, height - 1),
                     np.clip(high[:, 0], 0, width - 1), np.clip(high[:, 1], 0, height - 1)], 1)
    return truncated, bbox.reshape(-1, 4)


def render_lidar_scene(seed: int, index: int, azimuth_step: float = 0.08,
                       classes: Sequence[str] = ('Car', 'Pedestrian', 'Cyclist'),
                       max_objects: int = 24, range_noise: float = 0.02, dropout: float = 0.05,
                       clutter: bool = True, min_points: int = 5,
                       image_shape: tuple[int, int] = IMAGE_SHAPE,
                       objects: tuple[Sequence[str], np.ndarray] | None = None) -> dict:
    """Render LiDAR scene ``index`` of the synthetic set ``seed``.

    Args:
        seed, index: the scene is a pure function of them (and the other arguments).
        azimuth_step: degrees between the rays of one beam (HDL-64E at 10 Hz: about 0.08).
        classes: object classes to place (``Car``, ``Pedestrian``, ``Cyclist``); the first is the
            most frequent (70 %).
        max_objects: at most this many objects in 360 deg (at least a third of it are tried).
        range_noise: standard deviation of the range error along the ray, metres.
        dropout: probability that a return is lost.
        clutter: place walls, poles and bushes.
        min_points: objects with fewer returns are not labelled.
        image_shape: ``(H, W)`` of image_2 (KITTI's P2 scaled to it, :func:`kitti_calibration`).
        objects: ``(names, (N, 7) LiDAR boxes)`` to place instead of random ones (for tests).

    Returns:
        ``points`` ``(M, 4)`` float32 x, y, z, intensity (LiDAR frame, 360 deg),
        ``point_labels`` ``(M,)`` int64 (object index, ``GROUND`` -1 or ``CLUTTER`` -2),
        ``beam`` ``(M,)`` the laser of each point, ``boxes_lidar`` ``(N, 7)`` every object's box
        as the converter reads it back from the label, ``names`` ``(N,)``, ``num_points``
        ``(N,)`` returns per object, ``labelled`` ``(N,)`` bool, ``annos`` (labelled objects, in
        the :func:`read_label_file` layout, ``dimensions`` (l, h, w)), ``calib`` (P0-P3 3x4,
        R0_rect, Tr_velo_to_cam), and the rendered solids ``parts`` ``(P, 7)`` with their objects
        ``part_owners`` ``(P,)``.
    """
    unknown = [name for name in classes if name not in CLASS_SIZES]
    if unknown or not classes:
        raise ConfigError(f'render_lidar_scene: classes must be among {sorted(CLASS_SIZES)}, '
                          f'got {list(classes)}')
    if not 0 <= dropout < 1 or range_noise < 0:
        raise ConfigError(f'render_lidar_scene: need 0 <= dropout < 1 and range_noise >= 0, got '
                          f'{dropout}, {range_noise}')
    rng = np.random.default_rng([int(seed), int(index)])
    height, width = image_shape
    calib, calibration = _calibration(height, width)
    if objects is None:
        names, boxes = _sample_objects(rng, classes, max_objects)
    else:
        names, boxes = list(objects[0]), np.asarray(objects[1], dtype=np.float64).reshape(-1, 7)
        if len(names) != len(boxes):
            raise ConfigError(f'render_lidar_scene: {len(names)} names for {len(boxes)} boxes')
    camera_boxes = _round_trip(boxes, calibration)
    # Render the box the converter will read back from the label (bottom centre moved by the
    # rounding, < 1 cm), so that points and labels agree exactly.
    boxes = CameraBoxes3D(torch.from_numpy(camera_boxes)).convert_to(
        'lidar', calibration.cam2lidar).tensor.numpy().reshape(-1, 7)
    clutter_boxes, clutter_kinds = _sample_clutter(rng, boxes) if clutter else (np.zeros((0, 7)),
                                                                               [])
    parts, owners = _object_parts(rng, names, boxes)
    solids = np.concatenate([parts, clutter_boxes])
    groups = np.concatenate([owners, len(boxes) + np.arange(len(clutter_boxes))])

    directions, beams = beam_directions(azimuth_step, rng.uniform(0, azimuth_step))
    cast = cast_rays(directions, solids, groups)
    returned = np.isfinite(cast['t'])
    group = np.r_[groups, -1][cast['box']]            # box -1 (ground, nothing) -> group -1
    labels = np.where(group < 0, GROUND, np.where(group < len(boxes), group, CLUTTER))

    # Reflectance per solid and for the ground (asphalt with dashed lane markings every 3.5 m).
    object_reflectance = np.array([rng.uniform(*_REFLECTANCE[n]) for n in names] + [0.0])
    clutter_reflectance = np.array([rng.uniform(*_REFLECTANCE[k]) for k in clutter_kinds] + [0.0])
    asphalt, lane_offset = rng.uniform(*_GROUND_REFLECTANCE), rng.uniform(0, 3.5)
    t = np.where(returned, cast['t'], 0.0)
    ground_xy = directions[:, :2] * t[:, None]
    lane = ((np.abs(np.mod(ground_xy[:, 1] - lane_offset, 3.5) - 1.75) > 1.675)
            & (np.mod(ground_xy[:, 0], 6.0) < 3.0))
    reflectance = np.where(labels == GROUND, np.where(lane, _LANE_REFLECTANCE, asphalt),
                           np.where(labels >= 0, object_reflectance[np.maximum(labels, 0)],
                                    clutter_reflectance[np.clip(group - len(boxes), 0, None)]))
    noise = rng.standard_normal((len(directions), 2))
    drop = rng.random(len(directions)) < dropout
    intensity = np.clip(reflectance * (0.3 + 0.7 * cast['cos']) + 0.02 * noise[:, 1], 0, 0.99)
    distance = t + range_noise * noise[:, 0]

    visible = np.bincount(labels[returned & (labels >= 0)], minlength=len(boxes))
    keep = returned & ~drop & (distance > 0)
    points = np.concatenate([directions[keep] * distance[keep, None],
                             intensity[keep, None]], 1).astype(np.float32)
    point_labels = labels[keep]
    num_points = np.bincount(point_labels[point_labels >= 0], minlength=len(boxes))

    truncated, bbox = _image_extent(camera_boxes, calibration, height, width)
    potential = cast['potential'][:len(boxes)]
    hidden = 1.0 - visible / np.maximum(potential, 1)
    occluded = np.where(hidden < 0.05, 0, np.where(hidden < 0.5, 1, 2))
    labelled = ((truncated < 1.0) & (bbox[:, 2] > bbox[:, 0]) & (bbox[:, 3] > bbox[:, 1])
                & (num_points >= min_points) & (hidden <= 0.9))
    alpha = camera_boxes[:, 6] - np.arctan2(camera_boxes[:, 0], camera_boxes[:, 2])
    alpha = alpha - np.floor(alpha / (2 * np.pi) + 0.5) * 2 * np.pi
    annos = {'name': np.asarray(names, dtype=str).reshape(-1)[labelled],
             'truncated': np.round(truncated, 2)[labelled], 'occluded': occluded[labelled],
             'alpha': alpha[labelled], 'bbox': bbox[labelled],
             'dimensions': camera_boxes[labelled, 3:6], 'location': camera_boxes[labelled, :3],
             'rotation_y': camera_boxes[labelled, 6]}
    return {'points': points, 'point_labels': point_labels, 'beam': beams[keep],
            'boxes_lidar': boxes, 'names': np.asarray(names, dtype=str).reshape(-1),
            'num_points': num_points, 'labelled': labelled, 'annos': annos, 'calib': calib,
            'parts': parts, 'part_owners': owners}


def write_synthetic_kitti_lidar(root: str | os.PathLike, num_train: int, num_val: int,
                                seed: int = 0, **scene_options) -> Path:
    """Write ``num_train + num_val`` LiDAR scenes in the KITTI layout under ``root``.

    Frames ``000000 .. num_train-1`` form ``ImageSets/train.txt``, the next ``num_val`` frames
    ``val.txt``. Each frame has ``training/velodyne/<id>.bin`` (float32 x y z intensity),
    ``label_2``, ``calib`` and a plain grey ``image_2`` PNG of the image size. Files are written
    atomically. ``scene_options`` go to :func:`render_lidar_scene`. Returns ``root``.
    """
    if num_train < 0 or num_val < 0 or num_train + num_val == 0:
        raise ConfigError(f'write_synthetic_kitti_lidar: need num_train, num_val >= 0 and some '
                          f'frames, got {num_train}, {num_val}')
    root = Path(root)
    height, width = scene_options.get('image_shape', IMAGE_SHAPE)
    # The converter reads only the image size: one grey image serves every frame.
    png = encode_png(np.full((height, width, 3), 128, np.uint8), 'the placeholder image')
    ids = [f'{i:06d}' for i in range(num_train + num_val)]
    for index, frame_id in enumerate(ids):
        scene = render_lidar_scene(seed, index, **scene_options)
        atomic_write_bytes(root / 'training' / 'velodyne' / f'{frame_id}.bin',
                           points_to_bytes(scene['points']), durable=False)
        write_kitti_frame(root, frame_id, png, scene['calib'], scene['annos'])
    write_image_sets(root, ids, num_train)
    return root


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description='Render a synthetic LiDAR 3D detection set in '
                                                 'the KITTI layout')
    parser.add_argument('root')
    parser.add_argument('--train', type=int, default=200)
    parser.add_argument('--val', type=int, default=50)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--azimuth-step', type=float, default=0.08)
    parser.add_argument('--classes', nargs='+', default=['Car', 'Pedestrian', 'Cyclist'])
    args = parser.parse_args(argv)
    write_synthetic_kitti_lidar(args.root, args.train, args.val, args.seed,
                                azimuth_step=args.azimuth_step, classes=args.classes)


if __name__ == '__main__':
    main()
