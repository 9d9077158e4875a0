"""Headless visualisation: projected 3D boxes, bird's-eye views, colour maps, open3d renders."""
from __future__ import annotations

import importlib.util
import json
import math

import cv2
import numpy as np
import pytest

from perception.datasets.points_io import read_points_bin
from perception.structures import CameraBoxes3D, KittiCalibration, LiDARBoxes3D
from perception.visualization import boxes3d as vis
from perception.visualization.boxes3d import (
    DRAW_EDGES,
    clip_segments,
    draw_projected_boxes,
    project_edges,
    projected_box_extents,
    render_bev,
    render_scene,
)
from perception.visualization.colors import box_colors, class_color, colorize, colormap_lut

from .conftest import ROOT, run_tool

# A pinhole camera: f = 500 px, principal point (320, 240), image 640 x 480.
K = np.array([[500.0, 0, 320, 0], [0, 500, 240, 0], [0, 0, 1, 0]])
H, W = 480, 640
RED = (255, 0, 0)


def _black(height: int = H, width: int = W) -> np.ndarray:
    return np.zeros((height, width, 3), dtype=np.uint8)


def _changed(image: np.ndarray) -> np.ndarray:
    return image.any(axis=-1)


def _edge_samples(boxes, samples: int, near: float = 0.1) -> np.ndarray:
    """Brute-force reference: points along every drawn 3D edge, in front of ``near``, projected
    one by one with the pinhole formula ``u = f x / z + cx`` -> ``(M, 2)`` pixels in the image."""
    corners = boxes.corners.double().numpy()                               # (N, 8, 3)
    t = np.linspace(0.0, 1.0, samples)[:, None]
    points = np.concatenate([corners[:, a] * (1 - t[:, None]) + corners[:, b] * t[:, None]
                             for a, b in DRAW_EDGES], axis=0).reshape(-1, 3)
    points = points[points[:, 2] >= near]
    uv = np.stack([500 * points[:, 0] / points[:, 2] + 320,
                   500 * points[:, 1] / points[:, 2] + 240], axis=1)
    inside = (uv[:, 0] > -0.5) & (uv[:, 0] < W - 0.5) & (uv[:, 1] > -0.5) & (uv[:, 1] < H - 0.5)
    return uv[inside]


def _distance_to_samples(pixels: np.ndarray, samples: np.ndarray) -> np.ndarray:
    """Distance from each ``(row, col)`` pixel to the nearest ``(u, v)`` sample."""
    from scipy.spatial import cKDTree
    distance, _ = cKDTree(samples).query(pixels[:, ::-1].astype(np.float64))
    return distance


def _kitti_frame(shared_data, frame: str = '000008'):
    root = shared_data / 'kitti_mini' / 'training'
    calib = KittiCalibration.from_file(root / 'calib' / f'{frame}.txt')
    rows = [line.split() for line in (root / 'label_2' / f'{frame}.txt').read_text().splitlines()]
    rows = [r for r in rows if r and r[0] != 'DontCare']
    table = np.array([[float(v) for v in r[1:15]] for r in rows])
    boxes = CameraBoxes3D(np.concatenate([table[:, 10:13], table[:, [9, 7, 8]], table[:, 13:14]],
                                         axis=1))
    image = cv2.cvtColor(cv2.imread(str(root / 'image_2' / f'{frame}.png')), cv2.COLOR_BGR2RGB)
    return image, calib, boxes, [r[0] for r in rows], table


# ------------------------------------------------------------------------------- projections
def test_extents_of_a_cube_hand_computed():
    # Corners x, y in [-1, 1], z in [9, 11]: the near face (z = 9) spans 500 / 9 = 55.56 px.
    cube = CameraBoxes3D([[0.0, 1.0, 10.0, 2.0, 2.0, 2.0, 0.0]])
    extents = projected_box_extents(cube, K, (H, W))
    np.testing.assert_allclose(extents[0], [320 - 500 / 9, 240 - 500 / 9, 320 + 500 / 9,
                                            240 + 500 / 9], atol=1e-9)


def test_extents_clip_boxes_crossing_the_near_plane():
    # x in [1, 2], y in [0.5, 1.5], z in [-1.5, 2.5]: the box reaches behind the camera.
    box = CameraBoxes3D([[1.5, 1.5, 0.5, 1.0, 1.0, 4.0, 0.0]])
    extents = projected_box_extents(box, K, (H, W))[0]
    # Left edge: x = 1 at the far end z = 2.5 -> 320 + 200; top: y = 0.5 at z = 2.5 -> 240 + 100.
    # Towards the near plane (z = 0.1) u and v run off the image: clipped to W - 1, H - 1.
    np.testing.assert_allclose(extents, [520, 340, W - 1, H - 1], atol=1e-9)
    unclipped = projected_box_extents(box, K)[0]
    # Without the image clip the near-plane points show: u = 320 + 500 * 2 / 0.1.
    np.testing.assert_allclose(unclipped[[0, 2]], [520, 320 + 500 * 2 / 0.1], atol=1e-6)
    behind = CameraBoxes3D([[0.0, 1.0, -5.0, 2.0, 2.0, 2.0, 0.0]])
    assert np.isnan(projected_box_extents(behind, K, (H, W))).all()
    off_image = CameraBoxes3D([[50.0, 1.0, 5.0, 2.0, 2.0, 2.0, 0.0]])   # far to the right
    assert np.isnan(projected_box_extents(off_image, K, (H, W))).all()


def test_project_edges_clips_at_the_near_plane():
    corners = np.array([[[0.0, 0.0, -1.0], [1.0, 0.0, 1.0], [0.0, 0.0, -2.0]]])
    edges = np.array([[0, 1], [1, 0], [0, 2]])
    segments, valid = project_edges(corners, edges, K, near=0.1)
    assert valid.tolist() == [[True, True, False]]
    # z goes -1 -> 1 as x goes 0 -> 1: the near plane z = 0.1 is crossed at x = 0.55.
    np.testing.assert_allclose(segments[0, 0], [[320 + 500 * 0.55 / 0.1, 240], [820, 240]])
    np.testing.assert_allclose(segments[0, 1], [[820, 240], [320 + 500 * 0.55 / 0.1, 240]])


def test_clip_segments_liang_barsky():
    segments = np.array([[[-10.0, 5.0], [20.0, 5.0]],       # crosses the left border
                         [[2.0, -4.0], [2.0, 30.0]],         # vertical, crosses top and bottom
                         [[-5.0, -5.0], [-1.0, -1.0]],       # outside
                         [[1.0, 1.0], [3.0, 4.0]]])          # inside
    clipped, keep = clip_segments(segments, width=10, height=8)
    assert keep.tolist() == [True, True, False, True]
    np.testing.assert_allclose(clipped[0], [[-0.5, 5.0], [9.5, 5.0]])
    np.testing.assert_allclose(clipped[1], [[2.0, -0.5], [2.0, 7.5]])
    np.testing.assert_allclose(clipped[3], segments[3])


# ---------------------------------------------------------------------------------- drawing
def test_drawn_pixels_lie_on_the_projected_edges():
    box = CameraBoxes3D([[0.8, 1.2, 9.0, 4.0, 1.5, 1.8, 0.5]])
    image = _black()
    drawn = draw_projected_boxes(image, box, K, colors=RED, thickness=2)
    assert not image.any(), 'the input image must not be modified'
    samples = _edge_samples(box, 2000)
    changed = np.argwhere(_changed(drawn))
    assert len(changed) > 500
    # Every changed pixel is near a true edge: OpenCV's anti-aliased lines of thickness t touch
    # pixels up to t + 0.5 px from the centre line (measured 2.51 px for t = 2) ...
    distance = _distance_to_samples(changed, samples)
    assert distance.max() <= 2.6
    full = (drawn[changed[:, 0], changed[:, 1]] == RED).all(axis=1)
    assert distance[full].max() <= 1.5
    # ... every point of every edge (the front cross included) is drawn ...
    pixel = np.rint(samples).astype(int)
    assert _changed(drawn)[pixel[:, 1], pixel[:, 0]].all()
    # ... and the core of the lines has exactly the requested colour.
    assert (drawn[pixel[:, 1], pixel[:, 0]] == RED).all(axis=1).mean() > 0.9
    # The cross marks the front face: its centre is drawn, the back face's centre is not.
    corners = box.corners.double().numpy()[0]
    front, back = corners[4:].mean(axis=0), corners[:4].mean(axis=0)
    for point, expected in ((front, True), (back, False)):
        u, v = 500 * point[0] / point[2] + 320, 500 * point[1] / point[2] + 240
        assert _changed(drawn)[int(round(v)), int(round(u))] == expected


def test_box_crossing_the_camera_plane_does_not_wrap():
    # Corners at z = -1.5 project through the centre of projection to the mirrored side: a naive
    # projection draws lines across the image; the clipped drawing stays on the visible part.
    box = CameraBoxes3D([[1.5, 1.5, 0.5, 1.0, 1.0, 4.0, 0.0]])
    drawn = draw_projected_boxes(_black(), box, K, colors=RED, thickness=1)
    changed = np.argwhere(_changed(drawn))
    samples = _edge_samples(box, 20000)
    assert len(changed) > 100 and len(samples) > 100
    assert _distance_to_samples(changed, samples).max() <= 1.7
    assert changed[:, 1].min() >= 518  # nothing left of u = 520 (the far end's left edge)
    # Entirely behind the camera: nothing is drawn.
    behind = CameraBoxes3D([[0.0, 1.0, -6.0, 2.0, 2.0, 2.0, 0.3]])
    assert not draw_projected_boxes(_black(), behind, K).any()


def test_draw_colours_labels_and_errors():
    boxes = CameraBoxes3D([[-3.0, 1.0, 12.0, 4.0, 1.5, 1.8, 0.0],
                           [3.0, 1.0, 12.0, 0.8, 1.8, 0.8, 0.0]])
    drawn = draw_projected_boxes(_black(), boxes, K, labels=['Car', 'Pedestrian'], thickness=2)
    for index, name in enumerate(['Car', 'Pedestrian']):
        extents = projected_box_extents(boxes[index], K, (H, W))[0].round().astype(int)
        region = drawn[extents[1]:extents[3] + 1, extents[0]:extents[2] + 1].reshape(-1, 3)
        assert (region == class_color(name)).all(axis=1).sum() > 50
    # Captions are filled with the box colour above the box.
    with_scores = draw_projected_boxes(_black(), boxes, K, labels=['Car', 'Pedestrian'],
                                       scores=[0.9, 0.5])
    assert with_scores.sum() > drawn.sum()
    assert not draw_projected_boxes(_black(), CameraBoxes3D(np.zeros((0, 7))), K).any()
    with pytest.raises(ValueError, match='uint8'):
        draw_projected_boxes(np.zeros((H, W, 3)), boxes, K)
    with pytest.raises(ValueError, match='3x4 or 4x4'):
        draw_projected_boxes(_black(), boxes, np.eye(3))
    with pytest.raises(ValueError, match='scores'):
        draw_projected_boxes(_black(), boxes, K, scores=[0.5])


def test_kitti_projected_boxes_cover_the_label_boxes(shared_data, tmp_path):
    image, calib, boxes, names, table = _kitti_frame(shared_data)
    assert names == ['Car'] * 6
    extents = projected_box_extents(boxes, calib.P2, image.shape[:2])
    label_2d = table[:, 3:7]
    # Projected 3D label boxes, clipped to the image, match KITTI's annotated 2D boxes to within
    # 2 px (measured max 1.96 px); the truncated cars (0.88, 0.34) are clipped the same way.
    assert np.abs(extents - label_2d).max() < 3.0
    not_truncated = table[:, 0] == 0
    assert not_truncated.sum() == 4
    assert np.abs(extents[not_truncated] - label_2d[not_truncated]).max() < 2.5
    # The same boxes in the LiDAR frame through lidar2img land on the same pixels, up to the
    # 0.6 degree frame tilt that the camera -> LiDAR yaw rule ignores.
    lidar_boxes = boxes.convert_to('lidar', calib.cam2lidar)
    lidar_extents = projected_box_extents(lidar_boxes, calib.lidar2img(2), image.shape[:2])
    assert np.abs(lidar_extents - extents).max() < 6.0
    drawn = draw_projected_boxes(image, boxes, calib.P2, labels=names)
    # Each car's projected bottom centre, (u, v) = P2 @ location, lies inside its drawn box.
    uv = calib.camera_to_image(table[:, 10:13])[0]
    assert ((uv[:, 0] >= extents[:, 0]) & (uv[:, 0] <= extents[:, 2]) &
            (uv[:, 1] >= extents[:, 1])).all()
    vis.write_png(tmp_path / 'kitti.png', drawn)
    back = cv2.cvtColor(cv2.imread(str(tmp_path / 'kitti.png')), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(back, drawn)


def test_nuscenes_boxes_in_cam_front(shared_data):
    root = shared_data / 'nuscenes_frame'
    frame = json.loads((root / 'frame.json').read_text())
    assert 'gravity centre' in frame['box_convention']
    table = np.array([b['box'] for b in frame['boxes']], dtype=np.float64)
    bottom = table.copy()
    bottom[:, 2] -= bottom[:, 5] / 2
    boxes = LiDARBoxes3D(bottom)
    camera = frame['cameras']['CAM_FRONT']
    lidar2cam = np.array(camera['lidar2cam'])
    lidar2img = np.array(camera['cam2img']) @ lidar2cam[:3]
    image = cv2.cvtColor(cv2.imread(str(root / camera['path'])), cv2.COLOR_BGR2RGB)
    height, width = image.shape[:2]
    assert (height, width) == (900, 1600)

    corners_cam = boxes.corners.double().numpy() @ lidar2cam[:3, :3].T + lidar2cam[:3, 3]
    depth = corners_cam[..., 2]
    extents = projected_box_extents(boxes, lidar2img, (height, width))
    in_front = (depth > 1.0).all(axis=1)
    behind = (depth < 0).all(axis=1)
    assert in_front.sum() >= 40 and behind.sum() >= 10
    assert np.isnan(extents[behind]).all()
    # Boxes in front whose centre projects into the image have a finite 2D box in the image.
    centre_uv = (table[:, :3] @ lidar2img[:, :3].T + lidar2img[:, 3])
    centre_uv = centre_uv[:, :2] / centre_uv[:, 2:]
    centre_in = in_front & (centre_uv[:, 0] >= 0) & (centre_uv[:, 0] < width) & \
        (centre_uv[:, 1] >= 0) & (centre_uv[:, 1] < height)
    assert centre_in.sum() >= 20
    assert np.isfinite(extents[centre_in]).all()
    assert ((extents[centre_in, 0] <= centre_uv[centre_in, 0]) &
            (centre_uv[centre_in, 0] <= extents[centre_in, 2])).all()

    # Brute force: LiDAR points inside a box (in the box's own axes) project inside its 2D box.
    points = read_points_bin(root / frame['lidar']['path'], num_features=5)[:, :3]
    offset = points[:, None, :] - table[None, :, :3]                       # (P, N, 3)
    cos, sin = np.cos(table[:, 6]), np.sin(table[:, 6])
    along = offset[..., 0] * cos + offset[..., 1] * sin
    across = -offset[..., 0] * sin + offset[..., 1] * cos
    inside = ((np.abs(along) <= table[:, 3] / 2) & (np.abs(across) <= table[:, 4] / 2) &
              (np.abs(offset[..., 2]) <= table[:, 5] / 2))                 # (P, N)
    checked = 0
    for index in np.flatnonzero(centre_in & inside.any(axis=0)):
        hom = points[inside[:, index]] @ lidar2img[:, :3].T + lidar2img[:, 3]
        uv = hom[:, :2] / hom[:, 2:]
        uv = uv[(uv[:, 0] >= 0) & (uv[:, 0] <= width - 1) &
                (uv[:, 1] >= 0) & (uv[:, 1] <= height - 1)]
        assert (uv >= extents[index, :2] - 1e-6).all() and (uv <= extents[index, 2:] + 1e-6).all()
        checked += 1
    assert checked >= 15

    drawn = draw_projected_boxes(image, boxes, lidar2img,
                                 labels=[b['name'] for b in frame['boxes']])
    diff = np.abs(drawn.astype(int) - image.astype(int)).sum(axis=-1) > 0
    assert diff.any()
    # Drawing only the boxes behind the camera changes nothing.
    np.testing.assert_array_equal(
        draw_projected_boxes(image, boxes[np.flatnonzero(behind)], lidar2img), image)


# ----------------------------------------------------------------------------- bird's-eye view
def test_bev_points_light_the_expected_pixels():
    points = np.array([[10.05, 0.05, -0.5, 0.2],    # row floor(60.35 / 0.1) = 603, col 399
                       [0.05, 39.95, -2.5, 0.4],    # row 703, col 0
                       [70.35, -39.95, 1.5, 0.6],   # row 0, col 799
                       [70.35, -39.95, -2.5, 0.0],  # same pixel, lower: the top view keeps 1.5
                       [-1.0, 0.0, 0.0, 0.0],       # behind: outside x_range
                       [10.0, 41.0, 0.0, 0.0]])     # outside y_range
    image = render_bev(points)
    assert image.shape == (704, 800, 3)
    lit = np.argwhere(_changed(image))
    assert sorted(map(tuple, lit.tolist())) == [(0, 799), (603, 399), (703, 0)]
    lut = colormap_lut('turbo')
    # Heights map linearly onto the colour map over (-2.5, 1.5) m: -0.5 m -> entry 127.5 -> 128.
    np.testing.assert_array_equal(image[603, 399], lut[128])
    np.testing.assert_array_equal(image[703, 0], lut[0])
    np.testing.assert_array_equal(image[0, 799], lut[255])
    by_intensity = render_bev(points, color_by='intensity', value_range=(0.0, 0.6))
    np.testing.assert_array_equal(by_intensity[0, 799], lut[128])   # mean(0.6, 0.0) = 0.3
    np.testing.assert_array_equal(by_intensity[603, 399], lut[85])  # 0.2 / 0.6 * 255 = 85
    with pytest.raises(ValueError, match='N, >=3'):
        render_bev(np.zeros((4, 2)))


def _rectangle_mask(height, width, rows, cols):
    mask = np.zeros((height, width), dtype=bool)
    mask[rows[0]:rows[1] + 1, [cols[0], cols[1]]] = True
    mask[[rows[0], rows[1]], cols[0]:cols[1] + 1] = True
    return mask


def test_bev_box_lands_on_the_expected_pixels():
    # x in [18.05, 22.05] -> rows (70.4 - x) / 0.1 - 0.5 = 523 .. 483 (pixel centres);
    # y in [-10.95, -8.95] -> columns (40 - y) / 0.1 - 0.5 = 509 .. 489.
    box = LiDARBoxes3D([[20.05, -9.95, -1.0, 4.0, 2.0, 1.5, 0.0]])
    image = render_bev(np.zeros((0, 3)), box, colors=RED)
    expected = _rectangle_mask(704, 800, (483, 523), (489, 509))
    expected[483:504, 499] = True   # heading tick: centre (row 503) to the front edge (row 483)
    np.testing.assert_array_equal(_changed(image), expected)
    assert (image[expected] == RED).all()

    # Turned by +90 degrees (counter-clockwise): heading +y, which is image left.
    turned = LiDARBoxes3D([[20.05, -9.95, -1.0, 4.0, 2.0, 1.5, math.pi / 2]])
    image = render_bev(np.zeros((0, 3)), turned, colors=RED)
    expected = _rectangle_mask(704, 800, (493, 513), (479, 519))
    expected[503, 479:500] = True
    np.testing.assert_array_equal(_changed(image), expected)

    # Ground truth in green under predictions of the same place: the prediction's colour wins.
    both = render_bev(np.zeros((0, 3)), box, gt_boxes=box, colors=RED)
    assert (both[483, 489:510] == RED).all()
    gt_only = render_bev(np.zeros((0, 3)), gt_boxes=box)
    assert (gt_only[483, 489:510] == (0, 255, 0)).all()
    with pytest.raises(TypeError, match='LiDARBoxes3D'):
        render_bev(np.zeros((0, 3)), CameraBoxes3D([[0.0, 1.0, 10.0, 4.0, 1.5, 2.0, 0.0]]))


def test_bev_png_and_kitti_frame(shared_data, tmp_path):
    _, calib, boxes, names, _ = _kitti_frame(shared_data)
    points = read_points_bin(shared_data / 'kitti_mini/training/velodyne/000008.bin')
    lidar_boxes = boxes.convert_to('lidar', calib.cam2lidar)
    out = tmp_path / 'sub' / 'bev.png'
    image = render_bev(points, lidar_boxes, out, labels=names)
    back = cv2.cvtColor(cv2.imread(str(out)), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(back, image)
    assert not list(out.parent.glob('.*.tmp'))
    # The second car (conventions.md's worked example) is at LiDAR (8.149, 1.186): its box centre
    # is pixel row floor((70.4 - 8.149) / 0.1) = 622, column floor((40 - 1.186) / 0.1) = 388;
    # its heading (yaw 2.812: backwards and left) puts the tick between the centre and the back.
    box = lidar_boxes.tensor[1].double().numpy()
    np.testing.assert_allclose(box[:2], [8.149, 1.186], atol=5e-3)
    yaw = box[6]
    for distance in (0.6, 1.2):  # along the heading tick, inside the car's 1.84 m half-length
        x, y = box[0] + distance * math.cos(yaw), box[1] + distance * math.sin(yaw)
        row, col = int((70.4 - x) / 0.1), int((40 - y) / 0.1)
        window = image[row - 1:row + 2, col - 1:col + 2].reshape(-1, 3)
        assert (window == class_color('Car')).all(axis=1).any()
    # Brute force: the lit pixels of the points-only render are exactly the distinct pixels
    # (floor((70.4 - x) / 0.1), floor((40 - y) / 0.1)) of the points in range, one point at a time.
    expected = set()
    for x, y in points[:, :2].astype(np.float64):
        row, col = math.floor((70.4 - x) / 0.1), math.floor((40 - y) / 0.1)
        if 0 <= row < 704 and 0 <= col < 800:
            expected.add((row, col))
    lit = np.argwhere(_changed(render_bev(points)))
    assert set(map(tuple, lit.tolist())) == expected
    assert len(expected) > 5000


# ------------------------------------------------------------------------------- colour maps
def test_colorize_matches_published_colour_maps():
    # End colours of matplotlib's turbo and magma (the published 256-entry tables, rounded).
    values = np.array([0.0, 1.0, -5.0, 7.0, np.nan, np.inf])
    turbo = colorize(values, 0.0, 1.0, 'turbo', invalid_color=(1, 2, 3))
    np.testing.assert_array_equal(turbo, [[48, 18, 59], [122, 4, 3], [48, 18, 59], [122, 4, 3],
                                          [1, 2, 3], [1, 2, 3]])
    magma = colorize(np.array([[10.0, 20.0]]), 10.0, 20.0, 'magma')
    assert magma.shape == (1, 2, 3)
    np.testing.assert_array_equal(magma[0], [[0, 0, 4], [252, 253, 191]])
    ramp = colorize(np.arange(256.0), 0, 255)
    np.testing.assert_array_equal(ramp, colormap_lut('turbo'))
    # Default range: the finite min / max.
    np.testing.assert_array_equal(colorize(np.array([3.0, 5.0, np.nan]))[:2], ramp[[0, 255]])
    with pytest.raises(ValueError, match='unknown colour map'):
        colorize(values, cmap='nope')


def test_box_colors():
    assert box_colors(2, labels=['Car', 'Pedestrian']).tolist() == [
        list(class_color('Car')), list(class_color('Pedestrian'))]
    assert box_colors(3, colors=(1, 2, 3)).tolist() == [[1, 2, 3]] * 3
    assert class_color('some_new_class') == class_color('some_new_class')
    assert box_colors(2, labels=np.array([0, 17])).tolist() == [list(class_color(0)),
                                                                 list(class_color(1))]
    with pytest.raises(ValueError):
        box_colors(2, colors=[(1, 2, 3)] * 3)


# ------------------------------------------------------------------------- open3d / fallback
def test_render_scene_falls_back_to_bev(monkeypatch, tmp_path):
    monkeypatch.setattr(vis, 'open3d_can_render', lambda: False)
    points = np.array([[10.05, 0.05, -0.5]])
    box = LiDARBoxes3D([[20.05, -9.95, -1.0, 4.0, 2.0, 1.5, 0.0]])
    image = render_scene(points, box, tmp_path / 'scene.png', colors=RED)
    np.testing.assert_array_equal(image, render_bev(points, box, colors=RED))
    assert (tmp_path / 'scene.png').is_file()
    with pytest.raises(ValueError, match='backend'):
        render_scene(points, box, backend='vtk')


def test_render_points_open3d(tmp_path):
    pytest.importorskip('open3d')
    if not vis.open3d_can_render():
        pytest.skip('open3d is installed but cannot create an offscreen renderer here')
    box = LiDARBoxes3D([[20.0, 2.0, -1.0, 4.0, 2.0, 1.5, 0.4]])
    width, height, fov = 640, 480, 60.0
    eye, center = np.array([-12.0, 0.0, 18.0]), np.array([20.0, 0.0, 0.0])
    image = vis.render_points_open3d(np.zeros((0, 3)), box, tmp_path / 'o3d.png', width, height,
                                     colors=RED, eye=eye, center=center, field_of_view=fov)
    assert image.shape == (height, width, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(
        cv2.cvtColor(cv2.imread(str(tmp_path / 'o3d.png')), cv2.COLOR_BGR2RGB), image)
    # The wireframe lands where a look-at pinhole camera with that vertical field of view puts it.
    forward = (center - eye) / np.linalg.norm(center - eye)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    corners = box.corners.double().numpy()[0] - eye
    focal = (height / 2) / math.tan(math.radians(fov) / 2)
    u = width / 2 + focal * (corners @ right) / (corners @ forward) - 0.5
    v = height / 2 + focal * (corners @ down) / (corners @ forward) - 0.5
    rows, cols = np.nonzero((image == RED).all(axis=-1))
    assert len(rows) > 100
    np.testing.assert_allclose([cols.min(), cols.max(), rows.min(), rows.max()],
                               [u.min(), u.max(), v.min(), v.max()], atol=3.0)


def test_render_points_open3d_missing_is_a_clear_error():
    try:
        import open3d  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match='perception\\[viz\\]'):
            vis.render_points_open3d(np.zeros((1, 3)), None, None)
    else:
        pytest.skip('open3d is installed')


# ------------------------------------------------------------------------------------ tool
def _load_tool():
    spec = importlib.util.spec_from_file_location('vis_kitti_frame',
                                                  ROOT / 'tools' / 'vis_kitti_frame.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_vis_kitti_frame_tool(shared_data, tmp_path, capsys):
    root = shared_data / 'kitti_mini'
    # Once as a user runs it (a subprocess), then in-process for the other cases (faster).
    result = run_tool('tools/vis_kitti_frame.py', root, '000008', '--out-dir', tmp_path)
    assert result.returncode == 0, result.stderr
    image = cv2.imread(str(tmp_path / '000008_image.png'))
    bev = cv2.imread(str(tmp_path / '000008_bev.png'))
    assert image.shape == (375, 1242, 3) and bev.shape == (704, 800, 3)
    original = cv2.imread(str(root / 'training/image_2/000008.png'))
    assert (image != original).any(axis=-1).sum() > 5000

    tool = _load_tool()
    capsys.readouterr()
    assert tool.main([str(root), '000007', '--out-dir', str(tmp_path)]) == 0
    assert (tmp_path / '000007_image.png').is_file()
    assert not (tmp_path / '000007_bev.png').exists()
    assert 'velodyne/000007.bin not found' in capsys.readouterr().err

    with pytest.raises(SystemExit) as exit_info:
        tool.main([str(root), '123456', '--out-dir', str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith('error:') and '123456.png' in err

