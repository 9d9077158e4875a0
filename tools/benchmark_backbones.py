"""Compare the shared backbones: parameters, throughput, latency and peak memory.

    python tools/benchmark_backbones.py [NAME ...] [--device cpu|cuda] [--threads N]
                                        [--batch-size 8] [--warmup 2] [--runs 5]

Backbones are the builders listed in the ``BUILDERS`` dict of each backbone module present
(``perception.models.backbones.resnet``, ``.convnext``, ``.swin``, ``.efficientvit``); NAME picks
some of them (default: all). For each: parameters, images/s on a batch of 3x224x224 images,
latency of one 3x512x1024 image, and peak memory (process RSS on CPU, measured in a fresh
subprocess per backbone so one model's memory does not hide another's; allocated tensor memory
on CUDA). Prints a markdown table.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Callable

import torch

BACKBONE_MODULES = ('resnet', 'convnext', 'swin', 'efficientvit')


def collect_builders() -> dict[str, Callable[..., torch.nn.Module]]:
    """Every builder in the ``BUILDERS`` dicts of the backbone modules that exist."""
    builders: dict[str, Callable[..., torch.nn.Module]] = {}
    for name in BACKBONE_MODULES:
        module_name = f'perception.models.backbones.{name}'
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name != module_name:  # the module exists but something it needs does not
                raise
            continue
        builders.update(getattr(module, 'BUILDERS', {}))
    return builders


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def _median_seconds(model: torch.nn.Module, x: torch.Tensor, warmup: int, runs: int) -> float:
    times = []
    with torch.inference_mode():
        for i in range(warmup + runs):
            _sync(x.device)
            start = time.perf_counter()
            model(x)
            _sync(x.device)
            if i >= warmup:
                times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(name: str, device: str = 'cpu', batch_size: int = 8, warmup: int = 2,
            runs: int = 5) -> dict[str, float | str]:
    """Benchmark one backbone in this process."""
    dev = torch.device(device)
    torch.manual_seed(0)
    model = collect_builders()[name]().to(dev).eval()
    if dev.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(dev)
    small = torch.rand(batch_size, 3, 224, 224, device=dev)
    large = torch.rand(1, 3, 512, 1024, device=dev)
    throughput = batch_size / _median_seconds(model, small, warmup, runs)
    latency = _median_seconds(model, large, warmup, runs)
    if dev.type == 'cuda':
        memory = torch.cuda.max_memory_allocated(dev) / 2**20
    else:
        memory = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    return {'name': name, 'params_m': sum(p.numel() for p in model.parameters()) / 1e6,
            'images_per_s_224': throughput, 'latency_ms_512x1024': latency * 1e3,
            'peak_memory_mib': memory, 'device': str(dev),
            'threads': torch.get_num_threads() if dev.type == 'cpu' else 0}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Benchmark the shared backbones.')
    parser.add_argument('names', nargs='*', help='builders to run (default: all registered)')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--threads', type=int, default=os.cpu_count(),
                        help='torch CPU threads (default: all cores)')
    parser.add_argument('--batch-size', type=int, default=8, help='batch of the 224x224 run')
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--runs', type=int, default=5)
    parser.add_argument('--json', help='also write the results to this file')
    parser.add_argument('--one', help=argparse.SUPPRESS)  # internal: run one, print JSON
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.one:
        print(json.dumps(measure(args.one, args.device, args.batch_size, args.warmup, args.runs)))
        return []
    builders = collect_builders()
    unknown = [n for n in args.names if n not in builders]
    if unknown:
        sys.exit(f'error: unknown backbone(s) {", ".join(unknown)}; '
                 f'known: {", ".join(builders)}')
    results = []
    print('| backbone | params (M) | img/s 8x3x224x224 | ms 1x3x512x1024 | peak mem (MiB) |'
          '\n|---|---|---|---|---|', flush=True)
    for name in args.names or list(builders):
        # A fresh process per backbone: peak RSS is a high-water mark of the whole process.
        cmd = [sys.executable, os.path.abspath(__file__), '--one', name, '--device', args.device,
               '--threads', str(args.threads), '--batch-size', str(args.batch_size),
               '--warmup', str(args.warmup), '--runs', str(args.runs)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f'| {name} | failed: {proc.stderr.strip().splitlines()[-1:]} | | | |')
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        results.append(r)
        print(f'| {name} | {r["params_m"]:.2f} | {r["images_per_s_224"]:.1f} '
              f'| {r["latency_ms_512x1024"]:.1f} | {r["peak_memory_mib"]:.0f} |', flush=True)
    print(f'device: {args.device}, threads: {args.threads}, median of {args.runs} runs after '
          f'{args.warmup} warm-up')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(results, f, indent=1)
    return results


if __name__ == '__main__':
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main()
