"""Depth metrics: AbsRel, SqRel, RMSE, RMSE-log, log10 and the δ thresholds, on valid pixels.

Definitions (Eigen, Puhrsch, Fergus, "Depth Map Prediction from a Single Image using a Multi-Scale
Deep Network", NeurIPS 2014, section 4; ``log10`` from Make3D / Liu et al.), with ``d`` the
ground-truth and ``p`` the predicted depth (metres) over the ``n`` valid pixels of one image:

* ``abs_rel``  = mean ``|d - p| / d``
* ``sq_rel``   = mean ``(d - p)² / d``
* ``rmse``     = sqrt(mean ``(d - p)²``)
* ``rmse_log`` = sqrt(mean ``(ln d - ln p)²``)
* ``log10``    = mean ``|log10 d - log10 p|``
* ``a1``, ``a2``, ``a3`` = fraction (0-1, not percent) of pixels with
  ``max(d / p, p / d) < 1.25``, ``< 1.25²``, ``< 1.25³`` (strictly less, as Eigen's ``δ < thr``)

Valid pixels: ground truth finite and > 0, inside the optional ``valid`` mask and, where given,
``min_depth < d < max_depth`` (strict, as UniMatch's ``evaluate_depth.py`` masks ScanNet and DeMoN
with ``eval_min_depth`` 0.5 and ``eval_max_depth`` 10, and as the Eigen-split evaluation of
Monodepth does). The prediction is used as is (UniMatch's protocol); ``clip_pred=True`` first
clamps it to ``[min_depth, max_depth]``, as the Eigen-split KITTI evaluation of Monodepth /
Monodepth2 does. A prediction that is not finite or not > 0 at a valid pixel counts as an
infinite error (and fails every δ test). No median scaling (that is for scale-ambiguous monocular
methods; posed two-view depth is metric).

Aggregation: :class:`DepthMetric` computes each metric per image and reports the **mean over
images** (images without a valid pixel are skipped), as UniMatch, DeMoN and the KITTI Eigen-split
scripts do; RMSE is the per-image root mean square, then averaged. (UniMatch's script divides the
per-image sums by the number of all test samples, skipped ones included; with every image having
valid pixels, the usual case, the two agree.)
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from mmengine.evaluator import BaseMetric

from ..registry import METRICS
from .sample_fields import dense_map

__all__ = ['DELTA_BASE', 'DEPTH_METRIC_NAMES', 'DepthMetric', 'aggregate_depth_counts',
           'depth_counts', 'depth_metrics', 'valid_depth_mask']

DELTA_BASE = 1.25
DEPTH_METRIC_NAMES = ('abs_rel', 'sq_rel', 'rmse', 'rmse_log', 'log10', 'a1', 'a2', 'a3')
_LN10 = 2.302585092994046


def _check(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor | None) -> None:
    if pred.shape != gt.shape:
        raise ValueError(f'depth metric: prediction {tuple(pred.shape)} and ground truth '
                         f'{tuple(gt.shape)} differ in shape')
    if gt.dim() < 2:
        raise ValueError(f'depth metric: depth maps must be (..., H, W), got {tuple(gt.shape)}')
    if valid is not None and valid.shape != gt.shape:
        raise ValueError(f'depth metric: mask {tuple(valid.shape)} does not match the depth '
                         f'maps {tuple(gt.shape)}')


def valid_depth_mask(gt: torch.Tensor, valid: torch.Tensor | None = None,
                     min_depth: float | None = None,
                     max_depth: float | None = None) -> torch.Tensor:
    """Pixels evaluated: ``gt`` finite and > 0, in ``valid``, ``min_depth < gt < max_depth``."""
    mask = torch.isfinite(gt) & (gt > 0)
    if valid is not None:
        mask &= valid.bool()
    if min_depth is not None:
        mask &= gt > min_depth
    if max_depth is not None:
        mask &= gt < max_depth
    return mask


def depth_counts(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor | None = None,
                 min_depth: float | None = None, max_depth: float | None = None,
                 clip_pred: bool = False) -> torch.Tensor:
    """Per-image sums from which every metric follows, for streaming aggregation.

    Args:
        pred, gt: ``(B, H, W)`` (or ``(H, W)``) depths in metres.
        valid: optional mask of the pixels to evaluate.
        min_depth, max_depth: the evaluation range (strict bounds on ``gt``).
        clip_pred: clamp ``pred`` to ``[min_depth, max_depth]`` first.

    Returns:
        ``(B, 9)`` float64 (``(9,)`` for one map): valid pixels ``n``, then the sums over them of
        ``|d - p| / d``, ``(d - p)² / d``, ``(d - p)²``, ``(ln d - ln p)²``,
        ``|log10 d - log10 p|``, and the counts of ``δ < 1.25``, ``< 1.25²``, ``< 1.25³``.
    """
    _check(pred, gt, valid)
    mask = valid_depth_mask(gt, valid, min_depth, max_depth)
    d = torch.where(mask, gt.double(), torch.ones_like(gt, dtype=torch.float64))
    p = pred.double().to(d.device)
    if clip_pred:
        p = p.clamp(min=min_depth, max=max_depth)
    bad = ~torch.isfinite(p) | ~(p > 0)  # NaN fails p > 0 as well
    p = torch.where(bad, torch.ones_like(p), p)
    inf = torch.full_like(d, torch.inf)
    diff = d - p
    log_diff = torch.log(d) - torch.log(p)
    ratio = torch.maximum(d / p, p / d)
    terms = [diff.abs() / d, diff ** 2 / d, diff ** 2, log_diff ** 2, log_diff.abs() / _LN10]
    terms = [torch.where(bad, inf, t) for t in terms]
    ratio = torch.where(bad, inf, ratio)
    terms += [(ratio < DELTA_BASE ** k).double() for k in (1, 2, 3)]
    zero = torch.zeros_like(d)
    sums = [torch.where(mask, t, zero).flatten(-2).sum(-1) for t in terms]
    return torch.stack([mask.flatten(-2).sum(-1).double(), *sums], dim=-1)


def _metrics_from_counts(counts: torch.Tensor) -> torch.Tensor:
    """``(..., 9)`` counts -> ``(..., 8)`` metrics, ``DEPTH_METRIC_NAMES`` order (NaN if n = 0)."""
    n = counts[..., :1]
    means = counts[..., 1:] / n
    return torch.cat([means[..., :2], means[..., 2:3].sqrt(), means[..., 3:4].sqrt(),
                      means[..., 4:]], dim=-1)


def depth_metrics(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor | None = None,
                  min_depth: float | None = None, max_depth: float | None = None,
                  clip_pred: bool = False) -> dict[str, torch.Tensor]:
    """Every metric per image: ``{name: (B,) float64}`` (scalars for one ``(H, W)`` map).

    See the module docstring for the definitions; NaN for an image without valid pixels.
    """
    values = _metrics_from_counts(depth_counts(pred, gt, valid, min_depth, max_depth, clip_pred))
    return {name: values[..., i] for i, name in enumerate(DEPTH_METRIC_NAMES)}


def aggregate_depth_counts(counts: torch.Tensor) -> dict[str, float]:
    """Mean over images (those with valid pixels) of each image's metrics; NaN if there are none.

    ``counts``: stacked :func:`depth_counts` rows ``(N, 9)``.
    """
    counts = counts.double().reshape(-1, 9)
    has_pixels = counts[:, 0] > 0
    if not has_pixels.any():
        return {name: float('nan') for name in DEPTH_METRIC_NAMES}
    means = _metrics_from_counts(counts[has_pixels]).mean(0)
    return {name: float(means[i]) for i, name in enumerate(DEPTH_METRIC_NAMES)}


@METRICS.register_module()
class DepthMetric(BaseMetric):
    """Streaming depth metrics over a dataset: the **per-image mean** of each metric.

    Each data sample (a dict or a data element) provides ``pred_depth`` and ``gt_depth``
    (``(H, W)`` or ``(1, H, W)`` tensors, arrays or ``PixelData``, metres) and optionally
    ``gt_valid`` (bool, combined with ``gt`` finite, > 0 and inside the range). Keys (with the
    prefix ``depth/``): ``abs_rel``, ``sq_rel``, ``rmse``, ``rmse_log``, ``log10``, ``a1``,
    ``a2``, ``a3`` (fractions), and ``num_images`` (images that had valid pixels). Only per-image
    sums are kept between ``process`` and ``compute_metrics``.

    Args:
        min_depth, max_depth: evaluate ``min_depth < gt < max_depth`` only (UniMatch: 0.5, 10 on
            ScanNet and DeMoN); None: no bound.
        clip_pred: clamp predictions to ``[min_depth, max_depth]`` first (Eigen-split protocol).
    """
    default_prefix = 'depth'

    def __init__(self, min_depth: float | None = None, max_depth: float | None = None,
                 clip_pred: bool = False, collect_device: str = 'cpu',
                 prefix: str | None = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if clip_pred and (min_depth is None or max_depth is None):
            raise ValueError('DepthMetric: clip_pred needs both min_depth and max_depth')
        self.min_depth, self.max_depth, self.clip_pred = min_depth, max_depth, clip_pred

    def process(self, data_batch: Any, data_samples: Sequence[Any]) -> None:
        for sample in data_samples:
            gt = dense_map(sample, 'gt_depth', 'DepthMetric')
            pred = dense_map(sample, 'pred_depth', 'DepthMetric').to(gt.device)
            valid = dense_map(sample, 'gt_valid', 'DepthMetric', required=False)
            if valid is not None:
                valid = valid.to(gt.device)
            self.results.append(depth_counts(pred, gt, valid, self.min_depth, self.max_depth,
                                             self.clip_pred).cpu())

    def compute_metrics(self, results: list) -> dict[str, float]:
        counts = torch.stack(list(results))
        metrics = aggregate_depth_counts(counts)
        metrics['num_images'] = int((counts[:, 0] > 0).sum())
        return metrics
