"""Semantic segmentation metrics from a dataset-level confusion matrix (mmsegmentation's IoUMetric).

* ``aAcc``: correctly labelled pixels / labelled pixels.
* ``IoU.<class>``: ``TP / (TP + FP + FN)``; ``Acc.<class>``: ``TP / (TP + FN)`` (per-class recall).
* ``mIoU`` / ``mAcc``: NaN-skipping means over classes. A class absent from both ground truth and
  prediction has IoU 0/0 = NaN; a class absent from the ground truth has Acc NaN (even if predicted,
  when its IoU is 0), as in mmsegmentation.

All values in percent, not rounded. Pixels whose ground truth is ``ignore_index`` are skipped.
With ``reduce_zero_label`` (ADE20K) ground-truth label 0 becomes ``ignore_index`` and every other
label is decremented by one, before ignoring.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from ..registry import METRICS
from .sample_fields import dense_map


def reduce_zero_label_map(gt: torch.Tensor, ignore_index: int = 255) -> torch.Tensor:
    """mmseg's ``reduce_zero_label``: 0 -> ``ignore_index``, ``k`` -> ``k - 1``, ignore kept."""
    gt = gt.long()
    return torch.where((gt == 0) | (gt == ignore_index), torch.full_like(gt, ignore_index), gt - 1)


def confusion_matrix(pred: torch.Tensor, gt: torch.Tensor, num_classes: int,
                     ignore_index: int = 255, reduce_zero_label: bool = False) -> torch.Tensor:
    """Pixel counts ``conf[g, p]`` of ground-truth class ``g`` predicted as ``p``.

    Args:
        pred: integer class map ``(..., H, W)`` (any leading dims, counted together).
        gt: integer label map of the same shape.
        num_classes: ``K``.
        ignore_index: ground-truth value that is not evaluated.
        reduce_zero_label: apply :func:`reduce_zero_label_map` to ``gt`` first.

    Returns:
        ``(K, K)`` int64 on ``gt``'s device.

    Raises:
        ValueError: shapes differ, or a labelled pixel has a ground truth or prediction outside
            ``[0, K)`` (mmseg would count such pixels inconsistently; here they are an error).
    """
    if pred.shape != gt.shape:
        raise ValueError(f'confusion_matrix: prediction {tuple(pred.shape)} and ground truth '
                         f'{tuple(gt.shape)} differ in shape')
    if pred.is_floating_point() or gt.is_floating_point():
        raise ValueError('confusion_matrix: expects integer class maps, got '
                         f'{pred.dtype} / {gt.dtype}')
    gt = reduce_zero_label_map(gt, ignore_index) if reduce_zero_label else gt.long()
    keep = gt != ignore_index
    gt, pred = gt[keep], pred.to(gt.device)[keep].long()
    for name, values in (('ground truth', gt), ('prediction', pred)):
        if values.numel() and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f'confusion_matrix: {name} values must be in [0, {num_classes}) '
                             f'(or ignore_index {ignore_index} for ground truth); found '
                             f'{int(values.min())}..{int(values.max())}')
    counts = torch.bincount(gt * num_classes + pred, minlength=num_classes**2)
    return counts.reshape(num_classes, num_classes)


def segmentation_scores(conf: torch.Tensor | np.ndarray,
                        class_names: Sequence[str] | None = None) -> dict[str, float]:
    """``aAcc``, ``mIoU``, ``mAcc`` and ``IoU.<class>``, ``Acc.<class>`` (percent) of a ``(K, K)``
    confusion matrix (rows ground truth, columns prediction). Class names default to indices."""
    conf = torch.as_tensor(conf, dtype=torch.float64)
    if conf.dim() != 2 or conf.shape[0] != conf.shape[1]:
        raise ValueError(f'segmentation_scores: expects a square matrix, got {tuple(conf.shape)}')
    num_classes = conf.shape[0]
    names = [str(i) for i in range(num_classes)] if class_names is None else list(class_names)
    if len(names) != num_classes:
        raise ValueError(f'segmentation_scores: {len(names)} class names for a {num_classes}-class '
                         'confusion matrix')
    tp = conf.diagonal()
    gt_area, pred_area = conf.sum(1), conf.sum(0)
    iou = tp / (gt_area + pred_area - tp)  # 0 / 0 = NaN for a class absent from both
    acc = tp / gt_area  # NaN for a class absent from the ground truth
    results = {'aAcc': float(100 * tp.sum() / conf.sum()),
               'mIoU': float(100 * iou.nanmean()),
               'mAcc': float(100 * acc.nanmean())}
    for name, value_iou, value_acc in zip(names, iou.tolist(), acc.tolist()):
        results[f'IoU.{name}'] = 100 * value_iou
        results[f'Acc.{name}'] = 100 * value_acc
    return results


def format_table(scores: dict[str, float], class_names: Sequence[str]) -> str:
    """Per-class IoU / Acc and the summary, as text."""
    width = max(5, *(len(n) for n in class_names))
    lines = [f'{"Class":<{width}}  {"IoU":>6}  {"Acc":>6}']
    lines += [f'{n:<{width}}  {scores[f"IoU.{n}"]:>6.2f}  {scores[f"Acc.{n}"]:>6.2f}'
              for n in class_names]
    lines.append(f'aAcc {scores["aAcc"]:.2f}  mIoU {scores["mIoU"]:.2f}  '
                 f'mAcc {scores["mAcc"]:.2f}')
    return '\n'.join(lines)


@METRICS.register_module()
class SegMetric(BaseMetric):
    """Streaming mIoU / mAcc / aAcc over a dataset.

    Each data sample (dict or object) provides ``pred_sem_seg`` and ``gt_sem_seg``: ``(H, W)`` or
    ``(1, H, W)`` integer maps (tensors, arrays, or mmseg-style ``PixelData`` with ``.data``). Per
    image only the non-zero entries of its confusion matrix are kept (a few hundred numbers), so
    distributed collection drops padded duplicates exactly; ``compute_metrics`` sums them into the
    dataset confusion matrix.

    Args:
        num_classes: number of classes; taken from ``class_names`` or ``dataset_meta['classes']``
            when not given.
        ignore_index: ground-truth value not evaluated.
        reduce_zero_label: ADE20K-style label shift of the ground truth.
        class_names: names for the per-class keys; default ``dataset_meta['classes']`` or indices.
    """
    default_prefix = 'seg'

    def __init__(self, num_classes: int | None = None, ignore_index: int = 255,
                 reduce_zero_label: bool = False, class_names: Sequence[str] | None = None,
                 collect_device: str = 'cpu', prefix: str | None = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        # With neither given, the classes come from dataset_meta (set by the runner).
        self._num_classes = num_classes
        self._class_names = list(class_names) if class_names is not None else None
        if num_classes is not None and class_names is not None and len(class_names) != num_classes:
            raise ValueError(f'SegMetric: {len(class_names)} class names for {num_classes} classes')
        self.ignore_index = ignore_index
        self.reduce_zero_label = reduce_zero_label

    @property
    def class_names(self) -> list[str]:
        if self._class_names is not None:
            return self._class_names
        classes = (self.dataset_meta or {}).get('classes')
        if classes is not None:
            return list(classes)
        if self._num_classes is None:
            raise ValueError('SegMetric: give num_classes or class_names (or a dataset whose '
                             "metainfo has 'classes')")
        return [str(i) for i in range(self._num_classes)]

    @property
    def num_classes(self) -> int:
        return self._num_classes if self._num_classes is not None else len(self.class_names)

    def process(self, data_batch: Any, data_samples: Sequence[Any]) -> None:
        k = self.num_classes
        for sample in data_samples:
            gt = dense_map(sample, 'gt_sem_seg', 'SegMetric')
            pred = dense_map(sample, 'pred_sem_seg', 'SegMetric')
            conf = confusion_matrix(pred, gt, k, self.ignore_index,
                                    self.reduce_zero_label).flatten()
            nonzero = conf.nonzero().flatten()
            self.results.append((nonzero.cpu(), conf[nonzero].cpu()))

    def compute_metrics(self, results: list) -> dict[str, float]:
        k = self.num_classes
        conf = torch.zeros(k * k, dtype=torch.int64)
        for index, count in results:
            conf.index_add_(0, index, count)
        names = self.class_names
        scores = segmentation_scores(conf.reshape(k, k), names)
        print_log('\n' + format_table(scores, names), logger='current')
        return scores
