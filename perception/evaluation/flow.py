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

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.utils import ProgressBar

from ..datasets.flow_io import read_flow
from ..engine.errors import DataError
from ..registry import METRICS
from .sample_fields import dense_map, sample_field

KITTI_ABS_THRESH = 3.0
KITTI_REL_THRESH = 0.05
DEFAULT_THRESHOLDS = (1.0, 3.0, 5.0)

__all__ = ['FlowMetric', 'aggregate_flow_counts', 'endpoint_error', 'evaluate_flow_dirs',
           'flow_counts', 'flow_field', 'flow_outlier_rate']


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
    if isinstance(value, Mapping):  # a PixelData after mmengine's Evaluator ran to_dict()
        value = value.get('data', value)
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


# ------------------------------------------------------------------ folders of flow files

FLOW_SUFFIXES = ('.flo', '.png', '.pfm')


def _flow_files(folder: Path, what: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise DataError(f'{folder}: {what} folder not found')
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in FLOW_SUFFIXES or not path.is_file():
            continue
        if path.stem in files:
            raise DataError(f'{path}: {what} folder holds two files for {path.stem!r} '
                            f'({files[path.stem].name} and {path.name}); expected one')
        files[path.stem] = path
    return files


def _read_prediction(path: Path) -> np.ndarray:
    flow, valid = read_flow(path)
    # a pixel the prediction marks invalid (KITTI valid flag 0, a .flo unknown marker) is an
    # outlier; the KITTI devkit would interpolate it, but a dense method should not leave holes
    return np.where(valid[..., None], flow, np.nan).astype(np.float32)


def evaluate_flow_dirs(gt_dir: str | os.PathLike, pred_dir: str | os.PathLike,
                       noc_dir: str | os.PathLike | None = None,
                       noc_format: str = 'kitti_png', max_flow: float | None = None,
                       thresholds: Sequence[float] = DEFAULT_THRESHOLDS
                       ) -> tuple[dict[str, float], str]:
    """EPE / Fl / bad-x of every flow file of ``gt_dir`` against its prediction in ``pred_dir``.

    Files (``.flo``, KITTI 16-bit ``.png``, ``.pfm``) pair by stem, so a ``.flo`` prediction may
    score a KITTI PNG ground truth. Ground-truth validity is each format's own (KITTI's valid flag,
    Middlebury's unknown marker). A prediction pixel marked invalid counts as an infinite error.
    ``noc_dir`` holds a mask per stem: ``noc_format='kitti_png'`` (KITTI ``flow_noc``: its valid
    flag is the non-occluded region) or ``'occlusion_png'`` (Sintel ``occlusions/``: >= 128 is
    occluded); it adds the ``_matched`` / ``_unmatched`` metrics.

    Returns:
        :class:`FlowMetric`'s dataset metrics plus ``'<stem>/EPE'`` and ``'<stem>/Fl_all'`` per
        file, and the printed table (one row per file, then the pooled and per-image means).

    Raises:
        DataError: a folder or a prediction or mask is missing, a file is unreadable, sizes differ.
    """
    from ..datasets.transforms.flow import LoadFlow

    gt_dir, pred_dir = Path(gt_dir), Path(pred_dir)
    gt_files = _flow_files(gt_dir, 'ground-truth')
    if not gt_files:
        raise DataError(f'{gt_dir}: no flow files ({", ".join(FLOW_SUFFIXES)}) in the '
                        'ground-truth folder')
    pred_files = _flow_files(pred_dir, 'prediction')
    noc_files = None
    if noc_dir is not None:
        if noc_format not in ('kitti_png', 'occlusion_png'):
            raise DataError(f"noc_format must be 'kitti_png' or 'occlusion_png', got "
                            f'{noc_format!r}')
        noc_dir = Path(noc_dir)
        if not noc_dir.is_dir():
            raise DataError(f'{noc_dir}: noc mask folder not found')
        noc_files = {p.stem: p for p in sorted(noc_dir.glob('*.png'))}
    jobs = []
    for stem, gt_path in gt_files.items():  # check every pairing before the (slower) reading
        if stem not in pred_files:
            raise DataError(f'{pred_dir / stem}.*: prediction for {gt_path.name} not found '
                            f'(expected {stem} with one of {", ".join(FLOW_SUFFIXES)})')
        noc_path = None
        if noc_files is not None:
            noc_path = noc_files.get(stem)
            if noc_path is None:
                raise DataError(f'{noc_dir / stem}.png: noc mask for {gt_path.name} not found')
        jobs.append((stem, gt_path, pred_files[stem], noc_path))

    metric = FlowMetric(thresholds=thresholds, max_flow=max_flow)
    loader = LoadFlow(required=True)
    results: dict[str, float] = {}
    rows = []
    progress = ProgressBar(len(jobs)) if len(jobs) >= 50 else None
    for stem, gt_path, pred_path, noc_path in jobs:
        gt = loader({'flow_path': str(gt_path), 'noc_path': noc_path and str(noc_path),
                     'noc_format': noc_format})
        pred = _read_prediction(pred_path)
        if pred.shape != gt['gt_flow'].shape:
            (gh, gw), (ph, pw) = gt['gt_flow'].shape[:2], pred.shape[:2]
            raise DataError(f'{pred_path}: prediction is {ph}x{pw} but the ground truth '
                            f'{gt_path} is {gh}x{gw}; expected the same size')
        sample = {'gt_flow': torch.from_numpy(gt['gt_flow']).permute(2, 0, 1),
                  'gt_valid': torch.from_numpy(gt['gt_valid']),
                  'pred_flow': torch.from_numpy(pred).permute(2, 0, 1)}
        if 'noc_mask' in gt:
            sample['noc_mask'] = torch.from_numpy(gt['noc_mask'])
        metric.process(None, [sample])
        pixels, epe_sum, outliers = metric.results[-1]['all'][:3].tolist()
        epe = epe_sum / pixels if pixels else float('nan')
        fl = 100.0 * outliers / pixels if pixels else float('nan')
        results[f'{stem}/EPE'], results[f'{stem}/Fl_all'] = epe, fl
        rows.append((stem, int(pixels), epe, fl))
        if progress is not None:
            progress.update()
    metrics = metric.compute_metrics(metric.results)
    results.update(metrics)

    width = max(8, *(len(r[0]) for r in rows))
    lines = [f'{len(rows)} flow files' + (f', noc masks from {noc_dir}' if noc_dir else ''),
             f'{"file":<{width}}  {"pixels":>9}  {"EPE (px)":>9}  {"Fl-all (%)":>10}']
    lines += [f'{name:<{width}}  {n:>9d}  {e:>9.4f}  {f:>10.4f}' for name, n, e, f in rows]
    for label, suffix in (('pooled', ''), ('per-image', '_per_image')):
        lines.append(f'{label:<{width}}  {"":>9}  {metrics["EPE" + suffix]:>9.4f}  '
                     f'{metrics["Fl_all" + suffix]:>10.4f}')
    keys = [k for k in metrics if not k.endswith('_per_image')]
    lines.append('pooled: ' + ', '.join(f'{k} {metrics[k]:.4f}' for k in keys))
    return results, '\n'.join(lines)
