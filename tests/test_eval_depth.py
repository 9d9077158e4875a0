"""Depth metrics on hand-computed arrays and against Eigen et al. (2014)'s definitions."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from mmengine.structures import BaseDataElement, PixelData

from perception.evaluation.depth import (
    DEPTH_METRIC_NAMES,
    DepthMetric,
    aggregate_depth_counts,
    depth_counts,
    depth_metrics,
)
from perception.registry import METRICS


def _t(values):
    return torch.tensor(values, dtype=torch.float64)


def _eigen_reference(gt: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """The definitions of Eigen, Puhrsch & Fergus 2014 (sec. 4) and log10, in float64 NumPy.

    ``gt`` = y*, ``pred`` = y, over the pixels given (already masked)."""
    gt, pred = np.asarray(gt, np.float64), np.asarray(pred, np.float64)
    delta = np.maximum(pred / gt, gt / pred)
    return {'abs_rel': np.mean(np.abs(pred - gt) / gt),
            'sq_rel': np.mean((pred - gt) ** 2 / gt),
            'rmse': np.sqrt(np.mean((pred - gt) ** 2)),
            'rmse_log': np.sqrt(np.mean((np.log(pred) - np.log(gt)) ** 2)),
            'log10': np.mean(np.abs(np.log10(pred) - np.log10(gt))),
            'a1': np.mean(delta < 1.25), 'a2': np.mean(delta < 1.25 ** 2),
            'a3': np.mean(delta < 1.25 ** 3)}


def test_hand_computed_metrics():
    # gt 1, 2, 4, 3 against a constant prediction 2: errors -1, 0, 2, 1 (d - p); ratios 2, 1, 2,
    # 1.5 (1.25 ** 2 = 1.5625 > 1.5, 1.25 ** 3 = 1.953125 < 2)
    gt = _t([[1.0, 2.0], [4.0, 3.0]])
    pred = torch.full_like(gt, 2.0)
    m = {k: float(v) for k, v in depth_metrics(pred, gt).items()}
    expected = {
        'abs_rel': (1 / 1 + 0 / 2 + 2 / 4 + 1 / 3) / 4,        # 11 / 24 = 0.458333...
        'sq_rel': (1 / 1 + 0 / 2 + 4 / 4 + 1 / 3) / 4,         # 7 / 12 = 0.583333...
        'rmse': math.sqrt((1 + 0 + 4 + 1) / 4),                # sqrt(1.5) = 1.2247449
        'rmse_log': math.sqrt((2 * math.log(2) ** 2 + math.log(1.5) ** 2) / 4),  # 0.5304027
        'log10': (2 * math.log10(2) + math.log10(1.5)) / 4,    # 0.1945378
        'a1': 1 / 4, 'a2': 2 / 4, 'a3': 2 / 4}
    for name, value in expected.items():
        assert m[name] == pytest.approx(value, rel=1e-12), name
    # the same numbers written out
    assert m['abs_rel'] == pytest.approx(11 / 24) and m['sq_rel'] == pytest.approx(7 / 12)
    assert m['rmse'] == pytest.approx(1.2247449, abs=1e-7)
    assert m['rmse_log'] == pytest.approx(0.5304027, abs=1e-7)
    assert m['log10'] == pytest.approx(0.1945378, abs=1e-7)
    # and Eigen's definitions written independently
    ref = _eigen_reference(gt.numpy().ravel(), pred.numpy().ravel())
    for name in DEPTH_METRIC_NAMES:
        assert m[name] == pytest.approx(ref[name], rel=1e-12), name


def test_delta_thresholds_are_strict():
    # ratio exactly 1.25 (5 / 4) is not < 1.25; exactly 1.5625 (25 / 16) is not < 1.25 ** 2
    m = depth_metrics(_t([[4.0, 16.0]]), _t([[5.0, 25.0]]))
    assert float(m['a1']) == 0.0
    assert float(m['a2']) == pytest.approx(0.5)
    assert float(m['a3']) == pytest.approx(1.0)


def test_random_maps_match_eigen_definitions_with_masks_and_range():
    rng = np.random.default_rng(0)
    gt = rng.uniform(0.2, 12.0, size=(3, 17, 23))
    pred = gt * np.exp(rng.normal(0, 0.3, size=gt.shape))
    gt[0, :3] = 0.0               # no measurement
    gt[1, 4, :5] = np.inf         # corrupt / unknown
    gt[2, 5, 5] = np.nan
    valid = rng.random(gt.shape) > 0.1
    counts = depth_counts(_t(pred), _t(gt), torch.from_numpy(valid), min_depth=0.5, max_depth=10)
    per_image = depth_metrics(_t(pred), _t(gt), torch.from_numpy(valid), 0.5, 10)
    for b in range(3):
        with np.errstate(invalid='ignore'):
            mask = valid[b] & np.isfinite(gt[b]) & (gt[b] > 0.5) & (gt[b] < 10)
        assert counts[b, 0] == mask.sum()
        ref = _eigen_reference(gt[b][mask], pred[b][mask])
        for name in DEPTH_METRIC_NAMES:
            assert float(per_image[name][b]) == pytest.approx(ref[name], rel=1e-10), name
    # clip_pred: predictions clamped to [0.5, 10] first (Eigen-split protocol)
    clipped = depth_metrics(_t(pred), _t(gt), torch.from_numpy(valid), 0.5, 10, clip_pred=True)
    with np.errstate(invalid='ignore'):
        mask = valid[1] & np.isfinite(gt[1]) & (gt[1] > 0.5) & (gt[1] < 10)
    ref = _eigen_reference(gt[1][mask], np.clip(pred[1][mask], 0.5, 10))
    assert float(clipped['rmse'][1]) == pytest.approx(ref['rmse'], rel=1e-10)
    assert float(clipped['rmse'][1]) != pytest.approx(float(per_image['rmse'][1]), rel=1e-3)


def test_range_bounds_are_strict_and_clipping_by_hand():
    gt = _t([[0.5, 1.0, 10.0, 8.0]])
    pred = _t([[3.0, 2.0, 3.0, 20.0]])
    counts = depth_counts(pred, gt, min_depth=0.5, max_depth=10)
    assert counts[0] == 2  # 0.5 and 10 are outside (0.5, 10)
    assert float(depth_metrics(pred, gt, None, 0.5, 10)['abs_rel']) == pytest.approx(
        (1.0 + 12 / 8) / 2)
    # clipped: 20 -> 10, |8 - 10| / 8 = 0.25
    assert float(depth_metrics(pred, gt, None, 0.5, 10, clip_pred=True)['abs_rel']) == (
        pytest.approx((1.0 + 0.25) / 2))


def test_bad_predictions_are_infinite_errors_and_empty_images_nan():
    gt = _t([[2.0, 2.0, 2.0]])
    for bad in (0.0, -1.0, float('nan'), float('inf')):
        m = depth_metrics(_t([[2.0, 2.0, bad]]), gt)
        assert math.isinf(float(m['abs_rel'])) and math.isinf(float(m['rmse_log'])), bad
        assert float(m['a3']) == pytest.approx(2 / 3), bad  # the bad pixel fails every δ
    # a bad prediction outside the valid pixels does not matter
    m = depth_metrics(_t([[2.0, 2.0, 0.0]]), gt, torch.tensor([[True, True, False]]))
    assert float(m['abs_rel']) == 0.0 and float(m['a1']) == 1.0
    empty = depth_metrics(_t([[1.0]]), _t([[0.0]]))
    assert all(math.isnan(float(v)) for v in empty.values())
    assert all(math.isnan(v) for v in aggregate_depth_counts(torch.zeros(2, 9)).values())


def _sample(pred, gt, valid=None):
    sample = BaseDataElement()
    sample.pred_depth = PixelData(data=torch.as_tensor(pred, dtype=torch.float32)[None])
    sample.gt_depth = PixelData(data=torch.as_tensor(gt, dtype=torch.float32)[None])
    if valid is not None:
        sample.gt_valid = PixelData(data=torch.as_tensor(valid)[None])
    return sample


def test_depth_metric_averages_per_image():
    metric = METRICS.build(dict(type='DepthMetric', min_depth=0.1, max_depth=10.0))
    assert isinstance(metric, DepthMetric)
    metric.dataset_meta = {}
    # image A: one valid pixel (the other masked out by gt_valid): gt 2, pred 4 -> abs_rel 1,
    # rmse 2, ratio 2 (fails a1, a2; 2 > 1.953 fails a3)
    metric.process({}, [_sample([[4.0, 7.0]], [[2.0, 3.0]], [[True, False]])])
    # image B (a dict sample): four exact pixels
    metric.process({}, [{'pred_depth': torch.full((2, 2), 5.0),
                         'gt_depth': torch.full((1, 2, 2), 5.0)}])
    # image C: no pixel inside (0.1, 10): skipped
    metric.process({}, [_sample([[1.0]], [[20.0]])])
    results = metric.evaluate(3)
    # per-image means; pixel-pooled would give abs_rel 1 / 5 = 0.2 and rmse sqrt(4 / 5) = 0.894
    assert results['depth/abs_rel'] == pytest.approx((1.0 + 0.0) / 2)
    assert results['depth/sq_rel'] == pytest.approx((4.0 / 2 + 0.0) / 2)
    assert results['depth/rmse'] == pytest.approx((2.0 + 0.0) / 2)
    assert results['depth/rmse_log'] == pytest.approx(math.log(2) / 2)
    assert results['depth/log10'] == pytest.approx(math.log10(2) / 2)
    assert results['depth/a1'] == pytest.approx(0.5)
    assert results['depth/a3'] == pytest.approx(0.5)
    assert results['depth/num_images'] == 2


def test_depth_metric_rejects_bad_input():
    metric = DepthMetric()
    with pytest.raises(ValueError, match='differ in shape'):
        metric.process({}, [_sample(torch.ones(4, 5), torch.ones(4, 4))])
    with pytest.raises(KeyError, match='pred_depth'):
        metric.process({}, [{'gt_depth': torch.ones(4, 4)}])
    with pytest.raises(ValueError, match=r'\(H, W\)'):
        metric.process({}, [{'gt_depth': torch.ones(2, 4, 4), 'pred_depth': torch.ones(2, 4, 4)}])
    with pytest.raises(ValueError, match='clip_pred'):
        DepthMetric(clip_pred=True)
