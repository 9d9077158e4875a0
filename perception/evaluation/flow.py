"""Optical-flow metrics: EPE, bad-x outlier rates, KITTI Fl, Sintel matched / unmatched EPE.

Definitions (``err = ||f_pred - f_gt||_2`` in pixels, over the valid pixels of an image):

* ``EPE``: mean end-point error ``err``.
* ``bad_x`` (x = 1, 3, 5): percent of pixels with ``err > x`` px (RAFT prints the complements
  ``1px``, ``3px``, ``5px`` as accuracies: ``100 - bad_x``).
* ``Fl``: percent of pixels with ``err > 3`` px **and** ``err / ||f_gt|| > 0.05`` (KITTI 2015
  devkit, ``ABS_THRESH = 3``, ``REL_THRESH = 0.05``).

Valid pixels: ground truth finite and inside the optional ``gt_valid`` mask, and (optional)
``||f_gt|| < max_flow``. A non-finite prediction at a valid pixel counts as an infinite error.

Pixel subsets: ``all`` (keys without a subset suffix), and with a ``noc_mask`` (True = visible in
both frames) ``_matched`` (valid and non-occluded) and ``_unmatched`` (valid and occluded), as the
MPI-Sintel benchmark's "EPE matched / unmatched" (its ``occlusions/`` maps) and KITTI's ``noc``.

Aggregation over a dataset, both reported by :class:`FlowMetric`:

* **pixel-pooled** (no suffix: ``EPE``, ``Fl_all``, ``bad_3.0``, ``EPE_matched``): sums over all
  pixels of all images divided by the total valid pixel count. The MPI-Sintel benchmark's EPE
  (all / matched / unmatched) and the KITTI devkit's Fl-all are pooled this way, and so is the
  EPE RAFT's Sintel validation prints.
* **per-image mean** (suffix ``_per_image``: ``EPE_per_image``, ``Fl_all_per_image``): each
  image's value, then the mean over images with valid pixels; RAFT's KITTI validation prints
  ``EPE_per_image`` as its KITTI EPE (and pooled ``Fl_all`` as F1).
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from mmengine.evaluator import BaseMetric

from ..registry import METRICS
from .sample_fields import dense_map, sample_field

KITTI_ABS_THRESH = 3.0
KITTI_REL_THRESH = 0.05
DEFAULT_THRESHOLDS = (1.0, 3.0, 5.0)

__all__ = ['FlowMetric', 'aggregate_flow_counts', 'endpoint_error', 'flow_counts',
           'flow_field', 'flow_outlier_rate']


def _check(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor | None) -> None:
    if pred.shape != gt.shape:
        raise ValueError(f'flow metric: prediction {tuple(pred.shape)} and ground truth '
                         f'{tuple(gt.shape)} differ in shape')
    if gt.dim() < 3 or gt.shape[-3] != 2:
        raise ValueError(f'flow metric: flow must be (..., 2, H, W), got {tuple(gt.shape)}')
    if valid is not None and valid.shape != gt.shape[:-3] + gt.shape[-2:]:
        raise ValueError(f'flow metric: mask {tuple(valid.shape)} does not match the flow '
                         f'{tuple(gt.shape)}')


def _valid(gt: torch.Tensor, valid: torch.Tensor | None, max_flow: float | None) -> torch.Tensor:
    mask = torch.isfinite(gt).all(-3)
    if valid is not None:
        mask &= valid.bool()
    if max_flow is not None:
        mask &= gt.double().norm(dim=-3) < max_flow
    return mask


def endpoint_error(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """``||pred - gt||`` over the channel axis ``-3``, float64; ``inf`` where pred is not finite."""
    err = (pred.double() - gt.double()).norm(dim=-3)
    return torch.where(torch.isfinite(pred).all(-3), err, torch.full_like(err, torch.inf))


def flow_counts(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor | None = None,
                thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
                max_flow: float | None = None) -> torch.Tensor:
    """Sufficient statistics of each image, for streaming aggregation.

    Args:
        pred, gt: ``(B, 2, H, W)`` (or ``(2, H, W)``) flows ``(u, v)`` in px.
        valid: optional ``(B, H, W)`` mask of the pixels to evaluate.
        thresholds: the bad-x thresholds (px).
        max_flow: optional bound on ``||f_gt||``.

    Returns:
        ``(B, 3 + T)`` float64 (or ``(3 + T,)``): valid pixels, sum of EPE, KITTI Fl outliers,
        then the number of pixels with ``err > t`` per threshold.
    """
    _check(pred, gt, valid)
    mask = _valid(gt, valid, max_flow).flatten(-2)
    err = endpoint_error(pred, gt).flatten(-2)
    magnitude = gt.double().norm(dim=-3).flatten(-2)
    err = torch.where(mask, err, torch.zeros_like(err))
    # As the devkit: err / |f_gt| (a zero-magnitude ground truth makes it inf, an outlier if
    # err > 3 px).
    outlier = (err > KITTI_ABS_THRESH) & (err / magnitude > KITTI_REL_THRESH)
    columns = [mask.sum(-1).double(), err.sum(-1), outlier.sum(-1).double()]
    columns += [(err > t).sum(-1).double() for t in thresholds]
    return torch.stack(columns, dim=-1)


def _per_image(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor | None,
               column: int, max_flow: float | None, thresholds=DEFAULT_THRESHOLDS) -> torch.Tensor:
    counts = flow_counts(pred, gt, valid, thresholds, max_flow)
    return counts[..., column] / counts[..., 0]  # 0 / 0 = NaN for an image without valid pixels


def flow_outlier_rate(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor | None = None,
                      threshold: float | None = None,
                      max_flow: float | None = None) -> torch.Tensor:
    """Percent outliers per image: KITTI Fl (``threshold=None``) or ``err > threshold`` px."""
    if threshold is None:
        return 100.0 * _per_image(pred, gt, valid, 2, max_flow)
    return 100.0 * _per_image(pred, gt, valid, 3, max_flow, (threshold,))


def aggregate_flow_counts(counts: torch.Tensor, thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
                          suffix: str = '') -> dict[str, float]:
    """Dataset metrics from stacked :func:`flow_counts` rows ``(N, 3 + T)``.

    Returns pooled ``EPE{suffix}``, ``Fl{suffix}``, ``bad_{t:.1f}{suffix}`` and the same with
    ``_per_image`` appended. Percent for Fl / bad-x; NaN when no image has a valid pixel.
    """
    counts = counts.double().reshape(-1, 3 + len(thresholds))
    names = ['EPE', 'Fl'] + [f'bad_{t:.1f}' for t in thresholds]
    scale = torch.tensor([1.0] + [100.0] * (1 + len(thresholds)), dtype=torch.float64)
    pixels, totals = counts[:, 0], counts[:, 1:]
    pooled = totals.sum(0) / pixels.sum() * scale
    has_pixels = pixels > 0
    per_image = (totals[has_pixels] / pixels[has_pixels, None]).mean(0) * scale
    results = {}
    for i, name in enumerate(names):
        results[name + suffix] = float(pooled[i])
        results[f'{name}{suffix}_per_image'] = (float(per_image[i]) if has_pixels.any()
                                                else float('nan'))
    return results


def flow_field(sample: Any, name: str, metric: str = 'FlowMetric',
               required: bool = True) -> torch.Tensor | None:
    """A flow field of a data sample as a ``(2, H, W)`` tensor (unwrapping ``.data``)."""
    value = sample_field(sample, name)
    if value is None:
        if required:
            raise KeyError(f'{metric}: data sample has no {name!r}')
        return None
    if not isinstance(value, torch.Tensor):
        value = getattr(value, 'data', value) if not hasattr(value, '__array__') else value
        value = torch.as_tensor(value)
    if value.dim() != 3 or value.shape[0] != 2:
        raise ValueError(f'{metric}: {name} must be (2, H, W) (u, v), got {tuple(value.shape)}')
    return value


@METRICS.register_module()
class FlowMetric(BaseMetric):
    """Streaming EPE / Fl / bad-x over a dataset (see the module docstring for definitions).

    Each data sample provides ``pred_flow`` and ``gt_flow`` ``(2, H, W)`` (tensors or
    ``PixelData``), optionally ``gt_valid`` and ``noc_mask`` ``(H, W)`` / ``(1, H, W)`` bool.

    Keys (percent for Fl / bad-x; all pixel-pooled, and each also with ``_per_image``):
    ``EPE``, ``Fl_all``, ``bad_1.0``, ``bad_3.0``, ``bad_5.0``; with a ``noc_mask`` the same with
    ``_matched`` (``EPE_matched``, ``Fl_matched`` = KITTI Fl-noc, ...) and ``_unmatched``
    (``EPE_unmatched``, ...); e.g. ``EPE_matched_per_image``.

    Args:
        thresholds: bad-x thresholds (px).
        max_flow: ignore ground truth with ``||f_gt|| >= max_flow`` (None: keep all).
    """
    default_prefix = 'flow'

    def __init__(self, thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
                 max_flow: float | None = None, collect_device: str = 'cpu',
                 prefix: str | None = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.max_flow = max_flow

    def process(self, data_batch: Any, data_samples: Sequence[Any]) -> None:
        for sample in data_samples:
            gt = flow_field(sample, 'gt_flow')
            pred = flow_field(sample, 'pred_flow').to(gt.device)
            valid = dense_map(sample, 'gt_valid', 'FlowMetric', required=False)
            noc = dense_map(sample, 'noc_mask', 'FlowMetric', required=False)
            valid = (torch.ones(gt.shape[-2:], dtype=torch.bool, device=gt.device)
                     if valid is None else valid.bool().to(gt.device))
            result = {'all': flow_counts(pred, gt, valid, self.thresholds, self.max_flow).cpu()}
            if noc is not None:
                noc = noc.bool().to(gt.device)
                for subset, mask in (('matched', valid & noc), ('unmatched', valid & ~noc)):
                    result[subset] = flow_counts(pred, gt, mask, self.thresholds,
                                                 self.max_flow).cpu()
            self.results.append(result)

    def compute_metrics(self, results: list[dict]) -> dict[str, float]:
        metrics = aggregate_flow_counts(torch.stack([r['all'] for r in results]),
                                        self.thresholds, '_all')
        # Fl keeps KITTI's name Fl_all; EPE and bad-x need no suffix for all pixels.
        metrics = {(k.replace('_all', '', 1) if not k.startswith('Fl') else k): v
                   for k, v in metrics.items()}
        for subset in ('matched', 'unmatched'):
            rows = [r[subset] for r in results if subset in r]
            if rows:
                metrics.update(aggregate_flow_counts(torch.stack(rows), self.thresholds,
                                                     f'_{subset}'))
        return metrics
