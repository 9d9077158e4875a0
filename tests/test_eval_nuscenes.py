"""nuScenes detection evaluation: hand-computed cases, the real sample frame, the devkit itself."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from perception.engine.errors import DataError
from perception.evaluation.nuscenes import (
    CVPR_2019,
    DETECTION_NAMES,
    MMDET3D_CLASSES,
    NuScenesMetric,
    default_attributes,
    evaluate_detection,
    export_submission,
    global_boxes_to_lidar,
    lidar_boxes_to_global,
    matrix_to_quaternion,
    metric_keys,
    quaternion_to_matrix,
    quaternion_yaw,
)

ATTR = {'car': 'vehicle.moving', 'truck': 'vehicle.parked', 'bus': 'vehicle.moving',
        'trailer': 'vehicle.parked', 'construction_vehicle': 'vehicle.parked',
        'pedestrian': 'pedestrian.standing', 'motorcycle': 'cycle.with_rider',
        'bicycle': 'cycle.without_rider', 'traffic_cone': '', 'barrier': ''}


def boxes(rows: list[dict]) -> dict:
    """One sample's NusBoxes from a list of simple dicts (x, y, name, ...)."""
    def col(key, default):
        return np.array([r.get(key, default) for r in rows], dtype=np.float64)
    n = len(rows)
    xyz = np.stack([col('x', 0), col('y', 0), col('z', 1)], axis=1).reshape(n, 3)
    yaw = col('yaw', 0)
    out = dict(
        translation=xyz + [1000.0, 2000.0, 0.0],   # global frame; the ego is at (1000, 2000)
        size=np.array([r.get('wlh', (2.0, 4.0, 1.5)) for r in rows], dtype=float).reshape(n, 3),
        rotation=np.stack([np.cos(yaw / 2), 0 * yaw, 0 * yaw, np.sin(yaw / 2)], 1).reshape(n, 4),
        velocity=np.array([r.get('vel', (1.0, 0.0)) for r in rows], dtype=float).reshape(n, 2),
        detection_name=[r['name'] for r in rows],
        attribute_name=[r.get('attr', ATTR[r['name']]) for r in rows],
        ego_translation=xyz,
        num_pts=np.array([r.get('pts', 5) for r in rows]))
    if rows and 'score' in rows[0]:
        out['detection_score'] = col('score', 0)
    return out


def one_per_class(x0: float = 5.0) -> list[dict]:
    return [dict(name=name, x=x0 + 2.5 * i, y=2.0) for i, name in enumerate(DETECTION_NAMES)]


def scored(rows: list[dict], score: float = 0.9) -> list[dict]:
    return [dict(r, score=score) for r in rows]


# ------------------------------------------------------------------------------------------------
# Hand-computed cases
# ------------------------------------------------------------------------------------------------
def test_perfect_detections_give_map_and_nds_one():
    gt = {'s0': boxes(one_per_class()), 's1': boxes(one_per_class(7.0))}
    pred = {'s0': boxes(scored(one_per_class(), 0.9)), 's1': boxes(scored(one_per_class(7.0), 0.8))}
    summary = evaluate_detection(gt, pred)
    keys = metric_keys(summary)
    assert keys['mAP'] == pytest.approx(1, abs=1e-12)
    assert keys['NDS'] == pytest.approx(1, abs=1e-12)
    for err in ('mATE', 'mASE', 'mAOE', 'mAVE', 'mAAE'):
        assert keys[err] == 0.0
    for name in DETECTION_NAMES:
        for th in (0.5, 1.0, 2.0, 4.0):
            assert keys[f'{name}_AP_dist_{th}'] == pytest.approx(1, abs=1e-12)
    # The devkit's undefined TP errors.
    for key in ('traffic_cone_orient_err', 'traffic_cone_vel_err', 'traffic_cone_attr_err',
                'barrier_vel_err', 'barrier_attr_err'):
        assert math.isnan(keys[key])
    assert keys['barrier_orient_err'] == 0.0


def test_one_shifted_box_known_errors():
    # GT car at 10 m; the prediction is 0.625 m away (0.375, 0.5), twice as high, turned 0.3 rad,
    # 2 m/s faster sideways and with the wrong attribute.
    gt = {'s': boxes([dict(name='car', x=10.0, y=0.0)])}
    pred = {'s': boxes([dict(name='car', x=10.375, y=0.5, wlh=(2.0, 4.0, 3.0), yaw=0.3,
                             vel=(1.0, 2.0), attr='vehicle.parked', score=0.7)])}
    keys = metric_keys(evaluate_detection(gt, pred))
    assert keys['car_AP_dist_0.5'] == 0.0       # 0.625 m is not < 0.5 m
    for th in (1.0, 2.0, 4.0):
        assert keys[f'car_AP_dist_{th}'] == pytest.approx(1, abs=1e-12)
    assert keys['car_trans_err'] == 0.625
    assert keys['car_scale_err'] == pytest.approx(0.5, abs=1e-15)   # IoU = 12 / 24
    assert keys['car_orient_err'] == pytest.approx(0.3, abs=1e-12)
    assert keys['car_vel_err'] == 2.0
    assert keys['car_attr_err'] == pytest.approx(1, abs=1e-12)
    # Other classes have no GT: AP 0, TP errors 1 (NaN where undefined).
    assert keys['truck_AP_dist_4.0'] == 0.0 and keys['truck_trans_err'] == 1.0
    m_ap = 0.75 / 10
    m_ate = (0.625 + 9) / 10
    m_ase = (0.5 + 9) / 10
    m_aoe = (0.3 + 8) / 9          # traffic_cone undefined
    m_ave, m_aae = 1.0, 1.0        # car 2.0 (clipped later) / 1.0; barrier and cone undefined
    assert keys['mAP'] == pytest.approx(m_ap, abs=1e-15)
    assert keys['mATE'] == pytest.approx(m_ate, abs=1e-15)
    assert keys['mASE'] == pytest.approx(m_ase, abs=1e-15)
    assert keys['mAOE'] == pytest.approx(m_aoe, abs=1e-12)
    assert keys['mAVE'] == pytest.approx((2.0 + 7) / 8, abs=1e-15)
    assert keys['mAAE'] == m_aae
    nds = (5 * m_ap + (1 - m_ate) + (1 - m_ase) + (1 - m_aoe) + 0 + 0) / 10
    assert keys['NDS'] == pytest.approx(nds, abs=1e-12)
    assert m_ave == 1.0


def test_match_needs_distance_strictly_below_threshold():
    gt = {'s': boxes([dict(name='car', x=10.0, y=0.0)])}
    pred = {'s': boxes([dict(name='car', x=11.0, y=0.0, score=0.5)])}   # exactly 1 m away
    keys = metric_keys(evaluate_detection(gt, pred))
    assert keys['car_AP_dist_0.5'] == 0.0 and keys['car_AP_dist_1.0'] == 0.0
    assert keys['car_AP_dist_2.0'] == pytest.approx(1, abs=1e-12)
    assert keys['car_trans_err'] == 1.0


def test_equal_scores_are_matched_later_box_first():
    # Two predictions with equal scores near one GT: the devkit takes the later one first
    # (sorted((score, index))[::-1]), so the later box is the match and the earlier one a FP.
    gt = {'s': boxes([dict(name='car', x=10.0, y=0.0)])}
    pred = {'s': boxes([dict(name='car', x=10.25, y=0.0, score=0.5),
                        dict(name='car', x=10.0, y=0.5, score=0.5)])}
    keys = metric_keys(evaluate_detection(gt, pred))
    assert keys['car_trans_err'] == 0.5
    # Recall 1 is reached at once (precision 1); the FP that follows sits at the same recall, and
    # np.interp takes the last value there (precision 1/2) for the recall-1.0 point only.
    assert keys['car_AP_dist_2.0'] == pytest.approx((89 * 0.9 + 0.4) / 90 / 0.9, abs=1e-15)


def test_missed_gt_lowers_ap_by_the_recall_points_lost():
    # 4 GT cars, one found: precision 1 up to recall 0.25, then 0. Of the 90 recall points above
    # 0.1, the 15 at 0.11..0.25 score (1 - 0.1) / 0.9 = 1: AP = 15 / 90.
    gt_rows = [dict(name='car', x=5.0 + 5 * i) for i in range(4)]
    gt = {'s': boxes(gt_rows)}
    pred = {'s': boxes([dict(gt_rows[0], score=0.5)])}
    keys = metric_keys(evaluate_detection(gt, pred))
    for th in (0.5, 1.0, 2.0, 4.0):
        assert keys[f'car_AP_dist_{th}'] == pytest.approx(15 / 90, abs=1e-15)
    # With all four found AP is 1.
    pred = {'s': boxes(scored(gt_rows, 0.5))}
    ap = metric_keys(evaluate_detection(gt, pred))['car_AP_dist_2.0']
    assert ap == pytest.approx(1, abs=1e-12)
    # A false positive ranked above the only match: precision 1/2 at recall 1/4, interpolated
    # linearly from (0, 0): p(r) = 2r up to r = 0.25, so AP = sum_{k=11}^{25} (0.02k - 0.1) / 81.
    pred = {'s': boxes([dict(gt_rows[0], score=0.5), dict(name='car', x=-20.0, score=0.6)])}
    expected = sum(max(0.0, 2 * k / 100 - 0.1) for k in range(11, 26)) / 90 / 0.9
    ap = metric_keys(evaluate_detection(gt, pred))['car_AP_dist_2.0']
    assert ap == pytest.approx(expected, abs=1e-12)


def test_boxes_outside_class_range_or_without_points_are_ignored():
    base = one_per_class()
    extra_gt = [dict(name='pedestrian', x=41.0, y=0.0),            # range 40: ignored
                dict(name='pedestrian', x=40.0, y=0.0),            # at the range: ignored (<)
                dict(name='traffic_cone', x=0.0, y=-30.5),         # range 30: ignored
                dict(name='car', x=20.0, y=-20.0, pts=0)]          # no points: ignored
    extra_pred = [dict(name='car', x=0.0, y=51.0, score=0.99),      # range 50: ignored
                  dict(name='barrier', x=-30.0, y=1.0, score=0.99)]  # 30.02 m: ignored
    gt = {'s': boxes(base + extra_gt)}
    pred = {'s': boxes(scored(base) + extra_pred)}
    keys = metric_keys(evaluate_detection(gt, pred))
    assert keys['mAP'] == pytest.approx(1, abs=1e-12)
    assert keys['NDS'] == pytest.approx(1, abs=1e-12)
    # The same boxes just inside the ranges count: one missed pedestrian halves its recall.
    gt = {'s': boxes(base + [dict(name='pedestrian', x=39.9, y=0.0)])}
    keys = metric_keys(evaluate_detection(gt, pred))
    assert keys['pedestrian_AP_dist_2.0'] == pytest.approx(40 / 90, abs=1e-15)


def test_bicycles_in_bike_racks_are_ignored():
    gt = {'s': boxes([dict(name='bicycle', x=10.0, y=0.0), dict(name='bicycle', x=20.0, y=0.0),
                      dict(name='car', x=10.5, y=0.0)])}
    pred = {'s': boxes([dict(name='bicycle', x=10.0, y=0.0, score=0.9),
                        dict(name='car', x=10.5, y=0.0, score=0.9)])}
    # The GT bicycle at 20 m is missed: recall 1/2.
    assert metric_keys(evaluate_detection(gt, pred))['bicycle_AP_dist_1.0'] == \
        pytest.approx(40 / 90, abs=1e-15)
    # A 3 m x 1 m rack around it (rotated 90 degrees) removes it; the car inside is kept.
    rack = dict(translation=[[1020.0, 2000.0, 1.0], [1010.5, 2000.0, 1.0]],
                size=[[3.0, 1.0, 2.0], [0.2, 0.2, 0.2]],
                rotation=[[math.cos(math.pi / 4), 0, 0, math.sin(math.pi / 4)], [1, 0, 0, 0]])
    keys = metric_keys(evaluate_detection(gt, pred, bike_racks={'s': rack}))
    assert keys['bicycle_AP_dist_1.0'] == pytest.approx(1, abs=1e-12)
    assert keys['car_AP_dist_1.0'] == pytest.approx(1, abs=1e-12)


def test_bad_input_is_reported_clearly():
    gt = {'s': boxes(one_per_class())}
    with pytest.raises(DataError, match='same samples'):
        evaluate_detection(gt, {})
    pred = boxes(scored(one_per_class()))
    pred['detection_name'][0] = 'van'
    with pytest.raises(DataError, match=r"pred\['s'\].*unknown detection_name 'van'"):
        evaluate_detection(gt, {'s': pred})
    pred = boxes(scored(one_per_class()))
    pred['translation'][2, 0] = np.nan
    with pytest.raises(DataError, match="'translation' is NaN in box 2"):
        evaluate_detection(gt, {'s': pred})
    pred = boxes(scored(one_per_class() * 51))      # 510 boxes
    with pytest.raises(DataError, match='at most 500'):
        evaluate_detection(gt, {'s': pred})


# ------------------------------------------------------------------------------------------------
# Frame conversion on the real nuScenes sample
# ------------------------------------------------------------------------------------------------
def _frame(shared_data):
    frame = json.loads((shared_data / 'nuscenes_frame' / 'frame.json').read_text())
    boxes_ = [b for b in frame['boxes'] if b['name'] in DETECTION_NAMES]
    box = np.array([b['box'] for b in boxes_])          # gravity centre
    vel = np.array([b['velocity'] for b in boxes_])
    bottom = box.copy()
    bottom[:, 2] -= box[:, 5] / 2
    return frame, boxes_, np.concatenate([bottom, vel], axis=1)


def test_conversion_round_trip_and_sizes_on_real_frame(shared_data):
    frame, boxes_, lidar = _frame(shared_data)
    l2e, e2g = frame['lidar']['lidar2ego'], frame['ego2global']
    out = lidar_boxes_to_global(lidar, l2e, e2g)
    assert len(lidar) > 40
    # Sizes: (l, w, h) -> the devkit's (w, l, h).
    np.testing.assert_array_equal(out['size'], lidar[:, [4, 3, 5]])
    # Gravity centre = the file's centre moved through the poses.
    l2e, e2g = np.array(l2e), np.array(e2g)
    grav = np.array([b['box'][:3] for b in boxes_])
    expect = (np.c_[grav, np.ones(len(grav))] @ (e2g @ l2e).T)[:, :3]
    np.testing.assert_allclose(out['translation'], expect, atol=1e-5)   # float32 poses
    np.testing.assert_allclose(out['ego_translation'], expect - e2g[:3, 3], atol=1e-5)
    # The quaternion turns the box's +x axis into the LiDAR heading moved to the global frame.
    heading = np.c_[np.cos(lidar[:, 6]), np.sin(lidar[:, 6]), np.zeros(len(lidar))]
    heading_global = heading @ (e2g[:3, :3] @ l2e[:3, :3]).T
    np.testing.assert_allclose(quaternion_to_matrix(out['rotation'])[:, :, 0], heading_global,
                               atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(out['rotation'], axis=1), 1, atol=1e-12)
    # Velocity: (vx, vy, 0) rotated to the global frame.
    vel3 = np.c_[lidar[:, 7:9], np.zeros(len(lidar))] @ (e2g[:3, :3] @ l2e[:3, :3]).T
    np.testing.assert_allclose(out['velocity'], vel3[:, :2], atol=1e-5)
    # Round trip: centre, sizes and yaw exactly; velocity up to the dropped vertical component.
    back = global_boxes_to_lidar(out['translation'], out['size'], out['rotation'],
                                 out['velocity'], l2e, e2g)
    np.testing.assert_allclose(back[:, :6], lidar[:, :6], atol=1e-9)
    yaw_err = np.angle(np.exp(1j * (back[:, 6] - lidar[:, 6])))
    np.testing.assert_allclose(yaw_err, 0, atol=1e-9)
    # Dropping the global vertical velocity (tilt ~0.03 rad) costs ~tilt^2 of the speed.
    # Unknown (NaN) velocities stay unknown.
    speed = np.linalg.norm(lidar[:, 7:9], axis=1)
    known = np.isfinite(speed)
    assert 0 < known.sum() < len(speed)
    assert np.isnan(back[~known, 7:9]).all()
    err = np.linalg.norm(back[known, 7:9] - lidar[known, 7:9], axis=1)
    assert (err <= 2e-3 * speed[known] + 1e-12).all()
    assert np.nanmax(np.abs(vel3[:, 2])) > 0.1   # real motion, and a real tilt


def test_converted_boxes_contain_the_annotated_lidar_points(shared_data):
    """Count the sweep's points inside each global box (devkit's corner test): the file's
    num_lidar_pts. This checks centre, wlh order and quaternion of the whole conversion."""
    frame, boxes_, lidar = _frame(shared_data)
    l2e, e2g = np.array(frame['lidar']['lidar2ego']), np.array(frame['ego2global'])
    points = np.fromfile(shared_data / 'nuscenes_frame' / frame['lidar']['path'],
                         dtype=np.float32).reshape(-1, 5)[:, :3].astype(np.float64)
    q_l2e, q_e2g = matrix_to_quaternion(l2e), matrix_to_quaternion(e2g)
    pts_g = (points @ quaternion_to_matrix(q_l2e).T + l2e[:3, 3]) @ \
        quaternion_to_matrix(q_e2g).T + e2g[:3, 3]
    out = lidar_boxes_to_global(lidar, l2e, e2g)
    rot = quaternion_to_matrix(out['rotation'])                     # (N, 3, 3)
    local = np.einsum('nji,npj->npi', rot, pts_g[None] - out['translation'][:, None])
    half = out['size'][:, [1, 0, 2]] / 2                             # (l, w, h) / 2 on x, y, z
    counts = (np.abs(local) <= half[:, None]).all(-1).sum(1)
    # The same count in the LiDAR frame, where the boxes are yaw-only: the conversion is rigid.
    box = np.array([b['box'] for b in boxes_])
    c, s = np.cos(box[:, 6]), np.sin(box[:, 6])
    d = points[None] - box[:, None, :3]
    local_lidar = np.stack([c[:, None] * d[..., 0] + s[:, None] * d[..., 1],
                            -s[:, None] * d[..., 0] + c[:, None] * d[..., 1], d[..., 2]], -1)
    counts_lidar = (np.abs(local_lidar) <= box[:, None, 3:6] / 2).all(-1).sum(1)
    np.testing.assert_array_equal(counts, counts_lidar)
    # The annotation's own count; the file dropped the boxes' small pitch / roll, so points at
    # the faces may differ.
    expected = np.array([b['num_lidar_pts'] for b in boxes_])
    assert (counts == expected).mean() >= 0.85, (counts, expected)
    assert (np.abs(counts - expected) <= np.maximum(3, 0.1 * expected)).all()
    assert counts.sum() > 700


def test_conversion_equals_mmdet3d_recipe_with_devkit_box(shared_data):
    """mmdetection3d's output_to_nusc_box + lidar_nusc_box_to_global with the devkit's Box."""
    pytest.importorskip('nuscenes')
    from nuscenes.utils.data_classes import Box
    from pyquaternion import Quaternion
    frame, boxes_, lidar = _frame(shared_data)
    l2e, e2g = np.array(frame['lidar']['lidar2ego']), np.array(frame['ego2global'])
    lidar = np.nan_to_num(lidar)
    out = lidar_boxes_to_global(lidar, l2e, e2g)
    for i, b in enumerate(lidar):
        box = Box([b[0], b[1], b[2] + b[5] / 2], [b[4], b[3], b[5]],
                  Quaternion(axis=[0, 0, 1], radians=b[6]), velocity=(b[7], b[8], 0.0))
        box.rotate(Quaternion(matrix=l2e, rtol=1e-05, atol=1e-07))
        box.translate(l2e[:3, 3])
        np.testing.assert_allclose(out['ego_centre'][i], box.center, rtol=0, atol=1e-9)
        box.rotate(Quaternion(matrix=e2g, rtol=1e-05, atol=1e-07))
        box.translate(e2g[:3, 3])
        np.testing.assert_allclose(out['translation'][i], box.center, rtol=0, atol=1e-9)
        np.testing.assert_array_equal(out['size'][i], box.wlh)
        q = box.orientation.elements
        # pyquaternion does not renormalise quaternions of float32 poses (|q| = 1 +- 1e-8).
        np.testing.assert_allclose(out['rotation'][i], q * np.sign(q[0]), rtol=0, atol=2e-8)
        np.testing.assert_allclose(out['velocity'][i], box.velocity[:2], rtol=0, atol=1e-9)


def test_matrix_quaternion_round_trip():
    rng = np.random.default_rng(0)
    q = rng.normal(size=(50, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    q *= np.sign(q[:, :1])
    for qi in q:
        np.testing.assert_allclose(matrix_to_quaternion(quaternion_to_matrix(qi)), qi, atol=1e-12)
    yaw = rng.uniform(-3, 3, 20)
    qz = np.stack([np.cos(yaw / 2), 0 * yaw, 0 * yaw, np.sin(yaw / 2)], 1)
    np.testing.assert_allclose(quaternion_yaw(qz), yaw, atol=1e-12)


def test_default_attributes_follow_mmdet3d():
    names = ['car', 'car', 'bus', 'bus', 'pedestrian', 'pedestrian', 'bicycle', 'bicycle',
             'barrier', 'trailer']
    vel = np.array([[0.3, 0], [0.1, 0.1], [0.3, 0], [0, 0], [1, 1], [0, 0], [0, 0.25], [0, 0],
                    [1, 0], [0, 0]])
    assert default_attributes(names, vel) == [
        'vehicle.moving', 'vehicle.parked', 'vehicle.moving', 'vehicle.stopped',
        'pedestrian.moving', 'pedestrian.standing', 'cycle.with_rider', 'cycle.without_rider',
        '', 'vehicle.parked']


# ------------------------------------------------------------------------------------------------
# Submission file and mmengine metric
# ------------------------------------------------------------------------------------------------
def test_export_submission(tmp_path):
    pred = boxes(scored(one_per_class()))
    pred.pop('attribute_name')
    path = export_submission({'tok': pred}, tmp_path / 'sub' / 'results.json', {'use_lidar': True})
    data = json.loads(path.read_text())
    assert data['meta'] == dict(use_camera=False, use_lidar=True, use_radar=False, use_map=False,
                                use_external=False)
    rows = data['results']['tok']
    assert len(rows) == 10 and set(rows[0]) == {
        'sample_token', 'translation', 'size', 'rotation', 'velocity', 'detection_name',
        'detection_score', 'attribute_name'}
    assert rows[0]['detection_name'] == 'car' and rows[0]['attribute_name'] == 'vehicle.moving'
    assert rows[0]['translation'] == [1005.0, 2002.0, 1.0] and rows[0]['size'] == [2.0, 4.0, 1.5]
    assert [p.name for p in path.parent.iterdir()] == ['results.json']   # no temporary left
    many = boxes([dict(name='car', x=float(i % 40), score=i / 600) for i in range(600)])
    with pytest.raises(DataError, match="'tok' has 600 predictions"):
        export_submission({'tok': many}, tmp_path / 'x.json', {})
    path = export_submission({'tok': many}, tmp_path / 'x.json', {}, overflow='topk')
    scores = [r['detection_score'] for r in json.loads(path.read_text())['results']['tok']]
    assert len(scores) == 500 and min(scores) == 100 / 600


def _metric_sample(frame, lidar, names, token, shift=0.0):
    labels = np.array([MMDET3D_CLASSES.index(n) for n in names])
    pred = lidar.copy()
    pred[:, 0] += shift
    return dict(token=token, lidar2ego=frame['lidar']['lidar2ego'], ego2global=frame['ego2global'],
                gt_instances_3d=dict(bboxes_3d=lidar, labels_3d=labels,
                                     num_lidar_pts=np.ones(len(lidar), int)),
                pred_instances_3d=dict(bboxes_3d=pred, labels_3d=labels,
                                       scores_3d=np.linspace(0.9, 0.1, len(lidar))))


def test_metric_matches_pure_function_on_real_frame(shared_data, tmp_path):
    import torch
    frame, boxes_, lidar = _frame(shared_data)
    names = [b['name'] for b in boxes_]
    metric = NuScenesMetric(submission_file=str(tmp_path / 'sub.json'))
    metric.dataset_meta = dict(classes=MMDET3D_CLASSES)
    sample = _metric_sample(frame, lidar, names, 'a', shift=0.3)
    sample['pred_instances_3d'] = {k: torch.as_tensor(v)
                                   for k, v in sample['pred_instances_3d'].items()}
    # Sample b as mmengine data elements.
    from mmengine.structures import BaseDataElement, InstanceData
    plain = _metric_sample(frame, lidar, names, 'b', shift=0.3)
    element = BaseDataElement(metainfo={k: plain[k] for k in ('token', 'lidar2ego', 'ego2global')})
    element.gt_instances_3d = InstanceData(**{k: torch.as_tensor(v)
                                              for k, v in plain['gt_instances_3d'].items()})
    element.pred_instances_3d = InstanceData(**{k: torch.as_tensor(v)
                                                for k, v in plain['pred_instances_3d'].items()})
    metric.process({}, [sample, element])
    result = metric.evaluate(2)
    assert set(k.split('/')[0] for k in result) == {'nus'}
    # Classes with boxes well inside their range from the ego vehicle.
    ego_xy = lidar[:, :2] + np.array(frame['lidar']['lidar2ego'])[:2, 3]
    present = {n for n, d in zip(names, np.hypot(*ego_xy.T)) if d < CVPR_2019.class_range[n] - 2}
    assert present == {'pedestrian', 'barrier', 'car', 'traffic_cone', 'truck'}
    # Every prediction 0.3 m off along LiDAR x (horizontal to 1e-4): a match at every threshold.
    for name in DETECTION_NAMES:
        expected_ap = 1.0 if name in present else 0.0
        assert result[f'nus/{name}_AP_dist_0.5'] == pytest.approx(expected_ap, abs=1e-12)
        expected_ate = 0.3 if name in present else 1.0
        assert result[f'nus/{name}_trans_err'] == pytest.approx(expected_ate, abs=1e-4)
        assert result[f'nus/{name}_scale_err'] == pytest.approx(1 - (name in present), abs=1e-12)
    # Same as the pure function on the same conversion.
    tables = {}
    for token, shift in (('a', 0.3), ('b', 0.3)):
        for kind in ('gt', 'pred'):
            box = lidar.copy()
            if kind == 'pred':
                box[:, 0] += shift
            conv = lidar_boxes_to_global(box, frame['lidar']['lidar2ego'], frame['ego2global'])
            conv.pop('ego_centre')
            conv['detection_name'] = names
            if kind == 'pred':
                conv['detection_score'] = np.linspace(0.9, 0.1, len(box))
                conv['attribute_name'] = default_attributes(names, conv['velocity'])
            else:
                conv['num_pts'] = np.ones(len(box), int)
            tables.setdefault(kind, {})[token] = conv
    expected = metric_keys(evaluate_detection(tables['gt'], tables['pred']))
    for key, value in expected.items():
        np.testing.assert_equal(result[f'nus/{key}'], value)
    sub = json.loads((tmp_path / 'sub.json').read_text())
    in_range = [d <= CVPR_2019.class_range[n] for n, d in zip(names, np.hypot(*ego_xy.T))]
    assert set(sub['results']) == {'a', 'b'} and len(sub['results']['b']) == sum(in_range) == 34


# ------------------------------------------------------------------------------------------------
# Against nuscenes-devkit 1.2.0 itself
# ------------------------------------------------------------------------------------------------
def _random_sets(seed: int, n_samples: int = 30):
    rng = np.random.default_rng(seed)
    from nuscenes.eval.detection.constants import ATTRIBUTE_NAMES
    gt, pred, racks = {}, {}, {}
    for s in range(n_samples):
        token = f'sample{s}'
        n_gt = int(rng.integers(0, 40))
        names = rng.choice(DETECTION_NAMES[:7] + ('traffic_cone', 'barrier', 'car'), n_gt)
        xy = rng.uniform(-55, 55, (n_gt, 2))
        ego = np.array([100.0 * s, -50.0 * s, 0.0])
        trans = np.c_[xy, rng.uniform(-1, 2, n_gt)] + ego
        size = rng.uniform(0.3, 5, (n_gt, 3))
        yaw = rng.uniform(-np.pi, np.pi, n_gt)
        tilt = rng.normal(0, 0.02, (n_gt, 2))
        rot = np.c_[np.cos(yaw / 2), tilt, np.sin(yaw / 2)]
        rot /= np.linalg.norm(rot, axis=1, keepdims=True)
        vel = rng.normal(0, 2, (n_gt, 2))
        vel[rng.random(n_gt) < 0.1] = np.nan
        attrs = [rng.choice(ATTRIBUTE_NAMES) if rng.random() < 0.8 else '' for _ in range(n_gt)]
        num_pts = rng.integers(0, 20, n_gt)
        gt[token] = dict(translation=trans, size=size, rotation=rot, velocity=vel,
                         detection_name=names.tolist(), attribute_name=attrs,
                         ego_translation=trans - ego, num_pts=num_pts)
        # Predictions: noisy copies of most GT, duplicates, and false positives.
        keep = rng.random(n_gt) < 0.8
        src = np.r_[np.nonzero(keep)[0], rng.choice(max(n_gt, 1), int(rng.integers(0, 5)))]
        src = src[src < n_gt].astype(int)
        n_fp = int(rng.integers(0, 30))
        n_pred = len(src) + n_fp
        p_names = np.r_[names[src], rng.choice(DETECTION_NAMES, n_fp)]
        p_trans = np.r_[trans[src] + rng.normal(0, 0.8, (len(src), 3)),
                        np.c_[rng.uniform(-55, 55, (n_fp, 2)), np.zeros(n_fp)] + ego]
        p_size = np.r_[size[src] * rng.uniform(0.7, 1.3, (len(src), 3)),
                       rng.uniform(0.3, 5, (n_fp, 3))]
        p_yaw = rng.uniform(-np.pi, np.pi, n_pred)
        p_rot = np.c_[np.cos(p_yaw / 2), np.zeros((n_pred, 2)), np.sin(p_yaw / 2)]
        p_vel = rng.normal(0, 2, (n_pred, 2))
        scores = rng.random(n_pred)
        scores[rng.random(n_pred) < 0.3] = 0.5          # ties
        scores = np.round(scores, 2)
        p_attrs = [rng.choice(ATTRIBUTE_NAMES) if rng.random() < 0.9 else '' for _ in range(n_pred)]
        pred[token] = dict(translation=p_trans, size=p_size, rotation=p_rot, velocity=p_vel,
                           detection_name=p_names.tolist(), detection_score=scores,
                           attribute_name=p_attrs, ego_translation=p_trans - ego)
        # A bike rack on some GT bicycles / motorcycles.
        cyc = [i for i, n in enumerate(names) if n in ('bicycle', 'motorcycle')]
        if cyc and rng.random() < 0.7:
            i = cyc[0]
            racks[token] = dict(translation=trans[i:i + 1], size=[[3.0, 3.0, 4.0]],
                                rotation=[[1.0, 0, 0, 0]])
    return gt, pred, racks


def _devkit_boxes(sets: dict, is_pred: bool):
    from nuscenes.eval.common.data_classes import EvalBoxes
    from nuscenes.eval.detection.data_classes import DetectionBox
    out = EvalBoxes()
    for token, b in sets.items():
        n = len(b['detection_name'])
        out.add_boxes(token, [DetectionBox(
            sample_token=token, translation=tuple(b['translation'][i].tolist()),
            size=tuple(b['size'][i].tolist()), rotation=tuple(b['rotation'][i].tolist()),
            velocity=tuple(b['velocity'][i].tolist()),
            ego_translation=tuple(b['ego_translation'][i].tolist()),
            num_pts=-1 if is_pred else int(b['num_pts'][i]),
            detection_name=str(b['detection_name'][i]),
            detection_score=float(b['detection_score'][i]) if is_pred else -1.0,
            attribute_name=str(b['attribute_name'][i])) for i in range(n)])
    return out


class _FakeNusc:
    """What ``filter_eval_boxes`` reads from a NuScenes object: samples' rack annotations."""

    def __init__(self, tokens, racks):
        self.samples = {t: {'anns': [f'{t}-rack'] if t in racks else []} for t in tokens}
        self.anns = {f'{t}-rack': dict(category_name='static_object.bicycle_rack',
                                       translation=list(r['translation'][0]),
                                       size=list(r['size'][0]), rotation=list(r['rotation'][0]))
                     for t, r in racks.items()}

    def get(self, table, token):
        return self.samples[token] if table == 'sample' else self.anns[token]


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_equals_devkit(seed):
    pytest.importorskip('nuscenes')
    from nuscenes.eval.common.loaders import filter_eval_boxes
    from nuscenes.eval.common.utils import center_distance
    from nuscenes.eval.detection.algo import accumulate, calc_ap, calc_tp
    from nuscenes.eval.detection.constants import TP_METRICS
    from nuscenes.eval.detection.data_classes import DetectionConfig, DetectionMetrics

    gt, pred, racks = _random_sets(seed)
    assert sum(len(b['detection_name']) for b in pred.values()) > 200
    cfg = DetectionConfig(dict(CVPR_2019.class_range), 'center_distance',
                          list(CVPR_2019.dist_ths), 2.0, 0.1, 0.1, 500, 5)
    nusc = _FakeNusc(list(gt), racks)
    gt_boxes = filter_eval_boxes(nusc, _devkit_boxes(gt, False), cfg.class_range)
    pred_boxes = filter_eval_boxes(nusc, _devkit_boxes(pred, True), cfg.class_range)
    metrics = DetectionMetrics(cfg)
    ours = evaluate_detection(gt, pred, bike_racks=racks, return_metric_data=True)
    compared = 0
    for name in cfg.class_names:
        for th in cfg.dist_ths:
            md = accumulate(gt_boxes, pred_boxes, name, center_distance, th)
            mine = ours['metric_data'][(name, th)]
            for key in ('recall', 'precision', 'confidence', 'trans_err', 'vel_err', 'scale_err',
                        'orient_err', 'attr_err'):
                np.testing.assert_allclose(getattr(mine, key), getattr(md, key), rtol=0,
                                           atol=1e-9, err_msg=f'{name} {th} {key}')
            ap = calc_ap(md, cfg.min_recall, cfg.min_precision)
            metrics.add_label_ap(name, th, ap)
            assert ours['label_aps'][name][th] == pytest.approx(ap, abs=1e-9)
            compared += ap > 0
        md = accumulate(gt_boxes, pred_boxes, name, center_distance, cfg.dist_th_tp)
        for err in TP_METRICS:
            if name == 'traffic_cone' and err in ('attr_err', 'vel_err', 'orient_err'):
                tp = np.nan
            elif name == 'barrier' and err in ('attr_err', 'vel_err'):
                tp = np.nan
            else:
                tp = calc_tp(md, cfg.min_recall, err)
            metrics.add_label_tp(name, err, tp)
            np.testing.assert_allclose(ours['label_tp_errors'][name][err], tp, rtol=0, atol=1e-9)
    assert compared >= 20          # most classes and thresholds have a non-trivial AP
    assert ours['mean_ap'] == pytest.approx(metrics.mean_ap, abs=1e-9)
    assert ours['nd_score'] == pytest.approx(metrics.nd_score, abs=1e-9)
    for err in TP_METRICS:
        assert ours['tp_errors'][err] == pytest.approx(metrics.tp_errors[err], abs=1e-9)


def test_metric_builds_from_registry_and_reports_bad_samples(shared_data):
    from perception.registry import METRICS
    metric = METRICS.build(dict(type='NuScenesMetric', overflow='error'))
    assert isinstance(metric, NuScenesMetric) and metric.prefix == 'nus'
    frame, boxes_, lidar = _frame(shared_data)
    names = [b['name'] for b in boxes_]
    sample = _metric_sample(frame, lidar, names, 'a')
    del sample['lidar2ego']
    with pytest.raises(DataError, match="'a'.*lidar2ego"):
        metric.process({}, [sample])
    sample = _metric_sample(frame, lidar, names, 'a')
    sample['pred_instances_3d']['bboxes_3d'] = lidar[:, :8]
    with pytest.raises(DataError, match=r"'a'.*\(N, 9\)"):
        metric.process({}, [sample])
    metric.process({}, [_metric_sample(frame, lidar, names, 'a')] * 2)
    with pytest.raises(DataError, match="'a' evaluated twice"):
        metric.evaluate(2)
