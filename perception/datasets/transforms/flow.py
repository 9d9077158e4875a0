"""Optical-flow transforms: loading a pair and its flow, RAFT's augmentation, packing.

The frame dict comes from the flow datasets (``perception/datasets/flow.py``). Keys written:

* ``img``, ``img_next``: ``(H, W, 3)`` RGB, uint8 (or float32 with values 0-255).
* ``gt_flow``: ``(H, W, 2)`` float32 ``(u, v)`` px (first frame -> second), 0 where invalid;
  ``gt_valid``: ``(H, W)`` bool; ``noc_mask``: ``(H, W)`` bool (True = visible in both frames,
  Sintel's "matched"), when known.
* ``img_shape`` / ``ori_shape`` ``(H, W)`` and records of the augmentation: ``scale_factor``
  ``(s_x, s_y)``, ``crop_offset`` ``(y0, x0)``, ``flip_horizontal``, ``flip_vertical``.

The geometric transforms keep the flow exact: pixel ``(x, y)`` of the first image matches
``(x + u, y + v)`` of the second before and after (``tests/test_flow_data.py`` checks it). Random
draws use NumPy's global generator, which mmengine seeds per worker. The photometric ones reuse
the stereo transforms (the second frame plays the right image).
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
import torch
from mmengine.structures import BaseDataElement, PixelData

from ...engine.errors import ConfigError, DataError
from ...registry import TRANSFORMS
from ..flow_io import read_flow, read_kitti_flow
from .loading import read_rgb
from .stereo import StereoColorJitter, StereoEraser, resample_sparse_disparity

__all__ = ['FlowColorJitter', 'FlowEraser', 'FlowRandomCrop', 'FlowRandomFlip',
           'FlowRandomScale', 'LoadFlow', 'LoadFlowPair', 'PackFlowInputs', 'flow_train_pipeline',
           'resample_sparse_flow']

_MASK_KEYS = ('gt_valid', 'noc_mask')


def _size(image: np.ndarray) -> str:
    return f'{image.shape[1]}x{image.shape[0]}'


def _spatial_keys(results: dict) -> list[str]:
    return [k for k in ('img', 'img_next', 'gt_flow', *_MASK_KEYS) if k in results]


# ------------------------------------------------------------------------------------- loading

@TRANSFORMS.register_module()
class LoadFlowPair:
    """Read ``img_path`` and ``img_next_path`` as RGB into ``img`` and ``img_next``.

    Args:
        to_float32: return float32 images (values 0-255) instead of uint8.

    Frames of different sizes raise :class:`DataError` naming both files.
    """

    def __init__(self, to_float32: bool = False) -> None:
        self.to_float32 = to_float32

    def __call__(self, results: dict) -> dict:
        for key in ('img_path', 'img_next_path'):
            if not results.get(key):
                raise DataError(f'LoadFlowPair: frame {results.get("frame_id")} has no {key}')
        first = read_rgb(str(results['img_path']))
        second = read_rgb(str(results['img_next_path']))
        if first.shape != second.shape:
            raise DataError(f'flow pair of different sizes: {results["img_path"]} is '
                            f'{_size(first)}, {results["img_next_path"]} is {_size(second)} '
                            '(width x height); both frames must have one size')
        if self.to_float32:
            first, second = first.astype(np.float32), second.astype(np.float32)
        results['img'], results['img_next'] = first, second
        results['img_shape'] = results['ori_shape'] = first.shape[:2]
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(to_float32={self.to_float32})'


def _read_mask_png(path: str, what: str) -> np.ndarray:
    mask = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if mask is None:
        raise DataError(f'{path}: cannot read the {what} mask')
    if mask.ndim == 3:  # some Sintel tools save the masks as RGB; all channels are equal
        mask = mask[..., 0]
    return mask >= 128


@TRANSFORMS.register_module()
class LoadFlow:
    """Read ``flow_path`` by ``flow_format`` (``'flo'``, ``'pfm'``, ``'kitti_png'``).

    Adds ``gt_flow`` ``(H, W, 2)`` float32 (0 at invalid pixels), ``gt_valid`` ``(H, W)`` bool
    (finite, below Middlebury's unknown marker, the KITTI valid flag, and not in Sintel's
    ``invalid`` mask), and ``noc_mask`` when the frame has a ``noc_path`` (Sintel occlusions:
    non-occluded where < 128; KITTI ``flow_noc``: where it has a flow). Frames without ground
    truth pass unchanged unless ``required``. Maps of another size than ``img`` raise
    :class:`DataError` naming the file.
    """

    def __init__(self, required: bool = False) -> None:
        self.required = required

    def __call__(self, results: dict) -> dict:
        path = results.get('flow_path')
        if path is None:
            if self.required:
                raise DataError(f'LoadFlow: frame {results.get("frame_id")} has no ground-truth '
                                'flow (a test split?)')
            return results
        flow, valid = read_flow(path, results.get('flow_format'))
        if 'img' in results and results['img'].shape[:2] != flow.shape[:2]:
            raise DataError(f'{path}: flow is {_size(flow)}, image {results["img_path"]} is '
                            f'{_size(results["img"])}')
        if results.get('invalid_path'):
            invalid = _read_mask_png(results['invalid_path'], 'invalid')
            if invalid.shape != valid.shape:
                raise DataError(f'{results["invalid_path"]}: mask is {_size(invalid)}, flow '
                                f'{path} is {_size(flow)}')
            valid &= ~invalid
            flow[~valid] = 0
        results['gt_flow'], results['gt_valid'] = flow, valid
        if results.get('noc_path'):
            noc_path, fmt = results['noc_path'], results.get('noc_format', 'occlusion_png')
            if fmt == 'occlusion_png':
                noc = ~_read_mask_png(noc_path, 'occlusion')
            elif fmt == 'kitti_png':
                noc = read_kitti_flow(noc_path)[1]
            else:
                raise DataError(f"{noc_path}: unknown noc_format {fmt!r} (expected "
                                "'occlusion_png' or 'kitti_png')")
            if noc.shape != valid.shape:
                raise DataError(f'{noc_path}: mask is {_size(noc)}, flow {path} is {_size(flow)}')
            results['noc_mask'] = noc
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(required={self.required})'


# ---------------------------------------------------------------------------------- photometric

class _AsPair:
    """Runs a stereo photometric transform with ``img_next`` in the place of ``img_right``."""

    def _apply(self, stereo_transform, results: dict) -> dict:
        view = stereo_transform({'img': results['img'], 'img_right': results['img_next']})
        results['img'], results['img_next'] = view['img'], view['img_right']
        return results


@TRANSFORMS.register_module()
class FlowColorJitter(_AsPair):
    """RAFT's colour augmentation: :class:`StereoColorJitter` on ``img`` and ``img_next``.

    With probability ``asymmetric_prob`` each frame gets its own draw. RAFT's dense augmentor
    (the defaults): brightness 0.4, contrast 0.4, saturation (0.6, 1.4), hue 0.5 / 3.14,
    asymmetric 0.2; its sparse (KITTI, HD1K) augmentor: 0.3, 0.3, (0.7, 1.3), 0.3 / 3.14 and
    ``asymmetric_prob=0``.
    """

    def __init__(self, brightness: float = 0.4, contrast: float = 0.4,
                 saturation: Sequence[float] = (0.6, 1.4), hue: float = 0.5 / 3.14,
                 asymmetric_prob: float = 0.2) -> None:
        self.jitter = StereoColorJitter(brightness=brightness, contrast=contrast,
                                        saturation=saturation, hue=hue,
                                        asymmetric_prob=asymmetric_prob)

    def __call__(self, results: dict) -> dict:
        return self._apply(self.jitter, results)

    def __repr__(self) -> str:
        return f'{type(self).__name__}({self.jitter!r})'


@TRANSFORMS.register_module()
class FlowEraser(_AsPair):
    """RAFT's occlusion augmentation: 1..``max_rects`` mean-colour boxes painted on ``img_next``.

    As :class:`StereoEraser` (RAFT: ``prob`` 0.5, 1-2 boxes of 50-100 px); the first frame and
    the flow are unchanged.
    """

    def __init__(self, prob: float = 0.5, max_rects: int = 2,
                 size_range: Sequence[int] = (50, 100)) -> None:
        self.eraser = StereoEraser(prob=prob, max_rects=max_rects, size_range=size_range)

    def __call__(self, results: dict) -> dict:
        return self._apply(self.eraser, results)

    def __repr__(self) -> str:
        return f'{type(self).__name__}({self.eraser!r})'


# ------------------------------------------------------------------------------------ geometric

def resample_sparse_flow(flow: np.ndarray, valid: np.ndarray, scale_x: float, scale_y: float,
                         out_shape: tuple[int, int], extra: np.ndarray | None = None
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Scale a sparse flow map by moving its valid points (no interpolation).

    The points move as in :func:`resample_sparse_disparity` (pixel-centre mapping, nearest point
    wins); ``u`` is multiplied by ``s_x`` and ``v`` by ``s_y``. ``flow`` ``(H, W, 2)``, ``valid``
    and the optional ``extra`` (e.g. the noc mask) ``(H, W)``. Returns ``flow'`` ``(H', W', 2)``
    float32, ``valid'``, ``extra'``.
    """
    u, out_valid, v = resample_sparse_disparity(flow[..., 0], valid, scale_x, scale_y, out_shape,
                                                flow[..., 1].astype(np.float32))
    out_extra = None
    if extra is not None:  # the same deterministic point moves, carrying the extra values
        out_extra = resample_sparse_disparity(flow[..., 0], valid, scale_x, scale_y, out_shape,
                                              extra)[2]
    out = np.stack([u, v * np.float32(scale_y)], -1).astype(np.float32)
    return out, out_valid, out_extra


@TRANSFORMS.register_module()
class FlowRandomScale:
    """Scale both frames by ``(s_x, s_y)`` and the flow by ``(s_x, s_y)``, as RAFT's augmentor.

    ``s = 2 ** U(min_scale, max_scale)``; with probability ``stretch_prob`` ``s_x`` and ``s_y``
    are multiplied by independent ``2 ** U(-max_stretch, max_stretch)``; with ``crop_size``
    ``(h, w)`` both are raised to at least ``max((h + 8) / H, (w + 8) / W)`` (1 px sparse) so the
    crop fits: one floor for both axes, as the official augmentors, so raising a frame that is
    too small keeps its aspect ratio (a KITTI 375x1242 frame for a 432x960 crop: both axes at
    least 1.17, not only the vertical one). The step happens with probability ``prob``. RAFT's
    settings: ``prob`` 0.8, stretch 0.8 / 0.2, ``(min_scale, max_scale)`` = (-0.1, 1.0)
    chairs, (-0.4, 0.8) things, (-0.2, 0.6) sintel, (-0.2, 0.4) kitti (sparse, no stretch).

    Images and dense flow are resized bilinearly (``cv2.resize`` with ``fx, fy``; a flow pixel
    stays valid only if its four neighbours are); sparse flow (``sparse=True``, or ``None`` and
    under half of the pixels valid) moves its valid points with :func:`resample_sparse_flow`.
    ``noc_mask`` is resized by nearest neighbour or carried with the points. Records
    ``scale_factor``.
    """

    def __init__(self, min_scale: float = -0.2, max_scale: float = 0.6, stretch_prob: float = 0.8,
                 max_stretch: float = 0.2, prob: float = 0.8,
                 crop_size: Sequence[int] | None = None, sparse: bool | None = None) -> None:
        if min_scale > max_scale:
            raise ConfigError(f'FlowRandomScale: min_scale {min_scale} > max_scale {max_scale} '
                              '(both are log2 exponents)')
        if crop_size is not None and len(crop_size) != 2:
            raise ConfigError(f'FlowRandomScale: crop_size is (h, w), got {crop_size}')
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
            floor = max((self.crop_size[0] + margin) / height, (self.crop_size[1] + margin) / width)
            scale_x, scale_y = max(scale_x, floor), max(scale_y, floor)
        return float(scale_x), float(scale_y)

    def __call__(self, results: dict) -> dict:
        has_gt = 'gt_flow' in results
        sparse = self.sparse
        if sparse is None:
            sparse = has_gt and float(results['gt_valid'].mean()) < 0.5
        height, width = results['img'].shape[:2]
        scale_x, scale_y = self._draw(height, width, sparse)
        needs_scale = self.crop_size is not None and (
            height < self.crop_size[0] + (1 if sparse else 8) or
            width < self.crop_size[1] + (1 if sparse else 8))
        if np.random.rand() >= self.prob and not needs_scale:
            results['scale_factor'] = (1.0, 1.0)
            return results
        for key in ('img', 'img_next'):
            results[key] = cv2.resize(results[key], None, fx=scale_x, fy=scale_y,
                                      interpolation=cv2.INTER_LINEAR)
        out_shape = results['img'].shape[:2]
        if has_gt:
            flow, valid, noc = results['gt_flow'], results['gt_valid'], results.get('noc_mask')
            if sparse:
                flow, valid, noc = resample_sparse_flow(flow, valid, scale_x, scale_y, out_shape,
                                                        noc)
            else:
                flow, valid = self._resize_dense(flow, valid, scale_x, scale_y)
                if noc is not None:
                    noc = cv2.resize(noc.astype(np.uint8), None, fx=scale_x, fy=scale_y,
                                     interpolation=cv2.INTER_NEAREST_EXACT).astype(bool)
            results['gt_flow'], results['gt_valid'] = flow, valid
            if noc is not None:
                results['noc_mask'] = noc
        results['img_shape'] = out_shape
        results['scale_factor'] = (scale_x, scale_y)
        return results

    @staticmethod
    def _resize_dense(flow: np.ndarray, valid: np.ndarray, scale_x: float,
                      scale_y: float) -> tuple[np.ndarray, np.ndarray]:
        def resize(array: np.ndarray) -> np.ndarray:
            return cv2.resize(array, None, fx=scale_x, fy=scale_y, interpolation=cv2.INTER_LINEAR)

        flow = np.where(valid[..., None], flow, 0).astype(np.float32)
        out = resize(flow) * np.array([scale_x, scale_y], dtype=np.float32)
        if valid.all():
            return out, np.ones(out.shape[:2], dtype=bool)
        out_valid = resize(valid.astype(np.float32)) > 1 - 1e-4
        return np.where(out_valid[..., None], out, 0).astype(np.float32), out_valid

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(min_scale={self.min_scale}, max_scale={self.max_scale}, '
                f'stretch_prob={self.stretch_prob}, max_stretch={self.max_stretch}, '
                f'prob={self.prob}, crop_size={self.crop_size}, sparse={self.sparse})')


@TRANSFORMS.register_module()
class FlowRandomCrop:
    """Cut the same ``crop_size`` ``(h, w)`` window out of both frames and the ground truth.

    The corner is uniform over the image; ``margin`` ``(m_y, m_x)`` widens the range by that many
    px (RAFT's sparse augmentor: ``(20, 50)``) and clips it. An image smaller than the crop
    raises :class:`DataError`. Flow values are unchanged (a crop is a translation of both
    frames). Records ``crop_offset`` ``(y0, x0)``.
    """

    def __init__(self, crop_size: Sequence[int], margin: Sequence[int] = (0, 0)) -> None:
        if len(crop_size) != 2 or min(crop_size) <= 0:
            raise ConfigError(f'FlowRandomCrop: crop_size is (h, w) > 0, got {crop_size}')
        self.crop_size = tuple(int(c) for c in crop_size)
        self.margin = tuple(int(m) for m in margin)

    def __call__(self, results: dict) -> dict:
        height, width = results['img'].shape[:2]
        crop_h, crop_w = self.crop_size
        if height < crop_h or width < crop_w:
            raise DataError(f'FlowRandomCrop: frame {results.get("frame_id")} is {width}x{height}'
                            f', smaller than the crop {crop_w}x{crop_h}')
        m_y, m_x = self.margin
        y0 = int(np.clip(np.random.randint(0, height - crop_h + m_y + 1), 0, height - crop_h))
        x0 = int(np.clip(np.random.randint(-m_x, width - crop_w + m_x + 1), 0, width - crop_w))
        for key in _spatial_keys(results):
            results[key] = results[key][y0:y0 + crop_h, x0:x0 + crop_w].copy()
        results['img_shape'] = (crop_h, crop_w)
        results['crop_offset'] = (y0, x0)
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(crop_size={self.crop_size}, margin={self.margin})'


@TRANSFORMS.register_module()
class FlowRandomFlip:
    """Mirror both frames left-right (``u`` negated) and/or upside down (``v`` negated).

    RAFT's dense augmentor: ``horizontal_prob`` 0.5, ``vertical_prob`` 0.1; its sparse one
    0.5 and 0. Records ``flip_horizontal`` and ``flip_vertical``.
    """

    def __init__(self, horizontal_prob: float = 0.5, vertical_prob: float = 0.1) -> None:
        self.horizontal_prob, self.vertical_prob = horizontal_prob, vertical_prob

    def __call__(self, results: dict) -> dict:
        flips = {'flip_horizontal': (bool(np.random.rand() < self.horizontal_prob), 1, 0),
                 'flip_vertical': (bool(np.random.rand() < self.vertical_prob), 0, 1)}
        for record, (flip, axis, component) in flips.items():
            if flip:
                for key in _spatial_keys(results):
                    results[key] = np.flip(results[key], axis=axis)
                if 'gt_flow' in results:
                    flow = np.ascontiguousarray(results['gt_flow'])
                    flow[..., component] *= -1
                    results['gt_flow'] = flow
            results[record] = flip
        for key in _spatial_keys(results):
            results[key] = np.ascontiguousarray(results[key])
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(horizontal_prob={self.horizontal_prob}, '
                f'vertical_prob={self.vertical_prob})')


# ------------------------------------------------------------------------------------- packing

_DEFAULT_META_KEYS = ('frame_id', 'sample_idx', 'img_path', 'img_next_path', 'flow_path',
                      'ori_shape', 'img_shape', 'scale_factor', 'crop_offset', 'flip_horizontal',
                      'flip_vertical')


@TRANSFORMS.register_module()
class PackFlowInputs:
    """Pack a flow pair for a model.

    Returns ``{'inputs': (2, 3, H, W) tensor [first, second] (uint8 if the images are uint8,
    else float32, values 0-255), 'data_samples': BaseDataElement}``. The data sample holds, when
    present, ``gt_flow`` (``PixelData``, data ``(2, H, W)`` float32, channels ``u, v``),
    ``gt_valid`` and ``noc_mask`` (``PixelData``, ``(1, H, W)`` bool) (the fields ``FlowMetric``
    reads), and as metainfo the ``meta_keys`` found in ``results``.
    """

    def __init__(self, meta_keys: Sequence[str] = _DEFAULT_META_KEYS) -> None:
        self.meta_keys = tuple(meta_keys)

    def __call__(self, results: dict) -> dict:
        first, second = results['img'], results['img_next']
        if first.shape != second.shape or first.ndim != 3 or first.shape[2] != 3:
            raise DataError(f'PackFlowInputs: expected two (H, W, 3) images of one size, got '
                            f'{first.shape} and {second.shape}')
        pair = np.stack([first, second]).transpose(0, 3, 1, 2)
        inputs = torch.from_numpy(np.ascontiguousarray(pair))
        if inputs.dtype != torch.uint8:
            inputs = inputs.float()
        sample = BaseDataElement(metainfo={k: results[k] for k in self.meta_keys if k in results})
        if 'gt_flow' in results:
            flow = np.asarray(results['gt_flow'], np.float32)
            if flow.shape != first.shape[:2] + (2,):
                raise DataError(f'PackFlowInputs: gt_flow is {flow.shape}, expected '
                                f'{first.shape[:2] + (2,)}')
            sample.gt_flow = PixelData(
                data=torch.from_numpy(np.ascontiguousarray(flow.transpose(2, 0, 1))))
        for key in _MASK_KEYS:
            if key in results:
                sample.set_field(PixelData(data=torch.from_numpy(
                    np.asarray(results[key], bool)[None].copy())), key)
        return {'inputs': inputs, 'data_samples': sample}

    def __repr__(self) -> str:
        return f'{type(self).__name__}(meta_keys={self.meta_keys})'


# ------------------------------------------------------------------------------------- recipes

def flow_train_pipeline(crop_size: Sequence[int], min_scale: float, max_scale: float, *,
                        sparse: bool = False, flip: bool = True) -> list[dict]:
    """The training pipeline of RAFT's and SEA-RAFT's augmentors, as config dicts.

    ``sparse=False`` is their ``FlowAugmentor`` (FlyingChairs, FlyingThings3D, Sintel): the
    default asymmetric colour jitter, stretch, horizontal flip 0.5 and vertical flip 0.1.
    ``sparse=True`` is their ``SparseFlowAugmentor`` (KITTI, HD1K): symmetric colour jitter, no
    stretch (valid points are moved, not interpolated), horizontal flip only and a crop corner
    drawn with a (20, 50) px margin. ``flip=False`` drops the flips (their ``do_flip=False``).
    The scale is ``2 ** U(min_scale, max_scale)``; ``crop_size`` is ``(h, w)``.
    """
    crop_size = [int(c) for c in crop_size]
    if sparse:
        jitter = dict(type='FlowColorJitter', brightness=0.3, contrast=0.3,
                      saturation=(0.7, 1.3), hue=0.3 / 3.14, asymmetric_prob=0.0)
        scale = dict(type='FlowRandomScale', min_scale=min_scale, max_scale=max_scale,
                     stretch_prob=0.0, crop_size=crop_size, sparse=True)
        flips = dict(type='FlowRandomFlip', horizontal_prob=0.5, vertical_prob=0.0)
        crop = dict(type='FlowRandomCrop', crop_size=crop_size, margin=(20, 50))
    else:
        jitter = dict(type='FlowColorJitter')
        scale = dict(type='FlowRandomScale', min_scale=min_scale, max_scale=max_scale,
                     crop_size=crop_size)
        flips = dict(type='FlowRandomFlip', horizontal_prob=0.5, vertical_prob=0.1)
        crop = dict(type='FlowRandomCrop', crop_size=crop_size)
    return [dict(type='LoadFlowPair'), dict(type='LoadFlow', required=True), jitter,
            dict(type='FlowEraser'), scale, *([flips] if flip else []), crop,
            dict(type='PackFlowInputs')]
