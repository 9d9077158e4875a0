"""tools/train.py and tools/test.py as a user runs them, including their error messages."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from .conftest import DEMO_CONFIG, run_tool

FAST = ['train_cfg.max_iters=30', 'train_cfg.val_interval=30',
        'default_hooks.checkpoint.interval=15', 'train_dataloader.batch_size=4',
        'val_dataloader.dataset.num_images=4',
        'test_dataloader.dataset.num_images=4', 'default_hooks.logger.interval=10']


def _last_val_scalars(work_dir: Path) -> dict:
    scalars = sorted(work_dir.glob('*/vis_data/scalars.json'))[-1]
    rows = [json.loads(line) for line in scalars.read_text().splitlines()]
    return [r for r in rows if 'sr/PSNR' in r][-1]


@pytest.fixture(scope='module')
def trained(tmp_path_factory) -> Path:
    work_dir = tmp_path_factory.mktemp('train')
    result = run_tool('tools/train.py', DEMO_CONFIG, '--work-dir', work_dir, '--cfg-options', *FAST)
    assert result.returncode == 0, result.stderr[-3000:]
    return work_dir


def test_train_writes_checkpoints_logs_and_tensorboard_scalars(trained):
    assert (trained / 'iter_30.pth').is_file() and (trained / 'iter_15.pth').is_file()
    assert (trained / 'last_checkpoint').read_text().strip().endswith('iter_30.pth')
    assert list(trained.glob('*/*.log'))
    assert list(trained.glob('*/vis_data/events.out.tfevents.*')), 'no TensorBoard event file'
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(next(trained.glob('*/vis_data')))).Reload()
    assert 'loss' in events.Tags()['scalars']
    assert len(events.Scalars('loss')) == 3  # logged every 10 of 30 iterations


def test_test_reproduces_the_metric_reached_in_training(trained, tmp_path):
    out = tmp_path / 'metrics.json'
    result = run_tool('tools/test.py', DEMO_CONFIG, trained / 'iter_30.pth', '--work-dir', tmp_path,
                      '--out', out, '--show-dir', tmp_path / 'show', '--cfg-options', *FAST)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads(out.read_text())
    logged = _last_val_scalars(trained)
    assert metrics['sr/PSNR'] == pytest.approx(logged['sr/PSNR'], abs=1e-6)
    assert metrics['sr/PSNR_bicubic'] == pytest.approx(logged['sr/PSNR_bicubic'], abs=1e-6)
    assert 'sr/PSNR:' in result.stdout
    images = sorted((tmp_path / 'show').glob('*.png'))
    assert [p.name for p in images] == [f'synthetic_{i:05d}.png' for i in range(4)]


def test_resume_continues_from_the_last_checkpoint(trained, tmp_path):
    import shutil
    work_dir = tmp_path / 'resumed'
    shutil.copytree(trained, work_dir)
    (work_dir / 'last_checkpoint').write_text(str(work_dir / 'iter_15.pth'))
    fast = [o for o in FAST if not o.startswith('train_cfg.max_iters')]
    result = run_tool('tools/train.py', DEMO_CONFIG, '--work-dir', work_dir, '--resume',
                      '--cfg-options', 'train_cfg.max_iters=45', *fast)
    assert result.returncode == 0, result.stderr[-3000:]
    log = (result.stdout + result.stderr)
    assert 'resumed epoch: 0, iter: 15' in log
    assert 'Iter(train) [20/45]' in log and 'Iter(train) [10/45]' not in log
    assert (work_dir / 'iter_45.pth').is_file()


def test_resume_from_a_named_checkpoint_into_a_new_work_dir(trained, tmp_path):
    fast = [o for o in FAST if not o.startswith('train_cfg.max_iters')]
    result = run_tool('tools/train.py', DEMO_CONFIG, '--work-dir', tmp_path, '--resume',
                      trained / 'iter_30.pth', '--cfg-options', 'train_cfg.max_iters=40', *fast)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'resumed epoch: 0, iter: 30' in result.stdout + result.stderr
    assert (tmp_path / 'iter_40.pth').is_file() and not (tmp_path / 'iter_15.pth').exists()


def test_amp_trains_on_cpu_with_bfloat16(tmp_path):
    result = run_tool('tools/train.py', DEMO_CONFIG, '--work-dir', tmp_path, '--amp',
                      '--cfg-options', 'train_cfg.max_iters=4', 'train_cfg.val_interval=100',
                      'train_dataloader.batch_size=2', 'default_hooks.logger.interval=2')
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'AutocastOptimWrapper' in (tmp_path / 'espcn_x3_synthetic-sr.py').read_text()


def _one_error_line(result) -> str:
    assert result.returncode == 2, (result.stdout[-2000:], result.stderr[-2000:])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith('error: ') and 'Traceback' not in result.stderr
    return lines[0]


def test_unknown_type_is_one_clear_line(tmp_path):
    config = tmp_path / 'typo.py'
    config.write_text(f"_base_ = ['{DEMO_CONFIG}']\nmodel = dict(network=dict(type='ESPNC'))\n")
    line = _one_error_line(run_tool('tools/train.py', config, '--work-dir', tmp_path))
    assert "unknown type 'ESPNC' (at `model.network.type`)" in line and "'ESPCN'" in line


def test_missing_config_is_one_clear_line(tmp_path):
    line = _one_error_line(run_tool('tools/train.py', tmp_path / 'missing.py'))
    assert 'config file not found' in line and 'missing.py' in line


def test_wrong_cfg_option_is_one_clear_line(tmp_path):
    line = _one_error_line(run_tool('tools/train.py', DEMO_CONFIG, '--work-dir', tmp_path,
                                    '--cfg-options', 'train_cfg.max_iter=5'))
    assert "no key 'max_iter' under 'train_cfg'" in line and "did you mean 'max_iters'" in line


def test_checkpoint_of_another_model_is_one_clear_line(tmp_path):
    other = tmp_path / 'other.pth'
    torch.save({'state_dict': torch.nn.Linear(3, 3).state_dict()}, other)
    line = _one_error_line(run_tool('tools/test.py', DEMO_CONFIG, other, '--work-dir', tmp_path))
    assert 'does not fit SuperResolver' in line and 'another model' in line


def test_missing_checkpoint_is_one_clear_line(tmp_path):
    line = _one_error_line(run_tool('tools/test.py', DEMO_CONFIG, tmp_path / 'nope.pth',
                                    '--work-dir', tmp_path))
    assert 'checkpoint not found' in line


def test_benchmark_reports_latency_and_a_table_row(trained):
    result = run_tool('tools/benchmark.py', DEMO_CONFIG, '--checkpoint', trained / 'iter_30.pth',
                      '--input-shape', '3', '32', '48', '--warmup', '1', '--runs', '3')
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'latency_median_ms' in result.stdout and 'peak_rss_mib' in result.stdout
    row = [line for line in result.stdout.splitlines() if line.startswith('| SuperResolver')]
    assert row and '| 1x3x32x48 | cpu | 0.031 |' in row[0]


def _benchmark_module():
    import importlib.util
    path = Path(__file__).parent.parent / 'tools/benchmark.py'
    spec = importlib.util.spec_from_file_location('benchmark_tool', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_lidar_random_cloud_and_per_stage_medians(tmp_path):
    from mmengine.model import BaseModel
    from mmengine.structures import InstanceData

    from perception.registry import MODELS
    from perception.structures import LiDARBoxes3D

    class BenchStagedLidarDetector(BaseModel):
        """Records the clouds it sees and reports two stages of fixed durations."""

        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(3))
            self.clouds = []

        def forward(self, inputs, data_samples=None, mode='predict'):
            self.clouds.extend(inputs['points'])
            self.stage_times = {'voxelize': 0.002 * len(self.clouds) % 0.006, 'head': 0.004}
            for sample in data_samples:
                sample.pred_instances_3d = InstanceData(
                    bboxes_3d=LiDARBoxes3D(torch.zeros(0, 7)), scores_3d=torch.zeros(0),
                    labels_3d=torch.zeros(0, dtype=torch.long))
            return data_samples

    MODELS.register_module(module=BenchStagedLidarDetector, force=True)
    config = tmp_path / 'lidar_bench.py'
    config.write_text("default_scope = 'perception'\n"
                      "point_cloud_range = [0, -40, -3, 70.4, 40, 1]\n"
                      "model = dict(type='BenchStagedLidarDetector')\n"
                      "test_pipeline = [dict(type='LoadPointsFromFile', num_features=4, "
                      "use_dims=4), dict(type='Pack3DDetInputs', keys=('points',))]\n")
    built = []
    original = MODELS.build

    def build(cfg):
        built.append(original(cfg))
        return built[-1]

    MODELS.build = build
    try:
        result = _benchmark_module().main([str(config), '--num-points', '500', '--warmup', '1',
                                           '--runs', '3', '--device', 'cpu', '--threads', '1'])
    finally:
        MODELS.build = original
    clouds = torch.stack(built[0].clouds)
    assert clouds.shape == (4, 500, 4)
    assert (clouds[..., 0] >= 0).all() and (clouds[..., 0] < 70.4).all()
    assert (clouds[..., 2] >= -3).all() and (clouds[..., 2] < 1).all()
    # voxelize over the timed runs 2, 3, 4: 4, 0, 2 ms -> median 2; head always 4 ms.
    assert result['stage_median_ms'] == pytest.approx({'voxelize': 2.0, 'head': 4.0})
    assert result['markdown_row'].startswith('| BenchStagedLidarDetector | 1x500x4pts | cpu |')
    assert result['markdown_row'].endswith('| voxelize 2.00, head 4.00 |')


def test_benchmark_on_an_image_file_and_through_onnx(tmp_path):
    pytest.importorskip('onnxruntime')
    import cv2
    import numpy as np

    from perception.apis.inference import init_model
    from perception.apis.onnx_runtime import export_onnx

    image = tmp_path / 'lr.png'
    cv2.imwrite(str(image), np.random.default_rng(0).integers(0, 256, (20, 24, 3), np.uint8))
    bench = _benchmark_module()
    result = bench.main([str(DEMO_CONFIG), '--input', str(image), '--batch-size', '2',
                         '--warmup', '1', '--runs', '2', '--device', 'cpu'])
    assert result['markdown_row'].startswith('| SuperResolver | 2x3x20x24 | cpu | 0.031 |')
    export_onnx(init_model(DEMO_CONFIG), tmp_path / 'espcn.onnx', (3, 20, 24))
    onnx_result = bench.main([str(DEMO_CONFIG), '--onnx', str(tmp_path / 'espcn.onnx'),
                              '--warmup', '1', '--runs', '2'])
    assert onnx_result['markdown_row'].startswith('| SuperResolver (ONNX) | 1x3x20x24 | cpu |')
    # Initialisers: the weights, give or take constants the exporter folds or adds.
    assert onnx_result['params_m'] == pytest.approx(result['params_m'], rel=0.01)
    end_to_end = bench.main([str(DEMO_CONFIG), '--onnx', str(tmp_path / 'espcn.onnx'),
                             '--input', str(image), '--warmup', '1', '--runs', '2'])
    assert end_to_end['latency_median_ms'] > 0
