"""LidarDetector (pillar VFE + SECOND + SECONDFPN + CenterHead) on tiny synthetic clouds."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from mmengine.dataset import pseudo_collate
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData
from torch import nn

import perception.models.lidar3d.detector  # noqa: F401  (registers the detector)
from perception.datasets.converters.kitti_converter import create_kitti_infos
from perception.datasets.synthetic.lidar import render_lidar_scene, write_synthetic_kitti_lidar
from perception.engine.config import load_config
from perception.engine.errors import CheckpointError
from perception.evaluation.kitti import KittiMetric
from perception.models.layers.sparse_voxels import SparseVoxels
from perception.models.lidar3d.detector import (
    convert_official_state_dict,
    kitti_annos_from_lidar_boxes,
)
from perception.registry import DATASETS, MODELS
from perception.structures import Det3DDataSample, LiDARBoxes3D

from .conftest import ROOT

DEMO = ROOT / 'configs/centerpoint/centerpoint_pillar_synthetic-lidar_demo.py'
OFFICIAL_KEYS = ROOT / 'tests/data/official_keys/centerpoint_pillar_nus.json'


@pytest.fixture(scope='module')
def synthetic_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('synthetic_lidar')
    write_synthetic_kitti_lidar(root, 2, 1, seed=3, azimuth_step=0.8)
    create_kitti_infos(root, root, workers=1)
    return root


@pytest.fixture(scope='module')
def demo_cfg():
    return load_config(str(DEMO))


def _dataset(cfg, root, split: str):
    ds_cfg = cfg[f'{split}_dataloader'].dataset.copy()
    ds_cfg['data_root'] = str(root) + '/'
    with DefaultScope.overwrite_default_scope('perception'):
        return DATASETS.build(ds_cfg)


def _model(cfg):
    torch.manual_seed(0)
    return MODELS.build(cfg.model)


def test_loss_backward_and_predict_on_synthetic_frames(synthetic_root, demo_cfg):
    model = _model(demo_cfg)
    train = _dataset(demo_cfg, synthetic_root, 'train')
    batch = pseudo_collate([train[0], train[1]])
    model.train()
    losses = model(**model.data_preprocessor(batch, True), mode='loss')
    assert set(losses) == {'task0.loss_heatmap', 'task0.loss_bbox', 'task0.loss_dir'}
    assert all(math.isfinite(v.item()) and v.item() > 0 for v in losses.values())
    sum(losses.values()).backward()
    for part in (model.voxel_encoder, model.bev_backbone, model.neck, model.head):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())

    val = _dataset(demo_cfg, synthetic_root, 'val')
    model.eval()
    with torch.no_grad():
        samples = model(**model.data_preprocessor(pseudo_collate([val[0]]), False),
                        mode='predict')
    pred = samples[0].pred_instances_3d
    assert isinstance(pred.bboxes_3d, LiDARBoxes3D) and pred.bboxes_3d.tensor.shape[1] == 7
    assert torch.isfinite(pred.bboxes_3d.tensor).all()
    assert len(pred.scores_3d) == len(pred.labels_3d) == len(pred.bboxes_3d) > 0
    assert set(model.stage_times) == {'voxelize+vfe', 'backbone_3d', 'bev', 'head'}
    annos = samples[0].pred_annos
    assert set(annos) >= {'name', 'bbox', 'location', 'dimensions', 'rotation_y', 'score'}
    assert (annos['location'][:, 2] > 0).all()  # only boxes in front of the camera
    # KittiMetric takes the samples as they are.
    metric = KittiMetric(classes=['Car'], gt_label_dir=str(synthetic_root / 'training/label_2'))
    metric.process({}, samples)
    assert metric.results[0]['frame_id'] == '000002'
    assert len(metric.results[0]['pred']['name']) == len(annos['name'])


def test_kitti_annos_reproduce_the_labels():
    scene = render_lidar_scene(7, 0, azimuth_step=1.0)
    lidar2cam = np.eye(4)
    lidar2cam[:3, :3] = scene['calib']['R0_rect']
    lidar2cam = lidar2cam @ np.vstack([scene['calib']['Tr_velo_to_cam'], [0, 0, 0, 1]])
    labelled = scene['labelled']
    boxes = torch.from_numpy(scene['boxes_lidar'])
    # A labelled object and a box behind the sensor (never seen by the camera).
    behind = torch.tensor([[-10.0, 0.0, -1.7, 4.0, 1.7, 1.5, 0.0]], dtype=boxes.dtype)
    inputs = torch.cat([boxes[labelled], behind])
    n = int(labelled.sum())
    annos = kitti_annos_from_lidar_boxes(inputs, torch.linspace(0.9, 0.5, n + 1),
                                         torch.zeros(n + 1, dtype=torch.long), ['Car'],
                                         lidar2cam, scene['calib']['P2'], (375, 1242))
    ref = scene['annos']
    assert len(annos['name']) == n
    np.testing.assert_allclose(annos['location'], ref['location'], atol=2e-3)
    np.testing.assert_allclose(annos['dimensions'], ref['dimensions'], atol=1e-6)
    np.testing.assert_allclose(np.cos(annos['rotation_y'] - ref['rotation_y']), 1, atol=1e-6)
    np.testing.assert_allclose(annos['alpha'], ref['alpha'], atol=2e-3)
    # 2D boxes: the projected corners; the labels clip to W - 1 / H - 1, ours to W / H.
    inner = (ref['bbox'][:, 2] < 1241) & (ref['bbox'][:, 3] < 374) & (ref['bbox'][:, 0] > 0)
    assert inner.any()
    np.testing.assert_allclose(annos['bbox'][inner], ref['bbox'][inner], atol=0.5)


@pytest.fixture(scope='module')
def tiny_model(demo_cfg):
    return _model(demo_cfg).eval()


def _cloud() -> torch.Tensor:
    return torch.from_numpy(render_lidar_scene(1, 0, azimuth_step=1.0)['points'])


def test_empty_and_out_of_range_clouds_give_no_detections(tiny_model):
    outside = torch.tensor([[-5.0, 0.0, 0.0, 0.3], [100.0, 0.0, 0.0, 0.1],
                            [10.0, 0.0, 5.0, 0.2]])
    clouds = [torch.zeros((0, 4)), outside, _cloud()]
    meta = dict(lidar2cam=np.eye(4), cam2img=np.eye(3), img_shape=(375, 1242))
    samples = [Det3DDataSample(metainfo=meta) for _ in clouds]
    with torch.no_grad():
        out = tiny_model({'points': clouds}, samples, mode='predict')
    for sample in out[:2]:
        pred = sample.pred_instances_3d
        assert pred.bboxes_3d.tensor.shape == (0, 7)
        assert pred.scores_3d.shape == (0,) and pred.labels_3d.shape == (0,)
        assert sample.pred_annos['bbox'].shape == (0, 4)
    assert torch.isfinite(out[2].pred_instances_3d.bboxes_3d.tensor).all()
    # Only-empty batches and a batch of one empty cloud work too.
    with torch.no_grad():
        out = tiny_model({'points': [torch.zeros((0, 4))]}, None, mode='predict')
    assert len(out[0].pred_instances_3d.bboxes_3d) == 0


def test_loss_with_an_empty_cloud_in_the_batch(demo_cfg):
    model = _model(demo_cfg).train()
    boxes = LiDARBoxes3D(torch.tensor([[12.0, 2.0, -1.7, 4.0, 1.7, 1.5, 0.2]]))
    samples = [Det3DDataSample() for _ in range(2)]
    for s in samples:
        gt = InstanceData()
        gt.bboxes_3d = boxes
        gt.labels_3d = torch.tensor([0])
        s.gt_instances_3d = gt
    losses = model({'points': [torch.zeros((0, 4)), _cloud()]}, samples, mode='loss')
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()


def test_nan_points_raise(tiny_model):
    bad = _cloud()
    bad[:4, 0] = float('nan')
    with pytest.raises(ValueError, match='point cloud 1 has 4 of'):
        tiny_model({'points': [_cloud(), bad]}, None, mode='predict')


def test_tensor_mode_shapes(tiny_model):
    with torch.no_grad():
        out = tiny_model({'points': [_cloud(), torch.zeros((0, 4))]}, mode='tensor')
    assert len(out) == 1  # one task
    # 0.32 m pillars over 69.12 x 79.36 m: 216 x 248, head map / 2.
    assert out[0]['heatmap'].shape == (2, 3, 124, 108)
    assert out[0]['rot'].shape == (2, 2, 124, 108)


class _Identity3D(nn.Module):
    """A 3D backbone stand-in that needs at least one voxel."""

    def __init__(self, channels: int = 16) -> None:
        super().__init__()
        self.out_channels = channels
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, voxels: SparseVoxels) -> SparseVoxels:
        assert voxels.num_voxels > 0
        return voxels.with_features(voxels.features * self.scale)


def test_backbone_3d_gets_a_voxel_even_for_empty_batches(demo_cfg):
    MODELS.register_module(name='_TestIdentity3D', module=_Identity3D, force=True)
    cfg = demo_cfg.model.copy()
    cfg['backbone_3d'] = dict(type='_TestIdentity3D')
    model = MODELS.build(cfg).eval()
    with torch.no_grad():
        out = model({'points': [torch.zeros((0, 4))]}, None, mode='predict')
        assert len(out[0].pred_instances_3d.bboxes_3d) == 0
        out = model({'points': [_cloud()]}, None, mode='predict')
    assert model.stage_times['backbone_3d'] >= 0


def test_official_centerpoint_keys_convert_and_load_strictly():
    # Keys and shapes of mmdetection3d's CenterPoint-pillar nuScenes model (see the file).
    spec = json.loads(OFFICIAL_KEYS.read_text())
    state = {k: torch.zeros(shape) for k, shape in spec['keys'].items()}
    model = MODELS.build(load_config(str(ROOT / 'configs/_base_/models/centerpoint_nus.py')).model)
    converted = convert_official_state_dict(state)
    assert len(converted) == len(state)
    model.load_state_dict(converted, strict=True)
    assert sum(p.numel() for p in model.parameters()) == spec['num_parameters']
    assert converted['head.task_heads.5.heatmap.3.bias'].shape == (2,)
    with pytest.raises(CheckpointError, match='img_backbone'):
        convert_official_state_dict({**state, 'img_backbone.conv1.weight': torch.zeros(1)})


@pytest.mark.parametrize('config, backbone_type, every_parameter_learns', [
    ('configs/flatformer/flatformer_demo.py', 'FlatFormer', False),
    ('configs/lion/lion-mamba_demo.py', 'LION', False),
    ('configs/centerpoint/centerpoint_second_synthetic-lidar_demo.py', 'SparseEncoder', True),
])
def test_demo_3d_backbones_train_and_predict(config, backbone_type, every_parameter_learns):
    """Each 3D backbone's demo detector: loss on a batch with an empty cloud, gradients reach the
    backbone, and prediction gives finite boxes."""
    cfg = load_config(str(ROOT / config))
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).train()
    assert type(model.backbone_3d).__name__ == backbone_type
    cloud = torch.from_numpy(render_lidar_scene(1, 0, azimuth_step=1.0)['points']).float()
    samples = [Det3DDataSample() for _ in range(2)]
    for sample in samples:
        gt = InstanceData()
        gt.bboxes_3d = LiDARBoxes3D(torch.tensor([[12.0, 2.0, -1.7, 4.0, 1.7, 1.5, 0.2]]))
        gt.labels_3d = torch.tensor([0])
        sample.gt_instances_3d = gt
    losses = model({'points': [torch.zeros((0, 4)), cloud]}, samples, mode='loss')
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    grads = [p.grad for p in model.backbone_3d.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    if every_parameter_learns:
        assert all(g.abs().sum() > 0 for g in grads)
    else:
        assert sum(g.abs().sum() for g in grads) > 0
    model.eval()
    with torch.no_grad():
        out = model({'points': [cloud]}, None, mode='predict')
    assert torch.isfinite(out[0].pred_instances_3d.bboxes_3d.tensor).all()
