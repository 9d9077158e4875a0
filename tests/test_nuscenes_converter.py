"""nuScenes converter: box convention on a real frame, and infos from a generated table set.

The devkit-free tests check the geometry against the real sample ``nuscenes_frame/frame.json``.
The others need nuscenes-devkit (extra ``nus``); they convert the table set that
``tests/nuscenes_tables.py`` writes and compare with its ground truth (derived here with scipy,
independently of the converter's matrices) and with the devkit's own ``Box`` transforms.
"""
from __future__ import annotations

import importlib.util
import json
import pickle
import shutil
import sys

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from perception.datasets.converters.nuscenes_converter import (
    create_nuscenes_infos,
    global_boxes_to_lidar,
    global_velocity_to_lidar,
)
from perception.engine.errors import ConfigError, DataError
from perception.structures import invert_pose, limit_period, quaternion_to_matrix

from .conftest import ROOT, run_tool
from .nuscenes_tables import token, write_nuscenes_tables

LABELS = {'vehicle.car': 0, 'human.pedestrian.adult': 8, 'animal': -1, 'vehicle.bus.rigid': 3,
          'movable_object.trafficcone': 9, 'vehicle.truck': 1}
ATTRIBUTE_IDS = {'vehicle.moving': 5, 'pedestrian.standing': 3, 'vehicle.parked': 6, None: 8}


def orthonormal(pose: np.ndarray) -> np.ndarray:
    """The pose with its rotation re-orthonormalised (frame.json stores float32-rounded ones)."""
    pose = np.array(pose, dtype=np.float64)
    pose[:3, :3] = Rotation.from_matrix(pose[:3, :3]).as_matrix()
    return pose


def points_in_bottom_boxes(points: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """``(M,)`` number of points inside each bottom-centre LiDAR box (brute force)."""
    offset = points[None, :, :3] - boxes[:, None, :3]  # (M, N, 3)
    cos, sin = np.cos(boxes[:, 6:7]), np.sin(boxes[:, 6:7])
    along = cos * offset[..., 0] + sin * offset[..., 1]
    across = -sin * offset[..., 0] + cos * offset[..., 1]
    inside = ((np.abs(along) <= boxes[:, 3:4] / 2) & (np.abs(across) <= boxes[:, 4:5] / 2)
              & (offset[..., 2] >= 0) & (offset[..., 2] <= boxes[:, 5:6]))
    return inside.sum(axis=1)


def bottom_box_corners(box: np.ndarray) -> np.ndarray:
    """``(3, 8)`` corners of a bottom-centre box, in the devkit ``Box.corners()`` order."""
    x, y, z, length, width, height, yaw = box
    local = np.array([length / 2 * np.array([1, 1, 1, 1, -1, -1, -1, -1]),
                      width / 2 * np.array([1, -1, -1, 1, 1, -1, -1, 1]),
                      height / 2 * np.array([1, 1, -1, -1, 1, 1, -1, -1]) + height / 2])
    rotation = Rotation.from_euler('z', yaw).as_matrix()
    return rotation @ local + np.array([[x], [y], [z]])


# ------------------------------------------------------------------------------------------------
# Devkit-free: geometry and the real frame
# ------------------------------------------------------------------------------------------------
def test_quaternion_and_pose_helpers_match_scipy():
    rng = np.random.default_rng(0)
    quats = rng.normal(size=(100, 4))  # (w, x, y, z), not normalised
    expected = Rotation.from_quat(quats[:, [1, 2, 3, 0]]).as_matrix()
    assert np.abs(quaternion_to_matrix(quats) - expected).max() < 1e-12
    pose = np.eye(4)
    pose[:3, :3], pose[:3, 3] = expected[0], [400.0, -1200.0, 3.0]
    assert np.abs(invert_pose(pose) @ pose - np.eye(4)).max() < 1e-12
    assert np.allclose(limit_period([np.pi, -np.pi, 3 * np.pi / 2, 0.5]),
                       [-np.pi, -np.pi, -np.pi / 2, 0.5])
    with pytest.raises(ValueError, match='zero-length'):
        quaternion_to_matrix(np.zeros(4))


def test_hand_computed_box_and_velocity():
    # LiDAR mounted as on nuScenes (x right, y forward): lidar2ego = Rz(-90 deg), at (1, 0, 2);
    # ego at (600, 1600, 0) heading along global +x. A car 10 m ahead, 3 m left, gravity centre
    # 0.5 m below the sensor, heading 0.5 rad, 4 m/s forward and 1 m/s left:
    lidar2global = np.array([[0.0, 1, 0, 601], [-1, 0, 0, 1600], [0, 0, 1, 2], [0, 0, 0, 1]])
    global2lidar = invert_pose(lidar2global)
    quat = [np.cos(0.25), 0, 0, np.sin(0.25)]
    box = global_boxes_to_lidar([[611.0, 1603.0, 1.5]], [[2.0, 4.5, 1.6]], [quat], global2lidar)
    # LiDAR x = -(ego y), LiDAR y = ego x; bottom at 1.5 - 2 - 0.8; yaw = 0.5 + pi/2.
    assert np.allclose(box, [[-3.0, 10.0, -1.3, 4.5, 2.0, 1.6, 0.5 + np.pi / 2]], atol=1e-12)
    velocity, valid = global_velocity_to_lidar(np.array([[4.0, 1.0], [np.nan, np.nan]]),
                                               global2lidar)
    assert np.allclose(velocity, [[-1.0, 4.0], [0.0, 0.0]], atol=1e-12)
    assert valid.tolist() == [True, False]
    with pytest.raises(ValueError, match=r'\(N, 3\)'):
        global_boxes_to_lidar(np.zeros((2, 3)), np.ones((1, 3)), np.ones((2, 4)), global2lidar)


def test_real_frame_boxes_survive_the_global_round_trip(shared_data):
    """frame.json's LiDAR boxes (gravity centre), mapped to global as the devkit stores them,
    come back through the converter's transform as the same boxes with the bottom centre."""
    frame = json.loads((shared_data / 'nuscenes_frame' / 'frame.json').read_text())
    assert 'gravity centre' in frame['box_convention']
    lidar2global = orthonormal(frame['ego2global']) @ orthonormal(frame['lidar']['lidar2ego'])
    boxes = np.array([b['box'] for b in frame['boxes']])
    x, y, z, length, width, height, yaw = boxes.T
    centre = np.c_[x, y, z] @ lidar2global[:3, :3].T + lidar2global[:3, 3]
    rotation = Rotation.from_matrix(lidar2global[:3, :3]) * Rotation.from_euler('z', yaw[:, None])
    quat_wxyz = rotation.as_quat()[:, [3, 0, 1, 2]]
    wlh = np.c_[width, length, height]

    out = global_boxes_to_lidar(centre, wlh, quat_wxyz, invert_pose(lidar2global))
    expected = np.c_[x, y, z - height / 2, length, width, height, limit_period(yaw)]
    assert out.shape == (69, 7)
    assert np.abs(out[:, :6] - expected[:, :6]).max() < 1e-9
    assert np.abs(limit_period(out[:, 6] - expected[:, 6])).max() < 1e-9

    # Velocity: to global as the devkit gives it (vx, vy; vz dropped) and back. Only the LiDAR's
    # tilt against gravity separates the two: the dropped vz = R[2, :2] . v carries at most
    # |v| sin(tilt) and loses |vz| sin(tilt) in the LiDAR x-y plane (tilt 2.1 deg: 0.13 %).
    velocity = np.array([b['velocity'] for b in frame['boxes']])
    global_velocity = (np.c_[velocity, np.zeros(69)] @ lidar2global[:3, :3].T)[:, :2]
    back, valid = global_velocity_to_lidar(global_velocity, invert_pose(lidar2global))
    # Two pedestrians have no estimate (NaN, as the devkit gives it): 0 and flagged invalid.
    assert np.flatnonzero(~valid).tolist() == [14, 27]
    assert (back[~valid] == 0).all()
    speed = np.linalg.norm(velocity[valid], axis=1)
    sin2_tilt = 1 - lidar2global[2, 2] ** 2
    assert 1e-3 < sin2_tilt < 2e-3
    assert np.all(np.linalg.norm(back[valid] - velocity[valid], axis=1)
                  <= sin2_tilt * speed + 1e-12)
    assert speed.max() > 9  # the fast car is in there

    # The real points agree: counted in the bottom-centre boxes they give the annotations'
    # num_lidar_pts (exactly for 61 of 69 boxes, within 10 % or 2 points for the rest); reading
    # the boxes with the wrong z origin or a yaw 90 degrees off does not.
    lidar = frame['lidar']
    points = np.fromfile(shared_data / 'nuscenes_frame' / lidar['path'], dtype=np.float32)
    points = points.reshape(-1, lidar['num_pts_feats'])
    annotated = np.array([b['num_lidar_pts'] for b in frame['boxes']])
    counts = points_in_bottom_boxes(points, out)
    assert (counts == annotated).sum() >= 60
    assert np.all(np.abs(counts - annotated) <= np.maximum(2, 0.1 * annotated))
    gravity_as_bottom = np.c_[x, y, z, length, width, height, yaw]
    yaw_off = out + [0, 0, 0, 0, 0, 0, np.pi / 2]
    for wrong in (gravity_as_bottom, yaw_off):
        assert (points_in_bottom_boxes(points, wrong) == annotated).sum() <= 40


def test_missing_devkit_is_a_clear_error(tmp_path, monkeypatch):
    write_nuscenes_tables(tmp_path)
    # A None entry makes the import fail, also where the devkit is installed and imported.
    for name in ['nuscenes', *(m for m in list(sys.modules) if m.startswith('nuscenes.'))]:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ConfigError, match=r"perception\[nus\]"):
        create_nuscenes_infos(tmp_path, tmp_path / 'out', version='v1.0-mini')


def test_unknown_version_is_refused(tmp_path):
    with pytest.raises(ConfigError, match='v1.0-trainval'):
        create_nuscenes_infos(tmp_path, tmp_path / 'out', version='v2.0')


# ------------------------------------------------------------------------------------------------
# With the devkit: a generated table set
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def converted(tmp_path_factory):
    """The generated v1.0-mini tables, converted with 10 and with 3 sweeps."""
    pytest.importorskip('nuscenes.nuscenes', reason='extra [nus] (nuscenes-devkit) not installed')
    root = tmp_path_factory.mktemp('nuscenes')
    truth = write_nuscenes_tables(root)
    infos = {}
    for max_sweeps in (10, 3):
        out = root / f'infos_{max_sweeps}'
        paths = create_nuscenes_infos(root, out, version='v1.0-mini', max_sweeps=max_sweeps)
        assert sorted(paths) == ['train', 'val']
        infos[max_sweeps] = {split: pickle.loads(path.read_bytes())
                             for split, path in paths.items()}
    return root, truth, infos


def all_entries(infos: dict) -> list[dict]:
    return infos['train']['data_list'] + infos['val']['data_list']


def test_splits_metainfo_and_poses(converted):
    root, truth, infos = converted
    train, val = infos[10]['train'], infos[10]['val']
    # mini_train holds scene-0061 and scene-0553 (tables only, no files: skipped); mini_val
    # scene-0103; scene-0001 is in no mini split.
    assert [e['token'] for e in train['data_list']] == truth['scenes']['scene-0061']
    assert [e['token'] for e in val['data_list']] == truth['scenes']['scene-0103']
    assert [e['sample_idx'] for e in train['data_list']] == [0, 1, 2]
    assert [e['sample_idx'] for e in val['data_list']] == [0, 1]
    meta = train['metainfo']
    assert (meta['dataset'], meta['version'], meta['info_version'], meta['split']) == \
        ('nuscenes', 'v1.0-mini', '1.0', 'train')
    assert list(meta['categories']) == ['car', 'truck', 'construction_vehicle', 'bus', 'trailer',
                                        'barrier', 'motorcycle', 'bicycle', 'pedestrian',
                                        'traffic_cone']
    assert list(meta['categories'].values()) == list(range(10))
    assert 'bottom centre' in meta['box_convention']

    first = train['data_list'][0]
    assert first['timestamp'] == 1532402927.0 and isinstance(first['timestamp'], float)
    assert train['data_list'][1]['timestamp'] == pytest.approx(1532402927.15, abs=1e-6)
    # Key frame 0 of scene-0061: ego at (600, 1600, 0) with identity rotation; LiDAR Rz(-90 deg)
    # at (1, 0, 2).
    assert np.allclose(first['ego2global'], [[1, 0, 0, 600], [0, 1, 0, 1600], [0, 0, 1, 0],
                                             [0, 0, 0, 1]], atol=1e-12)
    assert np.allclose(first['lidar_points']['lidar2ego'],
                       [[0, 1, 0, 1], [-1, 0, 0, 0], [0, 0, 1, 2], [0, 0, 0, 1]], atol=1e-12)
    for entry in all_entries(infos[10]):
        sample = truth['samples'][entry['token']]
        assert entry['lidar_points']['num_pts_feats'] == 5
        assert entry['lidar_points']['lidar_path'] == sample['lidar_path']
        assert (root / entry['lidar_points']['lidar_path']).is_file()
        lidar2global = np.array(entry['ego2global']) @ np.array(entry['lidar_points']['lidar2ego'])
        assert np.abs(lidar2global - sample['lidar2global']).max() < 1e-9
        assert entry['timestamp'] == sample['timestamp'] / 1e6
        assert entry['scene_token'] == token('scene', sample['scene'])


def test_hand_computed_instances_of_the_first_key_frame(converted):
    _, _, infos = converted
    car, pedestrian, animal = infos[10]['train']['data_list'][0]['instances']
    # Global gravity centres minus the LiDAR origin (601, 1600, 2), turned by +90 degrees (the
    # inverse of lidar2ego): (dx, dy) -> (-dy, dx); z moves down by h/2; yaw gains pi/2.
    assert np.allclose(car['bbox_3d'], [-3.0, 10.0, -1.3, 4.5, 2.0, 1.6, 0.5 + np.pi / 2],
                       atol=1e-6)
    assert np.allclose(pedestrian['bbox_3d'], [10.0, -3.0, -2.0, 0.7, 0.6, 1.8,
                                               -2.5 + np.pi / 2], atol=1e-6)
    # Yaw 3 + pi/2 wraps to 3 + pi/2 - 2 pi.
    assert np.allclose(animal['bbox_3d'], [-5.0, 4.0, -2.0, 1.0, 0.5, 0.6,
                                           3.0 - 1.5 * np.pi], atol=1e-6)
    # The car moves at (4, 1) m/s globally -> (-1, 4) in the LiDAR frame (the devkit divides by
    # timestamps in float seconds, hence 1e-5); the others have one annotation: no estimate.
    assert np.allclose(car['velocity'], [-1.0, 4.0], atol=1e-5) and car['velocity_valid']
    assert pedestrian['velocity'] == [0.0, 0.0] and not pedestrian['velocity_valid']
    assert (car['bbox_label'], pedestrian['bbox_label'], animal['bbox_label']) == (0, 8, -1)
    assert (car['attr_label'], pedestrian['attr_label'], animal['attr_label']) == (5, 3, 8)
    assert (car['num_lidar_pts'], car['num_radar_pts']) == (120, 4)
    assert [car['bbox_3d_isvalid'], pedestrian['bbox_3d_isvalid'], animal['bbox_3d_isvalid']] \
        == [True, False, True]


def test_every_instance_matches_the_ground_truth(converted):
    _, truth, infos = converted
    checked = 0
    for entry in all_entries(infos[10]):
        sample = truth['samples'][entry['token']]
        global2lidar = np.linalg.inv(sample['lidar2global'])
        assert len(entry['instances']) == len(sample['annotations'])
        for instance, ann in zip(entry['instances'], sample['annotations']):
            centre = global2lidar[:3, :3] @ ann['centre'] + global2lidar[:3, 3]
            axes = global2lidar[:3, :3] @ ann['rotation'].as_matrix()
            yaw = np.arctan2(axes[1, 0], axes[0, 0])
            width, length, height = ann['wlh']
            expected = [*centre[:2], centre[2] - height / 2, length, width, height]
            assert np.allclose(instance['bbox_3d'][:6], expected, atol=1e-6)
            assert abs(limit_period(instance['bbox_3d'][6] - yaw)) < 1e-9
            assert -np.pi <= instance['bbox_3d'][6] < np.pi
            if ann['velocity'] is None:
                assert instance['velocity'] == [0.0, 0.0] and not instance['velocity_valid']
            else:
                planar = np.array([*ann['velocity'][:2], 0.0])  # vz dropped, as mmdet3d
                assert np.allclose(instance['velocity'], (global2lidar[:3, :3] @ planar)[:2],
                                   atol=1e-4)
                assert instance['velocity_valid']
            assert instance['bbox_label'] == LABELS[ann['category']]
            assert instance['attr_label'] == ATTRIBUTE_IDS[ann['attribute']]
            assert instance['num_lidar_pts'] == ann['num_lidar_pts']
            assert instance['num_radar_pts'] == ann['num_radar_pts']
            assert instance['bbox_3d_isvalid'] == (ann['num_lidar_pts'] + ann['num_radar_pts'] > 0)
            checked += 1
    assert checked == 11  # 3 + 1 + 2 boxes in scene-0061, 2 + 2 in scene-0103


def test_instances_agree_with_the_devkit_box_transform(converted):
    """The devkit's own path (Box moved to the sensor as in get_sample_data): same centre, sizes,
    yaw; and in the level scene the same eight corners."""
    from nuscenes.nuscenes import NuScenes
    from pyquaternion import Quaternion
    root, truth, infos = converted
    nusc = NuScenes('v1.0-mini', str(root), verbose=False)
    for entry in all_entries(infos[10]):
        sample = nusc.get('sample', entry['token'])
        lidar = nusc.get('sample_data', sample['data']['LIDAR_TOP'])
        calib = nusc.get('calibrated_sensor', lidar['calibrated_sensor_token'])
        ego = nusc.get('ego_pose', lidar['ego_pose_token'])
        level = truth['samples'][entry['token']]['scene'] == 'scene-0061'
        for instance, ann_token in zip(entry['instances'], sample['anns']):
            box = nusc.get_box(ann_token)
            box.translate(-np.array(ego['translation']))
            box.rotate(Quaternion(ego['rotation']).inverse)
            box.translate(-np.array(calib['translation']))
            box.rotate(Quaternion(calib['rotation']).inverse)
            width, length, height = box.wlh
            expected = [*box.center[:2], box.center[2] - height / 2, length, width, height]
            assert np.allclose(instance['bbox_3d'][:6], expected, atol=1e-9)
            heading = np.arctan2(box.rotation_matrix[1, 0], box.rotation_matrix[0, 0])
            assert abs(limit_period(instance['bbox_3d'][6] - heading)) < 1e-9
            # pyquaternion's yaw (mmdetection3d's) differs by O(tilt^2) in the tilted scene.
            quirk = abs(limit_period(instance['bbox_3d'][6] - box.orientation.yaw_pitch_roll[0]))
            assert quirk < (1e-9 if level else 1e-4)
            velocity = nusc.box_velocity(ann_token)
            if np.isfinite(velocity).all():
                rotation = (Quaternion(ego['rotation']) * Quaternion(calib['rotation'])).inverse
                lidar_velocity = rotation.rotate(np.array([*velocity[:2], 0.0]))
                assert np.allclose(instance['velocity'], lidar_velocity[:2], atol=1e-12)
            if level:
                corners = bottom_box_corners(np.array(instance['bbox_3d']))
                assert np.abs(corners - box.corners()).max() < 1e-9


def test_sweeps_map_into_the_key_frame(converted):
    root, truth, infos = converted
    world_point = np.array([640.0, 1580.0, 1.0, 1.0])
    counts = {10: [2, 5, 8, 2, 5], 3: [2, 3, 3, 2, 3]}
    for max_sweeps in (10, 3):
        entries = all_entries(infos[max_sweeps])
        assert [len(e['lidar_sweeps']) for e in entries] == counts[max_sweeps]
        for entry in entries:
            sample = truth['samples'][entry['token']]
            in_key = np.linalg.solve(sample['lidar2global'], world_point)
            expected = sample['sweeps'][:max_sweeps]
            assert [s['sample_data_token'] for s in entry['lidar_sweeps']] == \
                [s['token'] for s in expected]
            for sweep, want in zip(entry['lidar_sweeps'], expected):
                assert sweep['lidar_points']['lidar_path'] == want['path']
                assert (root / want['path']).is_file()
                assert sweep['timestamp'] == want['timestamp'] / 1e6
                assert sweep['timestamp'] < entry['timestamp']
                in_sweep = np.linalg.solve(want['lidar2global'], world_point)
                moved = np.array(sweep['lidar_points']['lidar2sensor']) @ in_sweep
                assert np.abs(moved - in_key).max() < 1e-6
            stamps = [s['timestamp'] for s in entry['lidar_sweeps']]
            assert stamps == sorted(stamps, reverse=True)  # newest first
    # Sweeps reach back over earlier key frames: key frame 2 lists key frame 1's LiDAR data.
    key1 = infos[10]['train']['data_list'][1]
    key2 = infos[10]['train']['data_list'][2]
    assert key2['lidar_sweeps'][2]['lidar_points']['lidar_path'] == \
        key1['lidar_points']['lidar_path']


def test_cameras(converted):
    root, truth, infos = converted
    world_point = np.array([606.0, 1597.0, 1.2, 1.0])
    for entry in all_entries(infos[10]):
        sample = truth['samples'][entry['token']]
        in_lidar = np.linalg.solve(sample['lidar2global'], world_point)
        assert list(entry['images']) == ['CAM_FRONT', 'CAM_FRONT_RIGHT', 'CAM_FRONT_LEFT',
                                         'CAM_BACK', 'CAM_BACK_LEFT', 'CAM_BACK_RIGHT']
        for name, image in entry['images'].items():
            want = sample['cameras'][name]
            assert image['img_path'] == want['path'] and (root / want['path']).is_file()
            assert image['sample_data_token'] == want['token']
            assert image['timestamp'] == want['timestamp'] / 1e6
            assert np.abs(np.array(image['cam2img']) - want['intrinsic']).max() < 1e-12
            assert np.abs(np.array(image['cam2ego']) - want['cam2ego']).max() < 1e-9
            # lidar2cam goes through the ego pose at the camera's own timestamp.
            in_camera = np.linalg.solve(want['cam2global'], world_point)
            assert np.abs(np.array(image['lidar2cam']) @ in_lidar - in_camera).max() < 1e-6
    # The cameras fire up to 30 ms from the LiDAR while the ego moves at 8 m/s: ignoring that
    # motion would be off by centimetres.
    front = infos[10]['train']['data_list'][1]['images']['CAM_FRONT']
    static = np.linalg.inv(np.array(front['cam2ego'])) @ np.array(
        infos[10]['train']['data_list'][1]['lidar_points']['lidar2ego'])
    assert np.abs(static - np.array(front['lidar2cam'])).max() > 0.1


def test_test_version_has_no_instances(tmp_path):
    pytest.importorskip('nuscenes.nuscenes', reason='extra [nus] (nuscenes-devkit) not installed')
    truth = write_nuscenes_tables(tmp_path, version='v1.0-test')
    paths = create_nuscenes_infos(tmp_path, tmp_path / 'out', version='v1.0-test')
    assert list(paths) == ['test'] and paths['test'].name == 'nuscenes_infos_test.pkl'
    data_list = pickle.loads(paths['test'].read_bytes())['data_list']
    # scene-0077 and scene-0078 have files; scene-0079 does not (skipped).
    assert [e['token'] for e in data_list] == \
        truth['scenes']['scene-0077'] + truth['scenes']['scene-0078']
    assert all(e['instances'] == [] for e in data_list)
    assert [len(e['lidar_sweeps']) for e in data_list] == [2, 5, 8, 2, 5]


def test_bad_inputs_give_clear_errors(tmp_path):
    pytest.importorskip('nuscenes.nuscenes', reason='extra [nus] (nuscenes-devkit) not installed')
    out = tmp_path / 'out'
    with pytest.raises(DataError, match='nuScenes root .*missing.* not found'):
        create_nuscenes_infos(tmp_path / 'missing', out, version='v1.0-mini')
    root = tmp_path / 'nuscenes'
    truth = write_nuscenes_tables(root)
    with pytest.raises(DataError, match=r"v1.0-trainval not found.*present: \['v1.0-mini'\]"):
        create_nuscenes_infos(root, out, version='v1.0-trainval')

    # A malformed annotation names its token.
    table = root / 'v1.0-mini' / 'sample_annotation.json'
    original = table.read_text()
    records = json.loads(original)
    records[2]['size'] = [1.0, -2.0, 1.0]
    table.write_text(json.dumps(records))
    with pytest.raises(DataError, match=f"annotation {records[2]['token']} has size"):
        create_nuscenes_infos(root, out, version='v1.0-mini')
    table.write_text(original)

    # A key frame's LiDAR file missing inside an available scene.
    second = truth['samples'][truth['scenes']['scene-0061'][1]]
    (root / second['lidar_path']).unlink()
    with pytest.raises(DataError, match=f"{second['lidar_path']}.*not found"):
        create_nuscenes_infos(root, out, version='v1.0-mini')

    # No LiDAR data under the root at all (a wrong --root-path).
    shutil.rmtree(root / 'samples' / 'LIDAR_TOP')
    with pytest.raises(DataError, match='none of the v1.0-mini scenes has its LiDAR files'):
        create_nuscenes_infos(root, out, version='v1.0-mini')

    (root / 'v1.0-mini' / 'map.json').write_text('[{"token": ')
    with pytest.raises(DataError, match='v1.0-mini: the devkit could not load the tables'):
        create_nuscenes_infos(root, out, version='v1.0-mini')

    (root / 'v1.0-mini' / 'ego_pose.json').unlink()
    with pytest.raises(DataError, match='missing table.*ego_pose.json'):
        create_nuscenes_infos(root, out, version='v1.0-mini')
    assert not out.exists() or not any(out.iterdir())  # nothing written


def test_command_line_and_force(tmp_path):
    pytest.importorskip('nuscenes.nuscenes', reason='extra [nus] (nuscenes-devkit) not installed')
    root, out = tmp_path / 'nuscenes', tmp_path / 'infos'
    write_nuscenes_tables(root)
    args = ('tools/create_data.py', 'nuscenes', '--root-path', root, '--version', 'v1.0-mini',
            '--out-dir', out, '--max-sweeps', '2')
    result = run_tool(*args)
    assert result.returncode == 0, result.stderr
    log = result.stdout + result.stderr
    assert 'converting 5 samples' in log
    assert 'skipping 1 of 8 train scenes without LiDAR files under the root (e.g. scene-0553)' \
        in log
    train = out / 'nuscenes_infos_train.pkl'
    before = train.read_bytes()
    data_list = pickle.loads(before)['data_list']
    assert len(data_list) == 3 and max(len(e['lidar_sweeps']) for e in data_list) == 2

    refused = run_tool(*args)
    assert refused.returncode == 2
    assert 'already exists; pass --force' in refused.stderr
    assert 'Traceback' not in refused.stderr
    assert train.read_bytes() == before

    # --force, in-process this time (each tool start costs seconds of imports).
    spec = importlib.util.spec_from_file_location('create_data', ROOT / 'tools/create_data.py')
    create_data = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(create_data)
    create_data.main([str(a) for a in args[1:-1]] + ['5', '--force'])
    assert max(len(e['lidar_sweeps']) for e in pickle.loads(train.read_bytes())['data_list']) == 5
