"""Synthetic optical-flow sequences with exact flow and occlusion, for learning tests and demos.

A scene is a stack of textured planar layers, each moving with its own affine motion:

* Layer ``k`` has a texture and an outline defined in its own reference coordinates ``p``. The
  texture is a sum of sinusoids, i.e. a function of continuous coordinates, so every frame
  samples the same continuous image and no resampling error enters the ground truth.
* Between consecutive frames layer ``k`` moves by the affine map ``S_k: x -> A_k x + b_k`` (pixel
  coordinates, pixel centres at integers); its pose at frame ``t`` is ``S_k ** t``. Frame ``t``
  shows at pixel ``x`` the frontmost layer (highest index) whose outline contains
  ``p = S_k ** -t (x)``, and that layer's texture at ``p``. Layer 0 is a background that covers
  everything.
* The flow from frame ``t`` to ``t + 1`` at pixel ``x`` is ``S_k(x) - x`` for the layer ``k``
  visible there: exact by construction.
* A pixel is occluded (not "matched") when its point is not visible in frame ``t + 1``: a layer in
  front of ``k`` covers ``S_k(x)`` in frame ``t + 1``, or ``S_k(x)`` falls outside the image.

Everything is evaluated per pixel with NumPy, without loops over pixels (a 64 x 96 pair takes a
few milliseconds). :func:`render_flow_pair` makes one pair; :func:`write_synthetic_flow` writes
sequences in the MPI-Sintel layout that :class:`perception.datasets.SintelDataset` reads.
"""
from __future__ import annotations

import os
import os.path as osp
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from ...engine.fileio import atomic_write_bytes
from ..flow_io import write_flo

__all__ = ['FlowLayer', 'FlowScene', 'random_flow_scene', 'render_flow_frame',
           'render_flow_pair', 'write_synthetic_flow']

# Texture: sinusoids with periods in this range (px). Above 6 px bilinear interpolation of the
# rendered frames is accurate to a few grey levels; 40 px keeps large structures for coarse
# matching. Each layer has its own random set, so layers are told apart by texture as well.
_PERIODS = (6.0, 40.0)
_NUM_WAVES = 12


@dataclass
class FlowLayer:
    """One planar layer.

    ``motion``: ``(3, 3)`` homogeneous affine map of one frame step (pixel coordinates).
    ``shape``: ``'all'`` (background), ``'ellipse'`` or ``'rectangle'``; ``centre`` ``(x, y)``,
    ``axes`` ``(a_x, a_y)`` half-sizes and ``angle`` (rad) of the outline in reference coordinates.
    ``freqs`` ``(K, 2)`` cycles/px, ``phases`` ``(K,)``, ``amps`` ``(K, 3)`` and ``base`` ``(3,)``
    define the texture ``base + sum_k amps_k sin(2 pi freqs_k . p + phases_k)`` (grey levels).
    """

    motion: np.ndarray
    shape: str
    centre: np.ndarray
    axes: np.ndarray
    angle: float
    freqs: np.ndarray
    phases: np.ndarray
    amps: np.ndarray
    base: np.ndarray

    def covers(self, p: np.ndarray) -> np.ndarray:
        """Whether the outline contains the reference points ``p`` ``(..., 2)`` -> ``(...)``."""
        if self.shape == 'all':
            return np.ones(p.shape[:-1], dtype=bool)
        c, s = np.cos(self.angle), np.sin(self.angle)
        d = p - self.centre
        local = np.stack([c * d[..., 0] + s * d[..., 1], -s * d[..., 0] + c * d[..., 1]], -1)
        q = local / self.axes
        if self.shape == 'ellipse':
            return (q ** 2).sum(-1) <= 1.0
        return (np.abs(q) <= 1.0).all(-1)

    def texture(self, p: np.ndarray) -> np.ndarray:
        """Unclipped float64 colour at reference points ``(..., 2)``: ``(..., 3)``."""
        phase = 2 * np.pi * (p @ self.freqs.T) + self.phases  # (..., K)
        return self.base + np.sin(phase) @ self.amps


@dataclass
class FlowScene:
    """Layers back to front (``layers[0]`` is the background) seen in ``(height, width)`` frames."""

    height: int
    width: int
    layers: list[FlowLayer]


def _affine(rng: np.random.Generator, centre: np.ndarray, max_shift: float,
            max_rotation: float, max_scale: float) -> np.ndarray:
    """A random affine step about ``centre``: rotation, anisotropic scale, then a translation."""
    angle = rng.uniform(-max_rotation, max_rotation)
    scale = np.exp(rng.uniform(-max_scale, max_scale, size=2))
    c, s = np.cos(angle), np.sin(angle)
    linear = np.array([[c, -s], [s, c]]) @ np.diag(scale)
    radius = rng.uniform(0, max_shift)
    direction = rng.uniform(0, 2 * np.pi)
    shift = radius * np.array([np.cos(direction), np.sin(direction)])
    motion = np.eye(3)
    motion[:2, :2] = linear
    motion[:2, 2] = centre - linear @ centre + shift
    return motion


def _texture_params(rng: np.random.Generator) -> dict:
    periods = np.exp(rng.uniform(np.log(_PERIODS[0]), np.log(_PERIODS[1]), size=_NUM_WAVES))
    theta = rng.uniform(0, np.pi, size=_NUM_WAVES)
    freqs = np.stack([np.cos(theta), np.sin(theta)], -1) / periods[:, None]
    # Amplitudes sum to about 100 grey levels per channel around a mid-grey base.
    amps = rng.uniform(-1, 1, size=(_NUM_WAVES, 3)) * (200.0 / _NUM_WAVES)
    return {'freqs': freqs, 'phases': rng.uniform(0, 2 * np.pi, size=_NUM_WAVES), 'amps': amps,
            'base': rng.uniform(90, 165, size=3)}


def random_flow_scene(rng: np.random.Generator, height: int, width: int,
                      num_objects: int | None = None, max_shift: float = 8.0) -> FlowScene:
    """Draw a scene: a background and ``num_objects`` (random 2..4) ellipses and rectangles.

    Args:
        rng: the source of randomness (the scene is a pure function of its state).
        height, width: frame size in pixels.
        num_objects: layers in front of the background.
        max_shift: largest translation per frame (px); rotations (up to 0.05 rad) and scalings
            (up to 4 %) about each layer's centre add at most a few px more.
    """
    if num_objects is None:
        num_objects = int(rng.integers(2, 5))
    size = np.array([width, height], dtype=np.float64)
    background = FlowLayer(motion=_affine(rng, size / 2, max_shift, 0.03, 0.03), shape='all',
                           centre=size / 2, axes=size, angle=0.0, **_texture_params(rng))
    layers = [background]
    for _ in range(num_objects):
        centre = rng.uniform(0.15, 0.85, size=2) * size
        axes = rng.uniform(0.12, 0.3, size=2) * min(height, width)
        layers.append(FlowLayer(motion=_affine(rng, centre, max_shift, 0.05, 0.04),
                                shape=str(rng.choice(['ellipse', 'rectangle'])), centre=centre,
                                axes=axes, angle=float(rng.uniform(0, np.pi)),
                                **_texture_params(rng)))
    return FlowScene(height=height, width=width, layers=layers)


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:2, :2].T + matrix[:2, 2]


def _visible_layer(scene: FlowScene, frame: int, points: np.ndarray) -> np.ndarray:
    """Index of the frontmost layer covering ``points`` ``(..., 2)`` in frame ``frame``."""
    index = np.zeros(points.shape[:-1], dtype=np.int64)
    for k, layer in enumerate(scene.layers[1:], start=1):
        pose_inv = np.linalg.inv(np.linalg.matrix_power(layer.motion, frame))
        index[layer.covers(_apply(pose_inv, points))] = k
    return index


def render_flow_frame(scene: FlowScene, frame: int, points: np.ndarray | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Colours of frame ``frame`` at ``points`` ``(..., 2)`` (default: every pixel centre).

    Returns ``(colour (..., 3) float64, unclipped grey levels; layer index (...) int64)``. With
    the default points the colour is ``(H, W, 3)``; round and clip it for an 8-bit image.
    """
    if points is None:
        ys, xs = np.mgrid[0:scene.height, 0:scene.width].astype(np.float64)
        points = np.stack([xs, ys], -1)
    index = _visible_layer(scene, frame, points)
    colour = np.zeros(points.shape[:-1] + (3,))
    for k, layer in enumerate(scene.layers):
        where = index == k
        if where.any():
            pose_inv = np.linalg.inv(np.linalg.matrix_power(layer.motion, frame))
            colour[where] = layer.texture(_apply(pose_inv, points[where]))
    return colour, index


def scene_flow(scene: FlowScene, frame: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact flow from frame ``frame`` to ``frame + 1`` and its non-occlusion mask.

    Returns ``flow (H, W, 2)`` float64 and ``noc (H, W)`` bool (True where the point is visible in
    both frames: the same layer is frontmost at ``x + flow`` in frame ``frame + 1``, inside the
    image).
    """
    ys, xs = np.mgrid[0:scene.height, 0:scene.width].astype(np.float64)
    points = np.stack([xs, ys], -1)
    index = _visible_layer(scene, frame, points)
    target = np.zeros_like(points)
    for k, layer in enumerate(scene.layers):
        where = index == k
        target[where] = _apply(layer.motion, points[where])
    inside = ((target[..., 0] >= 0) & (target[..., 0] <= scene.width - 1) &
              (target[..., 1] >= 0) & (target[..., 1] <= scene.height - 1))
    noc = inside & (_visible_layer(scene, frame + 1, target) == index)
    return target - points, noc


def _to_uint8(colour: np.ndarray) -> np.ndarray:
    return np.clip(np.round(colour), 0, 255).astype(np.uint8)


def render_flow_pair(rng: np.random.Generator, height: int, width: int,
                     num_objects: int | None = None, max_shift: float = 8.0) -> dict:
    """Render one image pair with its exact forward flow and occlusion mask.

    Args:
        rng: the source of randomness (the pair is a pure function of its state).
        height, width: image size in pixels.
        num_objects, max_shift: see :func:`random_flow_scene`.

    Returns:
        A dict: ``img``, ``img_next`` ``(H, W, 3)`` uint8 RGB; ``gt_flow`` ``(H, W, 2)`` float32
        ``(u, v)`` px; ``gt_valid`` ``(H, W)`` bool (all True); ``noc_mask`` ``(H, W)`` bool (True
        = visible in both frames); ``scene``: the :class:`FlowScene`.
    """
    scene = random_flow_scene(rng, height, width, num_objects, max_shift)
    flow, noc = scene_flow(scene, 0)
    return {'img': _to_uint8(render_flow_frame(scene, 0)[0]),
            'img_next': _to_uint8(render_flow_frame(scene, 1)[0]),
            'gt_flow': flow.astype(np.float32), 'gt_valid': np.ones(noc.shape, dtype=bool),
            'noc_mask': noc, 'scene': scene}


def _final_pass(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sintel's 'final' look, roughly: a slight blur and sensor noise on the clean frame."""
    blurred = cv2.GaussianBlur(image.astype(np.float32), (0, 0), 0.8)
    noisy = blurred + rng.normal(0.0, 4.0, size=image.shape).astype(np.float32)
    return _to_uint8(noisy)


def _write_png(path: str, image: np.ndarray) -> None:
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, png = cv2.imencode('.png', image)
    if not ok:
        raise OSError(f'{path}: PNG encoding failed')
    atomic_write_bytes(path, png.tobytes(), durable=False)


def write_synthetic_flow(root: str | os.PathLike, num_scenes: int, frames_per_scene: int = 2,
                         size: Sequence[int] = (64, 96), seed: int = 0,
                         split: str = 'training', max_shift: float = 8.0,
                         force: bool = False) -> list[str]:
    """Write synthetic sequences in the MPI-Sintel layout below ``root``.

    For each scene ``scene_%03d`` (``frames_per_scene`` frames, numbered from 1 as Sintel):
    ``<split>/clean/<scene>/frame_%04d.png``, ``<split>/final/...`` (blur + noise),
    ``<split>/flow/<scene>/frame_%04d.flo`` (frame i -> i + 1, one fewer than the frames),
    ``<split>/occlusions/<scene>/frame_%04d.png`` (255 = occluded) and
    ``<split>/invalid/<scene>/frame_%04d.png`` (all 0: every flow is known).

    Scene ``i`` is drawn from ``np.random.default_rng([seed, i])``, so a scene does not depend on
    how many others are written. An existing scene folder raises ``FileExistsError`` unless
    ``force``. Returns the scene names.
    """
    if frames_per_scene < 2:
        raise ValueError(f'write_synthetic_flow: frames_per_scene must be >= 2, got '
                         f'{frames_per_scene}')
    height, width = (int(s) for s in size)
    base = osp.join(os.fspath(root), split)
    names = []
    for i in range(num_scenes):
        name = f'scene_{i:03d}'
        clean_dir = osp.join(base, 'clean', name)
        if osp.isdir(clean_dir) and not force:
            raise FileExistsError(f'{clean_dir} exists; pass force=True to overwrite')
        rng = np.random.default_rng([seed, i])
        scene = random_flow_scene(rng, height, width, max_shift=max_shift)
        for t in range(frames_per_scene):
            frame = f'frame_{t + 1:04d}'
            clean = _to_uint8(render_flow_frame(scene, t)[0])
            _write_png(osp.join(clean_dir, f'{frame}.png'), clean)
            _write_png(osp.join(base, 'final', name, f'{frame}.png'), _final_pass(clean, rng))
            if t + 1 < frames_per_scene:
                flow, noc = scene_flow(scene, t)
                write_flo(osp.join(base, 'flow', name, f'{frame}.flo'), flow.astype(np.float32))
                _write_png(osp.join(base, 'occlusions', name, f'{frame}.png'),
                           np.where(noc, 0, 255).astype(np.uint8))
                _write_png(osp.join(base, 'invalid', name, f'{frame}.png'),
                           np.zeros((height, width), dtype=np.uint8))
        names.append(name)
    return names
