"""Stereo matching metrics: EPE, D1 (KITTI 2015) and bad-x pixel rates over valid pixels.

Definitions (``err = |d_pred - d_gt|`` in pixels, over the valid pixels of an image):

* ``EPE``: mean ``err``.
* ``D1``: percent of pixels with ``err > 3`` **and** ``err > 0.05 * d_gt`` (KITTI 2015 devkit,
  ``ABS_THRESH = 3``, ``REL_THRESH = 0.05``).
* ``bad-x``: percent of pixels with ``err > x``. Note that what RAFT-Stereo's and IGEV-Stereo's
  validation scripts print as "D1" is bad-3.0 on KITTI, bad-1.0 on ETH3D and bad-2.0 on Middlebury.

Valid pixels: ground truth finite and > 0 (KITTI PNGs store 0, ETH3D/Middlebury PFMs ``inf`` for
"no ground truth"), and inside the optional ``valid`` mask and below the optional ``max_disp``
(RAFT-Stereo/IGEV exclude ``d_gt >= 192`` on SceneFlow). A non-finite prediction at a valid pixel
counts as an infinite error: an outlier for D1/bad-x, and EPE becomes ``inf``.

Aggregation over a dataset, both reported by :class:`StereoMetric`:

* **pixel-weighted** (keys without suffix, e.g. ``EPE``, ``D1_all``, ``bad_3.0``): errors and
  outliers summed over all images, divided by the total number of valid pixels, as the KITTI
  2012/2015 devkits accumulate their error counts over the benchmark's images.
* **per-image mean** (suffix ``_per_image``, e.g. ``EPE_per_image``, ``bad_1.0_per_image``): each
  image's value, then the mean over images (images without valid pixels skipped), as the
  RAFT-Stereo / IGEV-Stereo validation scripts average EPE (and ETH3D/Middlebury bad-x).

With a non-occlusion mask the same numbers are computed on its pixels as well, with ``_noc`` in
the key (``EPE_noc``, ``D1_noc``, ``bad_3.0_noc``, ``D1_noc_per_image``), as KITTI's D1-noc.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from mmengine.evaluator import BaseMetric

from ..registry import METRICS
from .sample_fields import dense_map

KITTI_ABS_THRESH = 3.0
KITTI_REL_THRESH = 0.05
DEFAULT_THRESHOLDS = (0.5, 1.0, 2.0, 3.0)


def _check_maps(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor | None) -> None:
    if pred.shape != gt.shape:
        raise ValueError(f'stereo metric: prediction {tuple(pred.shape)} and ground truth '
                         f'{tuple(gt.shape)} differ in shape')
    if valid is not None and valid.shape != gt.shape:
        raise ValueError(f'stereo metric: mask {tuple(valid.shape)} does not match the '
                         f'disparity maps {tuple(gt.shape)}')


def valid_disparity_mask(gt: torch.Tensor, valid: torch.Tensor | None = None,
                         max_disp: float | None = None) -> torch.Tensor:
    """Pixels with usable ground truth: finite, > 0, in ``valid`` and below ``max_disp``.

    ``gt`` (..., H, W); ``valid`` boolean (or 0/1) of the same shape. Returns a bool tensor.
    """
    mask = torch.isfinite(gt) & (gt > 0)
    if valid is not None:
        mask &= valid.bool()
    if max_disp is not None:
        mask &= gt < max_disp
    return mask


def disparity_error(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """``|pred - gt|`` in float64, ``inf`` where the prediction is not finite."""
    err = (pred.double() - gt.double()).abs()
    return torch.where(torch.isfinite(pred), err, torch.full_like(err, torch.inf))


def _per_image_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over ``mask`` per leading index of ``(B, H, W)``; NaN where empty."""
    count = mask.flatten(-2).sum(-1)
    total = torch.where(mask, values, torch.zeros_like(values)).flatten(-2).sum(-1)
    return total / count  # 0 / 0 = NaN: an image without valid pixels has no value


def epe(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor | None = None,
        max_disp: float | None = None) -> torch.Tensor:
    """End-point error (mean absolute disparity error, px) per image of ``(B, H, W)`` -> ``(B,)``.

    ``(H, W)`` inputs give a scalar. NaN for an image without valid pixels.
    """
    _check_maps(pred, gt, valid)
    mask = valid_disparity_mask(gt, valid, max_disp)
    return _per_image_mean(disparity_error(pred, gt), mask)


def d1(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor | None = None,
       max_disp: float | None = None) -> torch.Tensor:
    """KITTI 2015 D1 in percent per image: ``err > 3 px`` and ``err > 5 %`` of ``d_gt``.

    ``(B, H, W)`` -> ``(B,)``; NaN for an image without valid pixels.
    """
    _check_maps(pred, gt, valid)
    mask = valid_disparity_mask(gt, valid, max_disp)
    err = disparity_error(pred, gt)
    outlier = (err > KITTI_ABS_THRESH) & (err / gt.double().abs() > KITTI_REL_THRESH)
    return 100.0 * _per_image_mean(outlier.double(), mask)


def bad_pixel_rate(pred: torch.Tensor, gt: torch.Tensor, threshold: float,
                   valid: torch.Tensor | None = None,
                   max_disp: float | None = None) -> torch.Tensor:
    """Percent of valid pixels with ``err > threshold`` px, per image: ``(B, H, W)`` -> ``(B,)``."""
    _check_maps(pred, gt, valid)
    mask = valid_disparity_mask(gt, valid, max_disp)
    return 100.0 * _per_image_mean((disparity_error(pred, gt) > threshold).double(), mask)


def stereo_counts(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor | None = None,
                  thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
                  max_disp: float | None = None) -> torch.Tensor:
    """Sufficient statistics of each image, for streaming aggregation.

    Args:
        pred, gt: ``(B, H, W)`` disparities (px).
        valid: optional ``(B, H, W)`` mask restricting the evaluated pixels (e.g. non-occluded).
        thresholds: the bad-x thresholds.
        max_disp: optional upper bound on ``d_gt``.

    Returns:
        ``(B, 3 + T)`` float64: number of valid pixels, sum of errors, number of D1 outliers,
        then the number of pixels with ``err > t`` for each threshold.
    """
    _check_maps(pred, gt, valid)
    mask = valid_disparity_mask(gt, valid, max_disp).flatten(-2)
    err = disparity_error(pred, gt).flatten(-2)
    gt_abs = gt.double().abs().flatten(-2)
    err_valid = torch.where(mask, err, torch.zeros_like(err))
    # As the devkit: the relative test divides by |d_gt| (0 / 0 outside the mask is False).
    outlier = (err_valid > KITTI_ABS_THRESH) & (err_valid / gt_abs > KITTI_REL_THRESH)
    columns = [mask.sum(-1).double(), err_valid.sum(-1), outlier.sum(-1).double()]
    columns += [(err_valid > t).sum(-1).double() for t in thresholds]
    return torch.stack(columns, dim=-1)


def aggregate_counts(counts: torch.Tensor, thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
                     suffix: str = '') -> dict[str, float]:
    """Dataset metrics from stacked :func:`stereo_counts` rows ``(N, 3 + T)``.

    Returns pixel-weighted ``EPE{suffix}``, ``D1{suffix}``, ``bad_{t}{suffix}`` and the same with
    ``_per_image`` appended (mean over images that have valid pixels). Percent for D1/bad-x.
    NaN when no image has a valid pixel.
    """
    counts = counts.double().reshape(-1, 3 + len(thresholds))
    names = ['EPE', 'D1'] + [f'bad_{t:.1f}' for t in thresholds]
    scale = torch.tensor([1.0] + [100.0] * (1 + len(thresholds)), dtype=torch.float64)
    pixels = counts[:, 0]
    totals = counts[:, 1:]
    pooled = totals.sum(0) / pixels.sum() * scale
    has_pixels = pixels > 0
    per_image = (totals[has_pixels] / pixels[has_pixels, None]).mean(0) * scale
    results = {}
    for i, name in enumerate(names):
        name += suffix
        results[name] = float(pooled[i])
        results[f'{name}_per_image'] = float(per_image[i]) if has_pixels.any() else float('nan')
    return results


@METRICS.register_module()
class StereoMetric(BaseMetric):
    """Streaming EPE / D1 / bad-x over a dataset (see the module docstring for the keys).

    Each data sample (a dict or an object with attributes) provides ``pred_disp`` and ``gt_disp``,
    ``(H, W)`` or ``(1, H, W)`` tensors (or objects with a ``.data`` tensor), and optionally
    ``gt_valid`` (bool mask of pixels with ground truth, combined with ``gt > 0`` and finite) and
    ``noc_mask`` (bool, True on non-occluded pixels). Only per-image counts are kept.

    Keys (percent for D1 / bad-x): pixel-weighted ``EPE``, ``D1_all``, ``bad_0.5`` ...
    ``bad_3.0``; per-image means ``EPE_per_image``, ``D1_all_per_image``, ...; with a
    ``noc_mask``, the same with ``_noc`` (``EPE_noc``, ``D1_noc``, ``bad_3.0_noc``, ...).

    Args:
        thresholds: bad-x thresholds in px.
        max_disp: ignore ground truth ``>= max_disp`` (None: keep all).
    """
    default_prefix = 'stereo'

    def __init__(self, thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
                 max_disp: float | None = None, collect_device: str = 'cpu',
                 prefix: str | None = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.max_disp = max_disp

    def process(self, data_batch: Any, data_samples: Sequence[Any]) -> None:
        for sample in data_samples:
            pred = dense_map(sample, 'pred_disp', 'StereoMetric')
            gt = dense_map(sample, 'gt_disp', 'StereoMetric')
            pred = pred.to(gt.device)
            valid = dense_map(sample, 'gt_valid', 'StereoMetric', required=False)
            noc = dense_map(sample, 'noc_mask', 'StereoMetric', required=False)
            counts = stereo_counts(pred, gt, valid, self.thresholds, self.max_disp)
            result = {'all': counts.cpu()}
            if noc is not None:
                noc = noc.bool().to(gt.device)
                noc = noc if valid is None else noc & valid.bool().to(gt.device)
                result['noc'] = stereo_counts(pred, gt, noc, self.thresholds,
                                              self.max_disp).cpu()
            self.results.append(result)

    def compute_metrics(self, results: list[dict]) -> dict[str, float]:
        metrics = aggregate_counts(torch.stack([r['all'] for r in results]), self.thresholds)
        metrics = {('D1_all' + k[2:] if k.startswith('D1') else k): v for k, v in metrics.items()}
        with_noc = [r['noc'] for r in results if 'noc' in r]
        if with_noc:
            metrics.update(aggregate_counts(torch.stack(with_noc), self.thresholds, '_noc'))
        return metrics
