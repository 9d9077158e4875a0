"""Two-process training with torchrun and the gloo backend on CPU."""
import os
import subprocess
import sys

from .conftest import DEMO_CONFIG, ROOT, free_port


def test_two_process_gloo_training(tmp_path):
    env = dict(os.environ, PORT=str(free_port()), PYTHONPATH=str(ROOT), OMP_NUM_THREADS='1',
               PYTHON=sys.executable)
    result = subprocess.run(
        ['bash', str(ROOT / 'tools/dist_train.sh'), str(DEMO_CONFIG), '2', '--work-dir',
         str(tmp_path), '--cfg-options', 'train_cfg.max_iters=6', 'train_cfg.val_interval=6',
         'default_hooks.checkpoint.interval=6', 'train_dataloader.batch_size=2',
         'val_dataloader.dataset.num_images=4', 'default_hooks.logger.interval=2'],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    assert 'Distributed launcher: pytorch' in log and 'Distributed training: True' in log
    assert 'backend: gloo' in log or "'backend': 'gloo'" in log
    assert 'GPU number: 2' in log  # mmengine's name for the world size, GPUs or not
    assert 'Iter(val) [2/2]' in log  # 4 validation images sharded over 2 ranks
    assert (tmp_path / 'iter_6.pth').is_file()
    assert 'sr/PSNR' in log  # validation ran and gathered results from both ranks
