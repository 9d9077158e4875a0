"""Learning tests: SEA-RAFT (configs/sea-raft/sea-raft_small_synthetic.py) and RAFT with convex
upsampling (configs/raft/raft_small-width_synthetic.py), both at CPU widths (~2 M parameters),
trained through mmengine's Runner on generated Sintel-layout flow pairs
(``write_synthetic_flow``: 64x96, textured layers in affine motion, shifts up to 8 px, exact flow;
training scenes seed 0, held-out scenes seed 1) and scored by ``FlowMetric`` on the held-out
pairs against the zero flow's EPE (4.14 px on them).

* ``test_sea_raft_learns_ci`` (CI): 350 steps at batch 8 on 1,000 pairs must take the held-out
  EPE below 0.8 of the zero flow's (measured: 2.87 px, 0.69; 700 steps gave 2.40 px, 0.58).
* ``test_flow_model_reaches_subpixel_epe`` (``long``, ``make test-long``): each model to
  held-out EPE < 1 px on 6,000 training pairs; it prints the EPE against the test-time
  iterations (SEA-RAFT's claim: fewer iterations for the same EPE). Measured 2026-12-07 (one
  thread each, both running at once on the 2-core machine): SEA-RAFT **0.863 px** after 7,000
  steps (5,864 s; matched pixels 0.734, unmatched 1.655, bad-1px 21.2 %); RAFT **0.888 px** after
  5,500 steps (6,018 s; matched 0.796, unmatched 1.456, bad-1px 24.7 %). Shorter runs on 3,000
  pairs stayed above 1 px: SEA-RAFT 1.042 after 5,000 steps, RAFT 1.065 after 3,500.

  EPE by test-time iterations at the end (zero flow 4.14 px):

  =========  =====  =====  =====  =====  =====  =====  =====  =====  =====
  model      0      1      2      3      4      6      8      12     24
  SEA-RAFT   0.977  0.860  0.856  0.863  0.874  -      0.927  0.982  -
  RAFT       -      0.927  0.893  -      0.889  0.888  0.888  0.889  0.892
  =========  =====  =====  =====  =====  =====  =====  =====  =====  =====

  Trained with 3 and 6 iterations, SEA-RAFT is at its best after 1-2 refinements and RAFT after
  4-8: SEA-RAFT's direct regression alone (0 refinements, 0.977) is within 0.09 px of RAFT's
  best, and with 1 refinement it beats RAFT at every count.

Why thousands of pairs: an earlier version trained on 100 pairs and memorised them (training
EPE fell, held-out EPE stayed at the zero flow's), although the gradients equal the official
RAFT's on the same weights and pairs (relative difference below 1e-3).
"""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from mmengine.runner import Runner

from perception.datasets.flow_io import read_flo
from perception.datasets.synthetic import write_synthetic_flow
from perception.engine import load_config

from .conftest import ROOT

CONFIGS = {'sea-raft': ROOT / 'configs' / 'sea-raft' / 'sea-raft_small_synthetic.py',
           'raft': ROOT / 'configs' / 'raft' / 'raft_small-width_synthetic.py'}
VAL_SCENES = 64


def _runner(config, tmp_path, max_iters: int, train_scenes: int, frames_per_scene: int
            ) -> Runner:
    """A Runner on ``train_scenes * (frames_per_scene - 1)`` fresh training pairs."""
    write_synthetic_flow(tmp_path / 'train', train_scenes, frames_per_scene, seed=0)
    write_synthetic_flow(tmp_path / 'val', VAL_SCENES, seed=1)
    cfg = load_config(config)
    cfg.work_dir = str(tmp_path / 'work')
    cfg.visualizer.vis_backends = [dict(type='LocalVisBackend')]
    cfg.train_dataloader.dataset.data_root = str(tmp_path / 'train')
    cfg.val_dataloader.dataset.data_root = str(tmp_path / 'val')
    cfg.test_dataloader.dataset.data_root = str(tmp_path / 'val')
    cfg.train_cfg.max_iters = cfg.train_cfg.val_interval = max_iters
    cfg.param_scheduler[0].total_steps = max_iters + 100
    cfg.default_hooks.checkpoint.interval = max_iters
    return Runner.from_cfg(cfg)


def _zero_flow_epe(root) -> float:
    flows = [read_flo(str(p)) for p in sorted((root / 'training' / 'flow').rglob('*.flo'))]
    return float(np.mean([np.linalg.norm(f, axis=-1).mean() for f in flows]))


@pytest.mark.slow
def test_sea_raft_learns_ci(tmp_path, one_thread):
    """Measured 2026-12-08 (one thread, the other core busy): 2.866 px after 350 steps in 349 s,
    0.69 of the zero flow's 4.14; the bound, 0.8 (3.31 px), leaves 0.45 px for other CPUs'
    kernels and thread counts. (700 steps: 2.40 px in 388-642 s; halved to keep CI's time.)"""
    torch.manual_seed(0)
    start = time.perf_counter()
    runner = _runner(CONFIGS['sea-raft'], tmp_path, max_iters=350, train_scenes=500,
                     frames_per_scene=3)
    runner.train()
    metrics = runner.test()
    zero = _zero_flow_epe(tmp_path / 'val')
    print({k: round(v, 3) for k, v in metrics.items()}, f'zero {zero:.3f}',
          f'{time.perf_counter() - start:.0f} s')
    assert 4.0 < zero < 4.3  # the held-out set is the one the thresholds were measured on
    assert metrics['flow/EPE'] < 0.8 * zero, (metrics, zero)


LONG_STEPS = {'sea-raft': 7000, 'raft': 5500}  # 5,864 s and 6,018 s, one thread each
ITERATIONS = {'sea-raft': (0, 1, 2, 3, 4, 8, 12), 'raft': (1, 2, 4, 6, 8, 12, 24)}


@pytest.mark.slow
@pytest.mark.long
@pytest.mark.parametrize('model', sorted(CONFIGS))
def test_flow_model_reaches_subpixel_epe(model, tmp_path, one_thread):
    """To held-out EPE < 1 px on 6,000 training pairs (measured: SEA-RAFT 0.863, RAFT 0.888;
    see the module docstring); prints EPE by test-time iterations."""
    torch.manual_seed(0)
    start = time.perf_counter()
    runner = _runner(CONFIGS[model], tmp_path, max_iters=LONG_STEPS[model], train_scenes=2000,
                     frames_per_scene=4)
    runner.train()
    metrics = runner.test()
    by_iters = {}
    for iters in ITERATIONS[model]:
        runner.model.test_iters = iters
        by_iters[iters] = round(runner.test()['flow/EPE'], 3)
    print(model, {k: round(v, 3) for k, v in metrics.items()}, 'EPE by iterations', by_iters,
          f'zero {_zero_flow_epe(tmp_path / "val"):.3f}', f'{time.perf_counter() - start:.0f} s')
    assert metrics['flow/EPE'] < 1.0, metrics
