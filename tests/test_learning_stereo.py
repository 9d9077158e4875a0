"""Learning tests: RAFT-Stereo and IGEV-Stereo trained on generated pairs for a bounded CPU time
reach EPE < 1 px and D1-all < 5 % on held-out pairs (issue 7).

Each trains through mmengine's Runner from its ``*_small_synthetic.py`` config, as
``python tools/train.py CONFIG`` would: the published architectures with small widths, 64x128
pairs with disparities up to 16 px from the generator (seed 0), scored by ``StereoMetric`` on 24
held-out pairs (seed 1). Each takes several CPU minutes, beyond the CI budget: marked ``long``
(``make test-long``).
"""
from __future__ import annotations

import time

import pytest
import torch
from mmengine.runner import Runner

from perception.engine import load_config

from .conftest import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.long]

CONFIGS = ['raft-stereo/raft-stereo_small_synthetic.py',
           'igev-stereo/igev-stereo_small_synthetic.py']


@pytest.mark.parametrize('config', CONFIGS, ids=['raft-stereo', 'igev-stereo'])
def test_stereo_model_learns_synthetic_pairs(config, tmp_path, two_threads):
    torch.manual_seed(0)
    cfg = load_config(ROOT / 'configs' / config)
    cfg.work_dir = str(tmp_path)
    cfg.visualizer.vis_backends = [dict(type='LocalVisBackend')]
    start = time.perf_counter()
    runner = Runner.from_cfg(cfg)
    runner.train()
    metrics = runner.test()
    print(config, {k: round(v, 3) for k, v in metrics.items()},
          f'{time.perf_counter() - start:.0f} s')
    assert metrics['stereo/EPE'] < 1.0, metrics
    assert metrics['stereo/D1_all'] < 5.0, metrics
