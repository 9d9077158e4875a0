"""``tools/benchmark.py CONFIG`` runs with no input flag on one config of every task.

Each run is one timed forward after no warm-up: the test checks that the tool builds the model,
finds an input (the config's benchmark shape, a stated small shape, or for LiDAR the shipped
KITTI frame 000008) and reports a positive latency and a markdown row; speed itself is the
benchmark's business, not a test's.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location('benchmark_tool', ROOT / 'tools' / 'benchmark.py')
benchmark = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(benchmark)

QUICK = ['--warmup', '0', '--runs', '1', '--threads', '1', '--device', 'cpu']
CASES = {
    'lidar3d': ['configs/flatformer/flatformer_demo.py'],
    'mono3d': ['configs/monodetr/monodetr_tiny_demo.py', '--input-shape', '3', '96', '320'],
    'stereo': ['configs/raft-stereo/raft-stereo_tiny_demo.py', '--input-shape', '2', '3', '64',
               '128'],
    'seg': ['configs/segformer/segformer_r18_1xb8-300_synthetic-seg-64x128.py'],
    'sr': ['configs/swinir/swinir-tiny_x3_synthetic-sr.py', '--input-shape', '3', '24', '24'],
    'flow': ['configs/raft/raft_things.py', '--input-shape', '2', '3', '64', '64',
             '--cfg-options', 'model.test_iters=2'],
}


@pytest.mark.parametrize('task', CASES)
def test_benchmark_runs_on_one_config_per_task(task, capsys):
    args = CASES[task]
    if task == 'lidar3d':
        try:
            frame = benchmark.default_point_cloud()
        except benchmark.ConfigError as error:
            pytest.skip(str(error))
    result = benchmark.main([str(ROOT / args[0]), *args[1:], *QUICK])
    out = capsys.readouterr().out
    assert result['latency_median_ms'] > 0 and result['params_m'] > 0
    assert result['markdown_row'].startswith('| ') and result['markdown_row'] in out
    if task == 'lidar3d':  # frame 000008 end to end, not a random cloud
        assert f'{frame.stat().st_size // 16}x4pts' in out, out


def test_lidar_default_frame_error_names_every_path(monkeypatch, tmp_path):
    monkeypatch.setattr(benchmark, 'KITTI_FRAME_000008', (tmp_path / 'a.bin', tmp_path / 'b.bin'))
    with pytest.raises(benchmark.ConfigError, match='a.bin.*b.bin.*--num-points'):
        benchmark.default_point_cloud()
