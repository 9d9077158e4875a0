"""Multi-scale deformable attention: the pure-PyTorch op against a naive reference.

    python tools/benchmark_msda.py [--height 384 --width 1280] [--threads N ...] [--runs 5]
                                   [--device cpu|cuda]

The shapes are MonoDETR's (and Deformable-DETR's) at one input image of ``height x width``: four
levels at strides 8, 16, 32 and 64 (each ``ceil`` of the previous half, as the backbone's convs),
8 heads of 32 channels, 4 points per level. Two query sets are timed:
* encoder self-attention: one query per token (``Q = S``, 10,200 for 384 x 1280);
* decoder cross-attention: 550 queries (MonoDETR's 50 queries x 11 groups in training).

Each is timed for ``multi_scale_deformable_attention`` (one ``grid_sample`` per level) and for
:func:`msda_gather_reference`, the CUDA kernel's formula written directly: the four bilinear
corners of every sample are gathered from the flattened value tensor by index, weighted, masked
outside the map and summed, one corner at a time. Both are exact to float rounding (the script
checks it). Peak memory is measured in a fresh process that makes one call: the growth of its
peak RSS (``VmHWM``) over the inputs on CPU, the peak allocation over the inputs on CUDA.
"""
from __future__ import annotations

import argparse
import math
import resource
import statistics
import subprocess
import sys
import time

import torch

from perception.models.layers.ms_deform_attn import multi_scale_deformable_attention

HEADS, CHANNELS, LEVELS, POINTS, DECODER_QUERIES = 8, 32, 4, 4, 550


def msda_gather_reference(value: torch.Tensor, spatial_shapes: torch.Tensor,
                          sampling_locations: torch.Tensor,
                          attention_weights: torch.Tensor) -> torch.Tensor:
    """The deformable-attention core by explicit corner gathering (same arguments and result as
    :func:`multi_scale_deformable_attention`: value (B, S, M, D), locations (B, Q, M, L, P, 2),
    weights (B, Q, M, L, P) -> (B, Q, M * D))."""
    b, s, m, d = value.shape
    q, num_levels, p = sampling_locations.shape[1], sampling_locations.shape[3], \
        sampling_locations.shape[4]
    heights = spatial_shapes[:, 0].view(1, 1, 1, num_levels, 1)
    widths = spatial_shapes[:, 1].view(1, 1, 1, num_levels, 1)
    starts = torch.cat([spatial_shapes.new_zeros(1), spatial_shapes.prod(1).cumsum(0)[:-1]])
    x = sampling_locations[..., 0] * widths - 0.5  # pixel coordinates, centres at integers
    y = sampling_locations[..., 1] * heights - 0.5
    x0, y0 = x.floor(), y.floor()
    # (B*M, S, D): heads in the batch, so one gather serves them all.
    flat = value.permute(0, 2, 1, 3).reshape(b * m, s, d)
    out = value.new_zeros(b, q, m, d)
    for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):
        cx, cy = x0 + dx, y0 + dy
        weight = (1 - (x - cx).abs()) * (1 - (y - cy).abs()) * attention_weights
        inside = (cx >= 0) & (cx < widths) & (cy >= 0) & (cy < heights)
        index = starts.view(1, 1, 1, num_levels, 1) + cy.clamp(min=0).long() * widths + \
            cx.clamp(min=0).long()
        index = torch.where(inside, index, torch.zeros_like(index))
        # (B, Q, M, L, P) -> (B*M, Q*L*P)
        index = index.permute(0, 2, 1, 3, 4).reshape(b * m, q * num_levels * p)
        rows = flat.gather(1, index.unsqueeze(-1).expand(-1, -1, d))  # (B*M, Q*L*P, D)
        rows = rows.view(b, m, q, num_levels * p, d)
        w = (weight * inside).permute(0, 2, 1, 3, 4).reshape(b, m, q, num_levels * p, 1)
        out += (rows * w).sum(3).permute(0, 2, 1, 3)
    return out.reshape(b, q, m * d)


def monodetr_levels(height: int, width: int) -> list[tuple[int, int]]:
    """Feature sizes at strides 8, 16, 32 (ResNet) and 64 (the extra stride-2 conv)."""
    levels = [(math.ceil(height / 8), math.ceil(width / 8))]
    for _ in range(LEVELS - 1):
        h, w = levels[-1]
        levels.append((math.ceil(h / 2), math.ceil(w / 2)))
    return levels


def time_call(fn, runs: int, device: torch.device) -> float:
    """Median seconds over ``runs`` after one warm-up call."""
    fn()
    times = []
    for _ in range(runs):
        if device.type == 'cuda':
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == 'cuda':
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_memory_mib(implementation: str, part: str, args: argparse.Namespace) -> float:
    """Peak memory of one call, measured in a fresh process that runs only that call: the growth
    of its peak RSS over the inputs (CPU) or its peak CUDA allocation over the inputs."""
    command = [sys.executable, __file__, '--measure-memory', implementation, part,
               '--height', str(args.height), '--width', str(args.width), '--device', args.device]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def _peak_rss_mib() -> float:
    """This process's peak resident set (``VmHWM``). Unlike ``getrusage``'s ``ru_maxrss``, it
    starts afresh in an exec'd child instead of inheriting the parent's peak."""
    with open('/proc/self/status') as status:
        for line in status:
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # not Linux


def _memory_of_one_call(implementation: str, part: str, args: argparse.Namespace) -> float:
    device = torch.device(args.device)
    levels = monodetr_levels(args.height, args.width)
    queries = sum(h * w for h, w in levels) if part == 'encoder' else DECODER_QUERIES
    inputs = make_inputs(levels, queries, device, torch.Generator().manual_seed(0))
    fn = IMPLEMENTATIONS[implementation]
    with torch.inference_mode():
        if device.type == 'cuda':
            torch.cuda.synchronize(device)
            base = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
            fn(*inputs)
            torch.cuda.synchronize(device)
            return (torch.cuda.max_memory_allocated(device) - base) / 2**20
        before = _peak_rss_mib()
        fn(*inputs)
        return _peak_rss_mib() - before


def make_inputs(levels: list[tuple[int, int]], queries: int, device: torch.device,
                generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    tokens = sum(h * w for h, w in levels)
    value = torch.randn(1, tokens, HEADS, CHANNELS, generator=generator).to(device)
    shapes = torch.tensor(levels, dtype=torch.long, device=device)
    # Locations a little beyond the map on every side, so that zero padding is exercised.
    locations = (torch.rand(1, queries, HEADS, LEVELS, POINTS, 2, generator=generator) * 1.1
                 - 0.05).to(device)
    weights = torch.rand(1, queries, HEADS, LEVELS, POINTS, generator=generator)
    weights = (weights / weights.sum((-1, -2), keepdim=True)).to(device)
    return value, shapes, locations, weights


IMPLEMENTATIONS = {'ours': multi_scale_deformable_attention, 'reference': msda_gather_reference}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--height', type=int, default=384)
    parser.add_argument('--width', type=int, default=1280)
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    parser.add_argument('--threads', type=int, nargs='+', help='CPU thread counts (default: 1)')
    parser.add_argument('--runs', type=int, default=5)
    parser.add_argument('--measure-memory', nargs=2, metavar=('IMPL', 'PART'),
                        help=argparse.SUPPRESS)  # internal: one call in a fresh process
    args = parser.parse_args(argv)
    if args.measure_memory:
        print(_memory_of_one_call(*args.measure_memory, args))
        return []
    device = torch.device(args.device)
    levels = monodetr_levels(args.height, args.width)
    tokens = sum(h * w for h, w in levels)
    print(f'input {args.height}x{args.width}: levels {levels}, {tokens} tokens, {HEADS} heads x '
          f'{CHANNELS} channels, {LEVELS} levels x {POINTS} points')
    print('| part | queries | threads | ours | naive reference | ratio | ours peak | '
          'reference peak | max abs diff |')
    print('|---|---|---|---|---|---|---|---|---|')
    rows = []
    for threads in (args.threads or [1]) if device.type == 'cpu' else [None]:
        if threads is not None:
            torch.set_num_threads(threads)
        for part, queries in (('encoder', tokens), ('decoder', DECODER_QUERIES)):
            inputs = make_inputs(levels, queries, device, torch.Generator().manual_seed(0))
            with torch.inference_mode():
                diff = (multi_scale_deformable_attention(*inputs)
                        - msda_gather_reference(*inputs)).abs().max().item()
                t_ours = time_call(lambda: multi_scale_deformable_attention(*inputs), args.runs,
                                   device)
                t_ref = time_call(lambda: msda_gather_reference(*inputs), args.runs, device)
            m_ours = peak_memory_mib('ours', part, args)
            m_ref = peak_memory_mib('reference', part, args)
            rows.append(dict(part=part, queries=queries, threads=threads, ours_ms=t_ours * 1e3,
                             reference_ms=t_ref * 1e3, ours_mib=m_ours, reference_mib=m_ref,
                             max_abs_diff=diff))
            print(f'| {part} | {queries} | {threads or device} | {t_ours * 1e3:.1f} ms | '
                  f'{t_ref * 1e3:.1f} ms | {t_ref / t_ours:.1f}x | {m_ours:.0f} MiB | '
                  f'{m_ref:.0f} MiB | {diff:.1e} |')
            if diff > 1e-4:
                raise SystemExit(f'error: the two implementations differ by {diff:.2e}')
    return rows


if __name__ == '__main__':
    main()
