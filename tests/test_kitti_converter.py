"""The KITTI converter and dataset on the real kitti_mini sample, and on broken copies of it."""
from __future__ import annotations

import math
import pickle
import shutil

import numpy as np
import pytest
import torch

from perception.datasets.converters.kitti_converter import (
    create_kitti_infos,
    difficulty_from_annotations,
)
from perception.datasets.kitti import KittiDataset
from perception.engine.errors import DataError
from perception.structures import CameraBoxes3D, LiDARBoxes3D

from .conftest import run_tool


@pytest.fixture
def kitti_copy(shared_data, tmp_path):
    root = tmp_path / 'kitti'
    shutil.copytree(shared_data / 'kitti_mini', root)
    for path in root.rglob('*'):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return root


@pytest.fixture
def converted(kitti_copy):
    create_kitti_infos(kitti_copy, kitti_copy, workers=1)
    return kitti_copy


def _load(path):
    with open(path, 'rb') as f:
        return pickle.load(f)


def _reference_count(root, frame_id):
    """Points of the camera's view inside each labelled box, counted box by box in plain NumPy.

    Independent of the toolkit: the field of view is the image rectangle of P2 in front of the
    camera, the box test rotates points into each box's own axes in the LiDAR frame.
    """
    calib = {}
    for line in (root / f'training/calib/{frame_id}.txt').read_text().splitlines():
        key, _, values = line.partition(':')
        calib[key] = np.array(values.split(), dtype=np.float64)
    r0 = np.eye(4)
    r0[:3, :3] = calib['R0_rect'].reshape(3, 3)
    tr = np.eye(4)
    tr[:3] = calib['Tr_velo_to_cam'].reshape(3, 4)
    p2 = calib['P2'].reshape(3, 4)
    points = np.fromfile(root / f'training/velodyne/{frame_id}.bin', np.float32).reshape(-1, 4)
    xyz1 = np.c_[points[:, :3].astype(np.float64), np.ones(len(points))]
    projected = xyz1 @ (p2 @ r0 @ tr).T
    u, v = projected[:, 0] / projected[:, 2], projected[:, 1] / projected[:, 2]
    view = (projected[:, 2] > 0) & (u >= 0) & (u < 1242) & (v >= 0) & (v < 375)
    xyz = points[view, :3].astype(np.float64)
    counts = []
    for line in (root / f'training/label_2/{frame_id}.txt').read_text().splitlines():
        fields = line.split()
        if fields[0] == 'DontCare':
            continue
        h, w, length, x, y, z, ry = map(float, fields[8:15])
        centre = (np.linalg.inv(r0 @ tr) @ [x, y, z, 1])[:3]
        yaw = -ry - math.pi / 2
        local = xyz - centre
        along = local[:, 0] * math.cos(yaw) + local[:, 1] * math.sin(yaw)
        across = -local[:, 0] * math.sin(yaw) + local[:, 1] * math.cos(yaw)
        inside = ((np.abs(along) < length / 2) & (np.abs(across) < w / 2)
                  & (local[:, 2] > 0) & (local[:, 2] < h))
        counts.append(int(inside.sum()))
    return counts


def test_difficulty_rule():
    # 000008: heights 181.6, 193.1, 176.6, 85.0, 39.6, 61.9 px; occlusion 3 1 3 1 0 0;
    # truncation 0.88 0 0.34 0 0 0. The 39.6 px car misses "easy" on height alone.
    height = np.array([181.63, 193.10, 176.61, 84.96, 39.60, 61.87, 20.0])
    occluded = np.array([3, 1, 3, 1, 0, 0, -1])
    truncated = np.array([0.88, 0, 0.34, 0, 0, 0, -1])
    assert difficulty_from_annotations(height, occluded, truncated).tolist() == [
        -1, 1, -1, 1, 1, 0, -1]
    assert difficulty_from_annotations(np.array([40.0, 40.01]), np.array([0, 0]),
                                       np.array([0.15, 0.15])).tolist() == [1, 0]


def test_converts_kitti_mini(converted):
    train = _load(converted / 'kitti_infos_train.pkl')
    val = _load(converted / 'kitti_infos_val.pkl')
    trainval = _load(converted / 'kitti_infos_trainval.pkl')
    assert not (converted / 'kitti_infos_test.pkl').exists()  # no ImageSets/test.txt
    assert [d['sample_idx'] for d in train['data_list']] == [0, 7, 8]
    assert [d['sample_idx'] for d in val['data_list']] == [8]
    assert [d['sample_idx'] for d in trainval['data_list']] == [0, 7, 8]
    assert train['metainfo']['categories']['Car'] == 2

    frame = val['data_list'][0]
    assert frame['images']['CAM2']['height'] == 375 and frame['images']['CAM2']['width'] == 1242
    np.testing.assert_allclose(frame['images']['CAM2']['cam2img'][0][:4],
                               [721.5377, 0, 609.5593, 44.85728])
    lidar2img = np.array(frame['images']['CAM2']['lidar2img'])
    np.testing.assert_allclose(lidar2img, np.array(frame['images']['CAM2']['cam2img'])
                               @ np.array(frame['images']['CAM2']['lidar2cam']), atol=1e-9)
    instances = frame['instances']
    assert len(instances) == 10  # 6 cars + 4 DontCare
    second = instances[1]
    np.testing.assert_allclose(second['bbox_3d'], [-1.17, 1.65, 7.86, 3.68, 1.57, 1.50, 1.90])
    np.testing.assert_allclose(second['bbox'], [334.85, 178.94, 624.50, 372.04])
    assert (second['alpha'], second['occluded'], second['truncated']) == (2.04, 1, 0.0)
    assert [i['difficulty'] for i in instances] == [-1, 1, -1, 1, 1, 0, -1, -1, -1, -1]
    assert [i['bbox_label'] for i in instances] == [2] * 6 + [-1] * 4
    # The projected gravity centre and its depth, for monocular heads.
    # gravity centre (-1.17, 0.865, 7.86): u = (721.54 * -1.17 + 609.56 * 7.86 + 44.86) / 7.8627
    np.testing.assert_allclose(second['center_2d'], [507.68, 252.20], atol=0.01)
    assert second['depth'] == pytest.approx(7.8627, abs=1e-3)


def test_num_lidar_pts_on_frame_000008(converted):
    counts = [i['num_lidar_pts'] for i in _load(converted / 'kitti_infos_val.pkl')['data_list'][0]
              ['instances']]
    reference = _reference_count(converted, '000008')
    assert counts[:6] == reference
    assert counts[:6] == [1325, 1900, 881, 659, 55, 162]
    assert counts[6:] == [-1] * 4  # DontCare
    reduced = np.fromfile(converted / 'training/velodyne_reduced/000008.bin',
                          np.float32).reshape(-1, 4)
    assert len(reduced) == 17238  # frame 000008 ships already cropped to the view


def test_camera_only_frame_is_reported_and_kept(converted, caplog):
    frame = _load(converted / 'kitti_infos_train.pkl')['data_list'][1]
    assert frame['sample_idx'] == 7 and 'lidar_points' not in frame
    assert {i['num_lidar_pts'] for i in frame['instances']} == {-1}
    lidar = KittiDataset(str(converted), 'kitti_infos_train.pkl', test_mode=True)
    camera = KittiDataset(str(converted), 'kitti_infos_train.pkl', test_mode=True,
                          modality=dict(use_lidar=False, use_camera=True), box_frame='camera')
    assert [lidar[i]['frame_id'] for i in range(len(lidar))] == ['000000', '000008']
    assert [camera[i]['frame_id'] for i in range(len(camera))] == ['000000', '000007', '000008']


def test_conversion_warns_about_missing_velodyne(kitti_copy):
    result = run_tool('tools/create_data.py', 'kitti', '--root-path', kitti_copy,
                      '--workers', '2')
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert 'velodyne/000007.bin not found' in output and 'camera-only' in output
    again = run_tool('tools/create_data.py', 'kitti', '--root-path', kitti_copy)
    assert again.returncode == 2
    assert 'already exist' in again.stderr and '--force' in again.stderr
    forced = run_tool('tools/create_data.py', 'kitti', '--root-path', kitti_copy, '--force')
    assert forced.returncode == 0, forced.stderr


def test_ground_truth_database(converted):
    database = _load(converted / 'kitti_dbinfos_train.pkl')
    # Frame 000000's pedestrian and 000008's six cars; 000007 has no point cloud.
    assert {name: len(entries) for name, entries in database.items()} == {'Car': 6,
                                                                          'Pedestrian': 1}
    assert [e['num_points_in_gt'] for e in database['Car']] == [1325, 1900, 881, 659, 55, 162]
    for entry in database['Car'] + database['Pedestrian']:
        points = np.fromfile(converted / entry['path'], np.float32).reshape(-1, 4)
        assert len(points) == entry['num_points_in_gt']
        box = LiDARBoxes3D([entry['box3d_lidar']])
        moved = box.translate(-box.tensor[0, :3])  # points are stored relative to the bottom centre
        if len(points):
            assert moved.points_in_boxes(torch.from_numpy(points[:, :3]).double()).all()


def test_dataset_boxes_in_each_frame(converted):
    lidar = KittiDataset(str(converted), 'kitti_infos_val.pkl', test_mode=True)
    camera = KittiDataset(str(converted), 'kitti_infos_val.pkl', test_mode=True,
                          modality=dict(use_lidar=False, use_camera=True), box_frame='camera')
    lidar_boxes = lidar[0]['ann_info']['gt_bboxes_3d']
    camera_boxes = camera[0]['ann_info']['gt_bboxes_3d']
    assert isinstance(lidar_boxes, LiDARBoxes3D) and isinstance(camera_boxes, CameraBoxes3D)
    assert len(lidar_boxes) == 6  # DontCare kept apart
    np.testing.assert_allclose(lidar_boxes.numpy()[1], [8.149, 1.186, -1.628, 3.68, 1.50, 1.57,
                                                        2.812], atol=1e-3)
    assert lidar[0]['ann_info']['dontcare_bboxes'].shape == (4, 4)
    assert lidar[0]['lidar_path'].endswith('training/velodyne_reduced/000008.bin')


@pytest.mark.parametrize('damage, message', [
    (lambda r: (r / 'training/velodyne/000008.bin').write_bytes(
        (r / 'training/velodyne/000008.bin').read_bytes()[:-6]),
     r'000008.bin: \d+ bytes is not a whole number of points'),
    (lambda r: (r / 'training/calib/000000.txt').write_text(
        '\n'.join(line for line in (r / 'training/calib/000000.txt').read_text().splitlines()
                  if not line.startswith('Tr_velo_to_cam'))),
     r'000000.txt: calibration is missing Tr_velo_to_cam'),
    (lambda r: (r / 'training/label_2/000008.txt').write_text(
        'Car 0.00 1 2.04 334.85 178.94 624.50 372.04 1.57 1.50 3.68 -1.17 1.65 7.86\n'),
     r'000008.txt.*line 1.*14'),
    (lambda r: (r / 'training/label_2/000008.txt').write_text(
        'Car 0.00 1 2.04 334.85 178.94 624.50 372.04 1.57 1.50 3.68 nan 1.65 7.86 1.90\n'),
     r'000008.txt.*line 1'),
])
def test_bad_input_names_the_file_and_keeps_previous_infos(converted, damage, message):
    before = (converted / 'kitti_infos_train.pkl').read_bytes()
    damage(converted)
    with pytest.raises(DataError, match=message):
        create_kitti_infos(converted, converted, workers=1, force=True)
    # The failed run wrote no infos: the previous ones are intact, no temporary files remain.
    assert (converted / 'kitti_infos_train.pkl').read_bytes() == before
    assert not list(converted.glob('.*.tmp'))


def test_empty_label_file_is_a_frame_without_objects(kitti_copy):
    (kitti_copy / 'training/label_2/000000.txt').write_text('')
    create_kitti_infos(kitti_copy, kitti_copy, workers=1)
    frame = _load(kitti_copy / 'kitti_infos_train.pkl')['data_list'][0]
    assert frame['sample_idx'] == 0 and frame['instances'] == []
    train = KittiDataset(str(kitti_copy), 'kitti_infos_train.pkl')  # training skips empty frames
    assert [train[i]['frame_id'] for i in range(len(train))] == ['000008']


def test_cli_reports_bad_input_in_one_line(kitti_copy):
    (kitti_copy / 'training/label_2/000008.txt').write_text('Car 0 0 0 1 2 3\n')
    result = run_tool('tools/create_data.py', 'kitti', '--root-path', kitti_copy,
                      '--workers', '1')
    assert result.returncode == 2
    assert 'error:' in result.stderr and '000008.txt' in result.stderr
    assert 'Traceback' not in result.stderr
