"""Boxes, points and calibration against KITTI's and nuScenes' own files and hand-worked numbers."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from mmengine.structures import InstanceData
from scipy.spatial.transform import Rotation

from perception.engine.errors import DataError
from perception.structures import (
    CameraBoxes3D,
    Det3DDataSample,
    KittiCalibration,
    LiDARBoxes3D,
    Points,
    SensorPoses,
    limit_period,
    quaternion_to_matrix,
)

# Frame 000008, second object (docs/conventions.md worked example).
CAR_000008 = [-1.17, 1.65, 7.86, 3.68, 1.57, 1.50, 1.90]


@pytest.fixture
def calib_000008(shared_data):
    return KittiCalibration.from_file(shared_data / 'kitti_mini/training/calib/000008.txt')


def _labels(path):
    rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r[0] != 'DontCare']
    values = np.array([[float(v) for v in r[1:15]] for r in rows])
    # camera box [x, y, z, l, h, w, ry] from the file's h w l x y z ry
    boxes = values[:, [10, 11, 12, 9, 7, 8, 13]]
    return values, boxes


def test_worked_example_camera_to_lidar(calib_000008):
    lidar = CameraBoxes3D([CAR_000008]).convert_to('lidar', calib_000008.cam2lidar)
    np.testing.assert_allclose(lidar.numpy()[0], [8.149, 1.186, -1.628, 3.68, 1.50, 1.57, 2.812],
                               atol=1e-3)
    np.testing.assert_allclose(lidar.gravity_center.numpy()[0, 2], -0.843, atol=1e-3)
    back = lidar.convert_to('camera', calib_000008.lidar2cam)
    np.testing.assert_allclose(back.numpy(), [CAR_000008], atol=1e-9)


def test_projection_and_alpha_match_the_label_file(calib_000008, shared_data):
    uv, depth = calib_000008.camera_to_image(np.array([CAR_000008[:3]]))
    np.testing.assert_allclose(uv[0], [507.7, 324.2], atol=0.05)
    assert depth[0] == pytest.approx(7.86 + 2.745884e-03, abs=1e-6)  # P2[2, 3] shifts the depth
    values, boxes = _labels(shared_data / 'kitti_mini/training/label_2/000008.txt')
    alpha = CameraBoxes3D(boxes).local_yaw.numpy()
    # The file rounds to two decimals; alpha from rounded x, z, ry agrees to about 0.01 for
    # objects wholly in view (KITTI's annotation tool gives truncated ones slightly other alphas).
    whole = values[:, 0] == 0
    assert whole.sum() == 4
    np.testing.assert_allclose(alpha[whole], values[whole, 2], atol=0.012)


def test_corners_agree_across_frames_and_cover_the_2d_box(calib_000008, shared_data):
    values, boxes = _labels(shared_data / 'kitti_mini/training/label_2/000008.txt')
    camera = CameraBoxes3D(torch.from_numpy(boxes))
    lidar = camera.convert_to('lidar', calib_000008.cam2lidar)
    camera_corners = camera.corners.numpy()
    in_lidar = np.stack([calib_000008.camera_to_lidar(c) for c in camera_corners])
    # Corner k of one box is corner k of the other: same order in both frames. The residual is
    # the 0.6 degree tilt between KITTI's camera y axis and the LiDAR z axis (docs/conventions.md).
    assert np.abs(in_lidar - lidar.corners.numpy()).max() < 0.06
    # Non-truncated cars: the projected corners' bounding box is the label's 2D box.
    for value, corners in zip(values, camera_corners):
        if value[0] > 0:  # truncated
            continue
        uv, _ = calib_000008.camera_to_image(corners)
        np.testing.assert_allclose([*uv.min(0), *uv.max(0)], value[3:7], atol=4.0)


def test_corner_order_and_gravity_centre():
    box = LiDARBoxes3D([[1.0, 2.0, 3.0, 4.0, 2.0, 1.0, 0.0]])
    corners = box.corners[0].numpy()
    np.testing.assert_allclose(corners[0], [-1, 1, 3])   # back, right, bottom
    np.testing.assert_allclose(corners[6], [3, 3, 4])    # front, left, top
    np.testing.assert_allclose(box.gravity_center.numpy()[0], [1, 2, 3.5])
    camera = CameraBoxes3D([[1.0, 2.0, 3.0, 4.0, 1.0, 2.0, 0.0]])
    np.testing.assert_allclose(camera.gravity_center.numpy()[0], [1, 1.5, 3])
    c = camera.corners[0].numpy()
    assert c[:, 1].max() == pytest.approx(2.0) and c[:, 1].min() == pytest.approx(1.0)
    np.testing.assert_allclose(camera.bev.numpy()[0], [1, 3, 4, 2, 0])
    # ry = pi/2 turns the heading to -z (away from the camera's right, towards it): length on z.
    turned = CameraBoxes3D([[0.0, 0.0, 0.0, 4.0, 1.0, 2.0, math.pi / 2]]).corners[0].numpy()
    np.testing.assert_allclose(np.ptp(turned[:, 2]), 4.0, atol=1e-6)
    front = turned[4:].mean(0)
    assert front[2] == pytest.approx(-2.0, abs=1e-6)


@pytest.mark.parametrize('boxes_cls', [LiDARBoxes3D, CameraBoxes3D])
def test_transforms_keep_corners_consistent(boxes_cls):
    rng = np.random.default_rng(0)
    tensor = np.concatenate([rng.uniform(-20, 20, (50, 3)), rng.uniform(0.5, 5, (50, 3)),
                             rng.uniform(-math.pi, math.pi, (50, 1))], axis=1)
    boxes = boxes_cls(torch.from_numpy(tensor))
    frame = 'lidar' if boxes_cls is LiDARBoxes3D else 'camera'
    points = Points(boxes.corners.reshape(-1, 3), frame=frame)
    for op, args in [('rotate', (0.7,)), ('flip', ('horizontal',)), ('flip', ('vertical',)),
                     ('scale', (1.3,)), ('translate', ([1.0, -2.0, 0.5],))]:
        moved_boxes = getattr(boxes, op)(*args)
        moved_points = getattr(points, op)(*args)
        # A mirror reverses handedness, so compare the sets of corners, not their order.
        got = np.sort(moved_boxes.corners.reshape(len(boxes), 8, 3).numpy(), axis=1)
        want = np.sort(moved_points.coord.reshape(len(boxes), 8, 3).numpy(), axis=1)
        np.testing.assert_allclose(got, want, atol=1e-9, err_msg=op)


def test_flip_and_rotate_yaw_rules():
    box = LiDARBoxes3D([[1.0, 2.0, 0.0, 4.0, 2.0, 1.5, 0.3, 1.0, 2.0]])
    np.testing.assert_allclose(box.flip('horizontal').numpy()[0],
                               [1, -2, 0, 4, 2, 1.5, -0.3, 1, -2])
    np.testing.assert_allclose(box.flip('vertical').numpy()[0],
                               [-1, 2, 0, 4, 2, 1.5, math.pi - 0.3, -1, 2])
    rotated = box.rotate(math.pi / 2).numpy()[0]
    np.testing.assert_allclose(rotated, [-2, 1, 0, 4, 2, 1.5, 0.3 + math.pi / 2, -2, 1], atol=1e-12)
    camera = CameraBoxes3D([[1.0, 0.0, 2.0, 4.0, 1.5, 2.0, 0.3]])
    np.testing.assert_allclose(camera.flip('horizontal').numpy()[0],
                               [-1, 0, 2, 4, 1.5, 2, math.pi - 0.3])
    # Rotating a camera box by +a about +y moves the point (1, 0, 2) as R_y(a) does.
    turned = camera.rotate(0.5).numpy()[0]
    expected = Rotation.from_euler('y', 0.5).apply([1.0, 0.0, 2.0])
    np.testing.assert_allclose(turned[:3], expected, atol=1e-12)
    assert turned[6] == pytest.approx(0.8)


def test_same_frame_conversion_rotates_yaw_and_velocity():
    box = LiDARBoxes3D([[1.0, 0.0, 0.0, 4.0, 2.0, 1.5, 0.2, 3.0, 0.0]])
    matrix = np.eye(4)
    matrix[:3, :3] = Rotation.from_euler('z', 0.5).as_matrix()
    matrix[:3, 3] = [10, 20, 1]
    moved = box.convert_to('lidar', matrix).numpy()[0]
    np.testing.assert_allclose(moved[:3], [10 + math.cos(0.5), 20 + math.sin(0.5), 1], atol=1e-6)
    assert moved[6] == pytest.approx(0.7, abs=1e-6)
    np.testing.assert_allclose(moved[7:], [3 * math.cos(0.5), 3 * math.sin(0.5)], atol=1e-6)


def test_limit_period_and_bad_boxes():
    angles = torch.tensor([-math.pi, math.pi, 3 * math.pi / 2, -3 * math.pi / 2, 0.1])
    np.testing.assert_allclose(limit_period(angles).numpy(),
                               [-math.pi, -math.pi, -math.pi / 2, math.pi / 2, 0.1], atol=1e-6)
    with pytest.raises(DataError, match='non-finite'):
        LiDARBoxes3D([[0, 0, float('nan'), 1, 1, 1, 0]])
    with pytest.raises(DataError, match=r'\(N, 7\)'):
        LiDARBoxes3D(np.zeros((3, 5)))
    assert len(LiDARBoxes3D(np.zeros((0, 7)))) == 0


def test_calibration_errors(tmp_path, shared_data):
    text = (shared_data / 'kitti_mini/training/calib/000008.txt').read_text()
    missing = tmp_path / 'missing.txt'
    missing.write_text('\n'.join(line for line in text.splitlines()
                                 if not line.startswith('R0_rect')))
    with pytest.raises(DataError, match=r'missing.txt: calibration is missing R0_rect'):
        KittiCalibration.from_file(missing)
    short = tmp_path / 'short.txt'
    short.write_text(text.replace('P2: 7.215377000000e+02 ', 'P2: '))
    with pytest.raises(DataError, match=r'short.txt, line 3: P2 has 11 values, expected 12'):
        KittiCalibration.from_file(short)
    with pytest.raises(DataError, match='cannot read'):
        KittiCalibration.from_file(tmp_path / 'absent.txt')


def test_lidar_projection_chain(calib_000008, shared_data):
    points = np.fromfile(shared_data / 'kitti_mini/training/velodyne/000008.bin',
                         dtype=np.float32).reshape(-1, 4)
    uv, depth = calib_000008.lidar_to_image(points[:, :3])
    camera = calib_000008.lidar_to_camera(points[:, :3])
    uv2, depth2 = calib_000008.camera_to_image(camera)
    np.testing.assert_allclose(uv, uv2, atol=1e-6)
    # The file holds the camera's field of view: nearly every point projects into the image.
    inside = (depth > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < 1242) & (uv[:, 1] >= 0) & (uv[:, 1] < 375)
    assert inside.mean() > 0.99
    np.testing.assert_allclose(calib_000008.camera_to_lidar(camera), points[:, :3], atol=1e-4)


def test_quaternion_and_nuscenes_poses(shared_data):
    q = Rotation.random(20, random_state=1)
    xyzw = q.as_quat()
    np.testing.assert_allclose(quaternion_to_matrix(xyzw[:, [3, 0, 1, 2]]), q.as_matrix(),
                               atol=1e-12)
    frame = json.loads((shared_data / 'nuscenes_frame/frame.json').read_text())
    cameras = {name: {'cam2img': np.array(c['cam2img']), 'cam2ego': np.array(c['cam2ego'])}
               for name, c in frame['cameras'].items()}
    poses = SensorPoses(np.array(frame['lidar']['lidar2ego']), np.array(frame['ego2global']),
                        cameras)
    for name, camera in frame['cameras'].items():
        # The file's lidar2cam also carries the ego motion between the LiDAR and camera exposures
        # (through the global frame); the chain through one ego pose differs by that motion only.
        chained = poses.lidar2cam(name)
        np.testing.assert_allclose(chained[:3, :3], np.array(camera['lidar2cam'])[:3, :3],
                                   atol=0.01)
        assert np.abs(chained[:3, 3] - np.array(camera['lidar2cam'])[:3, 3]).max() < 0.5
        cameras[name]['lidar2cam'] = np.array(camera['lidar2cam'])
        np.testing.assert_allclose(poses.lidar2cam(name), camera['lidar2cam'], atol=1e-12)
    # Boxes in front of CAM_FRONT project inside its 1600 x 900 image.
    centres = np.array([b['box'][:3] for b in frame['boxes']])
    uv, depth = poses.lidar_to_image(centres, 'CAM_FRONT')
    in_front = depth > 1
    assert in_front.sum() >= 5
    visible = (uv[:, 0] > 0) & (uv[:, 0] < 1600) & (uv[:, 1] > 0) & (uv[:, 1] < 900)
    assert visible[in_front].mean() > 0.8


def test_points_attributes_and_range():
    points = Points(np.array([[0, 0, 0, 0.5, 0.1], [5, 5, 5, 0.2, 0.0]], dtype=np.float32),
                    attributes={'intensity': 3, 'time_lag': 4})
    np.testing.assert_allclose(points.attribute('time_lag').numpy(), [0.1, 0.0])
    assert points.in_range_3d([0, 0, 0, 5, 5, 5]).tolist() == [True, False]
    with pytest.raises(KeyError, match='intensity'):
        points.attribute('ring')
    with pytest.raises(DataError, match='column 7'):
        Points(np.zeros((2, 4)), attributes={'ring': 7})


def test_data_sample_carries_boxes():
    sample = Det3DDataSample(metainfo={'sample_idx': 8})
    boxes = LiDARBoxes3D(np.zeros((3, 7)))
    sample.gt_instances_3d = InstanceData(bboxes_3d=boxes, labels_3d=torch.tensor([0, 1, 2]))
    picked = sample.gt_instances_3d[torch.tensor([True, False, True])]
    assert isinstance(picked.bboxes_3d, LiDARBoxes3D) and len(picked.bboxes_3d) == 2
    with pytest.raises(TypeError, match='InstanceData'):
        sample.gt_instances_3d = {'bboxes_3d': boxes}
