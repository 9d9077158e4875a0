"""Write a real rosbag2 from KITTI-layout files and / or the nuScenes sample frame.

    python tools/ros/make_bag.py OUT_BAG --kitti ROOT [--frames 000000 000008]
        [--nuscenes DIR] [--storage sqlite3|mcap] [--compressed] [--start-time SEC]
        [--rate HZ] [--force]

KITTI (``ROOT`` holds ``training/`` or is the split folder itself; frames default to every
``image_2`` file), one frame per ``1 / rate`` seconds from ``--start-time``:

- /kitti/velo/pointcloud: sensor_msgs/PointCloud2 (x y z intensity float32), frame velodyne;
- /kitti/camera_color_left/image_raw: sensor_msgs/Image rgb8, frame camera_color_left;
- /kitti/camera_color_left/camera_info: sensor_msgs/CameraInfo with K = P2[:, :3], P = P2,
  R = R0_rect, frame camera_color_left;
- /kitti/camera_color_right/...: the same from image_3 and P3, frame camera_color_right
  (skipped with a message when there is no image_3 folder).

With ``--compressed`` images go to ``.../image_raw/compressed`` as PNG ``CompressedImage``
(image_transport's naming). A frame without a Velodyne file has no point cloud (said on stdout).

nuScenes (``DIR`` holds ``frame.json`` and the files it names): ``/LIDAR_TOP`` (x y z intensity
ring, frame ``LIDAR_TOP``) and per camera ``/CAM_*/image_raw`` (or ``/compressed``) and
``/CAM_*/camera_info`` (frame ``CAM_*``), stamped with the sensors' own timestamps. The bag is
written atomically (see ``perception.ros.bags.AtomicBagWriter``).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from perception.datasets.transforms.loading import read_rgb
from perception.engine.errors import PerceptionError
from perception.ros.bags import STORAGES, AtomicBagWriter
from perception.ros.messages import (
    array_to_image,
    array_to_pointcloud2,
    make_camera_info,
    make_header,
    rgb_to_compressed_image,
)
from perception.structures.calibration import KittiCalibration

KITTI_CLOUD = '/kitti/velo/pointcloud'
KITTI_CAMERAS = {'left': ('/kitti/camera_color_left', 'camera_color_left', 'image_2', 2),
                 'right': ('/kitti/camera_color_right', 'camera_color_right', 'image_3', 3)}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('out', help='output rosbag2 folder')
    parser.add_argument('--kitti', help='KITTI object root (with training/) or split folder')
    parser.add_argument('--frames', nargs='+', help='KITTI frame ids (default: all images)')
    parser.add_argument('--nuscenes', help='folder with the nuScenes sample frame.json')
    parser.add_argument('--storage', choices=STORAGES, default='sqlite3')
    parser.add_argument('--compressed', action='store_true',
                        help='write PNG CompressedImage instead of rgb8 Image')
    parser.add_argument('--start-time', type=float, default=1_600_000_000.0,
                        help='stamp of the first KITTI frame, seconds since the epoch')
    parser.add_argument('--rate', type=float, default=10.0, help='KITTI frame rate (Hz)')
    parser.add_argument('--force', action='store_true', help='replace an existing output')
    args = parser.parse_args(argv)
    if not args.kitti and not args.nuscenes:
        parser.error('give --kitti and / or --nuscenes')
    return args


def _image_msg(rgb: np.ndarray, header, compressed: bool):
    return rgb_to_compressed_image(rgb, header, 'png') if compressed else array_to_image(
        rgb, 'rgb8', header)


def _image_topic(prefix: str, compressed: bool) -> str:
    return f'{prefix}/image_raw' + ('/compressed' if compressed else '')


def _kitti_split(root: Path) -> Path:
    if (root / 'image_2').is_dir():
        return root
    if (root / 'training' / 'image_2').is_dir():
        return root / 'training'
    raise PerceptionError(f'{root}: no image_2/ or training/image_2/ folder (KITTI layout)')


def write_kitti(writer: AtomicBagWriter, root: Path, frames: list[str] | None,
                start_ns: int, period_ns: int, compressed: bool) -> int:
    """Write KITTI frames; returns the number of messages written."""
    split = _kitti_split(root)
    frames = frames or sorted(p.stem for p in (split / 'image_2').glob('*.png'))
    if not frames:
        raise PerceptionError(f'{split / "image_2"}: no PNG images')
    sides = ['left']
    if (split / 'image_3').is_dir():
        sides.append('right')
    else:
        print(f'{split / "image_3"} not found: no right camera topics')
    count = 0
    for index, frame in enumerate(frames):
        stamp = start_ns + index * period_ns
        calib = KittiCalibration.from_file(split / 'calib' / f'{frame}.txt')
        velo = split / 'velodyne' / f'{frame}.bin'
        if velo.is_file():
            points = np.fromfile(velo, dtype=np.float32)
            if points.size % 4:
                raise PerceptionError(f'{velo}: {points.size} float32 values, not a multiple of '
                                      '4 (x, y, z, intensity)')
            writer.write(KITTI_CLOUD, stamp, array_to_pointcloud2(
                points.reshape(-1, 4), make_header(stamp, 'velodyne')))
            count += 1
        else:
            print(f'frame {frame}: no {velo}, writing no point cloud for it')
        for side in sides:
            prefix, frame_id, folder, camera = KITTI_CAMERAS[side]
            path = split / folder / f'{frame}.png'
            if not path.is_file():
                print(f'frame {frame}: no {path}, skipping the {side} camera')
                continue
            rgb = read_rgb(str(path))
            header = make_header(stamp, frame_id)
            writer.write(_image_topic(prefix, compressed), stamp,
                         _image_msg(rgb, header, compressed))
            writer.write(f'{prefix}/camera_info', stamp, make_camera_info(
                header, rgb.shape[1], rgb.shape[0], calib.projection(camera), r=calib.R0_rect))
            count += 2
    return count


def write_nuscenes(writer: AtomicBagWriter, folder: Path, compressed: bool) -> int:
    """Write the nuScenes sample frame; returns the number of messages written."""
    meta_path = folder / 'frame.json'
    try:
        meta = json.loads(meta_path.read_text())
        lidar = meta['lidar']
        cameras = meta['cameras']
    except (OSError, ValueError, KeyError) as err:
        raise PerceptionError(f'{meta_path}: cannot read the nuScenes sample frame '
                              f'({type(err).__name__}: {err})') from None
    count = 0
    lidar_path = folder / Path(lidar['path']).name
    points = np.fromfile(lidar_path, dtype=np.float32)
    if points.size % 5:
        raise PerceptionError(f'{lidar_path}: not (x, y, z, intensity, ring) float32 rows')
    # nuScenes file names end in the sensor timestamp in microseconds.
    lidar_ns = int(lidar_path.name.split('__')[-1].split('.')[0]) * 1000
    writer.write('/LIDAR_TOP', lidar_ns, array_to_pointcloud2(
        points.reshape(-1, 5), make_header(lidar_ns, 'LIDAR_TOP'),
        ('x', 'y', 'z', 'intensity', 'ring')))
    count += 1
    for name, camera in sorted(cameras.items()):
        path = folder / Path(camera['path']).name
        stamp = int(path.stem.split('__')[-1]) * 1000
        rgb = read_rgb(str(path))
        header = make_header(stamp, name)
        k = np.asarray(camera['cam2img'], dtype=np.float64)
        writer.write(_image_topic(f'/{name}', compressed), stamp,
                     _image_msg(rgb, header, compressed))
        writer.write(f'/{name}/camera_info', stamp, make_camera_info(
            header, rgb.shape[1], rgb.shape[0], np.hstack([k, np.zeros((3, 1))]), k=k))
        count += 2
    return count


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        with AtomicBagWriter(args.out, args.storage, args.force) as writer:
            count = 0
            if args.kitti:
                count += write_kitti(writer, Path(args.kitti), args.frames,
                                     int(round(args.start_time * 1e9)),
                                     int(round(1e9 / args.rate)), args.compressed)
            if args.nuscenes:
                count += write_nuscenes(writer, Path(args.nuscenes), args.compressed)
    except (PerceptionError, FileNotFoundError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    print(f'wrote {count} messages to {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
