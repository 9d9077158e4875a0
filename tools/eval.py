"""Evaluate saved predictions offline with a benchmark's own protocol.

    python tools/eval.py kitti GT_LABEL_DIR PRED_DIR [--split-file F] [--classes Car ...]
                               [--out result.json]
    python tools/eval.py sr GT_DIR PRED_DIR --scale S [--y-channel] [--out result.json]
    python tools/eval.py flow GT_DIR PRED_DIR [--noc-dir D [--noc-format F]] [--max-flow M]
                              [--out result.json]

The table is printed; ``--out`` writes every metric as a JSON dict.
"""
from __future__ import annotations

import argparse

from perception.engine.cli import exits_cleanly_on_user_error, write_json


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Evaluate saved predictions offline.')
    tasks = parser.add_subparsers(dest='task', required=True)

    kitti = tasks.add_parser('kitti', help='KITTI object detection (2D, BEV, 3D, AOS; AP11, AP40)')
    kitti.add_argument('gt_dir', help='folder of ground-truth label_2 files (XXXXXX.txt)')
    kitti.add_argument('pred_dir', help='folder of detection files with a 16th column, the score')
    kitti.add_argument('--split-file', help='frame ids to evaluate, one per line '
                       '(default: every label file in GT_LABEL_DIR)')
    kitti.add_argument('--classes', nargs='+', default=['Car', 'Pedestrian', 'Cyclist'],
                       help='classes to evaluate (default: Car Pedestrian Cyclist)')
    kitti.add_argument('--out', help='write the metrics as JSON here')

    sr = tasks.add_parser('sr', help='super-resolution PSNR / SSIM of images against ground truth')
    sr.add_argument('gt_dir', help='folder of ground-truth (HR) images')
    sr.add_argument('pred_dir', help='folder of predicted images with the same names '
                    '(an `xS` suffix before the extension is accepted)')
    sr.add_argument('--scale', type=int, required=True, help='scale; also the border cropped')
    sr.add_argument('--y-channel', action='store_true', help='compare the BT.601 luma (Y)')
    sr.add_argument('--out', help='write the metrics as JSON here')

    flow = tasks.add_parser('flow', help='optical flow EPE, KITTI Fl-all, bad-1/3/5 '
                            '(Sintel matched / unmatched with --noc-dir)')
    flow.add_argument('gt_dir', help='folder of ground-truth flow files (.flo, KITTI 16-bit .png, '
                      '.pfm)')
    flow.add_argument('pred_dir', help='folder of predicted flow files with the same stems '
                      '(any of the three formats)')
    flow.add_argument('--noc-dir', help='folder of non-occlusion masks with the same stems '
                      '(adds the _matched / _unmatched metrics)')
    flow.add_argument('--noc-format', choices=('kitti_png', 'occlusion_png'), default='kitti_png',
                      help="kitti_png: KITTI flow_noc files (their valid flag); occlusion_png: "
                      "Sintel occlusions/ masks (>= 128 = occluded). Default: kitti_png")
    flow.add_argument('--max-flow', type=float, help='ignore ground truth with |flow| >= this')
    flow.add_argument('--out', help='write the metrics as JSON here')
    return parser.parse_args(argv)


@exits_cleanly_on_user_error
def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_args(argv)
    if args.task == 'kitti':
        from perception.evaluation.kitti import evaluate_label_dirs
        results, table = evaluate_label_dirs(args.gt_dir, args.pred_dir,
                                             split_file=args.split_file, classes=args.classes)
    elif args.task == 'flow':
        from perception.evaluation.flow import evaluate_flow_dirs
        results, table = evaluate_flow_dirs(args.gt_dir, args.pred_dir, noc_dir=args.noc_dir,
                                            noc_format=args.noc_format, max_flow=args.max_flow)
    else:
        from perception.evaluation.super_resolution import evaluate_image_dirs
        results, table = evaluate_image_dirs(args.gt_dir, args.pred_dir, scale=args.scale,
                                             y_channel=args.y_channel)
    print(table)
    if args.out is not None:
        write_json(args.out, results)
        print(f'metrics written to {args.out}')
    return results


if __name__ == '__main__':
    main()
