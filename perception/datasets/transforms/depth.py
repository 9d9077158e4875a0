"""Posed two-view depth transforms: loading a pair and its depth, resize / crop, packing.

The frame dict comes from :class:`perception.datasets.PosedDepthDataset`. Keys written:

* ``img``, ``img_src``: ``(H, W, 3)`` RGB reference and source frames, uint8 (or float32, 0-255).
* ``intrinsics``: ``(3, 3)`` float64 pinhole matrix of both frames (px, pixel centres at integer
  coordinates); ``pose``: ``(4, 4)`` float64 taking reference-camera points into the source
  camera (``X_src = pose @ X_ref``).
* ``gt_depth``: ``(H, W)`` float32 z-depth of the reference frame in metres, 0 where unknown;
  ``gt_valid``: ``(H, W)`` bool, depth known (> 0, finite) and within ``[min_depth, max_depth]``.
* ``img_shape`` / ``ori_shape`` ``(H, W)``; records ``scale_factor`` ``(s_x, s_y)`` and
  ``crop_offset`` ``(y0, x0)``.

The geometric transforms keep the intrinsics consistent with the pixels: a 3D point projected
with the new intrinsics lands where the resized / cropped image shows it. A resize by
``(s_x, s_y)`` (``cv2.resize``'s pixel-centre mapping ``x' = (x + 0.5) s_x - 0.5``) gives
``fx' = s_x fx``, ``cx' = s_x (cx + 0.5) - 0.5`` (likewise ``fy``, ``cy``; the skew scales with
``s_x``); a crop at ``(y0, x0)`` gives ``cx' = cx - x0``, ``cy' = cy - y0``. UniMatch's
``RandomResize`` scales ``cx`` by ``s_x`` alone, which is off by ``(s_x - 1) / 2`` px. The pose
and the depth values are unchanged by both (no flips: mirroring an image would need a mirrored
pose). Random draws use NumPy's global generator, which mmengine seeds per worker.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
import torch
from mmengine.structures import BaseDataElement, PixelData

from ...engine.errors import ConfigError, DataError
from ...registry import TRANSFORMS
from ..depth_io import check_principal_point, read_depth
from .loading import read_rgb

__all__ = ['LoadDepth', 'LoadPosedPair', 'PackPosedDepthInputs', 'PosedRandomCrop',
           'PosedRandomResize', 'PosedResize', 'crop_intrinsics', 'scale_intrinsics']

_IMAGE_KEYS = ('img', 'img_src')
_MASK_KEYS = ('gt_valid',)


def _size(image: np.ndarray) -> str:
    return f'{image.shape[1]}x{image.shape[0]}'


def scale_intrinsics(intrinsics: np.ndarray, scale_x: float, scale_y: float) -> np.ndarray:
    """Intrinsics of an image resized by ``(s_x, s_y)`` with the pixel-centre mapping."""
    k = np.array(intrinsics, dtype=np.float64)
    k[0, :2] *= scale_x  # fx and skew
    k[1, 1] *= scale_y
    k[0, 2] = (k[0, 2] + 0.5) * scale_x - 0.5
    k[1, 2] = (k[1, 2] + 0.5) * scale_y - 0.5
    return k


def crop_intrinsics(intrinsics: np.ndarray, y0: int, x0: int) -> np.ndarray:
    """Intrinsics of the window whose top-left pixel is ``(y0, x0)``."""
    k = np.array(intrinsics, dtype=np.float64)
    k[0, 2] -= x0
    k[1, 2] -= y0
    return k


# ------------------------------------------------------------------------------------- loading

@TRANSFORMS.register_module()
class LoadPosedPair:
    """Read ``img_path`` / ``img_src_path`` into ``img`` / ``img_src``; intrinsics and pose.

    ``intrinsics`` (3x3) and ``pose`` (4x4) are taken from the frame dict as float64 arrays.
    Raises :class:`DataError` when the two frames differ in size (naming both files), and when the
    principal point lies outside the image or a focal length is <= 0 (naming ``cam_path`` and the
    field).

    Args:
        to_float32: return float32 images (values 0-255) instead of uint8.
    """

    def __init__(self, to_float32: bool = False) -> None:
        self.to_float32 = to_float32

    def __call__(self, results: dict) -> dict:
        for key in ('img_path', 'img_src_path', 'intrinsics', 'pose'):
            if results.get(key) is None:
                raise DataError(f'LoadPosedPair: frame {results.get("frame_id")} has no {key}')
        ref = read_rgb(str(results['img_path']))
        src = read_rgb(str(results['img_src_path']))
        if ref.shape != src.shape:
            raise DataError(f'posed pair of different sizes: reference {results["img_path"]} is '
                            f'{_size(ref)}, source {results["img_src_path"]} is {_size(src)} '
                            '(width x height); both views must share one size and intrinsics')
        cam = results.get('cam_path', f'frame {results.get("frame_id")}')
        intrinsics = np.asarray(results['intrinsics'], dtype=np.float64)
        if intrinsics.shape != (3, 3):
            raise DataError(f'{cam}: intrinsics must be 3x3, got shape {intrinsics.shape}')
        pose = np.asarray(results['pose'], dtype=np.float64)
        if pose.shape != (4, 4):
            raise DataError(f'{results.get("pose_path", cam)}: pose must be 4x4, got shape '
                            f'{pose.shape}')
        check_principal_point(intrinsics, ref.shape[1], ref.shape[0], cam, results['img_path'])
        if self.to_float32:
            ref, src = ref.astype(np.float32), src.astype(np.float32)
        results['img'], results['img_src'] = ref, src
        results['intrinsics'], results['pose'] = intrinsics, pose
        results['img_shape'] = results['ori_shape'] = ref.shape[:2]
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(to_float32={self.to_float32})'


@TRANSFORMS.register_module()
class LoadDepth:
    """Read the reference frame's ``depth_path`` (``depth_format`` ``'npy'`` or ``'png_mm'``).

    Adds ``gt_depth`` ``(H, W)`` float32 metres (0 where unknown, so no ``inf`` / NaN reaches a
    loss) and ``gt_valid`` ``(H, W)`` bool: known (finite, > 0) and, where given, within
    ``[min_depth, max_depth]`` (inclusive). A depth map of another size than ``img`` raises
    :class:`DataError` naming both files. Frames without ``depth_path`` pass unchanged unless
    ``required``.
    """

    def __init__(self, min_depth: float | None = None, max_depth: float | None = None,
                 required: bool = False) -> None:
        if min_depth is not None and max_depth is not None and min_depth > max_depth:
            raise ConfigError(f'LoadDepth: min_depth {min_depth} > max_depth {max_depth}')
        self.min_depth, self.max_depth, self.required = min_depth, max_depth, required

    def __call__(self, results: dict) -> dict:
        path = results.get('depth_path')
        if path is None:
            if self.required:
                raise DataError(f'LoadDepth: frame {results.get("frame_id")} has no depth_path')
            return results
        depth, valid = read_depth(path, results.get('depth_format', 'npy'))
        if 'img' in results and results['img'].shape[:2] != depth.shape:
            raise DataError(f'{path}: depth map is {_size(depth)}, its image '
                            f'{results.get("img_path")} is {_size(results["img"])} (width x '
                            'height); the depth must have the reference frame\'s size')
        if self.min_depth is not None:
            valid &= depth >= self.min_depth
        if self.max_depth is not None:
            valid &= depth <= self.max_depth
        results['gt_depth'], results['gt_valid'] = depth, valid
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(min_depth={self.min_depth}, max_depth={self.max_depth}, '
                f'required={self.required})')


# ------------------------------------------------------------------------------------ geometric

def _resize_pair(results: dict, scale_x: float, scale_y: float, out_size: tuple[int, int],
                 depth_interpolation: str) -> dict:
    """Resize images and depth to ``out_size`` ``(h, w)``; ``s_x = w / W``, ``s_y = h / H``."""
    height, width = out_size
    for key in _IMAGE_KEYS:
        results[key] = cv2.resize(results[key], (width, height), interpolation=cv2.INTER_LINEAR)
    if 'gt_depth' in results:
        depth, valid = results['gt_depth'], results['gt_valid']
        if depth_interpolation == 'nearest':
            def nearest(a):
                return cv2.resize(a, (width, height), interpolation=cv2.INTER_NEAREST_EXACT)
            depth = nearest(depth.astype(np.float32))
            valid = nearest(valid.astype(np.uint8)).astype(bool)
        else:
            def linear(a):
                return cv2.resize(a, (width, height), interpolation=cv2.INTER_LINEAR)
            depth = linear(np.where(valid, depth, 0).astype(np.float32))
            # a pixel interpolated from an invalid neighbour would mix in its 0: drop it
            valid = (linear(valid.astype(np.float32)) > 1 - 1e-4) & (depth > 0)
        results['gt_depth'] = np.where(valid, depth, 0).astype(np.float32)
        results['gt_valid'] = valid
    results['intrinsics'] = scale_intrinsics(results['intrinsics'], scale_x, scale_y)
    results['img_shape'] = (height, width)
    previous = results.get('scale_factor', (1.0, 1.0))
    results['scale_factor'] = (previous[0] * scale_x, previous[1] * scale_y)
    return results


def _check_interpolation(name: str, depth_interpolation: str) -> None:
    if depth_interpolation not in ('linear', 'nearest'):
        raise ConfigError(f"{name}: depth_interpolation must be 'linear' or 'nearest', got "
                          f'{depth_interpolation!r}')


@TRANSFORMS.register_module()
class PosedResize:
    """Resize both frames and the depth to ``size`` ``(h, w)`` or by ``scale`` ``(s_x, s_y)``.

    Images bilinearly; depth values are unchanged (a resize does not move the camera):
    ``depth_interpolation='linear'`` (as UniMatch; a pixel stays valid only if its four source
    neighbours are) or ``'nearest'`` (no blending across depth edges). The intrinsics follow
    :func:`scale_intrinsics` with the actual ``s_x = w' / W``, ``s_y = h' / H``.
    """

    def __init__(self, size: Sequence[int] | None = None,
                 scale: float | Sequence[float] | None = None,
                 depth_interpolation: str = 'linear') -> None:
        if (size is None) == (scale is None):
            raise ConfigError('PosedResize: give exactly one of size (h, w) and scale')
        if size is not None and (len(size) != 2 or min(size) <= 0):
            raise ConfigError(f'PosedResize: size is (h, w) > 0, got {size}')
        if scale is not None:
            scale = (float(scale),) * 2 if np.isscalar(scale) else tuple(float(s) for s in scale)
            if len(scale) != 2 or min(scale) <= 0:
                raise ConfigError(f'PosedResize: scale is s or (s_x, s_y) > 0, got {scale}')
        _check_interpolation('PosedResize', depth_interpolation)
        self.size = None if size is None else tuple(int(s) for s in size)
        self.scale = scale
        self.depth_interpolation = depth_interpolation

    def __call__(self, results: dict) -> dict:
        height, width = results['img'].shape[:2]
        if self.size is not None:
            out = self.size
        else:
            out = (max(1, int(round(height * self.scale[1]))),
                   max(1, int(round(width * self.scale[0]))))
        return _resize_pair(results, out[1] / width, out[0] / height, out,
                            self.depth_interpolation)

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(size={self.size}, scale={self.scale}, '
                f'depth_interpolation={self.depth_interpolation!r})')


@TRANSFORMS.register_module()
class PosedRandomResize:
    """UniMatch's depth ``RandomResize``: with probability ``prob`` scale by ``2 ** U(a, b)``.

    With probability ``stretch_prob`` the two axes get independent extra factors
    ``2 ** U(-max_stretch, max_stretch)``; both are raised to at least
    ``max(h_min / H, w_min / W)`` for ``min_size`` ``(h_min, w_min)`` (the crop size). The
    official defaults: ``prob`` 0.5, ``(min_scale, max_scale)`` (-0.2, 0.2), stretch 0.4 / 0.2.
    The output size is rounded as ``cv2.resize`` does; the intrinsics use the actual factors.
    """

    def __init__(self, min_size: Sequence[int] | None = None, min_scale: float = -0.2,
                 max_scale: float = 0.2, stretch_prob: float = 0.4, max_stretch: float = 0.2,
                 prob: float = 0.5, depth_interpolation: str = 'linear') -> None:
        if min_scale > max_scale:
            raise ConfigError(f'PosedRandomResize: min_scale {min_scale} > max_scale {max_scale} '
                              '(both are log2 exponents)')
        if min_size is not None and len(min_size) != 2:
            raise ConfigError(f'PosedRandomResize: min_size is (h, w), got {min_size}')
        _check_interpolation('PosedRandomResize', depth_interpolation)
        self.min_size = None if min_size is None else tuple(int(s) for s in min_size)
        self.min_scale, self.max_scale = min_scale, max_scale
        self.stretch_prob, self.max_stretch, self.prob = stretch_prob, max_stretch, prob
        self.depth_interpolation = depth_interpolation

    def __call__(self, results: dict) -> dict:
        if np.random.rand() >= self.prob:
            results.setdefault('scale_factor', (1.0, 1.0))
            return results
        height, width = results['img'].shape[:2]
        scale = 2.0 ** np.random.uniform(self.min_scale, self.max_scale)
        scale_x = scale_y = scale
        if np.random.rand() < self.stretch_prob:
            scale_x *= 2.0 ** np.random.uniform(-self.max_stretch, self.max_stretch)
            scale_y *= 2.0 ** np.random.uniform(-self.max_stretch, self.max_stretch)
        if self.min_size is not None:
            floor = max(self.min_size[0] / height, self.min_size[1] / width)
            scale_x, scale_y = max(scale_x, floor), max(scale_y, floor)
        out = (max(1, int(round(height * scale_y))), max(1, int(round(width * scale_x))))
        if self.min_size is not None:
            out = (max(out[0], self.min_size[0]), max(out[1], self.min_size[1]))
        return _resize_pair(results, out[1] / width, out[0] / height, out,
                            self.depth_interpolation)

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(min_size={self.min_size}, min_scale={self.min_scale}, '
                f'max_scale={self.max_scale}, stretch_prob={self.stretch_prob}, '
                f'max_stretch={self.max_stretch}, prob={self.prob}, '
                f'depth_interpolation={self.depth_interpolation!r})')


@TRANSFORMS.register_module()
class PosedRandomCrop:
    """Cut the same ``crop_size`` ``(h, w)`` window out of both frames and the depth.

    The corner is uniform over the image (UniMatch's ``RandomCrop``); the principal point moves by
    the offset (:func:`crop_intrinsics`). An image smaller than the crop raises
    :class:`DataError`. Records ``crop_offset`` ``(y0, x0)``.
    """

    def __init__(self, crop_size: Sequence[int]) -> None:
        if len(crop_size) != 2 or min(crop_size) <= 0:
            raise ConfigError(f'PosedRandomCrop: crop_size is (h, w) > 0, got {crop_size}')
        self.crop_size = tuple(int(c) for c in crop_size)

    def __call__(self, results: dict) -> dict:
        height, width = results['img'].shape[:2]
        crop_h, crop_w = self.crop_size
        if height < crop_h or width < crop_w:
            raise DataError(f'PosedRandomCrop: frame {results.get("frame_id")} is {width}x'
                            f'{height}, smaller than the crop {crop_w}x{crop_h}')
        y0 = int(np.random.randint(0, height - crop_h + 1))
        x0 = int(np.random.randint(0, width - crop_w + 1))
        for key in (*_IMAGE_KEYS, 'gt_depth', *_MASK_KEYS):
            if key in results:
                results[key] = results[key][y0:y0 + crop_h, x0:x0 + crop_w].copy()
        results['intrinsics'] = crop_intrinsics(results['intrinsics'], y0, x0)
        results['img_shape'] = (crop_h, crop_w)
        results['crop_offset'] = (y0, x0)
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(crop_size={self.crop_size})'


# ------------------------------------------------------------------------------------- packing

_DEFAULT_META_KEYS = ('frame_id', 'sample_idx', 'img_path', 'img_src_path', 'depth_path',
                      'intrinsics', 'pose', 'ori_shape', 'img_shape', 'scale_factor',
                      'crop_offset')


@TRANSFORMS.register_module()
class PackPosedDepthInputs:
    """Pack a posed pair for a model.

    Returns ``{'inputs': (2, 3, H, W) tensor [reference, source] (uint8 if the images are uint8,
    else float32, values 0-255; normalisation is the data preprocessor's job), 'data_samples':
    BaseDataElement}``. The data sample holds, when present, ``gt_depth`` (``PixelData``, data
    ``(1, H, W)`` float32 metres, 0 where unknown) and ``gt_valid`` (``PixelData``, ``(1, H, W)``
    bool) (the fields ``DepthMetric`` reads), and as metainfo the ``meta_keys`` found in
    ``results``; ``intrinsics`` ``(3, 3)`` and ``pose`` ``(4, 4)`` (reference -> source camera)
    become float32 ndarrays.
    """

    def __init__(self, meta_keys: Sequence[str] = _DEFAULT_META_KEYS) -> None:
        self.meta_keys = tuple(meta_keys)

    def __call__(self, results: dict) -> dict:
        ref, src = results['img'], results['img_src']
        if ref.shape != src.shape or ref.ndim != 3 or ref.shape[2] != 3:
            raise DataError(f'PackPosedDepthInputs: expected two (H, W, 3) images of one size, '
                            f'got {ref.shape} and {src.shape}')
        pair = np.stack([ref, src]).transpose(0, 3, 1, 2)
        inputs = torch.from_numpy(np.ascontiguousarray(pair))
        if inputs.dtype != torch.uint8:
            inputs = inputs.float()
        meta = {k: results[k] for k in self.meta_keys if k in results}
        for key, shape in (('intrinsics', (3, 3)), ('pose', (4, 4))):
            if key in meta:
                meta[key] = np.asarray(meta[key], dtype=np.float32)
                if meta[key].shape != shape:
                    raise DataError(f'PackPosedDepthInputs: {key} must be {shape}, got '
                                    f'{meta[key].shape}')
        sample = BaseDataElement(metainfo=meta)
        if 'gt_depth' in results:
            depth = np.asarray(results['gt_depth'], np.float32)
            if depth.shape != ref.shape[:2]:
                raise DataError(f'PackPosedDepthInputs: gt_depth is {depth.shape}, expected '
                                f'{ref.shape[:2]}')
            sample.gt_depth = PixelData(data=torch.from_numpy(depth[None].copy()))
        for key in _MASK_KEYS:
            if key in results:
                sample.set_field(PixelData(data=torch.from_numpy(
                    np.asarray(results[key], bool)[None].copy())), key)
        return {'inputs': inputs, 'data_samples': sample}

    def __repr__(self) -> str:
        return f'{type(self).__name__}(meta_keys={self.meta_keys})'
