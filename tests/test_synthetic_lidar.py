"""Synthetic LiDAR scenes in the KITTI layout: geometry, labels, converter and metric."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from mmengine.fileio import load

from perception.datasets.converters.kitti_converter import create_kitti_infos, fov_mask
from perception.datasets.points_io import read_points_bin
from perception.datasets.synthetic.lidar import (
    BEAM_ELEVATIONS_DEG,
    CLUTTER,
    GROUND,
    SENSOR_HEIGHT,
    SIZE_CORRELATION,
    _sample_objects,
    beam_directions,
    cast_rays,
    render_lidar_scene,
    write_synthetic_kitti_lidar,
)
from perception.datasets.synthetic.mono3d import CLASS_SIZES
from perception.engine.errors import ConfigError
from perception.evaluation.kitti import KittiMetric, annos_from_camera_boxes
from perception.models.ops.points_in_boxes import points_in_boxes
from perception.structures import CameraBoxes3D, KittiCalibration

STEP = 0.4     # coarse azimuth step: fast scenes, same geometry


def _surface_distance(points: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(M, P) distance of points to the surfaces of LiDAR boxes (brute force, box frames)."""
    offset = points[:, None, :3] - boxes[None, :, :3]
    offset[..., 2] -= boxes[None, :, 5] / 2
    c, s = np.cos(boxes[:, 6]), np.sin(boxes[:, 6])
    local = np.stack([c * offset[..., 0] + s * offset[..., 1],
                      -s * offset[..., 0] + c * offset[..., 1], offset[..., 2]], -1)
    excess = np.abs(local) - boxes[None, :, 3:6] / 2
    outside = np.linalg.norm(np.maximum(excess, 0), axis=-1)
    inside = -excess.max(axis=-1)
    return np.where(excess.max(axis=-1) > 0, outside, inside)


def test_cast_rays_hand_computed():
    # A 2 x 2 x 2 box whose near face is at x = 9; rays along +x at height 0 and down at 45 deg.
    box = np.array([[10.0, 0.0, -1.0, 2.0, 2.0, 2.0, 0.0]])
    down = np.array([np.cos(np.pi / 4), 0.0, -np.sin(np.pi / 4)])
    out = cast_rays(np.array([[1.0, 0, 0], [0, 1.0, 0], down]), box)
    np.testing.assert_allclose(out['t'][0], 9.0, atol=1e-5)      # front face
    assert out['box'].tolist() == [0, -1, -1]
    assert np.isinf(out['t'][1])                                   # horizontal ray: no return
    np.testing.assert_allclose(out['t'][2], SENSOR_HEIGHT * np.sqrt(2), atol=1e-9)   # ground
    np.testing.assert_allclose(out['cos'], [1.0, 0.0, np.sin(np.pi / 4)], atol=1e-6)
    assert out['potential'].tolist() == [1]
    # Rotated 90 deg the box shows the same face; the ray 0.5 m up hits its side obliquely.
    up = np.array([10.0, 0.0, 0.5]) / np.linalg.norm([10.0, 0.0, 0.5])
    out = cast_rays(up[None], box + [0, 0, 0, 0, 0, 0, np.pi / 2])
    np.testing.assert_allclose(out['t'][0], 9.0 / up[0], atol=1e-4)


def test_noise_free_points_lie_on_their_objects():
    scene = render_lidar_scene(2, 7, azimuth_step=STEP, range_noise=0.0, dropout=0.0)
    points, labels = scene['points'], scene['point_labels']
    boxes = scene['boxes_lidar']
    assert (labels >= 0).sum() > 500 and (labels == CLUTTER).any()
    # Ground returns lie on the plane z = -1.73.
    np.testing.assert_allclose(points[labels == GROUND, 2], -SENSOR_HEIGHT, atol=1e-5)
    # Every object return lies on the surface of one of its parts.
    parts, owners = scene['parts'], scene['part_owners']
    on = labels >= 0
    distance = np.abs(_surface_distance(points[on].astype(np.float64), parts))
    own = owners[None] == labels[on][:, None]
    assert np.where(own, distance, np.inf).min(axis=1).max() < 2e-3
    # ... inside its label box, and the per-object counts are what points_in_boxes finds.
    inside = points_in_boxes(torch.from_numpy(points[labels != GROUND, :3]).double(),
                             torch.from_numpy(boxes), frame='lidar', boundary='closed').numpy()
    np.testing.assert_array_equal(inside.sum(axis=0), scene['num_points'])
    assert (scene['num_points'] == np.bincount(labels[on], minlength=len(boxes))).all()


def test_noisy_points_counted_with_margin_and_beams_reproduced():
    scene = render_lidar_scene(2, 7, azimuth_step=STEP, range_noise=0.02, dropout=0.1)
    points, labels = scene['points'].astype(np.float64), scene['point_labels']
    grown = scene['boxes_lidar'].copy()
    grown[:, 2] -= 0.1
    grown[:, 3:6] += 0.2
    inside = points_in_boxes(torch.from_numpy(points[labels != GROUND, :3]),
                             torch.from_numpy(grown), frame='lidar').numpy()
    np.testing.assert_array_equal(inside.sum(axis=0), scene['num_points'])
    # Noise moves points along their ray: each keeps its beam's elevation exactly.
    elevation = np.degrees(np.arctan2(points[:, 2], np.hypot(points[:, 0], points[:, 1])))
    np.testing.assert_allclose(elevation, BEAM_ELEVATIONS_DEG[scene['beam']], atol=1e-3)
    assert len(np.unique(scene['beam'])) == 64
    assert BEAM_ELEVATIONS_DEG[0] == 2.0 and BEAM_ELEVATIONS_DEG[-1] == -24.9
    # Ground z spread is the range noise projected on the vertical: < 5 sigma |sin(elevation)|.
    ground = labels == GROUND
    bound = 5 * 0.02 * np.abs(np.sin(np.radians(BEAM_ELEVATIONS_DEG[scene['beam'][ground]])))
    assert (np.abs(points[ground, 2] + SENSOR_HEIGHT) <= bound + 1e-5).all()
    assert np.abs(points[ground, 2] + SENSOR_HEIGHT).max() > 1e-3
    # 10 % dropout: about 90 % of the rays return (nearly every downward ray meets the ground).
    rays = len(beam_directions(STEP)[1])
    assert 0.6 * rays < len(points) < 0.9 * rays


def test_density_falls_with_range():
    scene = render_lidar_scene(0, 0, azimuth_step=STEP, clutter=False,
                               objects=([], np.zeros((0, 7))))
    assert len(scene['annos']['name']) == 0 and (scene['point_labels'] == GROUND).all()
    xy = np.hypot(scene['points'][:, 0], scene['points'][:, 1])
    # Ground points per square metre in annuli at 10 and 30 m: the beam geometry gives ~1/r^2 or
    # faster (the lower block's wider spacing).
    near = ((xy > 9) & (xy < 11)).sum() / (np.pi * (11 ** 2 - 9 ** 2))
    far = ((xy > 29) & (xy < 31)).sum() / (np.pi * (31 ** 2 - 29 ** 2))
    assert near > 6 * far > 0


def test_occlusion_fewer_points_and_levels():
    back = ('Car', np.array([20.0, 0.0, -SENSOR_HEIGHT, 4.0, 1.7, 1.5, 0.0]))
    front = ('Car', np.array([10.0, 0.3, -SENSOR_HEIGHT, 4.0, 1.7, 1.5, 0.0]))
    alone = render_lidar_scene(0, 0, azimuth_step=0.2, clutter=False, dropout=0.0,
                               objects=([back[0]], back[1][None]))
    both = render_lidar_scene(0, 0, azimuth_step=0.2, clutter=False, dropout=0.0,
                              objects=([front[0], back[0]], np.stack([front[1], back[1]])))
    assert alone['num_points'][0] > 100
    assert both['num_points'][1] < 0.5 * alone['num_points'][0]
    assert both['num_points'][0] > both['num_points'][1]
    assert alone['annos']['occluded'].tolist() == [0]
    assert both['annos']['occluded'].tolist() == [0, 2]           # file order: front, back
    # Both are straight ahead at 10 / 20 m: in the image, not truncated; 2D box = projection.
    np.testing.assert_array_equal(both['annos']['truncated'], [0, 0])
    calib = KittiCalibration(**{k: both['calib'][k] for k in ('P0', 'P1', 'P2', 'P3', 'R0_rect',
                                                              'Tr_velo_to_cam')})
    annos = both['annos']
    camera = np.concatenate([annos['location'], annos['dimensions'], annos['rotation_y'][:, None]],
                            1)
    uv, _ = calib.camera_to_image(CameraBoxes3D(camera).corners.double().numpy().reshape(-1, 3))
    uv = uv.reshape(2, 8, 2)
    np.testing.assert_allclose(annos['bbox'], np.concatenate([uv.min(1), uv.max(1)], 1),
                               atol=1e-6)
    np.testing.assert_allclose(annos['alpha'], annos['rotation_y'] - np.arctan2(
        annos['location'][:, 0], annos['location'][:, 2]), atol=1e-9)


def test_truncation_and_field_of_view():
    boxes = np.array([[6.0, 5.0, -SENSOR_HEIGHT, 4.0, 1.7, 1.5, 0.0],    # at the image's edge
                      [-15.0, 0.0, -SENSOR_HEIGHT, 4.0, 1.7, 1.5, 0.0],   # behind the sensor
                      [30.0, -2.0, -SENSOR_HEIGHT, 4.0, 1.7, 1.5, 0.0]])  # in full view
    scene = render_lidar_scene(0, 0, azimuth_step=0.2, clutter=False,
                               objects=(['Car'] * 3, boxes))
    assert (scene['num_points'] > 50).all()                 # the LiDAR sees all three ...
    assert scene['labelled'].tolist() == [True, False, True]  # ... the camera two
    truncated = scene['annos']['truncated']
    assert 0.1 < truncated[0] < 0.9 and truncated[1] == 0
    assert scene['annos']['bbox'][0, 0] == 0                  # clipped at the left edge
    # The camera box reads back as the box that was rendered (two decimals: < 1 cm apart).
    np.testing.assert_allclose(scene['boxes_lidar'][:, :6], boxes[:, :6], atol=0.01)


def test_car_sizes_keep_kitti_statistics_and_are_correlated():
    rng = np.random.default_rng(0)
    sizes = np.concatenate([_sample_objects(rng, ['Car'], 12)[1][:, 3:6] for _ in range(400)])
    assert len(sizes) > 2000
    mean, std = CLASS_SIZES['Car']  # (l, h, w)
    length_height_width = sizes[:, [0, 2, 1]]  # LiDAR (l, w, h) -> CLASS_SIZES' (l, h, w)
    # Clipping to +-30 % of the mean trims the length's tails a little.
    np.testing.assert_allclose(length_height_width.mean(0), mean, rtol=0.01)
    np.testing.assert_allclose(length_height_width.std(0), std, rtol=0.06)
    corr = np.corrcoef(sizes.T)
    assert SIZE_CORRELATION == 0.8
    np.testing.assert_allclose(corr[np.triu_indices(3, 1)], SIZE_CORRELATION, atol=0.04)


def test_deterministic_and_bad_input():
    a = render_lidar_scene(5, 3, azimuth_step=1.0)
    b = render_lidar_scene(5, 3, azimuth_step=1.0)
    c = render_lidar_scene(5, 4, azimuth_step=1.0)
    assert np.array_equal(a['points'], b['points'])
    assert np.array_equal(a['annos']['location'], b['annos']['location'])
    assert not np.array_equal(a['boxes_lidar'], c['boxes_lidar'])
    with pytest.raises(ConfigError, match='classes'):
        render_lidar_scene(0, 0, classes=('Truck',))
    with pytest.raises(ConfigError, match='azimuth_step'):
        render_lidar_scene(0, 0, azimuth_step=0.0)
    with pytest.raises(ValueError, match='inside a box'):
        cast_rays(np.array([[1.0, 0, 0]]), np.array([[0.0, 0, -1.0, 4, 2, 2, 0.3]]))
    with pytest.raises(ConfigError, match='num_train'):
        write_synthetic_kitti_lidar('/nonexistent', 0, 0)


def test_converter_and_metric_on_synthetic_split(tmp_path):
    options = dict(azimuth_step=STEP, classes=('Car',))
    root = write_synthetic_kitti_lidar(tmp_path / 'synth', num_train=1, num_val=10, seed=0,
                                       **options)
    velodyne = read_points_bin(root / 'training/velodyne/000004.bin')
    scene = render_lidar_scene(0, 4, **options)
    np.testing.assert_array_equal(velodyne, scene['points'])
    written = create_kitti_infos(root, tmp_path / 'infos', workers=1, with_database=True)
    infos = load(written['val'])['data_list']
    assert len(infos) == 10 and infos[0]['images']['CAM2']['width'] == 1242
    samples, moderate = [], 0
    for info in infos:
        index = info['sample_idx']
        scene = render_lidar_scene(0, index, **options)
        calib = KittiCalibration.from_file(root / 'training/calib' / f'{index:06d}.txt')
        # num_lidar_pts (FOV-reduced cloud, open box) = the object's returns in view, up to the
        # few noisy returns pushed out and ground returns inside the box's slack.
        fov = fov_mask(scene['points'], calib, 375, 1242)
        labels = scene['point_labels'][fov]
        hits = np.bincount(labels[labels >= 0], minlength=len(scene['names']))[scene['labelled']]
        counted = np.array([i['num_lidar_pts'] for i in info['instances']])
        assert (np.abs(counted - hits) <= 0.02 * hits + 3).all(), (counted, hits)
        instances = info['instances']
        boxes = np.array([i['bbox_3d'] for i in instances]).reshape(-1, 7)
        boxes[:, 0] += 0.001    # the devkit's overlap of identical boxes is degenerate
        annos = annos_from_camera_boxes(boxes, np.array([i['bbox'] for i in instances]).reshape(
            -1, 4), np.linspace(0.9, 0.5, len(boxes)), ['Car'] * len(boxes))
        samples.append({'pred_annos': annos, 'frame_id': f'{index:06d}'})
        moderate += sum(0 <= i['difficulty'] <= 1 for i in instances)
    assert moderate >= 41, moderate    # fewer cannot reach AP40 = 100 (docs/conventions.md)
    metric = KittiMetric(classes=['Car'], gt_label_dir=str(root / 'training/label_2'))
    metric.process(None, samples)
    metrics = metric.compute_metrics(metric.results)
    for key in ('Car_3D_AP40_moderate_strict', 'Car_BEV_AP40_moderate_strict',
                'Car_2D_AP40_moderate_strict', 'Car_AOS_AP40_hard_strict',
                'Car_3D_AP40_hard_strict'):
        assert metrics[key] == pytest.approx(100.0, abs=1e-3), (key, metrics[key])
    database = load(tmp_path / 'infos' / 'kitti_dbinfos_train.pkl')
    assert database['Car'] and all(entry['num_points_in_gt'] >= 0 for entry in database['Car'])
