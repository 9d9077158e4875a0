"""COCO box / mask AP through pycocotools, built in memory from per-image arrays."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from mmengine.structures import BaseDataElement, InstanceData

from perception.evaluation.coco import CocoMetric, coco_evaluate
from perception.registry import METRICS

pytest.importorskip('pycocotools')

# COCO AP averages interpolated precision at 101 recall points 0, 0.01, ..., 1: finding one of
# two objects covers the 51 points up to recall 0.5.
HALF_RECALL_AP = 51 / 101


def _gt(boxes, labels, **extra):
    return {'bboxes': np.array(boxes, float).reshape(-1, 4), 'labels': np.array(labels), **extra}


def _pred(boxes, scores, labels, **extra):
    return {'bboxes': np.array(boxes, float).reshape(-1, 4), 'scores': np.array(scores, float),
            'labels': np.array(labels), **extra}


def test_perfect_predictions_score_one_in_every_size_range():
    small, medium, large = [10, 10, 30, 30], [50, 50, 110, 110], [0, 200, 150, 400]
    gts = [_gt([small, medium], [0, 1]), _gt([large], [2])]
    preds = [_pred([small, medium], [0.9, 0.8], [0, 1]), _pred([large], [0.7], [2])]
    results, summary = coco_evaluate(gts, preds, 'bbox')
    keys = ['bbox_mAP', 'bbox_mAP_50', 'bbox_mAP_75', 'bbox_mAP_s', 'bbox_mAP_m', 'bbox_mAP_l']
    assert list(results) == keys
    assert list(results.values()) == pytest.approx([1.0] * 6, abs=1e-12)
    assert 'Average Precision' in summary


def test_one_of_two_found_hand_computed_ap():
    gts = [_gt([[0, 0, 50, 50], [100, 100, 150, 150]], [0, 0])]
    miss = [300, 300, 350, 350]
    # The true positive scores above the false positive: precision 1 up to recall 0.5.
    results, _ = coco_evaluate(gts, [_pred([[0, 0, 50, 50], miss], [0.9, 0.5], [0, 0])])
    assert results['bbox_mAP'] == pytest.approx(HALF_RECALL_AP, abs=1e-12)
    assert results['bbox_mAP_50'] == pytest.approx(HALF_RECALL_AP, abs=1e-12)
    assert results['bbox_mAP_l'] == -1  # no large ground truth: COCOeval's -1
    # The false positive first: precision 1/2 at recall 0.5.
    results, _ = coco_evaluate(gts, [_pred([[0, 0, 50, 50], miss], [0.5, 0.9], [0, 0])])
    assert results['bbox_mAP'] == pytest.approx(0.5 * HALF_RECALL_AP, abs=1e-12)


def test_iou_thresholds_and_xyxy_conversion():
    # IoU 0.62 matches at 0.50, 0.55 and 0.60 only: mAP = 3 / 10.
    gts = [_gt([[0, 0, 100, 100]], [0])]
    results, _ = coco_evaluate(gts, [_pred([[0, 0, 100, 62]], [0.9], [0])])
    assert results['bbox_mAP'] == pytest.approx(0.3, abs=1e-12)
    assert results['bbox_mAP_50'] == pytest.approx(1.0) and results['bbox_mAP_75'] == 0.0
    # A wrong label is a miss for the ground-truth class.
    results, _ = coco_evaluate(gts, [_pred([[0, 0, 100, 100]], [0.9], [1])])
    assert results['bbox_mAP'] == 0.0


def test_masks_and_empty_predictions():
    mask = np.zeros((2, 40, 40), bool)
    mask[0, 5:15, 5:15] = True
    mask[1, 20:40, 0:40] = True
    gts = [_gt([[5, 5, 15, 15], [0, 20, 40, 40]], [0, 1], masks=mask)]
    half = mask.copy()
    half[1, 30:40] = False  # mask IoU 0.5 for the second object
    preds = [_pred([[5, 5, 15, 15], [0, 20, 40, 40]], [0.9, 0.8], [0, 1], masks=half)]
    segm, _ = coco_evaluate(gts, preds, 'segm')
    # Class 0 matches at every threshold (AP 1); class 1 only at IoU 0.50 (AP 1 / 10).
    assert segm['segm_mAP'] == pytest.approx((1 + 0.1) / 2, abs=1e-12)
    assert segm['segm_mAP_50'] == pytest.approx(1.0, abs=1e-12)
    bbox, _ = coco_evaluate(gts, preds, 'bbox')
    assert bbox['bbox_mAP'] == pytest.approx(1.0, abs=1e-12)  # the boxes are exact
    # No predictions anywhere: AP 0, not an error.
    empty, _ = coco_evaluate(gts, [_pred([], [], [], masks=np.zeros((0, 40, 40), bool))], 'segm')
    assert empty['segm_mAP'] == 0.0
    with pytest.raises(ValueError, match='"segm" needs masks'):
        coco_evaluate([_gt([[0, 0, 5, 5]], [0])], [_pred([], [], [])], 'segm')


def test_coco_metric_reads_instance_data_and_reports_classwise():
    metric = METRICS.build(dict(type='CocoMetric', metric=['bbox'], classwise=True))
    assert isinstance(metric, CocoMetric)
    metric.dataset_meta = {'classes': ('car', 'person')}
    gt = InstanceData(bboxes=torch.tensor([[0.0, 0, 50, 50], [100, 100, 150, 150]]),
                      labels=torch.tensor([0, 0]))
    pred = InstanceData(bboxes=torch.tensor([[0.0, 0, 50, 50], [300, 300, 350, 350]]),
                        scores=torch.tensor([0.9, 0.5]), labels=torch.tensor([0, 0]))
    person = {'bboxes': torch.tensor([[10.0, 10, 40, 90]]), 'labels': torch.tensor([1])}
    metric.process({}, [BaseDataElement(gt_instances=gt, pred_instances=pred),
                        {'gt_instances': person,
                         'pred_instances': {**person, 'scores': torch.tensor([0.3])}}])
    results = metric.evaluate(2)
    assert results['coco/bbox_car_precision'] == pytest.approx(HALF_RECALL_AP, abs=1e-12)
    assert results['coco/bbox_person_precision'] == pytest.approx(1.0, abs=1e-12)
    assert results['coco/bbox_mAP'] == pytest.approx((HALF_RECALL_AP + 1) / 2, abs=1e-12)


def test_bad_predictions_are_errors():
    gts = [_gt([[0, 0, 10, 10]], [0])]
    with pytest.raises(ValueError, match='pred image 0: scores contain NaN'):
        coco_evaluate(gts, [_pred([[0, 0, 10, 10]], [math.nan], [0])])
    with pytest.raises(ValueError, match='2 labels for 1 boxes'):
        coco_evaluate(gts, [_pred([[0, 0, 10, 10]], [0.5], [0, 0])])
    with pytest.raises(ValueError, match='1 ground-truth images but 2 prediction images'):
        coco_evaluate(gts, [_pred([], [], []), _pred([], [], [])])
