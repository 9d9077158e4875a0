"""The inference API per task: results equal the models' own test-time path (config pipeline +
data preprocessor + predict), batches equal single calls, frames are as documented, bad input is
refused clearly."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.model import BaseModel
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData

from perception.apis.inference import (
    inference_lidar3d,
    inference_mono3d,
    inference_segmentation,
    inference_sr,
    inference_stereo,
    init_model,
    model_test_pipeline,
    warm_up,
)
from perception.apis.onnx_runtime import model_task
from perception.engine.config import load_config
from perception.engine.errors import DataError
from perception.registry import SCOPE, TRANSFORMS
from perception.structures import KittiCalibration, LiDARBoxes3D

from .conftest import ROOT

SEGFORMER = ROOT / 'configs/segformer/segformer_r18_1xb8-300_synthetic-seg-64x128.py'
MONODETR = ROOT / 'configs/monodetr/monodetr_tiny_demo.py'
RAFT = ROOT / 'configs/raft-stereo/raft-stereo_tiny_demo.py'
ESPCN = ROOT / 'configs/espcn/espcn_x3_synthetic-sr.py'
P2 = np.array([[721.54, 0.0, 609.56, 44.857], [0.0, 721.54, 172.85, 0.2164],
               [0.0, 0.0, 1.0, 0.002746]])


def _rgb(seed, h, w):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _compose(pipeline):
    with DefaultScope.overwrite_default_scope(SCOPE):
        return [TRANSFORMS.build(dict(t)) for t in pipeline]


@pytest.fixture(scope='module')
def seg_model():
    torch.manual_seed(0)
    return init_model(SEGFORMER)


@pytest.fixture(scope='module')
def mono_model():
    torch.manual_seed(0)
    cfg = load_config(MONODETR)
    cfg.model.test_cfg.update(score_thr=0.0, topk=15)
    return init_model(cfg)


# --------------------------------------------------------------------------- segmentation
def _seg_predict_via_files(model, paths):
    """The model's own test path: the config's pipeline from the files, preprocessor, predict."""
    transforms = [t for t in _compose(model_test_pipeline(model))
                  if type(t).__name__ != 'LoadSegAnnotations']
    packed = []
    for path in paths:
        results = {'img_path': str(path)}
        for transform in transforms:
            results = transform(results)
        packed.append(results)
    with torch.no_grad():
        data = model.data_preprocessor({'inputs': [p['inputs'] for p in packed],
                                        'data_samples': [p['data_samples'] for p in packed]}, False)
        samples = model(data['inputs'], data['data_samples'], mode='predict')
    return [s.pred_sem_seg.data[0].numpy() for s in samples]


def test_segmentation_equals_the_dataset_path_and_batches(seg_model, tmp_path):
    image, small = _rgb(0, 64, 128), _rgb(1, 40, 72)
    paths = [tmp_path / 'img.png', tmp_path / 'small.png']
    for path, array in zip(paths, (image, small)):
        cv2.imwrite(str(path), array[..., ::-1])
    expected = _seg_predict_via_files(seg_model, paths[:1])[0]
    got = inference_segmentation(seg_model, str(paths[0]))
    assert got.dtype == np.int64 and got.shape == (64, 128)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(inference_segmentation(seg_model, image), expected)
    # A batch of two sizes is padded together; each map comes back at its own size.
    both = inference_segmentation(seg_model, [image, small])
    assert [b.shape for b in both] == [(64, 128), (40, 72)]
    for got_map, want in zip(both, _seg_predict_via_files(seg_model, paths)):
        np.testing.assert_array_equal(got_map, want)
    assert len(inference_segmentation(seg_model, [image] * 3, batch_size=2)) == 3


def test_segmentation_runs_the_test_resize_and_returns_the_input_size(seg_model):
    model = seg_model
    cfg = model.cfg
    saved = cfg.test_dataloader.dataset.pipeline
    try:
        cfg.test_dataloader.dataset.pipeline = [
            dict(type='LoadSegImage'),
            dict(type='RandomResize', scale=(64, 32), ratio_range=None, keep_ratio=True),
            dict(type='PackSegInputs')]
        label = inference_segmentation(model, _rgb(2, 64, 128))
    finally:
        cfg.test_dataloader.dataset.pipeline = saved
    assert label.shape == (64, 128)
    # Upsampled from a 32x64 prediction: the map is constant on most 2x2 blocks.
    blocks = label.reshape(32, 2, 64, 2)
    assert (blocks == blocks[:, :1, :, :1]).mean() > 0.9


def test_segmentation_refuses_grey_arrays(seg_model):
    with pytest.raises(DataError, match=r'\(H, W, 3\) uint8 RGB'):
        inference_segmentation(seg_model, np.zeros((64, 128), np.uint8))


# --------------------------------------------------------------------------- mono3d
def _kitti_frame(shared_data):
    root = shared_data / 'kitti_mini' / 'training'
    return root / 'image_2' / '000008.png', KittiCalibration.from_file(root / 'calib/000008.txt')


def test_mono3d_equals_the_model_predict_path(mono_model, shared_data):
    image_path, calib = _kitti_frame(shared_data)
    results = {'img_path': str(image_path), 'cam2img': calib.P2, 'sample_idx': 8}
    for transform in _compose(model_test_pipeline(mono_model)):
        results = transform(results)
    with torch.no_grad():
        data = mono_model.data_preprocessor({'inputs': {'img': [results['inputs']['img']]},
                                             'data_samples': [results['data_samples']]}, False)
        sample = mono_model(data['inputs'], data['data_samples'], mode='predict')[0]
    got = inference_mono3d(mono_model, image_path, calib.P2)
    assert set(got) == {'boxes_3d', 'scores', 'labels', 'bboxes_2d'}
    assert got['boxes_3d'].shape == (15, 7) and got['labels'].dtype == np.int64
    np.testing.assert_allclose(got['boxes_3d'], sample.pred_instances_3d.bboxes_3d.tensor.numpy(),
                               atol=1e-5)
    np.testing.assert_allclose(got['scores'], sample.pred_instances_3d.scores_3d.numpy())
    np.testing.assert_allclose(got['bboxes_2d'], sample.pred_instances.bboxes.numpy(), atol=1e-4)


def test_mono3d_boxes_are_in_the_camera_frame_of_the_given_p2(mono_model, shared_data):
    image_path, calib = _kitti_frame(shared_data)
    image = cv2.imread(str(image_path))[..., ::-1].copy()
    det = inference_mono3d(mono_model, image, calib.P2)
    boxes = det['boxes_3d'].astype(np.float64)
    # The decoder back-projects the query's 2D centre; projecting the gravity centre with the
    # original P2 must land on the 2D box's centre line inside the unclipped 2D boxes.
    centre = boxes[:, :3] - np.stack([np.zeros(len(boxes)), boxes[:, 4] / 2,
                                      np.zeros(len(boxes))], 1)
    uvw = centre @ calib.P2[:3, :3].T + calib.P2[:3, 3]
    uv = uvw[:, :2] / uvw[:, 2:]
    h, w = image.shape[:2]
    b = det['bboxes_2d']
    inside = (b[:, 0] > 0) & (b[:, 2] < w) & (b[:, 1] > 0) & (b[:, 3] < h)
    assert inside.any()
    tol = 1.0
    assert ((uv[inside, 0] >= b[inside, 0] - tol) & (uv[inside, 0] <= b[inside, 2] + tol)).all()
    assert ((uv[inside, 1] >= b[inside, 1] - tol) & (uv[inside, 1] <= b[inside, 3] + tol)).all()
    assert (boxes[:, 2] > 0).all()  # in front of the camera (z forward)


def test_mono3d_batch_equals_single_calls(mono_model):
    images = [_rgb(3, 375, 1242), _rgb(4, 375, 1242)]
    batch = inference_mono3d(mono_model, images, [P2, P2])
    for image, got in zip(images, batch):
        single = inference_mono3d(mono_model, image, P2)
        for key in single:
            np.testing.assert_allclose(got[key], single[key], rtol=1e-5, atol=1e-4)
    assert len(inference_mono3d(mono_model, images * 2, P2, batch_size=3)) == 4


def test_mono3d_bad_input_is_refused_clearly(mono_model, tmp_path):
    image = _rgb(5, 375, 1242)
    with pytest.raises(DataError, match='principal point'):
        inference_mono3d(mono_model, image[:, :500], P2)  # cropped, P2 not updated
    with pytest.raises(DataError, match='cam2img must be 3x3, 3x4 or 4x4'):
        inference_mono3d(mono_model, image, np.eye(2))
    with pytest.raises(DataError, match='no cam2img'):
        inference_mono3d(mono_model, image, None)
    grey = tmp_path / 'grey.png'
    cv2.imwrite(str(grey), image[..., 0])
    with pytest.raises(DataError, match='greyscale'):
        inference_mono3d(mono_model, grey, P2)
    with pytest.raises(ValueError, match='2 images but 3 cam2img'):
        inference_mono3d(mono_model, [image, image], [P2, P2, P2])


# --------------------------------------------------------------------------- LiDAR
class _CountingDetector(BaseModel):
    """A stand-in with the LidarDetector interface: one box per cloud at its centroid, whose
    score is the point count / 1000 and whose size is the cloud's extent."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.seen = []

    def forward(self, inputs, data_samples=None, mode='predict'):
        for points, sample in zip(inputs['points'], data_samples):
            self.seen.append(points.shape)
            xyz = points[:, :3]
            lo, hi = xyz.min(0).values, xyz.max(0).values
            box = torch.cat([(lo[:2] + hi[:2]) / 2, lo[2:], hi - lo, torch.zeros(1)])[None]
            sample.pred_instances_3d = InstanceData(
                bboxes_3d=LiDARBoxes3D(box), scores_3d=torch.tensor([len(points) / 1000.0]),
                labels_3d=torch.tensor([2]))
        return data_samples


def _lidar_model(pipeline):
    model = _CountingDetector().eval()
    model.cfg = Config(dict(test_pipeline=pipeline))
    return model


def test_lidar3d_reads_bins_runs_the_test_filter_and_batches(tmp_path):
    rng = np.random.default_rng(0)
    cloud = np.concatenate([rng.uniform([0, -10, -2, 0], [20, 10, 1, 1], (300, 4)),
                            rng.uniform([-20, -10, -2, 0], [-1, 10, 1, 1], (100, 4))])
    cloud = cloud.astype(np.float32)
    path = tmp_path / '000000.bin'
    cloud.tofile(path)
    model = _lidar_model([
        dict(type='LoadPointsFromFile', num_features=4, use_dims=4),
        dict(type='PointsRangeFilter', point_cloud_range=[0, -40, -3, 70.4, 40, 1]),
        dict(type='Pack3DDetInputs', keys=('points',))])
    assert model_task(model) == 'lidar3d'
    det = inference_lidar3d(model, path)
    assert set(det) == {'boxes_3d', 'scores', 'labels'}
    assert det['boxes_3d'].shape == (1, 7) and det['labels'].tolist() == [2]
    assert det['scores'][0] == pytest.approx(0.3)  # the 100 points behind x = 0 were filtered
    kept = cloud[cloud[:, 0] >= 0]
    np.testing.assert_allclose(det['boxes_3d'][0, 2], kept[:, 2].min(), atol=1e-6)  # bottom z
    both = inference_lidar3d(model, [path, cloud])
    assert [d['scores'][0] for d in both] == pytest.approx([0.3, 0.3])
    with pytest.raises(DataError, match=r'\(P, 4\) as stored, got \(400, 2\)'):
        inference_lidar3d(model, cloud[:, :2])
    with pytest.raises(DataError, match='NaN'):
        inference_lidar3d(model, np.full((3, 4), np.nan, np.float32))


def test_lidar3d_keeps_the_loader_columns_of_nuscenes_clouds(tmp_path):
    model = _lidar_model([dict(type='LoadPointsFromFile', num_features=5, use_dims=[0, 1, 2, 3])])
    cloud = np.random.default_rng(1).normal(size=(50, 5)).astype(np.float32)
    cloud.tofile(tmp_path / 'sweep.pcd.bin')
    det = inference_lidar3d(model, tmp_path / 'sweep.pcd.bin')  # no Pack: packed by the API
    assert model.seen[-1] == (50, 4) and det['scores'][0] == pytest.approx(0.05)
    inference_lidar3d(model, cloud[:, :4])  # the used columns only
    assert model.seen[-1] == (50, 4)


# --------------------------------------------------------------------------- stereo / SR / warm-up
def test_stereo_batch_equals_single_pairs_and_refuses_mixed_sizes():
    torch.manual_seed(0)
    model = init_model(RAFT)
    lefts = [_rgb(6, 32, 64), _rgb(7, 32, 64)]
    rights = [np.roll(img, -3, axis=1) for img in lefts]
    batch = inference_stereo(model, lefts, rights, iters=2)
    for left, right, got in zip(lefts, rights, batch):
        np.testing.assert_allclose(got, inference_stereo(model, left, right, iters=2), atol=1e-4)
    with pytest.raises(DataError, match='one size'):
        inference_stereo(model, [lefts[0], _rgb(8, 40, 64)], [rights[0], _rgb(9, 40, 64)])


def test_sr_batch_equals_single_images_and_warm_up_times_runs():
    torch.manual_seed(0)
    model = init_model(ESPCN)
    images = [_rgb(10, 12, 16), _rgb(11, 12, 16), _rgb(12, 10, 14)]
    outs = inference_sr(model, images)
    assert [o.shape for o in outs] == [(36, 48, 3), (36, 48, 3), (30, 42, 3)]
    for image, out in zip(images, outs):
        np.testing.assert_array_equal(out, inference_sr(model, image))
    seconds = warm_up(model, images[0], runs=3)
    assert len(seconds) == 3 and all(s > 0 for s in seconds)
    with pytest.raises(ValueError, match='runs'):
        warm_up(model, images[0], runs=0)
