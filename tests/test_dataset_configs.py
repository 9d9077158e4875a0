"""The 3D dataset base configs build their datasets and pipelines on real sample data."""
from __future__ import annotations

import shutil

import pytest
import torch
from mmengine.registry import init_default_scope

from perception.datasets.converters.kitti_converter import create_kitti_infos
from perception.engine.config import load_config
from perception.registry import DATASETS
from perception.structures import Det3DDataSample, LiDARBoxes3D

from .conftest import ROOT


@pytest.fixture
def kitti_root(shared_data, tmp_path):
    root = tmp_path / 'kitti'
    shutil.copytree(shared_data / 'kitti_mini', root)
    for path in root.rglob('*'):
        path.chmod(0o755 if path.is_dir() else 0o644)
    create_kitti_infos(root, root, workers=1)
    return root


def _with_root(dataset_cfg, root):
    """The dataset config with every data_root-derived path moved to ``root``."""
    cfg = dataset_cfg.copy()
    cfg['data_root'] = str(root) + '/'
    for step in cfg['pipeline']:
        if step['type'] == 'ObjectSample':
            step['data_root'] = str(root) + '/'
            step['db_info_path'] = str(root / 'kitti_dbinfos_train.pkl')
    return cfg


def test_kitti_3d_base_config(kitti_root):
    cfg = load_config(str(ROOT / 'configs/_base_/datasets/kitti-3d-3class.py'))
    init_default_scope('perception')  # what the Runner does with default_runtime's scope
    train = DATASETS.build(_with_root(cfg.train_dataloader.dataset, kitti_root))
    assert len(train) == 2  # 000007 has no point cloud
    torch.manual_seed(0)
    sample = train[1]
    points = sample['inputs']['points']
    assert points.shape[1] == 4 and points.dtype == torch.float32
    data_sample = sample['data_samples']
    assert isinstance(data_sample, Det3DDataSample)
    boxes = data_sample.gt_instances_3d.bboxes_3d
    assert isinstance(boxes, LiDARBoxes3D) and len(boxes) >= 1
    # Every kept box lies in the configured range and holds points after augmentation.
    low, high = cfg.point_cloud_range[:2], cfg.point_cloud_range[3:5]
    assert ((boxes.tensor[:, :2] > torch.tensor(low)) & (boxes.tensor[:, :2] < torch.tensor(high))
            ).all()
    assert (boxes.points_in_boxes(points[:, :3].double()).sum(0) > 0).all()

    val = DATASETS.build(_with_root(cfg.val_dataloader.dataset, kitti_root))
    assert len(val) == 1
    assert val[0]['data_samples'].metainfo['frame_id'] == '000008'
