"""Synthetic semantic segmentation data with exact masks, written in the Cityscapes layout.

An image is a textured background (class 0) covered by a few textured shapes (ellipses, polygons,
rectangles and stripe bands) of the other classes, painted in order, so later shapes occlude
earlier ones. The label map records, at each pixel, the class of the shape painted last there;
the image is painted from the same boolean masks, so the labels are exact by construction.

Each class has its own texture statistics (:data:`CLASS_STYLES`): a luminance pattern (smooth
blobs, square-wave stripes, a checkerboard, per-pixel speckle, flat) over a base colour. Classes
share colour families and pattern kinds in pairs, and every instance jitters its colour, pattern
orientation, period and phase, so no class can be told from colour alone or from texture alone.

A fraction of the pixels on class boundaries gets the ignore label ``255`` (as annotators leave
unlabelled seams), so the data also exercises ``ignore_index``.

Everything is a pure function of ``(seed, split, index)`` (NumPy ``default_rng([seed, split,
index])``) and vectorised over pixels. :func:`write_synthetic_cityscapes` writes
``leftImg8bit/{split}/<city>/<name>_leftImg8bit.png`` and
``gtFine/{split}/<city>/<name>_gtFine_labelTrainIds.png``, which
:class:`~perception.datasets.segmentation.CityscapesDataset` reads with
``metainfo=synthetic_seg_metainfo(num_classes)``.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import NamedTuple, Sequence

import cv2
import numpy as np

from ...engine.fileio import atomic_write_bytes

__all__ = ['CLASS_STYLES', 'SYNTHETIC_SEG_CLASSES', 'SYNTHETIC_SEG_PALETTE', 'ClassStyle',
           'render_segmentation_sample', 'synthetic_seg_metainfo', 'write_synthetic_cityscapes']

IGNORE_INDEX = 255
# Cities of the written layout; images alternate between them (Cityscapes has one folder per city).
CITIES = ('synthtown', 'synthville')
_SPLIT_CODES = {'train': 0, 'val': 1, 'test': 2}


class ClassStyle(NamedTuple):
    """How instances of a class look.

    Attributes:
        name: class name.
        pattern: luminance pattern: ``'blobs'`` (smooth low-frequency noise), ``'stripes'``
            (square wave), ``'checker'`` (rotated checkerboard), ``'speckle'`` (per-pixel noise)
            or ``'flat'`` (faint noise only).
        colour: mean RGB colour (0-255); instances add a uniform jitter of ``+-colour_jitter``.
        period: ``(low, high)`` pattern period in pixels (stripes, checker; blob size for blobs).
        amplitude: pattern amplitude in grey levels (added to the colour, times -1..1).
    """

    name: str
    pattern: str
    colour: tuple[int, int, int]
    period: tuple[float, float]
    amplitude: float


# Colour families: olive grey, red, blue. Same family, different pattern: red stripes vs red
# speckle vs red checker; same pattern, different family: red vs blue checker. Colour jitter
# (+-30) keeps the families apart but varies every instance.
_OLIVE, _RED, _BLUE = (120, 125, 95), (185, 75, 60), (60, 95, 185)
CLASS_STYLES: tuple[ClassStyle, ...] = (
    ClassStyle('background', 'blobs', _OLIVE, (12.0, 20.0), 45.0),
    ClassStyle('red stripes', 'stripes', _RED, (6.0, 9.0), 55.0),
    ClassStyle('blue checker', 'checker', _BLUE, (8.0, 12.0), 55.0),
    ClassStyle('red speckle', 'speckle', _RED, (1.0, 1.0), 55.0),
    ClassStyle('blue flat', 'flat', _BLUE, (1.0, 1.0), 6.0),
    ClassStyle('red checker', 'checker', _RED, (8.0, 12.0), 55.0),
    ClassStyle('blue stripes', 'stripes', _BLUE, (6.0, 9.0), 55.0),
    ClassStyle('olive speckle', 'speckle', _OLIVE, (1.0, 1.0), 55.0),
)
SYNTHETIC_SEG_CLASSES = tuple(style.name for style in CLASS_STYLES)
SYNTHETIC_SEG_PALETTE = [list(style.colour) for style in CLASS_STYLES]
_COLOUR_JITTER = 30.0
_SHAPES = ('ellipse', 'polygon', 'rectangle', 'band')


def synthetic_seg_metainfo(num_classes: int = 5) -> dict:
    """``{'classes': ..., 'palette': ...}`` of the first ``num_classes`` synthetic classes.

    Pass it as ``metainfo`` to :class:`~perception.datasets.segmentation.CityscapesDataset` (it
    replaces the 19 Cityscapes names, which is what ``SegMetric`` and the heads count).
    """
    _check_num_classes(num_classes)
    return {'classes': SYNTHETIC_SEG_CLASSES[:num_classes],
            'palette': SYNTHETIC_SEG_PALETTE[:num_classes]}


def _check_num_classes(num_classes: int) -> None:
    if not 2 <= num_classes <= len(CLASS_STYLES):
        raise ValueError(f'synthetic segmentation: num_classes must be in [2, {len(CLASS_STYLES)}]'
                         f' (background + shape classes), got {num_classes}')


# ---------------------------------------------------------------------------------- textures

def _pattern(rng: np.random.Generator, style: ClassStyle, yy: np.ndarray,
             xx: np.ndarray) -> np.ndarray:
    """``(H, W)`` float32 luminance pattern in [-1, 1] of one instance of ``style``."""
    height, width = yy.shape
    period = rng.uniform(*style.period)
    theta = rng.uniform(0, np.pi)
    # Coordinates along and across a random orientation, with a random phase.
    u = xx * np.cos(theta) + yy * np.sin(theta) + rng.uniform(0, period)
    v = -xx * np.sin(theta) + yy * np.cos(theta) + rng.uniform(0, period)
    if style.pattern == 'stripes':
        return np.where(np.mod(u, period) < period / 2, 1.0, -1.0).astype(np.float32)
    if style.pattern == 'checker':
        cells = np.floor(u / (period / 2)) + np.floor(v / (period / 2))
        return np.where(np.mod(cells, 2) == 0, 1.0, -1.0).astype(np.float32)
    if style.pattern == 'speckle':
        return rng.uniform(-1, 1, size=(height, width)).astype(np.float32)
    if style.pattern == 'flat':
        return rng.normal(0, 0.5, size=(height, width)).clip(-1, 1).astype(np.float32)
    if style.pattern == 'blobs':
        # Coarse noise upsampled smoothly: blobs about `period` pixels across.
        coarse = rng.uniform(-1, 1, size=(max(2, int(height / period) + 2),
                                          max(2, int(width / period) + 2))).astype(np.float32)
        return cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC).clip(-1, 1)
    raise ValueError(f'unknown pattern {style.pattern!r}')


def _texture(rng: np.random.Generator, style: ClassStyle, yy: np.ndarray,
             xx: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` float32 texture (0-255, unclipped) of one instance of ``style``."""
    colour = np.asarray(style.colour, np.float32) + rng.uniform(-_COLOUR_JITTER, _COLOUR_JITTER, 3)
    pattern = _pattern(rng, style, yy, xx)
    # A slight per-channel tint of the pattern, so its contrast is not purely grey.
    tint = rng.uniform(0.8, 1.2, size=3).astype(np.float32)
    return colour + style.amplitude * pattern[..., None] * tint


# ------------------------------------------------------------------------------------ shapes

def _shape_mask(rng: np.random.Generator, kind: str, yy: np.ndarray,
                xx: np.ndarray) -> np.ndarray:
    """``(H, W)`` bool mask of one random shape of ``kind`` (sizes relative to the image)."""
    height, width = yy.shape
    size = min(height, width)
    cy, cx = rng.uniform(0, height), rng.uniform(0, width)
    theta = rng.uniform(0, np.pi)
    # Pixel centres in the shape's rotated frame.
    dx, dy = xx + 0.5 - cx, yy + 0.5 - cy
    u = dx * np.cos(theta) + dy * np.sin(theta)
    v = -dx * np.sin(theta) + dy * np.cos(theta)
    if kind == 'ellipse':
        a, b = rng.uniform(0.12, 0.35, size=2) * size
        return (u / a) ** 2 + (v / b) ** 2 <= 1.0
    if kind == 'rectangle':
        a, b = rng.uniform(0.1, 0.3, size=2) * size
        return (np.abs(u) <= a) & (np.abs(v) <= b)
    if kind == 'band':  # a straight stripe across the image
        return np.abs(v) <= rng.uniform(0.06, 0.15) * size
    if kind == 'polygon':
        # A star-shaped polygon: vertices at sorted angles, random radii; filled by OpenCV
        # without anti-aliasing, so the mask is binary.
        count = int(rng.integers(3, 8))
        angles = np.sort(rng.uniform(0, 2 * np.pi, size=count))
        radii = rng.uniform(0.12, 0.35, size=count) * size
        points = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], axis=1)
        mask = np.zeros((height, width), np.uint8)
        cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 1, lineType=cv2.LINE_8)
        return mask.astype(bool)
    raise ValueError(f'unknown shape {kind!r}')


def _boundary(labels: np.ndarray) -> np.ndarray:
    """``(H, W)`` bool: pixels whose right or lower neighbour has another label."""
    edge = np.zeros(labels.shape, bool)
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    edge[:-1, :] |= labels[:-1, :] != labels[1:, :]
    return edge


def render_segmentation_sample(rng: np.random.Generator, height: int, width: int,
                               num_classes: int = 5, num_shapes: tuple[int, int] = (3, 7),
                               boundary_ignore: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Render one image and its label map.

    Args:
        rng: the source of randomness (the sample is a pure function of its state).
        height, width: size in pixels.
        num_classes: ``K``; class 0 is the background, shapes take classes ``1..K-1``.
        num_shapes: ``(low, high)``, inclusive range of the number of shapes.
        boundary_ignore: probability that a boundary pixel (see :func:`_boundary`) is labelled
            ``255`` (ignore).

    Returns:
        ``image`` ``(height, width, 3)`` uint8 RGB and ``labels`` ``(height, width)`` uint8 in
        ``[0, K)`` or ``255``.
    """
    _check_num_classes(num_classes)
    if height < 8 or width < 8:
        raise ValueError(f'render_segmentation_sample: size must be at least 8x8, got '
                         f'{height}x{width}')
    if not 0 <= boundary_ignore <= 1:
        raise ValueError(f'boundary_ignore must be in [0, 1], got {boundary_ignore}')
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    image = _texture(rng, CLASS_STYLES[0], yy, xx)
    labels = np.zeros((height, width), np.uint8)
    for _ in range(int(rng.integers(num_shapes[0], num_shapes[1] + 1))):
        cls = int(rng.integers(1, num_classes))
        mask = _shape_mask(rng, _SHAPES[int(rng.integers(len(_SHAPES)))], yy, xx)
        image[mask] = _texture(rng, CLASS_STYLES[cls], yy, xx)[mask]
        labels[mask] = cls
    ignore = _boundary(labels) & (rng.random((height, width)) < boundary_ignore)
    labels[ignore] = IGNORE_INDEX
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), labels


# ----------------------------------------------------------------------------------- writing

def sample_name(index: int) -> tuple[str, str]:
    """``(city, name)`` of sample ``index``: ``('synthtown', 'synthtown_000000_000019')``."""
    city = CITIES[index % len(CITIES)]
    return city, f'{city}_{index:06d}_000019'


def _write_png(path: Path, array: np.ndarray) -> None:
    ok, encoded = cv2.imencode('.png', array)
    if not ok:
        raise OSError(f'{path}: PNG encoding failed')
    # Bulk image output: atomic, but without a sync per file.
    atomic_write_bytes(path, encoded.tobytes(), durable=False)


def write_synthetic_cityscapes(root: str | os.PathLike, num_train: int, num_val: int,
                               height: int = 64, width: int = 128, num_classes: int = 5,
                               seed: int = 0, **render_kwargs) -> dict[str, list[Path]]:
    """Write a synthetic dataset in the Cityscapes layout under ``root``.

    Sample ``i`` of split ``s`` is ``render_segmentation_sample(default_rng([seed, code(s), i]),
    ...)`` (``code``: train 0, val 1), so the train and val images differ and any subset can be
    regenerated alone. Files already there are overwritten (each atomically).

    Args:
        root: dataset root (it gets ``leftImg8bit/`` and ``gtFine/``).
        num_train, num_val: number of images per split.
        height, width: image size.
        num_classes: ``K`` (see :func:`render_segmentation_sample`).
        seed: base seed.
        render_kwargs: further arguments of :func:`render_segmentation_sample`.

    Returns:
        ``{'train': [image paths], 'val': [image paths]}``.
    """
    _check_num_classes(num_classes)
    if num_train < 0 or num_val < 0:
        raise ValueError(f'num_train and num_val must be >= 0, got {num_train}, {num_val}')
    root = Path(root)
    written: dict[str, list[Path]] = {}
    for split, count in (('train', num_train), ('val', num_val)):
        written[split] = []
        for index in range(count):
            rng = np.random.default_rng([seed, _SPLIT_CODES[split], index])
            image, labels = render_segmentation_sample(rng, height, width, num_classes,
                                                       **render_kwargs)
            city, name = sample_name(index)
            img_path = root / 'leftImg8bit' / split / city / f'{name}_leftImg8bit.png'
            seg_path = root / 'gtFine' / split / city / f'{name}_gtFine_labelTrainIds.png'
            _write_png(img_path, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            _write_png(seg_path, labels)
            written[split].append(img_path)
    return written


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description='Render a synthetic semantic segmentation set '
                                                 'in the Cityscapes layout')
    parser.add_argument('root')
    parser.add_argument('--train', type=int, default=300)
    parser.add_argument('--val', type=int, default=40)
    parser.add_argument('--height', type=int, default=64)
    parser.add_argument('--width', type=int, default=128)
    parser.add_argument('--num-classes', type=int, default=5)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    write_synthetic_cityscapes(args.root, args.train, args.val, args.height, args.width,
                               num_classes=args.num_classes, seed=args.seed)


if __name__ == '__main__':
    main()
