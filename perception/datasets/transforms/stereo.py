"""Stereo transforms: loading a pair and its disparity, RAFT-Stereo's augmentation, packing.

The frame dict comes from the stereo datasets (``perception/datasets/stereo.py``). Keys written:

* ``img``, ``img_right``: ``(H, W, 3)`` RGB, uint8 (or float32 with values 0-255).
* ``gt_disp``: ``(H, W)`` float32 left-view disparity in px, 0 where there is no ground truth;
  ``gt_valid``: ``(H, W)`` bool; ``noc_mask``: ``(H, W)`` bool (True = not occluded), when known.
* ``img_shape`` / ``ori_shape`` ``(H, W)``, and records of what the augmentation did:
  ``scale_factor`` ``(s_x, s_y)``, ``crop_offset`` ``(y0, x0)``, ``flip_vertical``.

The geometric transforms keep the disparity consistent with the images: left pixel ``(u, v)``
matches right pixel ``(u - d, v)`` before and after (see ``tests/test_stereo_data.py``). Random
draws use NumPy's global generator, which mmengine seeds per worker.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
import torch
from mmengine.structures import BaseDataElement, PixelData

from ...engine.errors import ConfigError, DataError
from ...registry import TRANSFORMS
from ..stereo_io import read_kitti_disparity, read_pfm
from .loading import read_rgb

__all__ = ['LoadDisparity', 'LoadStereoPair', 'PackStereoInputs', 'StereoColorJitter',
           'StereoEraser', 'StereoRandomCrop', 'StereoRandomFlip', 'StereoRandomScale',
           'resample_sparse_disparity']

# ITU-R BT.601 luma weights, as PIL's convert('L') that torchvision's ColorJitter relies on.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_MASK_KEYS = ('gt_valid', 'noc_mask')


def _size(image: np.ndarray) -> str:
    return f'{image.shape[1]}x{image.shape[0]}'


# ------------------------------------------------------------------------------------- loading

@TRANSFORMS.register_module()
class LoadStereoPair:
    """Read ``img_path`` and ``img_right_path`` as RGB into ``img`` and ``img_right``.

    Args:
        to_float32: return float32 images (values 0-255) instead of uint8.

    Left and right of different sizes raise :class:`DataError` naming both files.
    """

    def __init__(self, to_float32: bool = False) -> None:
        self.to_float32 = to_float32

    def __call__(self, results: dict) -> dict:
        for key in ('img_path', 'img_right_path'):
            if not results.get(key):
                raise DataError(f'LoadStereoPair: frame {results.get("frame_id")} has no {key}')
        left = read_rgb(str(results['img_path']))
        right = read_rgb(str(results['img_right_path']))
        if left.shape != right.shape:
            raise DataError(f'stereo pair of different sizes: left {results["img_path"]} is '
                            f'{_size(left)}, right {results["img_right_path"]} is {_size(right)} '
                            '(width x height); a rectified pair must have one size')
        if self.to_float32:
            left, right = left.astype(np.float32), right.astype(np.float32)
        results['img'], results['img_right'] = left, right
        results['img_shape'] = results['ori_shape'] = left.shape[:2]
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(to_float32={self.to_float32})'


def _read_noc_mask(path: str, noc_format: str) -> np.ndarray:
    if noc_format == 'kitti_png':
        return read_kitti_disparity(path)[1]
    if noc_format == 'mask_png':
        mask = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        if mask is None:
            raise DataError(f'{path}: cannot read the non-occlusion mask')
        if mask.ndim != 2:
            raise DataError(f'{path}: a non-occlusion mask must be single-channel, found '
                            f'{mask.shape[2]} channels')
        return mask == 255  # Middlebury / ETH3D: 255 non-occluded, 128 occluded, 0 unknown
    raise DataError(f"{path}: unknown noc_format {noc_format!r} (expected 'kitti_png' or "
                    "'mask_png')")


@TRANSFORMS.register_module()
class LoadDisparity:
    """Read ``disp_path`` by ``disp_format`` (``'pfm'`` or ``'kitti_png'``).

    Adds ``gt_disp`` ``(H, W)`` float32 (0 at invalid pixels, so no ``inf`` reaches losses or
    interpolation), ``gt_valid`` ``(H, W)`` bool (finite and > 0), and ``noc_mask`` when the frame
    has a ``noc_path``. Frames without ground truth (``disp_path`` None) pass unchanged unless
    ``required``. A disparity map of another size than ``img`` raises :class:`DataError`.
    """

    def __init__(self, required: bool = False) -> None:
        self.required = required

    def __call__(self, results: dict) -> dict:
        path = results.get('disp_path')
        if path is None:
            if self.required:
                raise DataError(f'LoadDisparity: frame {results.get("frame_id")} has no '
                                'ground-truth disparity (a test split?)')
            return results
        fmt = results.get('disp_format', 'pfm')
        if fmt == 'pfm':
            disp = read_pfm(path)
            if disp.ndim != 2:
                raise DataError(f'{path}: a disparity PFM must have one channel (Pf), found 3 (PF)')
        elif fmt == 'kitti_png':
            disp = read_kitti_disparity(path)[0]
        else:
            raise DataError(f"{path}: unknown disp_format {fmt!r} (expected 'pfm' or 'kitti_png')")
        valid = np.isfinite(disp) & (disp > 0)
        disp = np.where(valid, disp, 0).astype(np.float32)
        if 'img' in results and results['img'].shape[:2] != disp.shape:
            raise DataError(f'{path}: disparity map is {_size(disp)}, image {results["img_path"]} '
                            f'is {_size(results["img"])}')
        results['gt_disp'], results['gt_valid'] = disp, valid
        if results.get('noc_path'):
            noc = _read_noc_mask(results['noc_path'], results.get('noc_format', 'mask_png'))
            if noc.shape != disp.shape:
                raise DataError(f'{results["noc_path"]}: mask is {_size(noc)}, disparity {path} '
                                f'is {_size(disp)}')
            results['noc_mask'] = noc
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(required={self.required})'


# ---------------------------------------------------------------------------------- photometric

def _gray(images: np.ndarray) -> np.ndarray:
    """``(..., 3)`` float RGB -> ``(..., 1)`` luma."""
    return (images @ _LUMA)[..., None]


def _adjust_hue(image: np.ndarray, shift: float) -> np.ndarray:
    """Rotate the hue of a float RGB image (0-255) by ``shift`` turns (-0.5 .. 0.5)."""
    hsv = cv2.cvtColor((image / 255.0).astype(np.float32), cv2.COLOR_RGB2HSV)  # H in [0, 360)
    hsv[..., 0] = np.mod(hsv[..., 0] + 360.0 * shift, 360.0)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * 255.0


@TRANSFORMS.register_module()
class StereoColorJitter:
    """Brightness, contrast, saturation, hue (random order) and gamma, as RAFT-Stereo's augmentor.

    With probability ``asymmetric_prob`` each image gets its own random factors, otherwise both
    share one draw (and contrast uses the mean grey of the pair, as RAFT-Stereo jitters the two
    images stacked). Factors follow torchvision's ``ColorJitter``: brightness/contrast factor
    uniform in ``[1 - b, 1 + b]``, saturation in the given range, hue shift uniform in
    ``[-hue, hue]`` turns; then ``gain * 255 * (x / 255) ** gamma``.

    RAFT-Stereo's dense augmentor (the defaults here): brightness 0.4, contrast 0.4, saturation
    (0.6, 1.4), hue 0.5 / 3.14, asymmetric 0.2; its published SceneFlow and Middlebury runs pass
    ``--saturation_range 0 1.4``. Its sparse (KITTI/Middlebury/ETH3D) augmentor uses 0.3, 0.3,
    (0.7, 1.3), 0.3 / 3.14 and never jitters asymmetrically (``asymmetric_prob=0``).
    The operations run in float32 and round once at the end (torchvision's PIL path rounds after
    each), so values can differ from RAFT-Stereo's by a grey level; the distributions are the same.
    Replaces ``img`` and ``img_right``; keeps their dtype.
    """

    def __init__(self, brightness: float = 0.4, contrast: float = 0.4,
                 saturation: Sequence[float] = (0.6, 1.4), hue: float = 0.5 / 3.14,
                 gamma: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
                 asymmetric_prob: float = 0.2) -> None:
        if not 0 <= hue <= 0.5:
            raise ConfigError(f'StereoColorJitter: hue must be in [0, 0.5], got {hue}')
        if len(saturation) != 2 or len(gamma) != 4:
            raise ConfigError('StereoColorJitter: saturation is (min, max), gamma is (gamma_min, '
                              f'gamma_max, gain_min, gain_max); got {saturation}, {gamma}')
        self.brightness, self.contrast, self.hue = brightness, contrast, hue
        self.saturation = tuple(float(s) for s in saturation)
        self.gamma = tuple(float(g) for g in gamma)
        self.asymmetric_prob = asymmetric_prob

    def _jitter(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """One random draw applied to every image of ``images`` (float32 RGB 0-255)."""
        b = np.random.uniform(max(0.0, 1 - self.brightness), 1 + self.brightness)
        c = np.random.uniform(max(0.0, 1 - self.contrast), 1 + self.contrast)
        s = np.random.uniform(*self.saturation)
        h = np.random.uniform(-self.hue, self.hue)
        for op in np.random.permutation(4):
            if op == 0:
                images = [np.clip(im * b, 0, 255) for im in images]
            elif op == 1:
                mean = np.mean([_gray(im).mean() for im in images])
                images = [np.clip(c * im + (1 - c) * mean, 0, 255) for im in images]
            elif op == 2:
                images = [np.clip(s * im + (1 - s) * _gray(im), 0, 255) for im in images]
            elif h != 0:
                images = [np.clip(_adjust_hue(im, h), 0, 255) for im in images]
        gamma = np.random.uniform(self.gamma[0], self.gamma[1])
        gain = np.random.uniform(self.gamma[2], self.gamma[3])
        if gamma != 1 or gain != 1:
            images = [np.clip(gain * 255.0 * (im / 255.0) ** gamma, 0, 255) for im in images]
        return images

    def __call__(self, results: dict) -> dict:
        left, right = results['img'], results['img_right']
        dtype = left.dtype
        pair = [left.astype(np.float32), right.astype(np.float32)]
        if np.random.rand() < self.asymmetric_prob:
            pair = self._jitter(pair[:1]) + self._jitter(pair[1:])
        else:
            pair = self._jitter(pair)
        if dtype == np.uint8:
            pair = [np.round(im).astype(np.uint8) for im in pair]
        results['img'], results['img_right'] = (im.astype(dtype, copy=False) for im in pair)
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(brightness={self.brightness}, contrast={self.contrast}, '
                f'saturation={self.saturation}, hue={self.hue:.4f}, gamma={self.gamma}, '
                f'asymmetric_prob={self.asymmetric_prob})')


@TRANSFORMS.register_module()
class StereoEraser:
    """Occlusion augmentation: paint 1..``max_rects`` rectangles of the RIGHT image's mean colour.

    As RAFT-Stereo: with probability ``prob``, rectangles with a top-left corner uniform in the
    image and sides uniform in ``[size_range[0], size_range[1])`` px (clipped at the border). The
    left image and the disparity are unchanged: the model must infer the hidden matches.
    """

    def __init__(self, prob: float = 0.5, max_rects: int = 2,
                 size_range: Sequence[int] = (50, 100)) -> None:
        if max_rects < 1 or len(size_range) != 2 or size_range[0] >= size_range[1]:
            raise ConfigError(f'StereoEraser: need max_rects >= 1 and size_range (min, max) with '
                              f'min < max, got {max_rects}, {size_range}')
        self.prob, self.max_rects = prob, max_rects
        self.size_range = tuple(int(s) for s in size_range)

    def __call__(self, results: dict) -> dict:
        if np.random.rand() >= self.prob:
            return results
        right = results['img_right'].copy()
        height, width = right.shape[:2]
        mean_colour = right.reshape(-1, 3).mean(axis=0).astype(right.dtype)
        for _ in range(np.random.randint(1, self.max_rects + 1)):
            x0, y0 = np.random.randint(0, width), np.random.randint(0, height)
            dx, dy = np.random.randint(*self.size_range), np.random.randint(*self.size_range)
            right[y0:y0 + dy, x0:x0 + dx] = mean_colour
        results['img_right'] = right
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(prob={self.prob}, max_rects={self.max_rects}, '
                f'size_range={self.size_range})')


# ------------------------------------------------------------------------------------ geometric

def resample_sparse_disparity(disp: np.ndarray, valid: np.ndarray, scale_x: float,
                              scale_y: float, out_shape: tuple[int, int],
                              extra: np.ndarray | None = None
                              ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Scale a sparse disparity map by moving its valid points, without interpolation.

    Each valid pixel centre ``(x, y)`` goes to ``((x + 0.5) s_x - 0.5, (y + 0.5) s_y - 0.5)`` (the
    pixel-centre mapping ``cv2.resize`` uses), rounded to the nearest pixel, and its value is
    multiplied by ``s_x``. Where several points land on one pixel the one nearest its centre wins.
    Interpolating would blend valid values with the zeros of invalid pixels.

    Args:
        disp, valid: ``(H, W)`` float disparity and bool mask.
        out_shape: ``(H', W')`` of the scaled images.
        extra: optional ``(H, W)`` per-pixel values carried along (e.g. the noc mask).

    Returns ``disp'`` ``(H', W')`` float32 (0 where invalid), ``valid'`` bool, ``extra'``.
    """
    if disp.shape != valid.shape:
        raise ValueError(f'disp {disp.shape} and valid {valid.shape} differ')
    height, width = out_shape
    ys, xs = np.nonzero(valid)
    fx = (xs + 0.5) * scale_x - 0.5
    fy = (ys + 0.5) * scale_y - 0.5
    xi, yi = np.round(fx).astype(np.int64), np.round(fy).astype(np.int64)
    inside = (xi >= 0) & (xi < width) & (yi >= 0) & (yi < height)
    xs, ys, xi, yi = xs[inside], ys[inside], xi[inside], yi[inside]
    target = yi * width + xi
    distance = (xi - fx[inside]) ** 2 + (yi - fy[inside]) ** 2
    order = np.lexsort((distance, target))  # by target pixel, nearest point first
    _, first = np.unique(target[order], return_index=True)
    keep = order[first]
    out_disp = np.zeros(out_shape, dtype=np.float32)
    out_valid = np.zeros(out_shape, dtype=bool)
    out_disp[yi[keep], xi[keep]] = disp[ys[keep], xs[keep]] * scale_x
    out_valid[yi[keep], xi[keep]] = True
    out_extra = None
    if extra is not None:
        out_extra = np.zeros(out_shape, dtype=extra.dtype)
        out_extra[yi[keep], xi[keep]] = extra[ys[keep], xs[keep]]
    return out_disp, out_valid, out_extra


@TRANSFORMS.register_module()
class StereoRandomScale:
    """Scale both images by ``(s_x, s_y)`` and the disparity values by ``s_x``, as RAFT-Stereo.

    ``s = 2 ** U(min_scale, max_scale)``; with probability ``stretch_prob`` ``s_x`` and ``s_y``
    are further multiplied by independent ``2 ** U(-max_stretch, max_stretch)``. With
    ``crop_size`` ``(h, w)`` both are raised to at least ``(h + m) / H`` and ``(w + m) / W`` so a
    crop still fits (``m`` = 8 px dense, 1 px sparse, as RAFT-Stereo). The whole step happens with
    probability ``prob``. Images are resized bilinearly (``cv2.resize`` with ``fx, fy``, so the
    pixel-centre mapping uses exactly ``s_x, s_y``).

    Ground truth: dense maps are resized bilinearly (only pixels whose four neighbours are all
    valid stay valid, so holes such as Middlebury's ``inf`` do not bleed); sparse ones
    (``sparse=True``, or ``None`` and fewer than half of the pixels valid, e.g. KITTI) move their
    valid points with :func:`resample_sparse_disparity`. ``noc_mask`` is
    resized by nearest neighbour (dense) or carried with the points (sparse).

    RAFT-Stereo's published runs use ``--spatial_scale -0.2 0.4`` (``min_scale``, ``max_scale``,
    the defaults here) with its dense augmentor's ``stretch_prob`` 0.8 and ``max_stretch`` 0.2;
    its sparse augmentor uses ``prob=0.8`` and no stretch (``stretch_prob=0``). Records
    ``scale_factor`` ``(s_x, s_y)`` (1, 1 when skipped).
    """

    def __init__(self, min_scale: float = -0.2, max_scale: float = 0.4, stretch_prob: float = 0.8,
                 max_stretch: float = 0.2, prob: float = 1.0,
                 crop_size: Sequence[int] | None = None, sparse: bool | None = None) -> None:
        if min_scale > max_scale:
            raise ConfigError(f'StereoRandomScale: min_scale {min_scale} > max_scale {max_scale}'
                              ' (both are log2 exponents)')
        if crop_size is not None and len(crop_size) != 2:
            raise ConfigError(f'StereoRandomScale: crop_size is (h, w), got {crop_size}')
        self.min_scale, self.max_scale = min_scale, max_scale
        self.stretch_prob, self.max_stretch, self.prob = stretch_prob, max_stretch, prob
        self.crop_size = None if crop_size is None else tuple(int(c) for c in crop_size)
        self.sparse = sparse

    def _draw(self, height: int, width: int, sparse: bool) -> tuple[float, float]:
        scale = 2.0 ** np.random.uniform(self.min_scale, self.max_scale)
        scale_x = scale_y = scale
        if np.random.rand() < self.stretch_prob:
            scale_x *= 2.0 ** np.random.uniform(-self.max_stretch, self.max_stretch)
            scale_y *= 2.0 ** np.random.uniform(-self.max_stretch, self.max_stretch)
        if self.crop_size is not None:
            margin = 1 if sparse else 8
            scale_x = max(scale_x, (self.crop_size[1] + margin) / width)
            scale_y = max(scale_y, (self.crop_size[0] + margin) / height)
        return float(scale_x), float(scale_y)

    def __call__(self, results: dict) -> dict:
        has_gt = 'gt_disp' in results
        sparse = self.sparse
        if sparse is None:  # KITTI's LiDAR ground truth covers well under half of the pixels
            sparse = has_gt and float(results['gt_valid'].mean()) < 0.5
        height, width = results['img'].shape[:2]
        scale_x, scale_y = self._draw(height, width, sparse)
        if np.random.rand() >= self.prob:
            results['scale_factor'] = (1.0, 1.0)
            return results
        for key in ('img', 'img_right'):
            results[key] = cv2.resize(results[key], None, fx=scale_x, fy=scale_y,
                                      interpolation=cv2.INTER_LINEAR)
        out_shape = results['img'].shape[:2]
        if has_gt:
            disp, valid = results['gt_disp'], results['gt_valid']
            noc = results.get('noc_mask')
            if sparse:
                disp, valid, noc = resample_sparse_disparity(disp, valid, scale_x, scale_y,
                                                             out_shape, noc)
            else:
                disp, valid = self._resize_dense(disp, valid, scale_x, scale_y)
                if noc is not None:
                    noc = cv2.resize(noc.astype(np.uint8), None, fx=scale_x, fy=scale_y,
                                     interpolation=cv2.INTER_NEAREST_EXACT).astype(bool)
            results['gt_disp'], results['gt_valid'] = disp, valid
            if noc is not None:
                results['noc_mask'] = noc
        results['img_shape'] = out_shape
        results['scale_factor'] = (scale_x, scale_y)
        return results

    @staticmethod
    def _resize_dense(disp: np.ndarray, valid: np.ndarray, scale_x: float,
                      scale_y: float) -> tuple[np.ndarray, np.ndarray]:
        def resize(array: np.ndarray) -> np.ndarray:
            return cv2.resize(array, None, fx=scale_x, fy=scale_y, interpolation=cv2.INTER_LINEAR)

        out = resize(np.where(valid, disp, 0).astype(np.float32)) * np.float32(scale_x)
        if valid.all():
            return out, np.ones(out.shape, dtype=bool)
        # A pixel interpolated from an invalid neighbour would mix in its 0: drop it.
        out_valid = resize(valid.astype(np.float32)) > 1 - 1e-4
        return np.where(out_valid, out, 0).astype(np.float32), out_valid

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(min_scale={self.min_scale}, max_scale={self.max_scale}, '
                f'stretch_prob={self.stretch_prob}, max_stretch={self.max_stretch}, '
                f'prob={self.prob}, crop_size={self.crop_size}, sparse={self.sparse})')


def _spatial_keys(results: dict) -> list[str]:
    return [k for k in ('img', 'img_right', 'gt_disp', *_MASK_KEYS) if k in results]


@TRANSFORMS.register_module()
class StereoRandomCrop:
    """Cut the same ``crop_size`` ``(h, w)`` window out of both images and the ground truth.

    The corner is uniform over the image; ``margin`` ``(m_y, m_x)`` widens the range by ``m``
    px on the far side (y) / both sides (x) and clips it, so crops touch the borders more often
    (RAFT-Stereo's sparse augmentor: ``(20, 50)``). ``y_jitter`` > 0 crops the right image up to
    that many rows higher or lower (RAFT-Stereo's ``yjitter``: 2), simulating imperfect
    rectification; it breaks the exact row correspondence on purpose, so it is off by default.
    An image smaller than the crop raises :class:`DataError` (scale it up first with
    ``StereoRandomScale(crop_size=...)``). Records ``crop_offset`` ``(y0, x0)``.
    """

    def __init__(self, crop_size: Sequence[int], margin: Sequence[int] = (0, 0),
                 y_jitter: int = 0) -> None:
        if len(crop_size) != 2 or min(crop_size) <= 0:
            raise ConfigError(f'StereoRandomCrop: crop_size is (h, w) > 0, got {crop_size}')
        self.crop_size = tuple(int(c) for c in crop_size)
        self.margin = tuple(int(m) for m in margin)
        self.y_jitter = int(y_jitter)

    def __call__(self, results: dict) -> dict:
        height, width = results['img'].shape[:2]
        crop_h, crop_w = self.crop_size
        jitter = self.y_jitter
        if height < crop_h + 2 * jitter + (1 if jitter else 0) or width < crop_w:
            raise DataError(f'StereoRandomCrop: frame {results.get("frame_id")} is '
                            f'{width}x{height}, smaller than the crop {crop_w}x{crop_h}'
                            f'{f" plus 2 x {jitter} rows of y_jitter" if jitter else ""}')
        if jitter:
            y0 = np.random.randint(jitter, height - crop_h - jitter + 1)
            x0 = np.random.randint(0, width - crop_w + 1)
            y_right = y0 + np.random.randint(-jitter, jitter + 1)
        else:
            m_y, m_x = self.margin
            y0 = int(np.clip(np.random.randint(0, height - crop_h + m_y + 1), 0, height - crop_h))
            x0 = int(np.clip(np.random.randint(-m_x, width - crop_w + m_x + 1), 0,
                             width - crop_w))
            y_right = y0
        for key in _spatial_keys(results):
            top = y_right if key == 'img_right' else y0
            results[key] = results[key][top:top + crop_h, x0:x0 + crop_w].copy()
        results['img_shape'] = (crop_h, crop_w)
        results['crop_offset'] = (int(y0), int(x0))
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(crop_size={self.crop_size}, margin={self.margin}, '
                f'y_jitter={self.y_jitter})')


@TRANSFORMS.register_module()
class StereoRandomFlip:
    """Flip the pair and the ground truth upside down with probability ``prob`` (RAFT: 0.1).

    Only ``direction='vertical'``: rows stay rows, so the disparity values are unchanged. A
    horizontal flip mirrors the epipolar geometry: the flipped right image becomes the left view,
    whose ground truth is the right-view disparity the datasets do not provide, so it is refused.
    Records ``flip_vertical``.
    """

    def __init__(self, prob: float = 0.1, direction: str = 'vertical') -> None:
        if direction != 'vertical':
            raise ConfigError(f"StereoRandomFlip: only direction='vertical' keeps the left-view "
                              f'disparity valid, got {direction!r} (a horizontal flip would need '
                              'the right-view disparity and swapping the images)')
        self.prob, self.direction = prob, direction

    def __call__(self, results: dict) -> dict:
        flip = bool(np.random.rand() < self.prob)
        if flip:
            for key in _spatial_keys(results):
                results[key] = np.ascontiguousarray(results[key][::-1])
        results['flip_vertical'] = flip
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(prob={self.prob}, direction={self.direction!r})'


# ------------------------------------------------------------------------------------- packing

_DEFAULT_META_KEYS = ('frame_id', 'sample_idx', 'img_path', 'img_right_path', 'disp_path',
                      'calib_path', 'ori_shape', 'img_shape', 'scale_factor', 'crop_offset',
                      'flip_vertical')


@TRANSFORMS.register_module()
class PackStereoInputs:
    """Pack a stereo frame for a model.

    Returns ``{'inputs': (2, 3, H, W) tensor [left, right] (uint8 if the images are uint8, else
    float32, values 0-255; normalisation is the data preprocessor's job), 'data_samples':
    BaseDataElement}``. The data sample holds, when present, ``gt_disp`` (``PixelData``, data
    ``(1, H, W)`` float32), ``gt_valid`` and ``noc_mask`` (``PixelData``, ``(1, H, W)`` bool)
    (the fields ``StereoMetric`` reads), and as metainfo the ``meta_keys`` found in ``results``.
    """

    def __init__(self, meta_keys: Sequence[str] = _DEFAULT_META_KEYS) -> None:
        self.meta_keys = tuple(meta_keys)

    def __call__(self, results: dict) -> dict:
        left, right = results['img'], results['img_right']
        if left.shape != right.shape or left.ndim != 3 or left.shape[2] != 3:
            raise DataError(f'PackStereoInputs: expected two (H, W, 3) images of one size, got '
                            f'{left.shape} and {right.shape}')
        pair = np.stack([left, right]).transpose(0, 3, 1, 2)
        inputs = torch.from_numpy(np.ascontiguousarray(pair))
        if inputs.dtype != torch.uint8:
            inputs = inputs.float()
        sample = BaseDataElement(metainfo={k: results[k] for k in self.meta_keys if k in results})
        if 'gt_disp' in results:
            sample.gt_disp = PixelData(
                data=torch.from_numpy(np.asarray(results['gt_disp'], np.float32)[None].copy()))
        for key in _MASK_KEYS:
            if key in results:
                sample.set_field(PixelData(data=torch.from_numpy(
                    np.asarray(results[key], bool)[None].copy())), key)
        return {'inputs': inputs, 'data_samples': sample}

    def __repr__(self) -> str:
        return f'{type(self).__name__}(meta_keys={self.meta_keys})'
