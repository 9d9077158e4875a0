"""Draw one KITTI frame's labels: 3D boxes projected on the left image, and a bird's-eye view.

    python tools/vis_kitti_frame.py ROOT FRAME_ID --out-dir DIR [--split training]

ROOT is a KITTI object-detection root (``ROOT/training/{image_2,calib,label_2,velodyne}``). Writes
``DIR/FRAME_image.png`` (the label boxes through ``P2``) and ``DIR/FRAME_bev.png`` (the Velodyne
points with the label boxes moved to the LiDAR frame). A frame without a Velodyne file gets the
image only, with a warning. DontCare regions are not drawn.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from perception.datasets.kitti_format import read_label_file
from perception.datasets.points_io import read_points_bin
from perception.engine.cli import exits_cleanly_on_user_error
from perception.engine.errors import DataError
from perception.structures import CameraBoxes3D, KittiCalibration
from perception.visualization.boxes3d import draw_projected_boxes, render_bev, write_png


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('root', help='KITTI root holding training/ (and testing/)')
    parser.add_argument('frame_id', help='frame id, e.g. 000008')
    parser.add_argument('--out-dir', required=True, help='where the PNGs go')
    parser.add_argument('--split', default='training', choices=['training', 'testing'])
    return parser.parse_args(argv)


@exits_cleanly_on_user_error
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    folder = Path(args.root) / args.split
    frame = args.frame_id
    out_dir = Path(args.out_dir)

    image_path = folder / 'image_2' / f'{frame}.png'
    bgr = cv2.imread(str(image_path)) if image_path.is_file() else None
    if bgr is None:
        raise DataError(f'{image_path}: image not found or unreadable')
    image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    calib = KittiCalibration.from_file(folder / 'calib' / f'{frame}.txt')

    label_path = folder / 'label_2' / f'{frame}.txt'
    names = np.zeros(0, dtype=str)
    boxes = CameraBoxes3D(np.zeros((0, 7)))
    if label_path.is_file():
        annos = read_label_file(label_path)
        keep = annos['name'] != 'DontCare'
        names = annos['name'][keep]
        boxes = CameraBoxes3D(np.concatenate([annos['location'][keep], annos['dimensions'][keep],
                                              annos['rotation_y'][keep, None]], axis=1))
    else:
        print(f'warning: {label_path} not found: drawing no boxes', file=sys.stderr)

    image_out = write_png(out_dir / f'{frame}_image.png',
                          draw_projected_boxes(image, boxes, calib.P2, labels=names.tolist()))
    print(f'wrote {image_out} ({len(boxes)} boxes)')

    velodyne_path = folder / 'velodyne' / f'{frame}.bin'
    if not velodyne_path.is_file():
        print(f'warning: {velodyne_path} not found: frame {frame} is camera-only, '
              'no bird\'s-eye view written', file=sys.stderr)
        return 0
    points = read_points_bin(velodyne_path, num_features=4)
    lidar_boxes = boxes.convert_to('lidar', calib.cam2lidar)
    bev_out = out_dir / f'{frame}_bev.png'
    render_bev(points, lidar_boxes, bev_out, labels=names.tolist())
    print(f'wrote {bev_out} ({len(points)} points)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
