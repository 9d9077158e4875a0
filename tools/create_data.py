"""Convert a raw dataset into info files (mmengine's annotation format) and helper data.

    python tools/create_data.py kitti --root-path data/kitti --out-dir data/kitti
                                      [--workers N] [--force]
    python tools/create_data.py nuscenes --root-path data/nuscenes --out-dir data/nuscenes
                                         --version v1.0-mini [--max-sweeps 10] [--force]
    python tools/create_data.py cityscapes --root-path data/cityscapes [--workers N] [--force]
    python tools/create_data.py div2k --root data/DIV2K --out data/DIV2K
                                      [--crop 480 --step 240 --thresh 48 --scales 2 3 4]
                                      [--workers N] [--force]

Outputs are written to temporary files and renamed, so an interrupted run leaves the previous
outputs intact; existing outputs are only replaced with ``--force``.
"""
from __future__ import annotations

import argparse

from perception.engine.cli import exits_cleanly_on_user_error


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Create info files for a dataset.')
    datasets = parser.add_subparsers(dest='dataset', required=True)

    kitti = datasets.add_parser('kitti', help='KITTI 3D object detection')
    kitti.add_argument('--root-path', required=True,
                       help='KITTI root holding ImageSets/, training/ and (optionally) testing/')
    kitti.add_argument('--out-dir', help='where the infos go (default: the root path)')
    kitti.add_argument('--workers', type=int, default=4, help='worker processes (default 4)')
    kitti.add_argument('--force', action='store_true', help='overwrite existing outputs')

    nus = datasets.add_parser('nuscenes', help='nuScenes 3D detection (needs nuscenes-devkit)')
    nus.add_argument('--root-path', required=True, help='nuScenes root (samples/, sweeps/, vX/)')
    nus.add_argument('--out-dir', help='where the infos go (default: the root path)')
    nus.add_argument('--version', default='v1.0-trainval',
                     choices=['v1.0-mini', 'v1.0-trainval', 'v1.0-test'])
    nus.add_argument('--max-sweeps', type=int, default=10,
                     help='previous LiDAR sweeps listed per sample (default 10)')
    nus.add_argument('--force', action='store_true', help='overwrite existing outputs')

    cityscapes = datasets.add_parser('cityscapes',
                                     help='Cityscapes: gtFine polygons -> labelTrainIds PNGs')
    cityscapes.add_argument('--root-path', required=True, help='Cityscapes root holding gtFine/')
    cityscapes.add_argument('--workers', type=int, default=4, help='worker processes (default 4)')
    cityscapes.add_argument('--force', action='store_true', help='overwrite existing outputs')

    div2k = datasets.add_parser('div2k', help='DIV2K: cut training images into sub-images')
    div2k.add_argument('--root', required=True,
                       help='DIV2K root holding DIV2K_train_HR/ (and DIV2K_train_LR_bicubic/X*/)')
    div2k.add_argument('--out', required=True, help='output root for the *_sub folders')
    div2k.add_argument('--crop', type=int, default=480, help='HR sub-image side (default 480)')
    div2k.add_argument('--step', type=int, default=240, help='HR stride (default 240)')
    div2k.add_argument('--thresh', type=int, default=48,
                       help='smallest remainder that earns an edge sub-image (default 48)')
    div2k.add_argument('--scales', type=int, nargs='*', default=[2, 3, 4],
                       help='LR scales; missing LR folders are made by MATLAB bicubic')
    div2k.add_argument('--workers', type=int, default=4, help='worker processes (default 4)')
    div2k.add_argument('--force', action='store_true', help='replace existing sub-images')
    return parser.parse_args(argv)


@exits_cleanly_on_user_error
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.dataset == 'cityscapes':
        from perception.datasets.converters.cityscapes_converter import create_cityscapes_trainids
        create_cityscapes_trainids(args.root_path, workers=args.workers, force=args.force)
        return
    if args.dataset == 'div2k':
        from perception.datasets.converters.div2k_converter import create_div2k_subimages
        create_div2k_subimages(args.root, args.out, crop=args.crop, step=args.step,
                               thresh=args.thresh, scales=args.scales, workers=args.workers,
                               force=args.force)
        return
    out_dir = args.out_dir or args.root_path
    if args.dataset == 'kitti':
        from perception.datasets.converters.kitti_converter import create_kitti_infos
        create_kitti_infos(args.root_path, out_dir, workers=args.workers, force=args.force)
    else:
        from perception.datasets.converters.nuscenes_converter import create_nuscenes_infos
        create_nuscenes_infos(args.root_path, out_dir, version=args.version,
                              max_sweeps=args.max_sweeps, force=args.force)


if __name__ == '__main__':
    main()
