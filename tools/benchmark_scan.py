"""Compare the scans of LION's linear RNN operators side by side in one process.

    python tools/benchmark_scan.py [CONFIG] [--input CLOUD.bin] [--scans doubling chunked]
                                   [--runs 3] [--threads 1] [--ops-only]

1. The bare operators at LION's KITTI size (``--groups`` groups x 4,096 positions, 128 inner
   channels, state 16 for Mamba; 4 heads of 16 x 16 for RWKV): median seconds per call.
2. (unless ``--ops-only``) the whole detector of ``CONFIG`` (default: the published LION-Mamba
   KITTI model, untrained weights) on ``--input`` (default KITTI frame 000008 from the shared
   samples), end to end through ``inference_lidar3d``, with its stage times.

The scans alternate inside every run (doubling, chunked, doubling, ...), so a load that changes
during the measurement hits both alike; medians over ``--runs`` after one warm-up round. The
largest difference between the two scans' 3D-backbone features is printed as a check.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from perception.apis.inference import (
    inference_lidar3d,
    model_test_pipeline,
    points_loader_columns,
    read_point_cloud,
)
from perception.engine.config import load_config
from perception.models.layers.linear_rnn import SCAN_METHODS, bi_wkv, selective_scan
from perception.registry import MODELS

ROOT = Path(__file__).resolve().parent.parent
# The shared samples lie beside the checkout (see DESIGN.md).
DEFAULT_CONFIG = str(ROOT / 'configs/lion/lion-mamba_kitti-3d-3class.py')
DEFAULT_CLOUD = str(ROOT.parent / 'shared/data/kitti_mini/training/velodyne/000008.bin')


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='LION scans side by side.')
    parser.add_argument('config', nargs='?', default=DEFAULT_CONFIG)
    parser.add_argument('--input', default=DEFAULT_CLOUD, help='point cloud .bin')
    parser.add_argument('--scans', nargs='+', default=['doubling', 'chunked'],
                        choices=SCAN_METHODS)
    parser.add_argument('--groups', type=int, default=5, help='operator groups of 4,096')
    parser.add_argument('--runs', type=int, default=3)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--ops-only', action='store_true')
    return parser.parse_args(argv)


def _interleaved(calls: dict[str, callable], runs: int) -> dict[str, list[float]]:
    """Seconds of each call per run, the calls alternating; one warm-up round first."""
    for call in calls.values():
        call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(runs):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return times


def operator_inputs(groups: int, seed: int = 0) -> dict[str, tuple]:
    g = torch.Generator().manual_seed(seed)
    length, d_inner, state, heads, head = 4096, 128, 16, 4, 16
    u = torch.randn(groups, length, d_inner, generator=g)
    delta = torch.nn.functional.softplus(torch.randn(groups, length, d_inner, generator=g) - 4)
    A = -torch.arange(1, state + 1.0).repeat(d_inner, 1)
    B, C = (torch.randn(groups, length, state, generator=g) for _ in range(2))
    r, k = (torch.randn(groups, length, heads, head, generator=g) for _ in range(2))
    v = torch.randn(groups, length, heads, head, generator=g)
    w = torch.exp(-torch.exp(torch.randn(groups, length, heads, head, generator=g) - 3))
    bonus = torch.randn(heads, head, generator=g)
    return {'mamba': (u, delta, A, B, C, torch.ones(d_inner)), 'rwkv': (r, k, v, w, bonus)}


def set_scan(model: torch.nn.Module, scan: str) -> int:
    """Set ``scan`` on every operator of ``model``; returns how many were set."""
    count = 0
    for module in model.modules():
        if hasattr(module, 'scan'):
            module.scan = scan
            count += 1
    return count


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    results: dict = {}
    inputs = operator_inputs(args.groups)
    functions = {'mamba': selective_scan, 'rwkv': bi_wkv}
    with torch.inference_mode():
        for op, fn in functions.items():
            calls = {scan: (lambda fn=fn, x=inputs[op], s=scan: fn(*x, scan=s))
                     for scan in args.scans}
            times = _interleaved(calls, args.runs)
            results[op] = {scan: statistics.median(t) for scan, t in times.items()}
            print(f'{op} operator, {args.groups} x 4096: '
                  + ', '.join(f'{s} {1e3 * t:.0f} ms' for s, t in results[op].items()))
    if args.ops_only:
        return results

    cfg = load_config(args.config)
    model = MODELS.build(cfg.model)
    model.cfg = cfg
    model.eval()
    num_features, use_dims = points_loader_columns(model_test_pipeline(model))
    cloud = read_point_cloud(args.input, args.input, num_features, use_dims)
    stages: dict[str, dict[str, list[float]]] = {s: {} for s in args.scans}
    features: dict[str, torch.Tensor] = {}

    def detector(scan: str):
        def call():
            if set_scan(model, scan) == 0:
                raise SystemExit(f'{args.config}: the model has no operator with a scan choice')
            inference_lidar3d(model, [cloud])
            for name, seconds in (model.stage_times or {}).items():
                stages[scan].setdefault(name, []).append(seconds)
        return call

    backbone = model.backbone_3d
    hook = backbone.register_forward_hook(
        lambda module, inp, out: features.__setitem__('last', getattr(out, 'features', out)))
    totals: dict[str, list[float]] = {}
    with torch.inference_mode():
        for scan in args.scans:  # the check: same features from every scan
            detector(scan)()
            features[scan] = features['last'].clone()
        hook.remove()
        totals = _interleaved({scan: detector(scan) for scan in args.scans}, args.runs)
    print(f'{args.config} on {args.input} ({len(cloud)} points), {args.threads} thread(s), '
          f'medians of {args.runs}:')
    for scan in args.scans:
        stage_text = ', '.join(f'{name} {1e3 * statistics.median(v[-args.runs:]):.0f}'
                               for name, v in stages[scan].items())
        total = statistics.median(totals[scan])
        results[scan] = {'total': total, **{name: statistics.median(v[-args.runs:])
                                            for name, v in stages[scan].items()}}
        print(f'  {scan}: total {1e3 * total:.0f} ms ({stage_text} ms)')
    first = args.scans[0]
    for scan in args.scans[1:]:
        diff = (features[scan] - features[first]).abs().max().item()
        print(f'  3D backbone features, {scan} vs {first}: max |diff| {diff:.2e}')
        results[f'diff_{scan}'] = diff
    return results


if __name__ == '__main__':
    main()
