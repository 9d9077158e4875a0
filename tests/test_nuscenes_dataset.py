"""NuScenesDataset on an info file built from the real nuScenes sample frame."""
from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

from perception.datasets.nuscenes import NuScenesDataset
from perception.engine.errors import DataError
from perception.structures import LiDARBoxes3D

CLASSES = ('car', 'truck', 'construction_vehicle', 'bus', 'trailer', 'barrier', 'motorcycle',
           'bicycle', 'pedestrian', 'traffic_cone')


@pytest.fixture
def frame_infos(shared_data, tmp_path):
    """One info entry in the converter's format, from ../shared/data/nuscenes_frame/frame.json."""
    root = shared_data / 'nuscenes_frame'
    frame = json.loads((root / 'frame.json').read_text())
    instances = []
    for box in frame['boxes']:
        bottom = list(box['box'])
        bottom[2] -= bottom[5] / 2  # the file gives gravity centres; infos store bottom centres
        velocity = np.nan_to_num(np.array(box['velocity'], dtype=float))  # as the converter
        instances.append({'bbox_3d': bottom, 'velocity': velocity.tolist(),
                          'velocity_valid': bool(np.isfinite(box['velocity']).all()),
                          'bbox_label': CLASSES.index(box['name']) if box['name'] in CLASSES
                          else -1,
                          'bbox_3d_isvalid': box['num_lidar_pts'] + box['num_radar_pts'] > 0,
                          'num_lidar_pts': box['num_lidar_pts'],
                          'num_radar_pts': box['num_radar_pts'], 'attr_label': 8})
    info = {
        'sample_idx': 0, 'token': frame['sample_token'], 'timestamp': frame['timestamp'],
        'scene_token': 'scene', 'ego2global': frame['ego2global'],
        'lidar_points': {'num_pts_feats': 5, 'lidar_path': frame['lidar']['path'],
                         'lidar2ego': frame['lidar']['lidar2ego']},
        'lidar_sweeps': [],
        'images': {name: {'img_path': camera['path'], 'cam2img': camera['cam2img'],
                          'cam2ego': camera['cam2ego'], 'lidar2cam': camera['lidar2cam']}
                   for name, camera in frame['cameras'].items()},
        'instances': instances,
    }
    path = tmp_path / 'nuscenes_infos_val.pkl'
    metainfo = {'dataset': 'nuscenes', 'categories': {n: i for i, n in enumerate(CLASSES)}}
    path.write_bytes(pickle.dumps({'metainfo': metainfo, 'data_list': [info]}))
    return root, path, frame


def test_boxes_match_the_annotated_point_counts(frame_infos):
    root, path, frame = frame_infos
    dataset = NuScenesDataset(str(root), str(path), test_mode=True, use_valid_flag=False)
    sample = dataset[0]
    boxes = sample['ann_info']['gt_bboxes_3d']
    assert isinstance(boxes, LiDARBoxes3D) and boxes.with_velocity
    known = [b for b in frame['boxes'] if b['name'] in CLASSES and b['num_lidar_pts'] > 0]
    assert len(boxes) == len(known)
    np.testing.assert_allclose(boxes.gravity_center.numpy(),
                               np.array([b['box'][:3] for b in known]), atol=1e-5)
    points = np.fromfile(sample['lidar_path'], dtype=np.float32).reshape(-1, 5)
    counted = boxes.points_in_boxes(torch.from_numpy(points[:, :3]).double()).sum(0).numpy()
    annotated = sample['ann_info']['num_lidar_pts']
    # nuScenes counted the same sweep's points inside its own boxes: with the boxes read in our
    # convention, most counts agree exactly and the total within a few percent (a wrong yaw
    # sign or height origin would break both).
    assert (counted == annotated).mean() > 0.8
    assert abs(counted.sum() - annotated.sum()) < 0.03 * annotated.sum()


def test_valid_flag_classes_and_cameras(frame_infos):
    root, path, frame = frame_infos
    valid = NuScenesDataset(str(root), str(path), test_mode=True)[0]['ann_info']
    expected = sum(1 for b in frame['boxes'] if b['name'] in CLASSES
                   and b['num_lidar_pts'] + b['num_radar_pts'] > 0)
    assert len(valid['gt_labels_3d']) == expected
    cars = NuScenesDataset(str(root), str(path), test_mode=True,
                           metainfo=dict(classes=('car',)))[0]
    assert set(cars['ann_info']['gt_labels_3d'].tolist()) == {0}
    front = cars['images']['CAM_FRONT']
    np.testing.assert_allclose(front['lidar2img'][:3, :3],
                               front['cam2img'] @ front['lidar2cam'][:3, :3])
    assert front['img_path'].endswith('.jpg') and len(cars['images']) == 6


def test_not_an_info_file(tmp_path):
    path = tmp_path / 'broken.pkl'
    path.write_bytes(pickle.dumps({'metainfo': {}, 'data_list': [{'token': 'x'}]}))
    with pytest.raises(DataError, match='broken.pkl: not a nuScenes info file'):
        NuScenesDataset(str(tmp_path), str(path))
