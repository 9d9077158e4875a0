"""Render predictions against ground truth, headless (OpenCV; matplotlib only for colour tables).

    python tools/visualize.py mono3d --image IMG --calib CALIB.txt [--gt LABEL.txt]
        [--pred PRED.txt|PRED.npz] [--classes Car Pedestrian Cyclist] [--score-thr 0] --out OUT.png
    python tools/visualize.py bev --points CLOUD.bin [--num-features 4] [--calib CALIB.txt]
        [--gt LABEL.txt] [--pred PRED.txt|PRED.npz] [--x-range 0 70.4] [--y-range -40 40]
        [--resolution 0.1] [--score-thr 0] --out OUT.png
    python tools/visualize.py disparity DISP.png|.pfm|.npy|.npz [--vmin V --vmax V]
        [--cmap turbo] [--no-colorbar] --out OUT.png
    python tools/visualize.py seg --labels LABELS.png|.npy|.npz [--image IMG]
        [--palette cityscapes|ade20k|CONFIG.py] [--alpha 0.5] --out OUT.png

``mono3d``: 3D boxes projected through ``P2`` on the image: ground truth in green (a KITTI
``label_2`` file), predictions in their class colours with ``class score`` captions. ``bev``: the
point cloud from above (x forward = up, y left = left, coloured by height) with ground truth in
green and predictions in class colours; each box has a tick from its centre to its front face
(the heading). Camera-frame boxes (KITTI label files, mono3D ``.npz``) are moved to the LiDAR frame
with the calibration's ``inv(R0_rect @ Tr_velo_to_cam)``. Predictions are KITTI label files (a 16th
score field) or the ``.npz`` files of the inference API (``boxes_3d``, ``scores``, ``labels``;
LiDAR boxes unless the file has ``bboxes_2d``, as ``inference_mono3d`` results do, or
``frame='camera'``). An empty prediction file draws no predictions. ``disparity``: colour map
(invalid pixels black) and a colour bar with values in pixels. ``seg``: the label map in the
dataset palette blended over the image (255 = ignore is left uncoloured).
"""
from __future__ import annotations

import argparse

import numpy as np

from perception.datasets.points_io import read_points_bin
from perception.datasets.transforms.loading import read_rgb
from perception.engine.cli import exits_cleanly_on_user_error
from perception.engine.errors import ConfigError, DataError
from perception.structures import KittiCalibration, LiDARBoxes3D
from perception.visualization.boxes3d import draw_projected_boxes, render_bev, write_png
from perception.visualization.colors import GT_COLOR
from perception.visualization.overlays import (
    KITTI_CLASSES,
    colorize_disparity,
    default_palette,
    load_box_predictions,
    overlay_segmentation,
    read_disparity,
    read_label_map_any,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest='command', required=True)

    mono = sub.add_parser('mono3d', help='3D boxes on the image')
    mono.add_argument('--image', required=True)
    mono.add_argument('--calib', required=True, help='KITTI calib file (P2)')
    _add_box_args(mono)

    bev = sub.add_parser('bev', help="bird's-eye view of a point cloud with boxes")
    bev.add_argument('--points', required=True, help='float32 .bin point cloud')
    bev.add_argument('--num-features', type=int, default=4, help='columns per point (KITTI 4)')
    bev.add_argument('--calib', help='KITTI calib file: needed for camera-frame boxes')
    bev.add_argument('--x-range', type=float, nargs=2, default=(0.0, 70.4))
    bev.add_argument('--y-range', type=float, nargs=2, default=(-40.0, 40.0))
    bev.add_argument('--resolution', type=float, default=0.1, help='metres per pixel')
    _add_box_args(bev)

    disp = sub.add_parser('disparity', help='disparity colour map with a colour bar')
    disp.add_argument('disparity', help='KITTI 16-bit .png, .pfm, .npy or API .npz')
    disp.add_argument('--vmin', type=float)
    disp.add_argument('--vmax', type=float)
    disp.add_argument('--cmap', default='turbo')
    disp.add_argument('--no-colorbar', action='store_true')
    disp.add_argument('--out', required=True)

    seg = sub.add_parser('seg', help='label map over the image in the dataset palette')
    seg.add_argument('--labels', required=True, help='single-channel PNG, .npy or API .npz')
    seg.add_argument('--image', help='the image (else the colour map alone)')
    seg.add_argument('--palette', help='cityscapes, ade20k, or a config with a dataset palette')
    seg.add_argument('--alpha', type=float, default=0.5)
    seg.add_argument('--out', required=True)
    return parser.parse_args(argv)


def _add_box_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--gt', help='KITTI label_2 file (ground truth, camera frame)')
    parser.add_argument('--pred', help='KITTI detection file or inference-API .npz')
    parser.add_argument('--classes', nargs='+', default=list(KITTI_CLASSES),
                        help='class names of the .npz labels, in order')
    parser.add_argument('--score-thr', type=float, default=0.0)
    parser.add_argument('--thickness', type=int, default=2)
    parser.add_argument('--out', required=True)


def _boxes(args, frame: str, cam2lidar: np.ndarray | None) -> tuple:
    gt = pred = None
    if args.gt:
        gt = load_box_predictions(args.gt, frame, cam2lidar)
    if args.pred:
        pred = load_box_predictions(args.pred, frame, cam2lidar, args.classes, args.score_thr)
    return gt, pred


def run_mono3d(args) -> np.ndarray:
    image = read_rgb(args.image)
    calib = KittiCalibration.from_file(args.calib)
    gt, pred = _boxes(args, 'camera', None)
    if gt is not None:
        image = draw_projected_boxes(image, gt[0], calib.P2, colors=GT_COLOR,
                                     thickness=args.thickness)
    if pred is not None:
        boxes, names, scores = pred
        image = draw_projected_boxes(image, boxes, calib.P2, labels=names, scores=scores,
                                     thickness=args.thickness)
    return image


def run_bev(args) -> np.ndarray:
    points = read_points_bin(args.points, num_features=args.num_features)
    cam2lidar = KittiCalibration.from_file(args.calib).cam2lidar if args.calib else None
    gt, pred = _boxes(args, 'lidar', cam2lidar)
    boxes, names = (pred[0], pred[1]) if pred is not None else (None, None)
    if boxes is not None and not isinstance(boxes, LiDARBoxes3D):
        raise DataError(f'{args.pred}: expected LiDAR boxes')
    return render_bev(points, boxes, x_range=args.x_range, y_range=args.y_range,
                      resolution=args.resolution, gt_boxes=None if gt is None else gt[0],
                      labels=names, thickness=max(1, args.thickness - 1))


def _palette(name: str | None, num_classes: int) -> np.ndarray:
    if name is None:
        return default_palette(num_classes)
    from perception.datasets.segmentation import ADE20K_PALETTE, CITYSCAPES_PALETTE

    named = {'cityscapes': CITYSCAPES_PALETTE, 'ade20k': ADE20K_PALETTE}
    if name.lower() in named:
        return np.asarray(named[name.lower()], dtype=np.uint8)
    from perception.engine.config import load_config

    cfg = load_config(name)
    dataset = (cfg.get('test_dataloader') or {}).get('dataset') or {}
    palette = (dataset.get('metainfo') or {}).get('palette') or (cfg.get('metainfo') or {}).get(
        'palette')
    if palette is None:
        raise ConfigError(f'{name}: no dataset metainfo palette; use --palette cityscapes|ade20k')
    return np.asarray(palette, dtype=np.uint8)


def run_seg(args) -> np.ndarray:
    labels = read_label_map_any(args.labels)
    shown = labels[labels != 255]
    palette = _palette(args.palette, int(shown.max()) + 1 if shown.size else 1)
    image = read_rgb(args.image) if args.image else None
    if image is not None and image.shape[:2] != labels.shape:
        raise DataError(f'{args.labels} is {labels.shape[1]}x{labels.shape[0]} but {args.image} '
                        f'is {image.shape[1]}x{image.shape[0]} (width x height)')
    try:
        return overlay_segmentation(image, labels, palette, args.alpha)
    except ValueError as error:
        raise DataError(f'{args.labels}: {error}') from None


def run_disparity(args) -> np.ndarray:
    return colorize_disparity(read_disparity(args.disparity), args.vmin, args.vmax, args.cmap,
                              colorbar=not args.no_colorbar)


@exits_cleanly_on_user_error
def main(argv: list[str] | None = None) -> np.ndarray:
    args = parse_args(argv)
    render = {'mono3d': run_mono3d, 'bev': run_bev, 'seg': run_seg,
              'disparity': run_disparity}[args.command]
    image = render(args)
    out = write_png(args.out, image)
    print(f'wrote {out} ({image.shape[1]}x{image.shape[0]})')
    return image


if __name__ == '__main__':
    main()
