"""LiDAR 3D detector: voxel encoder -> (sparse 3D backbone) -> BEV -> 2D backbone -> neck -> head.

Data interface (what ``Pack3DDetInputs`` and ``pseudo_collate`` give):

* ``inputs['points']``: a list of ``(P_i, C)`` float clouds in the LiDAR frame (x, y, z, intensity,
  ...); a cloud may be empty or lie entirely outside the range.
* data samples (:class:`Det3DDataSample`): for training ``gt_instances_3d`` with ``bboxes_3d``
  (:class:`LiDARBoxes3D`, bottom centre) and ``labels_3d``; for KITTI evaluation the metainfo
  ``lidar2cam`` (4x4), ``cam2img`` (P2, 3x3 / 3x4 / 4x4) and ``img_shape`` (H, W).

Modes: ``'loss'`` -> dict of losses; ``'predict'`` -> the samples with ``pred_instances_3d``
(``bboxes_3d`` :class:`LiDARBoxes3D`, ``scores_3d``, ``labels_3d``) and, where the sample has a
calibration, ``pred_annos`` for :class:`~perception.evaluation.kitti.KittiMetric`; ``'tensor'`` ->
the head's raw maps. In eval mode, ``stage_times`` holds the seconds of the last forward per stage.
"""
from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from mmengine.model import BaseDataPreprocessor, BaseModel
from mmengine.structures import InstanceData
from torch import Tensor

from ...engine.errors import CheckpointError
from ...evaluation.kitti import annos_from_camera_boxes
from ...registry import MODELS
from ...structures import Det3DDataSample, LiDARBoxes3D
from ..layers.sparse_voxels import SparseVoxels, make_sparse_voxels, sparse_to_bev

# Imported for their registrations: DynamicVFE, SECOND, SECONDFPN, CenterHead.
from ..layers.voxel_encoder import DynamicVFE  # noqa: F401
from .bev_backbone import SECOND  # noqa: F401
from .centerpoint_head import CenterHead  # noqa: F401

__all__ = ['LidarDataPreprocessor', 'LidarDetector', 'convert_official_state_dict',
           'kitti_annos_from_lidar_boxes']


@MODELS.register_module()
class LidarDataPreprocessor(BaseDataPreprocessor):
    """Moves the clouds (kept as a list) and the data samples to the model's device."""

    def forward(self, data: dict, training: bool = False) -> dict:
        data = self.cast_data(data)
        inputs = data.get('inputs', {})
        points = inputs.get('points') if isinstance(inputs, Mapping) else None
        if points is None:
            raise KeyError("LidarDataPreprocessor: data['inputs'] must hold 'points' "
                           '(a list of (P, C) clouds, as Pack3DDetInputs + pseudo_collate give)')
        if isinstance(points, Tensor):
            points = [points] if points.dim() == 2 else list(points)
        data['inputs'] = {**inputs, 'points': [p.float() for p in points]}
        data.setdefault('data_samples', None)
        return data


def _as_matrix(value: Any, name: str) -> np.ndarray:
    matrix = np.asarray(value.cpu().numpy() if isinstance(value, Tensor) else value,
                        dtype=np.float64)
    if matrix.shape == (3, 3):
        matrix = np.pad(matrix, ((0, 0), (0, 1)))
    if matrix.shape == (3, 4) and name == 'lidar2cam':
        matrix = np.vstack([matrix, [0, 0, 0, 1]])
    if name == 'cam2img':
        matrix = matrix[:3]
    expected = (3, 4) if name == 'cam2img' else (4, 4)
    if matrix.shape != expected:
        raise ValueError(f'{name} must be {"3x3, 3x4 or 4x4" if name == "cam2img" else "4x4"}, '
                         f'got {matrix.shape}')
    return matrix


def kitti_annos_from_lidar_boxes(boxes: Tensor, scores: Tensor, labels: Tensor,
                                 class_names: Sequence[str], lidar2cam: Any, cam2img: Any,
                                 img_shape: Sequence[int]) -> dict[str, np.ndarray]:
    """KITTI detection annos of LiDAR boxes seen by the left colour camera.

    As mmdetection3d's KITTI evaluation: boxes go to the rectified camera frame, the 2D box is the
    bounding rectangle of the projected corners clipped to the image; a box counts only if its
    centre is in front of the camera and its 2D box overlaps the image.

    Args:
        boxes: (N, >=7) LiDAR boxes, bottom centre.
        scores, labels: (N,).
        class_names: name of each label.
        lidar2cam: 4x4 LiDAR -> rectified camera.
        cam2img: P2 (3x3, 3x4 or 4x4).
        img_shape: (H, W).

    Returns:
        the :func:`annos_from_camera_boxes` layout.
    """
    lidar = LiDARBoxes3D(boxes[:, :7].detach().to('cpu', torch.float64))
    camera = lidar.convert_to('camera', _as_matrix(lidar2cam, 'lidar2cam'))
    proj = torch.from_numpy(_as_matrix(cam2img, 'cam2img'))
    corners = camera.corners  # (N, 8, 3)
    hom = torch.cat([corners, corners.new_ones(corners.shape[:2] + (1,))], dim=2) @ proj.T
    depth = hom[..., 2]
    uv = hom[..., :2] / torch.where(depth.abs() < 1e-6, 1e-6, depth)[..., None]
    low, high = uv.min(dim=1).values, uv.max(dim=1).values
    height, width = float(img_shape[0]), float(img_shape[1])
    in_front = camera.tensor[:, 2] > 0
    overlaps = (low[:, 0] < width) & (low[:, 1] < height) & (high[:, 0] > 0) & (high[:, 1] > 0)
    keep = (in_front & overlaps).numpy()
    bbox = torch.cat([low.clamp(min=0), torch.minimum(high, high.new_tensor([width, height]))],
                     dim=1)
    names = np.asarray(class_names)[labels.detach().cpu().numpy().astype(np.int64)]
    return annos_from_camera_boxes(camera.tensor.numpy()[keep], bbox.numpy()[keep],
                                   scores.detach().cpu().numpy()[keep], names[keep])


@MODELS.register_module()
class LidarDetector(BaseModel):
    """Voxel-based LiDAR detector with a CenterPoint head.

    Args:
        voxel_encoder: config of a point -> :class:`SparseVoxels` encoder (``DynamicVFE``).
        backbone_3d: config of a ``SparseVoxels -> SparseVoxels`` backbone, or None (pillars).
        bev_backbone: 2D backbone config (``SECOND``); its ``in_channels`` is the BEV channels.
        neck: neck config (``SECONDFPN``).
        head: ``CenterHead`` config.
        data_preprocessor: defaults to :class:`LidarDataPreprocessor`.
        train_cfg, test_cfg: merged into the head's (CenterPoint's target and decoding options).
        init_cfg: mmengine init config.
    """

    def __init__(self, voxel_encoder: dict, backbone_3d: dict | None, bev_backbone: dict,
                 neck: dict, head: dict, data_preprocessor: Any = None,
                 train_cfg: dict | None = None, test_cfg: dict | None = None,
                 init_cfg: dict | None = None) -> None:
        if not isinstance(data_preprocessor, torch.nn.Module):  # our registry, not mmengine's
            data_preprocessor = MODELS.build(dict(data_preprocessor
                                                  or dict(type='LidarDataPreprocessor')))
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.voxel_encoder = MODELS.build(voxel_encoder)
        self.backbone_3d = MODELS.build(backbone_3d) if backbone_3d is not None else None
        self.bev_backbone = MODELS.build(bev_backbone)
        self.neck = MODELS.build(neck)
        head = dict(head)
        head['train_cfg'] = {**(head.get('train_cfg') or {}), **(train_cfg or {})}
        head['test_cfg'] = {**(head.get('test_cfg') or {}), **(test_cfg or {})}
        self.head = MODELS.build(head)
        self.class_names = [name for names in self.head.class_names for name in names]
        self.stage_times: dict[str, float] = {}

    # -------------------------------------------------------------------------- features
    def _now(self, device: torch.device) -> float:
        """A timestamp after the device finished its queued work (eval mode timing)."""
        if device.type == 'cuda':
            torch.cuda.synchronize(device)
        return time.perf_counter()

    def extract_feat(self, points: Sequence[Tensor]) -> tuple[list[Tensor], Tensor]:
        """Clouds -> neck features ``[(B, C, H, W)]`` and ``(B,)`` bool "the cloud has a voxel".

        In eval mode ``stage_times`` gets 'voxelize+vfe', 'backbone_3d' and 'bev' seconds.
        """
        timed = not self.training
        device = points[0].device if len(points) else torch.device('cpu')
        t0 = self._now(device) if timed else 0.0
        voxels: SparseVoxels = self.voxel_encoder(points)
        t1 = self._now(device) if timed else 0.0
        occupied = torch.zeros(len(points), dtype=torch.bool, device=voxels.features.device)
        occupied[voxels.coords[:, 0]] = True
        if self.backbone_3d is not None:
            if voxels.num_voxels == 0:
                # Sparse backbones need a voxel: one zero voxel stands in (no detection comes
                # out of an empty cloud: see ``occupied``).
                voxels = make_sparse_voxels(voxels.features.new_zeros((1, voxels.num_channels)),
                                            voxels.coords.new_zeros((1, 4)), voxels.spatial_shape,
                                            voxels.batch_size)
            voxels = self.backbone_3d(voxels)
        t2 = self._now(device) if timed else 0.0
        feats = self.neck(self.bev_backbone(sparse_to_bev(voxels)))
        if timed:
            t3 = self._now(device)
            self.stage_times = {'voxelize+vfe': t1 - t0, 'backbone_3d': t2 - t1, 'bev': t3 - t2}
        return feats, occupied

    # -------------------------------------------------------------------------- modes
    def forward(self, inputs: dict, data_samples: Sequence[Any] | None = None,
                mode: str = 'tensor') -> Any:
        points = inputs['points'] if isinstance(inputs, Mapping) else inputs
        if isinstance(points, Tensor):
            points = [points] if points.dim() == 2 else list(points)
        if mode == 'loss':
            return self.loss(points, data_samples)
        if mode == 'predict':
            return self.predict(points, data_samples)
        if mode == 'tensor':
            feats, _ = self.extract_feat(points)
            return self.head(feats)
        raise ValueError(f"LidarDetector: mode must be 'loss', 'predict' or 'tensor', got {mode!r}")

    def loss(self, points: Sequence[Tensor], data_samples: Sequence[Any]) -> dict[str, Tensor]:
        if data_samples is None or len(data_samples) != len(points):
            raise ValueError(f'LidarDetector: loss mode needs one data sample per cloud, got '
                             f'{0 if data_samples is None else len(data_samples)} for '
                             f'{len(points)} clouds')
        feats, _ = self.extract_feat(points)
        preds = self.head(feats)
        device = feats[0].device
        boxes, labels = [], []
        for sample in data_samples:
            gt = sample.gt_instances_3d
            b = gt.bboxes_3d
            b = b.tensor if hasattr(b, 'tensor') else torch.as_tensor(b)
            boxes.append(b.to(device=device, dtype=torch.float32).reshape(-1, b.shape[-1]))
            labels.append(torch.as_tensor(gt.labels_3d, device=device).reshape(-1))
        return self.head.loss_by_feat(preds, boxes, labels)

    def predict(self, points: Sequence[Tensor], data_samples: Sequence[Any] | None) -> list:
        feats, occupied = self.extract_feat(points)
        device = feats[0].device
        t0 = self._now(device) if not self.training else 0.0
        results = self.head.predict_by_feat(self.head(feats))
        if not self.training:
            self.stage_times['head'] = self._now(device) - t0
        if data_samples is None:
            data_samples = [Det3DDataSample() for _ in points]
        for sample, det, has_voxels in zip(data_samples, results, occupied.tolist()):
            if not has_voxels:  # an empty cloud (or all outside the range): no detection
                det = {key: value[:0] for key, value in det.items()}
            pred = InstanceData()
            pred.bboxes_3d = LiDARBoxes3D(det['bboxes'].detach(), box_dim=det['bboxes'].shape[1])
            pred.scores_3d = det['scores'].detach()
            pred.labels_3d = det['labels'].detach()
            sample.pred_instances_3d = pred
            meta = getattr(sample, 'metainfo', {})
            if all(meta.get(k) is not None for k in ('lidar2cam', 'cam2img', 'img_shape')):
                sample.pred_annos = kitti_annos_from_lidar_boxes(
                    det['bboxes'], det['scores'], det['labels'], self.class_names,
                    meta['lidar2cam'], meta['cam2img'], meta['img_shape'])
        return list(data_samples)


# ---------------------------------------------------------------------------- official weights
_HEAD_LAYER = re.compile(r'^(head\.task_heads\.\d+\.\w+)\.(\d+)\.(conv\.|bn\.)?(.+)$')


def convert_official_state_dict(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """mmdetection3d ``CenterPoint`` (pillar: ``PillarFeatureNet`` + ``SECOND`` + ``SECONDFPN`` +
    ``CenterHead``) weights -> :class:`LidarDetector` names.

    ``pts_voxel_encoder.pfn_layers.i.{linear,norm}`` -> ``voxel_encoder.vfe_layers.i.{0,1}``
    (the pillar encoder's single layer is the dynamic VFE's single layer: same input features in
    the same order, but PillarFeatureNet pads pillars to 20 points, so outputs differ where a
    pillar is padded or over-full); ``pts_backbone`` / ``pts_neck`` -> ``bev_backbone`` / ``neck``
    (same layer indices); ``pts_bbox_head`` -> ``head`` with mmcv's ``ConvModule``
    (``j.conv``, ``j.bn``) flattened into ``nn.Sequential`` positions ``3j``, ``3j + 1``.

    Args:
        state: the official state dict, ``module.`` already stripped.

    Returns:
        our state dict (same tensors).

    Raises:
        CheckpointError: a key belongs to no part this model has (e.g. a camera branch).
    """
    out: dict[str, Tensor] = {}
    unknown = []
    for key, value in state.items():
        new = key
        pfn = re.match(r'^pts_voxel_encoder\.pfn_layers\.(\d+)\.(linear|norm)\.(.+)$', key)
        if pfn:
            index, part, rest = pfn.groups()
            new = f'voxel_encoder.vfe_layers.{index}.{0 if part == "linear" else 1}.{rest}'
        elif key.startswith('pts_backbone.'):
            new = 'bev_backbone.' + key[len('pts_backbone.'):]
        elif key.startswith('pts_neck.'):
            new = 'neck.' + key[len('pts_neck.'):]
        elif key.startswith('pts_bbox_head.shared_conv.'):
            rest = key[len('pts_bbox_head.shared_conv.'):]
            new = 'head.shared_conv.' + rest.replace('conv.', '0.', 1).replace('bn.', '1.', 1)
        elif key.startswith('pts_bbox_head.task_heads.'):
            match = _HEAD_LAYER.match('head.' + key[len('pts_bbox_head.'):])
            if match is None:
                unknown.append(key)
                continue
            prefix, index, module, rest = match.groups()
            position = 3 * int(index) + (1 if module == 'bn.' else 0)
            new = f'{prefix}.{position}.{rest}'
        else:
            unknown.append(key)
            continue
        out[new] = value
    if unknown:
        raise CheckpointError(f'CenterPoint checkpoint: {len(unknown)} keys belong to no part of '
                              f'LidarDetector, e.g. {unknown[:5]}')
    return out
