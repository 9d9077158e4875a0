"""Monocular 3D data: calibration-exact crop/resize/flip, MonoDETR targets, synthetic KITTI set."""
from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest
import torch

from perception.datasets.converters.kitti_converter import create_kitti_infos
from perception.datasets.kitti import KittiDataset
from perception.datasets.synthetic.mono3d import (
    kitti_calibration,
    render_mono3d_scene,
    write_synthetic_kitti,
)
from perception.datasets.transforms.augment3d import RandomFlip3D
from perception.datasets.transforms.formatting import DEFAULT_META_KEYS, Pack3DDetInputs
from perception.datasets.transforms.loading import LoadAnnotations3D, LoadImage
from perception.datasets.transforms.mono3d import (
    Mono3DPhotoMetric,
    Mono3DRandomCropResize,
    Mono3DResize,
    Mono3DTargets,
    crop_resize_matrix,
    monodetr_level,
    project_centers,
)
from perception.engine.errors import DataError
from perception.evaluation.kitti import KittiMetric, annos_from_camera_boxes
from perception.structures import CameraBoxes3D, KittiCalibration

# KITTI frame 000008's P2 (kitti_mini), 375 x 1242 image.
P2 = np.array([[721.5377, 0.0, 609.5593, 44.85728], [0.0, 721.5377, 172.854, 0.2163791],
               [0.0, 0.0, 1.0, 0.002745884], [0.0, 0.0, 0.0, 1.0]])
BOXES = np.array([[-1.17, 1.65, 7.86, 3.68, 1.57, 1.50, 1.90],   # [x, y, z, l, h, w, ry]
                  [1.07, 1.55, 14.44, 3.66, 1.47, 1.60, -1.25],
                  [7.24, 1.55, 33.20, 4.08, 1.70, 1.63, 1.95]])


def _frame(height: int = 375, width: int = 1242) -> dict:
    """A frame with a white dot image at each box's projected centre and consistent 2D labels."""
    boxes = CameraBoxes3D(BOXES)
    centers, depths = project_centers(boxes, P2)
    image = np.zeros((height, width, 3), np.uint8)
    for u, v in np.round(centers).astype(int):
        image[v - 3:v + 4, u - 3:u + 4] = 255
    bboxes = np.concatenate([centers - 20, centers + 20], axis=1).astype(np.float32)
    return {'img': image, 'img_shape': (height, width), 'ori_shape': (height, width),
            'cam2img': P2.copy(), 'gt_bboxes_3d': boxes, 'gt_labels_3d': np.zeros(3, np.int64),
            'gt_bboxes': bboxes, 'gt_labels': np.zeros(3, np.int64), 'centers_2d': centers,
            'depths': depths, 'truncated': np.zeros(3, np.float32),
            'occluded': np.zeros(3, np.int64), 'sample_idx': 0}


def _blob_centre(image: np.ndarray, u: float, v: float, radius: int = 25) -> np.ndarray:
    """Intensity-weighted centre of the bright blob near (u, v)."""
    grey = image[..., 0].astype(np.float64)
    v0, u0 = int(round(v)), int(round(u))
    patch = grey[v0 - radius:v0 + radius + 1, u0 - radius:u0 + radius + 1]
    rows, cols = np.mgrid[v0 - radius:v0 + radius + 1, u0 - radius:u0 + radius + 1]
    return np.array([(patch * cols).sum(), (patch * rows).sum()]) / patch.sum()


def test_crop_resize_matrix_maps_window_centre_to_output_centre():
    matrix = crop_resize_matrix((700.0, 200.0), 1000.0, (384, 1280))
    assert matrix[0, 0] == matrix[1, 1] == pytest.approx(1.28)
    np.testing.assert_allclose(matrix @ [700.0, 200.0, 1.0], [639.5, 191.5, 1.0])
    # A point 100 px right of the centre lands 128 px right of the output centre.
    np.testing.assert_allclose(matrix @ [800.0, 200.0, 1.0], [767.5, 191.5, 1.0])


@pytest.mark.parametrize('seed', [0, 1, 2, 3])
def test_random_crop_resize_keeps_projection_exact(seed):
    results = _frame()
    transform = Mono3DRandomCropResize(crop_prob=1.0, seed=seed)
    center, crop_scale = Mono3DRandomCropResize(crop_prob=1.0, seed=seed).draw(375, 1242)
    out = transform(results)
    assert out['img'].shape == (384, 1280, 3) and out['img_shape'] == (384, 1280)
    assert 0.6 <= out['crop_scale'] == crop_scale <= 1.4
    s = 1280 / (1242 * crop_scale)
    assert out['scale_factor'] == pytest.approx((s, s))
    old = _frame()['centers_2d'].astype(np.float64)
    expected = (old - center) * s + [639.5, 191.5]
    # 2D annotations moved by the affine...
    np.testing.assert_allclose(out['centers_2d'], expected, atol=1e-3)
    np.testing.assert_allclose(out['gt_bboxes'][:, :2], expected - 20 * s, atol=1e-3)
    # ... and the unchanged 3D boxes projected with the new P2 land on them exactly.
    projected, depths = project_centers(out['gt_bboxes_3d'], out['cam2img'])
    np.testing.assert_allclose(projected, expected, atol=1e-3)
    np.testing.assert_allclose(depths, BOXES[:, 2], atol=1e-6)   # depth unchanged
    np.testing.assert_allclose(out['ori_cam2img'], P2)
    np.testing.assert_allclose(out['cam2img'][0, 0], 721.5377 * s)
    # The image content moved the same way: each blob (drawn at the rounded centre) is found at
    # the affine image of that pixel.
    blobs = (np.round(old) - center) * s + [639.5, 191.5]
    for blob in blobs:
        if 30 < blob[0] < 1250 and 30 < blob[1] < 354:
            np.testing.assert_allclose(_blob_centre(out['img'], *blob), blob, atol=0.1)


def test_resize_matches_cv2_resize_and_keeps_projection_exact():
    results = _frame()
    reference = cv2.resize(results['img'], (1280, 384), interpolation=cv2.INTER_LINEAR)
    out = Mono3DResize((384, 1280))(results)
    assert np.abs(out['img'].astype(int) - reference.astype(int)).max() <= 1
    sx, sy = 1280 / 1242, 384 / 375
    expected = (_frame()['centers_2d'] + 0.5) * [sx, sy] - 0.5
    np.testing.assert_allclose(out['centers_2d'], expected, atol=1e-3)
    np.testing.assert_allclose(project_centers(out['gt_bboxes_3d'], out['cam2img'])[0], expected,
                               atol=1e-3)
    assert out['scale_factor'] == pytest.approx((sx, sy))
    # keep_ratio: MonoDETR's test transform, uniform scale W'/W about the centre.
    out = Mono3DResize((384, 1280), keep_ratio=True)(_frame())
    np.testing.assert_allclose(out['scale_factor'], (sx, sx))
    np.testing.assert_allclose(project_centers(out['gt_bboxes_3d'], out['cam2img'])[0],
                               out['centers_2d'], atol=1e-3)


def test_flip_then_targets_consistent():
    results = _frame()
    original = results['centers_2d'].copy()
    flipped = RandomFlip3D(flip_ratio_bev_horizontal=1.0)(results)
    assert flipped['flip']
    # RandomFlip3D mirrors the 2D centres u -> W - 1 - u ...
    np.testing.assert_allclose(flipped['centers_2d'][:, 0], 1241 - original[:, 0], atol=1e-3)
    # ... and the mirrored 3D boxes through the mirrored P2 land on the same pixels.
    out = Mono3DTargets(filter_level=False, drop_center_outside_box=False)(flipped)
    np.testing.assert_allclose(out['centers_2d'][:, 0], 1241 - original[:, 0], atol=1e-3)
    np.testing.assert_allclose(out['centers_2d'][:, 1], original[:, 1], atol=1e-3)
    np.testing.assert_allclose(out['depths'], BOXES[:, 2], atol=1e-6)
    np.testing.assert_allclose(out['gt_bboxes_3d'].tensor[:, 0].numpy(), -BOXES[:, 0], atol=1e-6)


def test_monodetr_level_rule():
    # height + 1 >= 40 easy, >= 25 moderate/hard; truncation 0.15 / 0.3 / 0.5; occlusion 0/1/2.
    level = monodetr_level(np.array([39.0, 38.9, 24.0, 23.9, 100, 100, 100]),
                           np.array([0.1, 0.1, 0.5, 0.5, 0.16, 0.31, 0.0]),
                           np.array([0, 0, 2, 2, 0, 0, 3]))
    np.testing.assert_array_equal(level, [0, 1, 2, -1, 1, 2, -1])


def test_targets_filter_depth_image_and_box():
    out = Mono3DTargets(max_depth=30.0)(_frame())        # box 2 (z = 33.2) too far
    np.testing.assert_allclose(out['depths'], [7.86, 14.44], atol=1e-6)
    results = _frame()
    results['gt_bboxes'][1] = [0, 0, 10, 10]            # centre outside its 2D box
    out = Mono3DTargets()(results)
    np.testing.assert_allclose(out['depths'], [7.86, 33.2], atol=1e-5)
    np.testing.assert_allclose(out['gt_bboxes'][1], _frame()['gt_bboxes'][2])
    out = Mono3DTargets(min_depth=10.0)(_frame())        # box 0 (z = 7.86) too near
    np.testing.assert_allclose(out['depths'], [14.44, 33.2], atol=1e-5)
    results = _frame()
    shifted = BOXES.copy()
    shifted[0, 0] += 60.0                                # projects far right of the image
    results['gt_bboxes_3d'] = CameraBoxes3D(shifted)
    out = Mono3DTargets(drop_center_outside_box=False)(results)
    assert len(out['gt_labels_3d']) == 2 and len(out['gt_bboxes']) == 2   # first leaves image


def test_targets_on_kitti_mini_frame_000008(shared_data, tmp_path):
    root = shared_data / 'kitti_mini'
    create_kitti_infos(root, tmp_path, workers=1, with_database=False)
    pipeline = [LoadImage(), LoadAnnotations3D(with_bbox=True, with_label=True,
                                               extra_keys=('truncated', 'occluded')),
                Mono3DTargets()]
    dataset = KittiDataset(str(root), str(tmp_path / 'kitti_infos_val.pkl'),
                           modality={'use_lidar': False, 'use_camera': True}, box_frame='camera',
                           pipeline=pipeline, test_mode=True)
    results = dataset[0]
    # Cars 0 and 2 have occlusion 3 (unknown level); cars 1, 3, 4, 5 remain.
    np.testing.assert_allclose(results['depths'], [7.86, 14.44, 33.20, 19.96], atol=1e-5)
    # Car 1 by hand: gravity centre (-1.17, 1.65 - 1.57 / 2, 7.86) through P2.
    w = 7.86 + 0.002745884
    u = (721.5377 * -1.17 + 609.5593 * 7.86 + 44.85728) / w
    v = (721.5377 * 0.865 + 172.854 * 7.86 + 0.2163791) / w
    np.testing.assert_allclose(results['centers_2d'][0], [u, v], atol=1e-3)
    np.testing.assert_allclose([u, v], [507.685, 252.199], atol=0.01)
    # Resized to 384 x 1280 for the model: the packed sample follows the contract.
    resized = Mono3DResize((384, 1280))
    pipeline = [LoadImage(), LoadAnnotations3D(with_bbox=True, with_label=True,
                                               extra_keys=('truncated', 'occluded')),
                resized, Mono3DTargets(),
                Pack3DDetInputs(meta_keys=DEFAULT_META_KEYS + ('scale_factor',))]
    dataset = KittiDataset(str(root), str(tmp_path / 'kitti_infos_val.pkl'),
                           modality={'use_lidar': False, 'use_camera': True}, box_frame='camera',
                           pipeline=pipeline, test_mode=True)
    packed = dataset[0]
    sample = packed['data_samples']
    assert packed['inputs']['img'].shape == (3, 384, 1280)
    sx, sy = 1280 / 1242, 384 / 375
    centres = sample.gt_instances.centers_2d.numpy()
    np.testing.assert_allclose(centres[0], [(u + 0.5) * sx - 0.5, (v + 0.5) * sy - 0.5], atol=1e-3)
    np.testing.assert_allclose(sample.gt_instances.depths.numpy()[0], 7.86, atol=1e-5)
    assert sample.metainfo['img_shape'] == (384, 1280)
    assert sample.metainfo['scale_factor'] == pytest.approx((sx, sy))
    assert len(sample.gt_instances_3d.bboxes_3d) == len(sample.gt_instances.bboxes) == 4


def test_photometric_keeps_shape_and_refuses_grey():
    np.random.seed(0)
    results = {'img': np.full((8, 8, 3), 100, np.uint8)}
    out = Mono3DPhotoMetric(channel_swap_prob=1.0)(results)
    assert out['img'].shape == (8, 8, 3) and out['img'].dtype == np.uint8
    with pytest.raises(DataError, match='colour'):
        Mono3DPhotoMetric()({'img': np.zeros((8, 8), np.uint8)})


def test_synthetic_scene_labels_reproject_onto_boxes():
    scene = render_mono3d_scene(seed=3, index=5, height=192, width=640)
    again = render_mono3d_scene(seed=3, index=5, height=192, width=640)
    assert np.array_equal(scene['image'], again['image'])                  # deterministic
    assert not np.array_equal(scene['image'], render_mono3d_scene(3, 6, 192, 640)['image'])
    annos, p2 = scene['annos'], scene['calib']['P2']
    assert len(annos['name']) >= 1
    np.testing.assert_allclose(p2, kitti_calibration(192, 640)['P2'])
    boxes = np.concatenate([annos['location'], annos['dimensions'], annos['rotation_y'][:, None]],
                           1)
    corners = CameraBoxes3D(boxes).corners.double().numpy()
    uv = corners @ p2[:, :3].T + p2[:, 3]
    uv = uv[..., :2] / uv[..., 2:]
    extent = np.concatenate([uv.min(1), uv.max(1)], 1)
    inside = annos['truncated'] == 0
    assert inside.any()
    np.testing.assert_allclose(annos['bbox'][inside], extent[inside], atol=1e-6)
    np.testing.assert_allclose(annos['alpha'], annos['rotation_y'] - np.arctan2(
        annos['location'][:, 0], annos['location'][:, 2]), atol=1e-9)
    np.testing.assert_allclose(annos['location'][:, 1], 1.65)
    # The object is drawn where its label says: its box differs from the empty-scene background.
    cx, cy = ((annos['bbox'][inside][0, :2] + annos['bbox'][inside][0, 2:]) / 2).astype(int)
    assert scene['image'][cy, cx].tolist() != [0, 0, 0]


def test_synthetic_split_converts_and_scores_100(tmp_path):
    root = write_synthetic_kitti(tmp_path / 'synth', num_train=1, num_val=12, seed=0)
    calib = KittiCalibration.from_file(root / 'training/calib/000003.txt')
    np.testing.assert_allclose(calib.P2, kitti_calibration(384, 1280)['P2'], rtol=1e-10)
    written = create_kitti_infos(root, tmp_path / 'infos', workers=1, with_database=False)
    from mmengine.fileio import load
    infos = load(written['val'])['data_list']
    assert len(infos) == 12 and infos[0]['images']['CAM2']['width'] == 1280
    samples, moderate = [], 0
    for info in infos:
        frame_id = f'{info["sample_idx"]:06d}'
        instances = info['instances']
        boxes = np.array([i['bbox_3d'] for i in instances]).reshape(-1, 7)
        boxes[:, 0] += 0.001    # the devkit's overlap of identical boxes is degenerate
        annos = annos_from_camera_boxes(boxes, np.array([i['bbox'] for i in instances]).reshape(
            -1, 4), np.linspace(0.9, 0.5, len(boxes)), ['Car'] * len(boxes))
        samples.append({'pred_annos': annos, 'frame_id': frame_id})
        moderate += sum(0 <= i['difficulty'] <= 1 for i in instances)
    assert moderate >= 41, moderate    # fewer cannot reach AP40 = 100 (docs/conventions.md)
    metric = KittiMetric(classes=['Car'], gt_label_dir=str(root / 'training/label_2'))
    metric.process(None, samples)
    metrics = metric.compute_metrics(metric.results)
    for key in ('Car_3D_AP40_moderate_strict', 'Car_2D_AP40_moderate_strict',
                'Car_BEV_AP40_moderate_strict', 'Car_AOS_AP40_hard_strict',
                'Car_3D_AP40_hard_strict'):
        assert metrics[key] == pytest.approx(100.0, abs=1e-3), (key, metrics[key])


# ------------------------------------------------------------------------------- bad input
def test_bad_inputs_raise_clear_errors(tmp_path, shared_data):
    results = _frame()
    results.pop('cam2img')
    with pytest.raises(DataError, match='P2'):
        Mono3DResize()(results)
    # Image resized to half without updating P2: the principal point leaves the central region.
    results = _frame()
    results['img'] = cv2.resize(results['img'], (621, 188))
    with pytest.raises(DataError, match='disagrees with the calibration'):
        Mono3DRandomCropResize()(results)
    with pytest.raises(DataError, match='disagrees with the calibration'):
        Mono3DTargets()(dict(results, img_shape=(188, 621)))
    # A greyscale PNG (OpenCV would silently expand it to 3 equal channels).
    grey = tmp_path / 'grey.png'
    cv2.imwrite(str(grey), np.zeros((375, 1242), np.uint8))
    loaded = LoadImage()({'img_path': str(grey)})
    with pytest.raises(DataError, match='grey.png.*greyscale'):
        Mono3DResize()(dict(loaded, cam2img=P2))
    # A calibration file without P2.
    calib = tmp_path / 'calib.txt'
    lines = (shared_data / 'kitti_mini/training/calib/000008.txt').read_text().splitlines()
    calib.write_text('\n'.join(line for line in lines if not line.startswith('P2')) + '\n')
    with pytest.raises(DataError, match='calib.txt.*missing P2'):
        KittiCalibration.from_file(calib)


def test_converter_refuses_calib_without_p2(tmp_path, shared_data):
    root = tmp_path / 'kitti'
    shutil.copytree(shared_data / 'kitti_mini', root)
    path = root / 'training/calib/000008.txt'
    path.write_text(''.join(line + '\n' for line in path.read_text().splitlines()
                            if not line.startswith('P2')))
    with pytest.raises(DataError, match='000008.txt.*P2'):
        create_kitti_infos(root, tmp_path / 'out', workers=1, with_database=False)


def test_boxes_helper_projection_matches_converter_centre():
    # project_centers divides by the full homogeneous scale, as the converter's center_2d.
    centres, _ = project_centers(CameraBoxes3D(torch.tensor(BOXES[:1])), P2)
    np.testing.assert_allclose(centres[0], [507.685, 252.199], atol=0.01)
