"""Middlebury colour-wheel rendering of optical flow (Baker et al., IJCV 2011).

The hue encodes the direction and the saturation the magnitude: white is no motion, a fully
saturated colour is motion of ``max_flow`` pixels (by default the largest magnitude in the map),
and motion beyond ``max_flow`` is darkened to 75 %. The wheel has the 55 colours of the
Middlebury ``colorcode`` program: red-yellow 15, yellow-green 6, green-cyan 4, cyan-blue 11,
blue-magenta 13, magenta-red 6. Pure rightward motion is red, leftward cyan.
"""
from __future__ import annotations

import numpy as np

from ..datasets.flow_io import UNKNOWN_FLOW

__all__ = ['WHEEL_SEGMENTS', 'flow_to_color', 'make_color_wheel']

# (length, the channel that ramps, 'up' or 'down', the channel held at 255)
WHEEL_SEGMENTS = (('RY', 15), ('YG', 6), ('GC', 4), ('CB', 11), ('BM', 13), ('MR', 6))
# per segment: channel held at 255, channel that ramps, whether it ramps up (0 -> 255)
_RAMPS = ((0, 1, True), (1, 0, False), (1, 2, True), (2, 1, False), (2, 0, True), (0, 2, False))


def make_color_wheel() -> np.ndarray:
    """The ``(55, 3)`` uint8 RGB colour wheel, starting at red and turning through yellow."""
    rows = []
    for (_, length), (held, ramped, up) in zip(WHEEL_SEGMENTS, _RAMPS):
        segment = np.zeros((length, 3), dtype=np.int64)
        ramp = np.floor(255 * np.arange(length) / length).astype(np.int64)
        segment[:, held] = 255
        segment[:, ramped] = ramp if up else 255 - ramp
        rows.append(segment)
    return np.concatenate(rows).astype(np.uint8)


_WHEEL = make_color_wheel().astype(np.float64) / 255


def flow_to_color(flow: np.ndarray, max_flow: float | None = None) -> np.ndarray:
    """Render ``(H, W, 2)`` flow ``(u, v)`` as an ``(H, W, 3)`` uint8 RGB image.

    Args:
        flow: ``(H, W, 2)`` displacements in px (``u`` right, ``v`` down).
        max_flow: the magnitude drawn fully saturated; None uses the largest known magnitude
            (a map without motion is white). Must be positive.

    Unknown pixels (non-finite, or ``|u|`` / ``|v| >= 1e9``, Middlebury's marker) are black.
    """
    flow = np.asarray(flow)
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f'flow_to_color: expected flow of shape (H, W, 2), got {flow.shape}')
    if max_flow is not None and not max_flow > 0:
        raise ValueError(f'flow_to_color: max_flow must be positive, got {max_flow}')
    flow = flow.astype(np.float64)
    known = np.isfinite(flow).all(axis=2) & (np.abs(flow) < UNKNOWN_FLOW).all(axis=2)
    u = np.where(known, flow[..., 0], 0.0)
    v = np.where(known, flow[..., 1], 0.0)
    radius = np.hypot(u, v)
    if max_flow is None:
        max_flow = float(radius.max(initial=0.0))
    if max_flow > 0:
        u, v, radius = u / max_flow, v / max_flow, radius / max_flow

    ncols = len(_WHEEL)
    # atan2(-v, -u): rightward motion (u > 0, v = +0) gives -pi, the wheel's first colour (red).
    position = (np.arctan2(-v, -u) / np.pi + 1) / 2 * (ncols - 1)
    k0 = np.floor(position).astype(np.int64)
    k1 = (k0 + 1) % ncols
    frac = (position - k0)[..., None]
    color = (1 - frac) * _WHEEL[k0 % ncols] + frac * _WHEEL[k1]
    inside = (radius <= 1)[..., None]
    color = np.where(inside, 1 - radius[..., None] * (1 - color), color * 0.75)
    image = np.floor(255 * color).astype(np.uint8)
    image[~known] = 0
    return image
