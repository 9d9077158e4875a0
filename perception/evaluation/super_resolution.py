"""Super-resolution metrics: PSNR on RGB or on the Y channel, as BasicSR and the benchmarks report.

Protocol: images as 8-bit values (predictions are rounded to uint8 first), ``crop_border`` pixels
removed on every side (the benchmarks use ``crop_border = scale``), and with ``y_channel=True`` the
luma of ITU-R BT.601 studio swing as MATLAB's ``rgb2ycbcr``: ``Y = 16 + (65.481 R + 128.553 G +
24.966 B)`` for R, G, B in [0, 1], kept as float. The dataset score is the mean of per-image PSNRs.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from mmengine.evaluator import BaseMetric

from ..registry import METRICS

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


def to_uint8_range(image: torch.Tensor) -> torch.Tensor:
    """[0, 1] float -> [0, 255] float holding the values a saved uint8 image would have."""
    return (image.clamp(0, 1) * 255.0).round()


@METRICS.register_module()
class SRMetric(BaseMetric):
    """PSNR of predictions (``pred_img``) against ``gt_img``, mean over images.

    Args:
        crop_border: pixels removed at every side before comparing (use the scale).
        y_channel: compare the BT.601 luma instead of RGB.
        bicubic_baseline: also report ``PSNR_bicubic``, the PSNR of the LR input upscaled with
            torch's bicubic interpolation, so a run shows what the model adds over interpolation.
    """
    default_prefix = 'sr'

    def __init__(self, crop_border: int = 0, y_channel: bool = True,
                 bicubic_baseline: bool = True, collect_device: str = 'cpu',
                 prefix: str | None = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.crop_border = crop_border
        self.y_channel = y_channel
        self.bicubic_baseline = bicubic_baseline

    def process(self, data_batch: Any, data_samples: Sequence[Any]) -> None:
        inputs = data_batch['inputs'] if self.bicubic_baseline else [None] * len(data_samples)
        for lr, sample in zip(inputs, data_samples):
            pred, gt = _field(sample, 'pred_img'), _field(sample, 'gt_img')
            gt255 = to_uint8_range(gt.cpu())
            result = {'PSNR': psnr(to_uint8_range(pred.cpu()), gt255, self.crop_border,
                                   self.y_channel).item()}
            if lr is not None:
                upscaled = F.interpolate(lr[None].float().cpu(), size=gt.shape[-2:], mode='bicubic',
                                         align_corners=False)[0]
                result['PSNR_bicubic'] = psnr(to_uint8_range(upscaled), gt255, self.crop_border,
                                              self.y_channel).item()
            self.results.append(result)

    def compute_metrics(self, results: list[dict]) -> dict[str, float]:
        return {key: float(sum(r[key] for r in results) / len(results)) for key in results[0]}


def _field(sample: Any, name: str) -> torch.Tensor:
    value = sample.get(name) if isinstance(sample, dict) else getattr(sample, name, None)
    if value is None:
        raise KeyError(f'SRMetric: data sample has no {name!r}')
    return value
