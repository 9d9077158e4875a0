"""3D boxes without a display: boxes projected on images, bird's-eye-view renders, open3d renders.

Everything here works on a headless machine. Images are RGB ``uint8`` ``(H, W, 3)``; PNGs are
written atomically (a temporary file renamed into place).

Pixel convention (OpenCV's): integer pixel coordinates are pixel centres, so pixel ``(row, col)``
covers ``[col - 0.5, col + 0.5) x [row - 0.5, row + 0.5)``.

Bird's-eye view (``render_bev``): x forward is image up and y left is image left, as seen from
above; with ``x_range = (x_min, x_max)``, ``y_range = (y_min, y_max)`` and ``resolution`` metres per
pixel, a point ``(x, y)`` lands in row ``floor((x_max - x) / resolution)`` and column
``floor((y_max - y) / resolution)``.
"""
from __future__ import annotations

import functools
import importlib.util
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch

from ..engine.fileio import atomic_write_bytes
from ..structures.boxes3d import Boxes3D, LiDARBoxes3D
from ..structures.calibration import to_homogeneous
from .colors import GT_COLOR, box_colors, colorize

# The 12 edges of a box, as pairs of indices into ``Boxes3D.corners`` (0-3 back face, 4-7 front).
BOX_EDGES = np.array([[0, 1], [1, 2], [2, 3], [3, 0],      # back face
                      [4, 5], [5, 6], [6, 7], [7, 4],      # front face
                      [0, 4], [1, 5], [2, 6], [3, 7]])     # sides
# The front face's diagonals: a cross marks which way the box heads.
FRONT_CROSS = np.array([[4, 6], [5, 7]])
DRAW_EDGES = np.concatenate([BOX_EDGES, FRONT_CROSS])
NEAR_PLANE = 0.1
_SHIFT = 4  # OpenCV fixed-point bits: lines are drawn with 1/16 px precision
_BACKGROUND = (0, 0, 0)
# Default colour ranges of render_bev: heights in metres relative to the sensor (the ground lies
# 1.7-1.9 m below KITTI's and nuScenes' roof LiDARs).
_HEIGHT_RANGE = (-2.5, 1.5)


# --------------------------------------------------------------------------------------- helpers
def _as_numpy(array, name: str) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        return array.detach().cpu().numpy()
    if hasattr(array, 'tensor') and isinstance(array.tensor, torch.Tensor):  # Points / Boxes3D
        return array.tensor.detach().cpu().numpy()
    try:
        return np.asarray(array)
    except Exception as error:  # pragma: no cover - only for exotic inputs
        raise TypeError(f'{name}: cannot convert {type(array).__name__} to an array') from error


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f'image must be (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}')
    return image


def _check_points(points) -> np.ndarray:
    points = _as_numpy(points, 'points')
    if points.ndim != 2 or points.shape[1] < 3:
        raise ValueError(f'points must be (N, >=3) [x, y, z, ...], got shape {points.shape}')
    return points


def _check_projection(projection) -> np.ndarray:
    projection = np.asarray(_as_numpy(projection, 'projection'), dtype=np.float64)
    if projection.shape not in ((3, 4), (4, 4)):
        raise ValueError(f'projection must be 3x4 or 4x4 (boxes frame -> pixels), '
                         f'got {projection.shape}')
    return to_homogeneous(projection)[:3]


def _fixed_point(pixels: np.ndarray) -> np.ndarray:
    """Float pixel coordinates -> int32 for OpenCV drawing calls with ``shift=_SHIFT``."""
    return np.rint(pixels * (1 << _SHIFT)).astype(np.int32)


def write_png(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write an RGB ``(H, W, 3)`` uint8 image as PNG: to a temporary file, then renamed."""
    path = Path(path)
    image = _check_image(image)
    ok, encoded = cv2.imencode('.png', cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f'{path}: OpenCV could not encode the image as PNG')
    return atomic_write_bytes(path, encoded.tobytes(), durable=False)


# ------------------------------------------------------------------------------ projection maths
def project_edges(corners: np.ndarray, edges: np.ndarray, projection: np.ndarray,
                  near: float = NEAR_PLANE) -> tuple[np.ndarray, np.ndarray]:
    """Project box edges, clipped against the camera's near plane.

    The projection is linear in homogeneous coordinates, so the clipping happens there: along an
    edge the depth (third row of ``projection @ [X, 1]``, the camera z for ``P2`` or
    ``lidar2img``) changes linearly, and an end behind ``near`` is moved to where the edge crosses
    it. Without this, an end behind the camera projects to the mirrored side of the image and the
    line wraps across it.

    Args:
        corners: ``(N, K, 3)`` corners in the frame ``projection`` maps from.
        edges: ``(E, 2)`` pairs of corner indices.
        projection: 3x4 or 4x4 matrix, frame -> ``[u*s, v*s, s]``.
        near: smallest depth kept (metres).

    Returns:
        ``(N, E, 2, 2)`` pixel coordinates ``[[u0, v0], [u1, v1]]`` of each (clipped) edge and an
        ``(N, E)`` mask, False for edges entirely behind the near plane.
    """
    corners = np.asarray(corners, dtype=np.float64)
    if corners.ndim != 3 or corners.shape[2] != 3:
        raise ValueError(f'corners must be (N, K, 3), got {corners.shape}')
    edges = np.asarray(edges, dtype=np.intp).reshape(-1, 2)
    projection = _check_projection(projection)
    homogeneous = corners @ projection[:, :3].T + projection[:, 3]     # (N, K, 3)
    start, end = homogeneous[:, edges[:, 0]], homogeneous[:, edges[:, 1]]   # (N, E, 3)
    d0, d1 = start[..., 2], end[..., 2]
    valid = (d0 >= near) | (d1 >= near)
    with np.errstate(divide='ignore', invalid='ignore'):
        t = (near - d0) / (d1 - d0)  # where the edge crosses the near plane
    t = np.where(np.isfinite(t), t, 0.0)[..., None]
    crossing = start + t * (end - start)
    start = np.where((d0 < near)[..., None], crossing, start)
    end = np.where((d1 < near)[..., None], crossing, end)
    ends = np.stack([start, end], axis=-2)                              # (N, E, 2, 3)
    depth = np.where(valid[..., None], ends[..., 2], 1.0)  # dropped edges: avoid 0 / 0
    return ends[..., :2] / depth[..., None], valid


def clip_segments(segments: np.ndarray, width: float, height: float,
                  margin: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Clip 2D segments to the image rectangle (Liang-Barsky, vectorised).

    Args:
        segments: ``(..., 2, 2)`` segments ``[[u0, v0], [u1, v1]]`` in pixels.
        width, height: image size; the rectangle is ``[-0.5 - margin, width - 0.5 + margin]`` by
            ``[-0.5 - margin, height - 0.5 + margin]`` (pixel edges, plus ``margin``).

    Returns:
        The clipped segments (same shape) and a ``(...)`` mask of segments that meet the rectangle.
    """
    segments = np.asarray(segments, dtype=np.float64)
    p0, delta = segments[..., 0, :], segments[..., 1, :] - segments[..., 0, :]
    low = np.array([-0.5 - margin, -0.5 - margin])
    high = np.array([width - 0.5 + margin, height - 0.5 + margin])
    # For each of the four sides: p * t <= q keeps the point p0 + t * delta inside.
    p = np.concatenate([-delta, delta], axis=-1)                     # (..., 4)
    q = np.concatenate([p0 - low, high - p0], axis=-1)
    with np.errstate(divide='ignore', invalid='ignore'):
        ratio = q / p
    parallel = p == 0
    outside_parallel = (parallel & (q < 0)).any(axis=-1)
    t0 = np.where(p < 0, ratio, -np.inf).max(axis=-1).clip(min=0.0)
    t1 = np.where(p > 0, ratio, np.inf).min(axis=-1).clip(max=1.0)
    keep = (t0 <= t1) & ~outside_parallel
    clipped = np.stack([p0 + t0[..., None] * delta, p0 + t1[..., None] * delta], axis=-2)
    return np.where(keep[..., None, None], clipped, segments), keep


def projected_box_extents(boxes: Boxes3D, projection, image_size: tuple[int, int] | None = None,
                          near: float = NEAR_PLANE) -> np.ndarray:
    """2D boxes ``[x1, y1, x2, y2]`` enclosing the projected 3D boxes.

    The enclosing box of the projected corners (corners behind ``near`` replaced by the points
    where the box edges cross the near plane), then intersected with the image when
    ``image_size = (height, width)`` is given; as KITTI-style tools clip a projected box.

    Returns:
        ``(N, 4)`` float64 pixels; rows of boxes entirely behind the camera, or outside the image,
        are NaN.
    """
    corners = _as_numpy(boxes.corners, 'boxes').astype(np.float64)
    segments, valid = project_edges(corners, BOX_EDGES, projection, near)
    ends = np.where(valid[..., None, None], segments, np.nan).reshape(len(corners), -1, 2)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', RuntimeWarning)  # all-NaN rows: boxes behind the camera
        extents = np.concatenate([np.nanmin(ends, axis=1), np.nanmax(ends, axis=1)], axis=1)
    if image_size is not None:
        height, width = image_size
        outside = ((extents[:, 2] < 0) | (extents[:, 0] > width - 1) |
                   (extents[:, 3] < 0) | (extents[:, 1] > height - 1))
        extents[:, [0, 2]] = extents[:, [0, 2]].clip(0, width - 1)
        extents[:, [1, 3]] = extents[:, [1, 3]].clip(0, height - 1)
        extents[outside] = np.nan
    return extents


# ------------------------------------------------------------------------------- image overlays
def draw_projected_boxes(image: np.ndarray, boxes: Boxes3D, projection,
                         labels: Sequence | None = None, scores: Sequence[float] | None = None,
                         colors: Sequence | np.ndarray | None = None, thickness: int = 2,
                         class_names: Sequence[str] | None = None,
                         near: float = NEAR_PLANE) -> np.ndarray:
    """Draw 3D boxes projected into an image; returns a new image.

    Each box gets its 12 edges and a cross on its front face (corners 4-7). Edges are clipped to
    the near plane ``near`` in camera space, so boxes partly behind the camera are drawn up to the
    plane; boxes entirely behind it are skipped.

    Args:
        image: ``(H, W, 3)`` uint8 RGB; not modified.
        boxes: ``(N,)`` boxes (``CameraBoxes3D`` with ``P2``, ``LiDARBoxes3D`` with ``lidar2img``).
        projection: 3x4 / 4x4 matrix from the boxes' frame to pixels ``[u*s, v*s, s]``.
        labels: ``(N,)`` class names or ids: colour each box by class and caption it.
        scores: ``(N,)`` scores, added to the captions.
        colors: one RGB triple or ``(N, 3)``; overrides the class colours.
        thickness: line width in pixels.
        class_names: names of integer ``labels`` for the captions.

    Returns:
        ``(H, W, 3)`` uint8 RGB copy of ``image`` with the boxes drawn.
    """
    canvas = np.ascontiguousarray(_check_image(image)).copy()
    height, width = canvas.shape[:2]
    count = len(boxes)
    if scores is not None and len(scores) != count:
        raise ValueError(f'{len(scores)} scores for {count} boxes')
    if count == 0:
        return canvas
    box_rgb = box_colors(count, labels, colors)
    corners = _as_numpy(boxes.corners, 'boxes').astype(np.float64)
    segments, valid = project_edges(corners, DRAW_EDGES, projection, near)
    # A margin beyond the image keeps thick lines that run along the border whole.
    segments, inside = clip_segments(segments, width, height, margin=thickness)
    keep = valid & inside                                               # (N, E)
    box_index = np.broadcast_to(np.arange(count)[:, None], keep.shape)[keep]
    lines = _fixed_point(segments[keep])                                # (M, 2, 2)
    line_rgb = box_rgb[box_index]
    # One polylines call per colour (classes), not one call per line.
    unique_rgb, group = np.unique(line_rgb, axis=0, return_inverse=True)
    for colour_index, rgb in enumerate(unique_rgb):
        group_lines = lines[group.reshape(-1) == colour_index].reshape(-1, 2, 1, 2)
        cv2.polylines(canvas, list(group_lines), False, tuple(int(c) for c in rgb),
                      thickness, cv2.LINE_AA, _SHIFT)

    if labels is not None or scores is not None:
        extents = projected_box_extents(boxes, projection, (height, width), near)
        _draw_captions(canvas, extents, box_rgb, labels, scores, class_names)
    return canvas


def _draw_captions(canvas: np.ndarray, extents: np.ndarray, box_rgb: np.ndarray,
                   labels: Sequence | None, scores: Sequence[float] | None,
                   class_names: Sequence[str] | None) -> None:
    """Write ``label score`` above each visible box (one text call per box: captions are few)."""
    labels = None if labels is None else np.asarray(labels).reshape(-1).tolist()
    scores = None if scores is None else np.asarray(scores, dtype=np.float64).reshape(-1)
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.45
    for i in np.flatnonzero(np.isfinite(extents).all(axis=1)):
        parts = []
        if labels is not None:
            label = labels[i]
            if class_names is not None and isinstance(label, int):
                label = class_names[label]
            parts.append(str(label))
        if scores is not None:
            parts.append(f'{scores[i]:.2f}')
        text = ' '.join(parts)
        (text_w, text_h), baseline = cv2.getTextSize(text, font, scale, 1)
        x = int(np.clip(extents[i, 0], 0, max(canvas.shape[1] - text_w - 1, 0)))
        y = int(np.clip(extents[i, 1] - 3, text_h + 1, canvas.shape[0] - baseline - 1))
        cv2.rectangle(canvas, (x, y - text_h - 1), (x + text_w, y + baseline - 1),
                      tuple(int(c) for c in box_rgb[i]), cv2.FILLED)
        cv2.putText(canvas, text, (x, y - 1), font, scale, (0, 0, 0), 1, cv2.LINE_AA)


# --------------------------------------------------------------------------- bird's-eye view
def bev_image_size(x_range: Sequence[float], y_range: Sequence[float],
                   resolution: float) -> tuple[int, int]:
    """``(height, width)`` in pixels of a BEV render (rows along x, columns along y)."""
    if resolution <= 0:
        raise ValueError(f'resolution must be > 0 m/px, got {resolution}')
    if not (x_range[1] > x_range[0] and y_range[1] > y_range[0]):
        raise ValueError(f'ranges must be (min, max) with max > min, got x {x_range}, '
                         f'y {y_range}')
    return (int(round((x_range[1] - x_range[0]) / resolution)),
            int(round((y_range[1] - y_range[0]) / resolution)))


def bev_pixels(xy: np.ndarray, x_range: Sequence[float], y_range: Sequence[float],
               resolution: float) -> np.ndarray:
    """``(..., 2)`` LiDAR ``(x, y)`` -> ``(..., 2)`` continuous BEV pixel ``(u, v)`` (column, row).

    Pixel centres are integers: ``(u, v) = ((y_max - y) / res - 0.5, (x_max - x) / res - 0.5)``.
    """
    xy = np.asarray(xy, dtype=np.float64)
    return np.stack([(y_range[1] - xy[..., 1]) / resolution - 0.5,
                     (x_range[1] - xy[..., 0]) / resolution - 0.5], axis=-1)


def rasterize_points(points: np.ndarray, x_range: Sequence[float] = (0, 70.4),
                     y_range: Sequence[float] = (-40, 40), resolution: float = 0.1,
                     color_by: str = 'height', value_range: Sequence[float] | None = None,
                     cmap: str = 'turbo') -> np.ndarray:
    """Top view of a point cloud: each pixel holding points gets a colour, others stay black.

    Args:
        points: ``(N, >=3)`` ``[x, y, z, (intensity), ...]`` in the LiDAR frame.
        color_by: ``'height'`` (highest z in the pixel: what a top view sees), ``'intensity'``
            (mean of column 3) or ``'density'`` (log point count).
        value_range: ``(vmin, vmax)`` of the colour map; default heights (-2.5, 1.5) m, intensity
            0 to its 99th percentile, density 0 to the maximum.

    Returns:
        ``(H, W, 3)`` uint8 RGB, ``(H, W) = bev_image_size(...)``.
    """
    points = _check_points(points)
    height, width = bev_image_size(x_range, y_range, resolution)
    # float64: in float32 (the files' type) points near a pixel border can round to the next one.
    xy = points[:, :2].astype(np.float64)
    rows = np.floor((x_range[1] - xy[:, 0]) / resolution)
    cols = np.floor((y_range[1] - xy[:, 1]) / resolution)
    inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
    flat = (rows[inside] * width + cols[inside]).astype(np.intp)
    counts = np.bincount(flat, minlength=height * width)
    occupied = counts > 0
    if color_by == 'height':
        values = np.full(height * width, -np.inf)
        np.maximum.at(values, flat, points[inside, 2].astype(np.float64))
        default = _HEIGHT_RANGE
    elif color_by == 'intensity':
        if points.shape[1] < 4:
            raise ValueError('color_by="intensity" needs points with a 4th (intensity) column')
        sums = np.bincount(flat, weights=points[inside, 3].astype(np.float64),
                           minlength=height * width)
        values = sums / np.maximum(counts, 1)
        top = float(np.percentile(points[inside, 3], 99)) if inside.any() else 1.0
        default = (0.0, top if top > 0 else 1.0)
    elif color_by == 'density':
        values = np.log1p(counts.astype(np.float64))
        default = (0.0, max(float(values.max()), 1.0))
    else:
        raise ValueError(f"color_by must be 'height', 'intensity' or 'density', got {color_by!r}")
    vmin, vmax = value_range if value_range is not None else default
    image = np.zeros((height * width, 3), dtype=np.uint8)
    image[:] = _BACKGROUND
    image[occupied] = colorize(values[occupied], vmin, vmax, cmap)
    return image.reshape(height, width, 3)


def draw_bev_boxes(canvas: np.ndarray, boxes: Boxes3D, x_range: Sequence[float],
                   y_range: Sequence[float], resolution: float,
                   box_rgb: np.ndarray, thickness: int = 1) -> np.ndarray:
    """Draw boxes on a BEV image in place: rotated rectangles and a centre-to-front heading tick.

    ``boxes`` must be LiDAR-frame boxes (the horizontal plane is (x, y)); ``box_rgb`` is
    ``(N, 3)`` uint8. Returns ``canvas``.
    """
    if len(boxes) == 0:
        return canvas
    if not isinstance(boxes, LiDARBoxes3D):
        raise TypeError(f'render_bev draws LiDARBoxes3D, got {type(boxes).__name__}; convert with '
                        "boxes.convert_to('lidar', cam2lidar)")
    corners = _as_numpy(boxes.corners, 'boxes').astype(np.float64)[..., :2]   # (N, 8, 2)
    outline = bev_pixels(corners[:, [0, 3, 7, 4]], x_range, y_range, resolution)  # bottom face
    centre = bev_pixels(corners[:, [0, 3, 7, 4]].mean(axis=1), x_range, y_range, resolution)
    front = bev_pixels(corners[:, [4, 7]].mean(axis=1), x_range, y_range, resolution)
    tick = np.stack([centre, front], axis=1)                                   # (N, 2, 2)
    unique_rgb, group = np.unique(box_rgb, axis=0, return_inverse=True)
    group = group.reshape(-1)
    for colour_index, rgb in enumerate(unique_rgb):
        members = group == colour_index
        colour = tuple(int(c) for c in rgb)
        cv2.polylines(canvas, list(_fixed_point(outline[members]).reshape(-1, 4, 1, 2)), True,
                      colour, thickness, cv2.LINE_8, _SHIFT)
        cv2.polylines(canvas, list(_fixed_point(tick[members]).reshape(-1, 2, 1, 2)), False,
                      colour, thickness, cv2.LINE_8, _SHIFT)
    return canvas


def render_bev(points, boxes: LiDARBoxes3D | None = None, out_path: str | os.PathLike | None = None,
               x_range: Sequence[float] = (0, 70.4), y_range: Sequence[float] = (-40, 40),
               resolution: float = 0.1, gt_boxes: LiDARBoxes3D | None = None,
               labels: Sequence | None = None, colors: Sequence | np.ndarray | None = None,
               color_by: str = 'height', value_range: Sequence[float] | None = None,
               thickness: int = 1) -> np.ndarray:
    """Bird's-eye-view render of a point cloud and boxes (x forward = image up, y left = left).

    Args:
        points: ``(N, >=3)`` LiDAR-frame points (array, tensor or ``Points``); may be empty.
        boxes: ``LiDARBoxes3D`` (e.g. predictions), coloured by ``labels`` / ``colors``.
        out_path: write the render there as PNG (atomically) when given.
        x_range, y_range: the metres shown; ``resolution`` in metres per pixel.
        gt_boxes: ``LiDARBoxes3D`` drawn in green under ``boxes``.
        labels, colors: per-box class (names or ids) / colours of ``boxes``.
        color_by, value_range: point colouring, see ``rasterize_points``.

    Returns:
        ``(H, W, 3)`` uint8 RGB, ``H = (x_max - x_min) / resolution``,
        ``W = (y_max - y_min) / resolution``.
    """
    canvas = rasterize_points(points, x_range, y_range, resolution, color_by, value_range)
    if gt_boxes is not None:
        draw_bev_boxes(canvas, gt_boxes, x_range, y_range, resolution,
                       box_colors(len(gt_boxes), colors=GT_COLOR), thickness)
    if boxes is not None:
        draw_bev_boxes(canvas, boxes, x_range, y_range, resolution,
                       box_colors(len(boxes), labels, colors), thickness)
    if out_path is not None:
        write_png(out_path, canvas)
    return canvas


# ---------------------------------------------------------------------------------- open3d
def _headless_env() -> None:
    """Without a display, open3d must render through EGL's surfaceless platform (Mesa's software
    renderer on CPU machines); otherwise creating its renderer crashes the process."""
    if not os.environ.get('DISPLAY'):
        os.environ.setdefault('EGL_PLATFORM', 'surfaceless')


@functools.lru_cache(maxsize=1)
def open3d_can_render() -> bool:
    """Whether open3d is installed and can create an offscreen renderer here.

    Checked once, in a child process: on a machine without a working EGL, open3d does not raise
    but kills the process (segmentation fault), so the check must not run in ours.
    """
    if importlib.util.find_spec('open3d') is None:
        return False
    env = dict(os.environ)
    if not env.get('DISPLAY'):
        env.setdefault('EGL_PLATFORM', 'surfaceless')
    probe = ('import open3d.visualization.rendering as r; '
             'renderer = r.OffscreenRenderer(16, 16); print("ok")')
    try:
        result = subprocess.run([sys.executable, '-c', probe], env=env, capture_output=True,
                                text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0 and 'ok' in result.stdout


def render_points_open3d(points, boxes: Boxes3D | None = None,
                         out_path: str | os.PathLike | None = None, width: int = 1280,
                         height: int = 720, labels: Sequence | None = None,
                         colors: Sequence | np.ndarray | None = None,
                         gt_boxes: Boxes3D | None = None,
                         color_by: str = 'height', point_size: float = 2.0,
                         eye: Sequence[float] = (-12.0, 0.0, 18.0),
                         center: Sequence[float] = (20.0, 0.0, 0.0),
                         up: Sequence[float] = (0.0, 0.0, 1.0),
                         field_of_view: float = 60.0) -> np.ndarray:
    """Perspective render of points and box wireframes with open3d's offscreen renderer.

    Needs ``open3d`` (the ``[viz]`` extra); without a display it renders through EGL
    (``EGL_PLATFORM=surfaceless``). The default camera looks forward (+x) from behind and above
    the sensor; for nuScenes' LiDAR frame (y forward) pass ``center=(0, 20, 0)``,
    ``eye=(0, -12, 18)``.

    Args:
        points: ``(N, >=3)`` points, coloured by height (``'height'``) or column 3
            (``'intensity'``).
        boxes: boxes in the points' frame, drawn as their 12 edges plus the front cross, coloured
            by ``labels`` / ``colors``.
        out_path: PNG written atomically when given.
        gt_boxes: more boxes, drawn in green.
        width, height: image size in pixels.

    Returns:
        ``(height, width, 3)`` uint8 RGB.
    """
    try:
        import open3d as o3d
    except ImportError as error:
        raise ImportError('render_points_open3d needs open3d: pip install "perception[viz]" '
                          '(or use render_bev, which needs only OpenCV)') from error
    points = _check_points(points)
    _headless_env()
    if color_by == 'height':
        point_rgb = colorize(points[:, 2], *_HEIGHT_RANGE)
    elif color_by == 'intensity':
        if points.shape[1] < 4:
            raise ValueError('color_by="intensity" needs points with a 4th (intensity) column')
        top = float(np.percentile(points[:, 3], 99)) if len(points) else 1.0
        point_rgb = colorize(points[:, 3], 0.0, top if top > 0 else 1.0)
    else:
        raise ValueError(f"color_by must be 'height' or 'intensity', got {color_by!r}")

    rendering = o3d.visualization.rendering
    renderer = rendering.OffscreenRenderer(int(width), int(height))
    scene = renderer.scene
    scene.set_background([0.0, 0.0, 0.0, 1.0])
    # Without tone mapping and gamma the rendered colours are the colours given.
    scene.view.set_post_processing(False)
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points[:, :3].astype(np.float64)))
    cloud.colors = o3d.utility.Vector3dVector(point_rgb.astype(np.float64) / 255)
    point_material = rendering.MaterialRecord()
    point_material.shader = 'defaultUnlit'
    point_material.point_size = float(point_size)
    scene.add_geometry('points', cloud, point_material)

    wire_corners, wire_rgb = [], []
    if gt_boxes is not None and len(gt_boxes):
        wire_corners.append(_as_numpy(gt_boxes.corners, 'gt_boxes').astype(np.float64))
        wire_rgb.append(box_colors(len(gt_boxes), colors=GT_COLOR))
    if boxes is not None and len(boxes):
        wire_corners.append(_as_numpy(boxes.corners, 'boxes').astype(np.float64))
        wire_rgb.append(box_colors(len(boxes), labels, colors))
    if wire_corners:
        corners = np.concatenate(wire_corners)                                   # (N, 8, 3)
        count = len(corners)
        indices = (DRAW_EDGES[None] + 8 * np.arange(count)[:, None, None]).reshape(-1, 2)
        edge_rgb = np.repeat(np.concatenate(wire_rgb), len(DRAW_EDGES), axis=0)
        wireframe = o3d.geometry.LineSet(o3d.utility.Vector3dVector(corners.reshape(-1, 3)),
                                         o3d.utility.Vector2iVector(indices.astype(np.int32)))
        wireframe.colors = o3d.utility.Vector3dVector(edge_rgb.astype(np.float64) / 255)
        line_material = rendering.MaterialRecord()
        line_material.shader = 'unlitLine'
        line_material.line_width = 2.0
        scene.add_geometry('boxes', wireframe, line_material)

    renderer.setup_camera(float(field_of_view), np.asarray(center, dtype=np.float32),
                          np.asarray(eye, dtype=np.float32), np.asarray(up, dtype=np.float32))
    image = np.ascontiguousarray(np.asarray(renderer.render_to_image())[..., :3], dtype=np.uint8)
    del renderer
    if out_path is not None:
        write_png(out_path, image)
    return image


def render_scene(points, boxes: LiDARBoxes3D | None = None,
                 out_path: str | os.PathLike | None = None, backend: str = 'auto',
                 width: int = 1280, height: int = 720, labels: Sequence | None = None,
                 colors: Sequence | np.ndarray | None = None, **bev_kwargs) -> np.ndarray:
    """Render points and boxes with open3d when it can render here, else as a BEV image.

    Args:
        backend: ``'auto'`` (open3d if ``open3d_can_render()``, else BEV), ``'open3d'`` or
            ``'bev'``.
        width, height: size of the open3d render (the BEV size follows its ranges / resolution).
        bev_kwargs: passed to ``render_bev`` (``x_range``, ``y_range``, ``resolution``,
            ``gt_boxes``, ``color_by``...); the open3d render uses ``gt_boxes`` and ``color_by``
            of them and shows the whole cloud.

    Returns:
        ``(H, W, 3)`` uint8 RGB (also written to ``out_path`` as PNG when given).
    """
    if backend not in ('auto', 'open3d', 'bev'):
        raise ValueError(f"backend must be 'auto', 'open3d' or 'bev', got {backend!r}")
    if backend == 'open3d' or (backend == 'auto' and open3d_can_render()):
        return render_points_open3d(points, boxes, out_path, width, height, labels=labels,
                                    colors=colors, gt_boxes=bev_kwargs.get('gt_boxes'),
                                    color_by=bev_kwargs.get('color_by', 'height'))
    return render_bev(points, boxes, out_path, labels=labels, colors=colors, **bev_kwargs)
