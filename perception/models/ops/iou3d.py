"""Exact overlap and IoU of rotated rectangles (bird's-eye view) and of yawed 3D boxes.

Boxes
-----
* BEV boxes ``[cx, cy, dx, dy, angle]``: ``dx`` is the edge along the heading, ``angle`` turns the
  heading counter-clockwise from +x, in radians.
* LiDAR boxes ``[x, y, z, l, w, h, yaw]``, bottom centre, z up: BEV ``(x, y, l, w, yaw)``, height
  range ``[z, z + h]``.
* Camera boxes ``[x, y, z, l, h, w, ry]``, bottom centre, y down: BEV ``(x, z, l, w, -ry)``, height
  range ``[y - h, y]`` (see docs/conventions.md).

Algorithm
---------
The area of the intersection ``A n B`` of two convex polygons is the contour integral
``1/2 * sum (x dy - y dx)`` over its boundary, and that boundary is made of the parts of A's edges
that lie inside B plus the parts of B's edges that lie inside A. Each part is one segment (both
polygons are convex), found by clipping the edge's parameter interval ``[0, 1]`` against the
other box's four half-planes (Liang-Barsky). So the area needs no sorting of vertices and no
compaction: every pair costs the same fixed set of elementwise operations, which vectorises over all
pairs at once. Work happens in A's frame (A centred at the origin, axis-aligned), where each of A's
edges contributes ``dx_a * dy_a / 4`` per unit of its clipped parameter length.

Collinear edges are where contour methods double count, so they get an explicit rule: when an
edge of A and an edge of B lie on the same line (within ``1e-8`` of the boxes' size), B's edge is
dropped and A's edge is kept only if both boxes lie on the same side of that line. Identical boxes
therefore give exactly A's area (IoU 1 to the last bit), boxes touching along an edge give 0, and
zero-size boxes give 0 without NaN. Far-apart pairs (disjoint axis-aligned bounding boxes) are never
computed.

Computation runs in float64 on the input's device; results come back in the input's floating dtype.
The functions are differentiable almost everywhere (useful for IoU losses through ``aligned=True``).
"""
from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

__all__ = ['bev_overlap', 'bev_iou', 'box3d_overlap', 'box3d_iou', 'boxes3d_to_bev']

Frame = Literal['lidar', 'camera']

# Pairs computed per vectorised step: bounds the temporaries (~40 float64 (K, 4, 4) tensors) to a
# few MB, which keeps them in cache on CPU.
_PAIR_CHUNK = 8192
# Rows of the (N, M) prefilter mask handled at once: bounds the mask to ~4M entries.
_MASK_ELEMENTS = 1 << 22
# Corner k of a box in its own frame is (SX[k] * dx / 2, SY[k] * dy / 2), counter-clockwise; edge k
# runs from corner k to corner k + 1 and lies on the box's boundary k, whose outward normal is
# +x, +y, -x, -y for k = 0..3.
_SX = (1.0, 1.0, -1.0, -1.0)
_SY = (-1.0, 1.0, 1.0, -1.0)
# Relative tolerance (of the summed half extents) under which an edge counts as lying on a line.
_COLLINEAR_TOL = 1e-8


def _check_boxes(boxes: Tensor, width: int, name: str) -> None:
    if not isinstance(boxes, Tensor):
        raise TypeError(f'{name} must be a torch.Tensor, got {type(boxes).__name__}')
    if boxes.dim() != 2 or boxes.shape[1] != width:
        raise ValueError(f'{name} must have shape (N, {width}), got {tuple(boxes.shape)}')


def _result_dtype(a: Tensor, b: Tensor) -> torch.dtype:
    dtype = torch.promote_types(a.dtype, b.dtype)
    return dtype if dtype.is_floating_point else torch.get_default_dtype()


def _signed_distances(px: Tensor, py: Tensor, hx: Tensor, hy: Tensor) -> Tensor:
    """Signed distances of points to the four boundaries of an axis-aligned centred box.

    Args:
        px, py: (K, 4) point coordinates in the box's frame.
        hx, hy: (K, 1) half extents.

    Returns:
        (K, 4 points, 4 boundaries); <= 0 means on the inner side of that boundary.
    """
    return torch.stack([px - hx, py - hy, -px - hx, -py - hy], dim=-1)


def _clip_lengths(dist: Tensor, on_line: Tensor, keep_on_line: Tensor | None) -> Tensor:
    """Parameter length of each edge of one box inside the other box (Liang-Barsky).

    Args:
        dist: (K, 4 corners, 4 boundaries) signed distances of this box's corners to the other
            box's boundaries.
        on_line: (K, 4 edges, 4 boundaries) edge lies on that boundary line.
        keep_on_line: (K, 4, 4) for edges on a boundary line, whether the edge counts as inside
            that half-plane; None drops every such edge.

    Returns:
        (K, 4) clipped parameter length in [0, 1] of each edge (edge k: corner k -> corner k + 1).
    """
    a = dist
    b = dist.roll(-1, dims=1)
    enter = (a > 0) & (b <= 0)
    leave = (a <= 0) & (b > 0)
    outside = (a > 0) & (b > 0)
    crossing = a / torch.where(enter | leave, a - b, 1.0)
    free = ~on_line
    t0 = torch.where(enter & free, crossing, 0.0).amax(dim=-1)
    t1 = torch.where(leave & free, crossing, 1.0).amin(dim=-1)
    reject = outside & free
    if keep_on_line is None:
        reject = reject | on_line
    else:
        reject = reject | (on_line & ~keep_on_line)
    length = (t1 - t0).clamp(min=0)
    return torch.where(reject.any(dim=-1), 0.0, length)


def _pair_overlap(a: Tensor, b: Tensor) -> Tensor:
    """Intersection areas of paired rotated rectangles.

    Args:
        a, b: (K, 5) float64 boxes ``[cx, cy, dx, dy, angle]``.

    Returns:
        (K,) float64 intersection areas.
    """
    hxa, hya = a[:, 2:3] / 2, a[:, 3:4] / 2
    hxb, hyb = b[:, 2:3] / 2, b[:, 3:4] / 2
    cos_a, sin_a = torch.cos(a[:, 4:5]), torch.sin(a[:, 4:5])
    # B's centre and rotation in A's frame. The angle difference (not a product of cosines) keeps
    # equal angles exactly aligned: cos(0) = 1, sin(0) = 0.
    wx, wy = b[:, 0:1] - a[:, 0:1], b[:, 1:2] - a[:, 1:2]
    cx = cos_a * wx + sin_a * wy
    cy = cos_a * wy - sin_a * wx
    phi = b[:, 4:5] - a[:, 4:5]
    cp, sp = torch.cos(phi), torch.sin(phi)

    sx = a.new_tensor(_SX)
    sy = a.new_tensor(_SY)
    # A's corners in A's frame and in B's frame.
    pax, pay = sx * hxa, sy * hya
    rx, ry = pax - cx, pay - cy
    pbx_in_b = cp * rx + sp * ry
    pby_in_b = cp * ry - sp * rx
    # B's corners in B's frame and in A's frame.
    qbx, qby = sx * hxb, sy * hyb
    qx = cx + cp * qbx - sp * qby
    qy = cy + sp * qbx + cp * qby

    dist_a = _signed_distances(pbx_in_b, pby_in_b, hxb, hyb)  # A's corners vs B's boundaries
    dist_b = _signed_distances(qx, qy, hxa, hya)  # B's corners vs A's boundaries

    tol = (_COLLINEAR_TOL * (hxa + hya + hxb + hyb)).unsqueeze(-1)
    near_a = dist_a.abs() <= tol
    near_b = dist_b.abs() <= tol
    # Edge i of A on B's boundary line j, or edge j of B on A's boundary line i: one symmetric flag
    # per (i, j), so the two boxes never both count (or both drop) a shared stretch of boundary.
    a_on_b = near_a & near_a.roll(-1, dims=1)
    b_on_a = near_b & near_b.roll(-1, dims=1)
    on_line = a_on_b | b_on_a.transpose(1, 2)
    # Both boxes lie on the same side of a shared line iff their outward normals there agree:
    # normal_a[i] . normal_b[j] > 0, with B's normals (cp, sp), (-sp, cp), (-cp, -sp), (sp, -cp).
    row0 = torch.cat([cp, -sp, -cp, sp], dim=1)  # x components of B's normals
    row1 = torch.cat([sp, cp, -sp, -cp], dim=1)  # y components
    same_side = torch.stack([row0, row1, -row0, -row1], dim=1) > 0

    len_a = _clip_lengths(dist_a, on_line, same_side)
    len_b = _clip_lengths(dist_b, on_line.transpose(1, 2), None)
    # Contour integral: A's edge k contributes hxa * hya per unit parameter length; B's edge k
    # contributes cross(q_k, q_k+1) / 2 per unit.
    qx1, qy1 = qx.roll(-1, dims=1), qy.roll(-1, dims=1)
    cross_b = qx * qy1 - qy * qx1
    area = (hxa * hya).squeeze(1) * len_a.sum(dim=1) + 0.5 * (len_b * cross_b).sum(dim=1)
    limit = torch.minimum(a[:, 2] * a[:, 3], b[:, 2] * b[:, 3])
    return torch.minimum(area.clamp(min=0), limit)


def _aabb_half_extents(boxes: Tensor) -> Tensor:
    """(N, 2) half extents of the axis-aligned bounding boxes of (N, 5) rotated boxes."""
    c, s = torch.cos(boxes[:, 4]).abs(), torch.sin(boxes[:, 4]).abs()
    hx, hy = boxes[:, 2] / 2, boxes[:, 3] / 2
    return torch.stack([c * hx + s * hy, s * hx + c * hy], dim=1)


def _chunked_pair_overlap(a: Tensor, b: Tensor) -> Tensor:
    if a.shape[0] <= _PAIR_CHUNK:
        return _pair_overlap(a, b)
    return torch.cat([_pair_overlap(a[i:i + _PAIR_CHUNK], b[i:i + _PAIR_CHUNK])
                      for i in range(0, a.shape[0], _PAIR_CHUNK)])


def _overlap64(a: Tensor, b: Tensor, aligned: bool, pair_mask: Tensor | None = None) -> Tensor:
    """BEV intersection areas in float64: (N, M), or (N,) when aligned.

    ``pair_mask`` ((N, M) or (N,) bool) marks the pairs worth computing (e.g. overlapping in
    height); the others are 0.
    """
    a = a.to(torch.float64)
    b = b.to(torch.float64)
    if (a[:, 2:4] < 0).any() or (b[:, 2:4] < 0).any():
        raise ValueError('box sizes must be >= 0')
    ext_a, ext_b = _aabb_half_extents(a), _aabb_half_extents(b)
    if aligned:
        # Strict '<': boxes whose bounding boxes only touch cannot overlap with positive area.
        close = ((a[:, :2] - b[:, :2]).abs() < ext_a + ext_b).all(dim=1)
        if pair_mask is not None:
            close &= pair_mask
        out = a.new_zeros(a.shape[0])
        idx = close.nonzero(as_tuple=True)[0]
        if idx.numel():
            out[idx] = _chunked_pair_overlap(a[idx], b[idx])
        return out

    n, m = a.shape[0], b.shape[0]
    out = a.new_zeros((n, m))
    if n == 0 or m == 0:
        return out
    rows = max(1, _MASK_ELEMENTS // m)
    for r0 in range(0, n, rows):
        ca, ea = a[r0:r0 + rows, None, :2], ext_a[r0:r0 + rows, None]
        close = ((ca - b[None, :, :2]).abs() < ea + ext_b[None]).all(dim=2)
        if pair_mask is not None:
            close &= pair_mask[r0:r0 + rows]
        ia, ib = close.nonzero(as_tuple=True)
        if ia.numel():
            ia = ia + r0
            out[ia, ib] = _chunked_pair_overlap(a[ia], b[ib])
    return out


def _check_pairs(a: Tensor, b: Tensor, width: int, aligned: bool) -> None:
    _check_boxes(a, width, 'boxes_a')
    _check_boxes(b, width, 'boxes_b')
    if aligned and a.shape[0] != b.shape[0]:
        raise ValueError(f'aligned=True needs as many boxes in boxes_a as in boxes_b, got '
                         f'{a.shape[0]} and {b.shape[0]}')


def _ratio(inter: Tensor, area_a: Tensor, area_b: Tensor, aligned: bool, mode: str) -> Tensor:
    if not aligned:
        area_a, area_b = area_a[:, None], area_b[None, :]
    if mode == 'iou':
        denom = area_a + area_b - inter
    elif mode == 'iof':
        denom = area_a.expand_as(inter)
    else:
        raise ValueError(f"mode must be 'iou' or 'iof', got {mode!r}")
    positive = denom > 0
    ratio = inter / torch.where(positive, denom, torch.ones_like(denom))
    return torch.where(positive, ratio, torch.zeros_like(ratio)).clamp(0, 1)


def bev_overlap(boxes_a: Tensor, boxes_b: Tensor, aligned: bool = False) -> Tensor:
    """Intersection areas of rotated rectangles.

    Args:
        boxes_a: (N, 5) ``[cx, cy, dx, dy, angle]``, dx along the heading, angle CCW in radians.
        boxes_b: (M, 5) the same layout; (N, 5) when ``aligned``.
        aligned: pair ``boxes_a[i]`` with ``boxes_b[i]`` only.

    Returns:
        (N, M) areas, or (N,) when ``aligned``; in the inputs' floating dtype, on their device.
    """
    _check_pairs(boxes_a, boxes_b, 5, aligned)
    return _overlap64(boxes_a, boxes_b, aligned).to(_result_dtype(boxes_a, boxes_b))


def bev_iou(boxes_a: Tensor, boxes_b: Tensor, aligned: bool = False,
            mode: Literal['iou', 'iof'] = 'iou') -> Tensor:
    """IoU of rotated rectangles (or intersection over ``boxes_a``'s area with ``mode='iof'``).

    Args:
        boxes_a: (N, 5) ``[cx, cy, dx, dy, angle]``.
        boxes_b: (M, 5); (N, 5) when ``aligned``.
        aligned: pair ``boxes_a[i]`` with ``boxes_b[i]`` only.
        mode: 'iou' or 'iof'.

    Returns:
        (N, M) values in [0, 1], or (N,) when ``aligned``. Pairs with an empty union give 0.
    """
    _check_pairs(boxes_a, boxes_b, 5, aligned)
    inter = _overlap64(boxes_a, boxes_b, aligned)
    a = boxes_a.to(torch.float64)
    b = boxes_b.to(torch.float64)
    iou = _ratio(inter, a[:, 2] * a[:, 3], b[:, 2] * b[:, 3], aligned, mode)
    return iou.to(_result_dtype(boxes_a, boxes_b))


def pairwise_iou_upper(boxes: Tensor) -> Tensor:
    """IoU of every pair ``i < j`` of one set of BEV boxes (what greedy NMS reads).

    Args:
        boxes: (K, 5) ``[cx, cy, dx, dy, angle]``.

    Returns:
        (K, K) float64; entries on and below the diagonal are 0. Half the work of
        ``bev_iou(boxes, boxes)``.
    """
    _check_boxes(boxes, 5, 'boxes')
    k = boxes.shape[0]
    upper = torch.ones((k, k), dtype=torch.bool, device=boxes.device).triu_(1)
    inter = _overlap64(boxes, boxes, False, upper)
    area = boxes[:, 2].to(torch.float64) * boxes[:, 3].to(torch.float64)
    return _ratio(inter, area, area, False, 'iou')


def boxes3d_to_bev(boxes: Tensor, frame: Frame = 'lidar') -> Tensor:
    """BEV rectangles of 3D boxes.

    Args:
        boxes: (N, 7) LiDAR ``[x, y, z, l, w, h, yaw]`` or camera ``[x, y, z, l, h, w, ry]`` boxes
            (extra columns such as velocities are ignored).
        frame: 'lidar' or 'camera'.

    Returns:
        (N, 5) ``[cx, cy, dx, dy, angle]``: LiDAR ``(x, y, l, w, yaw)``, camera
        ``(x, z, l, w, -ry)``.
    """
    if frame == 'lidar':
        return boxes[:, [0, 1, 3, 4, 6]]
    if frame == 'camera':
        bev = boxes[:, [0, 2, 3, 5, 6]]
        return torch.cat([bev[:, :4], -bev[:, 4:5]], dim=1)
    raise ValueError(f"frame must be 'lidar' or 'camera', got {frame!r}")


def _height_ranges(boxes: Tensor, frame: Frame) -> tuple[Tensor, Tensor]:
    """(N,) bottom and top of each box along the vertical axis (up for LiDAR, down for camera)."""
    if frame == 'lidar':
        return boxes[:, 2], boxes[:, 2] + boxes[:, 5]
    return boxes[:, 1] - boxes[:, 4], boxes[:, 1]


def _box3d_overlap64(a: Tensor, b: Tensor, frame: Frame, aligned: bool) -> Tensor:
    if frame not in ('lidar', 'camera'):
        raise ValueError(f"frame must be 'lidar' or 'camera', got {frame!r}")
    a = a[:, :7].to(torch.float64)
    b = b[:, :7].to(torch.float64)
    height_col = 5 if frame == 'lidar' else 4
    if (a[:, height_col] < 0).any() or (b[:, height_col] < 0).any():
        raise ValueError('box heights must be >= 0')
    lo_a, hi_a = _height_ranges(a, frame)
    lo_b, hi_b = _height_ranges(b, frame)
    if not aligned:
        lo_a, hi_a, lo_b, hi_b = lo_a[:, None], hi_a[:, None], lo_b[None], hi_b[None]
    height = (torch.minimum(hi_a, hi_b) - torch.maximum(lo_a, lo_b)).clamp(min=0)
    bev = _overlap64(boxes3d_to_bev(a, frame), boxes3d_to_bev(b, frame), aligned, height > 0)
    return bev * height


def _volumes(boxes: Tensor) -> Tensor:
    boxes = boxes.to(torch.float64)
    return boxes[:, 3] * boxes[:, 4] * boxes[:, 5]


def box3d_overlap(boxes_a: Tensor, boxes_b: Tensor, frame: Frame = 'lidar',
                  aligned: bool = False) -> Tensor:
    """Intersection volumes of yawed 3D boxes (rotation about the vertical axis only).

    Args:
        boxes_a: (N, 7) LiDAR ``[x, y, z, l, w, h, yaw]`` or camera ``[x, y, z, l, h, w, ry]``
            boxes, bottom centre; columns past 7 are ignored.
        boxes_b: (M, 7) in the same frame; (N, 7) when ``aligned``.
        frame: 'lidar' (z up) or 'camera' (y down).
        aligned: pair ``boxes_a[i]`` with ``boxes_b[i]`` only.

    Returns:
        (N, M) volumes, or (N,) when ``aligned``.
    """
    _check_pairs(boxes_a[:, :7] if boxes_a.dim() == 2 else boxes_a,
                 boxes_b[:, :7] if boxes_b.dim() == 2 else boxes_b, 7, aligned)
    vol = _box3d_overlap64(boxes_a, boxes_b, frame, aligned)
    return vol.to(_result_dtype(boxes_a, boxes_b))


def box3d_iou(boxes_a: Tensor, boxes_b: Tensor, frame: Frame = 'lidar', aligned: bool = False,
              mode: Literal['iou', 'iof'] = 'iou') -> Tensor:
    """3D IoU of yawed boxes (or intersection over ``boxes_a``'s volume with ``mode='iof'``).

    Args:
        boxes_a: (N, 7) LiDAR or camera boxes (see :func:`box3d_overlap`).
        boxes_b: (M, 7); (N, 7) when ``aligned``.
        frame: 'lidar' or 'camera'.
        aligned: pair ``boxes_a[i]`` with ``boxes_b[i]`` only.
        mode: 'iou' or 'iof'.

    Returns:
        (N, M) values in [0, 1], or (N,) when ``aligned``.
    """
    _check_pairs(boxes_a[:, :7] if boxes_a.dim() == 2 else boxes_a,
                 boxes_b[:, :7] if boxes_b.dim() == 2 else boxes_b, 7, aligned)
    vol = _box3d_overlap64(boxes_a, boxes_b, frame, aligned)
    iou = _ratio(vol, _volumes(boxes_a), _volumes(boxes_b), aligned, mode)
    return iou.to(_result_dtype(boxes_a, boxes_b))
