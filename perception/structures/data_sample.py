"""The container that carries one frame's annotations and predictions through models and metrics.

Built on mmengine's ``BaseDataElement`` / ``InstanceData``, so mmengine's collate, device moves and
evaluator accept it. Fields (each optional):

- ``gt_instances_3d`` / ``pred_instances_3d`` (``InstanceData``): ``bboxes_3d`` (a ``Boxes3D``),
  ``labels_3d`` ``(N,)`` long, ``scores_3d`` ``(N,)`` (predictions), and per-task extras such as
  ``num_lidar_pts`` or ``velocity``.
- ``gt_instances`` / ``pred_instances`` (``InstanceData``): 2D ``bboxes`` ``(N, 4)`` x1y1x2y2 in
  pixels, ``labels``, ``scores``, and for monocular 3D the projected ``centers_2d`` ``(N, 2)`` and
  ``depths`` ``(N,)``.
- ``gt_pixel_data`` / ``pred_pixel_data`` (``PixelData``): dense maps (disparity, labels).
- metainfo: ``sample_idx``, file paths, ``lidar2cam``, ``cam2img``, ``lidar2img``, ``img_shape``,
  ``box_frame`` ('lidar' or 'camera'), augmentation records (``flip``, ``pcd_rotation``, ...).
"""
from __future__ import annotations

from mmengine.structures import BaseDataElement, InstanceData, PixelData


def _typed_field(name: str, kind: type) -> property:
    def getter(self):
        return getattr(self, f'_{name}')

    def setter(self, value):
        if not isinstance(value, kind):
            raise TypeError(f'{name} must be {kind.__name__}, got {type(value).__name__}')
        self.set_field(value, f'_{name}', dtype=kind)

    def deleter(self):
        delattr(self, f'_{name}')

    return property(getter, setter, deleter, doc=f'``{kind.__name__}`` field ``{name}``.')


class Det3DDataSample(BaseDataElement):
    """Annotations and predictions of one frame (see the module docstring for the fields)."""

    gt_instances_3d = _typed_field('gt_instances_3d', InstanceData)
    pred_instances_3d = _typed_field('pred_instances_3d', InstanceData)
    gt_instances = _typed_field('gt_instances', InstanceData)
    pred_instances = _typed_field('pred_instances', InstanceData)
    gt_pixel_data = _typed_field('gt_pixel_data', PixelData)
    pred_pixel_data = _typed_field('pred_pixel_data', PixelData)
