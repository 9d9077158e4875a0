"""Run a trained model on your own inputs and write the results to a folder.

    python tools/infer.py stereo CONFIG CHECKPOINT --left L.png --right R.png --out-dir DIR
        [--calib calib.txt | --focal F --baseline B [--doffs D] [--cx CX --cy CY]]
        [--iters N] [--max-side S] [--low-memory] [--device cpu|cuda]
    python tools/infer.py sr CONFIG CHECKPOINT --input IMG_OR_DIR --out-dir DIR
        [--tile 256 --tile-overlap 32 --tile-batch 4] [--device cpu|cuda]
    python tools/infer.py flow CONFIG CHECKPOINT --first A.png --second B.png --out-dir DIR
        [--iters N] [--force] [--device cpu|cuda]

``stereo`` writes ``disp.png`` (KITTI 16-bit, ``d * 256``, 0 = invalid), ``disp.pfm`` (float32),
``disp_color.png`` (turbo colour map) and, given a calibration, ``depth.pfm`` (the baseline's unit:
mm for Middlebury ``calib.txt``; ``inf`` = invalid) and ``cloud.ply`` (binary little-endian, x y z
float + red green blue uchar, left-camera frame, valid pixels only). ``--max-side`` runs the
network on a copy downscaled so that its longer side is at most S pixels, then resizes the
disparity back to full resolution and rescales its values, to bound memory on large images.

``flow`` writes the optical flow from ``--first`` to ``--second`` as ``<stem>.flo`` (Middlebury,
float32), ``<stem>_kitti.png`` (KITTI 16-bit, ``u * 64 + 2 ** 15``) and ``<stem>_color.png``
(Middlebury colour wheel), ``<stem>`` being the first image's name stem. Each file is written
atomically; existing outputs are only replaced with ``--force``.

``sr`` super-resolves one image or every image of a folder and writes ``<stem>.png`` (8-bit RGB)
per input into the output folder. ``--tile T`` runs the network on ``T x T`` LR tiles that
overlap by ``--tile-overlap`` pixels and cross-fades them, so memory stays bounded for any image
size; without it the whole image goes through the network at once.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from perception.apis.inference import (
    depth_to_points,
    disparity_to_depth,
    inference_flow,
    inference_sr,
    inference_stereo,
    init_model,
    write_ply,
)
from perception.datasets.flow_io import write_flo, write_kitti_flow
from perception.datasets.stereo_io import (
    read_calib_txt,
    write_kitti_disparity,
    write_pfm,
)
from perception.datasets.super_resolution import IMAGE_SUFFIXES
from perception.datasets.transforms.loading import read_rgb
from perception.engine.cli import exits_cleanly_on_user_error
from perception.engine.errors import ConfigError, DataError
from perception.visualization.boxes3d import write_png
from perception.visualization.colors import colorize
from perception.visualization.flow import flow_to_color


def _add_pair_arguments(p: argparse.ArgumentParser, task: str, roles: tuple[str, str],
                        first_help: str, second_help: str) -> None:
    """The arguments the two-frame subcommands (stereo, flow) share."""
    p.add_argument('config', help=f'config file of the {task} model')
    p.add_argument('checkpoint', help='checkpoint (.pth) that fits the config exactly')
    p.add_argument(f'--{roles[0]}', required=True, help=first_help)
    p.add_argument(f'--{roles[1]}', required=True, help=second_help)
    p.add_argument('--out-dir', required=True, help='folder for the outputs (created)')
    p.add_argument('--iters', type=int, help="refinement iterations (default: the model's)")
    p.add_argument('--device', default='cpu', help='torch device (default cpu)')


def _read_pair(args: argparse.Namespace, task: str,
               roles: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """Check ``--iters`` and read the two frames named by ``--<role>``, of one size."""
    if args.iters is not None and args.iters < 1:
        raise ConfigError(f'--iters must be >= 1, got {args.iters}')
    paths = [getattr(args, role) for role in roles]
    one, two = (read_rgb(path) for path in paths)
    if one.shape != two.shape:
        (h1, w1), (h2, w2) = one.shape[:2], two.shape[:2]
        raise DataError(f'{task} pair of different sizes: {roles[0]} {paths[0]} is {w1}x{h1}, '
                        f'{roles[1]} {paths[1]} is {w2}x{h2} (width x height)')
    return one, two


def _add_stereo_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser('stereo', help='disparity, depth and point cloud of a stereo pair',
                              description='Disparity (and with a calibration depth and a '
                              'coloured point cloud) of a rectified stereo pair.')
    _add_pair_arguments(p, 'stereo', ('left', 'right'), 'left (reference) image',
                        'right image, same size as the left')
    p.add_argument('--calib', help='Middlebury / ETH3D calib.txt (cam0, baseline, doffs)')
    p.add_argument('--focal', type=float, help='focal length in pixels (instead of --calib)')
    p.add_argument('--baseline', type=float, help='baseline, in the unit depth should have')
    p.add_argument('--doffs', type=float, default=0.0,
                   help='cx_right - cx_left in pixels (default 0)')
    p.add_argument('--cx', type=float, help='principal point x (default: image centre)')
    p.add_argument('--cy', type=float, help='principal point y (default: image centre)')
    p.add_argument('--max-side', type=int,
                   help='downscale the pair so its longer side is at most this many pixels')
    p.add_argument('--low-memory', action='store_true',
                   help="compute correlations on demand instead of storing the full volume "
                   "(RAFT-Stereo's 'alt' lookup: same result, less memory, slower)")
    p.set_defaults(func=run_stereo)


def _add_sr_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser('sr', help='super-resolve an image or a folder of images',
                              description='Super-resolve images, optionally in blended tiles '
                              'so that large images fit in memory.')
    p.add_argument('config', help='config file of the super-resolution model')
    p.add_argument('checkpoint', help='checkpoint (.pth) that fits the config exactly')
    p.add_argument('--input', required=True, help='an image, or a folder of images')
    p.add_argument('--out-dir', required=True, help='folder for <stem>.png outputs (created)')
    p.add_argument('--tile', type=int, help='LR tile side in pixels (default: whole image)')
    p.add_argument('--tile-overlap', type=int, default=32,
                   help='LR pixels shared by neighbouring tiles (default 32)')
    p.add_argument('--tile-batch', type=int, default=4,
                   help='tiles per forward pass (default 4)')
    p.add_argument('--device', default='cpu', help='torch device (default cpu)')
    p.set_defaults(func=run_sr)


def _add_flow_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser('flow', help='optical flow between two frames',
                              description='Optical flow from the first frame to the second, '
                              'as .flo, KITTI 16-bit PNG and a colour-wheel image.')
    _add_pair_arguments(p, 'flow', ('first', 'second'), 'first frame (the flow starts here)',
                        'second frame, same size as the first')
    p.add_argument('--force', action='store_true', help='overwrite existing outputs')
    p.set_defaults(func=run_flow)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Run a perception model on your own inputs.')
    subparsers = parser.add_subparsers(dest='task', required=True, metavar='TASK')
    _add_stereo_parser(subparsers)
    _add_sr_parser(subparsers)
    _add_flow_parser(subparsers)
    return parser.parse_args(argv)


def _camera(args: argparse.Namespace, width: int,
            height: int) -> tuple[float, float, float, float, float] | None:
    """``(focal, baseline, doffs, cx, cy)`` from ``--calib`` or ``--focal/--baseline``."""
    if args.calib and (args.focal is not None or args.baseline is not None):
        raise ConfigError('give either --calib or --focal/--baseline, not both')
    if args.calib:
        calib = read_calib_txt(args.calib)
        if calib.width is not None and calib.height is not None and (
                (calib.width, calib.height) != (width, height)):
            raise DataError(f'{args.calib}: calibration is for {calib.width}x{calib.height} '
                            f'images, the pair is {width}x{height}')
        return (calib.focal, calib.baseline, calib.doffs, float(calib.cam0[0, 2]),
                float(calib.cam0[1, 2]))
    if args.focal is None and args.baseline is None:
        return None
    if args.focal is None or args.baseline is None or not (args.focal > 0 and args.baseline > 0):
        raise ConfigError('depth needs both --focal (px) and --baseline, both positive')
    cx = args.cx if args.cx is not None else (width - 1) / 2
    cy = args.cy if args.cy is not None else (height - 1) / 2
    return args.focal, args.baseline, args.doffs, cx, cy


def _downscale(image: np.ndarray, max_side: int) -> np.ndarray:
    import cv2

    h, w = image.shape[:2]
    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _upscale_disparity(disp: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize a disparity map to ``width x height``; values scale with the width ratio."""
    import cv2

    ratio = width / disp.shape[1]
    return cv2.resize(disp, (width, height), interpolation=cv2.INTER_LINEAR) * ratio


def run_stereo(args: argparse.Namespace) -> None:
    if args.max_side is not None and args.max_side < 32:
        raise ConfigError(f'--max-side must be >= 32, got {args.max_side}')
    left, right = _read_pair(args, 'stereo', ('left', 'right'))
    height, width = left.shape[:2]
    camera = _camera(args, width, height)  # checked before the (slow) network runs

    model = init_model(args.config, args.checkpoint, args.device)
    if args.low_memory:
        if not hasattr(model, 'corr_implementation'):
            raise ConfigError(f'--low-memory: {type(model).__name__} has no on-demand '
                              'correlation lookup (use --max-side)')
        model.corr_implementation = 'alt'
    if args.max_side is not None and max(height, width) > args.max_side:
        small = inference_stereo(model, _downscale(left, args.max_side),
                                 _downscale(right, args.max_side), args.iters)
        disp = _upscale_disparity(small, width, height)
    else:
        disp = inference_stereo(model, left, right, args.iters)
    # A rectified pair has no negative disparity: clamp what an imperfect model predicts.
    disp = np.maximum(disp, 0).astype(np.float32)

    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_kitti_disparity(out / 'disp.png', disp)
    write_pfm(out / 'disp.pfm', disp)
    write_png(out / 'disp_color.png', colorize(disp, vmin=0.0))
    written = ['disp.png', 'disp.pfm', 'disp_color.png']
    if camera is not None:
        focal, baseline, doffs, cx, cy = camera
        depth = disparity_to_depth(disp, focal, baseline, doffs)
        write_pfm(out / 'depth.pfm', depth)
        points, colors = depth_to_points(depth, focal, cx, cy, left)
        write_ply(out / 'cloud.ply', points, colors)
        written += ['depth.pfm', f'cloud.ply ({len(points)} points)']
    print(f'disparity {width}x{height}: min {disp.min():.2f} max {disp.max():.2f} px; wrote '
          f'{", ".join(written)} to {out}')


def _sr_inputs(source: str) -> list[Path]:
    path = Path(source)
    if path.is_dir():
        images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise DataError(f'{path}: no images ({", ".join(IMAGE_SUFFIXES)}) in the folder')
        return images
    if not path.is_file():
        raise DataError(f'{path}: input image or folder not found')
    return [path]


def run_sr(args: argparse.Namespace) -> None:
    if args.tile is not None and not (args.tile >= 8 and 0 <= args.tile_overlap < args.tile):
        raise ConfigError(f'need --tile >= 8 and 0 <= --tile-overlap < --tile, got --tile '
                          f'{args.tile} --tile-overlap {args.tile_overlap}')
    if args.tile_batch < 1:
        raise ConfigError(f'--tile-batch must be >= 1, got {args.tile_batch}')
    inputs = _sr_inputs(args.input)
    out = Path(args.out_dir)
    names = [p.stem for p in inputs]
    if len(set(names)) != len(names):
        raise DataError(f'{args.input}: several inputs share a name stem; outputs would collide')
    model = init_model(args.config, args.checkpoint, args.device)
    for path in inputs:
        image = read_rgb(path)
        sr = inference_sr(model, image, tile=args.tile, tile_overlap=args.tile_overlap,
                          tile_batch_size=args.tile_batch)
        write_png(out / f'{path.stem}.png', sr)
        print(f'{path}: {image.shape[1]}x{image.shape[0]} -> {sr.shape[1]}x{sr.shape[0]}, wrote '
              f'{out / (path.stem + ".png")}', flush=True)


def run_flow(args: argparse.Namespace) -> None:
    first, second = _read_pair(args, 'flow', ('first', 'second'))
    out = Path(args.out_dir)
    stem = Path(args.first).stem
    names = [f'{stem}.flo', f'{stem}_kitti.png', f'{stem}_color.png']
    existing = [name for name in names if (out / name).exists()]
    if existing and not args.force:  # checked before the (slow) network runs
        raise ConfigError(f'{out}: {", ".join(existing)} exist(s); pass --force to overwrite')

    model = init_model(args.config, args.checkpoint, args.device)
    flow = inference_flow(model, first, second, args.iters)

    out.mkdir(parents=True, exist_ok=True)
    write_flo(out / names[0], flow)
    write_kitti_flow(out / names[1], flow)
    write_png(out / names[2], flow_to_color(flow))
    magnitude = np.linalg.norm(flow, axis=2)
    height, width = flow.shape[:2]
    print(f'flow {width}x{height}: mean |flow| {magnitude.mean():.2f} max {magnitude.max():.2f} '
          f'px; wrote {", ".join(names)} to {out}')


@exits_cleanly_on_user_error
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    args.func(args)


if __name__ == '__main__':
    main()
