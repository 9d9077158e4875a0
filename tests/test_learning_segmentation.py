"""Each segmentation head learns the synthetic textured-shape data from its demo config.

The demo configs (ResNet-18, 64x128 images, a few hundred steps) train through mmengine's
Runner exactly as ``tools/train.py`` would, on data generated into ``tmp_path``; the held-out
split (other seeds than the training images) is then scored by the config's ``SegMetric``.
One torch thread per test (the ``one_thread`` fixture), as the other learning tests in CI: CI
runs two pytest workers on two cores, and two threads per worker spin against each other
(measured on a fresh-clone CI run: UPerNet 710 s and Mask2Former 781 s on two threads each;
190 s and 270 s on one thread each, two workers side by side on an idle 2-core machine).
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from mmengine.runner import Runner

from perception.datasets.synthetic.segmentation import write_synthetic_cityscapes
from perception.engine import load_config

from .conftest import ROOT

DEMOS = {
    'segformer': ROOT / 'configs/segformer/segformer_r18_1xb8-300_synthetic-seg-64x128.py',
    'upernet': ROOT / 'configs/upernet/upernet_r18_1xb8-300_synthetic-seg-64x128.py',
    'mask2former': ROOT / 'configs/mask2former/mask2former_r18_1xb8-400_synthetic-seg-64x128.py',
}
# The demo data: what configs/_base_/datasets/synthetic-seg_64x128.py describes.
NUM_TRAIN, NUM_VAL, HEIGHT, WIDTH, NUM_CLASSES = 300, 40, 64, 128, 5


def _train_and_evaluate(config: Path, tmp_path: Path) -> tuple[dict, float]:
    torch.manual_seed(0)
    data_root = tmp_path / 'data'
    write_synthetic_cityscapes(data_root, NUM_TRAIN, NUM_VAL, HEIGHT, WIDTH,
                               num_classes=NUM_CLASSES, seed=0)
    cfg = load_config(config)
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = str(data_root)
    cfg.work_dir = str(tmp_path / 'work')
    cfg.visualizer.vis_backends = [dict(type='LocalVisBackend')]
    # Validate once, after training (below), not also inside the training loop.
    cfg.train_cfg.val_interval = cfg.train_cfg.max_iters + 1
    start = time.perf_counter()
    runner = Runner.from_cfg(cfg)
    runner.train()
    metrics = runner.val()
    return metrics, time.perf_counter() - start


@pytest.mark.slow
@pytest.mark.parametrize('head', ['segformer', 'upernet', 'mask2former'])
def test_head_learns_synthetic_segmentation(head, tmp_path, one_thread):
    metrics, seconds = _train_and_evaluate(DEMOS[head], tmp_path)
    # Every class is present in the held-out images, so no per-class IoU is NaN.
    ious = [v for k, v in metrics.items() if k.startswith('seg/IoU.')]
    assert len(ious) == NUM_CLASSES and all(v == v for v in ious), metrics
    assert metrics['seg/mIoU'] >= 80.0, (head, seconds, metrics)
    assert min(ious) >= 60.0, (head, seconds, metrics)
