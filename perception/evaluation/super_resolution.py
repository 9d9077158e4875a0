"""Super-resolution metrics: PSNR and SSIM on RGB or on Y, as BasicSR and the benchmarks report.

Protocol: images as 8-bit values (predictions are rounded to uint8 first), ``crop_border`` pixels
removed on every side (the benchmarks use ``crop_border = scale``), and with ``y_channel=True`` the
luma of ITU-R BT.601 studio swing as MATLAB's ``rgb2ycbcr``: ``Y = 16 + (65.481 R + 128.553 G +
24.966 B)`` for R, G, B in [0, 1], kept as float. SSIM is Wang et al.'s with MATLAB's ``ssim``
settings as BasicSR computes it: 11x11 Gaussian window (sigma 1.5), ``C1 = (0.01 * 255)^2``,
``C2 = (0.03 * 255)^2``, statistics only where the window fits inside the image ("valid"), float64,
mean over channels. The dataset score is the mean of per-image values.

Bicubic baselines use :func:`perception.datasets.transforms.imresize.imresize` (MATLAB numerics).
"""
from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log
from mmengine.utils import ProgressBar

from ..datasets.super_resolution import IMAGE_SUFFIXES, read_rgb
from ..datasets.transforms.imresize import imresize
from ..engine.errors import DataError
from ..registry import METRICS
from .sample_fields import require_field

_BT601_Y = (65.481, 128.553, 24.966)


def rgb_to_y(image: torch.Tensor) -> torch.Tensor:
    """Luma in [16, 235] of RGB values in [0, 255] (MATLAB ``rgb2ycbcr``, studio swing).

    ``(..., 3, H, W)`` -> ``(..., 1, H, W)``, float.
    """
    if image.shape[-3] != 3:
        raise ValueError(f'rgb_to_y expects 3 channels at dim -3, got shape {tuple(image.shape)}')
    weights = image.new_tensor(_BT601_Y, dtype=torch.float64).view(3, 1, 1)
    return ((image.double() / 255.0) * weights).sum(dim=-3, keepdim=True) + 16.0


def psnr(pred: torch.Tensor, target: torch.Tensor, crop_border: int = 0, y_channel: bool = False,
         max_value: float = 255.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB of ``(..., C, H, W)`` images with values in [0, 255].

    Returns one value per leading index (a scalar for a single image); ``inf`` for identical
    images.
    """
    if pred.shape != target.shape:
        raise ValueError(f'psnr: prediction {tuple(pred.shape)} and target '
                         f'{tuple(target.shape)} differ in shape')
    if crop_border:
        pred = pred[..., crop_border:-crop_border, crop_border:-crop_border]
        target = target[..., crop_border:-crop_border, crop_border:-crop_border]
    if y_channel:
        pred, target = rgb_to_y(pred), rgb_to_y(target)
    mse = (pred.double() - target.double()).pow(2).mean(dim=(-3, -2, -1))
    return 10.0 * torch.log10(max_value**2 / mse)


def gaussian_window(size: int = 11, sigma: float = 1.5,
                    dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Normalised 1-D Gaussian ``(size,)``; its outer product is ``fspecial('gaussian')``."""
    x = torch.arange(size, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-x**2 / (2 * sigma**2))
    return g / g.sum()


def _filter_valid(image: torch.Tensor, taps: list[float]) -> torch.Tensor:
    """Separable filter of ``(..., H, W)`` over the positions where the window fits ("valid").

    Shifted slices summed with the tap weights: the same arithmetic as ``conv2d``, but about 8x
    faster than its float64 CPU path, and it runs on any device.
    """
    size = len(taps)
    for dim in (-2, -1):
        length = image.shape[dim] - size + 1
        out = image.narrow(dim, 0, length) * taps[0]
        for k in range(1, size):
            out.add_(image.narrow(dim, k, length), alpha=taps[k])
        image = out
    return image


def ssim(pred: torch.Tensor, target: torch.Tensor, crop_border: int = 0, y_channel: bool = False,
         max_value: float = 255.0, window_size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Structural similarity of ``(..., C, H, W)`` images with values in ``[0, max_value]``.

    The SSIM map is computed per channel over the window positions that fit inside the (cropped)
    image, averaged over positions, then over channels. Computed in float64 with separable
    shifted sums (batched, any device). Returns one value per leading index (a scalar for a
    single ``(C, H, W)`` image); identical images give exactly 1.
    """
    if pred.shape != target.shape:
        raise ValueError(f'ssim: prediction {tuple(pred.shape)} and target '
                         f'{tuple(target.shape)} differ in shape')
    if pred.dim() < 3:
        raise ValueError(f'ssim: expected (..., C, H, W), got shape {tuple(pred.shape)}')
    if crop_border:
        pred = pred[..., crop_border:-crop_border, crop_border:-crop_border]
        target = target[..., crop_border:-crop_border, crop_border:-crop_border]
    if y_channel:
        pred, target = rgb_to_y(pred), rgb_to_y(target)
    *lead, channels, height, width = pred.shape
    if height < window_size or width < window_size:
        raise ValueError(f'ssim: image {height}x{width} (after cropping {crop_border}) is smaller '
                         f'than the {window_size}x{window_size} window')
    x, y = pred.double(), target.double()
    # The five local statistics E[x], E[y], E[x^2], E[y^2], E[xy] stacked on a new dim 0.
    stats = _filter_valid(torch.stack([x, y, x * x, y * y, x * y]),
                          gaussian_window(window_size, sigma).tolist())
    mu_x, mu_y, xx, yy, xy = stats.unbind(dim=0)
    c1, c2 = (0.01 * max_value)**2, (0.03 * max_value)**2
    mu_xy, mu_x2, mu_y2 = mu_x * mu_y, mu_x * mu_x, mu_y * mu_y
    ssim_map = ((2 * mu_xy + c1) * (2 * (xy - mu_xy) + c2)) / (
        (mu_x2 + mu_y2 + c1) * ((xx - mu_x2) + (yy - mu_y2) + c2))
    per_channel = ssim_map.mean(dim=(-2, -1)).reshape(*lead, channels)
    return per_channel.mean(dim=-1)


def to_uint8_range(image: torch.Tensor) -> torch.Tensor:
    """[0, 1] float -> [0, 255] float holding the values a saved uint8 image would have."""
    return (image.clamp(0, 1) * 255.0).round()


def bicubic_upscale(lr: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The benchmarks' bicubic baseline: MATLAB ``imresize`` of the 8-bit LR image.

    ``lr`` ``(C, h, w)`` in [0, 1] -> ``(C, *size)`` float holding uint8 values in [0, 255].
    """
    lr8 = to_uint8_range(lr.detach().cpu().float()).to(torch.uint8)
    return imresize(lr8, output_shape=size).double()


@METRICS.register_module()
class SRMetric(BaseMetric):
    """PSNR and SSIM of predictions (``pred_img``) against ``gt_img``, mean over images.

    Both images are ``(C, H, W)`` floats in [0, 1] (fields of a dict or attributes of a data
    sample); the prediction is rounded to 8 bits first.

    Args:
        crop_border: pixels removed at every side before comparing (use the scale).
        y_channel: compare the BT.601 luma instead of RGB.
        bicubic_baseline: also report ``PSNR_bicubic`` and ``SSIM_bicubic``, the scores of the LR
            input (``data_batch['inputs']``) upscaled with MATLAB bicubic, so a run shows what the
            model adds over interpolation.
    """
    default_prefix = 'sr'

    def __init__(self, crop_border: int = 0, y_channel: bool = True,
                 bicubic_baseline: bool = True, collect_device: str = 'cpu',
                 prefix: str | None = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.crop_border = crop_border
        self.y_channel = y_channel
        self.bicubic_baseline = bicubic_baseline
        self._warned_small = False

    def _scores(self, pred255: torch.Tensor, gt255: torch.Tensor) -> tuple[float, float]:
        value_psnr = psnr(pred255, gt255, self.crop_border, self.y_channel).item()
        if min(gt255.shape[-2:]) - 2 * self.crop_border < 11:
            # SSIM is undefined when its window does not fit: NaN (it poisons the mean visibly).
            if not self._warned_small:
                print_log(f'SRMetric: image {tuple(gt255.shape[-2:])} minus crop_border '
                          f'{self.crop_border} is smaller than the 11x11 SSIM window; SSIM is NaN',
                          logger='current', level=logging.WARNING)
                self._warned_small = True
            return value_psnr, math.nan
        return value_psnr, ssim(pred255, gt255, self.crop_border, self.y_channel).item()

    def process(self, data_batch: Any, data_samples: Sequence[Any]) -> None:
        inputs = data_batch['inputs'] if self.bicubic_baseline else [None] * len(data_samples)
        for lr, sample in zip(inputs, data_samples):
            pred = require_field(sample, 'pred_img', 'SRMetric')
            gt = require_field(sample, 'gt_img', 'SRMetric')
            gt255 = to_uint8_range(gt.detach().cpu())
            result = dict(zip(('PSNR', 'SSIM'),
                              self._scores(to_uint8_range(pred.detach().cpu()), gt255)))
            if lr is not None:
                upscaled = bicubic_upscale(lr, tuple(gt.shape[-2:]))
                result.update(zip(('PSNR_bicubic', 'SSIM_bicubic'),
                                  self._scores(upscaled, gt255)))
            self.results.append(result)

    def compute_metrics(self, results: list[dict]) -> dict[str, float]:
        return {key: float(sum(r[key] for r in results) / len(results)) for key in results[0]}


def _find_prediction(pred_dir: Path, stem: str, scale: int) -> Path | None:
    """``stem.ext`` or ``stem{x<scale>}.ext`` (any image extension), exact name first."""
    for name in (stem, f'{stem}x{scale}'):
        for suffix in IMAGE_SUFFIXES:
            path = pred_dir / f'{name}{suffix}'
            if path.is_file():
                return path
    return None


def evaluate_image_dirs(gt_dir: str | os.PathLike, pred_dir: str | os.PathLike, scale: int,
                        y_channel: bool = False) -> tuple[dict[str, float], str]:
    """PSNR / SSIM of every image of ``gt_dir`` against its prediction in ``pred_dir``.

    A ground-truth ``name.png`` is paired with ``name.<ext>`` or ``name<x{scale}>.<ext>`` in
    ``pred_dir``. A ground truth larger than its prediction by less than ``scale`` pixels (an HR
    size that is not a multiple of the scale) is cropped at the bottom/right to the prediction's
    size. ``crop_border = scale``; images are compared as 8-bit values.

    Returns:
        ``{'PSNR': mean, 'SSIM': mean, '<name>/PSNR': ..., '<name>/SSIM': ...}`` and the printed
        table (one row per image, then the mean).

    Raises:
        DataError: a folder is missing or empty, a prediction is missing, or sizes do not fit.
    """
    if scale < 1:
        raise DataError(f'scale must be a positive integer, got {scale}')
    gt_dir, pred_dir = Path(gt_dir), Path(pred_dir)
    for folder, what in ((gt_dir, 'ground-truth'), (pred_dir, 'prediction')):
        if not folder.is_dir():
            raise DataError(f'{folder}: {what} folder not found')
    gt_paths = sorted(p for p in gt_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not gt_paths:
        raise DataError(f'{gt_dir}: no images ({", ".join(IMAGE_SUFFIXES)}) in the ground-truth '
                        'folder')
    pairs = []
    for gt_path in gt_paths:  # check every pair before the (slower) scoring
        pred_path = _find_prediction(pred_dir, gt_path.stem, scale)
        if pred_path is None:
            raise DataError(f'{pred_dir / (gt_path.stem + gt_path.suffix)}: prediction for '
                            f'{gt_path.name} not found (also tried {gt_path.stem}x{scale}.*)')
        pairs.append((gt_path, pred_path))

    results: dict[str, float] = {}
    rows = []
    progress = ProgressBar(len(pairs)) if len(pairs) >= 50 else None
    for gt_path, pred_path in pairs:
        gt, pred = read_rgb(gt_path), read_rgb(pred_path)
        (gh, gw), (ph, pw) = gt.shape[:2], pred.shape[:2]
        if not (0 <= gh - ph < scale and 0 <= gw - pw < scale):
            raise DataError(f'{pred_path}: prediction is {ph}x{pw} but the ground truth '
                            f'{gt_path.name} is {gh}x{gw}; expected the same size, or the ground '
                            f'truth larger by less than the scale {scale}')
        gt = gt[:ph, :pw]
        gt_t = torch.from_numpy(np.ascontiguousarray(gt.transpose(2, 0, 1))).double()
        pred_t = torch.from_numpy(np.ascontiguousarray(pred.transpose(2, 0, 1))).double()
        value_psnr = psnr(pred_t, gt_t, scale, y_channel).item()
        value_ssim = ssim(pred_t, gt_t, scale, y_channel).item()
        results[f'{gt_path.stem}/PSNR'] = value_psnr
        results[f'{gt_path.stem}/SSIM'] = value_ssim
        rows.append((gt_path.stem, value_psnr, value_ssim))
        if progress is not None:
            progress.update()
    results['PSNR'] = float(np.mean([r[1] for r in rows]))
    results['SSIM'] = float(np.mean([r[2] for r in rows]))

    width = max(8, *(len(r[0]) for r in rows))
    space = 'Y' if y_channel else 'RGB'
    lines = [f'{len(rows)} images, x{scale}, crop_border {scale}, on {space}',
             f'{"image":<{width}}  {"PSNR (dB)":>10}  {"SSIM":>7}']
    lines += [f'{name:<{width}}  {p:>10.4f}  {s_:>7.4f}' for name, p, s_ in rows]
    lines.append(f'{"mean":<{width}}  {results["PSNR"]:>10.4f}  {results["SSIM"]:>7.4f}')
    return results, '\n'.join(lines)
