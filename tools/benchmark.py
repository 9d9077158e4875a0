"""Measure a model's inference speed and memory on random input of a stated size.

    python tools/benchmark.py CONFIG [--checkpoint CKPT] [--input-shape C H W] [--batch-size B]
                                     [--device cpu|cuda] [--warmup 3] [--runs 20] [--threads N]
                                     [--cfg-options model.test_iters=12 ...]

The input shape comes from ``--input-shape`` or the config's ``benchmark = dict(input_shape=...)``.
Reports latency median / p90, throughput, and peak memory (process RSS on CPU, allocated tensor
memory on CUDA), then a markdown row for docs/model_zoo.md.
"""
from __future__ import annotations

import argparse
import resource
import statistics
import time

import torch
from mmengine.config import DictAction

from perception.engine.checkpoint import load_checkpoint
from perception.engine.cli import exits_cleanly_on_user_error
from perception.engine.config import load_config
from perception.engine.errors import ConfigError
from perception.registry import MODELS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Benchmark model inference.')
    parser.add_argument('config')
    parser.add_argument('--checkpoint', help='weights to load (speed does not depend on them)')
    parser.add_argument('--input-shape', type=int, nargs='+', metavar='DIM',
                        help='one input without the batch dimension, e.g. 3 256 256')
    parser.add_argument('--batch-size', type=int, default=1)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--runs', type=int, default=20)
    parser.add_argument('--threads', type=int, help='torch CPU threads (default: torch decides)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
                        help='override config keys, e.g. model.test_iters=12 '
                        "model.corr_implementation='alt'")
    return parser.parse_args(argv)


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


@exits_cleanly_on_user_error
def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(args.config, args.cfg_options)
    shape = args.input_shape or cfg.get('benchmark', {}).get('input_shape')
    if not shape:
        raise ConfigError(f'{args.config}: no input shape: pass --input-shape or set '
                          'benchmark = dict(input_shape=[...]) in the config')
    device = torch.device(args.device)
    model = MODELS.build(cfg.model)
    if args.checkpoint:
        load_checkpoint(model, args.checkpoint)
    model.to(device).eval()
    inputs = torch.rand(args.batch_size, *shape, device=device)

    rss_before = _peak_rss_mib()
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    with torch.inference_mode():
        for i in range(args.warmup + args.runs):
            _sync(device)
            start = time.perf_counter()
            model(inputs, mode='tensor')
            _sync(device)
            if i >= args.warmup:
                times.append(time.perf_counter() - start)
    times.sort()
    median = statistics.median(times)
    p90 = times[min(len(times) - 1, int(round(0.9 * (len(times) - 1))))]
    result = {
        'latency_median_ms': median * 1e3,
        'latency_p90_ms': p90 * 1e3,
        'throughput_per_s': args.batch_size / median,
        'params_m': sum(p.numel() for p in model.parameters()) / 1e6,
    }
    if device.type == 'cuda':
        result['peak_memory_mib'] = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        result['peak_rss_mib'] = _peak_rss_mib()
        result['peak_rss_growth_mib'] = _peak_rss_mib() - rss_before
    threads = torch.get_num_threads() if device.type == 'cpu' else '-'
    size = 'x'.join(map(str, [args.batch_size, *shape]))
    print(f'{args.config}: input {size} on {device} '
          f'(threads: {threads}), {args.runs} runs after {args.warmup} warm-up')
    for key, value in result.items():
        print(f'  {key}: {value:.3f}')
    memory = result.get('peak_memory_mib', result.get('peak_rss_mib'))
    print(f'| {cfg.model.get("type")} | {size} | {device} '
          f'| {result["params_m"]:.3f} | {median * 1e3:.2f} | {p90 * 1e3:.2f} | '
          f'{result["throughput_per_s"]:.1f} | {memory:.0f} |')
    return result


if __name__ == '__main__':
    main()
