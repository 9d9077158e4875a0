"""Train a model from a config.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
                                 [--cfg-options key=value ...] [--launcher none|pytorch]

Multi-process: ``bash tools/dist_train.sh CONFIG NPROC`` (torchrun; gloo on CPU, nccl on GPU).
"""
from __future__ import annotations

import argparse

import torch

from perception.engine.cli import (
    add_run_arguments,
    build_runner,
    exits_cleanly_on_user_error,
    prepare_config,
)
from perception.engine.distributed import finish_distributed_run


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a perception model.')
    parser.add_argument('config', help='config file path')
    parser.add_argument('--work-dir', help='where logs and checkpoints go '
                        '(default: work_dirs/<config name>)')
    parser.add_argument('--resume', nargs='?', const='auto', default=None, metavar='CKPT',
                        help='resume from CKPT, or from the latest checkpoint in the work dir '
                        'when CKPT is omitted')
    parser.add_argument('--amp', action='store_true',
                        help='mixed precision: float16 with loss scaling on GPU, bfloat16 on CPU')
    add_run_arguments(parser)
    return parser.parse_args(argv)


@exits_cleanly_on_user_error
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    cfg = prepare_config(args.config, args.cfg_options, args.work_dir, args.launcher)
    if args.amp:
        if torch.cuda.is_available():
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
        else:
            cfg.optim_wrapper.type = 'AutocastOptimWrapper'
            cfg.optim_wrapper.setdefault('dtype', 'bfloat16')
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    runner = build_runner(cfg)
    runner.train()
    finish_distributed_run()


if __name__ == '__main__':
    main()
