"""Points in yawed 3D boxes vs a face-plane reference (mmdetection3d's method) and real KITTI."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from perception.models.ops.points_in_boxes import (
    count_points_in_boxes,
    points_in_boxes,
    points_in_boxes_index,
)


def lidar_corners(box: np.ndarray) -> np.ndarray:
    """(8, 3) corners of one LiDAR box: bottom face 0-3 counter-clockwise, top face 4-7."""
    x, y, z, length, width, height, yaw = box
    sx = np.array([1, 1, -1, -1]) * length / 2
    sy = np.array([-1, 1, 1, -1]) * width / 2
    c, s = math.cos(yaw), math.sin(yaw)
    bottom = np.c_[x + c * sx - s * sy, y + s * sx + c * sy, np.full(4, z)]
    return np.r_[bottom, bottom + [0, 0, height]]


def reference_inside(points: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(P, B) strict inside test from six face planes per box, looping over boxes (test-only).

    As mmdetection3d's ``points_in_rbbox``: a point is outside when it lies on or beyond any face.
    """
    out = np.zeros((len(points), len(boxes)), dtype=bool)
    faces = [(0, 1, 2), (4, 7, 6), (0, 4, 5), (1, 5, 6), (2, 6, 7), (3, 7, 4)]
    for j, box in enumerate(boxes):
        corners = lidar_corners(box)
        centre = corners.mean(axis=0)
        inside = np.ones(len(points), dtype=bool)
        for a, b, c in faces:
            normal = np.cross(corners[b] - corners[a], corners[c] - corners[a])
            if normal @ (centre - corners[a]) < 0:  # point the normal inwards
                normal = -normal
            inside &= (points - corners[a]) @ normal > 0
        out[:, j] = inside
    return out


def random_scene(rng: np.random.Generator, n_points: int, n_boxes: int):
    boxes = np.c_[rng.uniform(-10, 10, (n_boxes, 2)), rng.uniform(-1, 1, n_boxes),
                  rng.uniform(0.5, 5, (n_boxes, 3)), rng.uniform(-math.pi, math.pi, n_boxes)]
    points = np.c_[rng.uniform(-13, 13, (n_points, 2)), rng.uniform(-2, 5, n_points)]
    return points, boxes


def lidar_to_camera_points(points: np.ndarray) -> np.ndarray:
    return np.c_[-points[:, 1], -points[:, 2], points[:, 0]]


def lidar_to_camera_boxes(boxes: np.ndarray) -> np.ndarray:
    x, y, z, length, width, height, yaw = boxes.T
    return np.c_[-y, -z, x, length, height, width, -yaw - math.pi / 2]


def test_matches_face_plane_reference():
    rng = np.random.default_rng(0)
    points, boxes = random_scene(rng, 20000, 40)
    got = points_in_boxes(torch.from_numpy(points), torch.from_numpy(boxes)).numpy()
    ref = reference_inside(points, boxes)
    assert 500 < ref.sum() < 19000  # boxes overlap each other, many points inside some box
    np.testing.assert_array_equal(got, ref)
    counts = count_points_in_boxes(torch.from_numpy(points), torch.from_numpy(boxes)).numpy()
    np.testing.assert_array_equal(counts, ref.sum(axis=0))
    index = points_in_boxes_index(torch.from_numpy(points), torch.from_numpy(boxes)).numpy()
    expected = np.where(ref.any(axis=1), ref.argmax(axis=1), -1)
    np.testing.assert_array_equal(index, expected)
    assert (ref.sum(axis=1) > 1).sum() > 10  # the "first box" rule was exercised


def test_camera_frame_matches_lidar_frame():
    rng = np.random.default_rng(1)
    points, boxes = random_scene(rng, 5000, 20)
    lidar = points_in_boxes(torch.from_numpy(points), torch.from_numpy(boxes))
    camera = points_in_boxes(torch.from_numpy(lidar_to_camera_points(points)),
                             torch.from_numpy(lidar_to_camera_boxes(boxes)), frame='camera')
    assert lidar.sum() > 100
    assert torch.equal(lidar, camera)


def test_boundary_rules():
    box = torch.tensor([[0.0, 0.0, 0.0, 4.0, 2.0, 2.0, 0.0]])
    points = torch.tensor([[0.0, 0.0, 1.0],  # centre
                           [2.0, 0.0, 1.0],  # on the front face
                           [0.0, -1.0, 1.0],  # on a side face
                           [0.0, 0.0, 0.0],  # on the bottom face
                           [0.0, 0.0, 2.0],  # on the top face
                           [1.999, 0.999, 1.999],  # just inside a corner
                           [0.0, 0.0, 2.001]])  # just above
    expected = {'open': [1, 0, 0, 0, 0, 1, 0], 'mmcv': [1, 0, 0, 1, 1, 1, 0],
                'closed': [1, 1, 1, 1, 1, 1, 0]}
    for boundary, flags in expected.items():
        got = points_in_boxes(points, box, boundary=boundary)[:, 0]
        assert got.tolist() == [bool(f) for f in flags], boundary
    # Camera frame: y down, the box spans y in [y - h, y] = [-2, 0].
    cam_box = torch.tensor([[0.0, 0.0, 0.0, 4.0, 2.0, 2.0, 0.0]])
    cam_points = torch.tensor([[0.0, -1.0, 0.0], [0.0, 1.0, 0.0], [0.0, -1.0, 0.9],
                               [1.9, -1.0, 0.0]])
    assert points_in_boxes(cam_points, cam_box, frame='camera')[:, 0].tolist() == [
        True, False, True, True]
    # Rotated: ry = pi/2 turns the heading from +x to -z, so the 4 m edge lies along z.
    cam_box[0, 6] = math.pi / 2
    assert points_in_boxes(cam_points, cam_box, frame='camera')[:, 0].tolist() == [
        True, False, True, False]
    assert points_in_boxes(torch.tensor([[0.0, -1.0, -1.9]]), cam_box, frame='camera').item()


def test_kitti_frame_000008_counts(shared_data):
    """num_lidar_pts of frame 000008's six cars, counted as mmdetection3d's KITTI converter does.

    Labels (camera frame) go to LiDAR boxes through inv(R0_rect @ Tr_velo_to_cam) and
    yaw = -ry - pi/2; the points (already cropped to the camera's field of view) are counted with
    the strict face test. The face-plane reference gives the same numbers.
    """
    root = shared_data / 'kitti_mini' / 'training'
    calib = {}
    for line in (root / 'calib' / '000008.txt').read_text().splitlines():
        if ':' in line:
            key, values = line.split(':', 1)
            calib[key] = np.array(values.split(), dtype=np.float64)
    rect = np.eye(4)
    rect[:3, :3] = calib['R0_rect'].reshape(3, 3)
    velo_to_cam = np.eye(4)
    velo_to_cam[:3] = calib['Tr_velo_to_cam'].reshape(3, 4)
    labels = [line.split() for line in (root / 'label_2' / '000008.txt').read_text().splitlines()
              if line and not line.startswith('DontCare')]
    hwl = np.array([[float(v) for v in f[8:11]] for f in labels])
    loc = np.array([[float(v) for v in f[11:14]] for f in labels])
    ry = np.array([float(f[14]) for f in labels])
    centre = (np.c_[loc, np.ones(len(loc))] @ np.linalg.inv(rect @ velo_to_cam).T)[:, :3]
    boxes = np.c_[centre, hwl[:, 2], hwl[:, 1], hwl[:, 0], -ry - math.pi / 2]
    points = np.fromfile(root / 'velodyne' / '000008.bin', dtype=np.float32).reshape(-1, 4)
    counts = count_points_in_boxes(torch.from_numpy(points), torch.from_numpy(boxes))
    assert counts.tolist() == [1325, 1900, 881, 659, 55, 162]
    ref = reference_inside(points[:, :3].astype(np.float64), boxes).sum(axis=0)
    assert counts.tolist() == ref.tolist()


def test_empty_and_bad_input():
    assert points_in_boxes(torch.zeros(0, 3), torch.zeros(2, 7)).shape == (0, 2)
    assert points_in_boxes_index(torch.zeros(4, 3), torch.zeros(0, 7)).tolist() == [-1] * 4
    assert count_points_in_boxes(torch.zeros(4, 3), torch.zeros(0, 7)).shape == (0,)
    with pytest.raises(ValueError, match='points'):
        points_in_boxes(torch.zeros(4, 2), torch.zeros(1, 7))
    with pytest.raises(ValueError, match='boxes'):
        points_in_boxes(torch.zeros(4, 3), torch.zeros(1, 5))
    with pytest.raises(ValueError, match='boundary'):
        points_in_boxes(torch.zeros(4, 3), torch.zeros(1, 7), boundary='half')


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_cuda_matches_cpu():
    rng = np.random.default_rng(2)
    points, boxes = random_scene(rng, 10000, 30)
    cpu = points_in_boxes_index(torch.from_numpy(points), torch.from_numpy(boxes))
    gpu = points_in_boxes_index(torch.from_numpy(points).cuda(), torch.from_numpy(boxes).cuda())
    assert gpu.is_cuda and torch.equal(gpu.cpu(), cpu)
