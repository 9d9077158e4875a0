"""Packing a transformed frame into model inputs and a ``Det3DDataSample``."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from mmengine.structures import InstanceData

from ...engine.errors import DataError
from ...registry import TRANSFORMS
from ...structures import Boxes3D, Det3DDataSample, Points

# results key -> (data-sample field, instance field)
_INSTANCE_FIELDS = {
    'gt_bboxes_3d': ('gt_instances_3d', 'bboxes_3d'),
    'gt_labels_3d': ('gt_instances_3d', 'labels_3d'),
    'attr_labels': ('gt_instances_3d', 'attr_labels'),
    'num_lidar_pts': ('gt_instances_3d', 'num_lidar_pts'),
    'difficulty': ('gt_instances_3d', 'difficulty'),
    'gt_bboxes': ('gt_instances', 'bboxes'),
    'gt_labels': ('gt_instances', 'labels'),
    'centers_2d': ('gt_instances', 'centers_2d'),
    'depths': ('gt_instances', 'depths'),
}
_INPUT_KEYS = ('points', 'img', 'img_right')
_LONG_KEYS = ('gt_labels_3d', 'gt_labels', 'attr_labels', 'num_lidar_pts', 'difficulty')

DEFAULT_META_KEYS = (
    'sample_idx', 'frame_id', 'lidar_path', 'img_path', 'img_right_path', 'ori_shape', 'img_shape',
    'cam2img', 'cam2img_right', 'lidar2cam', 'lidar2img', 'ego2global', 'timestamp', 'box_frame',
    'num_pts_feats', 'flip', 'flip_direction', 'pcd_horizontal_flip', 'pcd_vertical_flip',
    'pcd_rotation', 'pcd_rotation_angle', 'pcd_scale_factor', 'pcd_trans',
    'transformation_3d_flow', 'pasted_objects', 'scale_factor', 'img_affine', 'ori_cam2img',
    'crop_scale')


def image_to_tensor(image: np.ndarray, key: str = 'img') -> torch.Tensor:
    """``(H, W, C)`` or ``(H, W)`` array -> contiguous ``(C, H, W)`` tensor of the same dtype."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3:
        raise DataError(f'{key}: expected an (H, W, C) image, got shape {image.shape}')
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))


def _instance_value(key: str, value: Any) -> Any:
    if isinstance(value, Boxes3D):
        return value
    tensor = torch.as_tensor(np.asarray(value) if not isinstance(value, torch.Tensor) else value)
    if key in _LONG_KEYS:
        return tensor.long()
    return tensor.float() if tensor.is_floating_point() else tensor


@TRANSFORMS.register_module()
class Pack3DDetInputs:
    """Collect model inputs and annotations into ``{'inputs': ..., 'data_samples': ...}``.

    Args:
        keys: which results keys to pack. Inputs: ``points`` -> ``inputs['points']`` ``(N, C)``
            tensor; ``img`` / ``img_right`` ``(H, W, 3)`` -> ``(3, H, W)`` tensors (dtype kept; the
            data preprocessor normalises). Annotations: ``gt_bboxes_3d`` / ``gt_labels_3d``
            (also ``attr_labels``, ``num_lidar_pts``, ``difficulty``) -> ``gt_instances_3d``
            (``bboxes_3d`` stays a ``Boxes3D``, labels long); ``gt_bboxes``, ``gt_labels``,
            ``centers_2d``, ``depths`` -> ``gt_instances``. Keys absent from results are skipped.
        meta_keys: results keys copied into the data sample's metainfo when present.

    ``gt_instances_3d`` and ``gt_instances`` are always set (empty when nothing is packed), so a
    test-time sample looks like a training one.
    """

    def __init__(self, keys: Sequence[str] = ('points', 'img', 'gt_bboxes_3d', 'gt_labels_3d',
                                              'gt_bboxes', 'gt_labels', 'centers_2d', 'depths'),
                 meta_keys: Sequence[str] = DEFAULT_META_KEYS) -> None:
        unknown = [k for k in keys if k not in _INPUT_KEYS and k not in _INSTANCE_FIELDS]
        if unknown:
            raise ValueError(f'Pack3DDetInputs: cannot pack {unknown}; known keys are '
                             f'{list(_INPUT_KEYS) + list(_INSTANCE_FIELDS)}')
        self.keys = tuple(keys)
        self.meta_keys = tuple(meta_keys)

    def __call__(self, results: dict) -> dict:
        inputs: dict[str, torch.Tensor] = {}
        for key in _INPUT_KEYS:
            if key not in self.keys or key not in results:
                continue
            value = results[key]
            if key == 'points':
                inputs[key] = value.tensor if isinstance(value, Points) else torch.as_tensor(value)
            else:
                inputs[key] = image_to_tensor(value, key)
        sample = Det3DDataSample()
        fields = {'gt_instances_3d': InstanceData(), 'gt_instances': InstanceData()}
        for key, (field, name) in _INSTANCE_FIELDS.items():
            if key in self.keys and key in results:
                value = _instance_value(key, results[key])
                if len(fields[field]) and len(value) != len(fields[field]):
                    raise DataError(f'Pack3DDetInputs: {key} has {len(value)} entries, other '
                                    f'{field} fields {len(fields[field])}')
                setattr(fields[field], name, value)
        sample.gt_instances_3d = fields['gt_instances_3d']
        sample.gt_instances = fields['gt_instances']
        sample.set_metainfo({k: results[k] for k in self.meta_keys if k in results})
        return {'inputs': inputs, 'data_samples': sample}

    def __repr__(self) -> str:
        return f'{type(self).__name__}(keys={self.keys}, meta_keys={self.meta_keys})'
