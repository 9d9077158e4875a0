"""Measure a model's inference speed and memory on random input of a stated size or on files.

    python tools/benchmark.py CONFIG [--checkpoint CKPT] [--input-shape C H W] [--batch-size B]
                                     [--input FILE [FILE_RIGHT]] [--calib CALIB.txt]
                                     [--num-points N] [--onnx M.onnx]
                                     [--device cpu|cuda] [--warmup 3] [--runs 20] [--threads N]
                                     [--cfg-options model.test_iters=12 ...]

Inputs:

- default: a random tensor of ``--input-shape`` (or the config's ``benchmark = dict(input_shape=
  ...)``) through ``model(inputs, mode='tensor')`` (the network only; stereo takes ``2 3 H W``,
  mono3D gets a KITTI-like camera). LiDAR configs instead get the real KITTI frame 000008 that
  ships with the project (``data/demo/kitti_000008``, else the shared samples beside the
  checkout) end to end, or with ``--num-points N`` a random cloud of N points (x, y, z,
  intensity) uniform in the config's ``point_cloud_range``.
- ``--input``: an image (segmentation, SR, mono3D; ``--calib`` a KITTI calib file for mono3D,
  else a camera with f = 721.5 px and the principal point at the image centre), a stereo pair
  ``--input L R``, or a point cloud ``.bin``; timed end to end through the ``perception.apis``
  inference functions (test-time pre-processing and decoding included), ``--batch-size`` copies.
- ``--onnx M.onnx``: the exported graph (``tools/export_onnx.py``) run by onnxruntime on the CPU,
  on random input of the graph's shape, or end to end with ``--input``.

Reports latency median / p90, throughput, peak memory (process RSS on CPU, ``torch.cuda.
max_memory_allocated`` on CUDA), per-stage medians where the model sets ``stage_times`` (a dict
name -> seconds after each eval forward), then a markdown row for docs/model_zoo.md:
``| model | input | device | params (M) | median ms | p90 ms | items/s | memory MiB |`` plus a
``stages`` column when there are stages. For ``--onnx`` the parameter count is the element count
of the graph's initialisers (weights, plus constants the exporter folded in, minus unused weights).
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from mmengine.config import DictAction

from perception.apis.inference import (
    inference_lidar3d,
    inference_mono3d,
    inference_segmentation,
    inference_sr,
    inference_stereo,
    model_test_pipeline,
    points_loader_columns,
    read_point_cloud,
)
from perception.apis.onnx_runtime import OnnxModel, model_task
from perception.engine.checkpoint import load_checkpoint
from perception.engine.cli import exits_cleanly_on_user_error
from perception.engine.config import load_config
from perception.engine.errors import ConfigError
from perception.registry import MODELS

KITTI_FOCAL = 721.5377
ROOT = Path(__file__).resolve().parent.parent
# The default LiDAR input, in the order looked for: the demo frame in the checkout, then the
# shared samples beside it (DESIGN.md).
KITTI_FRAME_000008 = (ROOT / 'data/demo/kitti_000008/training/velodyne/000008.bin',
                      ROOT / 'data/demo/kitti_000008/velodyne/000008.bin',
                      ROOT.parent / 'shared/data/kitti_mini/training/velodyne/000008.bin')


def default_point_cloud() -> Path:
    """The shipped KITTI frame 000008, wherever it is found first."""
    for path in KITTI_FRAME_000008:
        if path.is_file():
            return path
    raise ConfigError('LiDAR benchmark: KITTI frame 000008 not found at any of '
                      + ', '.join(map(str, KITTI_FRAME_000008))
                      + '; pass --input CLOUD.bin or --num-points N for a random cloud')


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Benchmark model inference.')
    parser.add_argument('config')
    parser.add_argument('--checkpoint', help='weights to load (speed does not depend on them)')
    parser.add_argument('--input-shape', type=int, nargs='+', metavar='DIM',
                        help='one input without the batch dimension, e.g. 3 256 256')
    parser.add_argument('--input', nargs='+', metavar='FILE',
                        help='an image, a stereo pair (L R) or a point cloud .bin, timed end to '
                        'end through the inference API')
    parser.add_argument('--calib', help='mono3D with --input: KITTI calib file (P2)')
    parser.add_argument('--num-points', type=int,
                        help='LiDAR: time a random cloud of N points instead of KITTI frame '
                        '000008')
    parser.add_argument('--onnx', help='benchmark this exported graph with onnxruntime')
    parser.add_argument('--batch-size', type=int, default=1)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--runs', type=int, default=20)
    parser.add_argument('--threads', type=int,
                        help='torch (and onnxruntime) CPU threads (default: they decide)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
                        help='override config keys, e.g. model.test_iters=12 '
                        "model.corr_implementation='alt'")
    return parser.parse_args(argv)


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def _percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(round(q * (len(sorted_values) - 1))))]


def _point_cloud_range(cfg, model) -> list[float]:
    pcr = cfg.get('point_cloud_range') or getattr(model, 'point_cloud_range', None)
    if pcr is None:
        for t in cfg.get('test_pipeline') or []:
            if 'point_cloud_range' in t:
                pcr = t['point_cloud_range']
    if pcr is None or len(pcr) != 6:
        raise ConfigError('LiDAR benchmark: the config has no point_cloud_range '
                          '[x0, y0, z0, x1, y1, z1]; pass --input CLOUD.bin')
    return [float(v) for v in pcr]


def random_cloud(num_points: int, pcr: list[float], seed: int = 0) -> np.ndarray:
    """``(N, 4)`` float32 x, y, z uniform in ``pcr`` (max exclusive) and intensity in [0, 1)."""
    rng = np.random.default_rng(seed)
    low, high = np.asarray(pcr[:3]), np.asarray(pcr[3:])
    xyz = rng.uniform(low, high, (num_points, 3))
    xyz = np.minimum(xyz, np.nextafter(high, low))  # keep inside the half-open range
    return np.concatenate([xyz, rng.uniform(0, 1, (num_points, 1))], 1).astype(np.float32)


def _kitti_like_cam2img(height: int, width: int) -> np.ndarray:
    return np.array([[KITTI_FOCAL, 0, (width - 1) / 2, 0], [0, KITTI_FOCAL, (height - 1) / 2, 0],
                     [0, 0, 1, 0]])


def _file_runner(model, task: str, args) -> tuple[Callable[[], object], str]:
    """A call of the task's inference function on ``--input`` and a label of the input size."""
    from perception.datasets.transforms.loading import read_rgb

    files, batch = args.input, args.batch_size
    if task == 'stereo':
        if len(files) != 2:
            raise ConfigError('stereo: --input needs the left and the right image')
        left, right = read_rgb(files[0]), read_rgb(files[1])
        size = 'x'.join(map(str, (batch, 2, 3, *left.shape[:2])))
        return lambda: inference_stereo(model, [left] * batch, [right] * batch), size
    if len(files) != 1:
        raise ConfigError(f'{task}: --input takes one file, got {len(files)}')
    if task == 'lidar3d':
        num_features, use_dims = points_loader_columns(model_test_pipeline(model))
        cloud = read_point_cloud(files[0], files[0], num_features, use_dims)
        size = f'{batch}x{len(cloud)}x{cloud.shape[1]}pts'
        return lambda: inference_lidar3d(model, [cloud] * batch), size
    image = read_rgb(files[0])
    size = 'x'.join(map(str, (batch, 3, *image.shape[:2])))
    if task == 'seg':
        return lambda: inference_segmentation(model, [image] * batch), size
    if task == 'sr':
        return lambda: inference_sr(model, [image] * batch), size
    if task == 'mono3d':
        if args.calib:
            from perception.structures import KittiCalibration

            cam2img = KittiCalibration.from_file(args.calib).P2
        else:
            cam2img = _kitti_like_cam2img(*image.shape[:2])
        return lambda: inference_mono3d(model, [image] * batch, cam2img), size
    raise ConfigError(f'--input is not supported for {task} models')


def _random_runner(model, task: str, cfg, args, device) -> tuple[Callable[[], object], str]:
    """A forward of the network (or the ONNX graph) on random input, and the input's label."""
    batch = args.batch_size
    if task == 'lidar3d':
        if args.num_points is None:
            args.input = [os.fspath(default_point_cloud())]
            return _file_runner(model, task, args)
        cloud = random_cloud(args.num_points, _point_cloud_range(cfg, model))
        return (lambda: inference_lidar3d(model, [cloud] * batch),
                f'{batch}x{args.num_points}x4pts')
    if isinstance(model, OnnxModel):
        shape = list(args.input_shape or model.meta['input_shape'])
        if task == 'stereo' and len(shape) == 3:
            shape = [2, *shape]
        arrays = [np.random.rand(batch, *shape).astype(np.float32)]
        if task == 'mono3d':
            arrays.append(np.full(batch, KITTI_FOCAL, np.float32))
        return lambda: model.run(*arrays), 'x'.join(map(str, [batch, *shape]))
    shape = args.input_shape or config_input_shape(cfg, args.config)
    inputs = torch.rand(batch, *shape, device=device)
    size = 'x'.join(map(str, [batch, *shape]))
    if task == 'mono3d':
        from perception.structures import Det3DDataSample

        samples = [Det3DDataSample(metainfo={'cam2img': _kitti_like_cam2img(*shape[-2:])})
                   for _ in range(batch)]
        return lambda: model(inputs, samples, mode='tensor'), size
    return lambda: model(inputs, mode='tensor'), size


def config_input_shape(cfg, config_name: str = 'config') -> list[int]:
    """One image input without the batch dimension, as the config states it.

    In order: ``benchmark = dict(input_shape=[...])``, the test pipeline's fixed output size
    (``out_shape`` of a resize, e.g. MonoDETR's ``Mono3DResize``), the config's ``crop_size``
    (segmentation). Stereo shapes are ``2 3 H W``.
    """
    shape = (cfg.get('benchmark') or {}).get('input_shape')
    if shape:
        return [int(v) for v in shape]
    for t in cfg.get('test_pipeline') or []:
        if t.get('out_shape'):
            return [3, *(int(v) for v in t['out_shape'])]
    if cfg.get('crop_size'):
        return [3, *(int(v) for v in cfg['crop_size'])]
    raise ConfigError(f'{config_name}: no input shape: pass --input-shape or set '
                      'benchmark = dict(input_shape=[...]) in the config')


def _onnx_params_m(path: str) -> float:
    import onnx

    graph = onnx.load(path, load_external_data=False).graph
    return sum(int(np.prod(t.dims)) for t in graph.initializer) / 1e6


@exits_cleanly_on_user_error
def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(args.config, args.cfg_options)
    if args.onnx:
        model = OnnxModel(args.onnx, threads=args.threads)
        device = torch.device('cpu')  # onnxruntime's CPU provider
        params_m = _onnx_params_m(args.onnx)
    else:
        device = torch.device(args.device)
        model = MODELS.build(cfg.model)
        if args.checkpoint:
            load_checkpoint(model, args.checkpoint)
        model.cfg = cfg  # the inference API reads the test pipeline from it
        model.to(device).eval()
        params_m = sum(p.numel() for p in model.parameters()) / 1e6
    task = model_task(model)
    if args.input:
        run, size = _file_runner(model, task, args)
    else:
        run, size = _random_runner(model, task, cfg, args, device)

    rss_before = _peak_rss_mib()
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
    times: list[float] = []
    stages: dict[str, list[float]] = {}
    with torch.inference_mode():
        for i in range(args.warmup + args.runs):
            _sync(device)
            start = time.perf_counter()
            run()
            _sync(device)
            if i >= args.warmup:
                times.append(time.perf_counter() - start)
                for name, seconds in (getattr(model, 'stage_times', None) or {}).items():
                    stages.setdefault(str(name), []).append(float(seconds))
    times.sort()
    median = statistics.median(times)
    p90 = _percentile(times, 0.9)
    result = {
        'latency_median_ms': median * 1e3,
        'latency_p90_ms': p90 * 1e3,
        'throughput_per_s': args.batch_size / median,
        'params_m': params_m,
    }
    if device.type == 'cuda':
        result['peak_memory_mib'] = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        result['peak_rss_mib'] = _peak_rss_mib()
        result['peak_rss_growth_mib'] = _peak_rss_mib() - rss_before
    stage_ms = {name: statistics.median(values) * 1e3 for name, values in stages.items()}
    threads = torch.get_num_threads() if device.type == 'cpu' else '-'
    runtime = ' (onnxruntime)' if args.onnx else ''
    print(f'{args.config}: input {size} on {device}{runtime} '
          f'(threads: {threads}), {args.runs} runs after {args.warmup} warm-up')
    for key, value in result.items():
        print(f'  {key}: {value:.3f}')
    for name, value in stage_ms.items():
        print(f'  stage {name}: {value:.3f} ms (median)')
    if stage_ms:
        result['stage_median_ms'] = stage_ms
    memory = result.get('peak_memory_mib', result.get('peak_rss_mib'))
    name = cfg.model.get('type') + (' (ONNX)' if args.onnx else '')
    row = (f'| {name} | {size} | {device} '
           f'| {params_m:.3f} | {median * 1e3:.2f} | {p90 * 1e3:.2f} | '
           f'{result["throughput_per_s"]:.1f} | {memory:.0f} |')
    if stage_ms:
        row += ' ' + ', '.join(f'{k} {v:.2f}' for k, v in stage_ms.items()) + ' |'
    print(row)
    result['markdown_row'] = row
    return result


if __name__ == '__main__':
    main()
