"""Accuracy of an iterative stereo model against its number of refinement iterations.

    python tools/stereo_iterations.py CONFIG CKPT [CONFIG CKPT ...] [--iters 1 2 4 8 16 32]
                                      [--num-pairs N] [--out-dir DIR]

Each model is evaluated on its config's test set (``test_dataloader``; the first ``--num-pairs``
pairs) with ``StereoMetric`` once per iteration count, setting ``model.test_iters``. Writes
``iterations.json`` (``{config: {iters: metrics}}``) and ``iterations.png`` (EPE and D1 against
iterations, one line per model) to ``--out-dir``, and prints a markdown table. This is how the
RAFT-Stereo vs IGEV-Stereo "fewer iterations for the same accuracy" claim is checked.
"""
from __future__ import annotations

import argparse
import io
import os
from pathlib import Path

import torch
from mmengine.dataset import pseudo_collate
from mmengine.registry import DefaultScope
from mmengine.utils import ProgressBar

from perception.apis import init_model
from perception.engine.cli import exits_cleanly_on_user_error, write_json
from perception.engine.errors import ConfigError
from perception.engine.fileio import atomic_write_bytes
from perception.evaluation.stereo import StereoMetric
from perception.registry import DATASETS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Stereo accuracy against refinement iterations.')
    parser.add_argument('models', nargs='+', metavar='CONFIG CKPT',
                        help='pairs of config and checkpoint')
    parser.add_argument('--iters', type=int, nargs='+', default=[1, 2, 4, 8, 16, 32])
    parser.add_argument('--num-pairs', type=int, help='evaluate only the first N test pairs')
    parser.add_argument('--out-dir', default='work_dirs/stereo_iterations')
    args = parser.parse_args(argv)
    if len(args.models) % 2:
        parser.error('models must come as CONFIG CKPT pairs')
    if min(args.iters) < 1:
        parser.error('--iters must be >= 1')
    return args


def evaluate_iterations(model: torch.nn.Module, dataset, iterations: list[int],
                        max_disp: float | None = None) -> dict[int, dict[str, float]]:
    """``{iters: StereoMetric results}`` of ``model`` on every pair of ``dataset``."""
    if not hasattr(model, 'test_iters'):
        raise ConfigError(f'{type(model).__name__} has no test_iters: not an iterative model')
    metrics = {n: StereoMetric(max_disp=max_disp) for n in iterations}
    progress = ProgressBar(len(dataset) * len(iterations))
    with torch.inference_mode():
        for index in range(len(dataset)):
            batch = pseudo_collate([dataset[index]])
            for n in iterations:
                model.test_iters = n
                outputs = model.test_step(batch)
                metrics[n].process(batch, [o.to_dict() for o in outputs])
                progress.update()
    return {n: metric.compute_metrics(metric.results) for n, metric in metrics.items()}


def _plot(curves: dict[str, dict[int, dict[str, float]]], path: Path) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for name, curve in curves.items():
        iters = sorted(curve)
        axes[0].plot(iters, [curve[n]['EPE'] for n in iters], marker='o', label=name)
        axes[1].plot(iters, [curve[n]['D1_all'] for n in iters], marker='o', label=name)
    for ax, label in zip(axes, ('EPE (px)', 'D1-all (%)')):
        ax.set_xscale('log', base=2)
        ax.set_xlabel('refinement iterations')
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format='png', dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue(), durable=False)


@exits_cleanly_on_user_error
def main(argv: list[str] | None = None) -> dict[str, dict[int, dict[str, float]]]:
    args = parse_args(argv)
    curves: dict[str, dict[int, dict[str, float]]] = {}
    for config, checkpoint in zip(args.models[::2], args.models[1::2]):
        model = init_model(config, checkpoint)
        cfg = model.cfg
        with DefaultScope.overwrite_default_scope('perception'):
            dataset = DATASETS.build(cfg.test_dataloader.dataset)
        if args.num_pairs:
            dataset = torch.utils.data.Subset(dataset, range(min(args.num_pairs, len(dataset))))
        evaluator = cfg.get('test_evaluator') or {}
        curves[os.path.basename(config)] = evaluate_iterations(
            model, dataset, sorted(set(args.iters)), evaluator.get('max_disp'))
    out_dir = Path(args.out_dir)
    write_json(out_dir / 'iterations.json',
               {name: {str(n): m for n, m in curve.items()} for name, curve in curves.items()})
    _plot(curves, out_dir / 'iterations.png')
    print('| model | ' + ' | '.join(f'{n} it EPE / D1' for n in sorted(set(args.iters))) + ' |')
    for name, curve in curves.items():
        cells = [f'{curve[n]["EPE"]:.3f} / {curve[n]["D1_all"]:.2f}' for n in sorted(curve)]
        print(f'| {name} | ' + ' | '.join(cells) + ' |')
    return curves


if __name__ == '__main__':
    main()
