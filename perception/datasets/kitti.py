"""KITTI 3D object detection dataset: one class for LiDAR, monocular and stereo use.

It reads the infos written by ``tools/create_data.py kitti`` and hands each frame to the pipeline
as a dict (see ``parse_data_info``). Which sensors a frame needs is set by ``modality``; boxes are
given in the frame the model works in (``box_frame``: 'lidar' for LiDAR detectors, 'camera' for
monocular / stereo ones).
"""
from __future__ import annotations

import logging
import os.path as osp
from typing import Any, Sequence

import numpy as np
from mmengine.dataset import BaseDataset
from mmengine.logging import print_log

from ..engine.errors import ConfigError, DataError
from ..registry import DATASETS
from ..structures import CameraBoxes3D

_DEFAULT_PREFIX = {'pts': 'training/velodyne_reduced', 'img': 'training/image_2',
                   'img_right': 'training/image_3'}


@DATASETS.register_module()
class KittiDataset(BaseDataset):
    """KITTI frames from ``kitti_infos_*.pkl``.

    Args:
        data_root: the KITTI root (where ``training/`` lies).
        ann_file: info file, relative to ``data_root`` or absolute.
        modality: ``use_lidar`` (load the point cloud), ``use_camera`` (left colour image),
            ``use_stereo`` (left and right colour images). LiDAR use skips camera-only frames.
        box_frame: 'lidar' or 'camera': the frame of ``gt_bboxes_3d``.
        data_prefix: folders of ``pts``, ``img`` (image_2) and ``img_right`` (image_3) files.
        metainfo: ``classes`` to keep (default Car, Pedestrian, Cyclist); other objects and
            DontCare regions are dropped from ``gt_*`` (DontCare boxes stay in ``dontcare_bboxes``).
        filter_empty_gt: in training, skip frames without any object of ``classes``.
        pipeline, test_mode, serialize_data, lazy_init, max_refetch: as ``BaseDataset``.

    Each frame given to the pipeline holds ``frame_id`` ('000008'), ``lidar_path`` (LiDAR use),
    ``img_path`` / ``img_right_path`` and the calibration (``cam2img`` = P2 4x4, ``cam2img_right`` =
    P3, ``lidar2cam``, ``lidar2img``), ``img_shape`` (H, W), ``box_frame``, and ``ann_info``:
    ``gt_bboxes_3d`` (``LiDARBoxes3D`` / ``CameraBoxes3D``), ``gt_labels_3d`` ``(N,)`` int64,
    ``gt_bboxes`` ``(N, 4)`` float32, ``gt_labels``, ``centers_2d`` ``(N, 2)``, ``depths`` ``(N,)``,
    ``alpha``, ``truncated``, ``occluded``, ``difficulty``, ``num_lidar_pts``, ``dontcare_bboxes``.
    """

    METAINFO = {'classes': ('Car', 'Pedestrian', 'Cyclist')}

    def __init__(self, data_root: str, ann_file: str,
                 modality: dict[str, bool] | None = None, box_frame: str = 'lidar',
                 data_prefix: dict[str, str] | None = None, metainfo: dict | None = None,
                 pipeline: Sequence[Any] = (), test_mode: bool = False,
                 filter_empty_gt: bool = True, **kwargs: Any) -> None:
        self.modality = {'use_lidar': True, 'use_camera': False, 'use_stereo': False,
                         **(modality or {})}
        unknown = set(self.modality) - {'use_lidar', 'use_camera', 'use_stereo'}
        if unknown:
            raise ConfigError(f'KittiDataset modality: unknown keys {sorted(unknown)}; '
                              'expected use_lidar, use_camera, use_stereo')
        if box_frame not in ('lidar', 'camera'):
            raise ConfigError(f"KittiDataset box_frame must be 'lidar' or 'camera', "
                              f'got {box_frame!r}')
        self.box_frame = box_frame
        self.filter_empty_gt = filter_empty_gt
        super().__init__(ann_file=ann_file, data_root=data_root, metainfo=metainfo,
                         data_prefix={**_DEFAULT_PREFIX, **(data_prefix or {})},
                         pipeline=list(pipeline), test_mode=test_mode, **kwargs)

    def _join_prefix(self) -> None:
        # mmengine would also join data_prefix with data_root; keep prefixes relative to the root
        # (or absolute) and join them per file instead.
        if self.ann_file and not osp.isabs(self.ann_file) and self.data_root:
            self.ann_file = osp.join(self.data_root, self.ann_file)
        self.data_prefix = {key: prefix if osp.isabs(prefix) or not self.data_root
                            else osp.join(self.data_root, prefix)
                            for key, prefix in self.data_prefix.items()}

    def load_data_list(self) -> list[dict]:
        try:
            return super().load_data_list()
        except DataError:
            raise
        except (KeyError, TypeError, ValueError) as error:
            raise DataError(f'{self.ann_file}: not a KITTI info file written by '
                            f'tools/create_data.py kitti ({error})') from None

    def parse_data_info(self, info: dict) -> dict:
        classes = tuple(self.metainfo['classes'])
        images = info['images']
        left, right = images['CAM2'], images['CAM3']
        frame: dict[str, Any] = {
            # mmengine overwrites 'sample_idx' with the dataset index; keep KITTI's id apart.
            'frame_id': f'{info["sample_idx"]:06d}',
            'img_path': osp.join(self.data_prefix['img'], left['img_path']),
            'img_right_path': osp.join(self.data_prefix['img_right'], right['img_path']),
            'img_shape': (left['height'], left['width']),
            'cam2img': np.asarray(left['cam2img'], dtype=np.float64),
            'cam2img_right': np.asarray(right['cam2img'], dtype=np.float64),
            'lidar2cam': np.asarray(left['lidar2cam'], dtype=np.float64),
            'lidar2img': np.asarray(left['lidar2img'], dtype=np.float64),
            'box_frame': self.box_frame,
            'has_lidar': 'lidar_points' in info,
        }
        if frame['has_lidar']:
            frame['lidar_path'] = osp.join(self.data_prefix['pts'],
                                           info['lidar_points']['lidar_path'])
            frame['num_pts_feats'] = info['lidar_points']['num_pts_feats']
        frame['ann_info'] = self._parse_instances(info.get('instances', []), classes,
                                                  frame['lidar2cam'])
        return frame

    def _parse_instances(self, instances: list[dict], classes: tuple[str, ...],
                         lidar2cam: np.ndarray) -> dict[str, Any]:
        categories = self.metainfo.get('categories') or {}
        id_to_name = {i: name for name, i in categories.items()}
        names = [id_to_name.get(inst['bbox_label_3d'], 'DontCare') for inst in instances]
        keep = np.array([name in classes for name in names], dtype=bool)
        kept = [inst for inst, k in zip(instances, keep) if k]

        def column(key: str, dtype: Any, width: int | None = None) -> np.ndarray:
            values = np.array([inst[key] for inst in kept], dtype=dtype)
            return values.reshape(-1, width) if width else values.reshape(-1)

        camera_boxes = CameraBoxes3D(column('bbox_3d', np.float32, 7))
        boxes = (camera_boxes if self.box_frame == 'camera'
                 else camera_boxes.convert_to('lidar', np.linalg.inv(lidar2cam)))
        dontcare = [inst['bbox'] for inst, name in zip(instances, names) if name == 'DontCare']
        labels = np.array([classes.index(n) for n, k in zip(names, keep) if k], dtype=np.int64)
        return {
            'gt_bboxes_3d': boxes,
            'gt_labels_3d': labels,
            'gt_bboxes': column('bbox', np.float32, 4),
            'gt_labels': labels.copy(),  # 2D labels may be filtered apart from the 3D ones
            'centers_2d': column('center_2d', np.float32, 2),
            'depths': column('depth', np.float32),
            'alpha': column('alpha', np.float32),
            'truncated': column('truncated', np.float32),
            'occluded': column('occluded', np.int64),
            'difficulty': column('difficulty', np.int64),
            'num_lidar_pts': column('num_lidar_pts', np.int64),
            'dontcare_bboxes': np.array(dontcare, dtype=np.float32).reshape(-1, 4),
        }

    def filter_data(self) -> list[dict]:
        kept = []
        camera_only = []
        for frame in self.data_list:
            if self.modality['use_lidar'] and not frame['has_lidar']:
                camera_only.append(frame['frame_id'])
                continue
            if (not self.test_mode and self.filter_empty_gt
                    and len(frame['ann_info']['gt_labels_3d']) == 0):
                continue
            kept.append(frame)
        if camera_only:
            print_log(f'KittiDataset: {len(camera_only)} frames have no point cloud and are '
                      f'skipped for LiDAR use (e.g. {camera_only[0]})', logger='current',
                      level=logging.WARNING)
        return kept
