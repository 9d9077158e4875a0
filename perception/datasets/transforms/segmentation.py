"""Semantic segmentation transforms: loading, mmsegmentation's augmentation, packing.

The frame dict comes from the segmentation datasets (``perception/datasets/segmentation.py``).
Keys written:

* ``img``: ``(H, W, 3)`` RGB, uint8 (or float32 with values 0-255);
* ``gt_seg_map``: ``(H, W)`` uint8 class indices, ``255`` = ignore;
* ``img_shape`` / ``ori_shape`` ``(H, W)`` and records of the augmentation: ``scale_factor``
  ``(s_x, s_y)``, ``flip``, ``flip_direction``.

The geometric transforms move the image and the label map together (labels with nearest-neighbour
interpolation, so no new label value appears). Random draws use NumPy's global generator (seeded
per worker by mmengine) in the order mmsegmentation draws them.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
import torch
from mmengine.structures import BaseDataElement, PixelData

from ...engine.errors import ConfigError, DataError
from ...registry import TRANSFORMS
from .loading import read_rgb

__all__ = ['LoadSegAnnotations', 'LoadSegImage', 'PackSegInputs', 'PhotoMetricDistortion',
           'RandomCrop', 'RandomFlip', 'RandomResize', 'crop_with_cat_max_ratio',
           'reduce_zero_label', 'rescale_size']

_META_KEYS = ('img_path', 'seg_map_path', 'ori_shape', 'img_shape', 'scale_factor', 'flip',
              'flip_direction', 'reduce_zero_label', 'frame_id', 'sample_idx')


# ------------------------------------------------------------------------------------- loading

@TRANSFORMS.register_module()
class LoadSegImage:
    """Read ``img_path`` as RGB into ``img``; set ``img_shape`` and ``ori_shape`` ``(H, W)``.

    Args:
        to_float32: return a float32 image (values 0-255) instead of uint8.
    """

    def __init__(self, to_float32: bool = False) -> None:
        self.to_float32 = to_float32

    def __call__(self, results: dict) -> dict:
        if not results.get('img_path'):
            raise DataError(f'LoadSegImage: frame {results.get("frame_id")} has no img_path')
        img = read_rgb(str(results['img_path']))
        results['img'] = img.astype(np.float32) if self.to_float32 else img
        results['img_shape'] = results['ori_shape'] = img.shape[:2]
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(to_float32={self.to_float32})'


def reduce_zero_label(labels: np.ndarray) -> np.ndarray:
    """ADE20K's shift: 0 ("other") -> 255, ``k`` -> ``k - 1``, 255 stays 255. ``(H, W)`` uint8."""
    out = labels.astype(np.int64) - 1
    out[(labels == 0) | (labels == 255)] = 255
    return out.astype(np.uint8)


def read_label_map(path: str) -> np.ndarray:
    """A single-channel label PNG as ``(H, W)`` uint8; :class:`DataError` for anything else."""
    labels = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if labels is None:
        raise DataError(f'{path}: cannot read the label map (missing, not a PNG, or truncated)')
    if labels.ndim != 2:
        raise DataError(f'{path}: a label map must be single-channel (one class index per pixel), '
                        f'found {labels.shape[2]} channels; use *_labelTrainIds.png, not '
                        '*_color.png')
    if labels.dtype != np.uint8:
        if labels.size and int(labels.max()) > 255:
            raise DataError(f'{path}: label values must be 0-255, found {int(labels.max())}')
        labels = labels.astype(np.uint8)
    return labels


@TRANSFORMS.register_module()
class LoadSegAnnotations:
    """Read ``seg_map_path`` into ``gt_seg_map`` ``(H, W)`` uint8.

    Args:
        reduce_zero_label: apply :func:`reduce_zero_label`; ``None`` takes the frame's own
            ``reduce_zero_label`` (set by the dataset), default False.

    A label map of another size than the image as loaded (``ori_shape``; test pipelines resize
    the image first and score at the original size) raises :class:`DataError` naming both files.
    """

    def __init__(self, reduce_zero_label: bool | None = None) -> None:
        self.reduce_zero_label = reduce_zero_label

    def __call__(self, results: dict) -> dict:
        path = results.get('seg_map_path')
        if not path:
            raise DataError(f'LoadSegAnnotations: frame {results.get("frame_id")} has no '
                            'seg_map_path')
        labels = read_label_map(str(path))
        reduce = self.reduce_zero_label
        if reduce is None:
            reduce = bool(results.get('reduce_zero_label', False))
        if reduce:
            labels = reduce_zero_label(labels)
        image_shape = results.get('ori_shape') or (
            results['img'].shape[:2] if 'img' in results else None)
        if image_shape is not None and tuple(image_shape[:2]) != labels.shape:
            raise DataError(f'{path}: label map is {labels.shape[1]}x{labels.shape[0]}, image '
                            f'{results.get("img_path")} is {image_shape[1]}x{image_shape[0]} '
                            '(width x height)')
        results['gt_seg_map'] = labels
        results['reduce_zero_label'] = reduce
        results.setdefault('seg_fields', [])
        if 'gt_seg_map' not in results['seg_fields']:
            results['seg_fields'].append('gt_seg_map')
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(reduce_zero_label={self.reduce_zero_label})'


def _seg_keys(results: dict) -> list[str]:
    keys = list(results.get('seg_fields') or [])
    if 'gt_seg_map' in results and 'gt_seg_map' not in keys:
        keys.append('gt_seg_map')
    return keys


# -------------------------------------------------------------------------------------- resize

def rescale_size(width: int, height: int, scale: Sequence[int]) -> tuple[int, int]:
    """mmcv's keep-ratio target ``(w, h)``: the largest size fitting ``scale``'s long/short edges.

    The factor is ``min(max(scale) / long edge, min(scale) / short edge)``; sizes are rounded
    half up (``int(x + 0.5)``).
    """
    factor = min(max(scale) / max(width, height), min(scale) / min(width, height))
    return int(width * factor + 0.5), int(height * factor + 0.5)


@TRANSFORMS.register_module()
class RandomResize:
    """Resize by a random ratio of ``scale`` (mmseg's ``RandomResize`` with ``ratio_range``).

    Args:
        scale: base target ``(w, h)``, e.g. ``(2048, 1024)`` for Cityscapes.
        ratio_range: ``(lo, hi)``; the target is ``int(scale * r)`` with ``r ~ U(lo, hi)``.
            ``None`` uses ``scale`` itself (a deterministic resize).
        keep_ratio: fit the image into the target keeping its aspect ratio (mmcv's
            ``rescale_size``); otherwise resize to the target exactly.

    Images are resized bilinearly (``cv2.INTER_LINEAR``), label maps with nearest neighbour.
    Sets ``img_shape``, ``scale`` and ``scale_factor`` ``(new_w / w, new_h / h)``.
    """

    def __init__(self, scale: Sequence[int] = (2048, 1024),
                 ratio_range: Sequence[float] | None = (0.5, 2.0), keep_ratio: bool = True) -> None:
        if len(scale) != 2 or min(scale) <= 0:
            raise ConfigError(f'RandomResize: scale must be a positive (w, h), got {scale}')
        if ratio_range is not None and (len(ratio_range) != 2 or not
                                        0 < ratio_range[0] <= ratio_range[1]):
            raise ConfigError(f'RandomResize: ratio_range must be (lo, hi) with 0 < lo <= hi, '
                              f'got {ratio_range}')
        self.scale = (int(scale[0]), int(scale[1]))
        self.ratio_range = None if ratio_range is None else tuple(map(float, ratio_range))
        self.keep_ratio = keep_ratio

    def _target(self) -> tuple[int, int]:
        if self.ratio_range is None:
            return self.scale
        lo, hi = self.ratio_range
        ratio = np.random.random_sample() * (hi - lo) + lo
        return int(self.scale[0] * ratio), int(self.scale[1] * ratio)

    def __call__(self, results: dict) -> dict:
        img = results['img']
        h, w = img.shape[:2]
        target = self._target()
        new_w, new_h = rescale_size(w, h, target) if self.keep_ratio else target
        results['img'] = cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        for key in _seg_keys(results):
            results[key] = cv2.resize(results[key], (new_w, new_h),
                                      interpolation=cv2.INTER_NEAREST)
        results['img_shape'] = (new_h, new_w)
        results['scale'] = target
        results['scale_factor'] = (new_w / w, new_h / h)
        results['keep_ratio'] = self.keep_ratio
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(scale={self.scale}, ratio_range={self.ratio_range}, '
                f'keep_ratio={self.keep_ratio})')


# ---------------------------------------------------------------------------------------- crop

def _random_window(height: int, width: int, crop_h: int, crop_w: int) -> tuple[int, int, int, int]:
    """A uniformly placed ``(y1, y2, x1, x2)`` window (clipped to the image when it is smaller)."""
    y1 = np.random.randint(0, max(height - crop_h, 0) + 1)
    x1 = np.random.randint(0, max(width - crop_w, 0) + 1)
    return y1, min(y1 + crop_h, height), x1, min(x1 + crop_w, width)


def crop_with_cat_max_ratio(labels: np.ndarray, crop_size: Sequence[int],
                            cat_max_ratio: float = 0.75, ignore_index: int = 255,
                            max_tries: int = 10) -> tuple[int, int, int, int]:
    """mmseg's crop window ``(y1, y2, x1, x2)`` for an ``(H, W)`` label map.

    With ``cat_max_ratio < 1`` a window is redrawn (up to ``max_tries`` times) until it holds at
    least two labelled classes and none covers ``cat_max_ratio`` or more of its labelled pixels
    (``ignore_index`` pixels are not counted); after ``max_tries`` failures the last draw is used.
    """
    crop_h, crop_w = int(crop_size[0]), int(crop_size[1])
    height, width = labels.shape[:2]
    window = _random_window(height, width, crop_h, crop_w)
    if cat_max_ratio >= 1:
        return window
    for _ in range(max_tries):
        y1, y2, x1, x2 = window
        values, counts = np.unique(labels[y1:y2, x1:x2], return_counts=True)
        counts = counts[values != ignore_index]
        if len(counts) > 1 and counts.max() / counts.sum() < cat_max_ratio:
            break
        window = _random_window(height, width, crop_h, crop_w)
    return window


@TRANSFORMS.register_module()
class RandomCrop:
    """Random ``crop_size`` ``(h, w)`` crop of the image and label maps (mmseg's ``RandomCrop``).

    Args:
        crop_size: ``(h, w)``; an image smaller than it is cropped to its own size on that axis
            (padding is the data preprocessor's job).
        cat_max_ratio: see :func:`crop_with_cat_max_ratio` (``1.0`` disables the rule).
        ignore_index: label not counted by the rule.
    """

    def __init__(self, crop_size: Sequence[int], cat_max_ratio: float = 0.75,
                 ignore_index: int = 255) -> None:
        if len(crop_size) != 2 or min(crop_size) <= 0:
            raise ConfigError(f'RandomCrop: crop_size must be a positive (h, w), got {crop_size}')
        if not 0 < cat_max_ratio <= 1:
            raise ConfigError(f'RandomCrop: cat_max_ratio must be in (0, 1], got {cat_max_ratio}')
        self.crop_size = (int(crop_size[0]), int(crop_size[1]))
        self.cat_max_ratio = float(cat_max_ratio)
        self.ignore_index = ignore_index

    def __call__(self, results: dict) -> dict:
        img = results['img']
        keys = _seg_keys(results)
        if 'gt_seg_map' in results:
            y1, y2, x1, x2 = crop_with_cat_max_ratio(results['gt_seg_map'], self.crop_size,
                                                     self.cat_max_ratio, self.ignore_index)
        else:  # no labels (inference pipelines): the ratio rule has nothing to look at
            y1, y2, x1, x2 = _random_window(img.shape[0], img.shape[1], *self.crop_size)
        results['img'] = img[y1:y2, x1:x2].copy()
        for key in keys:
            results[key] = results[key][y1:y2, x1:x2].copy()
        results['img_shape'] = (y2 - y1, x2 - x1)
        results['crop_bbox'] = (y1, y2, x1, x2)
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(crop_size={self.crop_size}, '
                f'cat_max_ratio={self.cat_max_ratio}, ignore_index={self.ignore_index})')


# ---------------------------------------------------------------------------------------- flip

@TRANSFORMS.register_module()
class RandomFlip:
    """Flip image and label maps together with probability ``prob``.

    Args:
        prob: flip probability.
        direction: ``'horizontal'`` (mirror left-right) or ``'vertical'``.

    Sets ``flip`` (bool) and ``flip_direction``.
    """

    def __init__(self, prob: float = 0.5, direction: str = 'horizontal') -> None:
        if not 0 <= prob <= 1:
            raise ConfigError(f'RandomFlip: prob must be in [0, 1], got {prob}')
        if direction not in ('horizontal', 'vertical'):
            raise ConfigError(f"RandomFlip: direction must be 'horizontal' or 'vertical', "
                              f'got {direction!r}')
        self.prob, self.direction = float(prob), direction

    def __call__(self, results: dict) -> dict:
        flip = bool(np.random.rand() < self.prob)
        if flip:
            axis = 1 if self.direction == 'horizontal' else 0
            for key in ['img', *_seg_keys(results)]:
                results[key] = np.ascontiguousarray(np.flip(results[key], axis=axis))
        results['flip'] = flip
        results['flip_direction'] = self.direction if flip else None
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(prob={self.prob}, direction={self.direction!r})'


# --------------------------------------------------------------------------------- photometric

def _convert(img: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
    """``img * alpha + beta`` clipped to [0, 255] and truncated to uint8 (as mmseg)."""
    return np.clip(img.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)


@TRANSFORMS.register_module()
class PhotoMetricDistortion:
    """mmseg's photometric distortion of ``img``; label maps are not touched.

    Each step happens with probability 1/2, in this order: brightness (add ``U(-delta, delta)``),
    contrast (multiply by ``U(lo, hi)``) either here or last (a coin flip), saturation (scale the
    HSV S channel by ``U(lo, hi)``), hue (shift H by an integer in ``[-delta, delta)``, modulo 180
    in OpenCV's uint8 HSV), then contrast if it was not done first. Values are clipped to [0, 255]
    after every step; the output is uint8 (a float input is clipped and truncated first).

    Args:
        brightness_delta: 32 by default.
        contrast_range, saturation_range: ``(0.5, 1.5)`` by default.
        hue_delta: 18 by default.
    """

    def __init__(self, brightness_delta: int = 32, contrast_range: Sequence[float] = (0.5, 1.5),
                 saturation_range: Sequence[float] = (0.5, 1.5), hue_delta: int = 18) -> None:
        self.brightness_delta = brightness_delta
        self.contrast_lower, self.contrast_upper = contrast_range
        self.saturation_lower, self.saturation_upper = saturation_range
        self.hue_delta = hue_delta

    def brightness(self, img: np.ndarray) -> np.ndarray:
        if np.random.randint(2):
            delta = np.random.uniform(-self.brightness_delta, self.brightness_delta)
            return _convert(img, beta=delta)
        return img

    def contrast(self, img: np.ndarray) -> np.ndarray:
        if np.random.randint(2):
            return _convert(img, alpha=np.random.uniform(self.contrast_lower,
                                                          self.contrast_upper))
        return img

    def saturation(self, img: np.ndarray) -> np.ndarray:
        if np.random.randint(2):
            hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
            hsv[:, :, 1] = _convert(hsv[:, :, 1], alpha=np.random.uniform(
                self.saturation_lower, self.saturation_upper))
            return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
        return img

    def hue(self, img: np.ndarray) -> np.ndarray:
        if np.random.randint(2):
            hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
            shift = np.random.randint(-self.hue_delta, self.hue_delta)
            hsv[:, :, 0] = (hsv[:, :, 0].astype(np.int64) + shift) % 180
            return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
        return img

    def __call__(self, results: dict) -> dict:
        img = results['img']
        if img.ndim != 3 or img.shape[2] != 3:
            raise DataError(f'PhotoMetricDistortion: expected an (H, W, 3) image, got {img.shape}')
        if img.dtype != np.uint8:
            img = _convert(img)
        img = self.brightness(img)
        contrast_first = np.random.randint(2)
        if contrast_first == 1:
            img = self.contrast(img)
        img = self.saturation(img)
        img = self.hue(img)
        if contrast_first == 0:
            img = self.contrast(img)
        results['img'] = img
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(brightness_delta={self.brightness_delta}, '
                f'contrast_range=({self.contrast_lower}, {self.contrast_upper}), '
                f'saturation_range=({self.saturation_lower}, {self.saturation_upper}), '
                f'hue_delta={self.hue_delta})')


# ------------------------------------------------------------------------------------- packing

@TRANSFORMS.register_module()
class PackSegInputs:
    """Pack into ``{'inputs': (3, H, W) tensor, 'data_samples': BaseDataElement}``.

    The sample carries ``gt_sem_seg`` (``PixelData`` ``(1, H, W)`` int64) when the frame has a
    ``gt_seg_map``, and the metainfo keys in ``meta_keys`` that the frame has (``img_shape`` and
    ``ori_shape`` among them, which ``EncoderDecoder`` needs).
    """

    def __init__(self, meta_keys: Sequence[str] = _META_KEYS) -> None:
        self.meta_keys = tuple(meta_keys)

    def __call__(self, results: dict) -> dict:
        img = results['img']
        if img.ndim != 3:
            raise DataError(f'PackSegInputs: expected an (H, W, C) image, got {img.shape}')
        inputs = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
        sample = BaseDataElement(metainfo={k: results[k] for k in self.meta_keys if k in results})
        if 'gt_seg_map' in results:
            labels = results['gt_seg_map'].astype(np.int64)[None]
            sample.gt_sem_seg = PixelData(data=torch.from_numpy(labels))
        return {'inputs': inputs, 'data_samples': sample}

    def __repr__(self) -> str:
        return f'{type(self).__name__}(meta_keys={self.meta_keys})'
