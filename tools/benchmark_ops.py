"""Measure the geometry ops of ``perception.models.ops`` on KITTI-sized random input.

    python tools/benchmark_ops.py [--device cpu|cuda] [--threads N ...] [--runs 5] [--seed 0]

Reports, for each thread count (CPU) or once (CUDA):
* rotated BEV IoU, 1,000 x 1,000 boxes: pairs/s for boxes spread over the KITTI range (most pairs
  skipped by the bounding-box prefilter) and for boxes all overlapping one another (every pair
  clipped: the worst case, comparable to kernels without a prefilter);
* 3D IoU, 1,000 x 1,000 LiDAR boxes, both layouts;
* rotated NMS of 5,000 detector-like boxes (clusters of jittered copies);
* points in boxes, 120,000 points x 50 boxes;
* hard voxelisation of a 120,000-point frame (range [0, -40, -3, 70.4, 40, 1], voxel
  0.05 x 0.05 x 0.1, 5 points, 16,000 voxels), spconv's PointToVoxel beside it where installed,
  and dynamic voxelisation.
Times are medians over ``--runs`` after one warm-up run.
"""
from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from perception.models.ops.iou3d import bev_iou, box3d_iou
from perception.models.ops.nms import nms_bev
from perception.models.ops.points_in_boxes import points_in_boxes
from perception.models.ops.voxelize import Voxelizer, voxelize_dynamic, voxelize_hard

VOXEL_SIZE = [0.05, 0.05, 0.1]
PC_RANGE = [0, -40, -3, 70.4, 40, 1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Benchmark the 3D geometry ops.')
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    parser.add_argument('--threads', type=int, nargs='+',
                        help='CPU thread counts to measure (default: 1 and all cores)')
    parser.add_argument('--runs', type=int, default=5)
    parser.add_argument('--seed', type=int, default=0)
    return parser.parse_args(argv)


def median_seconds(fn: Callable[[], object], runs: int, device: str) -> float:
    def sync():
        if device == 'cuda':
            torch.cuda.synchronize()

    fn()
    sync()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def kitti_lidar_boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 7) car-sized LiDAR boxes over the KITTI range."""
    return np.c_[rng.uniform(0, 70.4, n), rng.uniform(-40, 40, n), rng.uniform(-2, -1, n),
                 rng.uniform(3.2, 4.7, n), rng.uniform(1.4, 1.9, n), rng.uniform(1.4, 1.7, n),
                 rng.uniform(-math.pi, math.pi, n)]


def make_inputs(rng: np.random.Generator, device: str) -> dict[str, torch.Tensor]:
    spread_a, spread_b = kitti_lidar_boxes(rng, 1000), kitti_lidar_boxes(rng, 1000)
    dense = kitti_lidar_boxes(rng, 1000)
    dense[:, :2] = rng.uniform(-0.7, 0.7, (1000, 2))  # every pair's bounding boxes overlap
    centres = kitti_lidar_boxes(rng, 60)
    dets = centres[rng.integers(0, 60, 5000)] + rng.normal(0, [0.5, 0.5, 0.1, 0.2, 0.1, 0.1, 0.2],
                                                          (5000, 7))
    xyz = np.c_[rng.uniform(0, 70.4, 120000), rng.uniform(-40, 40, 120000),
                rng.uniform(-3, 1, 120000)]
    points = np.c_[xyz, rng.uniform(0, 1, 120000)].astype(np.float32)
    out = {'spread_a': spread_a, 'spread_b': spread_b, 'dense': dense, 'dets': dets,
           'scores': rng.random(5000), 'points': points,
           'boxes50': np.c_[xyz[:50, :2], np.full(50, -2.0), rng.uniform(3, 5, (50, 3)),
                            rng.uniform(-math.pi, math.pi, 50)]}
    return {k: torch.from_numpy(np.ascontiguousarray(v)).to(device) for k, v in out.items()}


def run(device: str, runs: int, data: dict[str, torch.Tensor]) -> list[tuple[str, str]]:
    bev = [0, 1, 3, 4, 6]
    rows = []
    pairs = 1000 * 1000

    t = median_seconds(lambda: bev_iou(data['spread_a'][:, bev], data['spread_b'][:, bev]), runs,
                       device)
    rows.append(('BEV IoU 1k x 1k, spread over KITTI range', f'{pairs / t / 1e6:.1f} M pairs/s'))
    t = median_seconds(lambda: bev_iou(data['dense'][:, bev], data['dense'][:, bev]), runs, device)
    rows.append(('BEV IoU 1k x 1k, all overlapping (worst case)',
                 f'{pairs / t / 1e6:.2f} M pairs/s'))
    t = median_seconds(lambda: box3d_iou(data['spread_a'], data['spread_b']), runs, device)
    rows.append(('3D IoU 1k x 1k, spread', f'{pairs / t / 1e6:.1f} M pairs/s'))
    t = median_seconds(lambda: box3d_iou(data['dense'], data['dense']), runs, device)
    rows.append(('3D IoU 1k x 1k, all overlapping', f'{pairs / t / 1e6:.2f} M pairs/s'))
    t = median_seconds(lambda: nms_bev(data['dets'][:, bev], data['scores'], 0.5), runs, device)
    kept = len(nms_bev(data['dets'][:, bev], data['scores'], 0.5))
    rows.append((f'rotated NMS, 5k boxes ({kept} kept)', f'{t * 1e3:.1f} ms'))
    t = median_seconds(lambda: points_in_boxes(data['points'], data['boxes50']), runs, device)
    rows.append(('points in boxes, 120k x 50', f'{t * 1e3:.1f} ms'))
    t = median_seconds(lambda: voxelize_hard(data['points'], VOXEL_SIZE, PC_RANGE, 5, 16000), runs,
                       device)
    rows.append(('hard voxelisation, 120k points (torch)', f'{t * 1e3:.1f} ms'))
    spconv_vox = Voxelizer(VOXEL_SIZE, PC_RANGE, max_num_points=5, max_voxels=16000)
    if spconv_vox.uses_spconv(data['points']):
        t = median_seconds(lambda: spconv_vox(data['points']), runs, device)
        rows.append(('hard voxelisation, 120k points (spconv PointToVoxel)', f'{t * 1e3:.1f} ms'))
    t = median_seconds(lambda: voxelize_dynamic(data['points'], VOXEL_SIZE, PC_RANGE), runs,
                       device)
    rows.append(('dynamic voxelisation, 120k points', f'{t * 1e3:.1f} ms'))
    return rows


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.device == 'cuda' and not torch.cuda.is_available():
        raise SystemExit('error: --device cuda but CUDA is not available')
    data = make_inputs(np.random.default_rng(args.seed), args.device)
    if args.device == 'cuda':
        print(f'device: {torch.cuda.get_device_name()}')
        settings = [None]
    else:
        settings = args.threads or sorted({1, torch.get_num_threads()})
    for threads in settings:
        if threads is not None:
            torch.set_num_threads(threads)
            print(f'\n## CPU, {threads} thread(s)')
        for name, value in run(args.device, args.runs, data):
            print(f'{name:<58} {value}')


if __name__ == '__main__':
    main()
