"""Evaluate a checkpoint with the config's test dataloader and metric.

    python tools/test.py CONFIG CHECKPOINT [--out FILE] [--show-dir DIR] [--work-dir DIR]
                                           [--cfg-options key=value ...] [--launcher none|pytorch]

``--out`` writes the metrics as JSON (``.json``) or the raw predictions as a pickle (``.pkl``);
``--show-dir`` saves image predictions. The checkpoint must fit the model exactly.
"""
from __future__ import annotations

import argparse
import os.path as osp

from mmengine.dist import is_main_process
from mmengine.model import is_model_wrapper

from perception.engine.checkpoint import adapt_state_dict, load_state_dict, read_checkpoint
from perception.engine.cli import (
    add_run_arguments,
    build_runner,
    exits_cleanly_on_user_error,
    prepare_config,
    write_json,
)
from perception.engine.distributed import finish_distributed_run
from perception.engine.errors import ConfigError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test (evaluate) a perception model.')
    parser.add_argument('config', help='config file path')
    parser.add_argument('checkpoint', help='checkpoint file (.pth)')
    parser.add_argument('--work-dir', help='where the test log goes')
    parser.add_argument('--out', help='write metrics (.json) or predictions (.pkl) to this file')
    parser.add_argument('--show-dir', help='save visualised / image predictions here')
    add_run_arguments(parser)
    return parser.parse_args(argv)


@exits_cleanly_on_user_error
def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    cfg = prepare_config(args.config, args.cfg_options, args.work_dir, args.launcher)
    if args.out is not None and not args.out.endswith(('.json', '.pkl', '.pickle')):
        raise ConfigError(f'--out {args.out}: expected a .json (metrics) or .pkl (predictions) '
                          'file name')
    if args.out is not None and args.out.endswith(('.pkl', '.pickle')):
        evaluators = cfg.test_evaluator if isinstance(cfg.test_evaluator, list) else [
            cfg.test_evaluator
        ]
        cfg.test_evaluator = [*evaluators, dict(type='DumpResults', out_file_path=args.out)]
    if args.show_dir is not None:
        show_dir = args.show_dir if osp.isabs(args.show_dir) else osp.join(cfg.work_dir,
                                                                           args.show_dir)
        # ConfigDict.setdefault returns a copy, so the list is rebuilt and assigned.
        cfg.custom_hooks = [*cfg.get('custom_hooks', []),
                            dict(type='SavePredictionsHook', out_dir=show_dir)]
    checkpoint = read_checkpoint(args.checkpoint)  # a bad file fails before the Runner is built
    cfg.load_from, cfg.resume = None, False  # loaded strictly below instead
    runner = build_runner(cfg)
    model = runner.model.module if is_model_wrapper(runner.model) else runner.model
    load_state_dict(model, adapt_state_dict(checkpoint, args.checkpoint), strict=True,
                    source=args.checkpoint)
    metrics = runner.test()
    if is_main_process():
        for key, value in metrics.items():
            print(f'{key}: {value:.4f}' if isinstance(value, float) else f'{key}: {value}')
        if args.out is not None and args.out.endswith('.json'):
            write_json(args.out, metrics)
    finish_distributed_run()
    return metrics


if __name__ == '__main__':
    main()
