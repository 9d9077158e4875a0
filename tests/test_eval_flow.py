"""Flow metrics on hand-computed arrays: EPE, bad-x, KITTI Fl, Sintel matched / unmatched."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from mmengine.structures import BaseDataElement, PixelData

from perception.evaluation.flow import (
    FlowMetric,
    aggregate_flow_counts,
    endpoint_error,
    flow_counts,
    flow_outlier_rate,
)
from perception.registry import METRICS


def _flow(u, v):
    return torch.tensor(np.stack([u, v]), dtype=torch.float32)


def test_endpoint_error_and_kitti_fl_by_hand():
    # gt magnitudes 100, 10, 0, 50; errors (3-4-5 triangles) 4, 5, 5, 2.5
    gt = _flow([[100.0, 10.0, 0.0, 50.0]], [[0.0, 0.0, 0.0, 0.0]])
    pred = gt.clone()
    pred[0, 0, 0] += 4.0        # err 4 > 3, 4 / 100 = 4 % <= 5 %: not an Fl outlier
    pred[:, 0, 1] += torch.tensor([3.0, 4.0])   # err 5 > 3, 50 %: outlier
    pred[:, 0, 2] += torch.tensor([-3.0, 4.0])  # err 5, |gt| = 0 -> relative inf: outlier
    pred[1, 0, 3] += 2.5        # err 2.5 <= 3: not an outlier
    np.testing.assert_allclose(endpoint_error(pred, gt).numpy(), [[4.0, 5.0, 5.0, 2.5]],
                               atol=1e-6)
    counts = flow_counts(pred, gt, thresholds=(1.0, 3.0, 5.0))
    # pixels, EPE sum, Fl outliers, >1, >3, >5 (5 is not > 5)
    np.testing.assert_allclose(counts.numpy(), [4, 16.5, 2, 4, 3, 0], atol=1e-5)
    assert float(flow_outlier_rate(pred, gt)) == pytest.approx(50.0)
    assert float(flow_outlier_rate(pred, gt, threshold=3.0)) == pytest.approx(75.0)


def test_invalid_pixels_and_non_finite_predictions():
    gt = _flow([[1.0, 2.0, float('inf')]], [[0.0, 0.0, 0.0]])
    pred = _flow([[1.0, float('nan'), 0.0]], [[0.0, 0.0, 0.0]])
    counts = flow_counts(pred, gt, valid=torch.tensor([[True, True, True]]))
    assert counts[0] == 2  # the inf ground truth is not valid
    assert math.isinf(float(counts[1]))  # a NaN prediction is an infinite error
    assert counts[3] == 1
    assert flow_counts(pred, gt, valid=torch.tensor([[True, False, True]]))[1] == 0


def test_pooled_and_per_image_aggregation_differ_as_defined():
    # image A: 1 valid pixel with EPE 10; image B: 3 valid pixels with EPE 0.
    counts = torch.tensor([[1.0, 10.0, 1.0, 1.0, 1.0, 1.0],
                           [3.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    metrics = aggregate_flow_counts(counts)
    assert metrics['EPE'] == pytest.approx(2.5)            # 10 / 4 pixels
    assert metrics['EPE_per_image'] == pytest.approx(5.0)  # (10 + 0) / 2 images
    assert metrics['Fl'] == pytest.approx(25.0)
    assert metrics['Fl_per_image'] == pytest.approx(50.0)
    assert metrics['bad_3.0'] == pytest.approx(25.0)


def _sample(pred, gt, valid=None, noc=None):
    sample = BaseDataElement()
    sample.pred_flow = pred
    sample.gt_flow = PixelData(data=gt)
    if valid is not None:
        sample.gt_valid = PixelData(data=torch.as_tensor(valid)[None])
    if noc is not None:
        sample.noc_mask = PixelData(data=torch.as_tensor(noc)[None])
    return sample


def test_flow_metric_matched_unmatched_and_keys():
    gt = torch.zeros(2, 2, 2)
    gt[0] = 10.0  # u = 10 everywhere: |gt| = 10
    pred = gt.clone()
    pred[0, 0, 0] += 1.0   # matched pixel, err 1
    pred[0, 1, 1] += 6.0   # unmatched pixel, err 6 (> 3 and 60 %: Fl outlier)
    pred[1, 0, 1] += 2.0   # matched, err 2; pixel (1, 0) matched, err 0 but invalid
    valid = torch.tensor([[True, True], [False, True]])
    noc = torch.tensor([[True, True], [True, False]])
    metric = METRICS.build(dict(type='FlowMetric'))
    assert isinstance(metric, FlowMetric)
    metric.dataset_meta = {}
    metric.process({}, [_sample(pred, gt, valid, noc)])
    # second image: no noc mask, all valid, all errors 0.5
    metric.process({}, [_sample(gt[:, :1] + 0.5 * torch.tensor([1.0, 0.0])[:, None, None],
                                gt[:, :1])])
    results = metric.evaluate(2)
    # all: image 1 errors (1, 2, 6) over 3 valid pixels, image 2 (0.5, 0.5): pooled 10 / 5
    assert results['flow/EPE'] == pytest.approx(2.0)
    assert results['flow/EPE_per_image'] == pytest.approx((3.0 + 0.5) / 2)
    assert results['flow/Fl_all'] == pytest.approx(20.0)
    assert results['flow/bad_1.0'] == pytest.approx(40.0)  # errors 2 and 6
    assert results['flow/EPE_matched'] == pytest.approx(1.5)
    assert results['flow/EPE_unmatched'] == pytest.approx(6.0)
    assert results['flow/Fl_unmatched'] == pytest.approx(100.0)
    assert results['flow/Fl_matched'] == pytest.approx(0.0)
    assert 'flow/EPE_matched_per_image' in results


def test_flow_metric_rejects_bad_shapes():
    metric = FlowMetric()
    with pytest.raises(ValueError, match=r'\(2, H, W\)'):
        metric.process({}, [_sample(torch.zeros(3, 4, 4), torch.zeros(2, 4, 4))])
    with pytest.raises(ValueError, match='differ in shape'):
        metric.process({}, [_sample(torch.zeros(2, 4, 5), torch.zeros(2, 4, 4))])
    with pytest.raises(KeyError, match='pred_flow'):
        metric.process({}, [{'gt_flow': torch.zeros(2, 4, 4)}])
