"""Synthetic posed multi-view scenes with exact depth, for tests and demos of two-view depth.

A scene is a room (a box open behind the camera: back wall, floor, ceiling, side walls) with a few
textured rectangles at different depths and orientations in front of the camera, seen by a
pinhole camera that moves by a known small rotation and translation per frame:

* Plane ``k`` has an origin ``o``, orthonormal in-plane axes ``e1, e2`` (normal ``e1 x e2``), an
  optional half size ``(a, b)`` (None: unbounded, the room's faces) and a texture that is a sum
  of sinusoids of the in-plane coordinates ``(s, t) = ((X - o) . e1, (X - o) . e2)`` in metres,
  i.e. a function of continuous surface coordinates: every view samples the same continuous
  surface, so no resampling error enters the ground truth.
* Frame ``f`` has the world-to-camera pose ``T_f = [R_f | t_f]`` (``X_cam = R_f X_world + t_f``,
  DeMoN's convention) and the scene's intrinsics ``K``. The pixel ``(u, v)`` (centres at integer
  coordinates) casts the ray ``X(λ) = C + λ R_f^T K^-1 (u, v, 1)`` from the camera centre
  ``C = -R_f^T t_f``; it meets plane ``k`` at ``λ = n . (o - C) / n . (R_f^T K^-1 (u, v, 1))``.
  Since ``K^-1 (u, v, 1)`` has ``z = 1``, ``λ`` is the z-depth. The frame shows the nearest hit
  (``λ > 0`` and inside the plane's rectangle) and that plane's texture there. Seen from inside,
  the nearest hit among the room's unbounded face planes lies on the room (it is convex), so
  every ray has a surface.

Everything is evaluated for all pixels at once with NumPy (a loop over the few planes only; a
64 x 96 frame takes about a millisecond). :func:`render_posed_frame` renders a frame (or any
continuous points); :func:`write_synthetic_posed_depth` writes scenes in the DeMoN layout that
:class:`perception.datasets.PosedDepthDataset` reads.
"""
from __future__ import annotations

import os
import os.path as osp
from dataclasses import dataclass

import cv2
import numpy as np

from ...engine.fileio import atomic_write_bytes
from ..depth_io import write_cam_txt, write_depth, write_poses_txt

__all__ = ['PosedScene', 'TexturedPlane', 'random_posed_scene', 'render_posed_frame',
           'rotation_from_axis_angle', 'write_synthetic_posed_depth']

# Texture periods in pixels at the plane's typical distance: above 6 px bilinear interpolation of
# the 8-bit frames is accurate to a few grey levels.
_PERIODS_PX = (8.0, 40.0)
_NUM_WAVES = 10
# The room, in metres (x right, y down, z forward; the first camera near the origin).
_ROOM = {'x': (-3.0, 3.0), 'y': (-2.0, 1.6), 'z_back': 8.0}


@dataclass
class TexturedPlane:
    """A textured plane or rectangle (see the module docstring).

    ``origin`` ``(3,)``; ``axes`` ``(2, 3)`` orthonormal ``e1, e2``; ``half_size`` ``(2,)`` in
    metres along them, or None (unbounded). ``freqs`` ``(K, 2)`` cycles/m, ``phases`` ``(K,)``,
    ``amps`` ``(K, 3)``, ``base`` ``(3,)``: colour ``base + sum_k amps_k sin(2 pi freqs_k . (s, t)
    + phases_k)`` (grey levels, unclipped).
    """

    origin: np.ndarray
    axes: np.ndarray
    half_size: np.ndarray | None
    freqs: np.ndarray
    phases: np.ndarray
    amps: np.ndarray
    base: np.ndarray

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.axes[0], self.axes[1])

    def texture(self, st: np.ndarray) -> np.ndarray:
        """Colour at in-plane coordinates ``(..., 2)``: ``(..., 3)`` float64."""
        return self.base + np.sin(2 * np.pi * (st @ self.freqs.T) + self.phases) @ self.amps


@dataclass
class PosedScene:
    """Planes seen in ``(height, width)`` frames with ``intrinsics`` ``(3, 3)`` and ``poses``
    ``(F, 4, 4)`` world-to-camera."""

    height: int
    width: int
    intrinsics: np.ndarray
    poses: np.ndarray
    planes: list[TexturedPlane]

    def relative_pose(self, ref: int, src: int) -> np.ndarray:
        """4x4 taking frame ``ref``'s camera points into frame ``src``'s: ``T_src T_ref^-1``."""
        return self.poses[src] @ np.linalg.inv(self.poses[ref])


def rotation_from_axis_angle(axis_angle: np.ndarray) -> np.ndarray:
    """Rodrigues' formula: the 3x3 rotation by ``|w|`` rad about ``w / |w|``."""
    w = np.asarray(axis_angle, dtype=np.float64)
    angle = float(np.linalg.norm(w))
    if angle < 1e-15:
        return np.eye(3)
    k = w / angle
    skew = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * skew + (1 - np.cos(angle)) * skew @ skew


def _texture_params(rng: np.random.Generator, distance: float, focal: float) -> dict:
    periods = np.exp(rng.uniform(*np.log(_PERIODS_PX), size=_NUM_WAVES)) * distance / focal
    theta = rng.uniform(0, np.pi, size=_NUM_WAVES)
    freqs = np.stack([np.cos(theta), np.sin(theta)], -1) / periods[:, None]
    amps = rng.uniform(-1, 1, size=(_NUM_WAVES, 3)) * (200.0 / _NUM_WAVES)
    return {'freqs': freqs, 'phases': rng.uniform(0, 2 * np.pi, size=_NUM_WAVES), 'amps': amps,
            'base': rng.uniform(90, 165, size=3)}


def _room(rng: np.random.Generator, focal: float) -> list[TexturedPlane]:
    (x0, x1), (y0, y1), z = _ROOM['x'], _ROOM['y'], _ROOM['z_back']
    ex, ey, ez = np.eye(3)
    # The floor, ceiling and side walls are seen at grazing angles: at depth Z a plane at
    # distance h from the camera shrinks by h / Z along the view direction, so their textures
    # are sized for the far end (Z = z_back): the "distance" z_back ** 2 / h.
    faces = [(np.array([0.0, 0.0, z]), np.stack([ex, ey]), z),              # back wall
             (np.array([0.0, y1, 0.0]), np.stack([ez, ex]), z * z / y1),    # floor
             (np.array([0.0, y0, 0.0]), np.stack([ex, ez]), z * z / -y0),   # ceiling
             (np.array([x0, 0.0, 0.0]), np.stack([ey, ez]), z * z / -x0),   # left wall
             (np.array([x1, 0.0, 0.0]), np.stack([ez, ey]), z * z / x1)]    # right wall
    return [TexturedPlane(origin, axes, None, **_texture_params(rng, distance, focal))
            for origin, axes, distance in faces]


def random_posed_scene(rng: np.random.Generator, height: int, width: int, num_frames: int = 2,
                       num_objects: int | None = None, max_translation: float = 0.3,
                       max_rotation_deg: float = 3.0) -> PosedScene:
    """Draw a room with ``num_objects`` (random 2..4) rectangles and a moving camera.

    Args:
        rng: the source of randomness (the scene is a pure function of its state).
        height, width: frame size (px); the focal length is ``U(0.8, 1.0) * width`` px and the
            principal point near the centre.
        num_frames: camera poses; frame 0 is a small random pose near the origin, then every
            frame moves by one fixed step: a translation of ``U(0.5, 1) * max_translation`` m
            (mostly sideways) and a rotation of up to ``max_rotation_deg`` degrees.
        num_objects: rectangles 2-5 m in front of the first camera, each tilted by 10-40
            degrees about a random axis.
    """
    if num_objects is None:
        num_objects = int(rng.integers(2, 5))
    focal = rng.uniform(0.8, 1.0) * width
    intrinsics = np.array([[focal, 0.0, (width - 1) / 2 + rng.uniform(-2, 2)],
                           [0.0, focal * rng.uniform(0.97, 1.03),
                            (height - 1) / 2 + rng.uniform(-2, 2)],
                           [0.0, 0.0, 1.0]])
    planes = _room(rng, focal)
    for _ in range(num_objects):
        depth = rng.uniform(2.0, 5.0)
        centre = np.array([rng.uniform(-0.35, 0.35) * depth * width / focal,
                           rng.uniform(-0.35, 0.35) * depth * height / focal, depth])
        axis = rng.normal(size=3)
        tilt = rotation_from_axis_angle(axis / np.linalg.norm(axis) *
                                        np.deg2rad(rng.uniform(10.0, 40.0)))
        axes = (tilt @ np.eye(3)[:2].T).T  # e1, e2 of a fronto-parallel plane, tilted
        half = rng.uniform(0.12, 0.3, size=2) * depth * min(height, width) / focal
        planes.append(TexturedPlane(centre, axes, half, **_texture_params(rng, depth, focal)))
    # camera-to-world rotation and centre of frame 0, then a constant step per frame
    rotation0 = rotation_from_axis_angle(rng.normal(size=3) * np.deg2rad(3.0))
    centre0 = rng.uniform(-0.2, 0.2, size=3)
    direction = rng.normal(size=3) * np.array([1.0, 0.6, 0.3])
    step_t = direction / np.linalg.norm(direction) * rng.uniform(0.5, 1.0) * max_translation
    axis = rng.normal(size=3)
    step_r = rotation_from_axis_angle(axis / np.linalg.norm(axis) *
                                      np.deg2rad(rng.uniform(0.3, 1.0) * max_rotation_deg))
    poses = np.zeros((num_frames, 4, 4))
    for f in range(num_frames):
        rotation = rotation0 @ np.linalg.matrix_power(step_r, f)  # camera to world
        centre = centre0 + f * step_t
        poses[f] = np.eye(4)
        poses[f, :3, :3] = rotation.T
        poses[f, :3, 3] = -rotation.T @ centre
    return PosedScene(height, width, intrinsics, poses, planes)


def render_posed_frame(scene: PosedScene, frame: int, points: np.ndarray | None = None
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render frame ``frame`` at pixel coordinates ``points`` ``(..., 2)`` (default: all pixels).

    Returns ``colour (..., 3)`` float64 unclipped grey levels (round and clip for 8 bits),
    ``depth (...)`` float64 z-depth in metres (``inf`` where no plane is hit, which the room
    prevents for in-image rays), and ``index (...)`` int64 of the visible plane (-1: none).
    """
    if points is None:
        ys, xs = np.mgrid[0:scene.height, 0:scene.width].astype(np.float64)
        points = np.stack([xs, ys], -1)
    pose = scene.poses[frame]
    rotation_cw = pose[:3, :3].T  # camera to world
    centre = -rotation_cw @ pose[:3, 3]
    k_inv = np.linalg.inv(scene.intrinsics)
    rays = np.concatenate([points, np.ones(points.shape[:-1] + (1,))], -1) @ k_inv.T  # z = 1
    rays_world = rays @ rotation_cw.T
    depth = np.full(points.shape[:-1], np.inf)
    index = np.full(points.shape[:-1], -1, dtype=np.int64)
    coords = np.zeros(points.shape[:-1] + (2,))
    for k, plane in enumerate(scene.planes):
        normal = plane.normal
        with np.errstate(divide='ignore', invalid='ignore'):
            lam = ((plane.origin - centre) @ normal) / (rays_world @ normal)
        hit = np.isfinite(lam) & (lam > 1e-9) & (lam < depth)
        offset = centre - plane.origin + lam[..., None] * rays_world
        st = np.stack([offset @ plane.axes[0], offset @ plane.axes[1]], -1)
        if plane.half_size is not None:
            hit &= (np.abs(st) <= plane.half_size).all(-1)
        depth = np.where(hit, lam, depth)
        index = np.where(hit, k, index)
        coords = np.where(hit[..., None], st, coords)
    colour = np.zeros(points.shape[:-1] + (3,))
    for k, plane in enumerate(scene.planes):
        where = index == k
        if where.any():
            colour[where] = plane.texture(coords[where])
    return colour, depth, index


def _to_uint8(colour: np.ndarray) -> np.ndarray:
    return np.clip(np.round(colour), 0, 255).astype(np.uint8)


def _write_image(path: str, image: np.ndarray) -> None:
    ext = osp.splitext(path)[1]
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if ext == '.jpg' else []
    ok, data = cv2.imencode(ext, cv2.cvtColor(image, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise OSError(f'{path}: image encoding failed')
    atomic_write_bytes(path, data.tobytes(), durable=False)


def write_synthetic_posed_depth(root: str | os.PathLike, num_scenes: int,
                                frames_per_scene: int = 3, height: int = 64, width: int = 96,
                                seed: int = 0, split: str = 'train', depth_format: str = 'npy',
                                image_format: str = 'png', force: bool = False) -> list[str]:
    """Write synthetic scenes in the DeMoN layout below ``root/<split>``.

    Scene ``synthetic_<split>_%05d`` holds ``%04d.<image_format>`` RGB frames (``'png'``
    lossless, or ``'jpg'`` as DeMoN), the exact depth of every frame (``%04d.npy`` float32 metres,
    or ``depth/%04d.png`` 16-bit millimetres with ``depth_format='png_mm'``), ``cam.txt`` and
    ``poses.txt`` (3x4 world-to-camera lines, DeMoN's convention).

    Scene ``i`` is drawn from ``np.random.default_rng([seed, i])`` (see
    :func:`random_posed_scene`), so a scene does not depend on how many others are written. An
    existing scene folder raises ``FileExistsError`` unless ``force``. Returns the scene names.
    """
    if frames_per_scene < 2:
        raise ValueError(f'write_synthetic_posed_depth: frames_per_scene must be >= 2, got '
                         f'{frames_per_scene}')
    if image_format not in ('png', 'jpg'):
        raise ValueError(f"write_synthetic_posed_depth: image_format must be 'png' or 'jpg', got "
                         f'{image_format!r}')
    if depth_format not in ('npy', 'png_mm'):
        raise ValueError(f"write_synthetic_posed_depth: depth_format must be 'npy' or 'png_mm', "
                         f'got {depth_format!r}')
    names = []
    for i in range(num_scenes):
        name = f'synthetic_{split}_{i:05d}'
        folder = osp.join(os.fspath(root), split, name)
        if osp.isdir(folder) and not force:
            raise FileExistsError(f'{folder} exists; pass force=True to overwrite')
        scene = random_posed_scene(np.random.default_rng([seed, i]), height, width,
                                   frames_per_scene)
        for f in range(frames_per_scene):
            colour, depth, _ = render_posed_frame(scene, f)
            _write_image(osp.join(folder, f'{f:04d}.{image_format}'), _to_uint8(colour))
            depth_path = (osp.join(folder, f'{f:04d}.npy') if depth_format == 'npy'
                          else osp.join(folder, 'depth', f'{f:04d}.png'))
            write_depth(depth_path, np.where(np.isfinite(depth), depth, 0), depth_format)
        write_cam_txt(osp.join(folder, 'cam.txt'), scene.intrinsics)
        write_poses_txt(osp.join(folder, 'poses.txt'), scene.poses, rows=3)
        names.append(name)
    return names
