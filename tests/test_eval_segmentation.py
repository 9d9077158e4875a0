"""Segmentation metrics: confusion matrix, aAcc / mIoU / mAcc as mmsegmentation's IoUMetric."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from mmengine.structures import BaseDataElement, PixelData

from perception.evaluation.segmentation import (
    SegMetric,
    confusion_matrix,
    reduce_zero_label_map,
    segmentation_scores,
)
from perception.registry import METRICS

GT = torch.tensor([[0, 0, 1], [1, 2, 255]])
PRED = torch.tensor([[0, 1, 1], [1, 1, 0]])


def test_hand_computed_case():
    conf = confusion_matrix(PRED, GT, num_classes=3)
    assert conf.tolist() == [[1, 1, 0], [0, 2, 0], [0, 1, 0]]  # the 255 pixel is skipped
    scores = segmentation_scores(conf, ['road', 'car', 'sky'])
    # TP 1, 2, 0; GT area 2, 2, 1; predicted area 1, 4, 0.
    assert scores['aAcc'] == pytest.approx(60.0)
    assert scores['IoU.road'] == pytest.approx(50.0)  # 1 / (2 + 1 - 1)
    assert scores['IoU.car'] == pytest.approx(50.0)  # 2 / (2 + 4 - 2)
    assert scores['IoU.sky'] == 0.0
    assert scores['Acc.road'] == pytest.approx(50.0) and scores['Acc.car'] == 100.0
    assert scores['mIoU'] == pytest.approx(100 / 3)
    assert scores['mAcc'] == pytest.approx(50.0)


def test_absent_classes_are_nan_and_skipped():
    # Class 3 appears nowhere: NaN IoU and Acc, left out of the means.
    scores = segmentation_scores(confusion_matrix(PRED, GT, num_classes=4))
    assert math.isnan(scores['IoU.3']) and math.isnan(scores['Acc.3'])
    assert scores['mIoU'] == pytest.approx(100 / 3) and scores['mAcc'] == pytest.approx(50.0)
    # Class 3 predicted but not in the ground truth: IoU 0 counts, Acc (0 / 0) stays NaN.
    pred = PRED.clone()
    pred[1, 1] = 3
    scores = segmentation_scores(confusion_matrix(pred, GT, num_classes=4))
    assert scores['IoU.3'] == 0.0 and math.isnan(scores['Acc.3'])
    assert scores['IoU.2'] == 0.0  # the sky pixel now predicted as 3
    assert scores['IoU.1'] == pytest.approx(200 / 3)  # 2 / (2 + 3 - 2)
    assert scores['mIoU'] == pytest.approx((50 + 200 / 3 + 0 + 0) / 4)
    assert scores['mAcc'] == pytest.approx((50 + 100 + 0) / 3)


def test_reduce_zero_label_as_mmseg():
    gt = torch.tensor([0, 1, 2, 150, 255], dtype=torch.uint8)
    assert reduce_zero_label_map(gt).tolist() == [255, 0, 1, 149, 255]
    conf = confusion_matrix(torch.tensor([5, 0, 1, 149, 7]), gt, 150, reduce_zero_label=True)
    assert conf.sum() == 3 and conf[0, 0] == 1 and conf[1, 1] == 1 and conf[149, 149] == 1


def test_confusion_matrix_matches_a_per_pixel_count():
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 6, (2, 31, 29))
    gt[rng.random(gt.shape) < 0.1] = 255
    pred = rng.integers(0, 6, gt.shape)
    conf = confusion_matrix(torch.from_numpy(pred), torch.from_numpy(gt), 6)
    expected = np.zeros((6, 6), np.int64)
    for g, p in zip(gt.ravel(), pred.ravel()):
        if g != 255:
            expected[g, p] += 1
    assert np.array_equal(conf.numpy(), expected)
    scores = segmentation_scores(expected)
    # Per-pixel definitions for one class and overall accuracy.
    valid = gt != 255
    inter = ((gt == 4) & (pred == 4) & valid).sum()
    union = (((gt == 4) | (pred == 4)) & valid).sum()
    assert scores['IoU.4'] == pytest.approx(100 * inter / union, abs=1e-12)
    assert scores['aAcc'] == pytest.approx(100 * (gt == pred)[valid].mean(), abs=1e-12)


def test_confusion_matrix_rejects_out_of_range_labels():
    with pytest.raises(ValueError, match=r'prediction values must be in \[0, 3\).*found 0\.\.7'):
        confusion_matrix(torch.tensor([0, 7]), torch.tensor([0, 1]), 3)
    with pytest.raises(ValueError, match='ground truth values'):
        confusion_matrix(torch.tensor([0, 1]), torch.tensor([0, 9]), 3)
    with pytest.raises(ValueError, match='differ in shape'):
        confusion_matrix(torch.tensor([0, 1]), torch.tensor([0]), 3)


def test_seg_metric_streams_over_images_and_reads_pixeldata():
    metric = METRICS.build(dict(type='SegMetric'))
    assert isinstance(metric, SegMetric)
    metric.dataset_meta = {'classes': ('road', 'car', 'sky')}
    metric.process({}, [
        BaseDataElement(pred_sem_seg=PixelData(data=PRED[:1].reshape(1, 1, 3)),
                        gt_sem_seg=PixelData(data=GT[:1].reshape(1, 1, 3))),
        {'pred_sem_seg': PRED[1:].numpy(), 'gt_sem_seg': GT[1:]},
    ])
    result = metric.evaluate(2)
    assert result['seg/mIoU'] == pytest.approx(100 / 3)  # same pixels as the hand case
    assert result['seg/aAcc'] == pytest.approx(60.0)
    assert result['seg/IoU.car'] == pytest.approx(50.0)
    assert 'seg/Acc.sky' in result


def test_seg_metric_needs_classes():
    metric = SegMetric()
    with pytest.raises(ValueError, match='give num_classes or class_names'):
        metric.process({}, [{'pred_sem_seg': PRED, 'gt_sem_seg': GT}])
    metric = SegMetric(num_classes=3, ignore_index=1)
    metric.process({}, [{'pred_sem_seg': PRED, 'gt_sem_seg': GT.clamp(max=2)}])
    scores = metric.compute_metrics(metric.results)
    # With 1 ignored (and 255 clamped to 2): pixels gt 0,0,2,2 -> pred 0,1,1,0.
    assert scores['aAcc'] == pytest.approx(25.0)
