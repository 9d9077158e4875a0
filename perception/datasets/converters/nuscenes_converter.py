"""nuScenes (devkit tables) -> info files in mmengine's annotation format.

Input layout (the official one; nuscenes-devkit reads the tables)::

    ROOT/VERSION/{category,attribute,visibility,instance,sensor,calibrated_sensor,ego_pose,log,
                  scene,sample,sample_data,sample_annotation,map}.json
    ROOT/samples/{LIDAR_TOP,CAM_*}/...    key frames
    ROOT/sweeps/LIDAR_TOP/...             intermediate LiDAR sweeps
    ROOT/maps/*.png

Outputs in ``OUT``: ``nuscenes_infos_{train,val}.pkl`` (``v1.0-trainval``, ``v1.0-mini``) or
``nuscenes_infos_test.pkl`` (``v1.0-test``), each ``{'metainfo': ..., 'data_list': [...]}`` with one
entry per key frame (sample), in the order of the sample table::

    sample_idx, token, timestamp (s), scene_token, ego2global (4x4)
    lidar_points: {num_pts_feats: 5, lidar_path, lidar2ego (4x4)}
    lidar_sweeps: [{lidar_points: {lidar_path, lidar2ego, lidar2sensor}, ego2global, timestamp,
                    sample_data_token}, ...]   previous sweeps, newest first, at most max_sweeps
    images: {CAM_FRONT, ...: {img_path, cam2img (3x3), cam2ego, lidar2cam (4x4),
                              sample_data_token, timestamp}}
    instances: [{bbox_3d, velocity, velocity_valid, bbox_label, bbox_3d_isvalid, num_lidar_pts,
                 num_radar_pts, attr_label}]

Paths are relative to ROOT. Matrices map column vectors in homogeneous coordinates: ``a2b @ [p, 1]``
takes a point from frame ``a`` to frame ``b``. A sweep's ``lidar2sensor`` (the name mmdetection3d
uses) takes that sweep's points into the key frame's LiDAR frame, through both ego poses. Camera
``lidar2cam`` likewise goes through the ego pose at the LiDAR timestamp and the one at the camera
timestamp, as mmdetection3d's infos do.

Boxes follow the toolkit's LiDAR convention (docs/conventions.md): ``bbox_3d = [x, y, z, l, w, h,
yaw]`` in the key frame's ``LIDAR_TOP`` frame with (x, y, z) the BOTTOM centre; the devkit's
annotations give the gravity centre, sizes as (w, l, h) and a global quaternion whose x axis is the
box's length direction. ``velocity`` is the devkit's ``box_velocity`` (global vx, vy; vz dropped as
in mmdetection3d) rotated into the LiDAR frame; where the devkit cannot estimate it (NaN) it is
``[0, 0]`` and ``velocity_valid`` is False.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
from mmengine.logging import print_log
from mmengine.utils import ProgressBar

from ...engine.errors import ConfigError, DataError
from ...structures import invert_pose, limit_period, pose_matrix, quaternion_to_matrix
from .io import atomic_dump_pickle, check_can_write

# Label ids: the class order of mmdetection3d's nuScenes configs (and CenterPoint's).
NUSCENES_CLASSES = ('car', 'truck', 'construction_vehicle', 'bus', 'trailer', 'barrier',
                    'motorcycle', 'bicycle', 'pedestrian', 'traffic_cone')
# Attribute ids as mmdetection3d's nuScenes datasets; 'None' = the annotation has no attribute.
NUSCENES_ATTRIBUTES = ('cycle.with_rider', 'cycle.without_rider', 'pedestrian.moving',
                       'pedestrian.standing', 'pedestrian.sitting_lying_down', 'vehicle.moving',
                       'vehicle.parked', 'vehicle.stopped', 'None')
CAMERAS = ('CAM_FRONT', 'CAM_FRONT_RIGHT', 'CAM_FRONT_LEFT', 'CAM_BACK', 'CAM_BACK_LEFT',
           'CAM_BACK_RIGHT')
TABLES = ('category', 'attribute', 'visibility', 'instance', 'sensor', 'calibrated_sensor',
          'ego_pose', 'log', 'scene', 'sample', 'sample_data', 'sample_annotation', 'map')
# version -> {output split name: devkit split name}
SPLITS = {
    'v1.0-trainval': {'train': 'train', 'val': 'val'},
    'v1.0-mini': {'train': 'mini_train', 'val': 'mini_val'},
    'v1.0-test': {'test': 'test'},
}
INFO_VERSION = '1.0'
BOX_CONVENTION = ('LIDAR_TOP frame of the key frame; bbox_3d = [x, y, z, l, w, h, yaw]; (x, y, z) '
                  'is the bottom centre; yaw counter-clockwise from +x; velocity [vx, vy] in m/s '
                  'in the LiDAR frame')


# ----------------------------------------------------------------------------------------------
# Geometry (pure NumPy, no devkit)
# ----------------------------------------------------------------------------------------------
def global_boxes_to_lidar(translation: np.ndarray, size_wlh: np.ndarray, rotation: np.ndarray,
                          global2lidar: np.ndarray) -> np.ndarray:
    """Move nuScenes annotation boxes from the global frame into a LiDAR frame.

    Args:
        translation: ``(N, 3)`` gravity centres in the global frame (the table's ``translation``).
        size_wlh: ``(N, 3)`` sizes in the devkit's order (width, length, height).
        rotation: ``(N, 4)`` global orientations as (w, x, y, z) quaternions; the box's x axis is
            its length direction.
        global2lidar: ``(4, 4)`` transform from the global frame to the LiDAR frame.

    Returns:
        ``(N, 7)`` float64 boxes ``[x, y, z, l, w, h, yaw]``, (x, y, z) the bottom centre
        (gravity centre minus h/2 along the LiDAR z axis), yaw the heading of the box's length
        axis in the LiDAR x-y plane, counter-clockwise from +x, wrapped to [-pi, pi).
    """
    translation = np.asarray(translation, dtype=np.float64)
    size_wlh = np.asarray(size_wlh, dtype=np.float64)
    rotation = np.asarray(rotation, dtype=np.float64)
    n = len(translation)
    if translation.shape != (n, 3) or size_wlh.shape != (n, 3) or rotation.shape != (n, 4):
        raise ValueError('expected translation (N, 3), size_wlh (N, 3), rotation (N, 4); got '
                         f'{translation.shape}, {size_wlh.shape}, {rotation.shape}')
    if np.shape(global2lidar) != (4, 4):
        raise ValueError(f'global2lidar must be 4x4, got {np.shape(global2lidar)}')
    centre = translation @ global2lidar[:3, :3].T + global2lidar[:3, 3]
    box2lidar = global2lidar[:3, :3] @ quaternion_to_matrix(rotation)  # (N, 3, 3)
    # The heading of the length (x) axis in the LiDAR x-y plane. (pyquaternion's
    # yaw_pitch_roll[0], which mmdetection3d's converter uses, has the sign of its x*y term
    # flipped; it differs from this heading by O(tilt^2) when the box is tilted in the LiDAR
    # frame, about 1e-4 rad for a 1 degree sensor tilt.)
    yaw = limit_period(np.arctan2(box2lidar[:, 1, 0], box2lidar[:, 0, 0]))
    width, length, height = size_wlh.T
    bottom_z = centre[:, 2] - height / 2
    return np.stack([centre[:, 0], centre[:, 1], bottom_z, length, width, height, yaw], axis=1)


def global_velocity_to_lidar(velocity: np.ndarray,
                             global2lidar: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotate ground-plane velocities from the global frame into a LiDAR frame.

    Args:
        velocity: ``(N, 2)`` global (vx, vy) in m/s; NaN where the devkit has no estimate. The
            vertical component is taken as 0, as mmdetection3d does, so that the nuScenes metric's
            round trip (LiDAR -> global, keep vx, vy) returns what went in up to the sensor tilt.
        global2lidar: ``(4, 4)``; only its rotation is used.

    Returns:
        ``(N, 2)`` LiDAR-frame (vx, vy), 0 where unknown, and ``(N,)`` bool: estimate available.
    """
    velocity = np.asarray(velocity, dtype=np.float64)
    if velocity.ndim != 2 or velocity.shape[1] != 2:
        raise ValueError(f'velocity must have shape (N, 2), got {velocity.shape}')
    valid = np.isfinite(velocity).all(axis=1)
    planar = np.where(valid[:, None], velocity, 0.0)
    rotated = planar @ global2lidar[:3, :2].T  # = R @ [vx, vy, 0]
    return rotated[:, :2], valid


# ----------------------------------------------------------------------------------------------
# Table access (devkit records)
# ----------------------------------------------------------------------------------------------
def _import_devkit() -> tuple[Any, Any, Any]:
    """The devkit's ``NuScenes``, ``create_splits_scenes`` and ``category_to_detection_name``."""
    try:
        from nuscenes.eval.detection.utils import category_to_detection_name
        from nuscenes.nuscenes import NuScenes
        from nuscenes.utils.splits import create_splits_scenes
    except ImportError as err:
        raise ConfigError(
            f'converting nuScenes needs nuscenes-devkit ({err}); install the extra: '
            "pip install 'perception[nus]'") from err
    return NuScenes, create_splits_scenes, category_to_detection_name


def _pose(nusc: Any, table: str, token: str, cache: dict) -> np.ndarray:
    """4x4 pose of a calibrated_sensor or ego_pose record, computed once per record."""
    if (table, token) not in cache:
        record = nusc.get(table, token)
        try:
            cache[table, token] = pose_matrix(record['rotation'], record['translation'])
        except ValueError as err:
            raise DataError(f'{nusc.table_root}/{table}.json: record {token}: {err}') from err
    return cache[table, token]


def _sensor_poses(nusc: Any, sample_data: dict, cache: dict) -> tuple[np.ndarray, np.ndarray]:
    """``(sensor2ego, ego2global)`` of a sample_data record. ``cache`` keeps the matrices that
    neighbouring samples share (calibrations; each sweep is listed by up to max_sweeps samples)."""
    return (_pose(nusc, 'calibrated_sensor', sample_data['calibrated_sensor_token'], cache),
            _pose(nusc, 'ego_pose', sample_data['ego_pose_token'], cache))


def _lidar_sweeps(nusc: Any, key_data: dict, global2lidar: np.ndarray, max_sweeps: int,
                  cache: dict) -> list[dict]:
    """Up to ``max_sweeps`` LiDAR sweeps before the key frame, newest first."""
    sweeps = []
    record = key_data
    while len(sweeps) < max_sweeps and record['prev']:
        record = nusc.get('sample_data', record['prev'])
        lidar2ego, ego2global = _sensor_poses(nusc, record, cache)
        sweeps.append({
            'lidar_points': {
                'lidar_path': record['filename'],
                'lidar2ego': lidar2ego.tolist(),
                'lidar2sensor': (global2lidar @ ego2global @ lidar2ego).tolist(),
            },
            'ego2global': ego2global.tolist(),
            'timestamp': record['timestamp'] / 1e6,
            'sample_data_token': record['token'],
        })
    return sweeps


def _camera_infos(nusc: Any, sample: dict, global2lidar: np.ndarray,
                  cache: dict) -> dict[str, dict]:
    images = {}
    for camera in CAMERAS:
        if camera not in sample['data']:
            raise DataError(f'{nusc.table_root}: sample {sample["token"]} has no {camera} '
                            'key frame in sample_data')
        record = nusc.get('sample_data', sample['data'][camera])
        cam2ego, ego2global = _sensor_poses(nusc, record, cache)
        intrinsic = np.asarray(
            nusc.get('calibrated_sensor', record['calibrated_sensor_token'])['camera_intrinsic'],
            dtype=np.float64)
        if intrinsic.shape != (3, 3):
            raise DataError(f'{nusc.table_root}/calibrated_sensor.json: camera_intrinsic of '
                            f'{camera} (sample_data {record["token"]}) must be 3x3, got '
                            f'{intrinsic.shape}')
        lidar2cam = invert_pose(ego2global @ cam2ego) @ invert_pose(global2lidar)
        images[camera] = {
            'img_path': record['filename'],
            'cam2img': intrinsic.tolist(),
            'cam2ego': cam2ego.tolist(),
            'lidar2cam': lidar2cam.tolist(),
            'sample_data_token': record['token'],
            'timestamp': record['timestamp'] / 1e6,
        }
    return images


def _annotation_array(nusc: Any, annotations: list[dict], key: str, width: int) -> np.ndarray:
    """``(N, width)`` float64 array of one field of the annotations, checked: finite numbers,
    sizes > 0, rotations of non-zero length. Errors name the first bad annotation."""
    values = [a[key] for a in annotations]
    ok = np.array([isinstance(v, list) and len(v) == width
                   and all(isinstance(x, (int, float)) for x in v) for v in values])
    array = np.asarray([v if good else [np.nan] * width for v, good in zip(values, ok)],
                       dtype=np.float64)
    ok &= np.isfinite(array).all(axis=1)
    if key == 'size':
        ok &= (array > 0).all(axis=1)
    if key == 'rotation':
        ok &= np.linalg.norm(array, axis=1) > 1e-6
    if not ok.all():
        bad = annotations[int(np.argmin(ok))]
        rule = {'size': ', all > 0', 'rotation': ' (w, x, y, z), not all 0'}.get(key, '')
        raise DataError(f'{nusc.table_root}/sample_annotation.json: annotation {bad["token"]} '
                        f'has {key} {bad[key]!r}; expected {width} finite numbers{rule}')
    return array


def _instances(nusc: Any, sample: dict, global2lidar: np.ndarray,
               category_to_detection_name: Any) -> list[dict]:
    annotations = [nusc.get('sample_annotation', token) for token in sample['anns']]
    if not annotations:
        return []
    fields = {key: _annotation_array(nusc, annotations, key, width)
              for key, width in (('translation', 3), ('size', 3), ('rotation', 4))}
    boxes = global_boxes_to_lidar(fields['translation'], fields['size'], fields['rotation'],
                                  global2lidar)
    global_velocity = np.asarray([nusc.box_velocity(a['token'])[:2] for a in annotations])
    velocity, velocity_valid = global_velocity_to_lidar(global_velocity, global2lidar)
    label_of = {name: i for i, name in enumerate(NUSCENES_CLASSES)}
    attr_of = {name: i for i, name in enumerate(NUSCENES_ATTRIBUTES)}

    instances = []
    for i, ann in enumerate(annotations):
        attribute = (nusc.get('attribute', ann['attribute_tokens'][0])['name']
                     if ann['attribute_tokens'] else 'None')
        if attribute not in attr_of:
            raise DataError(f'{nusc.table_root}: annotation {ann["token"]} has attribute '
                            f'{attribute!r}, expected one of {NUSCENES_ATTRIBUTES}')
        num_lidar, num_radar = int(ann['num_lidar_pts']), int(ann['num_radar_pts'])
        instances.append({
            'bbox_3d': boxes[i].tolist(),
            'velocity': velocity[i].tolist(),
            'velocity_valid': bool(velocity_valid[i]),
            'bbox_label': label_of.get(category_to_detection_name(ann['category_name']), -1),
            'bbox_3d_isvalid': num_lidar + num_radar > 0,
            'num_lidar_pts': num_lidar,
            'num_radar_pts': num_radar,
            'attr_label': attr_of[attribute],
        })
    return instances


def _sample_info(nusc: Any, sample: dict, root: Path, max_sweeps: int,
                 category_to_detection_name: Any, cache: dict) -> dict:
    """One ``data_list`` entry (without ``sample_idx``) for a sample record."""
    if 'LIDAR_TOP' not in sample['data']:
        raise DataError(f'{nusc.table_root}: sample {sample["token"]} has no LIDAR_TOP key frame '
                        'in sample_data')
    lidar_data = nusc.get('sample_data', sample['data']['LIDAR_TOP'])
    if not (root / lidar_data['filename']).is_file():
        raise DataError(f'{root / lidar_data["filename"]} (LIDAR_TOP of sample '
                        f'{sample["token"]}) not found')
    lidar2ego, ego2global = _sensor_poses(nusc, lidar_data, cache)
    global2lidar = invert_pose(ego2global @ lidar2ego)
    return {
        'token': sample['token'],
        'timestamp': sample['timestamp'] / 1e6,
        'scene_token': sample['scene_token'],
        'ego2global': ego2global.tolist(),
        'lidar_points': {
            'num_pts_feats': 5,
            'lidar_path': lidar_data['filename'],
            'lidar2ego': lidar2ego.tolist(),
        },
        'lidar_sweeps': _lidar_sweeps(nusc, lidar_data, global2lidar, max_sweeps, cache),
        'images': _camera_infos(nusc, sample, global2lidar, cache),
        'instances': _instances(nusc, sample, global2lidar, category_to_detection_name),
    }


def _check_layout(root: Path, version: str) -> None:
    """Clear errors for a wrong root, version folder or a missing table (before the devkit's)."""
    if not root.is_dir():
        raise DataError(f'nuScenes root {root} not found (expected a folder holding '
                        f'samples/, sweeps/, maps/ and {version}/)')
    table_root = root / version
    if not table_root.is_dir():
        present = sorted(p.name for p in root.glob('v1.0-*') if p.is_dir())
        raise DataError(f'{table_root} not found: --version {version} needs the devkit tables '
                        f'in that folder (version folders present: {present or "none"})')
    missing = [f'{t}.json' for t in TABLES if not (table_root / f'{t}.json').is_file()]
    if missing:
        raise DataError(f'{table_root}: missing table(s) {", ".join(missing)}')


def _load_tables(NuScenes: Any, root: Path, version: str) -> Any:
    """The devkit's database; tables it cannot read give a DataError naming the folder."""
    table_root = root / version
    try:
        return NuScenes(version=version, dataroot=str(root), verbose=False)
    except (ValueError, KeyError, AssertionError) as err:  # JSONDecodeError is a ValueError
        raise DataError(f'{table_root}: the devkit could not load the tables: '
                        f'{type(err).__name__}: {err}') from err


def _available_scenes(nusc: Any, root: Path, scene_names: list[str],
                      split: str) -> list[str]:
    """Tokens of the split's scenes that are in the tables and whose first LiDAR file exists.

    As mmdetection3d does, scenes whose data was not downloaded are skipped (with a warning), so
    that a partial download converts what it has.
    """
    scene_by_name = {scene['name']: scene for scene in nusc.scene}
    tokens, absent, no_files = [], [], []
    for name in scene_names:
        scene = scene_by_name.get(name)
        if scene is None:
            absent.append(name)
            continue
        first = nusc.get('sample', scene['first_sample_token'])
        lidar = nusc.get('sample_data', first['data']['LIDAR_TOP']) \
            if 'LIDAR_TOP' in first['data'] else None
        if lidar is None or not (root / lidar['filename']).is_file():
            no_files.append(name)
            continue
        tokens.append(scene['token'])
    for names, why in ((absent, 'not in the scene table'),
                       (no_files, 'without LiDAR files under the root')):
        if names:
            print_log(f'nuScenes {nusc.version}: skipping {len(names)} of {len(scene_names)} '
                      f'{split} scenes {why} (e.g. {", ".join(names[:3])})', logger='current',
                      level=logging.WARNING)
    return tokens


def create_nuscenes_infos(root_path: str | os.PathLike, out_dir: str | os.PathLike,
                          version: str = 'v1.0-trainval', max_sweeps: int = 10,
                          force: bool = False) -> dict[str, Path]:
    """Write ``nuscenes_infos_{split}.pkl`` for the version's splits (see the module docstring).

    Args:
        root_path: nuScenes root holding ``samples/``, ``sweeps/``, ``maps/`` and ``version/``.
        out_dir: where the info files go.
        version: ``v1.0-trainval`` (train, val), ``v1.0-mini`` (its mini_train, mini_val, written
            as train, val) or ``v1.0-test`` (test).
        max_sweeps: previous LiDAR sweeps listed per sample (>= 0).
        force: replace existing info files.

    Returns:
        ``{split: path}`` of the files written.

    Raises:
        ConfigError: nuscenes-devkit is not installed, or an unknown version.
        DataError: missing root, version folder, table or LiDAR file; an output exists without
            ``force``; malformed annotation records.
    """
    if version not in SPLITS:
        raise ConfigError(f'unknown nuScenes version {version!r}; expected one of {list(SPLITS)}')
    if max_sweeps < 0:
        raise ConfigError(f'max_sweeps must be >= 0, got {max_sweeps}')
    root, out = Path(root_path), Path(out_dir)
    _check_layout(root, version)
    outputs = {split: out / f'nuscenes_infos_{split}.pkl' for split in SPLITS[version]}
    # Refuse before the (long) conversion, not after it.
    for path in outputs.values():
        check_can_write(path, force)
    NuScenes, create_splits_scenes, category_to_detection_name = _import_devkit()

    nusc = _load_tables(NuScenes, root, version)
    split_scenes = create_splits_scenes()
    scene_split = {}
    for split, devkit_split in SPLITS[version].items():
        for token in _available_scenes(nusc, root, split_scenes[devkit_split], split):
            scene_split[token] = split
    if not scene_split:
        raise DataError(f'{root}: none of the {version} scenes has its LiDAR files there; is '
                        '--root-path the folder holding samples/ and sweeps/?')

    data_lists: dict[str, list[dict]] = {split: [] for split in outputs}
    samples = [s for s in nusc.sample if s['scene_token'] in scene_split]
    print_log(f'nuScenes {version}: converting {len(samples)} samples from {root}',
              logger='current')
    progress = ProgressBar(len(samples))
    pose_cache: dict[tuple[str, str], np.ndarray] = {}
    scene = None
    for sample in samples:
        if sample['scene_token'] != scene:  # poses are shared within a scene only
            scene = sample['scene_token']
            pose_cache.clear()
        data_list = data_lists[scene_split[sample['scene_token']]]
        info = _sample_info(nusc, sample, root, max_sweeps, category_to_detection_name,
                            pose_cache)
        data_list.append({'sample_idx': len(data_list), **info})
        progress.update()
    progress.file.write('\n')  # end the bar's line, as mmengine's track_progress does

    metainfo = {'dataset': 'nuscenes', 'version': version, 'info_version': INFO_VERSION,
                'categories': {name: i for i, name in enumerate(NUSCENES_CLASSES)},
                'attributes': {name: i for i, name in enumerate(NUSCENES_ATTRIBUTES)},
                'box_convention': BOX_CONVENTION}
    written = {}
    for split, data_list in data_lists.items():
        written[split] = atomic_dump_pickle({'metainfo': {**metainfo, 'split': split},
                                             'data_list': data_list}, outputs[split], force=True)
        print_log(f'nuScenes {version}: {len(data_list)} {split} samples -> {outputs[split]}',
                  logger='current')
    return written
