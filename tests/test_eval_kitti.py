"""KITTI object detection evaluation: the reference's published values, a brute-force port of its
rules on random scenes, hand-checkable cases, bad input, the CLI, and the val-sized benchmark."""
from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest

from perception.datasets.kitti_format import read_label_file, write_label_file
from perception.engine.errors import DataError
from perception.evaluation.kitti import (
    KittiMetric,
    annos_from_camera_boxes,
    ap11,
    ap40,
    eval_class,
    evaluate_label_dirs,
    get_thresholds,
    kitti_eval,
    min_overlaps_for,
)

from .conftest import run_tool

TYPES = ('2D', 'BEV', '3D', 'AOS')
DIFFS = ('easy', 'moderate', 'hard')


# ------------------------------------------------------------------------------------------
# mmdetection3d's regression sample (tests/test_evaluation/test_functional/test_kitti_eval.py)
# ------------------------------------------------------------------------------------------

def _mmdet3d_sample(with_3d: bool = True) -> tuple[dict, dict]:
    bbox = np.array([[674.9179, 165.48549, 693.23694, 193.42134],
                     [676.21954, 165.70988, 691.63745, 193.83748],
                     [389.4093, 182.48041, 421.49072, 202.13422],
                     [232.0577, 186.16724, 301.94623, 217.4024],
                     [758.6537, 172.98509, 816.32434, 212.76743],
                     [532.37, 176.35, 542.68, 185.27],
                     [559.62, 175.83, 575.4, 183.15]])
    gt = {'name': np.array(['Pedestrian', 'Cyclist', 'Car', 'Car', 'Car', 'DontCare', 'DontCare']),
          'truncated': np.array([0., 0., 0., -1., -1., -1., -1.]),
          'occluded': np.array([0, 0, 3, -1, -1, -1, -1]),
          'alpha': np.array([-1.57, 1.85, -1.65, -10., -10., -10., -10.]),
          'bbox': bbox}
    dt = {'name': np.array(['Pedestrian', 'Cyclist', 'Car', 'Car', 'Car']),
          'alpha': np.array([1.0744612, 1.2775835, 1.82563, 2.1145396, -1.7676563]),
          'bbox': bbox[:5].copy(),
          'score': np.array([0.18151495, 0.57920843, 0.27795696, 0.23100418, 0.21541929])}
    if with_3d:
        gt.update(
            dimensions=np.array([[12.34, 2.85, 2.63], [3.69, 1.67, 1.87], [2.02, 1.86, 0.6]]
                                + [[-1., -1., -1.]] * 4),
            location=np.array([[0.47, 1.49, 69.44], [-16.53, 2.39, 58.49], [4.59, 1.32, 45.84]]
                              + [[-1000., -1000., -1000.]] * 4),
            rotation_y=np.array([-1.56, 1.57, -1.55, -10., -10., -10., -10.]))
        dt.update(
            dimensions=np.array([[1.4441837, 1.7450154, 0.53160036],
                                 [1.6501029, 1.7540325, 0.5162356],
                                 [3.9313498, 1.4899347, 1.5655756],
                                 [4.0111866, 1.5350999, 1.585221],
                                 [3.7337692, 1.5117968, 1.5515774]]),
            location=np.array([[4.6671643, 1.285098, 45.836895], [4.658241, 1.3088846, 45.85148],
                               [-16.598526, 2.298814, 58.618088],
                               [-18.629122, 2.2990575, 39.305355],
                               [7.0964046, 1.5178275, 29.32426]]),
            rotation_y=np.array([1.174933, 1.3778262, 1.550529, 1.6742425, -1.5330327]))
    return gt, dt


# mmdetection3d's test order: classes [Pedestrian, Cyclist, Car]; overlaps [strict, loose] x
# [bbox, bev, 3d] x class.
MMDET3D_CLASSES = ['Pedestrian', 'Cyclist', 'Car']
MMDET3D_OVERLAPS = np.array([[[0.5, 0.5, 0.7], [0.5, 0.5, 0.7], [0.5, 0.5, 0.7]],
                             [[0.5, 0.5, 0.7], [0.25, 0.25, 0.5], [0.25, 0.25, 0.5]]])


def _per_class(values: list[list[float]]) -> np.ndarray:
    """(class, difficulty) -> (class, difficulty, strict/loose): both overlap sets agree here."""
    return np.repeat(np.array(values)[..., None], 2, axis=-1)


def test_reproduces_mmdet3d_do_eval():
    gt, dt = _mmdet3d_sample()
    out = {}
    for m, metric in enumerate(('bbox', 'bev', '3d')):
        curves = eval_class([gt], [dt], MMDET3D_CLASSES, metric, MMDET3D_OVERLAPS[:, m, :],
                            compute_aos=metric == 'bbox')
        out[metric] = (ap11(curves['precision']), ap40(curves['precision']))
        if metric == 'bbox':
            out['aos'] = (ap11(curves['orientation']), ap40(curves['orientation']))
    nine = 9.09090909
    np.testing.assert_allclose(out['bbox'][0], _per_class([[0, nine, nine]] * 3), atol=1e-6)
    np.testing.assert_allclose(out['bbox'][1], _per_class([[0, 0, 0], [0, 0, 0], [0, 2.5, 2.5]]),
                               atol=1e-6)
    for metric in ('bev', '3d'):
        np.testing.assert_array_equal(out[metric][0], 0)
        np.testing.assert_array_equal(out[metric][1], 0)
    np.testing.assert_allclose(out['aos'][0], _per_class(
        [[0, 0.55020816, 0.55020816], [0, 8.36633862, 8.36633862], [0, 8.63476893, 8.63476893]]),
        atol=1e-6)
    np.testing.assert_allclose(out['aos'][1], _per_class(
        [[0, 0, 0], [0, 0, 0], [0, 1.58140643, 1.58140643]]), atol=1e-6)


def test_reproduces_mmdet3d_eval_class_sums():
    gt, dt = _mmdet3d_sample(with_3d=False)
    curves = eval_class([gt], [dt], MMDET3D_CLASSES, 'bbox', MMDET3D_OVERLAPS[:, 0, :],
                        compute_aos=True)
    assert curves['precision'].shape == (3, 3, 2, 41)
    assert math.isclose(curves['recall'].sum(), 16)
    assert math.isclose(curves['precision'].sum(), 16)
    assert math.isclose(curves['orientation'].sum(), 10.252829201850309, rel_tol=1e-9)


def test_reproduces_mmdet3d_kitti_eval_keys_and_table():
    gt, dt = _mmdet3d_sample()
    metrics, table = kitti_eval([gt], [dt], MMDET3D_CLASSES)
    assert math.isclose(metrics['Overall_2D_AP11_moderate'], 9.090909090909092)
    assert math.isclose(metrics['Overall_2D_AP11_hard'], 9.090909090909092)
    assert math.isclose(metrics['Overall_2D_AP40_moderate'], 0.8333333333333334)
    assert math.isclose(metrics['Overall_2D_AP40_hard'], 0.8333333333333334)
    expected_keys = {f'{c}_{t}_{ap}_{d}_{s}' for c in MMDET3D_CLASSES for t in TYPES
                     for ap in ('AP11', 'AP40') for d in DIFFS for s in ('strict', 'loose')}
    expected_keys |= {f'Overall_{t}_{ap}_{d}' for t in TYPES for ap in ('AP11', 'AP40')
                      for d in DIFFS}
    assert set(metrics) == expected_keys
    assert metrics['Car_AOS_AP40_moderate_strict'] == pytest.approx(1.58140643)
    assert 'Car AP40@0.70, 0.70, 0.70:\nbbox AP40:0.0000, 2.5000, 2.5000\n' in table
    assert 'aos  AP40:0.00, 1.58, 1.58' in table
    assert 'Overall AP11@easy, moderate, hard:\nbbox AP11:0.0000, 9.0909, 9.0909' in table
    assert 'Car has no easy ground-truth objects' in table


def _read_calib(path) -> dict[str, np.ndarray]:
    calib = {}
    for line in path.read_text().splitlines():
        if ':' in line:
            key, values = line.split(':', 1)
            calib[key] = np.array(values.split(), dtype=np.float64)
    return calib


def _corners(boxes: np.ndarray) -> np.ndarray:
    """(N, 8, 3) corners of camera boxes (N, 7) [x, y, z, l, h, w, ry] (bottom centre, y down)."""
    x, y, z, length, height, width, ry = (boxes[:, i:i + 1] for i in range(7))
    u = np.array([1, 1, -1, -1, 1, 1, -1, -1]) * length / 2
    v = np.array([0, 0, 0, 0, -1, -1, -1, -1]) * height
    w = np.array([1, -1, -1, 1, 1, -1, -1, 1]) * width / 2
    c, s = np.cos(ry), np.sin(ry)  # heading (cos ry, 0, -sin ry)
    return np.stack([x + c * u + s * w, y + v, z - s * u + c * w], axis=-1)


def test_reproduces_mmdet3d_kitti_metric(shared_data, tmp_path):
    """mmdetection3d's test_kitti_metric: one LiDAR box on frame 000000 -> 3.0303 everywhere."""
    calib = _read_calib(shared_data / 'kitti_mini/training/calib/000000.txt')
    r0 = np.eye(4)
    r0[:3, :3] = calib['R0_rect'].reshape(3, 3)
    velo2cam = np.eye(4)
    velo2cam[:3] = calib['Tr_velo_to_cam'].reshape(3, 4)
    lidar = np.array([8.7314, -1.8559, -1.5997, 0.4800, 1.2000, 1.8900, 0.0100])
    centre = (r0 @ velo2cam @ np.r_[lidar[:3], 1.0])[:3]
    camera = np.r_[centre, lidar[3], lidar[5], lidar[4], -lidar[6] - np.pi / 2]
    pixels = np.c_[_corners(camera[None])[0], np.ones(8)] @ calib['P2'].reshape(3, 4).T
    uv = pixels[:, :2] / pixels[:, 2:]
    bbox = np.r_[uv.min(0), uv.max(0)].clip(0, [1241, 374, 1241, 374])
    pred = annos_from_camera_boxes(camera[None], bbox[None], [0.9], ['Pedestrian'])
    assert pred['alpha'][0] == pytest.approx(camera[6] - np.arctan2(camera[0], camera[2]))

    metric = KittiMetric(gt_label_dir=str(shared_data / 'kitti_mini/training/label_2'),
                         pred_out_dir=str(tmp_path / 'submission'))
    metric.dataset_meta = {'classes': ['Pedestrian', 'Cyclist', 'Car']}
    metric.process({}, [{'pred_annos': pred, 'sample_idx': 0}])
    results = metric.evaluate(1)
    for t in ('3D', 'BEV', '2D'):
        for d in DIFFS:
            assert results[f'kitti/Overall_{t}_AP11_{d}'] == pytest.approx(3.0303030303030307)
    written = read_label_file(tmp_path / 'submission/000000.txt', with_score=True)
    np.testing.assert_allclose(written['location'][0], camera[:3], atol=1e-4)


# ------------------------------------------------------------------------------------------
# A brute-force port of the rules (loops over frames, objects and thresholds, shapely for BEV)
# ------------------------------------------------------------------------------------------

def _loop_thresholds(scores, num_gt: int) -> list[float]:
    scores = sorted(scores, reverse=True)
    kept, recall = [], 0.0
    for i, score in enumerate(scores):
        left = (i + 1) / num_gt
        right = (i + 2) / num_gt if i < len(scores) - 1 else left
        if i < len(scores) - 1 and (right - recall) < (recall - left):
            continue
        kept.append(score)
        recall += 1 / 40.0
    return kept


def _footprint(loc, dims, ry):
    from shapely.geometry import Polygon
    heading = np.array([np.cos(ry), -np.sin(ry)])  # in the (x, z) plane
    side = np.array([np.sin(ry), np.cos(ry)])
    centre = np.array([loc[0], loc[2]])
    corners = [centre + a * dims[0] / 2 * heading + b * dims[2] / 2 * side
               for a, b in ((1, 1), (1, -1), (-1, -1), (-1, 1))]
    return Polygon(corners)


def _loop_overlaps(gt: dict, dt: dict, metric: str) -> np.ndarray:
    out = np.zeros((len(dt['name']), len(gt['name'])))
    for i in range(len(dt['name'])):
        for j in range(len(gt['name'])):
            if metric == 'bbox':
                a, b = dt['bbox'][i], gt['bbox'][j]
                iw = min(a[2], b[2]) - max(a[0], b[0])
                ih = min(a[3], b[3]) - max(a[1], b[1])
                if iw > 0 and ih > 0:
                    union = ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])
                             - iw * ih)
                    out[i, j] = iw * ih / union
                continue
            da, db = dt['dimensions'][i], gt['dimensions'][j]
            if (da <= 0).any() or (db <= 0).any():
                continue
            la, lb = dt['location'][i], gt['location'][j]
            inter = _footprint(la, da, dt['rotation_y'][i]).intersection(
                _footprint(lb, db, gt['rotation_y'][j])).area
            if metric == 'bev':
                out[i, j] = inter / (da[0] * da[2] + db[0] * db[2] - inter)
            else:
                height = min(la[1], lb[1]) - max(la[1] - da[1], lb[1] - db[1])
                if height > 0 and inter > 0:
                    inter *= height
                    out[i, j] = inter / (np.prod(da) + np.prod(db) - inter)
    return out


def _loop_flags(gt: dict, dt: dict, cls: str, difficulty: int):
    min_height, max_occ, max_trunc = (40, 25, 25)[difficulty], (0, 1, 2)[difficulty], \
        (0.15, 0.3, 0.5)[difficulty]
    neighbour = {'car': 'van', 'pedestrian': 'person_sitting'}.get(cls.lower())
    ignored_gt = []
    for j, name in enumerate(gt['name']):
        height = gt['bbox'][j][3] - gt['bbox'][j][1]
        hard = (gt['occluded'][j] > max_occ or gt['truncated'][j] > max_trunc
                or height <= min_height)
        if name.lower() == cls.lower():
            ignored_gt.append(1 if hard else 0)
        elif name.lower() == neighbour:
            ignored_gt.append(1)
        else:
            ignored_gt.append(-1)
    ignored_dt = []
    for i, name in enumerate(dt['name']):
        if abs(dt['bbox'][i][3] - dt['bbox'][i][1]) < min_height:
            ignored_dt.append(1)
        else:
            ignored_dt.append(0 if name.lower() == cls.lower() else -1)
    return ignored_gt, ignored_dt


def _loop_match(ov, ignored_gt, ignored_dt, scores, min_overlap, threshold, by_score):
    """One frame: per GT in order, the chosen detection (or None); marks assignments."""
    taken = [False] * len(ignored_dt)
    chosen = []
    for j, ig in enumerate(ignored_gt):
        if ig == -1:
            continue
        usable = [i for i in range(len(ignored_dt)) if ignored_dt[i] != -1 and not taken[i]
                  and scores[i] >= threshold and ov[i, j] > min_overlap]
        pick = None
        if by_score:
            for i in usable:
                if pick is None or scores[i] > scores[pick]:
                    pick = i
        else:
            for i in usable:
                if ignored_dt[i] == 0 and (pick is None or ov[i, j] > ov[pick, j]):
                    pick = i
            if pick is None:
                pick = next((i for i in usable if ignored_dt[i] == 1), None)
        if pick is not None:
            taken[pick] = True
        chosen.append((j, pick))
    return chosen, taken


def _loop_curves(gts, dts, cls, difficulty, metric, min_overlap, with_aos):
    frames = []
    for gt, dt in zip(gts, dts):
        ig, idt = _loop_flags(gt, dt, cls, difficulty)
        dontcare = np.zeros(len(idt), dtype=bool)
        if metric == 'bbox':
            for j in np.flatnonzero(gt['name'] == 'DontCare'):
                for i in range(len(idt)):
                    a, b = dt['bbox'][i], gt['bbox'][j]
                    iw = min(a[2], b[2]) - max(a[0], b[0])
                    ih = min(a[3], b[3]) - max(a[1], b[1])
                    if iw > 0 and ih > 0 and iw * ih / ((a[2] - a[0]) * (a[3] - a[1])) > \
                            min_overlap:
                        dontcare[i] = True
        frames.append((_loop_overlaps(gt, dt, metric), ig, idt, dontcare, gt, dt))
    num_valid = sum(ig.count(0) for _, ig, *_ in frames)
    tp_scores = []
    for ov, ig, idt, _, gt, dt in frames:
        chosen, _ = _loop_match(ov, ig, idt, dt['score'], min_overlap, -np.inf, True)
        tp_scores += [dt['score'][i] for j, i in chosen if i is not None and ig[j] == 0
                      and idt[i] == 0]
    thresholds = _loop_thresholds(tp_scores, num_valid) if num_valid else []
    curves = np.zeros((3, 41))
    for t, threshold in enumerate(thresholds):
        tp = fp = fn = 0
        similarity = 0.0
        for ov, ig, idt, dontcare, gt, dt in frames:
            chosen, taken = _loop_match(ov, ig, idt, dt['score'], min_overlap, threshold, False)
            for j, i in chosen:
                if i is None:
                    fn += ig[j] == 0
                elif ig[j] == 0 and idt[i] == 0:
                    tp += 1
                    similarity += (1 + np.cos(gt['alpha'][j] - dt['alpha'][i])) / 2
            fp += sum(1 for i in range(len(idt)) if idt[i] == 0 and not taken[i]
                      and dt['score'][i] >= threshold and not dontcare[i])
        curves[0, t] = tp / (tp + fp) if tp + fp else 0.0
        curves[1, t] = tp / (tp + fn) if tp + fn else 0.0
        curves[2, t] = similarity / (tp + fp) if with_aos and tp + fp else 0.0
    for t in range(41):
        curves[:, t] = curves[:, t:].max(axis=1)
    return curves


def _crowded_scenes(seed: int, num_frames: int) -> tuple[list[dict], list[dict]]:
    """Objects packed together, detections duplicated, tied scores, small boxes, DontCare."""
    rng = np.random.default_rng(seed)
    kinds = np.array(['Car', 'Pedestrian', 'Cyclist', 'Van', 'Person_sitting', 'Truck',
                      'DontCare'])
    gts, dts = [], []
    for _ in range(num_frames):
        n = int(rng.integers(0, 8))
        names = kinds[rng.choice(7, n, p=[0.35, 0.2, 0.15, 0.1, 0.05, 0.05, 0.1])]
        xy = rng.uniform([0, 0], [60, 40], (n, 2))
        bbox = np.c_[xy, xy + rng.uniform([15, 15], [70, 90], (n, 2))]
        dims = rng.uniform([1.0, 1.0, 0.5], [4.5, 2.0, 2.0], (n, 3))
        loc = rng.uniform([-3, 1.0, 10], [3, 2.0, 16], (n, 3))
        ry = rng.uniform(-np.pi, np.pi, n)
        care = names != 'DontCare'
        dims[~care], loc[~care], ry[~care] = -1, -1000, -10
        gts.append({'name': names, 'truncated': rng.choice([0, 0.1, 0.2, 0.4, 0.6], n),
                    'occluded': rng.integers(0, 4, n), 'alpha': rng.uniform(-np.pi, np.pi, n),
                    'bbox': bbox, 'dimensions': dims, 'location': loc, 'rotation_y': ry})
        copies = np.where(care, rng.integers(0, 4, n), 0)
        src = np.repeat(np.arange(n), copies)
        k = len(src)
        dnames = names[src].copy()
        relabel = rng.random(k) < 0.15
        dnames[relabel] = kinds[rng.integers(0, 3, relabel.sum())]
        dbbox = bbox[src] + rng.normal(0, 3, (k, 4))
        small = rng.random(k) < 0.1
        dbbox[small, 3] = dbbox[small, 1] + rng.uniform(10, 39, small.sum())
        ddims = np.abs(dims[src] * rng.normal(1, 0.08, (k, 3))) + 0.05
        dloc = loc[src] + rng.normal(0, 0.25, (k, 3)) * [1, 0.3, 1]
        dry = ry[src] + rng.normal(0, 0.2, k)
        dalpha = gts[-1]['alpha'][src] + rng.normal(0, 0.5, k)
        score = np.round(rng.uniform(0, 1, k), 1)  # ties on purpose
        dup = rng.random(k) < 0.2  # exact copies of a detection: overlap ties
        dt = {'name': np.r_[dnames, dnames[dup]], 'bbox': np.r_[dbbox, dbbox[dup]],
              'dimensions': np.r_[ddims, ddims[dup]], 'location': np.r_[dloc, dloc[dup]],
              'rotation_y': np.r_[dry, dry[dup]], 'alpha': np.r_[dalpha, dalpha[dup]],
              'score': np.r_[score, np.round(rng.uniform(0, 1, dup.sum()), 1)]}
        dts.append(dt)
    return gts, dts


@pytest.mark.parametrize('seed', [0, 1])
def test_matches_a_brute_force_port_of_the_rules(seed):
    pytest.importorskip('shapely')
    gts, dts = _crowded_scenes(seed, num_frames=20)
    classes = ['Car', 'Pedestrian', 'Cyclist']
    overlaps = min_overlaps_for(classes)
    shared = 0
    for m, metric in enumerate(('bbox', 'bev', '3d')):
        curves = eval_class(gts, dts, classes, metric, overlaps[:, m, :],
                            compute_aos=metric == 'bbox')
        for c, cls in enumerate(classes):
            for d in range(3):
                for k in range(2):
                    expected = _loop_curves(gts, dts, cls, d, metric, overlaps[k, m, c],
                                            metric == 'bbox')
                    got = np.stack([curves['precision'][c, d, k], curves['recall'][c, d, k],
                                    curves['orientation'][c, d, k]])
                    np.testing.assert_allclose(got, expected, atol=1e-12,
                                               err_msg=f'{cls} {metric} diff {d} set {k}')
        if metric == 'bbox':
            # The scenes must exercise the order-dependent matching: detections that overlap
            # two objects above the threshold.
            for gt, dt in zip(gts, dts):
                shared += int(((_loop_overlaps(gt, dt, metric) > 0.5).sum(axis=1) > 1).sum())
    assert shared >= 8


def test_thresholds_follow_the_reference_recall_sampling():
    np.testing.assert_array_equal(get_thresholds(np.array([0.3, 0.9]), 2), [0.9, 0.3])
    assert get_thresholds(np.array([]), 3).size == 0
    rng = np.random.default_rng(3)
    for num_gt in (1, 7, 39, 40, 41, 100, 257, 1000):
        for count in {1, num_gt // 3 + 1, num_gt}:
            scores = rng.random(count)
            np.testing.assert_array_equal(get_thresholds(scores, num_gt),
                                          _loop_thresholds(scores, num_gt))
    # 100 true positives of 100 objects: 41 thresholds, the last score always among them.
    scores = np.linspace(1, 0.01, 100)
    kept = get_thresholds(scores, 100)
    assert len(kept) == 41 and kept[0] == 1 and kept[-1] == scores[-1]


# ------------------------------------------------------------------------------------------
# Hand-checkable cases: 41 frames with one Car each (41 objects give all 41 sample positions)
# ------------------------------------------------------------------------------------------

def _object(name='Car', bbox=(100, 100, 200, 180), loc=(0.0, 1.6, 20.0), dims=(4.0, 1.5, 1.6),
            ry=0.0, alpha=None, truncated=0.0, occluded=0) -> dict:
    alpha = ry - math.atan2(loc[0], loc[2]) if alpha is None else alpha
    return {'name': name, 'bbox': bbox, 'location': loc, 'dimensions': dims, 'rotation_y': ry,
            'alpha': alpha, 'truncated': truncated, 'occluded': occluded}


def _frame(objects: list[dict], scores=None) -> dict:
    annos = {
        'name': np.array([o['name'] for o in objects]),
        'bbox': np.array([o['bbox'] for o in objects], dtype=float).reshape(-1, 4),
        'location': np.array([o['location'] for o in objects], dtype=float).reshape(-1, 3),
        'dimensions': np.array([o['dimensions'] for o in objects], dtype=float).reshape(-1, 3),
        'rotation_y': np.array([o['rotation_y'] for o in objects], dtype=float),
        'alpha': np.array([o['alpha'] for o in objects], dtype=float),
        'truncated': np.array([o['truncated'] for o in objects], dtype=float),
        'occluded': np.array([o['occluded'] for o in objects], dtype=np.int64),
    }
    if scores is not None:
        annos['score'] = np.array(scores, dtype=float)
    return annos


def _cars(num: int = 41) -> list[dict]:
    # Rotated boxes at different places: exact IoU 1 must not depend on axis alignment.
    return [_object(loc=(i * 0.3 - 6, 1.6, 12.0 + i), ry=0.37 * i - 7) for i in range(num)]


def _scores(num: int = 41) -> list[float]:
    return [0.5 + 0.01 * i for i in range(num)]


def _evaluate(gt_objects, dt_objects, classes=('Car',), extra_gt=(), extra_dt=()):
    """One object per frame; ``extra_*`` (object, score) are added to frame 0."""
    gts = [_frame([o]) for o in gt_objects]
    dts = [_frame([o], [s]) for o, s in zip(dt_objects, _scores(len(dt_objects)))]
    if extra_gt:
        gts[0] = _frame([gt_objects[0], *extra_gt])
    if extra_dt:
        dts[0] = _frame([dt_objects[0], *(o for o, _ in extra_dt)],
                        [_scores()[0], *(s for _, s in extra_dt)])
    return kitti_eval(gts, dts, classes)[0]


def _values(metrics: dict, cls: str, types=TYPES, diffs=DIFFS, strictness=('strict', 'loose')):
    return np.array([metrics[f'{cls}_{t}_{ap}_{d}_{s}'] for t in types for ap in ('AP11', 'AP40')
                     for d in diffs for s in strictness])


def test_predictions_equal_to_ground_truth_score_100_everywhere():
    ped = [_object('Pedestrian', bbox=(300, 100, 340, 190), loc=(3.0 + i * 0.1, 1.7, 15.0 + i),
                   dims=(0.8, 1.75, 0.6), ry=1.1 * i) for i in range(41)]
    cyc = [_object('Cyclist', bbox=(500, 90, 560, 170), loc=(-4.0, 1.6, 30.0 + i),
                   dims=(1.8, 1.7, 0.6), ry=-0.4 * i) for i in range(41)]
    gts = [_frame([a, b, c]) for a, b, c in zip(_cars(), ped, cyc)]
    dts = [_frame([a, b, c], [s, s, s]) for a, b, c, s in zip(_cars(), ped, cyc, _scores())]
    metrics, table = kitti_eval(gts, dts, ('Car', 'Pedestrian', 'Cyclist'))
    assert len(metrics) == 3 * 4 * 2 * 3 * 2 + 4 * 2 * 3
    assert all(v == 100.0 for v in metrics.values()), table


def test_3d_iou_just_over_and_under_0_7():
    # Shifting a 4 m long car by d along its length gives BEV and 3D IoU (4 - d) / (4 + d).
    for shift, strict_ap in ((0.68, 100.0), (0.73, 0.0)):
        gt = [_object(loc=(0.0, 1.6, 20.0 + i)) for i in range(41)]
        dt = [_object(loc=(shift, 1.6, 20.0 + i), alpha=o['alpha']) for i, o in enumerate(gt)]
        metrics = _evaluate(gt, dt)
        np.testing.assert_array_equal(_values(metrics, 'Car', ('BEV', '3D'),
                                              strictness=('strict',)), strict_ap)
        np.testing.assert_array_equal(_values(metrics, 'Car', ('BEV', '3D'),
                                              strictness=('loose',)), 100.0)
        np.testing.assert_array_equal(_values(metrics, 'Car', ('2D', 'AOS')), 100.0)


ONE_FP = 100 * 41 / 42  # a top-scoring false positive: precision 41/42 at every recall


def test_a_car_detection_on_a_van_is_ignored_not_a_false_positive():
    van = _object('Van', bbox=(400, 100, 500, 180), loc=(8.0, 1.6, 25.0))
    car_on_van = dict(van, name='Car')
    metrics = _evaluate(_cars(), _cars(), extra_gt=[van], extra_dt=[(car_on_van, 0.99)])
    np.testing.assert_array_equal(_values(metrics, 'Car'), 100.0)
    # The same detection on a Truck (not Car's neighbour class) is a false positive.
    truck = dict(van, name='Truck')
    metrics = _evaluate(_cars(), _cars(), extra_gt=[truck], extra_dt=[(car_on_van, 0.99)])
    np.testing.assert_allclose(_values(metrics, 'Car', ('2D', 'BEV', '3D')), ONE_FP)


def test_dontcare_regions_remove_false_positives_in_2d_only():
    dontcare = _object('DontCare', bbox=(600, 90, 700, 200), loc=(-1000, -1000, -1000),
                       dims=(-1, -1, -1), ry=-10, alpha=-10, truncated=-1, occluded=-1)
    inside = _object(bbox=(610, 100, 690, 190), loc=(10.0, 1.6, 40.0))
    metrics = _evaluate(_cars(), _cars(), extra_gt=[dontcare], extra_dt=[(inside, 0.99)])
    np.testing.assert_array_equal(_values(metrics, 'Car', ('2D', 'AOS')), 100.0)
    # The Python ports (mmdetection3d, OpenPCDet) apply DontCare to the 2D evaluation only.
    np.testing.assert_allclose(_values(metrics, 'Car', ('BEV', '3D')), ONE_FP)
    # The C++ devkit applies them to BEV and 3D as well.
    gts = [_frame([o]) for o in _cars()]
    dts = [_frame([o], [s]) for o, s in zip(_cars(), _scores())]
    gts[0] = _frame([_cars()[0], dontcare])
    dts[0] = _frame([_cars()[0], inside], [_scores()[0], 0.99])
    metrics = kitti_eval(gts, dts, ('Car',), dontcare_in_3d=True)[0]
    np.testing.assert_array_equal(_values(metrics, 'Car'), 100.0)
    # Less than 70 % inside the region: a false positive in 2D too.
    half = _object(bbox=(650, 100, 750, 190), loc=(10.0, 1.6, 40.0))
    metrics = _evaluate(_cars(), _cars(), extra_gt=[dontcare], extra_dt=[(half, 0.99)])
    np.testing.assert_allclose(_values(metrics, 'Car', ('2D',)), ONE_FP)


def test_detections_under_the_minimum_height_are_ignored():
    tiny = _object(bbox=(600, 100, 700, 120), loc=(10.0, 1.6, 40.0))  # 20 px
    metrics = _evaluate(_cars(), _cars(), extra_dt=[(tiny, 0.99)])
    np.testing.assert_array_equal(_values(metrics, 'Car'), 100.0)
    low = _object(bbox=(600, 100, 700, 130), loc=(10.0, 1.6, 40.0))  # 30 px: only easy ignores it
    metrics = _evaluate(_cars(), _cars(), extra_dt=[(low, 0.99)])
    np.testing.assert_array_equal(_values(metrics, 'Car', diffs=('easy',)), 100.0)
    np.testing.assert_allclose(_values(metrics, 'Car', ('2D', 'BEV', '3D'),
                                       diffs=('moderate', 'hard')), ONE_FP)


def test_a_box_turned_by_180_degrees_has_full_3d_ap_and_no_aos():
    flipped = [dict(o, rotation_y=o['rotation_y'] + np.pi, alpha=o['alpha'] + np.pi)
               for o in _cars()]
    metrics = _evaluate(_cars(), flipped)
    np.testing.assert_allclose(_values(metrics, 'Car', ('2D', 'BEV', '3D')), 100.0, atol=1e-9)
    np.testing.assert_allclose(_values(metrics, 'Car', ('AOS',)), 0.0, atol=1e-9)


def test_few_objects_give_the_devkits_partial_scores():
    # Two perfect detections of two objects: 2 sample positions of 41 (precision 0 elsewhere).
    metrics = _evaluate(_cars(2), _cars(2))
    assert metrics['Car_3D_AP40_easy_strict'] == pytest.approx(2.5)
    assert metrics['Car_3D_AP11_easy_strict'] == pytest.approx(100 / 11)


def test_aos_is_skipped_without_alpha_and_bad_predictions_are_refused():
    dts = [_frame([dict(o, alpha=-10.0)], [s]) for o, s in zip(_cars(), _scores())]
    metrics, table = kitti_eval([_frame([o]) for o in _cars()], dts, ('Car',))
    assert 'Car_AOS_AP40_easy_strict' not in metrics and 'AOS skipped' in table
    assert metrics['Car_3D_AP40_easy_strict'] == 100.0
    bad = _frame([_cars()[0]], [float('nan')])
    with pytest.raises(ValueError, match='frame 0: scores must be finite'):
        kitti_eval([_frame([_cars()[0]])], [bad])
    with pytest.raises(DataError, match="unknown KITTI class 'Bus'"):
        kitti_eval([_frame([_cars()[0]])], [_frame([_cars()[0]], [1.0])], ('Bus',))
    with pytest.raises(ValueError, match='1 ground-truth frames but 2 detection frames'):
        kitti_eval([_frame([])], [_frame([], []), _frame([], [])])


# ------------------------------------------------------------------------------------------
# Label folders and the command line
# ------------------------------------------------------------------------------------------

def _predictions_from(gt_dir, pred_dir):
    pred_dir.mkdir(parents=True, exist_ok=True)
    for path in sorted(gt_dir.glob('*.txt')):
        annos = read_label_file(path)
        annos['score'] = 0.9 - 0.01 * np.arange(len(annos['name']))
        write_label_file(pred_dir / path.name, annos, decimals=2)


def test_cli_on_the_real_labels_with_perfect_predictions(shared_data, tmp_path):
    gt_dir = shared_data / 'kitti_mini/training/label_2'
    _predictions_from(gt_dir, tmp_path / 'pred')
    out = tmp_path / 'result.json'
    proc = run_tool('tools/eval.py', 'kitti', gt_dir, tmp_path / 'pred', '--out', out)
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads(out.read_text())
    # Valid objects (2D height, occlusion, truncation): Car 2 / 5 / 5, Pedestrian 1 / 1 / 1,
    # Cyclist 0 / 1 / 1. With n < 41 objects the devkit has n thresholds: AP40 = (n - 1) / 40 and
    # AP11 = ceil(n / 4) / 11, however perfect the detections (all are TPs here).
    counts = {'Car': (2, 5, 5), 'Pedestrian': (1, 1, 1), 'Cyclist': (0, 1, 1)}
    for cls, per_difficulty in counts.items():
        for d, n in zip(DIFFS, per_difficulty):
            for t in TYPES:
                for s in ('strict', 'loose'):
                    assert metrics[f'{cls}_{t}_AP40_{d}_{s}'] == pytest.approx(
                        100 * max(n - 1, 0) / 40)
                    assert metrics[f'{cls}_{t}_AP11_{d}_{s}'] == pytest.approx(
                        100 * math.ceil(n / 4) / 11)
    assert metrics['Overall_3D_AP40_moderate'] == pytest.approx(10 / 3)
    assert 'Car AP40@0.70, 0.70, 0.70:\nbbox AP40:2.5000, 10.0000, 10.0000' in proc.stdout
    assert 'Cyclist has no easy ground-truth objects' in proc.stdout
    assert f'metrics written to {out}' in proc.stdout


def test_cli_reports_malformed_prediction_lines(tmp_path):
    (tmp_path / 'gt').mkdir()
    (tmp_path / 'pred').mkdir()
    line = 'Car 0.00 0 0.00 100.00 100.00 200.00 180.00 1.50 1.60 4.00 0.00 1.60 20.00 0.00'
    (tmp_path / 'gt/000001.txt').write_text(line + '\n')
    (tmp_path / 'pred/000001.txt').write_text(line + ' nan\n')
    proc = run_tool('tools/eval.py', 'kitti', tmp_path / 'gt', tmp_path / 'pred')
    assert proc.returncode == 2
    assert 'Traceback' not in proc.stderr
    assert "000001.txt, line 1: field 16 (score) is 'nan', expected a finite number" in \
        proc.stderr


def _label_dirs(tmp_path, frames=('000001', '000002')):
    line = 'Car 0.00 0 0.00 100.00 100.00 200.00 180.00 1.50 1.60 4.00 0.00 1.60 20.00 0.00'
    (tmp_path / 'gt').mkdir()
    (tmp_path / 'pred').mkdir()
    for frame in frames:
        (tmp_path / f'gt/{frame}.txt').write_text(line + '\n')
    return tmp_path / 'gt', tmp_path / 'pred', line


def test_label_dirs_missing_prediction_files_mean_no_detections(tmp_path):
    gt_dir, pred_dir, line = _label_dirs(tmp_path)
    metrics, table = evaluate_label_dirs(gt_dir, pred_dir)
    assert all(v == 0 for v in metrics.values()) and len(metrics) == 168  # AOS included
    assert 'WARNING' in table and 'no prediction file for any of the 2 frames' in table
    (pred_dir / '000001.txt').write_text(line + ' 0.8\n')
    metrics, table = evaluate_label_dirs(gt_dir, pred_dir, classes=['Car'])
    assert '1 of 2 frames have no prediction file' in table and 'WARNING' not in table
    # One of two objects found: 1 TP, recall 1/2 -> the first of 2 thresholds.
    assert metrics['Car_3D_AP11_easy_strict'] == pytest.approx(100 / 11)
    assert set(metrics) == {f'Car_{t}_{ap}_{d}_{s}' for t in TYPES for ap in ('AP11', 'AP40')
                            for d in DIFFS for s in ('strict', 'loose')}


def test_label_dirs_split_files_and_missing_ground_truth(tmp_path):
    gt_dir, pred_dir, line = _label_dirs(tmp_path)
    split = tmp_path / 'val.txt'
    split.write_text('000002\n\n')
    (pred_dir / '000002.txt').write_text(line + ' 0.8\n')
    metrics, table = evaluate_label_dirs(gt_dir, pred_dir, split_file=split)
    assert 'KITTI evaluation of 1 frames' in table
    assert metrics['Car_2D_AP11_easy_strict'] == pytest.approx(100 / 11)
    split.write_text('000002\n000099\n')
    with pytest.raises(DataError, match=r'1 of the 2 frames .* no ground-truth label file .* '
                                        r'000099.txt'):
        evaluate_label_dirs(gt_dir, pred_dir, split_file=split)
    with pytest.raises(DataError, match='prediction folder .* not found'):
        evaluate_label_dirs(gt_dir, tmp_path / 'nowhere')
    with pytest.raises(DataError, match="unknown KITTI class 'car'"):
        evaluate_label_dirs(gt_dir, pred_dir, classes=['car'])
    (pred_dir / '000002.txt').write_text(line + '\n')  # a ground-truth line, no score
    with pytest.raises(DataError, match=r'000002.txt, line 1: 15 fields, expected 16'):
        evaluate_label_dirs(gt_dir, pred_dir)


# ------------------------------------------------------------------------------------------
# Benchmark: a val-sized set (3,769 frames, ~10 objects and ~30 detections each)
# ------------------------------------------------------------------------------------------

_P2 = np.array([[721.5377, 0.0, 609.5593, 44.85728], [0.0, 721.5377, 172.854, 0.2163791],
                [0.0, 0.0, 1.0, 0.002745884]])
_SIZES = {'Car': (3.9, 1.56, 1.6), 'Pedestrian': (0.8, 1.75, 0.6), 'Cyclist': (1.76, 1.74, 0.6),
          'Van': (5.0, 2.1, 1.9)}


def _image_boxes(loc: np.ndarray, dims: np.ndarray, ry: np.ndarray) -> np.ndarray:
    corners = _corners(np.c_[loc, dims, ry])
    corners[..., 2] = np.maximum(corners[..., 2], 0.5)
    pixels = np.concatenate([corners, np.ones_like(corners[..., :1])], -1) @ _P2.T
    uv = pixels[..., :2] / pixels[..., 2:]
    boxes = np.concatenate([uv.min(1), uv.max(1)], 1).reshape(-1, 4)
    return boxes.clip(0, [1241, 374, 1241, 374])


def _val_sized_set(num_frames: int = 3769, seed: int = 0) -> tuple[list[dict], list[dict]]:
    rng = np.random.default_rng(seed)
    kinds = np.array(list(_SIZES))
    gts, dts = [], []
    for _ in range(num_frames):
        n = rng.poisson(10)
        names = kinds[rng.choice(4, n, p=[0.55, 0.25, 0.12, 0.08])]
        dims = np.array([_SIZES[k] for k in names]).reshape(n, 3) * rng.uniform(0.85, 1.15, (n, 3))
        loc = np.c_[rng.uniform(-15, 15, n), rng.uniform(1.4, 1.9, n), rng.uniform(5, 60, n)]
        ry = rng.uniform(-np.pi, np.pi, n)
        gts.append({'name': names, 'truncated': rng.choice([0.0, 0.0, 0.2, 0.4, 0.8], n),
                    'occluded': rng.integers(0, 4, n),
                    'alpha': ry - np.arctan2(loc[:, 0], loc[:, 2]),
                    'bbox': _image_boxes(loc, dims, ry), 'dimensions': dims, 'location': loc,
                    'rotation_y': ry})
        found = rng.random(n) < 0.85
        k, m = int(found.sum()), max(30 - int(found.sum()), 0)
        dnames = np.r_[names[found], kinds[rng.choice(3, m)]]
        ddims = np.r_[dims[found] * rng.normal(1, 0.05, (k, 3)),
                      np.array([_SIZES[x] for x in dnames[k:]]).reshape(m, 3)]
        dloc = np.r_[loc[found] + rng.normal(0, 0.25, (k, 3)) * [1, 0.2, 1],
                     np.c_[rng.uniform(-15, 15, m), rng.uniform(1.4, 1.9, m),
                           rng.uniform(5, 60, m)]]
        dry = np.r_[ry[found] + rng.normal(0, 0.15, k), rng.uniform(-np.pi, np.pi, m)]
        dts.append({'name': dnames, 'alpha': dry - np.arctan2(dloc[:, 0], dloc[:, 2]),
                    'bbox': _image_boxes(dloc, ddims, dry), 'dimensions': ddims,
                    'location': dloc, 'rotation_y': dry,
                    'score': np.r_[rng.uniform(0.3, 1.0, k), rng.uniform(0.0, 0.7, m)]})
    return gts, dts


def benchmark() -> float:
    """Seconds for the full KITTI evaluation (2D, BEV, 3D, AOS; AP11 and AP40; 3 difficulties;
    strict and loose; Car, Pedestrian, Cyclist) of a val-sized synthetic set."""
    gts, dts = _val_sized_set()
    start = time.perf_counter()
    metrics, _ = kitti_eval(gts, dts, ('Car', 'Pedestrian', 'Cyclist'))
    seconds = time.perf_counter() - start
    assert len(metrics) == 3 * 4 * 2 * 3 * 2 + 4 * 2 * 3
    assert 0 < metrics['Car_3D_AP40_moderate_loose'] < 100
    return seconds


@pytest.mark.slow
def test_val_sized_set_gives_every_metric():
    """The full protocol on 3,769 frames (the checks are in ``benchmark``). It reports its time
    instead of asserting it: a wall-clock bound fails on a slower or busier machine, not on a
    wrong result."""
    seconds = benchmark()
    print(f'KITTI evaluation of 3,769 frames: {seconds:.2f} s')
