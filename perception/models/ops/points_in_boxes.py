"""Which points lie inside which yawed 3D boxes, in the LiDAR or the camera frame.

Boundary rules (``boundary=``)
------------------------------
* ``'open'`` (default): strictly inside on all six faces; a point on a face is outside. This is
  mmdetection3d's ``box_np_ops.points_in_rbbox`` (a point is dropped when ``n . p + d >= 0`` for
  any face), the test behind KITTI's ``num_lidar_pts`` in its info files and its GT database.
* ``'mmcv'``: strictly inside horizontally, inclusive vertically (``|z - z_centre| <= h / 2``), as
  mmcv's ``points_in_boxes_part`` / ``points_in_boxes_all`` kernels (no margin) that
  ``LiDARInstance3DBoxes.points_in_boxes_*`` call.
* ``'closed'``: inclusive on all faces.

The rules differ only for points exactly on a face. The test runs in float64 in each box's frame
(rotate the offset by ``-yaw``); mmdetection3d's plane equations round differently, so points within
~1e-12 m of a face can still be classified differently from it.
"""
from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from .iou3d import boxes3d_to_bev

__all__ = ['points_in_boxes', 'points_in_boxes_index', 'count_points_in_boxes']

Boundary = Literal['open', 'mmcv', 'closed']
# Entries of the (points, boxes) work arrays per step: bounds the float64 temporaries to ~32 MB.
_CHUNK_ELEMENTS = 1 << 22


def _prepare(points: Tensor, boxes: Tensor, frame: str, boundary: str):
    if points.dim() != 2 or points.shape[1] < 3:
        raise ValueError(f'points must have shape (P, 3+), got {tuple(points.shape)}')
    if boxes.dim() != 2 or boxes.shape[1] < 7:
        raise ValueError(f'boxes must have shape (B, 7+), got {tuple(boxes.shape)}')
    if frame not in ('lidar', 'camera'):
        raise ValueError(f"frame must be 'lidar' or 'camera', got {frame!r}")
    if boundary not in ('open', 'mmcv', 'closed'):
        raise ValueError(f"boundary must be 'open', 'mmcv' or 'closed', got {boundary!r}")
    boxes = boxes[:, :7].to(torch.float64)
    points = points[:, :3].to(device=boxes.device, dtype=torch.float64)
    bev = boxes3d_to_bev(boxes, frame)
    if frame == 'lidar':
        # Height above the bottom face: z - z_box.
        plane, vertical, bottom, box_h = points[:, :2], points[:, 2], boxes[:, 2], boxes[:, 5]
    else:
        # y points down and (x, y, z) is the bottom centre: height above it is y_box - y.
        plane, vertical, bottom, box_h = points[:, [0, 2]], -points[:, 1], -boxes[:, 1], boxes[:, 4]
    return plane, vertical, bottom, bev, box_h


def _inside_chunk(plane: Tensor, vertical: Tensor, bottom: Tensor, bev: Tensor, box_h: Tensor,
                  boundary: str) -> Tensor:
    """(p, B) inside flags of a chunk of p points: plane (p, 2), vertical (p,) (up)."""
    height = vertical[:, None] - bottom
    cos, sin = torch.cos(bev[:, 4]), torch.sin(bev[:, 4])
    # Points rotated by -angle into each box's frame (u along the heading, v across it) with one
    # (p, 2) x (2, 2B) product, minus the box centres rotated the same way.
    axes = torch.cat([torch.stack([cos, sin]), torch.stack([-sin, cos])], dim=1)  # (2, 2B)
    centres = torch.cat([bev[:, 0] * cos + bev[:, 1] * sin, bev[:, 1] * cos - bev[:, 0] * sin])
    local = (plane @ axes - centres).abs()
    num_boxes = bev.shape[0]
    u, v = local[:, :num_boxes], local[:, num_boxes:]
    hx, hy = bev[:, 2] / 2, bev[:, 3] / 2
    if boundary == 'closed':
        return (u <= hx) & (v <= hy) & (height >= 0) & (height <= box_h)
    horizontal = (u < hx) & (v < hy)
    if boundary == 'open':
        return horizontal & (height > 0) & (height < box_h)
    # mmcv: |z - (z_bottom + h / 2)| <= h / 2, in the same arithmetic.
    return horizontal & ((height - box_h / 2).abs() <= box_h / 2)


def _chunks(plane: Tensor, vertical: Tensor, bottom: Tensor, bev: Tensor, box_h: Tensor,
            boundary: str):
    step = max(1, _CHUNK_ELEMENTS // max(1, bev.shape[0]))
    for start in range(0, plane.shape[0], step):
        yield start, _inside_chunk(plane[start:start + step], vertical[start:start + step], bottom,
                                   bev, box_h, boundary)


def points_in_boxes(points: Tensor, boxes: Tensor, frame: Literal['lidar', 'camera'] = 'lidar',
                    boundary: Boundary = 'open') -> Tensor:
    """Inside flags of every point for every box.

    Args:
        points: (P, 3+) points in the boxes' frame; columns past 3 are ignored.
        boxes: (B, 7+) LiDAR ``[x, y, z, l, w, h, yaw]`` or camera ``[x, y, z, l, h, w, ry]``
            boxes, bottom centre; columns past 7 are ignored.
        frame: 'lidar' (z up) or 'camera' (y down).
        boundary: 'open', 'mmcv' or 'closed' (see the module docstring).

    Returns:
        (P, B) bool on the boxes' device.
    """
    plane, vertical, bottom, bev, box_h = _prepare(points, boxes, frame, boundary)
    out = torch.zeros((plane.shape[0], bev.shape[0]), dtype=torch.bool, device=bev.device)
    if out.numel() == 0:
        return out
    for start, inside in _chunks(plane, vertical, bottom, bev, box_h, boundary):
        out[start:start + inside.shape[0]] = inside
    return out


def points_in_boxes_index(points: Tensor, boxes: Tensor,
                          frame: Literal['lidar', 'camera'] = 'lidar',
                          boundary: Boundary = 'open') -> Tensor:
    """Index of the first box containing each point, -1 for none (mmcv's ``points_in_boxes_part``).

    Args:
        points: (P, 3+) points.
        boxes: (B, 7+) boxes (see :func:`points_in_boxes`).
        frame: 'lidar' or 'camera'.
        boundary: 'open', 'mmcv' or 'closed'.

    Returns:
        (P,) int64 box index or -1.
    """
    plane, vertical, bottom, bev, box_h = _prepare(points, boxes, frame, boundary)
    out = torch.full((plane.shape[0],), -1, dtype=torch.long, device=bev.device)
    if bev.shape[0] == 0:
        return out
    for start, inside in _chunks(plane, vertical, bottom, bev, box_h, boundary):
        # argmax over bool returns the first True; rows without any keep -1.
        first = inside.to(torch.uint8).argmax(dim=1)
        out[start:start + inside.shape[0]] = torch.where(inside.any(dim=1), first, -1)
    return out


def count_points_in_boxes(points: Tensor, boxes: Tensor,
                          frame: Literal['lidar', 'camera'] = 'lidar',
                          boundary: Boundary = 'open') -> Tensor:
    """Number of points inside each box (KITTI's ``num_lidar_pts`` with the default rule).

    Args:
        points: (P, 3+) points.
        boxes: (B, 7+) boxes (see :func:`points_in_boxes`).
        frame: 'lidar' or 'camera'.
        boundary: 'open', 'mmcv' or 'closed'.

    Returns:
        (B,) int64 counts.
    """
    plane, vertical, bottom, bev, box_h = _prepare(points, boxes, frame, boundary)
    counts = torch.zeros(bev.shape[0], dtype=torch.long, device=bev.device)
    for _, inside in _chunks(plane, vertical, bottom, bev, box_h, boundary):
        counts += inside.sum(dim=0)
    return counts
