"""The LiDAR detectors learn: FlatFormer and LION-Mamba overfit the real kitti_mini frame 000008
and generalise on synthetic LiDAR scenes.

Every test trains a demo detector of ``configs/flatformer/`` or ``configs/lion/`` (dynamic pillar
or voxel encoder, the tiny 3D backbone, SECOND + SECONDFPN + CenterHead) through mmengine's Runner
exactly as ``tools/train.py`` would, on data converted by the real KITTI converter into
``tmp_path``, and scores the detections with the configs' ``KittiMetric`` (keys
``kitti/Car_{BEV,3D}_AP40_moderate_*``: Car, 40 recall positions, moderate difficulty; ``strict`` =
IoU 0.7, ``loose`` = 0.5). One torch thread: the 2-core test machine is shared, and the budgets
are stated in CPU seconds. The overfitting tests fit the CI budget (``slow``); the synthetic ones
train for several CPU minutes (``slow`` + ``long``, ``make test-long``).
"""
from __future__ import annotations

from pathlib import Path

import pytest
from mmengine.fileio import load

from perception.datasets.converters.kitti_converter import create_kitti_infos
from perception.datasets.synthetic.lidar import write_synthetic_kitti_lidar
from perception.engine import load_config

from .conftest import ROOT
from .kitti_learning import ap40_moderate, learn_kitti_layout, moderate_cars, train_and_validate

FLATFORMER_OVERFIT = ROOT / 'configs/flatformer/flatformer_kitti-mini-overfit.py'
LION_OVERFIT = ROOT / 'configs/lion/lion-mamba_kitti-mini-overfit.py'
FLATFORMER_SYNTHETIC = ROOT / 'configs/flatformer/flatformer_synthetic-lidar.py'
LION_SYNTHETIC = ROOT / 'configs/lion/lion-mamba_synthetic-lidar.py'
BEV_STRICT = 'kitti/Car_BEV_AP40_moderate_strict'
STRICT = 'kitti/Car_3D_AP40_moderate_strict'
LOOSE = 'kitti/Car_3D_AP40_moderate_loose'
# The synthetic split the *_synthetic-lidar.py configs describe: 100 held-out scenes (402 moderate
# Cars, not 115 as with 30) for a tighter estimate; evaluation costs little next to training.
NUM_TRAIN, NUM_VAL, AZIMUTH_STEP = 120, 100, 0.16


def _overfit_frame_000008(config: Path, shared_data: Path, tmp_path: Path) -> tuple[dict, float]:
    source = shared_data / 'kitti_mini'
    written = create_kitti_infos(source, tmp_path / 'infos', workers=1, with_database=False)
    info_file = written['val']
    assert [info['sample_idx'] for info in load(info_file)['data_list']] == [8]
    # 000008 holds six Cars; two (truncated 0.88 and 0.34) are not moderate. Evaluating the frame
    # 11 times gives 44 >= 41 objects, enough for perfect detections to score 100 (the config
    # explains why).
    assert moderate_cars(info_file) == 4
    cfg = load_config(config)
    assert cfg.val_dataloader.dataset.times * 4 >= 41
    # The converter writes the FOV-reduced clouds (training/velodyne_reduced) under its out dir.
    cfg.train_dataloader.dataset.update(data_root=str(tmp_path / 'infos'), ann_file=str(info_file))
    for loader in ('val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.dataset.update(data_root=str(tmp_path / 'infos'),
                                           ann_file=str(info_file))
    cfg.val_evaluator.gt_label_dir = str(source / 'training/label_2')
    return train_and_validate(cfg, tmp_path / 'work')


def _learn_synthetic(config: Path, tmp_path: Path) -> tuple[dict, float]:
    root = write_synthetic_kitti_lidar(tmp_path / 'data', NUM_TRAIN, NUM_VAL, seed=0,
                                       azimuth_step=AZIMUTH_STEP)
    return learn_kitti_layout(config, root, tmp_path / 'work')


@pytest.mark.slow
def test_flatformer_overfits_kitti_mini_frame_000008(shared_data, tmp_path, one_thread):
    metrics, cpu_seconds = _overfit_frame_000008(FLATFORMER_OVERFIT, shared_data, tmp_path)
    # Measured (one thread): BEV AP40 100 after 250, 300 and 400 iterations (seeds 0-2),
    # 0 after 200 or fewer (no heatmap peak above the 0.1 score threshold yet); 400 iterations
    # are about 50 CPU-s of training.
    assert metrics[BEV_STRICT] == pytest.approx(100.0), (cpu_seconds, ap40_moderate(metrics))


@pytest.mark.slow
def test_lion_mamba_overfits_kitti_mini_frame_000008(shared_data, tmp_path, one_thread):
    metrics, cpu_seconds = _overfit_frame_000008(LION_OVERFIT, shared_data, tmp_path)
    # Measured (one thread): BEV AP40 100 (3D 100) after 400 iterations, about 1 s each; 454 s
    # for the whole test on an idle core, 438 s in a fresh-clone CI run (250 iterations: 6.25).
    assert metrics[BEV_STRICT] == pytest.approx(100.0), (cpu_seconds, ap40_moderate(metrics))


@pytest.mark.slow
@pytest.mark.long
def test_flatformer_learns_synthetic_scenes_held_out(tmp_path, one_thread):
    """The issue's target: held-out Car 3D AP40 moderate >= 70.

    Measured with this config (3000 iterations, 1145 CPU-s of training, one thread): 3D AP40
    80.1 strict / 96.8 loose, BEV 91.0 / 97.0. The result depends on the run: with seed 1
    instead of the configs' seed 0 the same config gave 61.9 / 94.3 (the config has the table).
    Training on CPU is deterministic for a given seed, which this test relies on.
    """
    metrics, cpu_seconds = _learn_synthetic(FLATFORMER_SYNTHETIC, tmp_path)
    # Chance is 0: a box placed without looking at the points essentially never reaches 3D IoU
    # 0.5 with a car.
    assert metrics[LOOSE] >= 90.0, (cpu_seconds, ap40_moderate(metrics))
    assert metrics[STRICT] >= 70.0, (cpu_seconds, ap40_moderate(metrics))


@pytest.mark.slow
@pytest.mark.long
def test_lion_mamba_learns_synthetic_scenes_held_out(tmp_path, one_thread):
    """The issue's target: held-out Car 3D AP40 moderate >= 70.

    Measured with this config (3000 iterations, 3178 CPU-s of training, one thread): 3D AP40
    81.8 strict / 96.8 loose, BEV 90.1 / 96.9. Only seed 0 was measured (see the FlatFormer
    test on the spread between runs).
    """
    metrics, cpu_seconds = _learn_synthetic(LION_SYNTHETIC, tmp_path)
    assert metrics[LOOSE] >= 90.0, (cpu_seconds, ap40_moderate(metrics))
    assert metrics[STRICT] >= 70.0, (cpu_seconds, ap40_moderate(metrics))
