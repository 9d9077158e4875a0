"""tools/visualize.py and perception.visualization.overlays: pixels of known boxes, colour maps and
overlays are checked against hand-computed positions and colours."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from perception.datasets.stereo_io import write_kitti_disparity
from perception.engine.errors import DataError
from perception.structures import CameraBoxes3D
from perception.visualization.colors import GT_COLOR, class_color, colormap_lut
from perception.visualization.overlays import (
    colorize_disparity,
    load_box_predictions,
    overlay_segmentation,
    read_disparity,
)

from .conftest import ROOT, run_tool

F, CX, CY = 500.0, 199.5, 99.5  # a 400x200 camera


def _visualize(*args):
    import importlib.util
    spec = importlib.util.spec_from_file_location('visualize_tool', ROOT / 'tools/visualize.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main([str(a) for a in args])


def _near(image, row, col, colour, radius=1):
    """Some pixel within ``radius`` of (row, col) has exactly ``colour``."""
    r0, c0 = max(int(round(row)) - radius, 0), max(int(round(col)) - radius, 0)
    window = image[r0:int(round(row)) + radius + 1, c0:int(round(col)) + radius + 1]
    return bool((window == np.asarray(colour, np.uint8)).all(-1).any())


def _write_calib(path, tr=None):
    p2 = np.array([[F, 0, CX, 0], [0, F, CY, 0], [0, 0, 1, 0]])
    # LiDAR x forward = camera z, LiDAR y left = camera -x, LiDAR z up = camera -y.
    tr = np.array([[0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0]]) if tr is None else tr
    rows = [f'P{i}: ' + ' '.join(map(str, p2.ravel())) for i in range(4)]
    rows += ['R0_rect: ' + ' '.join(map(str, np.eye(3).ravel())),
             'Tr_velo_to_cam: ' + ' '.join(map(str, np.asarray(tr, float).ravel())),
             'Tr_imu_to_velo: ' + ' '.join(map(str, np.eye(3, 4).ravel()))]
    path.write_text('\n'.join(rows) + '\n')
    return p2


def _label_line(x, y, z, length, h, w, ry, name='Car', score=None):
    fields = [name, 0, 0, 0, 0, 0, 10, 10, h, w, length, x, y, z, ry] + ([score] if score else [])
    return ' '.join(map(str, fields))


# --------------------------------------------------------------------------- mono3d
def test_mono3d_draws_gt_and_prediction_edges_where_they_project(tmp_path):
    image = np.full((200, 400, 3), 40, np.uint8)
    cv2.imwrite(str(tmp_path / 'img.png'), image)
    p2 = _write_calib(tmp_path / 'calib.txt')
    gt_box = [-2.0, 1.5, 10.0, 4.0, 1.5, 1.8, 0.0]  # x y z l h w ry (camera, bottom centre)
    (tmp_path / 'gt.txt').write_text(_label_line(-2.0, 1.5, 10.0, 4.0, 1.5, 1.8, 0.0) + '\n')
    pred_box = np.array([[2.5, 1.5, 12.0, 1.0, 1.7, 0.8, 0.0]], np.float32)
    np.savez(tmp_path / 'pred.npz', boxes_3d=pred_box, scores=np.array([0.9], np.float32),
             labels=np.array([1]), bboxes_2d=np.zeros((1, 4), np.float32))
    out = _visualize('mono3d', '--image', tmp_path / 'img.png', '--calib', tmp_path / 'calib.txt',
                     '--gt', tmp_path / 'gt.txt', '--pred', tmp_path / 'pred.npz', '--out',
                     tmp_path / 'out.png')
    assert out.shape == (200, 400, 3)
    written = cv2.imread(str(tmp_path / 'out.png'))[..., ::-1]
    np.testing.assert_array_equal(written, out)
    for box, colour in ((gt_box, GT_COLOR), (pred_box[0].tolist(), class_color('Pedestrian'))):
        corners = CameraBoxes3D(np.array([box])).corners[0].double().numpy()
        uvw = corners @ p2[:, :3].T
        uv = uvw[:, :2] / uvw[:, 2:]
        for a, b in ((0, 4), (1, 5)):  # two side edges (corners 0-3 back face, 4-7 front face)
            mid = (uv[a] + uv[b]) / 2
            assert _near(out, mid[1], mid[0], colour), (box, a, b, mid)
    assert (out[5, 5] == 40).all()  # far from any box: untouched


def test_mono3d_empty_prediction_file_leaves_the_image(tmp_path):
    image = np.random.default_rng(0).integers(0, 255, (200, 400, 3), np.uint8)
    cv2.imwrite(str(tmp_path / 'img.png'), image[..., ::-1])
    _write_calib(tmp_path / 'calib.txt')
    (tmp_path / 'pred.txt').write_text('')
    out = _visualize('mono3d', '--image', tmp_path / 'img.png', '--calib', tmp_path / 'calib.txt',
                     '--pred', tmp_path / 'pred.txt', '--out', tmp_path / 'out.png')
    np.testing.assert_array_equal(out, image)


def test_score_threshold_and_kitti_detection_files(tmp_path):
    (tmp_path / 'det.txt').write_text(
        _label_line(0, 1.5, 10, 4, 1.5, 1.8, 0, score=0.9) + '\n'
        + _label_line(3, 1.5, 20, 4, 1.5, 1.8, 0, name='Pedestrian', score=0.2) + '\n')
    boxes, names, scores = load_box_predictions(tmp_path / 'det.txt', 'camera', score_thr=0.5)
    assert names == ['Car'] and scores.tolist() == [0.9]
    np.testing.assert_allclose(boxes.tensor[0].numpy(), [0, 1.5, 10, 4, 1.5, 1.8, 0])
    with pytest.raises(DataError, match='calibration'):
        load_box_predictions(tmp_path / 'det.txt', 'lidar')


# --------------------------------------------------------------------------- bev
def test_bev_marks_boxes_and_heading_at_their_pixels(tmp_path):
    points = np.array([[20, 0, -1, 0.5], [30, 5, -1, 0.5]], np.float32)
    points.tofile(tmp_path / 'cloud.bin')
    _write_calib(tmp_path / 'calib.txt')
    # Prediction: LiDAR box at x = 20 m, heading +x, 4 m long, 2 m wide.
    np.savez(tmp_path / 'pred.npz', boxes_3d=np.array([[20, 0, -1.5, 4, 2, 1.5, 0]], np.float32),
             scores=np.array([0.8], np.float32), labels=np.array([0]))
    # Ground truth in the camera frame: camera (x, z) = (-(y_lidar), x_lidar) = (-10, 40).
    (tmp_path / 'gt.txt').write_text(_label_line(-10.0, 1.5, 40.0, 4.0, 1.5, 2.0, 0.0) + '\n')
    out = _visualize('bev', '--points', tmp_path / 'cloud.bin', '--calib', tmp_path / 'calib.txt',
                     '--pred', tmp_path / 'pred.npz', '--gt', tmp_path / 'gt.txt', '--out',
                     tmp_path / 'bev.png')
    assert out.shape == (704, 800, 3)
    car = class_color('Car')
    # row = (70.4 - x) / 0.1 - 0.5, col = (40 - y) / 0.1 - 0.5
    assert _near(out, (70.4 - 22) / 0.1 - 0.5, 399.5, car)     # front edge
    assert _near(out, (70.4 - 18) / 0.1 - 0.5, 395.5, car)     # back edge
    assert _near(out, (70.4 - 21) / 0.1 - 0.5, 399.5, car)     # heading tick centre -> front
    assert not _near(out, (70.4 - 19) / 0.1 - 0.5, 399.5, car)  # no tick behind the centre
    # GT: LiDAR (40, 10), camera ry 0 = heading along camera +x = LiDAR -y: 4 m along y.
    assert _near(out, (70.4 - 41) / 0.1 - 0.5, (40 - 10) / 0.1 - 0.5, GT_COLOR)  # side edge x=41
    assert _near(out, (70.4 - 40) / 0.1 - 0.5, (40 - 12) / 0.1 - 0.5, GT_COLOR)  # end edge y=12
    assert _near(out, (70.4 - 40) / 0.1 - 0.5, (40 - 9) / 0.1 - 0.5, GT_COLOR)   # tick towards -y
    assert not _near(out, (70.4 - 40) / 0.1 - 0.5, (40 - 11) / 0.1 - 0.5, GT_COLOR)


def test_bev_with_an_empty_prediction_file_and_no_calib(tmp_path):
    np.zeros((0, 4), np.float32).tofile(tmp_path / 'empty.bin')
    np.savez(tmp_path / 'pred.npz', boxes_3d=np.zeros((0, 7), np.float32),
             scores=np.zeros(0, np.float32), labels=np.zeros(0, np.int64))
    out = _visualize('bev', '--points', tmp_path / 'empty.bin', '--pred', tmp_path / 'pred.npz',
                     '--x-range', '0', '10', '--y-range', '-5', '5', '--resolution', '0.5',
                     '--out', tmp_path / 'bev.png')
    assert out.shape == (20, 20, 3) and not out.any()


def test_bev_camera_labels_without_calib_is_one_clear_line(tmp_path):
    np.zeros((1, 4), np.float32).tofile(tmp_path / 'c.bin')
    (tmp_path / 'gt.txt').write_text(_label_line(0, 1.5, 10, 4, 1.5, 1.8, 0) + '\n')
    result = run_tool('tools/visualize.py', 'bev', '--points', tmp_path / 'c.bin', '--gt',
                      tmp_path / 'gt.txt', '--out', tmp_path / 'x.png')
    assert result.returncode == 2 and 'calibration' in result.stderr
    assert not (tmp_path / 'x.png').exists()


# --------------------------------------------------------------------------- disparity
def test_disparity_colour_map_and_bar(tmp_path):
    disp = np.tile(np.linspace(1, 64, 64, dtype=np.float32), (32, 1))
    disp[0, 0] = 0  # invalid in KITTI files
    write_kitti_disparity(tmp_path / 'd.png', disp)
    loaded = read_disparity(tmp_path / 'd.png')
    assert np.isnan(loaded[0, 0]) and loaded[5, 63] == 64
    out = _visualize('disparity', tmp_path / 'd.png', '--out', tmp_path / 'd_color.png')
    lut = colormap_lut('turbo')
    assert out.shape == (32, 64 + 24 + 64, 3)
    assert (out[0, 0] == 0).all()                      # invalid: black
    np.testing.assert_array_equal(out[5, 63], lut[255])  # vmax
    np.testing.assert_array_equal(out[5, 0], lut[0])                       # vmin = 1
    np.testing.assert_array_equal(out[5, 1], lut[round((2 - 1) / 63 * 255)])  # 2 px
    np.testing.assert_array_equal(out[0, 70], lut[255])    # bar top: vmax
    np.testing.assert_array_equal(out[31, 70], lut[0])     # bar bottom: vmin
    assert out[:, 64 + 24:].any()                          # tick labels
    fixed = colorize_disparity(disp, vmin=0, vmax=128, colorbar=False)
    np.testing.assert_array_equal(fixed[3, 63], lut[round(64 / 128 * 255)])


# --------------------------------------------------------------------------- segmentation
def test_seg_overlay_blends_the_palette(tmp_path):
    image = np.full((8, 10, 3), 100, np.uint8)
    labels = np.zeros((8, 10), np.int64)
    labels[:, 5:] = 2
    labels[0, 0] = 255
    out = overlay_segmentation(image, labels, [[0, 0, 0], [0, 0, 0], [200, 50, 0]], alpha=0.5)
    np.testing.assert_array_equal(out[3, 7], [150, 75, 50])
    np.testing.assert_array_equal(out[3, 1], [50, 50, 50])
    np.testing.assert_array_equal(out[0, 0], [100, 100, 100])  # ignore: image kept
    cv2.imwrite(str(tmp_path / 'img.png'), image)
    cv2.imwrite(str(tmp_path / 'labels.png'), labels.astype(np.uint8))
    cli = _visualize('seg', '--labels', tmp_path / 'labels.png', '--image', tmp_path / 'img.png',
                     '--palette', 'cityscapes', '--alpha', '1', '--out', tmp_path / 'o.png')
    np.testing.assert_array_equal(cli[3, 7], [70, 70, 70])      # Cityscapes class 2: building
    np.testing.assert_array_equal(cli[3, 1], [128, 64, 128])    # class 0: road
    np.savez(tmp_path / 'pred.npz', labels=labels)
    cfg = ROOT / 'configs/segformer/segformer_r18_1xb8-300_synthetic-seg-64x128.py'
    alone = _visualize('seg', '--labels', tmp_path / 'pred.npz', '--palette', cfg, '--out',
                       tmp_path / 'p.png')
    np.testing.assert_array_equal(alone[3, 7], [60, 95, 185])   # the config's palette, class 2


def test_seg_labels_beyond_the_palette_is_one_clear_line(tmp_path):
    cv2.imwrite(str(tmp_path / 'labels.png'), np.full((4, 4), 40, np.uint8))
    result = run_tool('tools/visualize.py', 'seg', '--labels', tmp_path / 'labels.png',
                      '--palette', 'cityscapes', '--out', tmp_path / 'o.png')
    assert result.returncode == 2 and 'palette' in result.stderr
