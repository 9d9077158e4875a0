"""COCO-style 2D detection and instance-mask AP through pycocotools' ``COCOeval``.

The COCO ground-truth and result structures are built in memory from per-image arrays, so no JSON
files are written. Boxes come in as ``(N, 4)`` ``x1, y1, x2, y2`` pixels and are converted to
COCO's ``x, y, w, h`` with ``w = x2 - x1`` (no +1, as mmdetection). Masks, if any, are ``(N, H,
W)`` boolean arrays (or COCO RLE dicts) and are encoded with ``pycocotools.mask``.

A ground-truth object's ``area`` (which decides small / medium / large) is its mask area when masks
are given, as in COCO's annotation files, else its box area. Objects flagged ``ignore_flags``
(COCO ``iscrowd``) neither count as misses nor make detections on them false positives.

Keys as mmdetection names them, fractions in [0, 1] (not rounded): ``{t}_mAP``, ``{t}_mAP_50``,
``{t}_mAP_75``, ``{t}_mAP_s``, ``{t}_mAP_m``, ``{t}_mAP_l`` for ``t`` in ``bbox`` / ``segm``, and
with ``classwise`` ``{t}_{class}_precision`` (AP of one class). An area range without any ground
truth gives -1, as COCOeval does.
"""
from __future__ import annotations

import contextlib
import io
from typing import Any, Sequence

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from ..registry import METRICS
from .sample_fields import require_field

IOU_TYPES = ('bbox', 'segm')
_STAT_NAMES = ('mAP', 'mAP_50', 'mAP_75', 'mAP_s', 'mAP_m', 'mAP_l')


def _numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _encode_masks(masks: Any, count: int, where: str) -> list[dict]:
    """``(N, H, W)`` masks (or a list of RLE dicts) -> list of N COCO RLE dicts."""
    from pycocotools import mask as mask_utils

    if isinstance(masks, (list, tuple)) and (not masks or isinstance(masks[0], dict)):
        rles = list(masks)
    else:
        array = _numpy(masks)
        if array.ndim != 3:
            raise ValueError(f'{where}: masks must be (N, H, W), got shape {array.shape}')
        hwn = np.asfortranarray(array.astype(np.uint8).transpose(1, 2, 0))
        rles = list(mask_utils.encode(hwn)) if array.shape[0] else []
    if len(rles) != count:
        raise ValueError(f'{where}: {len(rles)} masks for {count} boxes')
    return rles


def _instances(item: dict, index: int, kind: str, iou_type: str) -> dict[str, Any]:
    """Checked numpy arrays of one image's ground truth (``kind='gt'``) or predictions."""
    where = f'{kind} image {index}'
    bboxes = _numpy(item['bboxes']).astype(np.float64).reshape(-1, 4)
    labels = _numpy(item['labels']).astype(np.int64).reshape(-1)
    if labels.shape[0] != bboxes.shape[0]:
        raise ValueError(f'{where}: {labels.shape[0]} labels for {bboxes.shape[0]} boxes')
    if not np.isfinite(bboxes).all():
        raise ValueError(f'{where}: boxes contain NaN or inf')
    out = {'bboxes': bboxes, 'labels': labels}
    if kind == 'pred':
        scores = _numpy(item['scores']).astype(np.float64).reshape(-1)
        if scores.shape[0] != bboxes.shape[0]:
            raise ValueError(f'{where}: {scores.shape[0]} scores for {bboxes.shape[0]} boxes')
        if not np.isfinite(scores).all():
            raise ValueError(f'{where}: scores contain NaN or inf')
        out['scores'] = scores
    else:
        flags = item.get('ignore_flags')
        out['ignore'] = (np.zeros(len(labels), bool) if flags is None
                         else _numpy(flags).astype(bool).reshape(-1))
    if item.get('masks') is not None:
        out['masks'] = _encode_masks(item['masks'], len(labels), where)
    elif iou_type == 'segm':
        raise ValueError(f'{where}: iou_type "segm" needs masks')
    return out


def _build_coco(gts: list[dict], preds: list[dict], iou_type: str,
                categories: Sequence[int]) -> tuple[Any, Any]:
    """In-memory ``COCO`` objects of ground truth and detections (image ids ``1..n``)."""
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO

    images = []
    for i, (gt, pred) in enumerate(zip(gts, preds)):
        # pycocotools reads the image size when it turns mask annotations into RLE.
        rles = gt.get('masks', []) + pred.get('masks', [])
        height, width = rles[0]['size'] if rles else (0, 0)
        images.append({'id': i + 1, 'height': int(height), 'width': int(width)})
    cats = [{'id': int(c) + 1, 'name': str(c)} for c in categories]  # COCO ids start at 1
    annotations, detections = [], []
    for image_id, (gt, pred) in enumerate(zip(gts, preds), start=1):
        xywh = np.concatenate([gt['bboxes'][:, :2], gt['bboxes'][:, 2:] - gt['bboxes'][:, :2]], 1)
        areas = (mask_utils.area(gt['masks']).astype(np.float64) if 'masks' in gt
                 else xywh[:, 2] * xywh[:, 3])
        for j in range(len(gt['labels'])):  # per object: building the COCO records
            ann = {'id': len(annotations) + 1, 'image_id': image_id,
                   'category_id': int(gt['labels'][j]) + 1, 'bbox': xywh[j].tolist(),
                   'area': float(areas[j]), 'iscrowd': int(gt['ignore'][j])}
            if 'masks' in gt:
                ann['segmentation'] = gt['masks'][j]
            annotations.append(ann)
        xywh = np.concatenate([pred['bboxes'][:, :2],
                               pred['bboxes'][:, 2:] - pred['bboxes'][:, :2]], 1)
        for j in range(len(pred['labels'])):
            det = {'image_id': image_id, 'category_id': int(pred['labels'][j]) + 1,
                   'bbox': xywh[j].tolist(), 'score': float(pred['scores'][j])}
            if iou_type == 'segm':
                det['segmentation'] = pred['masks'][j]
            detections.append(det)
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco_gt = COCO()
        coco_gt.dataset = {'images': images, 'categories': cats, 'annotations': annotations}
        coco_gt.createIndex()
        if detections:
            coco_dt = coco_gt.loadRes(detections)
        else:  # loadRes cannot take an empty list: an empty result set scores 0, not an error
            coco_dt = COCO()
            coco_dt.dataset = {'images': images, 'categories': cats, 'annotations': []}
            coco_dt.createIndex()
    return coco_gt, coco_dt


def coco_evaluate(gt_per_image: Sequence[dict], pred_per_image: Sequence[dict],
                  iou_type: str = 'bbox', class_names: Sequence[str] | None = None,
                  classwise: bool = False) -> tuple[dict[str, float], str]:
    """COCO AP of detections against ground truth, image by image.

    Args:
        gt_per_image: per image ``{'bboxes': (N, 4) xyxy, 'labels': (N,) int, optional 'masks':
            (N, H, W) bool or list of RLE, optional 'ignore_flags': (N,) bool (iscrowd)}``.
        pred_per_image: per image, same order: ``{'bboxes': (M, 4), 'scores': (M,), 'labels':
            (M,), optional 'masks'}`` (masks required for ``iou_type='segm'``).
        iou_type: ``'bbox'`` or ``'segm'``.
        class_names: names of labels ``0..K-1``; the evaluated categories are then all ``K``
            classes (a class without ground truth is skipped by COCOeval), else the labels seen
            in the ground truth and predictions.
        classwise: add ``{iou_type}_{class}_precision`` per class.

    Returns:
        The metrics (see the module docstring) and COCOeval's printed summary.
    """
    from pycocotools.cocoeval import COCOeval

    if iou_type not in IOU_TYPES:
        raise ValueError(f'coco_evaluate: iou_type must be one of {IOU_TYPES}, got {iou_type!r}')
    if len(gt_per_image) != len(pred_per_image):
        raise ValueError(f'coco_evaluate: {len(gt_per_image)} ground-truth images but '
                         f'{len(pred_per_image)} prediction images')
    gts = [_instances(g, i, 'gt', iou_type) for i, g in enumerate(gt_per_image)]
    preds = [_instances(p, i, 'pred', iou_type) for i, p in enumerate(pred_per_image)]
    if class_names is not None:
        categories = list(range(len(class_names)))
        for i, p in enumerate(preds + gts):
            if len(p['labels']) and (p['labels'].min() < 0 or p['labels'].max() >= len(categories)):
                raise ValueError(f'coco_evaluate: labels must be in [0, {len(categories)}), got '
                                 f'{p["labels"].min()}..{p["labels"].max()}')
    else:
        categories = sorted({int(c) for x in gts + preds for c in x['labels']})
    names = list(class_names) if class_names is not None else [str(c) for c in categories]
    if not any(len(g['labels']) for g in gts):
        raise ValueError('coco_evaluate: the ground truth has no objects; AP is undefined')
    coco_gt, coco_dt = _build_coco(gts, preds, iou_type, categories)
    evaluator = COCOeval(coco_gt, coco_dt, iou_type)
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    results = {f'{iou_type}_{name}': float(evaluator.stats[i])
               for i, name in enumerate(_STAT_NAMES)}
    if classwise:
        # precision: (IoU thresholds, recall points, categories, area ranges, max dets)
        precision = evaluator.eval['precision'][:, :, :, 0, -1]
        for k, cat in enumerate(evaluator.params.catIds):
            p = precision[:, :, k]
            p = p[p > -1]
            results[f'{iou_type}_{names[categories.index(cat - 1)]}_precision'] = (
                float(p.mean()) if p.size else float('nan'))
    return results, output.getvalue()


def _instance_field(sample: Any, name: str) -> dict:
    """``gt_instances`` / ``pred_instances`` of a sample as a plain dict of arrays."""
    value = require_field(sample, name, 'CocoMetric')
    if isinstance(value, dict):
        return dict(value)
    keys = ('bboxes', 'labels', 'scores', 'masks', 'ignore_flags')
    return {k: getattr(value, k) for k in keys if getattr(value, k, None) is not None}


@METRICS.register_module()
class CocoMetric(BaseMetric):
    """COCO box / mask AP of ``pred_instances`` against ``gt_instances``.

    Each data sample (dict or object) has ``gt_instances`` (``bboxes`` (N, 4) xyxy, ``labels``,
    optional ``masks`` (N, H, W), optional ``ignore_flags``) and ``pred_instances`` (``bboxes``,
    ``scores``, ``labels``, optional ``masks``), as dicts or objects with those attributes
    (mmengine ``InstanceData``). Masks are kept as RLE, boxes as small arrays.

    Args:
        metric: ``'bbox'``, ``'segm'`` or both.
        class_names: label names; default ``dataset_meta['classes']`` if present.
        classwise: also report per-class AP.
    """
    default_prefix = 'coco'

    def __init__(self, metric: str | Sequence[str] = 'bbox',
                 class_names: Sequence[str] | None = None, classwise: bool = False,
                 collect_device: str = 'cpu', prefix: str | None = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.metrics = [metric] if isinstance(metric, str) else list(metric)
        for m in self.metrics:
            if m not in IOU_TYPES:
                raise ValueError(f'CocoMetric: metric must be in {IOU_TYPES}, got {m!r}')
        self._class_names = list(class_names) if class_names is not None else None
        self.classwise = classwise

    def process(self, data_batch: Any, data_samples: Sequence[Any]) -> None:
        for sample in data_samples:
            gt = _instance_field(sample, 'gt_instances')
            pred = _instance_field(sample, 'pred_instances')
            where = f'CocoMetric sample {len(self.results)}'
            entry = []
            for item, keys in ((gt, ('bboxes', 'labels', 'ignore_flags')),
                               (pred, ('bboxes', 'scores', 'labels'))):
                arrays = {k: _numpy(item[k]) for k in keys if item.get(k) is not None}
                if item.get('masks') is not None:
                    arrays['masks'] = _encode_masks(item['masks'], len(arrays['labels']), where)
                entry.append(arrays)
            self.results.append(tuple(entry))

    def compute_metrics(self, results: list) -> dict[str, float]:
        names = self._class_names
        if names is None and self.dataset_meta and self.dataset_meta.get('classes'):
            names = list(self.dataset_meta['classes'])
        gts = [r[0] for r in results]
        preds = [r[1] for r in results]
        metrics: dict[str, float] = {}
        for iou_type in self.metrics:
            values, summary = coco_evaluate(gts, preds, iou_type, names, self.classwise)
            print_log(f'COCO {iou_type}:\n{summary}', logger='current')
            metrics.update(values)
        return metrics
