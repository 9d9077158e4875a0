"""Monocular 3D transforms: photometric jitter, crop/scale/resize that keep the calibration
exact, and MonoDETR's training targets.

Pixel convention: a pixel ``(row i, column j)`` has its centre at ``(u, v) = (j, i)``, as camera
calibration (and so KITTI's P2) assumes; OpenCV's ``warpAffine`` and ``resize`` sample images in
the same convention, so an image affine ``A`` (3x3, ``[u', v', 1] = A [u, v, 1]``) moves the image
content, the 2D boxes, the projected centres and the calibration (``cam2img' = A cam2img``) in
step: projecting the *unchanged* 3D boxes with the new ``cam2img`` lands exactly on the transformed
2D annotations.

Depth is left unchanged by a crop/scale: the new ``cam2img`` carries the scale in its focal
lengths, so geometric depth ``f' * H_3d / h'_2d`` (both ``f`` and ``h_2d`` scaled by ``s``) still
gives the metric depth. The consequence: the image evidence for depth (apparent size) now changes
with the scale at a fixed depth target, so a model must use ``cam2img`` (focal) to read depth from
size. MonoDETR's own code keeps P2 and instead multiplies the depth target by the crop scale
(``depth_scale='normal'``, a "virtual depth" for the original focal); a model that wants that target
can compute it as ``depth * scale_factor_0 / s_0`` from the ``scale_factor`` meta key.
"""
from __future__ import annotations

import struct
from typing import Any, Sequence

import cv2
import numpy as np
import torch

from ...engine.errors import ConfigError, DataError
from ...registry import TRANSFORMS
from ...structures import CameraBoxes3D
from .augment3d import _Random, select_instances
from .segmentation import PhotoMetricDistortion

__all__ = ['Mono3DPhotoMetric', 'Mono3DRandomCropResize', 'Mono3DResize', 'Mono3DTargets',
           'check_mono3d_frame', 'crop_resize_matrix', 'monodetr_level', 'project_centers',
           'resize_matrix', 'transform_bboxes_2d', 'transform_cam2img', 'transform_points_2d']

# MonoDETR's difficulty rule (its Object3d.get_obj_level): (min height, max truncation, max
# occlusion) per level, with the 2D height measured as ``y2 - y1 + 1`` and compared with ``>=``.
MONODETR_LEVELS = ((40, 0.15, 0), (25, 0.30, 1), (25, 0.50, 2))
# PNG colour types without colour (IHDR byte 25): 0 greyscale, 4 greyscale + alpha.
_PNG_GREY_TYPES = (0, 4)


# ----------------------------------------------------------------------------- pure functions
def _as_matrix(cam2img: Any, where: str) -> np.ndarray:
    if cam2img is None:
        raise DataError(f'{where}: the frame has no cam2img (the calibration lacks P2?); a '
                        'monocular 3D frame needs the 3x4 projection of its camera')
    matrix = np.asarray(cam2img, dtype=np.float64)
    if matrix.shape not in ((3, 3), (3, 4), (4, 4)):
        raise DataError(f'{where}: cam2img must be 3x3, 3x4 or 4x4 (P2), got shape {matrix.shape}')
    if not np.isfinite(matrix).all() or matrix[0, 0] <= 0 or matrix[1, 1] <= 0 \
            or not np.allclose(matrix[2, :3], [0, 0, 1]):
        raise DataError(f'{where}: cam2img is not a camera projection (positive focal lengths, '
                        f'third row [0, 0, 1, *]): {matrix[:3].tolist()}')
    return matrix


def _png_is_grey(path: str) -> bool:
    try:
        with open(path, 'rb') as f:
            header = f.read(26)
    except OSError:
        return False
    return (len(header) == 26 and header[:8] == b'\x89PNG\r\n\x1a\n' and header[12:16] == b'IHDR'
            and struct.unpack('B', header[25:26])[0] in _PNG_GREY_TYPES)


def check_mono3d_frame(results: dict, where: str, principal_point_margin: float = 0.25) -> None:
    """Refuse frames a monocular 3D model cannot use, with a message naming the file.

    Checks: ``img`` is an ``(H, W, 3)`` colour image (a greyscale file, which OpenCV would silently
    expand to three equal channels, is refused from its PNG header); ``cam2img`` exists and is a
    projection; and the principal point lies within ``principal_point_margin`` of the image centre
    (as a fraction of width / height), so an image whose size disagrees with the calibration (e.g.
    resized or cropped without updating P2) is caught. KITTI's P2 puts it at about (0.49, 0.46).
    """
    path = results.get('img_path', f'frame {results.get("sample_idx")}')
    img = results.get('img')
    if img is None:
        raise DataError(f'{where}: {path}: no img loaded (put LoadImage first)')
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] != 3:
        raise DataError(f'{where}: {path}: expected an (H, W, 3) colour image, got shape '
                        f'{img.shape} (greyscale images are not supported)')
    if 'img_path' in results and _png_is_grey(str(results['img_path'])):
        raise DataError(f'{where}: {path}: the PNG is greyscale; monocular 3D models need colour '
                        'images (image_2)')
    matrix = _as_matrix(results.get('cam2img'), f'{where}: {path}')
    height, width = img.shape[:2]
    cx, cy = matrix[0, 2], matrix[1, 2]
    if abs(cx / width - 0.5) > principal_point_margin or \
            abs(cy / height - 0.5) > principal_point_margin:
        raise DataError(f'{where}: {path}: image is {width}x{height} px but the calibration puts '
                        f'the principal point at ({cx:.1f}, {cy:.1f}), outside the central '
                        f'{1 - 2 * principal_point_margin:.0%} of the image: the image size '
                        'disagrees with the calibration (resized or cropped without updating P2?)')


def resize_matrix(in_shape: Sequence[int], out_shape: Sequence[int]) -> np.ndarray:
    """3x3 affine of ``cv2.resize`` from ``(H, W)`` to ``(H', W')`` (pixel centres at integers):
    ``u' = sx (u + 0.5) - 0.5`` with ``sx = W' / W`` (and the same for v)."""
    sy, sx = out_shape[0] / in_shape[0], out_shape[1] / in_shape[1]
    return np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])


def crop_resize_matrix(center: Sequence[float], src_width: float,
                       out_shape: Sequence[int]) -> np.ndarray:
    """3x3 similarity taking a ``src_width`` wide window centred on ``center`` ``(u, v)`` to an
    ``(H', W')`` output: uniform scale ``s = W' / src_width``, ``center`` -> output centre.

    MonoDETR's ``get_affine_transform(center, crop_size, 0, (W', H'))``: the window's height is
    whatever the output aspect ratio gives (``H' / s``).
    """
    s = out_shape[1] / src_width
    out_center = ((out_shape[1] - 1) / 2.0, (out_shape[0] - 1) / 2.0)
    return np.array([[s, 0.0, out_center[0] - s * center[0]],
                     [0.0, s, out_center[1] - s * center[1]], [0.0, 0.0, 1.0]])


def transform_points_2d(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``(N, 2)`` pixels through a 3x3 affine -> ``(N, 2)`` (float32 in, float32 out)."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return (points @ matrix[:2, :2].T + matrix[:2, 2]).astype(np.float32)


def transform_bboxes_2d(boxes: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``(N, 4)`` ``x1 y1 x2 y2`` boxes through an axis-aligned affine (positive diagonal)."""
    if matrix[0, 1] != 0 or matrix[1, 0] != 0 or matrix[0, 0] <= 0 or matrix[1, 1] <= 0:
        raise ValueError(f'transform_bboxes_2d needs a scale + shift affine, got {matrix.tolist()}')
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    corners = transform_points_2d(boxes.reshape(-1, 2), matrix)
    return corners.reshape(-1, 4)


def transform_cam2img(cam2img: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """The projection of the transformed image: ``A @ cam2img`` (3x3 / 3x4 / 4x4 kept)."""
    cam2img = np.asarray(cam2img, dtype=np.float64)
    out = cam2img.copy()
    out[:3] = matrix @ cam2img[:3]
    return out


def project_centers(boxes: CameraBoxes3D, cam2img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Projected gravity centres ``(N, 2)`` (float32) and their camera-frame z ``(N,)``.

    The pixel divides by the full homogeneous scale of ``cam2img`` (KITTI's P2 has a small
    ``P[2, 3]``); the depth is the gravity centre's z, the quantity MonoDETR regresses.
    """
    centers = boxes.gravity_center.double().numpy()
    matrix = np.asarray(cam2img, dtype=np.float64)
    homogeneous = centers @ matrix[:3, :3].T + (matrix[:3, 3] if matrix.shape[1] == 4 else 0.0)
    uv = homogeneous[:, :2] / homogeneous[:, 2:3]
    return uv.astype(np.float32), centers[:, 2].astype(np.float32)


def monodetr_level(heights: np.ndarray, truncated: np.ndarray, occluded: np.ndarray) -> np.ndarray:
    """``(N,)`` difficulty as MonoDETR's label reader: 0 easy, 1 moderate, 2 hard, -1 unknown.

    ``heights`` are label 2D box heights ``y2 - y1`` in the original image; MonoDETR adds 1 and
    compares with ``>=`` (the converter's ``difficulty`` uses ``>`` without the 1).
    """
    height = np.asarray(heights, dtype=np.float64) + 1.0
    truncated = np.asarray(truncated, dtype=np.float64)
    occluded = np.asarray(occluded, dtype=np.float64)
    level = np.full(len(height), -1, dtype=np.int64)
    for index in reversed(range(len(MONODETR_LEVELS))):
        min_height, max_truncation, max_occlusion = MONODETR_LEVELS[index]
        fits = (height >= min_height) & (truncated <= max_truncation) & (occluded <= max_occlusion)
        level[fits] = index
    return level


def apply_image_affine(results: dict, matrix: np.ndarray, out_shape: Sequence[int]) -> None:
    """Warp ``img`` (and ``img_right``) by ``matrix`` to ``out_shape`` ``(H', W')``, in place.

    Also moves ``gt_bboxes``, ``dontcare_bboxes``, ``centers_2d``; updates ``cam2img``,
    ``cam2img_right`` and ``lidar2img`` (``A @ M``); sets ``img_shape``; keeps the first
    ``cam2img`` as ``ori_cam2img``; accumulates ``img_affine`` (loaded image -> current pixels,
    3x3) and ``scale_factor`` ``(sx, sy)``. Boxes are not clipped (as MonoDETR): a box may extend
    beyond the new image. Outside the source image the output is black (0).
    """
    height, width = int(out_shape[0]), int(out_shape[1])
    for key in ('img', 'img_right'):
        if key in results:
            image = np.asarray(results[key])
            results[key] = cv2.warpAffine(image, matrix[:2].astype(np.float64), (width, height),
                                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                                          borderValue=0)
    for key in ('gt_bboxes', 'dontcare_bboxes'):
        if key in results:
            results[key] = transform_bboxes_2d(results[key], matrix)
    if 'centers_2d' in results:
        results['centers_2d'] = transform_points_2d(results['centers_2d'], matrix)
    if 'cam2img' in results:
        results.setdefault('ori_cam2img', np.asarray(results['cam2img'], dtype=np.float64))
    for key in ('cam2img', 'cam2img_right', 'lidar2img'):
        if key in results:
            results[key] = transform_cam2img(results[key], matrix)
    results['img_shape'] = (height, width)
    results['img_affine'] = matrix @ np.asarray(results.get('img_affine', np.eye(3)))
    sx, sy = results.get('scale_factor', (1.0, 1.0))
    results['scale_factor'] = (float(sx * matrix[0, 0]), float(sy * matrix[1, 1]))


def _check_out_shape(out_shape: Sequence[int], name: str) -> tuple[int, int]:
    shape = tuple(int(v) for v in out_shape)
    if len(shape) != 2 or min(shape) <= 0:
        raise ConfigError(f'{name}: out_shape must be (height, width) > 0, got {out_shape}')
    return shape


# ----------------------------------------------------------------------------- transforms
@TRANSFORMS.register_module()
class Mono3DPhotoMetric(PhotoMetricDistortion):
    """MonoDETR's photometric distortion (SSD's ``PhotometricDistort``) of ``img``.

    Brightness (+-32), contrast (0.5-1.5, first or last), saturation (0.5-1.5) and hue (+-18
    degrees), each with probability 1/2 (see :class:`PhotoMetricDistortion`), then, with
    probability ``channel_swap_prob``, a random permutation of the colour channels (SSD's
    "lighting noise", which MonoDETR keeps). Geometry is untouched. The image must be colour
    (:func:`check_mono3d_frame` rules); output uint8.
    """

    _PERMUTATIONS = ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))

    def __init__(self, brightness_delta: int = 32, contrast_range: Sequence[float] = (0.5, 1.5),
                 saturation_range: Sequence[float] = (0.5, 1.5), hue_delta: int = 18,
                 channel_swap_prob: float = 0.5) -> None:
        super().__init__(brightness_delta, contrast_range, saturation_range, hue_delta)
        if not 0.0 <= channel_swap_prob <= 1.0:
            raise ConfigError(f'Mono3DPhotoMetric: channel_swap_prob must lie in [0, 1], got '
                              f'{channel_swap_prob}')
        self.channel_swap_prob = channel_swap_prob

    def __call__(self, results: dict) -> dict:
        image = np.asarray(results.get('img'))
        if image.ndim != 3 or image.shape[2] != 3:
            raise DataError(f'Mono3DPhotoMetric: {results.get("img_path")}: expected an (H, W, 3) '
                            f'colour image, got shape {image.shape}')
        results = super().__call__(results)
        if np.random.random() < self.channel_swap_prob:
            order = self._PERMUTATIONS[np.random.randint(len(self._PERMUTATIONS))]
            results['img'] = np.ascontiguousarray(results['img'][..., list(order)])
        return results

    def __repr__(self) -> str:
        return f'{super().__repr__()[:-1]}, channel_swap_prob={self.channel_swap_prob})'


@TRANSFORMS.register_module()
class Mono3DRandomCropResize(_Random):
    """MonoDETR's random scale / shift, as one affine to the output size.

    With probability ``crop_prob`` a window of width ``W c`` is taken, with
    ``c = clip(1 + scale N(0, 1), 1 - scale, 1 + scale)``, centred at the image centre moved by
    ``(W, H) * clip(shift N(0, 1), -2 shift, 2 shift)``; otherwise the whole width about the
    centre (``c = 1``). Either way the window is mapped to ``out_shape`` with a uniform scale
    ``W' / (W c)`` (:func:`crop_resize_matrix`), as MonoDETR always does. See
    :func:`apply_image_affine` for what is updated; depth and the 3D boxes are unchanged (module
    docstring). The defaults are MonoDETR's code defaults (scale 0.6-1.4, shift up to 0.2 of the
    image); its published KITTI config uses ``scale=0.05, shift=0.05``. Records ``crop_scale``.

    Args:
        out_shape: ``(H', W')``, 384 x 1280 as MonoDETR.
        crop_prob: probability of a random window (MonoDETR ``random_crop`` 0.5).
        scale, shift: MonoDETR's ``scale`` and ``shift``.
        principal_point_margin: see :func:`check_mono3d_frame` (applied to the input frame).
        seed: private RNG seed (None: numpy's global RNG).
    """

    def __init__(self, out_shape: Sequence[int] = (384, 1280), crop_prob: float = 0.5,
                 scale: float = 0.4, shift: float = 0.1, principal_point_margin: float = 0.25,
                 seed: int | None = None) -> None:
        super().__init__(seed)
        self.out_shape = _check_out_shape(out_shape, type(self).__name__)
        if not 0.0 <= crop_prob <= 1.0 or not 0.0 <= scale < 1.0 or shift < 0:
            raise ConfigError(f'{type(self).__name__}: need 0 <= crop_prob <= 1, 0 <= scale < 1, '
                              f'shift >= 0; got {crop_prob}, {scale}, {shift}')
        self.crop_prob, self.scale, self.shift = crop_prob, scale, shift
        self.principal_point_margin = principal_point_margin

    def draw(self, height: int, width: int) -> tuple[np.ndarray, float]:
        """Random window centre ``(u, v)`` and crop scale ``c`` for an ``(H, W)`` image."""
        center = np.array([(width - 1) / 2.0, (height - 1) / 2.0])
        crop_scale = 1.0
        if self.rng.random() < self.crop_prob:
            crop_scale = float(np.clip(self.rng.standard_normal() * self.scale + 1,
                                       1 - self.scale, 1 + self.scale))
            offsets = np.clip(self.rng.standard_normal(2) * self.shift, -2 * self.shift,
                              2 * self.shift)
            center += np.array([width, height]) * offsets
        return center, crop_scale

    def __call__(self, results: dict) -> dict:
        check_mono3d_frame(results, type(self).__name__, self.principal_point_margin)
        height, width = np.asarray(results['img']).shape[:2]
        center, crop_scale = self.draw(height, width)
        matrix = crop_resize_matrix(center, width * crop_scale, self.out_shape)
        apply_image_affine(results, matrix, self.out_shape)
        results['crop_scale'] = crop_scale
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(out_shape={self.out_shape}, crop_prob={self.crop_prob}, '
                f'scale={self.scale}, shift={self.shift}, seed={self.seed})')


@TRANSFORMS.register_module()
class Mono3DResize:
    """Test-time resize to a fixed ``out_shape`` ``(H', W')`` with the calibration updated.

    ``keep_ratio=False``: ``cv2.resize`` to exactly ``out_shape`` (x and y scaled apart; the new
    ``cam2img`` has ``fx != fy``). ``keep_ratio=True``: MonoDETR's test transform, a uniform scale
    ``W' / W`` about the image centre (the rows beyond ``H'`` are cut, missing rows are black).
    Updates as :func:`apply_image_affine`.
    """

    def __init__(self, out_shape: Sequence[int] = (384, 1280), keep_ratio: bool = False,
                 principal_point_margin: float = 0.25) -> None:
        self.out_shape = _check_out_shape(out_shape, type(self).__name__)
        self.keep_ratio = keep_ratio
        self.principal_point_margin = principal_point_margin

    def __call__(self, results: dict) -> dict:
        check_mono3d_frame(results, type(self).__name__, self.principal_point_margin)
        height, width = np.asarray(results['img']).shape[:2]
        if self.keep_ratio:
            matrix = crop_resize_matrix(((width - 1) / 2.0, (height - 1) / 2.0), width,
                                        self.out_shape)
        else:
            matrix = resize_matrix((height, width), self.out_shape)
        apply_image_affine(results, matrix, self.out_shape)
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(out_shape={self.out_shape}, keep_ratio={self.keep_ratio})'


@TRANSFORMS.register_module()
class Mono3DTargets:
    """Projected centres and depths of the camera boxes, and MonoDETR's training filter.

    Sets ``centers_2d`` ``(N, 2)`` (gravity centre through the current ``cam2img``: correct after
    flips and crops, since those update ``cam2img``) and ``depths`` ``(N,)`` (its z), then keeps
    the objects that MonoDETR trains on:

    * ``filter_level``: KITTI level known by MonoDETR's rule (:func:`monodetr_level`, on the label
      2D box height in the loaded image, i.e. ``gt_bboxes`` height / ``scale_factor``); needs
      ``truncated`` and ``occluded`` (``LoadAnnotations3D(extra_keys=('truncated', 'occluded'))``);
    * ``min_depth <= z <= max_depth`` (MonoDETR: 2 and 65 m, on the bottom centre's z, the same);
    * the projected centre inside the image, ``0 <= u < W`` and ``0 <= v < H``;
    * ``drop_center_outside_box``: the projected centre inside its 2D box (MonoDETR's ``l, r, t, b
      >= 0`` with ``clip_2d=False``).

    Every per-object key is filtered together (``select_instances``). Needs camera-frame
    ``gt_bboxes_3d`` (``box_frame='camera'``) and, for the box test, ``gt_bboxes``.
    """

    def __init__(self, min_depth: float = 2.0, max_depth: float = 65.0, filter_level: bool = True,
                 drop_center_outside_box: bool = True, principal_point_margin: float = 0.25
                 ) -> None:
        if not 0 <= min_depth < max_depth:
            raise ConfigError(f'Mono3DTargets: need 0 <= min_depth < max_depth, got {min_depth}, '
                              f'{max_depth}')
        self.min_depth, self.max_depth = min_depth, max_depth
        self.filter_level = filter_level
        self.drop_center_outside_box = drop_center_outside_box
        self.principal_point_margin = principal_point_margin

    def __call__(self, results: dict) -> dict:
        where = f'Mono3DTargets: {results.get("img_path", results.get("sample_idx"))}'
        boxes = results.get('gt_bboxes_3d')
        if not isinstance(boxes, CameraBoxes3D):
            raise ConfigError(f'{where}: needs camera-frame gt_bboxes_3d (KittiDataset '
                              f"box_frame='camera'), got {type(boxes).__name__}")
        if 'img_affine' not in results:  # not checked by a crop/resize transform yet
            check_mono3d_frame(results, 'Mono3DTargets', self.principal_point_margin)
        cam2img = _as_matrix(results.get('cam2img'), where)
        height, width = (int(v) for v in results['img_shape'][:2])
        centers, depths = project_centers(boxes, cam2img)
        results['centers_2d'], results['depths'] = centers, depths
        keep = (depths >= self.min_depth) & (depths <= self.max_depth)
        keep &= ((centers[:, 0] >= 0) & (centers[:, 0] < width) & (centers[:, 1] >= 0)
                 & (centers[:, 1] < height))
        if self.filter_level or self.drop_center_outside_box:
            if 'gt_bboxes' not in results:
                raise ConfigError(f'{where}: needs gt_bboxes (LoadAnnotations3D(with_bbox=True))')
            bboxes = np.asarray(results['gt_bboxes'], dtype=np.float64).reshape(-1, 4)
        if self.filter_level:
            missing = [k for k in ('truncated', 'occluded') if k not in results]
            if missing:
                raise ConfigError(f'{where}: filter_level needs {missing} '
                                  "(LoadAnnotations3D(extra_keys=('truncated', 'occluded')))")
            scale_y = results.get('scale_factor', (1.0, 1.0))[1]
            level = monodetr_level((bboxes[:, 3] - bboxes[:, 1]) / scale_y,
                                   results['truncated'], results['occluded'])
            keep &= level >= 0
        if self.drop_center_outside_box:
            keep &= ((centers[:, 0] >= bboxes[:, 0]) & (centers[:, 0] <= bboxes[:, 2])
                     & (centers[:, 1] >= bboxes[:, 1]) & (centers[:, 1] <= bboxes[:, 3]))
        select_instances(results, torch.from_numpy(keep))
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(min_depth={self.min_depth}, max_depth={self.max_depth}, '
                f'filter_level={self.filter_level}, '
                f'drop_center_outside_box={self.drop_center_outside_box})')
