"""Procedural natural-ish images: gradients, gratings, sharp shapes and strokes.

The mix is chosen so that super-resolution has something to learn at every frequency: smooth
shading (where bicubic is already good), oriented gratings near the LR Nyquist limit, and sharp
edges and thin strokes (where bicubic blurs and a learned model wins).
"""
from __future__ import annotations

import cv2
import numpy as np


def render_texture_image(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Render one image.

    Args:
        rng: the source of randomness (the image is a pure function of its state).
        height, width: output size in pixels.

    Returns:
        ``(height, width, 3)`` uint8 RGB image.
    """
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    # Smooth shading: a random linear gradient per channel.
    direction = rng.uniform(-1, 1, size=(2, 3)).astype(np.float32) / max(height, width)
    image = (rng.uniform(0.2, 0.8, size=3).astype(np.float32) +
             yy[..., None] * direction[0] + xx[..., None] * direction[1])
    # Oriented gratings with periods from 3 to 24 px, each in a random colour.
    for _ in range(rng.integers(1, 4)):
        theta = rng.uniform(0, np.pi)
        period = rng.uniform(3.0, 24.0)
        phase = rng.uniform(0, 2 * np.pi)
        wave = np.sin(2 * np.pi * (xx * np.cos(theta) + yy * np.sin(theta)) / period + phase)
        image += 0.15 * wave[..., None] * rng.uniform(-1, 1, size=3).astype(np.float32)
    canvas = np.clip(image * 255, 0, 255).astype(np.uint8)
    # Sharp shapes and thin strokes.
    size = max(height, width)
    for _ in range(rng.integers(3, 9)):
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        kind = rng.integers(0, 4)
        if kind == 0:
            p1 = rng.integers(0, [width, height])
            p2 = p1 + rng.integers(size // 10, size // 2, size=2)
            cv2.rectangle(canvas, tuple(map(int, p1)), tuple(map(int, p2)), colour, -1)
        elif kind == 1:
            centre = tuple(int(v) for v in rng.integers(0, [width, height]))
            axes = tuple(int(v) for v in rng.integers(size // 20 + 1, size // 4 + 2, size=2))
            cv2.ellipse(canvas, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1,
                        lineType=cv2.LINE_AA)
        elif kind == 2:
            points = rng.integers(0, [width, height], size=(rng.integers(3, 6), 2)).astype(np.int32)
            cv2.fillPoly(canvas, [points], colour, lineType=cv2.LINE_AA)
        else:
            p1 = tuple(int(v) for v in rng.integers(0, [width, height]))
            p2 = tuple(int(v) for v in rng.integers(0, [width, height]))
            cv2.line(canvas, p1, p2, colour, int(rng.integers(1, 3)), lineType=cv2.LINE_AA)
    return canvas
