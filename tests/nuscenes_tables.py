"""Write a small nuScenes-schema table set with known poses and boxes (for the converter tests).

The layout is the devkit's (``ROOT/<version>/*.json``, ``samples/``, ``sweeps/``, ``maps/``), small
but complete enough for ``nuscenes.nuscenes.NuScenes`` to load. Poses and boxes come from the
scene specs below; :func:`write_nuscenes_tables` returns the ground truth (global poses, box
records, sweep chains) so tests can derive what the converter must produce along an independent
path (scipy rotations here, the converter's own matrices there).

Scenes (v1.0-mini names, so that ``create_splits_scenes`` puts them in mini_train / mini_val):

* ``scene-0061`` (mini_train): 3 key frames, the ego drives on flat ground with yaw-only poses; at
  key frame 0 the ego pose is the identity rotation at (600, 1600, 0), so boxes there can be
  checked by hand.
* ``scene-0103`` (mini_val): 2 key frames, ego poses and LiDAR mounting tilted (pitch/roll).
* ``scene-0553`` (mini_train): in the tables, but its data files are not written (a partial
  download): the converter must skip it.
* ``scene-0001``: in no mini split: the converter must leave it out.

LiDAR sample_data: 2 sweeps before the first key frame, key frames 0.15 s apart with 2 sweeps
between them (20 Hz). Cameras: one image per key frame and camera, each at its own time and ego
pose. ``version='v1.0-test'`` renames the scenes into the test split and drops all annotations.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation

T0_US = 1532402927_000000
KEY_PERIOD = 0.15  # s between key frames
SWEEP_PERIOD = 0.05  # s between LiDAR sweeps
CAMERAS = ('CAM_FRONT', 'CAM_FRONT_RIGHT', 'CAM_FRONT_LEFT', 'CAM_BACK', 'CAM_BACK_LEFT',
           'CAM_BACK_RIGHT')
CAMERA_YAWS = (0.0, -0.96, 0.96, np.pi, 1.92, -1.92)
# Camera axes (x right, y down, z forward) in a forward-looking ego frame (x forward, z up).
CAMERA_BASE = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
IMAGE_SIZE = (160, 90)  # width, height of the dummy images
CATEGORIES = ('vehicle.car', 'human.pedestrian.adult', 'animal', 'vehicle.bus.rigid',
              'movable_object.trafficcone', 'vehicle.truck')
ATTRIBUTES = ('vehicle.moving', 'vehicle.stopped', 'vehicle.parked', 'cycle.with_rider',
              'cycle.without_rider', 'pedestrian.sitting_lying_down', 'pedestrian.standing',
              'pedestrian.moving')


def euler(yaw: float, pitch: float = 0.0, roll: float = 0.0) -> Rotation:
    """``Rz(yaw) @ Ry(pitch) @ Rx(roll)``."""
    return Rotation.from_euler('ZYX', [yaw, pitch, roll])


def pose(rotation: Rotation, translation: Any) -> np.ndarray:
    matrix = np.eye(4)
    matrix[:3, :3] = rotation.as_matrix()
    matrix[:3, 3] = translation
    return matrix


def wxyz(rotation: Rotation) -> list[float]:
    x, y, z, w = rotation.as_quat()
    return [float(w), float(x), float(y), float(z)]


def _ego_0061(dt: float) -> tuple[Rotation, list[float]]:
    return euler(0.2 * dt), [600.0 + 8.0 * dt, 1600.0 + 1.0 * dt, 0.0]


def _ego_0103(dt: float) -> tuple[Rotation, list[float]]:
    return euler(1.0 + 0.1 * dt, 0.02, -0.01), [1200.0 - 5.0 * dt, 800.0 + 3.0 * dt, 1.5]


def _instance(category: str, attribute: str | None, wlh: tuple, centre: tuple, yaw: float,
              velocity: tuple, keys: list[int], lidar_pts: int, radar_pts: int) -> dict:
    return dict(category=category, attribute=attribute, wlh=wlh, centre=centre, yaw=yaw,
                velocity=velocity, keys=keys, num_lidar_pts=lidar_pts, num_radar_pts=radar_pts)


SCENES = (
    dict(name='scene-0061', num_keys=3, ego=_ego_0061, write_files=True,
         lidar2ego=(euler(-np.pi / 2), [1.0, 0.0, 2.0]),
         instances=[
             _instance('vehicle.car', 'vehicle.moving', (2.0, 4.5, 1.6), (611.0, 1603.0, 1.5),
                       0.5, (4.0, 1.0, 0.0), [0, 1, 2], 120, 4),
             _instance('human.pedestrian.adult', 'pedestrian.standing', (0.6, 0.7, 1.8),
                       (598.0, 1590.0, 0.9), -2.5, (0.0, 0.0, 0.0), [0], 0, 0),
             _instance('animal', None, (0.5, 1.0, 0.6), (605.0, 1605.0, 0.3), 3.0,
                       (0.0, 0.0, 0.0), [0], 5, 0),
             _instance('vehicle.bus.rigid', 'vehicle.parked', (2.9, 11.0, 3.5),
                       (580.0, 1620.0, 1.75), 1.2, (0.0, 0.0, 0.0), [1, 2], 0, 3),
         ]),
    dict(name='scene-0103', num_keys=2, ego=_ego_0103, write_files=True,
         lidar2ego=(euler(-np.pi / 2 + 0.003, 0.01), [0.95, 0.02, 1.85]),
         instances=[
             _instance('movable_object.trafficcone', None, (0.4, 0.4, 0.8),
                       (1210.0, 805.0, 1.9), 0.7, (0.0, 0.0, 0.0), [0, 1], 12, 0),
             _instance('vehicle.truck', 'vehicle.moving', (2.5, 7.0, 3.0), (1185.0, 790.0, 3.0),
                       -1.1, (-3.0, 2.0, 0.1), [0, 1], 30, 2),
         ]),
    dict(name='scene-0553', num_keys=1, ego=_ego_0061, write_files=False,
         lidar2ego=(euler(-np.pi / 2), [1.0, 0.0, 2.0]), instances=[]),
    dict(name='scene-0001', num_keys=1, ego=_ego_0061, write_files=True,
         lidar2ego=(euler(-np.pi / 2), [1.0, 0.0, 2.0]), instances=[]),
)
TEST_NAMES = {'scene-0061': 'scene-0077', 'scene-0103': 'scene-0078', 'scene-0553': 'scene-0079'}


def token(*parts: Any) -> str:
    """A deterministic 32-hex-digit token, like nuScenes'."""
    return hashlib.md5('/'.join(map(str, parts)).encode()).hexdigest()


def _write_image(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        from PIL import Image
    except ImportError:  # nothing reads the pixels in these tests
        path.write_bytes(b'not a real jpeg')
        return
    Image.new('RGB', IMAGE_SIZE, (value % 256, 64, 128)).save(path, quality=80)


def _write_points(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    points = np.random.default_rng(seed).normal(size=(4, 5)).astype(np.float32)
    path.write_bytes(points.tobytes())


def _link(records: list[dict]) -> None:
    """Set prev/next along a sequence of records."""
    for i, record in enumerate(records):
        record['prev'] = records[i - 1]['token'] if i > 0 else ''
        record['next'] = records[i + 1]['token'] if i + 1 < len(records) else ''


def write_nuscenes_tables(root: str | Path, version: str = 'v1.0-mini') -> dict:
    """Write the table set under ``root`` and return its ground truth.

    Returns:
        ``{'samples': {sample_token: truth}, 'scenes': {name: [sample tokens]}}`` where a sample's
        truth holds ``scene``, ``key`` (index in its scene), ``timestamp`` (us), ``lidar_token``,
        ``lidar_path``, ``lidar2global`` (4x4 at the key frame), ``sweeps`` (every earlier LiDAR
        sample_data of the scene, newest first: ``token``, ``path``, ``timestamp``,
        ``lidar2global``), ``cameras`` ({name: ``token``, ``path``, ``timestamp``, ``cam2ego``,
        ``cam2global``, ``intrinsic``}) and ``annotations`` (``token``, ``category``,
        ``attribute``, ``centre`` (global gravity centre), ``wlh``, ``rotation`` (scipy),
        ``velocity`` (global, None where the devkit cannot estimate it), ``num_lidar_pts``,
        ``num_radar_pts``).
    """
    root = Path(root)
    with_annotations = version != 'v1.0-test'
    tables: dict[str, list[dict]] = {name: [] for name in (
        'category', 'attribute', 'visibility', 'instance', 'sensor', 'calibrated_sensor',
        'ego_pose', 'log', 'scene', 'sample', 'sample_data', 'sample_annotation', 'map')}
    tables['category'] = [{'token': token('category', c), 'name': c, 'description': c}
                          for c in CATEGORIES]
    tables['attribute'] = [{'token': token('attribute', a), 'name': a, 'description': a}
                           for a in ATTRIBUTES]
    tables['visibility'] = [{'token': str(i + 1), 'level': level, 'description': level}
                            for i, level in enumerate(('v0-40', 'v40-60', 'v60-80', 'v80-100'))]
    channels = ('LIDAR_TOP', ) + CAMERAS
    tables['sensor'] = [{'token': token('sensor', c), 'channel': c,
                         'modality': 'lidar' if c == 'LIDAR_TOP' else 'camera'} for c in channels]
    truth: dict[str, dict] = {'samples': {}, 'scenes': {}}

    for scene_index, spec in enumerate(SCENES):
        name = TEST_NAMES.get(spec['name'], spec['name']) if not with_annotations \
            else spec['name']
        t_scene = T0_US + scene_index * 100_000_000
        log_token = token('log', name)
        tables['log'].append({'token': log_token, 'logfile': f'log-{name}', 'vehicle': 'n015',
                              'date_captured': '2018-07-24', 'location': 'singapore-onenorth'})

        # Calibrated sensors of this scene's log.
        calib = {}
        lidar_rotation, lidar_translation = spec['lidar2ego']
        calib['LIDAR_TOP'] = (pose(lidar_rotation, lidar_translation), None)
        for i, camera in enumerate(CAMERAS):
            rotation = Rotation.from_matrix(euler(CAMERA_YAWS[i]).as_matrix() @ CAMERA_BASE)
            yaw = CAMERA_YAWS[i]
            translation = [1.0 + 0.5 * np.cos(yaw), 0.5 * np.sin(yaw), 1.6]
            intrinsic = [[100.0 + i, 0.0, 80.0], [0.0, 100.0 + i, 45.0], [0.0, 0.0, 1.0]]
            calib[camera] = (pose(rotation, translation), intrinsic)
        calib_tokens = {}
        for channel in channels:
            matrix, intrinsic = calib[channel]
            calib_tokens[channel] = token('calibrated_sensor', name, channel)
            tables['calibrated_sensor'].append({
                'token': calib_tokens[channel], 'sensor_token': token('sensor', channel),
                'translation': matrix[:3, 3].tolist(),
                'rotation': wxyz(Rotation.from_matrix(matrix[:3, :3])),
                'camera_intrinsic': intrinsic or []})

        def ego_pose(t_us: int) -> tuple[str, np.ndarray]:
            rotation, translation = spec['ego']((t_us - t_scene) / 1e6)
            pose_token = token('ego_pose', name, t_us)
            tables['ego_pose'].append({'token': pose_token, 'timestamp': t_us,
                                       'rotation': wxyz(rotation), 'translation': translation})
            return pose_token, pose(rotation, translation)

        # Samples (key frames).
        samples = []
        for k in range(spec['num_keys']):
            samples.append({'token': token('sample', name, k),
                            'timestamp': t_scene + round(k * KEY_PERIOD * 1e6),
                            'scene_token': token('scene', name)})
        _link(samples)
        tables['sample'] += samples
        tables['scene'].append({'token': token('scene', name), 'log_token': log_token,
                                'nbr_samples': len(samples), 'name': name,
                                'description': f'generated {name}',
                                'first_sample_token': samples[0]['token'],
                                'last_sample_token': samples[-1]['token']})
        truth['scenes'][name] = [s['token'] for s in samples]
        for k, sample in enumerate(samples):
            truth['samples'][sample['token']] = {'scene': name, 'key': k,
                                                 'timestamp': sample['timestamp'],
                                                 'cameras': {}, 'annotations': []}

        # LiDAR sample_data: sweeps before the first key frame and between key frames.
        lidar_times = [(-2 * SWEEP_PERIOD, 0), (-SWEEP_PERIOD, 0)]
        for k in range(spec['num_keys']):
            lidar_times.append((k * KEY_PERIOD, k))
            if k + 1 < spec['num_keys']:
                lidar_times += [(k * KEY_PERIOD + SWEEP_PERIOD, k + 1),
                                (k * KEY_PERIOD + 2 * SWEEP_PERIOD, k + 1)]
        lidar_records, chain = [], []
        for t, k in lidar_times:
            t_us = t_scene + round(t * 1e6)
            is_key = t_us == samples[k]['timestamp']
            folder = 'samples' if is_key else 'sweeps'
            path = f'{folder}/LIDAR_TOP/n015-{name}__LIDAR_TOP__{t_us}.pcd.bin'
            pose_token, ego2global = ego_pose(t_us)
            record = {'token': token('sample_data', name, 'LIDAR_TOP', t_us),
                      'sample_token': samples[k]['token'], 'ego_pose_token': pose_token,
                      'calibrated_sensor_token': calib_tokens['LIDAR_TOP'], 'timestamp': t_us,
                      'fileformat': 'pcd', 'is_key_frame': is_key, 'height': 0, 'width': 0,
                      'filename': path}
            lidar_records.append(record)
            lidar2global = ego2global @ calib['LIDAR_TOP'][0]
            if is_key:
                sample_truth = truth['samples'][samples[k]['token']]
                sample_truth.update(lidar_token=record['token'], lidar_path=path,
                                    lidar2global=lidar2global,
                                    sweeps=[dict(entry) for entry in reversed(chain)])
            chain.append({'token': record['token'], 'path': path, 'timestamp': t_us,
                          'lidar2global': lidar2global})
            if spec['write_files']:
                _write_points(root / path, seed=t_us % 100_000)
        _link(lidar_records)
        tables['sample_data'] += lidar_records

        # Camera sample_data: one per key frame and camera, each at its own time.
        for i, camera in enumerate(CAMERAS):
            records = []
            for k, sample in enumerate(samples):
                t_us = sample['timestamp'] - 30_000 + 10_000 * i
                path = f'samples/{camera}/n015-{name}__{camera}__{t_us}.jpg'
                pose_token, ego2global = ego_pose(t_us)
                records.append({'token': token('sample_data', name, camera, t_us),
                                'sample_token': sample['token'], 'ego_pose_token': pose_token,
                                'calibrated_sensor_token': calib_tokens[camera],
                                'timestamp': t_us, 'fileformat': 'jpg', 'is_key_frame': True,
                                'height': IMAGE_SIZE[1], 'width': IMAGE_SIZE[0],
                                'filename': path})
                truth['samples'][sample['token']]['cameras'][camera] = {
                    'token': records[-1]['token'], 'path': path, 'timestamp': t_us,
                    'cam2ego': calib[camera][0], 'cam2global': ego2global @ calib[camera][0],
                    'intrinsic': np.array(calib[camera][1])}
                if spec['write_files']:
                    _write_image(root / path, value=t_us % 251)
            _link(records)
            tables['sample_data'] += records

        # Instances and their annotations: constant global velocity, fixed global yaw.
        for j, inst in enumerate(spec['instances'] if with_annotations else []):
            inst_token = token('instance', name, j)
            annotations = []
            for k in inst['keys']:
                dt = (samples[k]['timestamp'] - samples[0]['timestamp']) / 1e6
                centre = np.add(inst['centre'], np.multiply(inst['velocity'], dt))
                rotation = euler(inst['yaw'])
                attributes = [token('attribute', inst['attribute'])] if inst['attribute'] else []
                annotations.append({
                    'token': token('sample_annotation', name, j, k),
                    'sample_token': samples[k]['token'], 'instance_token': inst_token,
                    'visibility_token': '4', 'attribute_tokens': attributes,
                    'translation': centre.tolist(), 'size': list(inst['wlh']),
                    'rotation': wxyz(rotation), 'num_lidar_pts': inst['num_lidar_pts'],
                    'num_radar_pts': inst['num_radar_pts']})
                truth['samples'][samples[k]['token']]['annotations'].append({
                    'token': annotations[-1]['token'], 'category': inst['category'],
                    'attribute': inst['attribute'], 'centre': centre, 'wlh': np.array(inst['wlh']),
                    'rotation': rotation,
                    'velocity': np.array(inst['velocity']) if len(inst['keys']) > 1 else None,
                    'num_lidar_pts': inst['num_lidar_pts'],
                    'num_radar_pts': inst['num_radar_pts']})
            _link(annotations)
            tables['sample_annotation'] += annotations
            tables['instance'].append({
                'token': inst_token, 'category_token': token('category', inst['category']),
                'nbr_annotations': len(annotations),
                'first_annotation_token': annotations[0]['token'],
                'last_annotation_token': annotations[-1]['token']})

    map_token = token('map', 'singapore-onenorth')
    tables['map'] = [{'token': map_token, 'category': 'semantic_prior',
                      'filename': f'maps/{map_token}.png',
                      'log_tokens': [log['token'] for log in tables['log']]}]
    _write_image(root / tables['map'][0]['filename'], value=0)
    table_root = root / version
    table_root.mkdir(parents=True, exist_ok=True)
    for table, records in tables.items():
        (table_root / f'{table}.json').write_text(json.dumps(records, indent=0))
    return truth
