"""Colours for overlays and renders: a class palette and value -> colour maps.

All colours are RGB ``uint8`` (images in this toolkit are RGB; convert to BGR only when handing an
image to OpenCV's writer). Colour maps are matplotlib's, sampled once into 256-entry look-up tables,
so colouring a disparity map or a point cloud is one vectorised table look-up.
"""
from __future__ import annotations

import functools
import zlib
from typing import Sequence

import numpy as np

# Distinct, saturated colours that read well on dark BEV renders and on street images.
PALETTE = np.array([
    (255, 56, 56), (56, 128, 255), (255, 178, 29), (72, 249, 10), (207, 56, 255),
    (0, 212, 187), (255, 112, 31), (146, 204, 23), (255, 55, 199), (26, 147, 52),
    (0, 194, 255), (187, 212, 0), (132, 56, 255), (255, 157, 151), (52, 69, 147),
    (100, 115, 255),
], dtype=np.uint8)

# Fixed colours for the classes of KITTI and nuScenes, so the same class looks the same everywhere.
CLASS_COLORS: dict[str, tuple[int, int, int]] = {
    'Car': (255, 56, 56), 'car': (255, 56, 56),
    'Van': (255, 112, 31), 'Truck': (255, 178, 29), 'truck': (255, 178, 29),
    'Pedestrian': (56, 128, 255), 'pedestrian': (56, 128, 255),
    'Person_sitting': (0, 194, 255),
    'Cyclist': (72, 249, 10), 'bicycle': (72, 249, 10), 'motorcycle': (146, 204, 23),
    'Tram': (207, 56, 255), 'bus': (207, 56, 255), 'trailer': (187, 212, 0),
    'construction_vehicle': (255, 157, 151), 'barrier': (132, 56, 255),
    'traffic_cone': (255, 55, 199), 'Misc': (200, 200, 200), 'DontCare': (128, 128, 128),
}
GT_COLOR = (0, 255, 0)
DEFAULT_COLOR = (255, 56, 56)
COLORMAPS = ('turbo', 'magma', 'viridis', 'plasma', 'inferno', 'jet', 'gray')


@functools.lru_cache(maxsize=None)
def colormap_lut(cmap: str = 'turbo') -> np.ndarray:
    """``(256, 3)`` uint8 RGB table of matplotlib colour map ``cmap``."""
    if cmap not in COLORMAPS:
        raise ValueError(f'unknown colour map {cmap!r}; choose one of {", ".join(COLORMAPS)}')
    import matplotlib  # imported here: only colour maps need it

    rgba = matplotlib.colormaps[cmap].resampled(256)(np.arange(256))
    lut = np.round(rgba[:, :3] * 255).astype(np.uint8)
    lut.setflags(write=False)  # shared by every caller through the cache
    return lut


def colorize(values: np.ndarray, vmin: float | None = None, vmax: float | None = None,
             cmap: str = 'turbo', invalid_color: Sequence[int] = (0, 0, 0)) -> np.ndarray:
    """Map scalar values to RGB through a colour map.

    Args:
        values: ``(...)`` array (a disparity map ``(H, W)``, per-point heights ``(N,)``...).
        vmin, vmax: values mapped to the first / last colour; values outside are clamped. Default:
            the min / max of the finite values.
        cmap: one of ``COLORMAPS`` (``'turbo'`` for disparity and height, ``'magma'`` for error).
        invalid_color: RGB given to NaN and infinite values (invalid disparity, for example).

    Returns:
        ``(..., 3)`` uint8 RGB; a value at ``vmin + k / 255 * (vmax - vmin)`` gets LUT entry
        ``k`` (rounded to the nearest entry).
    """
    values = np.asarray(values, dtype=np.float64)
    lut = colormap_lut(cmap)
    finite = np.isfinite(values)
    if vmin is None or vmax is None:
        valid = values[finite]
        low, high = (float(valid.min()), float(valid.max())) if valid.size else (0.0, 1.0)
        vmin = low if vmin is None else vmin
        vmax = high if vmax is None else vmax
    if not vmax > vmin:
        # A constant map: give it the bottom colour rather than dividing by zero.
        vmax = vmin + 1.0
    scaled = np.where(finite, (values - vmin) / (vmax - vmin), 0.0)
    index = np.clip(np.rint(scaled * 255), 0, 255).astype(np.intp)
    out = lut[index]
    out[~finite] = np.asarray(invalid_color, dtype=np.uint8)
    return out


def class_color(name: str | int) -> tuple[int, int, int]:
    """A stable RGB colour for a class name (fixed for KITTI / nuScenes classes) or label id."""
    if isinstance(name, (int, np.integer)):
        return tuple(int(c) for c in PALETTE[int(name) % len(PALETTE)])
    if name in CLASS_COLORS:
        return CLASS_COLORS[name]
    # crc32, not hash(): Python salts str hashes per process and colours must not change per run.
    return tuple(int(c) for c in PALETTE[zlib.crc32(str(name).encode()) % len(PALETTE)])


def box_colors(count: int, labels: Sequence | np.ndarray | None = None,
               colors: Sequence | np.ndarray | None = None,
               default: Sequence[int] = DEFAULT_COLOR) -> np.ndarray:
    """``(count, 3)`` uint8 colours for ``count`` boxes.

    ``colors`` wins when given: one RGB triple for all boxes or one per box. Otherwise each box
    takes its label's colour (``class_color``), or ``default`` without labels.
    """
    if colors is not None:
        colors = np.asarray(colors)
        if colors.shape == (3,):
            colors = np.broadcast_to(colors, (count, 3))
        if colors.shape != (count, 3):
            raise ValueError(f'colors must be one RGB triple or ({count}, 3), got {colors.shape}')
        return np.clip(colors, 0, 255).astype(np.uint8)
    if labels is not None:
        # A tensor or array of ids becomes plain ints; a list of names stays a list of str.
        labels = np.asarray(labels).reshape(-1).tolist()
        if len(labels) != count:
            raise ValueError(f'{len(labels)} labels for {count} boxes')
        return np.array([class_color(label) for label in labels], dtype=np.uint8).reshape(count, 3)
    return np.broadcast_to(np.asarray(default, dtype=np.uint8), (count, 3)).copy()
