"""Disparity colour maps with a colour bar, segmentation overlays, and reading predictions to draw.

Headless (OpenCV and NumPy; matplotlib only for its colour tables). Images are RGB ``uint8``.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from ..engine.errors import DataError
from ..structures.boxes3d import CameraBoxes3D, LiDARBoxes3D
from .colors import PALETTE, colorize

__all__ = ['add_colorbar', 'colorize_disparity', 'default_palette', 'load_box_predictions',
           'overlay_segmentation', 'read_disparity', 'read_label_map_any']

KITTI_CLASSES = ('Car', 'Pedestrian', 'Cyclist')


# ----------------------------------------------------------------------------- disparity
def read_disparity(path: str | os.PathLike) -> np.ndarray:
    """``(H, W)`` float32 disparity from a KITTI 16-bit PNG (0 -> NaN), a PFM or a ``.npy``.

    Invalid pixels (KITTI 0, PFM ``inf``) are returned as NaN.
    """
    from ..datasets.stereo_io import read_kitti_disparity, read_pfm

    path = os.fspath(path)
    suffix = Path(path).suffix.lower()
    if suffix == '.png':
        disp, valid = read_kitti_disparity(path)
        return np.where(valid, disp, np.nan).astype(np.float32)
    if suffix == '.pfm':
        disp = read_pfm(path)
    elif suffix in ('.npy', '.npz'):
        if not os.path.isfile(path):
            raise DataError(f'{path}: disparity file not found')
        loaded = np.load(path)
        disp = loaded[_npz_key(loaded, ('disparity', 'disp'), path)] if suffix == '.npz' \
            else loaded
    else:
        raise DataError(f'{path}: unknown disparity format {suffix!r} (expected .png, .pfm, '
                        '.npy or .npz)')
    disp = np.asarray(disp, dtype=np.float32)
    if disp.ndim == 3 and disp.shape[-1] == 1:
        disp = disp[..., 0]
    if disp.ndim != 2:
        raise DataError(f'{path}: a disparity map must be (H, W), got {disp.shape}')
    return np.where(np.isfinite(disp), disp, np.nan).astype(np.float32)


def _npz_key(loaded, names: Sequence[str], path: str) -> str:
    for name in names:
        if name in loaded:
            return name
    raise DataError(f'{path}: no array named {" or ".join(names)} (found {list(loaded)})')


def add_colorbar(image: np.ndarray, vmin: float, vmax: float, cmap: str = 'turbo',
                 width: int = 24, label_width: int = 64, ticks: int = 5) -> np.ndarray:
    """Append a vertical colour bar (``vmax`` at the top) with ``ticks`` value labels.

    Returns ``(H, W + width + label_width, 3)``: the image, then the bar (row ``r`` has the colour
    of ``vmax - r / (H - 1) * (vmax - vmin)``), then a black strip with the tick values.
    """
    height = image.shape[0]
    values = np.linspace(vmax, vmin, height)
    bar = np.repeat(colorize(values, vmin, vmax, cmap)[:, None], width, axis=1)
    labels = np.zeros((height, label_width, 3), np.uint8)
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.4
    for k in range(ticks):
        row = int(round(k * (height - 1) / max(ticks - 1, 1)))
        value = vmax - k * (vmax - vmin) / max(ticks - 1, 1)
        (_, text_h), _ = cv2.getTextSize(f'{value:.1f}', font, scale, 1)
        y = int(np.clip(row + text_h // 2, text_h, height - 2))
        cv2.putText(labels, f'{value:.1f}', (4, y), font, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return np.concatenate([image, bar, labels], axis=1)


def colorize_disparity(disp: np.ndarray, vmin: float | None = None, vmax: float | None = None,
                       cmap: str = 'turbo', colorbar: bool = True) -> np.ndarray:
    """Colour map of a disparity map; invalid pixels (NaN, inf, ``<= 0``) black.

    Args:
        disp: ``(H, W)`` pixels. vmin / vmax: the colour range (default: min / max of the
            valid pixels).
        colorbar: append :func:`add_colorbar` on the right.

    Returns:
        ``(H, W, 3)`` uint8 RGB (wider with the colour bar).
    """
    disp = np.asarray(disp, dtype=np.float64)
    if disp.ndim != 2:
        raise ValueError(f'disparity must be (H, W), got {disp.shape}')
    valid = np.isfinite(disp) & (disp > 0)
    shown = np.where(valid, disp, np.nan)
    finite = disp[valid]
    low = float(finite.min()) if finite.size else 0.0
    high = float(finite.max()) if finite.size else 1.0
    vmin = low if vmin is None else float(vmin)
    vmax = high if vmax is None else float(vmax)
    if not vmax > vmin:
        vmax = vmin + 1.0
    image = colorize(shown, vmin, vmax, cmap)
    return add_colorbar(image, vmin, vmax, cmap) if colorbar else image


# ----------------------------------------------------------------------------- segmentation
def default_palette(num_classes: int) -> np.ndarray:
    """``(num_classes, 3)`` uint8: the toolkit's box palette, cycled."""
    return PALETTE[np.arange(num_classes) % len(PALETTE)]


def read_label_map_any(path: str | os.PathLike) -> np.ndarray:
    """``(H, W)`` int64 class indices from a single-channel PNG, a ``.npy`` or an API ``.npz``
    (array ``labels`` / ``label_map`` / ``seg``)."""
    path = os.fspath(path)
    suffix = Path(path).suffix.lower()
    if suffix in ('.npy', '.npz'):
        if not os.path.isfile(path):
            raise DataError(f'{path}: label map not found')
        loaded = np.load(path)
        labels = loaded[_npz_key(loaded, ('labels', 'label_map', 'seg'), path)] \
            if suffix == '.npz' else loaded
    else:
        from ..datasets.transforms.segmentation import read_label_map

        labels = read_label_map(path)
    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f'{path}: a label map must be (H, W) integers, got {labels.shape} '
                        f'{labels.dtype}')
    return labels.astype(np.int64)


def overlay_segmentation(image: np.ndarray | None, labels: np.ndarray,
                         palette: Sequence[Sequence[int]] | np.ndarray, alpha: float = 0.5,
                         ignore_index: int = 255) -> np.ndarray:
    """Blend the palette colours of ``labels`` over ``image``.

    Args:
        image: ``(H, W, 3)`` uint8 RGB, or ``None`` for the colour map alone (on black).
        labels: ``(H, W)`` class indices; ``ignore_index`` pixels keep the image.
        palette: ``(K, 3)`` RGB per class.
        alpha: weight of the class colour: ``out = (1 - alpha) * image + alpha * colour``,
            rounded.

    Raises:
        ValueError: sizes differ, or a label has no palette entry.
    """
    labels = np.asarray(labels)
    palette = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
    if image is None:
        image, alpha = np.zeros((*labels.shape, 3), np.uint8), 1.0
    if image.shape[:2] != labels.shape or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f'image {image.shape} and labels {labels.shape} must be (H, W, 3) and '
                         '(H, W) of one size')
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f'alpha must lie in [0, 1], got {alpha}')
    shown = labels != ignore_index
    if shown.any() and (labels[shown].min() < 0 or labels[shown].max() >= len(palette)):
        raise ValueError(f'labels {int(labels[shown].min())}..{int(labels[shown].max())} need a '
                         f'palette of more than {len(palette)} colours')
    out = image.copy()
    colours = palette[labels[shown]].astype(np.float64)
    out[shown] = np.rint((1 - alpha) * image[shown] + alpha * colours).astype(np.uint8)
    return out


# ----------------------------------------------------------------------------- predictions
def load_box_predictions(path: str | os.PathLike, frame: str, cam2lidar: np.ndarray | None = None,
                         classes: Sequence[str] = KITTI_CLASSES,
                         score_thr: float = 0.0) -> tuple:
    """3D boxes to draw from a KITTI label / detection file or an inference-API ``.npz``.

    Args:
        path: ``.txt`` (KITTI ``label_2`` lines, with or without a 16th score field; DontCare
            lines skipped; boxes in the rectified camera frame) or ``.npz`` with ``boxes_3d``
            ``(N, 7|9)`` (camera boxes for mono3D results, LiDAR boxes for lidar3d results:
            ``frame`` says which), ``scores``, ``labels`` (indices into ``classes``).
        frame: ``'camera'`` or ``'lidar'``: the frame the caller wants the boxes in.
        cam2lidar: 4x4 rectified camera -> LiDAR (KITTI ``calib.cam2lidar``), needed to move
            camera boxes to the LiDAR frame.
        score_thr: drop boxes scoring below it (files without scores keep everything).

    Returns:
        ``(boxes, names, scores)``: ``CameraBoxes3D`` / ``LiDARBoxes3D`` in ``frame``, a list of
        class names, and ``(N,)`` scores or ``None``.
    """
    from ..datasets.kitti_format import read_label_file

    path = os.fspath(path)
    if frame not in ('camera', 'lidar'):
        raise ValueError(f"frame must be 'camera' or 'lidar', got {frame!r}")
    if path.endswith('.npz'):
        if not os.path.isfile(path):
            raise DataError(f'{path}: prediction file not found')
        loaded = np.load(path)
        if 'boxes_3d' not in loaded:
            raise DataError(f'{path}: no boxes_3d array (found {list(loaded)})')
        tensor = np.asarray(loaded['boxes_3d'], dtype=np.float32)
        if tensor.size == 0:
            tensor = tensor.reshape(0, 7)
        if tensor.ndim != 2 or tensor.shape[1] not in (7, 9):
            raise DataError(f'{path}: boxes_3d must be (N, 7) or (N, 9), got {tensor.shape}')
        scores = np.asarray(loaded['scores'], dtype=np.float64) if 'scores' in loaded else None
        labels = np.asarray(loaded['labels']).astype(np.int64) if 'labels' in loaded \
            else np.zeros(len(tensor), np.int64)
        names = [classes[k] if 0 <= k < len(classes) else str(k) for k in labels.tolist()]
        source = 'lidar' if _npz_is_lidar(loaded) else 'camera'
        boxes = LiDARBoxes3D(tensor) if source == 'lidar' else CameraBoxes3D(tensor[:, :7])
    else:
        annos = read_label_file(path)
        keep = annos['name'] != 'DontCare'
        tensor = np.concatenate([annos['location'][keep], annos['dimensions'][keep],
                                 annos['rotation_y'][keep, None]], axis=1).astype(np.float32)
        boxes = CameraBoxes3D(tensor)
        names = annos['name'][keep].tolist()
        scores = annos['score'][keep] if 'score' in annos else None
        source = 'camera'
    if scores is not None:
        keep = scores >= score_thr
        boxes = type(boxes)(boxes.tensor[torch.from_numpy(keep)])
        names = [n for n, k in zip(names, keep) if k]
        scores = scores[keep]
    if frame == 'lidar' and source == 'camera':
        if cam2lidar is None:
            raise DataError(f'{path}: camera-frame boxes need a calibration (--calib) to be drawn '
                            'in the LiDAR frame')
        boxes = boxes.convert_to('lidar', cam2lidar)
    if frame == 'camera' and isinstance(boxes, LiDARBoxes3D):
        raise DataError(f'{path}: LiDAR boxes cannot be drawn on the image without lidar2img')
    return boxes, names, scores


def _npz_is_lidar(loaded) -> bool:
    """An ``.npz`` holds LiDAR boxes unless it says ``frame='camera'`` (mono3D results)."""
    if 'frame' in loaded:
        return str(loaded['frame']) == 'lidar'
    return 'bboxes_2d' not in loaded  # inference_mono3d results carry 2D boxes

