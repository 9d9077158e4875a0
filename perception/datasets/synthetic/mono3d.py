"""Synthetic monocular 3D scenes in the KITTI layout, with exact labels.

A scene is a textured ground plane (``y = 1.65`` m in the rectified camera frame, KITTI's camera
height) under a sky gradient, seen through KITTI's P2 (frame 000008 of ``kitti_mini``, scaled to
the image size), with cars (optionally pedestrians and cyclists) as box-shaped solids of KITTI size
statistics standing on the ground, random yaw, at depths 5-50 m.

* Ground: every pixel below the horizon casts its ray through ``P2`` and meets the plane; the
  colour is a function of the ground point ``(x, z)`` (asphalt noise texture, dashed lane lines),
  all vectorised.
* Objects: drawn far to near (painter's algorithm) as their camera-facing faces, projected and
  filled with ``cv2.fillPoly``; each face is shaded by its orientation, the front face is lit
  (headlights) and the back face red, and car sides get dark window bands, so heading can be told.
* Labels: the 2D box is the extent of the projected 3D box corners clipped to the image
  (``[0, W-1] x [0, H-1]``, as KITTI), ``truncated`` the fraction of the projected silhouette
  outside the image, ``occluded`` 0 / 1 / 2 from the fraction of the silhouette hidden by nearer
  objects (< 5 %, < 50 %, more), ``alpha = ry - atan2(x, z)``. Objects more than 90 % hidden, or
  showing fewer than 20 pixels, are left out of the label file (they cannot be detected). Object
  parameters are rounded to KITTI's two decimals before rendering, so the label file is exact.

:func:`write_synthetic_kitti` writes ``training/{image_2,label_2,calib}`` and
``ImageSets/{train,val}.txt``, which ``tools/create_data.py kitti`` converts (frames have no
Velodyne file: they are camera-only frames). Every frame is a pure function of ``(seed, index)``.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from ...engine.errors import ConfigError
from ...engine.fileio import atomic_write_bytes
from ...structures import CameraBoxes3D
from ..kitti_format import write_label_file

__all__ = ['CAMERA_HEIGHT', 'CLASS_SIZES', 'kitti_calibration', 'render_mono3d_scene',
           'write_synthetic_kitti']

CAMERA_HEIGHT = 1.65
# KITTI calibration of frame 000008 (kitti_mini), for a 375 x 1242 image.
_KITTI_SHAPE = (375, 1242)
_KITTI_CALIB = {
    'P0': [721.5377, 0.0, 609.5593, 0.0, 0.0, 721.5377, 172.854, 0.0, 0.0, 0.0, 1.0, 0.0],
    'P1': [721.5377, 0.0, 609.5593, -387.5744, 0.0, 721.5377, 172.854, 0.0, 0.0, 0.0, 1.0, 0.0],
    'P2': [721.5377, 0.0, 609.5593, 44.85728, 0.0, 721.5377, 172.854, 0.2163791, 0.0, 0.0, 1.0,
           0.002745884],
    'P3': [721.5377, 0.0, 609.5593, -339.5242, 0.0, 721.5377, 172.854, 2.199936, 0.0, 0.0, 1.0,
           0.002729905],
    'R0_rect': [0.9999238848686, 0.009837759658694, -0.007445048075169, -0.009869795292616,
                0.9999421238899, -0.004278459120542, 0.007402527146041, 0.004351614043117,
                0.9999631047249],
    'Tr_velo_to_cam': [0.007533744908869, -0.9999713897705, -0.0006166020175442,
                       -0.004069766029716, 0.01480249036103, 0.0007280732970685,
                       -0.9998902082443, -0.076316177845, 0.999862074852, 0.007523790001869,
                       0.01480755023658, -0.2717806100845],
}
# Mean and standard deviation of (l, h, w) in metres per class (KITTI training statistics).
CLASS_SIZES = {
    'Car': ((3.88, 1.53, 1.63), (0.43, 0.14, 0.10)),
    'Pedestrian': ((0.84, 1.76, 0.66), (0.23, 0.11, 0.14)),
    'Cyclist': ((1.76, 1.74, 0.60), (0.18, 0.09, 0.12)),
}
_DEPTH_RANGE = (5.0, 50.0)
_MIN_VISIBLE_FRACTION = 0.1
_MIN_VISIBLE_PIXELS = 20
# Corner order of CameraBoxes3D.corners: 0-3 back face (-l), 4-7 front face (+l); within each,
# (-w, bottom) (-w, top) (+w, top) (+w, bottom). Faces as corner indices with their kind.
_FACES = (((4, 5, 6, 7), 'front'), ((0, 1, 2, 3), 'back'), ((0, 1, 5, 4), 'side'),
          ((3, 2, 6, 7), 'side'), ((1, 2, 6, 5), 'top'), ((0, 3, 7, 4), 'bottom'))


def kitti_calibration(height: int, width: int) -> dict[str, np.ndarray]:
    """KITTI's calibration for an ``(height, width)`` image: P0-P3 scaled as ``cv2.resize`` scales
    the 375 x 1242 KITTI image (pixel centres at integers), R0_rect and Tr_velo_to_cam as is."""
    sy, sx = height / _KITTI_SHAPE[0], width / _KITTI_SHAPE[1]
    scale = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])
    calib = {key: np.asarray(values, dtype=np.float64) for key, values in _KITTI_CALIB.items()}
    for key in ('P0', 'P1', 'P2', 'P3'):
        calib[key] = scale @ calib[key].reshape(3, 4)
    calib['R0_rect'] = calib['R0_rect'].reshape(3, 3)
    calib['Tr_velo_to_cam'] = calib['Tr_velo_to_cam'].reshape(3, 4)
    return calib


def kitti_calib_text(calib: dict[str, np.ndarray]) -> str:
    return ''.join(f'{key}: {" ".join(f"{v:.12e}" for v in np.ravel(calib[key]))}\n'
                   for key in ('P0', 'P1', 'P2', 'P3', 'R0_rect', 'Tr_velo_to_cam'))


def encode_png(image: np.ndarray, what: str) -> bytes:
    """``(H, W, 3)`` uint8 RGB -> PNG bytes."""
    ok, png = cv2.imencode('.png', cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError(f'cannot encode {what} as PNG')
    return png.tobytes()


def write_kitti_frame(root: Path, frame_id: str, image_png: bytes,
                      calib: dict[str, np.ndarray], annos: dict) -> None:
    """One frame's ``training/{image_2,calib,label_2}`` files, each written atomically."""
    folder = root / 'training'
    atomic_write_bytes(folder / 'image_2' / f'{frame_id}.png', image_png, durable=False)
    atomic_write_bytes(folder / 'calib' / f'{frame_id}.txt', kitti_calib_text(calib).encode(),
                       durable=False)
    write_label_file(folder / 'label_2' / f'{frame_id}.txt', annos)


def write_image_sets(root: Path, ids: Sequence[str], num_train: int) -> None:
    """``ImageSets/train.txt`` (the first ``num_train`` ids) and ``val.txt`` (the rest)."""
    for split, split_ids in (('train', ids[:num_train]), ('val', ids[num_train:])):
        atomic_write_bytes(root / 'ImageSets' / f'{split}.txt',
                           ''.join(i + '\n' for i in split_ids).encode())


def _noise_texture(rng: np.random.Generator, size: int, octaves: Sequence[int]) -> np.ndarray:
    """``(size, size)`` float32 multi-scale noise in about [-1, 1]."""
    texture = np.zeros((size, size), np.float32)
    for cells in octaves:
        coarse = rng.standard_normal((cells, cells)).astype(np.float32)
        texture += cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC) / len(octaves)
    return texture


def _render_background(rng: np.random.Generator, p2: np.ndarray, height: int,
                       width: int) -> np.ndarray:
    """Sky and textured ground, ``(H, W, 3)`` float32 0-255."""
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    m_inv = np.linalg.inv(p2[:, :3])
    camera = -m_inv @ p2[:, 3]                       # camera centre in the rectified frame
    pixels = np.stack([u, v, np.ones_like(u)], axis=-1)
    rays = pixels @ m_inv.T                          # (H, W, 3) ray directions
    with np.errstate(divide='ignore', invalid='ignore'):
        t = (CAMERA_HEIGHT - camera[1]) / rays[..., 1]
    ground = (rays[..., 1] > 1e-6) & (t > 0)
    x = camera[0] + t * rays[..., 0]
    z = camera[2] + t * rays[..., 2]

    sky_top, sky_bottom = rng.uniform(150, 210, 3), rng.uniform(200, 250, 3)
    fraction = (v / max(height - 1, 1))[..., None]
    image = (sky_top * (1 - fraction) + sky_bottom * fraction).astype(np.float32)

    # Asphalt: noise textures over a 100 m x 100 m patch (x in [-50, 50], z in [0, 100]), sampled
    # bilinearly; a fine and a coarse one so that near and far ground both carry texture.
    size, metres = 1024, 100.0
    fine = _noise_texture(rng, size, (256, 512))
    coarse = _noise_texture(rng, size, (8, 32))
    map_x = np.where(ground, (x + 50.0) / metres * size, -1).astype(np.float32)
    map_y = np.where(ground, z / metres * size, -1).astype(np.float32)
    sample = (0.5 * cv2.remap(fine, map_x, map_y, cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REFLECT)
              + cv2.remap(coarse, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT))
    base = rng.uniform(80, 120)
    tint = rng.uniform(0.9, 1.1, 3)
    asphalt = (base + 25.0 * sample)[..., None] * tint
    # Dashed lane lines 15 cm wide every 3.6 m across x, 3 m dash / 3 m gap along z.
    lane_offset = rng.uniform(-1.8, 1.8)
    lane = (np.abs(np.mod(x - lane_offset + 1.8, 3.6) - 1.8) < 0.075) & (np.mod(z, 6.0) < 3.0)
    asphalt = np.where(lane[..., None], 225.0, asphalt)
    image = np.where(ground[..., None], asphalt, image).astype(np.float32)
    return image


def _sample_objects(rng: np.random.Generator, classes: Sequence[str], p2: np.ndarray,
                    width: int, max_objects: int) -> tuple[list[str], np.ndarray]:
    """Class names and ``(N, 7)`` camera boxes (two decimals) that do not collide in BEV."""
    count = int(rng.integers(max(1, max_objects // 3), max_objects + 1))
    names: list[str] = []
    boxes: list[np.ndarray] = []
    fx, cx = p2[0, 0], p2[0, 2]
    for _ in range(count * 4):                      # rejection sampling over objects, not pixels
        if len(boxes) == count:
            break
        name = classes[0] if rng.random() < 0.7 or len(classes) == 1 else \
            str(rng.choice(list(classes[1:])))
        mean, std = CLASS_SIZES[name]
        length, height, width_m = np.clip(rng.normal(mean, std), np.asarray(mean) * 0.6,
                                          np.asarray(mean) * 1.4)
        z = rng.uniform(*_DEPTH_RANGE)
        # x so that the centre projects into the image, with a margin on both sides that lets some
        # objects be truncated.
        u = rng.uniform(-0.05 * width, 1.05 * width)
        x = (u - cx) * z / fx
        ry = rng.uniform(-np.pi, np.pi)
        box = np.round(np.array([x, CAMERA_HEIGHT, z, length, height, width_m, ry]), 2)
        radius = 0.5 * np.hypot(box[3], box[5])
        if boxes:
            others = np.stack(boxes)
            other_radius = 0.5 * np.hypot(others[:, 3], others[:, 5])
            gap = np.hypot(others[:, 0] - box[0], others[:, 2] - box[2])
            if (gap < radius + other_radius + 0.3).any():
                continue
        names.append(name)
        boxes.append(box)
    return names, np.asarray(boxes, dtype=np.float64).reshape(-1, 7)


def _project(points: np.ndarray, p2: np.ndarray) -> np.ndarray:
    homogeneous = points @ p2[:, :3].T + p2[:, 3]
    return homogeneous[..., :2] / homogeneous[..., 2:3]


def _face_colours(rng: np.random.Generator, name: str) -> dict[str, np.ndarray]:
    base = rng.uniform(30, 230, 3)
    if name != 'Car':   # people: darker clothes, a skin-toned top
        base = rng.uniform(20, 150, 3)
    return {'top': base * 1.0, 'side': base * 0.75, 'bottom': base * 0.3,
            'front': 0.5 * base * 0.6 + 0.5 * np.array([250.0, 240.0, 180.0]),
            'back': 0.5 * base * 0.6 + 0.5 * np.array([200.0, 30.0, 30.0])}


def _fill(mask_shape: tuple[int, int], polygon: np.ndarray) -> np.ndarray:
    mask = np.zeros(mask_shape, np.uint8)
    cv2.fillPoly(mask, [np.round(polygon * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
    return mask.astype(bool)


def render_mono3d_scene(seed: int, index: int, height: int = 384, width: int = 1280,
                        classes: Sequence[str] = ('Car',), max_objects: int = 8) -> dict:
    """Render scene ``index`` of the synthetic set ``seed``.

    Args:
        seed, index: the scene is a pure function of them.
        height, width: image size; P2 is KITTI's scaled to it (:func:`kitti_calibration`).
        classes: object classes to place (``Car``, ``Pedestrian``, ``Cyclist``); the first is the
            most frequent (70 %).
        max_objects: at most this many objects (at least a third of it are tried).

    Returns:
        ``image`` ``(H, W, 3)`` uint8 RGB, ``calib`` (P0-P3 3x4, R0_rect, Tr_velo_to_cam), and
        ``annos`` in the :func:`read_label_file` layout (``dimensions`` (l, h, w)).
    """
    unknown = [name for name in classes if name not in CLASS_SIZES]
    if unknown or not classes:
        raise ConfigError(f'render_mono3d_scene: classes must be among {sorted(CLASS_SIZES)}, '
                          f'got {list(classes)}')
    rng = np.random.default_rng([int(seed), int(index)])
    calib = kitti_calibration(height, width)
    p2 = calib['P2']
    image = _render_background(rng, p2, height, width)
    names, boxes = _sample_objects(rng, classes, p2, width, max_objects)
    camera_boxes = CameraBoxes3D(boxes)
    corners = camera_boxes.corners.double().numpy()               # (N, 8, 3)
    corners_uv = _project(corners, p2)                            # (N, 8, 2)
    camera = -np.linalg.inv(p2[:, :3]) @ p2[:, 3]
    texture = 1.0 + 0.08 * _noise_texture(rng, 256, (32, 128))
    texture = cv2.resize(texture, (width, height), interpolation=cv2.INTER_LINEAR)[..., None]

    owner = np.full((height, width), -1, np.int64)                # nearest object per pixel
    silhouette_area = np.zeros(len(boxes))
    order = np.argsort(-np.linalg.norm(camera_boxes.gravity_center.double().numpy() - camera,
                                       axis=1))
    for i in order:                                               # painter's algorithm: far first
        colours = _face_colours(rng, names[i])
        hull = cv2.convexHull(corners_uv[i].astype(np.float32)).reshape(-1, 2)
        silhouette = _fill((height, width), hull)
        silhouette_area[i] = silhouette.sum()
        owner[silhouette] = i
        for face, kind in _FACES:
            points = corners[i, list(face)]
            normal = np.cross(points[1] - points[0], points[3] - points[0])
            centre = points.mean(axis=0)
            outward = centre - corners[i].mean(axis=0)
            normal *= np.sign(normal @ outward)
            if normal @ (camera - centre) <= 0:                   # back-facing: hidden
                continue
            mask = _fill((height, width), corners_uv[i, list(face)])
            image[mask] = (colours[kind] * texture[mask]).astype(np.float32)
            if kind == 'side' and names[i] == 'Car':              # dark window band
                # Face corners: 0 (bottom), 1 (top), 2 (top), 3 (bottom); the band spans 55-85 %
                # of the height, inset by 15 % of the length at both ends.
                up = points[1] - points[0]
                band = np.stack([points[0] + 0.55 * up, points[0] + 0.85 * up,
                                 points[3] + 0.85 * up, points[3] + 0.55 * up])
                band[[0, 1]] = band[[0, 1]] + 0.15 * (band[[3, 2]] - band[[0, 1]])
                band[[2, 3]] = band[[2, 3]] + 0.15 * (band[[1, 0]] - band[[2, 3]])
                window = _fill((height, width), _project(band, p2))
                image[window] = np.array([40.0, 50.0, 60.0]) * texture[window]

    visible = np.bincount(owner[owner >= 0], minlength=len(boxes))[:len(boxes)]
    annos = _labels(names, boxes, corners_uv, visible, silhouette_area, height, width)
    return {'image': np.clip(np.round(image), 0, 255).astype(np.uint8), 'calib': calib,
            'annos': annos}


def _labels(names: list[str], boxes: np.ndarray, corners_uv: np.ndarray, visible: np.ndarray,
            silhouette_area: np.ndarray, height: int, width: int) -> dict[str, np.ndarray]:
    """KITTI label fields of the objects that can be seen."""
    count = len(boxes)
    full = np.concatenate([corners_uv.min(axis=1), corners_uv.max(axis=1)], axis=1)  # (N, 4)
    clipped = np.stack([np.clip(full[:, 0], 0, width - 1), np.clip(full[:, 1], 0, height - 1),
                        np.clip(full[:, 2], 0, width - 1), np.clip(full[:, 3], 0, height - 1)], 1)
    image_rect = np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]],
                          np.float32)
    truncated = np.zeros(count)
    for i in range(count):                                        # per object, not per pixel
        hull = cv2.convexHull(corners_uv[i].astype(np.float32))
        total = cv2.contourArea(hull)
        inside, _ = cv2.intersectConvexConvex(hull, image_rect)
        truncated[i] = 1.0 - inside / total if total > 0 else 1.0
    hidden = 1.0 - visible / np.maximum(silhouette_area, 1)
    occluded = np.where(hidden < 0.05, 0, np.where(hidden < 0.5, 1, 2))
    keep = ((visible >= _MIN_VISIBLE_PIXELS) & (visible >= _MIN_VISIBLE_FRACTION * silhouette_area)
            & (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1]))
    alpha = boxes[:, 6] - np.arctan2(boxes[:, 0], boxes[:, 2])
    alpha = alpha - np.floor(alpha / (2 * np.pi) + 0.5) * 2 * np.pi
    return {'name': np.asarray(names, dtype=str).reshape(-1)[keep],
            'truncated': np.clip(truncated, 0, 1)[keep], 'occluded': occluded[keep],
            'alpha': alpha[keep], 'bbox': clipped[keep], 'dimensions': boxes[keep, 3:6],
            'location': boxes[keep, :3], 'rotation_y': boxes[keep, 6]}


def write_synthetic_kitti(root: str | os.PathLike, num_train: int, num_val: int, seed: int = 0,
                          height: int = 384, width: int = 1280,
                          classes: Sequence[str] = ('Car',), max_objects: int = 8) -> Path:
    """Write ``num_train + num_val`` scenes in the KITTI layout under ``root``.

    Frames ``000000 .. num_train-1`` form ``ImageSets/train.txt``, the next ``num_val`` frames
    ``val.txt``. Files are written atomically (a reader never sees half a file). Returns ``root``.
    """
    if num_train < 0 or num_val < 0 or num_train + num_val == 0:
        raise ConfigError(f'write_synthetic_kitti: need num_train, num_val >= 0 and some frames, '
                          f'got {num_train}, {num_val}')
    root = Path(root)
    ids = [f'{i:06d}' for i in range(num_train + num_val)]
    for index, frame_id in enumerate(ids):
        scene = render_mono3d_scene(seed, index, height, width, classes, max_objects)
        write_kitti_frame(root, frame_id, encode_png(scene['image'], f'frame {frame_id}'),
                          scene['calib'], scene['annos'])
    write_image_sets(root, ids, num_train)
    return root


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description='Render a synthetic monocular 3D set in the '
                                                 'KITTI layout')
    parser.add_argument('root')
    parser.add_argument('--train', type=int, default=200)
    parser.add_argument('--val', type=int, default=50)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--height', type=int, default=384)
    parser.add_argument('--width', type=int, default=1280)
    parser.add_argument('--classes', nargs='+', default=['Car'])
    args = parser.parse_args(argv)
    write_synthetic_kitti(args.root, args.train, args.val, args.seed, args.height, args.width,
                          args.classes)


if __name__ == '__main__':
    main()
