"""3D data transforms: loading, GT paste, global augmentation, flip, filters and packing.

The key check (issue 3, item 5): which points lie in which box never changes under any geometric
augmentation, on the real KITTI frame 000008 converted from kitti_mini.
"""
from __future__ import annotations

import copy
import math
import pickle
import shutil

import cv2
import numpy as np
import pytest
import torch

from perception.datasets.converters.kitti_converter import create_kitti_infos
from perception.datasets.kitti import KittiDataset
from perception.datasets.transforms.augment3d import (
    GlobalRotScaleTrans,
    ObjectNameFilter,
    ObjectRangeFilter,
    ObjectSample,
    PointShuffle,
    PointsRangeFilter,
    RandomFlip3D,
    collision_free,
)
from perception.datasets.transforms.formatting import Pack3DDetInputs
from perception.datasets.transforms.loading import (
    LoadAnnotations3D,
    LoadImage,
    LoadPointsFromFile,
    LoadPointsFromMultiSweeps,
)
from perception.engine.errors import ConfigError, DataError
from perception.models.ops.iou3d import bev_iou
from perception.registry import TRANSFORMS
from perception.structures import CameraBoxes3D, Det3DDataSample, LiDARBoxes3D, Points

# Points of the FOV-reduced cloud inside each Car of frame 000008 (KITTI's counting, asserted by
# the converter's own test against an independent NumPy count).
COUNTS_000008 = [1325, 1900, 881, 659, 55, 162]
PCR = [0, -40, -3, 70.4, 40, 1]

_CONVERTED: dict[str, object] = {}


@pytest.fixture
def kitti_root(shared_data, tmp_path_factory):
    """kitti_mini copied and converted once per session (the tests only read it)."""
    if 'root' not in _CONVERTED:
        root = tmp_path_factory.mktemp('transforms3d') / 'kitti'
        shutil.copytree(shared_data / 'kitti_mini', root)
        for path in root.rglob('*'):
            path.chmod(0o755 if path.is_dir() else 0o644)
        create_kitti_infos(root, root, workers=1)
        _CONVERTED['root'] = root
    return _CONVERTED['root']


def _frame(root, frame_id='000008', box_frame='lidar', modality=None):
    key = (str(root), box_frame, str(modality))
    if key not in _CONVERTED:
        dataset = KittiDataset(str(root), 'kitti_infos_train.pkl', box_frame=box_frame,
                               modality=modality, test_mode=True)
        _CONVERTED[key] = [dataset.get_data_info(i) for i in range(len(dataset))]
    return copy.deepcopy(next(f for f in _CONVERTED[key] if f['frame_id'] == frame_id))


def _lidar_frame(root, frame_id='000008'):
    results = LoadPointsFromFile()(_frame(root, frame_id))
    return LoadAnnotations3D(extra_keys=('num_lidar_pts', 'difficulty'))(results)


def _counts(results):
    return results['gt_bboxes_3d'].points_in_boxes(results['points'].coord).sum(dim=0).tolist()


# ------------------------------------------------------------------------------ invariance
AUGMENTATIONS = {
    'rotate+0.7': [GlobalRotScaleTrans(rot_range=(0.7, 0.7), scale_ratio_range=(1, 1))],
    'rotate-2.9': [GlobalRotScaleTrans(rot_range=(-2.9, -2.9), scale_ratio_range=(1, 1))],
    'scale0.9': [GlobalRotScaleTrans(rot_range=(0, 0), scale_ratio_range=(0.9, 0.9))],
    'scale1.1': [GlobalRotScaleTrans(rot_range=(0, 0), scale_ratio_range=(1.1, 1.1))],
    'translate': [GlobalRotScaleTrans(rot_range=(0, 0), scale_ratio_range=(1, 1),
                                      translation_std=(2.0, 2.0, 0.5), seed=3)],
    'flip-h': [RandomFlip3D(1.0, 0.0)],
    'flip-v': [RandomFlip3D(0.0, 1.0)],
    'flip-both': [RandomFlip3D(1.0, 1.0)],
    'random-all': [GlobalRotScaleTrans(rot_range=math.pi, scale_ratio_range=(0.9, 1.1),
                                       translation_std=(1.0, 1.0, 0.3), seed=11),
                   RandomFlip3D(0.5, 0.5, seed=5), PointShuffle(seed=2)],
    'rotate-flip-rotate': [GlobalRotScaleTrans(rot_range=(1.3, 1.3), scale_ratio_range=(1.05,
                                                                                        1.05)),
                           RandomFlip3D(1.0, 1.0),
                           GlobalRotScaleTrans(rot_range=(-0.4, -0.4), scale_ratio_range=(0.95,
                                                                                          0.95),
                                               translation_std=1.0, seed=9)],
}


@pytest.mark.parametrize('name', list(AUGMENTATIONS))
def test_points_in_box_counts_unchanged(kitti_root, name):
    results = _lidar_frame(kitti_root)
    assert _counts(results) == COUNTS_000008
    assert results['num_lidar_pts'].tolist() == COUNTS_000008
    number_of_points = len(results['points'])
    for transform in AUGMENTATIONS[name]:
        results = transform(results)
    assert _counts(results) == COUNTS_000008
    assert len(results['points']) == number_of_points


def test_global_rot_scale_trans_records_the_transform(kitti_root):
    results = _lidar_frame(kitti_root)
    before_points = results['points'].coord.double().numpy()
    before_boxes = results['gt_bboxes_3d'].tensor.double().numpy()
    results = GlobalRotScaleTrans(rot_range=(0.5, 0.5), scale_ratio_range=(1.2, 1.2),
                                  translation_std=(1.0, 1.0, 1.0), seed=0)(results)
    rotation, scale, trans = (results['pcd_rotation'], results['pcd_scale_factor'],
                              results['pcd_trans'])
    assert results['pcd_rotation_angle'] == 0.5 and scale == 1.2
    np.testing.assert_allclose(rotation, [[math.cos(0.5), -math.sin(0.5), 0],
                                          [math.sin(0.5), math.cos(0.5), 0], [0, 0, 1]])
    assert trans.shape == (3,) and np.abs(trans).max() > 0
    expected = scale * before_points @ rotation.T + trans
    np.testing.assert_allclose(results['points'].coord.numpy(), expected, atol=1e-4)
    boxes = results['gt_bboxes_3d'].tensor.double().numpy()
    np.testing.assert_allclose(boxes[:, :3], scale * before_boxes[:, :3] @ rotation.T + trans,
                               atol=1e-5)
    np.testing.assert_allclose(boxes[:, 3:6], 1.2 * before_boxes[:, 3:6], atol=1e-5)
    np.testing.assert_allclose(boxes[:, 6], before_boxes[:, 6] + 0.5, atol=1e-6)
    assert results['transformation_3d_flow'] == ['R', 'S', 'T']
    # Mapping back with the records restores the original boxes.
    back = results['gt_bboxes_3d'].translate(-trans).scale(1 / scale).rotate(-0.5)
    np.testing.assert_allclose(back.tensor.numpy(), before_boxes, atol=1e-5)


def test_random_draws_are_seeded_or_global():
    boxes = LiDARBoxes3D(torch.tensor([[10.0, 0, -1, 4, 2, 1.5, 0]]))
    points = Points(torch.tensor([[10.0, 0.0, 0.0, 0.5]]), attributes={'intensity': 3})
    draws = []
    for _ in range(2):
        transform = GlobalRotScaleTrans(rot_range=1.0, translation_std=0.5, seed=42)
        draws.append(transform({'points': points, 'gt_bboxes_3d': boxes})['pcd_rotation_angle'])
    assert draws[0] == draws[1]
    np.random.seed(0)
    first = GlobalRotScaleTrans(rot_range=1.0)({'gt_bboxes_3d': boxes})['pcd_rotation_angle']
    np.random.seed(0)
    second = GlobalRotScaleTrans(rot_range=1.0)({'gt_bboxes_3d': boxes})['pcd_rotation_angle']
    np.random.seed(0)
    assert first == second == np.random.uniform(-1.0, 1.0)


# ------------------------------------------------------------------------------ object paste
def test_object_sample_real_database(kitti_root):
    results = _lidar_frame(kitti_root, '000000')  # 800 points, one Pedestrian
    sampler = ObjectSample('kitti_dbinfos_train.pkl', str(kitti_root), seed=0,
                           sample_groups={'Car': 15, 'Pedestrian': 10})
    # The 800-point subsample has no points where the cars go: add one at each car's centre.
    centres = LiDARBoxes3D(sampler.database['Car']['boxes']).gravity_center.float()
    results['points'] = results['points'].new(torch.cat(
        [results['points'].tensor, torch.cat([centres, torch.ones(4, 1)], dim=1)]))
    scene_points = results['points'].tensor.clone()
    # The database: 6 Cars of frame 000008 (two with difficulty -1) and one Pedestrian with 0
    # points (below min_points 5).
    assert len(sampler.database['Car']['paths']) == 4
    assert len(sampler.database['Pedestrian']['paths']) == 0
    db = pickle.load(open(kitti_root / 'kitti_dbinfos_train.pkl', 'rb'))
    results = sampler(results)
    boxes, labels = results['gt_bboxes_3d'], results['gt_labels_3d']
    # 4 usable cars, none overlapping the pedestrian or each other: all pasted.
    assert len(boxes) == 5 and labels.tolist() == [1, 0, 0, 0, 0]
    pasted = {p: e for e in db['Car'] for p in [e['path']]}
    entries = [pasted[p] for p in results['pasted_objects']]
    np.testing.assert_allclose(boxes.tensor[1:].numpy(),
                               np.array([e['box3d_lidar'] for e in entries]), atol=1e-6)
    # No two boxes overlap in BEV.
    iou = bev_iou(boxes.bev.double(), boxes.bev.double())
    assert (iou - torch.diag(torch.diag(iou))).abs().max() == 0
    # Every pasted box holds exactly its database points, and they are the new points.
    counts = boxes.points_in_boxes(results['points'].coord).sum(dim=0).tolist()
    assert counts[1:] == [e['num_points_in_gt'] for e in entries]
    n_pasted = sum(counts[1:])
    assert n_pasted == sum(e['num_points_in_gt'] for e in entries) == 1900 + 659 + 55 + 162
    inside_pasted = boxes[1:].points_in_boxes(results['points'].coord[:n_pasted]).any(dim=1)
    assert inside_pasted.all()
    # Scene points inside pasted boxes are gone, the others kept in order.
    scene_inside = boxes[1:].points_in_boxes(scene_points[:, :3]).any(dim=1)
    assert scene_inside.sum() == 4 and len(results['points']) == 800 + n_pasted
    assert torch.equal(results['points'].tensor[n_pasted:], scene_points[~scene_inside])
    assert results['num_lidar_pts'].tolist()[1:] == [e['num_points_in_gt'] for e in entries]
    assert results['difficulty'].tolist()[1:] == [e['difficulty'] for e in entries]


def test_object_sample_rejects_collisions_with_the_scene(kitti_root):
    # Frame 000008's own cars are the database: each candidate coincides with a scene box.
    results = _lidar_frame(kitti_root, '000008')
    before = results['points'].tensor.clone()
    results = ObjectSample('kitti_dbinfos_train.pkl', str(kitti_root), seed=1)(results)
    assert results['pasted_objects'] == [] and len(results['gt_bboxes_3d']) == 6
    assert torch.equal(results['points'].tensor, before)


def _write_db(root, boxes, names, difficulties, points_per_object=20):
    """A hand-made database: each object's points fill the inner half of its box."""
    rng = np.random.default_rng(0)
    infos: dict[str, list] = {}
    (root / 'db').mkdir(parents=True, exist_ok=True)
    for i, (box, name, difficulty) in enumerate(zip(boxes, names, difficulties)):
        local = rng.uniform(-0.25, 0.25, (points_per_object, 3)) * np.array(box[3:6])
        local[:, 2] += box[5] / 2
        yaw = box[6]
        rot = np.array([[math.cos(yaw), -math.sin(yaw), 0], [math.sin(yaw), math.cos(yaw), 0],
                        [0, 0, 1]])
        pts = np.c_[local @ rot.T, np.full(points_per_object, 0.5)].astype(np.float32)
        path = f'db/{i}_{name}.bin'
        pts.tofile(root / path)
        infos.setdefault(name, []).append({
            'name': name, 'path': path, 'box3d_lidar': list(box), 'difficulty': difficulty,
            'num_points_in_gt': points_per_object, 'image_idx': i, 'gt_idx': 0, 'group_id': 0})
    with open(root / 'dbinfos.pkl', 'wb') as f:
        pickle.dump(infos, f)


def test_object_sample_greedy_collision_check(tmp_path):
    boxes = [[10, 0, -1.5, 4, 2, 1.5, 0.0],      # A
             [11, 0.5, -1.5, 4, 2, 1.5, 0.3],    # B overlaps A
             [30, 0, -1.5, 4, 2, 1.5, 0.0],      # C overlaps the scene box
             [20, 10, -1.5, 4, 2, 1.5, 1.0],     # D free
             [40, 10, -1.5, 4, 2, 1.5, 1.0],     # E difficulty -1: never drawn
             [12, -5, -1.5, 1, 1, 1.8, 0.0]]     # a Pedestrian, drawn for its own class
    _write_db(tmp_path, boxes, ['Car'] * 5 + ['Pedestrian'], [0, 1, 2, 0, -1, 0])
    scene_box = LiDARBoxes3D(torch.tensor([[31.0, 1.0, -1.5, 4, 2, 1.5, 0.5]]))
    scene_points = Points(torch.tensor([[31.0, 1.0, -1.0, 0.1], [11.0, 0.4, -1.0, 0.2],
                                        [50.0, 0.0, 0.0, 0.3]]), attributes={'intensity': 3})
    outcomes = set()
    for seed in range(12):
        sampler = ObjectSample('dbinfos.pkl', str(tmp_path), classes=('Pedestrian', 'Car'),
                               sample_groups={'Car': 10, 'Pedestrian': 2}, seed=seed,
                               min_points={'Car': 5, 'Pedestrian': 5})
        results = sampler({'points': scene_points, 'gt_bboxes_3d': scene_box,
                           'gt_labels_3d': np.array([1])})
        pasted = results['gt_bboxes_3d'].tensor[1:, 0].tolist()
        outcomes.add(tuple(sorted(pasted)))
        # D and the pedestrian always; exactly one of A/B; never C (scene) or E (difficulty).
        assert 20.0 in pasted and 12.0 in pasted and 30.0 not in pasted and 40.0 not in pasted
        assert (10.0 in pasted) != (11.0 in pasted)
        assert results['gt_labels_3d'].tolist() == [1] + [0 if x == 12.0 else 1 for x in pasted]
        all_bev = results['gt_bboxes_3d'].bev.double()
        iou = bev_iou(all_bev, all_bev)
        assert (iou - torch.diag(torch.diag(iou))).max() == 0
        # The scene point at (11, 0.4) lies in A and in B: removed whichever is pasted.
        xs = results['points'].tensor[:, 0].tolist()
        assert 11.0 not in xs[-2:] and results['points'].tensor[-2:, 0].tolist() == [31.0, 50.0]
        assert len(results['points']) == 3 * 20 + 2
    assert outcomes == {(10.0, 12.0, 20.0), (11.0, 12.0, 20.0)}  # both orders happen


def test_collision_free_is_greedy_in_order():
    existing = torch.tensor([[0.0, 0, 4, 2, 0]])
    candidates = torch.tensor([[3.9, 0, 4, 2, 0],     # overlaps existing (by 0.1 m)
                               [4.0, 0, 4, 2, 0],     # touches existing: IoU 0, accepted
                               [7.0, 0, 4, 2, 0],     # overlaps candidate 1
                               [8.0, 0, 4, 2, 0]])    # touches candidate 1: accepted
    assert collision_free(candidates, existing).tolist() == [False, True, False, True]
    assert collision_free(candidates, existing[:0]).tolist() == [True, False, False, True]


def test_object_sample_bad_config(tmp_path):
    _write_db(tmp_path, [[10, 0, -1.5, 4, 2, 1.5, 0.0]], ['Car'], [0])
    with pytest.raises(ConfigError, match='Truck'):
        ObjectSample('dbinfos.pkl', str(tmp_path), sample_groups={'Truck': 3})
    with pytest.raises(DataError, match='not found'):
        ObjectSample('missing.pkl', str(tmp_path))
    sampler = ObjectSample('dbinfos.pkl', str(tmp_path))
    frame = {'points': Points(torch.zeros(1, 4)), 'gt_labels_3d': np.zeros(0, np.int64),
             'gt_bboxes_3d': LiDARBoxes3D(torch.zeros(0, 7)), 'gt_bboxes': np.zeros((0, 4))}
    with pytest.raises(ConfigError, match='gt_bboxes'):
        sampler(frame)


# ------------------------------------------------------------------------------ multi-sweep
def _pose(yaw, translation):
    matrix = np.eye(4)
    matrix[:2, :2] = [[math.cos(yaw), -math.sin(yaw)], [math.sin(yaw), math.cos(yaw)]]
    matrix[:3, 3] = translation
    return matrix


def test_multi_sweep_accumulation(tmp_path):
    key = np.array([[5, 0, 0, 10, 1], [0.2, 0.3, 0, 11, 2]], dtype=np.float32)
    key.tofile(tmp_path / 'key.bin')
    # Each sweep sees the key-frame points q through its own pose; after loading they must land
    # back on q. Plus one point 0.5 m from the sweep's sensor (removed: |x|, |y| < 1) and one at
    # (0.5, 3) (kept: only |x| < 1).
    targets = np.array([[10.0, 2.0, -1.0], [-3.0, 4.0, 0.5]])
    sweeps = []
    for i, (yaw, shift, timestamp) in enumerate([(0.1, (-1.0, 0.2, 0.0), 99.95),
                                                 (-0.3, (-2.0, 0.5, 0.1), 99.9)]):
        sweep2key = _pose(yaw, shift)
        local = (np.c_[targets, np.ones(2)] @ np.linalg.inv(sweep2key).T)[:, :3]
        local = np.r_[local, [[0.5, -0.5, 0.0], [0.5, 3.0, 0.0]]]
        raw = np.c_[local, np.full(4, 20.0 + i), np.full(4, 7.0)].astype(np.float32)
        raw.tofile(tmp_path / f'sweep{i}.bin')
        sweeps.append({'lidar_points': {'lidar_path': f'sweep{i}.bin',
                                        'lidar2sensor': sweep2key.tolist()},
                       'timestamp': timestamp})
    frame = {'lidar_path': str(tmp_path / 'key.bin'), 'timestamp': 100.0, 'lidar_sweeps': sweeps}
    frame = LoadPointsFromFile(num_features=5, use_dims=5)(frame)
    assert frame['points'].attributes == {'intensity': 3, 'ring': 4}
    out = LoadPointsFromMultiSweeps(sweeps_num=10, data_root=str(tmp_path),
                                    test_mode=True)(dict(frame))
    points = out['points']
    assert points.attributes == {'intensity': 3, 'time_lag': 4}
    tensor = points.tensor.double().numpy()
    assert tensor.shape == (2 + 3 + 3, 5)
    np.testing.assert_allclose(tensor[:2], [[5, 0, 0, 10, 0], [0.2, 0.3, 0, 11, 0]], atol=1e-6)
    for i, lag in enumerate([0.05, 0.1]):
        part = tensor[2 + 3 * i: 5 + 3 * i]
        np.testing.assert_allclose(part[:2, :3], targets, atol=1e-5)
        sweep2key = np.array(sweeps[i]['lidar_points']['lidar2sensor'])
        np.testing.assert_allclose(part[2, :3], sweep2key[:3, :3] @ [0.5, 3.0, 0.0]
                                   + sweep2key[:3, 3], atol=1e-5)
        np.testing.assert_allclose(part[:, 4], lag, atol=1e-5)
        np.testing.assert_allclose(part[:, 3], 20.0 + i)
    # More sweeps than wanted: the test mode takes the newest; training draws at random.
    one = LoadPointsFromMultiSweeps(sweeps_num=1, data_root=str(tmp_path),
                                    test_mode=True)(dict(frame))['points'].tensor
    np.testing.assert_allclose(one[2:, 4].numpy(), 0.05, atol=1e-6)
    np.random.seed(1)
    drawn = LoadPointsFromMultiSweeps(sweeps_num=1, data_root=str(tmp_path))(dict(frame))
    assert len(drawn['points']) == 5
    # No sweeps: padded with copies of the key frame minus its close points, time lag 0.
    padded = LoadPointsFromMultiSweeps(sweeps_num=3)(
        {**frame, 'lidar_sweeps': []})['points'].tensor
    assert padded.shape == (2 + 3, 5) and (padded[:, 4] == 0).all()
    assert (padded[2:, 0] == 5).all()
    unpadded = LoadPointsFromMultiSweeps(sweeps_num=3, pad_empty=False)(
        {**frame, 'lidar_sweeps': []})['points']
    assert len(unpadded) == 2
    with pytest.raises(DataError, match='sweep9.bin'):
        bad = [{**sweeps[0], 'lidar_points': {**sweeps[0]['lidar_points'],
                                              'lidar_path': 'sweep9.bin'}}]
        LoadPointsFromMultiSweeps(data_root=str(tmp_path))({**frame, 'lidar_sweeps': bad})
    with pytest.raises(ConfigError, match='5 columns'):
        LoadPointsFromMultiSweeps()({'points': Points(torch.zeros(3, 4))})


# ------------------------------------------------------------------------------ filters
def test_points_range_filter():
    points = Points(torch.tensor([[0.0, 0, 0, 1], [70.4, 0, 0, 2], [10, -40, -3, 3],
                                  [10, 40, 0, 4], [10, 0, 1.0, 5], [10, 0, 0.99, 6]]),
                    attributes={'intensity': 3})
    results = {'points': points, 'pts_semantic_mask': np.arange(6)}
    results = PointsRangeFilter(PCR)(results)
    # min inclusive, max exclusive
    assert results['points'].attribute('intensity').tolist() == [1, 3, 6]
    assert results['pts_semantic_mask'].tolist() == [0, 2, 5]
    with pytest.raises(ConfigError):
        PointsRangeFilter([0, 0, 0, 1, 1])


def test_object_range_and_name_filters():
    boxes = LiDARBoxes3D(torch.tensor([[10.0, 0, -1, 4, 2, 1.5, 3.5],   # kept, yaw wrapped
                                       [-1.0, 0, -1, 4, 2, 1.5, 0.0],   # behind
                                       [10.0, 40, -1, 4, 2, 1.5, 0.0],  # on the edge: out
                                       [69.0, -39, -1, 4, 2, 1.5, -4.0],  # kept, wrapped
                                       [30.0, 5, -1, 4, 2, 1.5, 1.0]]))  # kept, label -1
    results = {'gt_bboxes_3d': boxes, 'gt_labels_3d': np.array([0, 1, 2, 1, -1]),
               'num_lidar_pts': np.array([10, 11, 12, 13, 14])}
    results = ObjectRangeFilter(PCR)(results)
    assert results['gt_labels_3d'].tolist() == [0, 1, -1]
    assert results['num_lidar_pts'].tolist() == [10, 13, 14]
    np.testing.assert_allclose(results['gt_bboxes_3d'].yaw.numpy(),
                               [3.5 - 2 * math.pi, -4.0 + 2 * math.pi, 1.0], atol=1e-6)
    results = ObjectNameFilter(['Car', 'Pedestrian'])(results)
    assert results['gt_labels_3d'].tolist() == [0, 1]
    assert results['num_lidar_pts'].tolist() == [10, 13]
    # Camera boxes are tested on (x, z).
    camera = CameraBoxes3D(torch.tensor([[1.0, 50.0, 10.0, 4, 1.5, 2, 0.0],
                                         [1.0, 0.0, -2.0, 4, 1.5, 2, 0.0]]))
    kept = ObjectRangeFilter([-40, -2, 0, 40, 2, 70])({'gt_bboxes_3d': camera})['gt_bboxes_3d']
    assert kept.tensor[:, 2].tolist() == [10.0]


# ------------------------------------------------------------------------------ flip with image
def _project(matrix, xyz):
    homogeneous = np.c_[xyz, np.ones(len(xyz))] @ np.asarray(matrix)[:3].T
    return homogeneous[:, :2] / homogeneous[:, 2:3]


def _image_extent(matrix, corners):
    """(N, 4) x1y1x2y2 of the projected corners (N, 8, 3)."""
    uv = _project(matrix, corners.reshape(-1, 3)).reshape(-1, 8, 2)
    return np.c_[uv.min(axis=1), uv.max(axis=1)]


def _camera_frame_with_image(root, box_frame):
    results = LoadImage()(_frame(root, box_frame=box_frame,
                                 modality={'use_lidar': True, 'use_camera': True}))
    results = LoadPointsFromFile()(results)
    return LoadAnnotations3D(with_bbox=True, with_label=True, with_bbox_depth=True,
                             extra_keys=('alpha',))(results)


@pytest.mark.parametrize('box_frame', ['lidar', 'camera'])
def test_flip_keeps_image_and_3d_consistent(kitti_root, box_frame):
    results = _camera_frame_with_image(kitti_root, box_frame)
    # Pixel centres are integers: the mirror of column u is column W - 1 - u, as img[:, ::-1].
    last = results['img_shape'][1] - 1
    kept = ('img', 'gt_bboxes', 'centers_2d', 'cam2img', 'lidar2img', 'gt_bboxes_3d', 'points',
            'alpha')
    original = {k: copy.deepcopy(v) for k, v in results.items() if k in kept}
    matrix_key = 'lidar2img' if box_frame == 'lidar' else 'cam2img'
    extent_before = _image_extent(original[matrix_key],
                                  original['gt_bboxes_3d'].corners.double().numpy())
    results = RandomFlip3D(flip_ratio_bev_horizontal=1.0, flip_ratio_bev_vertical=1.0)(results)
    assert results['flip'] and results['pcd_horizontal_flip'] and not results['pcd_vertical_flip']
    assert results['flip_direction'] == 'horizontal'
    assert np.array_equal(results['img'], original['img'][:, ::-1])
    expected_2d = np.c_[last - original['gt_bboxes'][:, 2], original['gt_bboxes'][:, 1],
                        last - original['gt_bboxes'][:, 0], original['gt_bboxes'][:, 3]]
    np.testing.assert_allclose(results['gt_bboxes'], expected_2d)
    # The flipped 3D boxes, projected with the updated matrix, land on the mirrored projections.
    extent_after = _image_extent(results[matrix_key],
                                 results['gt_bboxes_3d'].corners.double().numpy())
    mirrored = np.c_[last - extent_before[:, 2], extent_before[:, 1],
                     last - extent_before[:, 0], extent_before[:, 3]]
    np.testing.assert_allclose(extent_after, mirrored, atol=1e-3)
    # ... and on the flipped 2D label boxes as well as the originals fit the originals: the
    # projection of a fully visible car (objects 1, 3) is within a few pixels of its label.
    for i in (1, 3):
        assert np.abs(extent_after[i] - results['gt_bboxes'][i]).max() < 8
        assert np.abs(extent_after[i] - results['gt_bboxes'][i]).max() == pytest.approx(
            np.abs(extent_before[i] - original['gt_bboxes'][i]).max(), abs=1e-3)
    # Gravity centres project onto the flipped centres_2d: exactly for camera boxes; LiDAR boxes
    # put the gravity centre along LiDAR z, ~0.6 degrees off the camera's vertical (<= 2 px).
    centres = _project(results[matrix_key],
                       results['gt_bboxes_3d'].gravity_center.double().numpy())
    centres_before = _project(original[matrix_key],
                              original['gt_bboxes_3d'].gravity_center.double().numpy())
    np.testing.assert_allclose(centres[:, 0], last - centres_before[:, 0], atol=1e-3)
    np.testing.assert_allclose(centres[:, 1], centres_before[:, 1], atol=1e-3)
    np.testing.assert_allclose(centres, results['centers_2d'],
                               atol=1e-2 if box_frame == 'camera' else 2.0)
    np.testing.assert_allclose(results['centers_2d'][:, 0],
                               last - original['centers_2d'][:, 0])
    # Moving the principal point alone (c_u -> W - 1 - c_u) misses KITTI's baseline term P2[0, 3]:
    # 2 * 44.86 px / depth, ~11 px for the car at 8 m.
    naive = np.array(original['cam2img'], copy=True)
    naive[0, 2] = last - naive[0, 2]
    camera_boxes = (results['gt_bboxes_3d'] if box_frame == 'camera' else
                    results['gt_bboxes_3d'].convert_to('camera', results['lidar2cam']))
    naive_centres = _project(naive, camera_boxes.gravity_center.double().numpy())
    assert np.abs(naive_centres[1, 0] - results['centers_2d'][1, 0]) > 10
    # LiDAR points project with the new lidar2img onto mirrored pixels.
    uv_before = _project(original['lidar2img'], original['points'].coord.double().numpy())
    uv_after = _project(results['lidar2img'], results['points'].coord.double().numpy())
    np.testing.assert_allclose(uv_after[:, 0], last - uv_before[:, 0], atol=1e-3)
    np.testing.assert_allclose(uv_after[:, 1], uv_before[:, 1], atol=1e-3)
    assert np.linalg.det(results['lidar2cam'][:3, :3]) == pytest.approx(1.0)
    # alpha = ry - atan2(x, z): the flipped alpha disagrees with the flipped boxes exactly as the
    # label's rounded alpha disagreed with the original boxes, mirrored.
    lidar2cam = _frame(kitti_root)['lidar2cam']

    def camera_boxes_of(boxes, matrix):
        return boxes if box_frame == 'camera' else boxes.convert_to('camera', matrix)

    error_before = original['alpha'] - camera_boxes_of(original['gt_bboxes_3d'],
                                                       lidar2cam).local_yaw.numpy()
    error_after = results['alpha'] - camera_boxes_of(results['gt_bboxes_3d'],
                                                     results['lidar2cam']).local_yaw.numpy()
    np.testing.assert_allclose(np.angle(np.exp(1j * error_after)),
                               -np.angle(np.exp(1j * error_before)), atol=1e-5)
    np.testing.assert_allclose(results['alpha'],
                               np.angle(np.exp(1j * (np.pi - original['alpha']))), atol=1e-5)
    # Camera boxes taken to the LiDAR frame through the new lidar2cam hold the same points.
    lidar_boxes = (results['gt_bboxes_3d'] if box_frame == 'lidar' else results['gt_bboxes_3d']
                   .convert_to('lidar', np.linalg.inv(results['lidar2cam'])))
    assert lidar_boxes.points_in_boxes(results['points'].coord).sum(0).tolist() == COUNTS_000008


def test_flip_without_sync_keeps_image_and_updates_calibration(kitti_root):
    results = _camera_frame_with_image(kitti_root, 'lidar')
    image = results['img'].copy()
    uv_before = _project(results['lidar2img'], results['points'].coord.double().numpy())
    results = RandomFlip3D(1.0, 1.0, sync_2d=False)(results)
    assert not results['flip'] and results['pcd_vertical_flip']
    assert np.array_equal(results['img'], image)
    assert results['transformation_3d_flow'] == ['HF', 'VF']
    uv_after = _project(results['lidar2img'], results['points'].coord.double().numpy())
    np.testing.assert_allclose(uv_after, uv_before, atol=1e-3)


# ------------------------------------------------------------------------------ loading, packing
def test_load_image_and_errors(kitti_root, tmp_path):
    frame = _frame(kitti_root, modality={'use_lidar': True, 'use_camera': True})
    results = LoadImage()(dict(frame))
    reference = cv2.imread(frame['img_path'])[:, :, ::-1]
    assert results['img'].dtype == np.uint8 and results['img'].shape == (375, 1242, 3)
    assert np.array_equal(results['img'], reference) and results['img_shape'] == (375, 1242)
    assert LoadImage(to_float32=True)(dict(frame))['img'].dtype == np.float32
    with pytest.raises(DataError, match='image_3/000008.png'):  # kitti_mini has no image_3
        LoadImage(stereo=True)(dict(frame))
    (tmp_path / 'bad.png').write_bytes(b'not an image')
    with pytest.raises(DataError, match='bad.png: cannot decode'):
        LoadImage()({'img_path': str(tmp_path / 'bad.png')})
    camera_only = _frame(kitti_root, '000007', modality={'use_lidar': False, 'use_camera': True})
    with pytest.raises(DataError, match='no lidar_path'):
        LoadPointsFromFile()(camera_only)


def test_pack_inputs(kitti_root):
    results = _camera_frame_with_image(kitti_root, 'lidar')
    results = RandomFlip3D(1.0)(results)
    packed = Pack3DDetInputs()(results)
    inputs, sample = packed['inputs'], packed['data_samples']
    assert inputs['points'].shape == (17238, 4) and inputs['points'].dtype == torch.float32
    assert inputs['img'].shape == (3, 375, 1242) and inputs['img'].dtype == torch.uint8
    assert torch.equal(inputs['img'][:, 10, 20], torch.from_numpy(results['img'][10, 20]))
    assert isinstance(sample, Det3DDataSample)
    gt3d, gt2d = sample.gt_instances_3d, sample.gt_instances
    assert isinstance(gt3d.bboxes_3d, LiDARBoxes3D) and len(gt3d) == 6
    assert gt3d.labels_3d.dtype == torch.int64 and gt3d.labels_3d.tolist() == [0] * 6
    assert gt2d.bboxes.shape == (6, 4) and gt2d.bboxes.dtype == torch.float32
    assert gt2d.labels.dtype == torch.int64
    assert gt2d.centers_2d.shape == (6, 2) and gt2d.depths.shape == (6,)
    assert sample.flip is True and sample.frame_id == '000008' and sample.sample_idx == 1
    assert sample.img_shape == (375, 1242) and sample.cam2img.shape == (4, 4)
    # An empty frame packs to empty instances of the right types.
    empty = Pack3DDetInputs(keys=('points', 'gt_bboxes_3d', 'gt_labels_3d'))(
        {'points': Points(torch.zeros(5, 4)), 'gt_bboxes_3d': LiDARBoxes3D(torch.zeros(0, 7)),
         'gt_labels_3d': np.zeros(0, np.int64)})
    assert empty['inputs']['points'].shape == (5, 4)
    assert len(empty['data_samples'].gt_instances_3d) == 0
    with pytest.raises(ValueError, match='cannot pack'):
        Pack3DDetInputs(keys=('points', 'voxels'))


# ------------------------------------------------------------------------------ whole pipeline
def test_kitti_pipeline_end_to_end(kitti_root):
    from mmengine.registry import DefaultScope

    # Configs name transforms without a scope; the runner sets default_scope='perception'.
    pipeline = [
        dict(type='LoadPointsFromFile', num_features=4, use_dims=4),
        dict(type='LoadAnnotations3D'),
        dict(type='ObjectSample', db_info_path='kitti_dbinfos_train.pkl',
             data_root=str(kitti_root), classes=('Car', 'Pedestrian', 'Cyclist'), seed=0),
        dict(type='ObjectNameFilter', classes=('Car', 'Pedestrian', 'Cyclist')),
        dict(type='GlobalRotScaleTrans', rot_range=(-0.78539816, 0.78539816),
             scale_ratio_range=(0.95, 1.05), seed=0),
        dict(type='RandomFlip3D', flip_ratio_bev_horizontal=0.5, seed=0),
        dict(type='PointsRangeFilter', point_cloud_range=PCR),
        dict(type='ObjectRangeFilter', point_cloud_range=PCR),
        dict(type='PointShuffle', seed=0),
        dict(type='Pack3DDetInputs', keys=('points', 'gt_bboxes_3d', 'gt_labels_3d')),
    ]
    for cfg in pipeline:  # every transform is registered and has a readable repr
        assert TRANSFORMS.get(cfg['type']) is not None
    with DefaultScope.overwrite_default_scope('perception'):
        dataset = KittiDataset(str(kitti_root), 'kitti_infos_train.pkl', pipeline=pipeline)
    assert [dataset.get_data_info(i)['frame_id'] for i in range(len(dataset))] == ['000000',
                                                                                    '000008']
    assert 'ObjectSample' in repr(dataset.pipeline)
    packed = dataset[0]  # frame 000000: the four usable database cars get pasted
    points, sample = packed['inputs']['points'], packed['data_samples']
    boxes, labels = sample.gt_instances_3d.bboxes_3d, sample.gt_instances_3d.labels_3d
    assert len(boxes) == 5 and sorted(labels.tolist()) == [0, 0, 0, 0, 1]
    assert len(sample.pasted_objects) == 4
    assert sample.transformation_3d_flow[:3] == ['R', 'S', 'T']
    counts = boxes.points_in_boxes(points[:, :3]).sum(dim=0)
    assert sorted(counts.tolist())[1:] == [55, 162, 659, 1900]  # pasted cars keep their points
    assert ((boxes.yaw >= -math.pi) & (boxes.yaw < math.pi)).all()
    assert points.shape[1] == 4 and points.dtype == torch.float32
    low, high = torch.tensor(PCR[:3]), torch.tensor(PCR[3:])
    assert ((points[:, :3] >= low) & (points[:, :3] < high)).all()


def test_real_nuscenes_points_with_padded_sweeps(shared_data):
    path = next((shared_data / 'nuscenes_frame').glob('*.pcd.bin'))
    frame = LoadPointsFromFile(num_features=5, use_dims=5)({'lidar_path': str(path)})
    points = frame['points']
    assert len(points) == 34688 and points.attributes == {'intensity': 3, 'ring': 4}
    assert 0 <= points.attribute('ring').min() and points.attribute('ring').max() <= 31
    xyz = points.coord.numpy()
    close = ((np.abs(xyz[:, 0]) < 1.0) & (np.abs(xyz[:, 1]) < 1.0)).sum()
    assert close > 0  # the ego vehicle's own returns
    out = LoadPointsFromMultiSweeps(sweeps_num=2)(frame)
    assert len(out['points']) == 34688 + 2 * (34688 - close)
    assert (out['points'].attribute('time_lag') == 0).all()
