"""`make demo`: train the default model on generated data, then evaluate the checkpoint.

Today the default is ESPCN x3 on generated images (`configs/espcn/espcn_x3_synthetic-sr.py`):
it trains for 3,000 iterations (about two minutes on two CPU cores), then `tools/test.py`
reloads the last checkpoint and reports PSNR-Y next to the bicubic baseline.

    python tools/demo.py [--config CONFIG] [--work-dir DIR] [extra train.py args...]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = ROOT / 'configs/espcn/espcn_x3_synthetic-sr.py'


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--config', default=str(DEFAULT_CONFIG))
    parser.add_argument('--work-dir', default=str(ROOT / 'work_dirs/demo'))
    args, train_args = parser.parse_known_args()

    work_dir = Path(args.work_dir)
    print(f'[demo] training {Path(args.config).name} into {work_dir}', flush=True)
    train = [sys.executable, str(ROOT / 'tools/train.py'), args.config, '--work-dir',
             str(work_dir), *train_args]
    if subprocess.call(train) != 0:
        return 1
    checkpoint = (work_dir / 'last_checkpoint').read_text().strip()
    metrics_file = work_dir / 'demo_metrics.json'
    print(f'[demo] evaluating {checkpoint}', flush=True)
    test = [sys.executable, str(ROOT / 'tools/test.py'), args.config, checkpoint, '--work-dir',
            str(work_dir), '--out', str(metrics_file)]
    if subprocess.call(test) != 0:
        return 1
    metrics = json.loads(metrics_file.read_text())
    print('[demo] result on held-out generated images: ' +
          ', '.join(f'{k} = {v:.2f}' for k, v in sorted(metrics.items())), flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
