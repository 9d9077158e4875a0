"""Two-process training and testing with torchrun and the gloo backend on CPU."""
import json
import os
import subprocess
import sys

import pytest

from .conftest import DEMO_CONFIG, ROOT, free_port, run_tool

SMALL = ['train_cfg.max_iters=6', 'train_cfg.val_interval=6', 'default_hooks.checkpoint.interval=6',
         'train_dataloader.batch_size=2', 'val_dataloader.dataset.num_images=4',
         'test_dataloader.dataset.num_images=5', 'default_hooks.logger.interval=2']


def _env() -> dict:
    return dict(os.environ, PORT=str(free_port()), PYTHONPATH=str(ROOT), OMP_NUM_THREADS='1',
                PYTHON=sys.executable)


@pytest.fixture(scope='module')
def dist_trained(tmp_path_factory):
    work_dir = tmp_path_factory.mktemp('dist')
    result = subprocess.run(
        ['bash', str(ROOT / 'tools/dist_train.sh'), str(DEMO_CONFIG), '2', '--work-dir',
         str(work_dir), '--cfg-options', *SMALL],
        cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    return work_dir, result


def test_two_process_gloo_training(dist_trained):
    work_dir, result = dist_trained
    console = result.stdout + result.stderr
    assert result.returncode == 0, console[-4000:]
    # mmengine's environment dump goes to the work dir's log file only (a quiet console).
    log_files = sorted(work_dir.glob('*/*.log'))
    assert len(log_files) == 1, log_files
    log = log_files[0].read_text()
    assert 'System environment:' in log and 'System environment:' not in console
    assert 'Distributed launcher: pytorch' in log and 'Distributed training: True' in log
    assert "'backend': 'gloo'" in log
    assert 'GPU number: 2' in log  # mmengine's name for the world size, GPUs or not
    assert 'Iter(val) [2/2]' in console  # 4 validation images sharded over 2 ranks
    assert (work_dir / 'iter_6.pth').is_file()
    assert 'sr/PSNR' in console  # validation ran and gathered results from both ranks


def test_two_process_test_gathers_every_image(dist_trained, tmp_path):
    work_dir, _ = dist_trained
    checkpoint = work_dir / 'iter_6.pth'
    torchrun = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2',
                '--master_addr=127.0.0.1', f'--master_port={free_port()}']
    result = subprocess.run(
        [*torchrun, str(ROOT / 'tools/test.py'), str(DEMO_CONFIG), str(checkpoint), '--launcher',
         'pytorch', '--work-dir', str(tmp_path), '--out', str(tmp_path / 'dist.json'),
         '--cfg-options', *SMALL],
        cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    printed = [line for line in result.stdout.splitlines() if line.startswith('sr/PSNR:')]
    assert len(printed) == 1  # by rank 0 only
    single = run_tool('tools/test.py', DEMO_CONFIG, checkpoint, '--work-dir', tmp_path, '--out',
                      tmp_path / 'single.json', '--cfg-options', *SMALL)
    assert single.returncode == 0, single.stderr[-3000:]
    # 5 test images over 2 ranks: the mean over all of them, not over one rank's share.
    dist_metrics = json.loads((tmp_path / 'dist.json').read_text())
    single_metrics = json.loads((tmp_path / 'single.json').read_text())
    assert dist_metrics == pytest.approx(single_metrics, abs=1e-9)
