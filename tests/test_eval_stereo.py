"""Stereo metrics: EPE, D1 (KITTI 2015), bad-x; pixel-weighted and per-image aggregation."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from mmengine.structures import BaseDataElement, PixelData

from perception.evaluation.stereo import (
    StereoMetric,
    aggregate_counts,
    bad_pixel_rate,
    d1,
    epe,
    stereo_counts,
)
from perception.registry import METRICS

INF = math.inf
# Image A: valid ground truth 10, 100, 50, 20 (0 and inf are "no ground truth").
GT_A = torch.tensor([[10.0, 100.0, 0.0], [50.0, INF, 20.0]])
PRED_A = torch.tensor([[10.5, 104.0, 5.0], [53.5, 7.0, 21.5]])
# errors 0.5, 4, 3.5, 1.5: D1 only for 3.5 (3.5 / 50 = 7 % > 5 %; 4 / 100 = 4 % is not).
# Image B: six valid pixels, one off by 4 px (4 / 10 = 40 %).
GT_B = torch.full((2, 3), 10.0)
PRED_B = GT_B.clone()
PRED_B[1, 1] = 14.0


def test_hand_computed_per_image_values():
    gt, pred = torch.stack([GT_A, GT_B]), torch.stack([PRED_A, PRED_B])
    assert epe(pred, gt).tolist() == pytest.approx([9.5 / 4, 4 / 6], abs=1e-12)
    assert d1(pred, gt).tolist() == pytest.approx([25.0, 100 / 6], abs=1e-12)
    assert bad_pixel_rate(pred, gt, 0.5).tolist() == pytest.approx([75.0, 100 / 6], abs=1e-12)
    assert bad_pixel_rate(pred, gt, 2.0).tolist() == pytest.approx([50.0, 100 / 6], abs=1e-12)
    assert bad_pixel_rate(pred, gt, 4.0).tolist() == pytest.approx([0.0, 0.0], abs=1e-12)
    # A single (H, W) map gives a scalar; a mask and max_disp restrict the pixels.
    assert epe(PRED_A, GT_A).item() == pytest.approx(2.375)
    mask = torch.tensor([[True, True, True], [False, True, True]])
    assert epe(PRED_A, GT_A, valid=mask).item() == pytest.approx(6 / 3)
    assert epe(PRED_A, GT_A, max_disp=60).item() == pytest.approx(5.5 / 3)


def test_d1_needs_both_thresholds():
    gt = torch.tensor([[40.0, 80.0, 80.0, 10.0]])
    pred = gt + torch.tensor([[3.0, 4.0, 4.01, 2.9]])
    # 3 px is not > 3; 4 / 80 = 5 % is not > 5 %; 4.01 px at 80 is; 2.9 px at 10 is not.
    assert d1(pred, gt).item() == pytest.approx(25.0)
    assert bad_pixel_rate(pred, gt, 3.0).item() == pytest.approx(50.0)


def test_counts_match_a_brute_force_reference():
    rng = np.random.default_rng(0)
    gt = rng.uniform(1, 120, (3, 17, 23))
    gt[rng.random(gt.shape) < 0.3] = 0  # sparse like KITTI
    pred = gt + rng.normal(0, 4, gt.shape)
    counts = stereo_counts(torch.from_numpy(pred), torch.from_numpy(gt))
    for b in range(3):
        n = err_sum = n_d1 = 0
        n_bad = [0, 0, 0, 0]
        for i in range(17):
            for j in range(23):
                if gt[b, i, j] <= 0:
                    continue
                e = abs(pred[b, i, j] - gt[b, i, j])
                n += 1
                err_sum += e
                n_d1 += e > 3 and e / gt[b, i, j] > 0.05
                n_bad = [c + (e > t) for c, t in zip(n_bad, (0.5, 1, 2, 3))]
        assert counts[b].tolist() == pytest.approx([n, err_sum, n_d1, *n_bad], abs=1e-9)


def test_non_finite_predictions_are_outliers_not_ignored():
    pred = PRED_B.clone()
    pred[0, 0] = math.nan
    assert bad_pixel_rate(pred, GT_B, 3.0).item() == pytest.approx(200 / 6)
    assert d1(pred, GT_B).item() == pytest.approx(200 / 6)
    assert epe(pred, GT_B).item() == math.inf


def _samples():
    noc = torch.tensor([[True, False, True], [True, True, True]])
    return [
        {'pred_disp': PRED_A, 'gt_disp': GT_A, 'noc_mask': noc},
        # mmengine-style object with PixelData fields (1, H, W)
        BaseDataElement(pred_disp=PixelData(data=PRED_B[None]), gt_disp=PixelData(data=GT_B[None]),
                        noc_mask=torch.ones(2, 3, dtype=torch.bool)),
        # no valid pixel at all: counts 0 pixels, skipped by the per-image mean
        {'pred_disp': PRED_B, 'gt_disp': torch.zeros(2, 3), 'noc_mask': torch.ones(2, 3).bool()},
    ]


def test_metric_reports_pixel_weighted_and_per_image_values():
    metric = METRICS.build(dict(type='StereoMetric'))
    assert isinstance(metric, StereoMetric)
    metric.process({}, _samples())
    result = metric.evaluate(3)
    # Pooled over 4 + 6 pixels: errors 9.5 + 4; D1 outliers 1 + 1; > 3 px: 2 + 1.
    assert result['stereo/EPE'] == pytest.approx(13.5 / 10)
    assert result['stereo/D1_all'] == pytest.approx(20.0)
    assert result['stereo/bad_3.0'] == pytest.approx(30.0)
    assert result['stereo/bad_0.5'] == pytest.approx(40.0)
    # Mean of the two images with valid pixels.
    assert result['stereo/EPE_per_image'] == pytest.approx((2.375 + 4 / 6) / 2)
    assert result['stereo/D1_all_per_image'] == pytest.approx((25 + 100 / 6) / 2)
    assert result['stereo/bad_3.0_per_image'] == pytest.approx((50 + 100 / 6) / 2)
    # Non-occluded: image A loses the 100 px pixel (error 4): errors 0.5, 3.5, 1.5.
    assert result['stereo/EPE_noc'] == pytest.approx((5.5 + 4) / 9)
    assert result['stereo/D1_noc'] == pytest.approx(200 / 9)
    assert result['stereo/EPE_noc_per_image'] == pytest.approx((5.5 / 3 + 4 / 6) / 2)
    assert result['stereo/bad_1.0_noc'] == pytest.approx(300 / 9)
    assert len(result) == 2 * 2 * 6  # (all, noc) x (pooled, per-image) x (EPE, D1, 4 bad-x)


def test_metric_options_and_errors():
    metric = StereoMetric(thresholds=(1.0,), max_disp=60)
    metric.process({}, [{'pred_disp': PRED_A, 'gt_disp': GT_A,
                         'gt_valid': torch.ones(2, 3, dtype=torch.bool)}])
    result = metric.compute_metrics(metric.results)
    assert set(result) == {'EPE', 'D1_all', 'bad_1.0', 'EPE_per_image', 'D1_all_per_image',
                           'bad_1.0_per_image'}
    assert result['EPE'] == pytest.approx(5.5 / 3) and result['bad_1.0'] == pytest.approx(200 / 3)
    with pytest.raises(ValueError, match=r'prediction \(2, 2\) and ground truth \(2, 3\)'):
        metric.process({}, [{'pred_disp': PRED_A[:, :2], 'gt_disp': GT_A}])
    with pytest.raises(KeyError, match='gt_disp'):
        metric.process({}, [{'pred_disp': PRED_A}])
    assert math.isnan(aggregate_counts(torch.zeros(1, 7))['EPE'])
