"""Helpers of the KITTI-layout learning tests (MonoDETR, LiDAR detectors): count what the moderate
AP scores, and train + validate a config through mmengine's Runner as ``tools/train.py`` would."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from mmengine.fileio import load
from mmengine.runner import Runner

from perception.datasets.converters.kitti_converter import create_kitti_infos
from perception.engine import load_config


def moderate_cars(info_file: Path) -> int:
    """Car objects of KITTI difficulty easy or moderate (what the moderate AP counts)."""
    infos = load(info_file)
    car = infos['metainfo']['categories']['Car']
    return sum(inst['bbox_label_3d'] == car and inst['difficulty'] in (0, 1)
               for info in infos['data_list'] for inst in info['instances'])


def train_and_validate(cfg, work_dir: Path) -> tuple[dict, float]:
    """Train ``cfg`` with its Runner, validate once afterwards; returns metrics and CPU seconds.

    Works for epoch- and iteration-based ``train_cfg`` alike."""
    torch.manual_seed(0)
    np.random.seed(0)
    cfg.work_dir = str(work_dir)
    cfg.visualizer.vis_backends = [dict(type='LocalVisBackend')]
    cfg.default_hooks.checkpoint.save_last = False
    # Validate once, after training (below), not also inside the training loop.
    length = cfg.train_cfg.get('max_iters', cfg.train_cfg.get('max_epochs'))
    cfg.train_cfg.val_interval = length + 1
    start = time.process_time()
    runner = Runner.from_cfg(cfg)
    runner.train()
    metrics = runner.val()
    return metrics, time.process_time() - start


def learn_kitti_layout(config: Path, root: Path, work_dir: Path) -> tuple[dict, float]:
    """Convert the KITTI-layout split a synthetic generator wrote under ``root``, point
    ``config``'s loaders and evaluator at it, then :func:`train_and_validate`."""
    written = create_kitti_infos(root, root, workers=1, with_database=False)
    # Enough held-out objects that the AP40 is not capped by the devkit's threshold sampling.
    assert moderate_cars(written['val']) >= 41
    cfg = load_config(config)
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = str(root)
    cfg.val_evaluator.gt_label_dir = str(root / 'training/label_2')
    return train_and_validate(cfg, work_dir)


def ap40_moderate(metrics: dict) -> dict:
    """The AP40 moderate entries of ``metrics``, rounded: what a failed assertion shows."""
    return {k: round(v, 2) for k, v in metrics.items() if 'AP40_moderate' in k}
