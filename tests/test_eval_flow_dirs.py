"""``tools/eval.py flow``: folders of flow files with known perturbations -> known EPE / Fl-all."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from perception.datasets.flow_io import FLO_MAGIC, write_flo, write_kitti_flow
from perception.engine import DataError
from perception.evaluation.flow import evaluate_flow_dirs
from tests.conftest import run_tool

H, W = 6, 10


def _write_pair(tmp_path):
    """Two ground truths and predictions with hand-known errors.

    ``a`` (.flo, 60 px, gt (10, 0)): 12 pixels off by (3, 4) -> err 5 > 3 and 50 % > 5 %:
    EPE 12 * 5 / 60 = 1.0, Fl 20 %.  ``b`` (KITTI PNG, 30 of 60 px valid, gt (-2.5, 1.25),
    exact in 1/64 steps): predicted (.flo) with v + 2 everywhere -> EPE 2, Fl 0 (2 <= 3 px).
    """
    gt_dir, pred_dir = tmp_path / 'gt', tmp_path / 'pred'
    gt_dir.mkdir()
    pred_dir.mkdir()
    gt_a = np.zeros((H, W, 2), np.float32)
    gt_a[..., 0] = 10
    pred_a = gt_a.copy()
    pred_a[:2, 2:8] += np.array([3.0, 4.0], np.float32)
    write_flo(gt_dir / 'a.flo', gt_a)
    write_flo(pred_dir / 'a.flo', pred_a)
    gt_b = np.broadcast_to(np.array([-2.5, 1.25], np.float32), (H, W, 2)).copy()
    valid_b = np.zeros((H, W), bool)
    valid_b[:3] = True
    write_kitti_flow(gt_dir / 'b.png', gt_b, valid_b)
    pred_b = gt_b + np.array([0.0, 2.0], np.float32)
    pred_b[~valid_b] = 100  # not scored: the ground truth is invalid there
    write_flo(pred_dir / 'b.flo', pred_b)
    return gt_dir, pred_dir


def test_known_epe_and_fl(tmp_path):
    gt_dir, pred_dir = _write_pair(tmp_path)
    results, table = evaluate_flow_dirs(gt_dir, pred_dir)
    assert results['a/EPE'] == pytest.approx(1.0)
    assert results['a/Fl_all'] == pytest.approx(20.0)
    assert results['b/EPE'] == pytest.approx(2.0)
    assert results['b/Fl_all'] == 0.0
    assert results['EPE'] == pytest.approx((60 * 1.0 + 30 * 2.0) / 90)   # pixel-pooled
    assert results['EPE_per_image'] == pytest.approx(1.5)
    assert results['Fl_all'] == pytest.approx(100 * 12 / 90)
    assert results['Fl_all_per_image'] == pytest.approx(10.0)
    assert results['bad_1.0'] == pytest.approx(100 * 42 / 90)
    assert results['bad_3.0'] == pytest.approx(100 * 12 / 90)
    assert results['bad_5.0'] == 0.0  # 5 is not > 5
    assert 'a ' in table and 'pooled' in table and '1.3333' in table


def test_noc_masks_split_matched_and_unmatched(tmp_path):
    gt_dir, pred_dir = _write_pair(tmp_path)
    occ_dir = tmp_path / 'occlusions'
    occ_dir.mkdir()
    occluded = np.zeros((H, W), np.uint8)
    occluded[:2] = 255  # the rows holding a's 12 errors and 8 exact pixels
    cv2.imwrite(str(occ_dir / 'a.png'), occluded)
    cv2.imwrite(str(occ_dir / 'b.png'), np.zeros((H, W), np.uint8))
    results, _ = evaluate_flow_dirs(gt_dir, pred_dir, noc_dir=occ_dir,
                                    noc_format='occlusion_png')
    # matched: a's 40 exact pixels + b's 30 at err 2; unmatched: a's 20 (12 at err 5)
    assert results['EPE_matched'] == pytest.approx(60 / 70)
    assert results['EPE_unmatched'] == pytest.approx(3.0)
    assert results['Fl_unmatched'] == pytest.approx(60.0)
    assert results['EPE'] == pytest.approx(120 / 90)


def test_kitti_noc_and_invalid_prediction_pixels(tmp_path):
    gt_dir, pred_dir = _write_pair(tmp_path)
    # a KITTI PNG prediction for a with 6 pixels flagged invalid: those count as outliers
    pred = np.zeros((H, W, 2), np.float32)
    pred[..., 0] = 10
    valid = np.ones((H, W), bool)
    valid[5, :6] = False
    (pred_dir / 'a.flo').unlink()
    write_kitti_flow(pred_dir / 'a.png', pred, valid)
    noc_dir = tmp_path / 'flow_noc'
    noc_dir.mkdir()
    noc = np.ones((H, W), bool)
    noc[5] = False
    for stem in 'ab':
        write_kitti_flow(noc_dir / f'{stem}.png', np.zeros((H, W, 2)), noc)
    results, _ = evaluate_flow_dirs(gt_dir, pred_dir, noc_dir=noc_dir)
    assert results['a/Fl_all'] == pytest.approx(10.0)
    assert results['a/EPE'] == float('inf')
    assert results['Fl_matched'] == 0.0 and results['EPE_matched'] == pytest.approx(60 / 80)


def test_cli_prints_the_table_and_writes_json(tmp_path):
    gt_dir, pred_dir = _write_pair(tmp_path)
    out = tmp_path / 'metrics.json'
    proc = run_tool('tools/eval.py', 'flow', gt_dir, pred_dir, '--out', out)
    assert proc.returncode == 0, proc.stderr
    assert 'Fl-all' in proc.stdout and f'metrics written to {out}' in proc.stdout
    saved = json.loads(out.read_text())
    assert saved['EPE_per_image'] == pytest.approx(1.5) and saved['a/Fl_all'] == pytest.approx(20)

    (pred_dir / 'b.flo').unlink()
    proc = run_tool('tools/eval.py', 'flow', gt_dir, pred_dir)
    assert proc.returncode == 2
    assert 'prediction for b.png not found' in proc.stderr and 'Traceback' not in proc.stderr


def test_bad_files_name_the_file(tmp_path):
    gt_dir, pred_dir = _write_pair(tmp_path)
    write_flo(pred_dir / 'a.flo', np.zeros((H, W + 1, 2), np.float32))
    with pytest.raises(DataError, match=r'pred/a\.flo: prediction is 6x11 but the ground truth '
                       r'.*gt/a\.flo is 6x10'):
        evaluate_flow_dirs(gt_dir, pred_dir)

    (pred_dir / 'a.flo').write_bytes(b'XXXX' + bytes(8))
    with pytest.raises(DataError, match=r'pred/a\.flo: not a \.flo file: magic number'):
        evaluate_flow_dirs(gt_dir, pred_dir)

    header = np.array([FLO_MAGIC], '<f4').tobytes() + np.array([W, H], '<i4').tobytes()
    (pred_dir / 'a.flo').write_bytes(header + bytes(4 * H * W))  # half the data
    with pytest.raises(DataError, match=r'pred/a\.flo: truncated \.flo'):
        evaluate_flow_dirs(gt_dir, pred_dir)

    nan = np.zeros((H, W, 2), '<f4')
    nan[2, 3, 1] = np.nan
    (pred_dir / 'a.flo').write_bytes(header + nan.tobytes())
    with pytest.raises(DataError, match=r'pred/a\.flo: 1 NaN value\(s\) .*row 2, column 3'):
        evaluate_flow_dirs(gt_dir, pred_dir)

    write_flo(pred_dir / 'a.flo', np.zeros((H, W, 2), np.float32))
    cv2.imwrite(str(gt_dir / 'b.png'), np.zeros((H, W, 3), np.uint8))
    with pytest.raises(DataError, match=r'gt/b\.png: a KITTI flow map must be a 16-bit '
                       r'3-channel PNG .*found 8-bit'):
        evaluate_flow_dirs(gt_dir, pred_dir)

    write_flo(pred_dir / 'b.pfm', np.zeros((H, W, 2), np.float32))
    with pytest.raises(DataError, match=r"two files for 'b' \(b\.flo and b\.pfm\)"):
        evaluate_flow_dirs(gt_dir, pred_dir)


def test_empty_or_missing_folders(tmp_path):
    (tmp_path / 'gt').mkdir()
    with pytest.raises(DataError, match='no flow files'):
        evaluate_flow_dirs(tmp_path / 'gt', tmp_path)
    with pytest.raises(DataError, match='prediction folder not found'):
        write_flo(tmp_path / 'gt' / 'x.flo', np.zeros((2, 2, 2), np.float32))
        evaluate_flow_dirs(tmp_path / 'gt', tmp_path / 'nope')
