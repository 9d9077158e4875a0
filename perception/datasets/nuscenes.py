"""nuScenes 3D detection dataset over the infos of ``tools/create_data.py nuscenes``."""
from __future__ import annotations

import os.path as osp
from typing import Any, Sequence

import numpy as np
from mmengine.dataset import BaseDataset

from ..engine.errors import ConfigError, DataError
from ..registry import DATASETS
from ..structures import LiDARBoxes3D


@DATASETS.register_module()
class NuScenesDataset(BaseDataset):
    """nuScenes key frames (samples) from ``nuscenes_infos_*.pkl``.

    Args:
        data_root: the nuScenes root; info paths (``samples/...``, ``sweeps/...``) are relative
            to it.
        ann_file: info file, relative to ``data_root`` or absolute.
        modality: ``use_lidar`` and ``use_camera`` (the six cameras).
        use_valid_flag: keep only boxes with LiDAR or radar points (``bbox_3d_isvalid``), as
            mmdetection3d's nuScenes configs do; otherwise boxes with ``num_lidar_pts > 0``.
        with_velocity: give ``gt_bboxes_3d`` as ``(N, 9)`` boxes with ``[vx, vy]``.
        metainfo: ``classes`` to keep (default the 10 detection classes).
        filter_empty_gt: in training, skip samples without any kept box.

    Each sample given to the pipeline holds ``token``, ``timestamp``, ``lidar_path``,
    ``num_pts_feats``, ``lidar_sweeps`` (paths joined with the root), ``ego2global``,
    ``lidar2ego``, ``images`` ({camera: {img_path, cam2img (3x3), lidar2cam, lidar2img (4x4)}}),
    ``box_frame`` ('lidar') and ``ann_info``: ``gt_bboxes_3d`` (``LiDARBoxes3D``, bottom centre),
    ``gt_labels_3d``, ``attr_labels``, ``num_lidar_pts``, ``velocity_valid``.
    """

    METAINFO = {'classes': ('car', 'truck', 'construction_vehicle', 'bus', 'trailer', 'barrier',
                            'motorcycle', 'bicycle', 'pedestrian', 'traffic_cone')}

    def __init__(self, data_root: str, ann_file: str, modality: dict[str, bool] | None = None,
                 use_valid_flag: bool = True, with_velocity: bool = True,
                 metainfo: dict | None = None, pipeline: Sequence[Any] = (),
                 test_mode: bool = False, filter_empty_gt: bool = True, **kwargs: Any) -> None:
        self.modality = {'use_lidar': True, 'use_camera': False, **(modality or {})}
        unknown = set(self.modality) - {'use_lidar', 'use_camera'}
        if unknown:
            raise ConfigError(f'NuScenesDataset modality: unknown keys {sorted(unknown)}; '
                              'expected use_lidar, use_camera')
        self.use_valid_flag = use_valid_flag
        self.with_velocity = with_velocity
        self.filter_empty_gt = filter_empty_gt
        super().__init__(ann_file=ann_file, data_root=data_root, metainfo=metainfo,
                         pipeline=list(pipeline), test_mode=test_mode, **kwargs)

    def load_data_list(self) -> list[dict]:
        try:
            return super().load_data_list()
        except DataError:
            raise
        except (KeyError, TypeError, ValueError) as error:
            raise DataError(f'{self.ann_file}: not a nuScenes info file written by '
                            f'tools/create_data.py nuscenes ({error})') from None

    def _path(self, relative: str) -> str:
        return relative if osp.isabs(relative) else osp.join(self.data_root, relative)

    def parse_data_info(self, info: dict) -> dict:
        lidar2ego = np.asarray(info['lidar_points']['lidar2ego'], dtype=np.float64)
        sample: dict[str, Any] = {
            'token': info['token'],
            'timestamp': info['timestamp'],
            'lidar_path': self._path(info['lidar_points']['lidar_path']),
            'num_pts_feats': info['lidar_points']['num_pts_feats'],
            'lidar2ego': lidar2ego,
            'ego2global': np.asarray(info['ego2global'], dtype=np.float64),
            'box_frame': 'lidar',
            'lidar_sweeps': [
                {**sweep, 'lidar_points': {**sweep['lidar_points'],
                                           'lidar_path': self._path(
                                               sweep['lidar_points']['lidar_path'])}}
                for sweep in info.get('lidar_sweeps', [])],
        }
        images = {}
        for camera, data in info.get('images', {}).items():
            cam2img = np.asarray(data['cam2img'], dtype=np.float64)
            lidar2cam = np.asarray(data['lidar2cam'], dtype=np.float64)
            viewpad = np.eye(4)
            viewpad[:3, :3] = cam2img
            images[camera] = {'img_path': self._path(data['img_path']), 'cam2img': cam2img,
                              'lidar2cam': lidar2cam, 'lidar2img': viewpad @ lidar2cam}
        sample['images'] = images
        sample['ann_info'] = self._parse_instances(info.get('instances', []))
        return sample

    def _parse_instances(self, instances: list[dict]) -> dict[str, Any]:
        classes = tuple(self.metainfo['classes'])
        categories = self.metainfo.get('categories') or {}
        id_to_name = {i: name for name, i in categories.items()}
        keep = [inst for inst in instances
                if id_to_name.get(inst['bbox_label']) in classes
                and (inst['bbox_3d_isvalid'] if self.use_valid_flag
                     else inst['num_lidar_pts'] > 0)]
        boxes = np.array([inst['bbox_3d'] for inst in keep], dtype=np.float32).reshape(-1, 7)
        if self.with_velocity:
            velocity = np.array([inst['velocity'] for inst in keep],
                                dtype=np.float32).reshape(-1, 2)
            boxes = np.concatenate([boxes, velocity], axis=1)
        return {
            'gt_bboxes_3d': LiDARBoxes3D(boxes),
            'gt_labels_3d': np.array([classes.index(id_to_name[inst['bbox_label']])
                                      for inst in keep], dtype=np.int64),
            'attr_labels': np.array([inst['attr_label'] for inst in keep], dtype=np.int64),
            'num_lidar_pts': np.array([inst['num_lidar_pts'] for inst in keep], dtype=np.int64),
            'velocity_valid': np.array([inst.get('velocity_valid', True) for inst in keep],
                                       dtype=bool),
        }

    def filter_data(self) -> list[dict]:
        if self.test_mode or not self.filter_empty_gt:
            return self.data_list
        return [s for s in self.data_list if len(s['ann_info']['gt_labels_3d'])]
