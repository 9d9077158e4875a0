"""KITTI 3D object detection -> info files, FOV-reduced point clouds and a ground-truth database.

Input layout (the official one)::

    ROOT/ImageSets/{train,val,test}.txt
    ROOT/training/{image_2,image_3,calib,label_2,velodyne}/XXXXXX.*
    ROOT/testing/{image_2,image_3,calib,velodyne}/XXXXXX.*

Outputs in ``OUT`` (mmengine's annotation format, ``{'metainfo': ..., 'data_list': [...]}``)::

    kitti_infos_{train,val,trainval,test}.pkl
    training/velodyne_reduced/XXXXXX.bin   points inside the left colour camera's view
    testing/velodyne_reduced/XXXXXX.bin
    kitti_gt_database/XXXXXX_<Class>_<i>.bin + kitti_dbinfos_train.pkl   (object-paste augmentation)

Each ``data_list`` entry (file names are base names; the dataset config's ``data_prefix`` picks
the folder, as in mmdetection3d v1.x)::

    sample_idx, split ('training'/'testing'),
    images: {CAM0..CAM3: {img_path, height, width, cam2img (4x4), lidar2cam, lidar2img}, R0_rect}
    lidar_points: {num_pts_feats: 4, lidar_path, Tr_velo_to_cam, Tr_imu_to_velo}  (absent
                   when the frame has no Velodyne file)
    instances: [{bbox, bbox_label, bbox_3d (camera frame [x,y,z,l,h,w,ry]), bbox_label_3d,
                 alpha, truncated, occluded, difficulty, num_lidar_pts, center_2d, depth, index}]

``num_lidar_pts`` counts the points of the FOV-reduced cloud inside each box (the LiDAR-frame box
from the camera box, :func:`perception.models.ops.points_in_boxes.points_in_boxes`), as KITTI infos
do; DontCare objects and frames without a Velodyne file get -1. ``difficulty`` is 0/1/2 for
easy/moderate/hard by KITTI's rule (``difficulty_from_annotations``), -1 when none applies.
"""
from __future__ import annotations

import logging
import os
import struct
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from mmengine.logging import print_log
from mmengine.utils import track_parallel_progress, track_progress

from ...engine.errors import DataError
from ...models.ops.points_in_boxes import points_in_boxes
from ...structures import CameraBoxes3D, KittiCalibration
from ..kitti_format import read_label_file
from ..points_io import points_to_bytes, read_points_bin
from .io import atomic_dump_pickle, atomic_write_bytes

# Label ids as mmdetection3d's KittiDataset; DontCare (and unknown names) get -1.
KITTI_CATEGORIES = ('Pedestrian', 'Cyclist', 'Car', 'Van', 'Truck', 'Person_sitting', 'Tram',
                    'Misc')
# KITTI's difficulty rule: (min 2D height px, max occlusion level, max truncation) per level.
DIFFICULTY_RULES = ((40, 0, 0.15), (25, 1, 0.30), (25, 2, 0.50))
INFO_VERSION = '1.0'


def difficulty_from_annotations(height: np.ndarray, occluded: np.ndarray,
                                truncated: np.ndarray) -> np.ndarray:
    """``(N,)`` KITTI difficulty: 0 easy, 1 moderate, 2 hard, -1 none.

    A level applies when the 2D box is taller than its minimum height and occlusion and truncation
    do not exceed its maxima; an object gets the easiest level that applies (as mmdetection3d's
    converter, which compares heights with ``>``).
    """
    difficulty = np.full(len(height), -1, dtype=np.int64)
    for level in reversed(range(len(DIFFICULTY_RULES))):
        min_height, max_occlusion, max_truncation = DIFFICULTY_RULES[level]
        fits = (height > min_height) & (occluded <= max_occlusion) & (truncated <= max_truncation)
        difficulty[fits] = level
    return difficulty


def image_size(path: Path) -> tuple[int, int]:
    """``(height, width)`` of a PNG from its header (no decoding), else through OpenCV."""
    with open(path, 'rb') as f:
        header = f.read(24)
    if header[:8] == b'\x89PNG\r\n\x1a\n' and header[12:16] == b'IHDR':
        width, height = struct.unpack('>II', header[16:24])
        return int(height), int(width)
    import cv2
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise DataError(f'{path}: cannot read the image')
    return image.shape[:2]


def fov_mask(points: np.ndarray, calib: KittiCalibration, height: int, width: int,
             camera: int = 2) -> np.ndarray:
    """``(N,)`` mask of LiDAR points in front of camera ``camera`` and inside its image."""
    uv, depth = calib.lidar_to_image(points[:, :3].astype(np.float64), camera)
    return ((depth > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < width) & (uv[:, 1] >= 0)
            & (uv[:, 1] < height))


@dataclass(frozen=True)
class _Job:
    root: Path
    out_dir: Path
    split: str          # 'training' or 'testing'
    frame_id: str
    with_labels: bool
    with_database: bool


@dataclass
class _FrameResult:
    info: dict
    database: list[dict]
    warning: str | None = None


def _single_threaded_worker() -> None:
    # One torch thread per worker process: the pool provides the parallelism.
    torch.set_num_threads(1)


def _convert_frame(job: _Job) -> _FrameResult:
    folder = job.root / job.split
    calib = KittiCalibration.from_file(folder / 'calib' / f'{job.frame_id}.txt')
    images = {}
    for camera, image_dir in ((0, 'image_0'), (1, 'image_1'), (2, 'image_2'), (3, 'image_3')):
        images[f'CAM{camera}'] = {
            'img_path': f'{job.frame_id}.png',
            'cam2img': np.vstack([calib.projection(camera), [0, 0, 0, 1]]).tolist(),
            'lidar2cam': calib.lidar2cam.tolist(),
            'lidar2img': calib.lidar2img(camera).tolist(),
        }
    image_path = folder / 'image_2' / f'{job.frame_id}.png'
    if not image_path.is_file():
        raise DataError(f'{image_path}: image not found (every KITTI frame needs image_2)')
    height, width = image_size(image_path)
    for camera_info in images.values():
        camera_info.update(height=height, width=width)
    calibration = calib.to_info()
    images['R0_rect'] = calibration['R0_rect']
    info = {'sample_idx': int(job.frame_id), 'split': job.split, 'images': images,
            'instances': []}

    velodyne_path = folder / 'velodyne' / f'{job.frame_id}.bin'
    points = None
    warning = None
    if velodyne_path.is_file():
        points = read_points_bin(velodyne_path, num_features=4)
        points = points[fov_mask(points, calib, height, width)]
        atomic_write_bytes(job.out_dir / job.split / 'velodyne_reduced' / f'{job.frame_id}.bin',
                           points_to_bytes(points), durable=False)
        info['lidar_points'] = {'num_pts_feats': 4, 'lidar_path': f'{job.frame_id}.bin',
                                'Tr_velo_to_cam': calibration['Tr_velo_to_cam']}
        if 'Tr_imu_to_velo' in calibration:
            info['lidar_points']['Tr_imu_to_velo'] = calibration['Tr_imu_to_velo']
    else:
        warning = (f'{velodyne_path} not found: frame {job.frame_id} is kept as a camera-only '
                   'frame (no lidar_points; num_lidar_pts = -1)')

    database: list[dict] = []
    if job.with_labels:
        annos = read_label_file(folder / 'label_2' / f'{job.frame_id}.txt', with_score=False)
        info['instances'], database = _instances(annos, calib, points, job)
    return _FrameResult(info, database, warning)


def _instances(annos: dict[str, np.ndarray], calib: KittiCalibration, points: np.ndarray | None,
               job: _Job) -> tuple[list[dict], list[dict]]:
    names = annos['name']
    count = len(names)
    if count == 0:
        return [], []
    care = names != 'DontCare'
    labels = np.array([KITTI_CATEGORIES.index(n) if n in KITTI_CATEGORIES else -1 for n in names])
    boxes = np.concatenate([annos['location'], annos['dimensions'], annos['rotation_y'][:, None]],
                           axis=1)  # camera frame [x, y, z, l, h, w, ry], bottom centre
    height = annos['bbox'][:, 3] - annos['bbox'][:, 1]
    difficulty = difficulty_from_annotations(height, annos['occluded'], annos['truncated'])
    difficulty[~care] = -1
    center_uv, depth = calib.camera_to_image(CameraBoxes3D(boxes[care]).gravity_center.double()
                                             .numpy())
    centers_2d = np.full((count, 2), -1.0)
    depths = np.full(count, -1.0)
    centers_2d[care], depths[care] = center_uv, depth

    num_points = np.full(count, -1, dtype=np.int64)
    lidar_boxes = None
    inside = None
    if points is not None and care.any():
        lidar_boxes = CameraBoxes3D(torch.from_numpy(boxes[care])).convert_to(
            'lidar', calib.cam2lidar).tensor
        inside = points_in_boxes(torch.from_numpy(points[:, :3]).double(), lidar_boxes.double(),
                                 frame='lidar').numpy()
        num_points[care] = inside.sum(axis=0)

    instances = []
    for i in range(count):
        instances.append({
            'bbox': annos['bbox'][i].tolist(),
            'bbox_label': int(labels[i]),
            'bbox_3d': boxes[i].tolist(),
            'bbox_label_3d': int(labels[i]),
            'alpha': float(annos['alpha'][i]),
            'truncated': float(annos['truncated'][i]),
            'occluded': int(annos['occluded'][i]),
            'difficulty': int(difficulty[i]),
            'num_lidar_pts': int(num_points[i]),
            'center_2d': centers_2d[i].tolist(),
            'depth': float(depths[i]),
            'index': i,
            'group_id': i,
        })

    database = []
    if job.with_database and inside is not None:
        for column, i in enumerate(np.flatnonzero(care)):
            object_points = points[inside[:, column]].copy()
            box = lidar_boxes[column].numpy()
            object_points[:, :3] -= box[:3]  # stored relative to the box's bottom centre
            file_name = f'{job.frame_id}_{names[i]}_{i}.bin'
            atomic_write_bytes(job.out_dir / 'kitti_gt_database' / file_name,
                               points_to_bytes(object_points), durable=False)
            database.append({'name': str(names[i]), 'path': f'kitti_gt_database/{file_name}',
                             'image_idx': int(job.frame_id), 'gt_idx': i,
                             'box3d_lidar': box.astype(np.float64).tolist(),
                             'num_points_in_gt': int(len(object_points)),
                             'difficulty': int(difficulty[i]), 'group_id': i})
    return instances, database


def read_split(root: Path, split: str) -> list[str] | None:
    """Frame ids listed in ``ImageSets/{split}.txt``; None if the file does not exist."""
    path = root / 'ImageSets' / f'{split}.txt'
    if not path.is_file():
        return None
    ids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    for number, frame_id in enumerate(ids, start=1):
        if not frame_id.isdigit():
            raise DataError(f'{path}, line {number}: expected a frame id like 000123, '
                            f'got {frame_id!r}')
    return ids


def create_kitti_infos(root_path: str | os.PathLike, out_dir: str | os.PathLike | None = None,
                       workers: int = 4, force: bool = False,
                       with_database: bool = True) -> dict[str, Path]:
    """Convert a KITTI root into info files; returns ``{split: path}`` of the infos written.

    Nothing is overwritten without ``force``: existing infos, reduced clouds or a database stop
    the run before any work. Every file is written to a temporary name and renamed.
    """
    root = Path(root_path)
    out = Path(out_dir) if out_dir is not None else root
    if not (root / 'ImageSets').is_dir():
        raise DataError(f'{root}: no ImageSets/ folder; expected the KITTI layout '
                        'ImageSets/{train,val,test}.txt, training/, testing/')
    splits = {name: read_split(root, name) for name in ('train', 'val', 'test')}
    if not any(splits.values()):
        raise DataError(f'{root / "ImageSets"}: none of train.txt, val.txt, test.txt found')
    if splits['train'] is not None and splits['val'] is not None:
        splits['trainval'] = list(dict.fromkeys(splits['train'] + splits['val']))
    outputs = {name: out / f'kitti_infos_{name}.pkl' for name, ids in splits.items()
               if ids is not None}
    database_info = out / 'kitti_dbinfos_train.pkl'
    planned = [*outputs.values()] + ([database_info] if with_database and splits['train'] else [])
    existing = [str(p) for p in planned if p.exists()]
    existing += [str(d) for d in (out / 'training' / 'velodyne_reduced',
                                  out / 'testing' / 'velodyne_reduced', out / 'kitti_gt_database')
                 if d.is_dir() and any(d.iterdir())]
    if existing and not force:
        raise DataError(f'{", ".join(existing)} already exist; pass --force to overwrite')

    labelled = [s for s in ('train', 'val') if splits[s] is not None]
    training_ids = list(dict.fromkeys(i for s in labelled for i in splits[s]))
    train_ids = set(splits['train'] or [])
    jobs = [_Job(root, out, 'training', i, True, with_database and i in train_ids)
            for i in training_ids]
    jobs += [_Job(root, out, 'testing', i, False, False) for i in splits['test'] or []]
    missing_labels = [str(root / 'training' / 'label_2' / f'{i}.txt') for i in training_ids
                      if not (root / 'training' / 'label_2' / f'{i}.txt').is_file()]
    if missing_labels:
        raise DataError(f'{len(missing_labels)} frames listed in ImageSets have no label file, '
                        f'e.g. {missing_labels[0]}')

    print_log(f'KITTI: converting {len(jobs)} frames from {root} with {workers} workers',
              logger='current')
    start = time.perf_counter()
    if workers > 1 and len(jobs) > 1:
        results = track_parallel_progress(_convert_frame, jobs, nproc=workers,
                                          initializer=_single_threaded_worker,
                                          chunksize=max(1, len(jobs) // (workers * 8)))
    else:
        results = track_progress(_convert_frame, jobs)
    seconds = time.perf_counter() - start
    print_log(f'KITTI: {len(jobs)} frames converted in {seconds:.1f} s '
              f'({len(jobs) / max(seconds, 1e-9):.1f} frames/s)', logger='current')
    by_key = {(job.split, job.frame_id): result for job, result in zip(jobs, results)}
    for result in results:
        if result.warning:
            print_log(result.warning, logger='current', level=logging.WARNING)

    metainfo = {'dataset': 'kitti', 'info_version': INFO_VERSION,
                'categories': {name: i for i, name in enumerate(KITTI_CATEGORIES)}}
    written = {}
    for name, ids in splits.items():
        if ids is None:
            continue
        folder = 'testing' if name == 'test' else 'training'
        data_list = [by_key[(folder, i)].info for i in ids]
        written[name] = atomic_dump_pickle({'metainfo': {**metainfo, 'split': name},
                                            'data_list': data_list}, outputs[name], force=True)
        print_log(f'KITTI: {len(data_list)} frames -> {outputs[name]}', logger='current')
    if with_database and splits['train']:
        database: dict[str, list[dict]] = {}
        for i in splits['train']:
            for entry in by_key[('training', i)].database:
                database.setdefault(entry['name'], []).append(entry)
        atomic_dump_pickle(database, database_info, force=True)
        counts = ', '.join(f'{k}: {len(v)}' for k, v in sorted(database.items()))
        print_log(f'KITTI: ground-truth database ({counts}) -> {database_info}', logger='current')
    return written
