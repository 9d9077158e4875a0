"""MonoDETR (Zhang et al., "MonoDETR: Depth-guided Transformer for Monocular 3D Object Detection",
ICCV 2023) and MonoDGP's geometry-error depth (Pu et al., CVPR 2025) as an option.

Data interface (one packed sample, as the mono3D pipeline yields it):

* ``inputs['img']``: ``(3, H, W)`` RGB, uint8 or float in [0, 255].
* ``Det3DDataSample`` metainfo: ``cam2img`` (3x4 / 4x4 P2 of the *transformed* image),
  ``img_shape``, ``ori_shape``, optionally ``scale_factor`` ``(sx, sy)``, ``img_affine`` (3x3,
  loaded -> current pixels), ``flip``, ``sample_idx``; for training ``gt_instances_3d``
  (``bboxes_3d`` camera boxes with bottom centres, ``labels_3d``) and ``gt_instances``
  (``bboxes`` x1y1x2y2, ``labels``) with ``centers_2d`` ``(N, 2)`` (projected gravity centres in
  the transformed image) and ``depths`` ``(N,)`` in either of the two.

All query geometry is normalised by the network input's (padded) width and height. Modes:
``loss`` -> weighted losses; ``predict`` -> samples with ``pred_instances_3d`` (``bboxes_3d``
camera boxes in the original camera frame, ``scores_3d``, ``labels_3d``), ``pred_instances``
(``bboxes`` clipped to the original image, ``scores``, ``labels``) and ``pred_annos`` (KITTI
layout for :class:`~perception.evaluation.kitti.KittiMetric`); ``tensor`` -> the raw per-layer
outputs.
"""
from __future__ import annotations

import math
import re
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.model import BaseDataPreprocessor, BaseModel
from mmengine.structures import InstanceData
from torch import Tensor, nn

from ...engine.errors import DataError
from ...evaluation.kitti import annos_from_camera_boxes
from ...registry import MODELS
from ...structures import CameraBoxes3D, limit_period
from .coding import (
    backproject,
    cxcylrtb_to_xyxy,
    decode_heading,
    encode_heading,
    geometric_depth,
    ray_angle,
)
from .losses import MonoDETRLoss
from .matcher import HungarianMatcher
from .transformer import MLP, DepthAwareTransformer, DepthPredictor, sine_position_embedding

# KITTI mean 3D sizes (h, w, l) per class from MonoDLE / MonoDETR's dataset (used only when a
# model is configured with ``mean_size``; the published MonoDETR regresses absolute sizes).
KITTI_MEAN_SIZE = {'Pedestrian': (1.76255119, 0.66068622, 0.84422524),
                   'Car': (1.52563191462, 1.62856739989, 3.88311640418),
                   'Cyclist': (1.73698127, 0.59706367, 1.76282397)}
OFFICIAL_CLASSES = ('Pedestrian', 'Car', 'Cyclist')


@MODELS.register_module()
class MonoDETRDataPreprocessor(BaseDataPreprocessor):
    """Normalise (ImageNet mean / std in [0, 255]) and pad images at the bottom / right to a
    multiple of ``size_divisor`` (32: the backbone's stride), recording ``pad_shape``.

    ``forward({'inputs': {'img': list of (3, H, W)} | list | (B, 3, H, W), 'data_samples'})`` ->
    ``{'inputs': (B, 3, H', W') float32, 'data_samples': ...}``.
    """

    def __init__(self, mean: Sequence[float] = (123.675, 116.28, 103.53),
                 std: Sequence[float] = (58.395, 57.12, 57.375), size_divisor: int = 32,
                 pad_val: float = 0.0) -> None:
        super().__init__()
        if len(mean) != 3 or len(std) != 3:
            raise ValueError(f'MonoDETRDataPreprocessor: mean / std need 3 values, got {mean}, '
                             f'{std}')
        self.register_buffer('mean', torch.tensor(mean, dtype=torch.float32).view(3, 1, 1),
                             persistent=False)
        self.register_buffer('std', torch.tensor(std, dtype=torch.float32).view(3, 1, 1),
                             persistent=False)
        self.size_divisor = size_divisor
        self.pad_val = pad_val

    def forward(self, data: dict, training: bool = False) -> dict:
        data = self.cast_data(data)
        inputs = data['inputs']
        if isinstance(inputs, dict):
            if 'img' not in inputs:
                raise KeyError("MonoDETRDataPreprocessor: inputs have no 'img'")
            inputs = inputs['img']
        images = list(inputs) if isinstance(inputs, (list, tuple)) or inputs.dim() == 4 \
            else [inputs]
        samples = data.get('data_samples')
        for i, img in enumerate(images):
            if img.dim() != 3 or img.shape[0] != 3:
                where = '' if samples is None else f' ({_sample_where(samples[i])})'
                raise DataError(f'MonoDETR needs RGB images (3, H, W); image {i}{where} is '
                                f'{tuple(img.shape)} (a grayscale file must be loaded as colour)')
        h = max(int(img.shape[1]) for img in images)
        w = max(int(img.shape[2]) for img in images)
        d = self.size_divisor or 1
        h, w = math.ceil(h / d) * d, math.ceil(w / d) * d
        batch = torch.stack([
            F.pad((img.float() - self.mean) / self.std,
                  (0, w - img.shape[2], 0, h - img.shape[1]), value=self.pad_val)
            for img in images])
        for img, sample in zip(images, samples or []):
            meta = {'pad_shape': (h, w), 'batch_input_shape': (h, w)}
            if 'img_shape' not in sample.metainfo:
                meta['img_shape'] = tuple(img.shape[1:])
            sample.set_metainfo(meta)
        return {'inputs': batch, 'data_samples': samples}


def _sample_where(sample: Any) -> str:
    meta = getattr(sample, 'metainfo', {})
    return str(meta.get('img_path', meta.get('sample_idx', '?')))


def cam2img_of(sample: Any, device: torch.device | None = None) -> Tensor:
    """The sample's ``cam2img`` as a ``(3, 4)`` float32 tensor (3x3 padded, 4x4 cut)."""
    value = getattr(sample, 'metainfo', {}).get('cam2img')
    if value is None:
        raise DataError(f'MonoDETR: sample {_sample_where(sample)} has no cam2img (P2) in its '
                        'metainfo; the calibration must provide P2')
    m = torch.as_tensor(np.asarray(value, dtype=np.float32), device=device)
    if m.shape == (3, 3):
        m = torch.cat([m, m.new_zeros(3, 1)], dim=1)
    if m.shape not in ((3, 4), (4, 4)):
        raise DataError(f'MonoDETR: cam2img of {_sample_where(sample)} must be 3x3, 3x4 or 4x4, '
                        f'got {tuple(m.shape)}')
    return m[:3]


def _instance_field(sample: Any, name: str) -> Any:
    for group in ('gt_instances_3d', 'gt_instances'):
        inst = getattr(sample, group, None)
        if inst is not None and name in inst:
            return inst.get(name)
    return None


def build_targets(samples: Sequence[Any], input_hw: tuple[int, int], map_hw: tuple[int, int],
                  device: torch.device) -> list[dict[str, Tensor]]:
    """MonoDETR's per-image training targets from packed samples.

    Per image: ``labels`` ``(M,)``, ``boxes_3d`` ``(M, 6)`` normalised ``(x, y, l, r, t, b)``
    (projected centre and its distances to the 2D box edges), ``depth`` ``(M,)``, ``size_3d``
    ``(M, 3)`` ``(h, w, l)``, ``heading_bin`` / ``heading_res`` of the observation angle
    ``ry - atan2(u_c - cu, fu)`` (``u_c``: the 2D box centre column, as the official code),
    ``boxes_map`` ``(M, 4)`` the 2D boxes in cells of the ``map_hw`` depth map.
    """
    h_in, w_in = input_hw
    scale = torch.tensor([w_in, h_in, w_in, h_in], dtype=torch.float32, device=device)
    cell = torch.tensor([map_hw[1], map_hw[0]] * 2, dtype=torch.float32, device=device)
    targets = []
    for sample in samples:
        where = _sample_where(sample)
        inst3d = sample.gt_instances_3d
        boxes3d = inst3d.bboxes_3d
        boxes3d = (boxes3d.tensor if isinstance(boxes3d, CameraBoxes3D) else
                   torch.as_tensor(boxes3d)).to(device=device, dtype=torch.float32)
        labels = torch.as_tensor(inst3d.labels_3d, device=device).long()
        inst2d = getattr(sample, 'gt_instances', None)
        if inst2d is None or 'bboxes' not in inst2d:
            raise DataError(f'MonoDETR: sample {where} has no gt_instances.bboxes (load the 2D '
                            'boxes: LoadAnnotations3D(with_bbox=True))')
        bboxes = torch.as_tensor(inst2d.bboxes, device=device).float().reshape(-1, 4)
        centers = _instance_field(sample, 'centers_2d')
        depths = _instance_field(sample, 'depths')
        n = len(labels)
        if centers is None or depths is None:
            raise DataError(f'MonoDETR: sample {where} lacks centers_2d / depths (run '
                            'Mono3DTargets in the training pipeline)')
        centers = torch.as_tensor(centers, device=device).float().reshape(-1, 2)
        depths = torch.as_tensor(depths, device=device).float().reshape(-1)
        if not (boxes3d.shape[0] == len(bboxes) == len(centers) == len(depths) == n):
            raise DataError(f'MonoDETR: sample {where} has {boxes3d.shape[0]} 3D boxes, {n} '
                            f'labels, {len(bboxes)} 2D boxes, {len(centers)} centres and '
                            f'{len(depths)} depths; they must match one to one')
        cam2img = cam2img_of(sample, device)
        x1y1, x2y2 = bboxes[:, :2], bboxes[:, 2:]
        ltrb = torch.cat([centers - x1y1, x2y2 - centers], dim=1)  # (l, t, r, b) pixels
        boxes_6 = torch.stack([centers[:, 0] / w_in, centers[:, 1] / h_in,
                               ltrb[:, 0] / w_in, ltrb[:, 2] / w_in,
                               ltrb[:, 1] / h_in, ltrb[:, 3] / h_in], dim=1)
        alpha = limit_period(boxes3d[:, 6] - ray_angle((bboxes[:, 0] + bboxes[:, 2]) / 2, cam2img))
        heading_bin, heading_res = encode_heading(alpha)
        targets.append({
            'labels': labels, 'boxes_3d': boxes_6, 'depth': depths,
            'size_3d': boxes3d[:, [4, 5, 3]], 'heading_bin': heading_bin,
            'heading_res': heading_res, 'boxes_map': bboxes / scale * cell})
    return targets


@MODELS.register_module()
class MonoDETR(BaseModel):
    """MonoDETR at the published size by default (ResNet-50, 4 levels of 256 channels, 3 encoder
    and 3 decoder layers, FFN 256, 8 heads, 4 points, 50 queries x 11 groups, 80 LID bins).

    Args:
        backbone: config of a registered backbone with ``out_channels``; its three outputs are
            the 1/8, 1/16 and 1/32 maps.
        classes: class names in label order (the dataset's).
        num_queries, num_groups: queries per group and groups in training (one group at test).
        hidden_dim, num_heads, d_ffn, dropout: transformer sizes.
        num_encoder_layers, num_decoder_layers, enc_points, dec_points: transformer depth and
            deformable sampling points.
        num_depth_bins, depth_min, depth_max: the depth map's LID bins.
        depth_mode: ``'monodetr'`` (average of the regressed, geometric and depth-map depths) or
            ``'monodgp'`` (geometric depth plus a learned geometry error).
        mean_size: ``None`` (the published model: absolute sizes) or per class ``(h, w, l)``
            means (a sequence in ``classes`` order, or ``'kitti'``); then the size head predicts
            offsets from the mean of the query's most likely class.
        freeze_backbone_stages, freeze_backbone_norm: as the official training (stem and
            ``layer1`` frozen; BatchNorm frozen like its ``FrozenBatchNorm2d``).
        loss: ``dict(weights=..., focal_alpha=...)`` for :class:`MonoDETRLoss`; ``matcher``:
            costs of :class:`HungarianMatcher`.
        test_cfg: ``topk`` (50) queries kept and ``score_thr`` (official tester: 0.2) on
            ``sigmoid(class) * exp(-log_variance)``.
    """

    def __init__(self,
                 backbone: Mapping | None = None,
                 classes: Sequence[str] = ('Car', 'Pedestrian', 'Cyclist'),
                 num_queries: int = 50,
                 num_groups: int = 11,
                 hidden_dim: int = 256,
                 num_heads: int = 8,
                 d_ffn: int = 256,
                 dropout: float = 0.1,
                 num_feature_levels: int = 4,
                 num_encoder_layers: int = 3,
                 num_decoder_layers: int = 3,
                 enc_points: int = 4,
                 dec_points: int = 4,
                 num_depth_bins: int = 80,
                 depth_min: float = 1e-3,
                 depth_max: float = 60.0,
                 depth_mode: str = 'monodetr',
                 mean_size: Sequence[Sequence[float]] | str | None = None,
                 freeze_backbone_stages: int = 1,
                 freeze_backbone_norm: bool = True,
                 matcher: Mapping | None = None,
                 loss: Mapping | None = None,
                 test_cfg: Mapping | None = None,
                 data_preprocessor: Mapping | nn.Module | None = None,
                 init_cfg: Mapping | None = None) -> None:
        if not isinstance(data_preprocessor, nn.Module):  # build from our registry, not mmengine's
            data_preprocessor = MODELS.build(
                dict(data_preprocessor or dict(type='MonoDETRDataPreprocessor')))
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if depth_mode not in ('monodetr', 'monodgp'):
            raise ValueError(f"depth_mode must be 'monodetr' or 'monodgp', got {depth_mode!r}")
        if num_feature_levels < 3:
            raise ValueError(f'MonoDETR needs at least 3 feature levels, got {num_feature_levels}')
        self.classes = tuple(classes)
        num_classes = len(self.classes)
        self.num_queries = num_queries
        self.num_groups = num_groups
        self.depth_mode = depth_mode
        self.test_cfg = {'topk': 50, 'score_thr': 0.2, **(test_cfg or {})}

        backbone = dict(backbone or dict(type='ResNet', depth=50, out_indices=(1, 2, 3)))
        backbone.setdefault('frozen_stages', freeze_backbone_stages)
        self.backbone = MODELS.build(backbone)
        channels = list(self.backbone.out_channels)
        if len(channels) != 3:
            raise ValueError(f'MonoDETR backbone must return 3 levels (1/8, 1/16, 1/32), got '
                             f'{len(channels)}')
        if freeze_backbone_norm:
            for m in self.backbone.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.requires_grad_(False)
                    m.eval()
        self.freeze_backbone_norm = freeze_backbone_norm

        proj = [nn.Sequential(nn.Conv2d(c, hidden_dim, 1), nn.GroupNorm(32, hidden_dim))
                for c in channels]
        in_ch = channels[-1]
        for _ in range(num_feature_levels - len(channels)):
            proj.append(nn.Sequential(nn.Conv2d(in_ch, hidden_dim, 3, 2, 1),
                                      nn.GroupNorm(32, hidden_dim)))
            in_ch = hidden_dim
        self.input_proj = nn.ModuleList(proj)
        for p in self.input_proj:
            nn.init.xavier_uniform_(p[0].weight, gain=1)
            nn.init.zeros_(p[0].bias)

        self.depth_predictor = DepthPredictor(hidden_dim, num_depth_bins, depth_min, depth_max,
                                              num_heads=num_heads, d_ffn=256, dropout=dropout)
        self.transformer = DepthAwareTransformer(
            hidden_dim, num_heads, d_ffn, dropout, num_encoder_layers, num_decoder_layers,
            num_feature_levels, enc_points, dec_points)
        self.query_embed = nn.Embedding(num_queries * num_groups, hidden_dim * 2)

        def clones(make) -> nn.ModuleList:
            return nn.ModuleList(make() for _ in range(num_decoder_layers))

        bias = -math.log((1 - 0.01) / 0.01)  # prior probability 0.01 of an object
        self.class_embed = clones(lambda: nn.Linear(hidden_dim, num_classes))
        self.bbox_embed = clones(lambda: MLP(hidden_dim, hidden_dim, 6, 3))
        self.dim_embed_3d = clones(lambda: MLP(hidden_dim, hidden_dim, 3, 2))
        self.angle_embed = clones(lambda: MLP(hidden_dim, hidden_dim, 24, 2))
        self.depth_embed = clones(lambda: MLP(hidden_dim, hidden_dim, 2, 2))
        for head in self.class_embed:
            nn.init.constant_(head.bias, bias)
        # The official code clones one initialised MLP, so all layers share the first's init,
        # whose last bias starts l, r, t, b at sigmoid(-2) (MonoDETR's with_box_refine init).
        for head in self.bbox_embed[1:]:
            head.load_state_dict(self.bbox_embed[0].state_dict())
        for heads in (self.class_embed, self.dim_embed_3d, self.angle_embed, self.depth_embed):
            for head in heads[1:]:
                head.load_state_dict(heads[0].state_dict())
        nn.init.constant_(self.bbox_embed[0].layers[-1].bias[2:], -2.0)

        if mean_size == 'kitti':
            mean_size = [KITTI_MEAN_SIZE[c] for c in self.classes]
        if mean_size is not None:
            mean_size = torch.tensor(mean_size, dtype=torch.float32)
            if mean_size.shape != (num_classes, 3):
                raise ValueError(f'mean_size must be ({num_classes}, 3) (h, w, l), got '
                                 f'{tuple(mean_size.shape)}')
        self.register_buffer('mean_size', mean_size, persistent=False)

        self.criterion = MonoDETRLoss(HungarianMatcher(**(matcher or {})),
                                      depth_min=depth_min, depth_max=depth_max, **(loss or {}))

    def train(self, mode: bool = True) -> MonoDETR:
        super().train(mode)
        if self.freeze_backbone_norm:
            for m in self.backbone.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    # ------------------------------------------------------------------------- network
    def extract_levels(self, images: Tensor) -> list[Tensor]:
        """``(B, 3, H, W)`` -> the projected levels ``(B, C, H / s, W / s)``, s = 8, 16, 32, 64."""
        feats = list(self.backbone(images))
        levels = [proj(f) for proj, f in zip(self.input_proj, feats)]
        for i in range(len(feats), len(self.input_proj)):
            levels.append(self.input_proj[i](feats[-1] if i == len(feats) else levels[-1]))
        return levels

    def forward_layers(self, images: Tensor, focal: Tensor) -> tuple[list[dict], Tensor]:
        """Run the network.

        Args:
            images: ``(B, 3, H, W)`` normalised; focal: ``(B,)`` ``cam2img[0, 0]`` per image.

        Returns:
            per decoder layer a dict of ``logits`` ``(B, N, K)``, ``boxes`` ``(B, N, 6)``,
            ``dims`` ``(B, N, 3)`` (h, w, l), ``depth`` ``(B, N, 2)`` (depth, log-variance),
            ``heading`` ``(B, N, 24)``; and the depth-map logits ``(B, D + 1, H/16, W/16)``.
            ``N`` is ``num_queries * num_groups`` in training, ``num_queries`` otherwise.
        """
        b, _, h_in, _ = images.shape
        levels = self.extract_levels(images)
        pos = [sine_position_embedding(b, f.shape[2], f.shape[3], f.shape[1] // 2, device=f.device)
               for f in levels]
        depth_logits, depth_tokens, depth_map = self.depth_predictor(levels, pos[1])
        memory, shapes = self.transformer.encode(levels, pos)
        groups = self.num_groups if self.training else 1
        query = self.query_embed.weight[:self.num_queries * groups]
        hidden, boxes, dims = self.transformer.decode(memory, shapes, query, depth_tokens, groups,
                                                      self.bbox_embed, self.dim_embed_3d)
        layers = []
        for lid in range(hidden.shape[0]):
            hs, box = hidden[lid], boxes[lid]
            logits = self.class_embed[lid](hs)
            size = dims[lid]
            if self.mean_size is not None:
                size = size + self.mean_size[logits.detach().argmax(-1)]
            depth_geo = geometric_depth(size[..., 0], box[..., 4] + box[..., 5], h_in,
                                        focal[:, None])
            reg = self.depth_embed[lid](hs)
            if self.depth_mode == 'monodgp':
                depth = depth_geo + reg[..., 0]
            else:
                # The depth map at the query's projected centre (align_corners=True, as official).
                grid = (box[..., :2].detach() - 0.5) * 2
                sampled = F.grid_sample(depth_map.unsqueeze(1), grid.unsqueeze(2),
                                        mode='bilinear', align_corners=True)[:, 0, :, 0]
                direct = 1.0 / (reg[..., 0].sigmoid() + 1e-6) - 1.0
                depth = (direct + depth_geo + sampled) / 3
            layers.append({'logits': logits, 'boxes': box, 'dims': size,
                           'depth': torch.stack([depth, reg[..., 1]], dim=-1),
                           'heading': self.angle_embed[lid](hs)})
        return layers, depth_logits

    def _focal(self, samples: Sequence[Any] | None, b: int, device: torch.device) -> Tensor:
        if samples is None:
            raise ValueError('MonoDETR needs data samples with cam2img')
        if len(samples) != b:
            raise ValueError(f'{b} images but {len(samples)} data samples')
        return torch.stack([cam2img_of(s, device)[0, 0] for s in samples])

    def forward(self, inputs: Tensor, data_samples: Sequence[Any] | None = None,
                mode: str = 'tensor') -> Any:
        if inputs.dim() != 4 or inputs.shape[1] != 3:
            raise ValueError(f'MonoDETR expects (B, 3, H, W) inputs, got {tuple(inputs.shape)}')
        focal = self._focal(data_samples, inputs.shape[0], inputs.device)
        layers, depth_logits = self.forward_layers(inputs, focal)
        if mode == 'tensor':
            return {'layers': layers, 'depth_logits': depth_logits}
        if mode == 'loss':
            targets = build_targets(data_samples, tuple(inputs.shape[-2:]),
                                    tuple(depth_logits.shape[-2:]), inputs.device)
            groups = self.num_groups if self.training else 1
            return self.criterion(layers, depth_logits, targets, groups)
        if mode == 'predict':
            return self.predict(layers[-1], data_samples, tuple(inputs.shape[-2:]))
        raise ValueError(f"mode must be 'tensor', 'loss' or 'predict', got {mode!r}")

    # ------------------------------------------------------------------------- decoding
    def predict(self, out: Mapping[str, Tensor], samples: Sequence[Any],
                input_hw: tuple[int, int]) -> Sequence[Any]:
        """Decode the last layer into each sample (see the module docstring)."""
        for i, sample in enumerate(samples):
            single = {k: v[i] for k, v in out.items()}
            det = decode_queries(single, cam2img_of(sample, out['logits'].device), input_hw,
                                 self.test_cfg['topk'], self.test_cfg['score_thr'])
            det = undo_image_transform(det, sample.metainfo)
            boxes = CameraBoxes3D(det['boxes_3d'].detach().cpu())
            scores, labels = det['scores'].detach().cpu(), det['labels'].detach().cpu()
            bboxes = det['bboxes'].detach().cpu()
            sample.pred_instances_3d = InstanceData(bboxes_3d=boxes, scores_3d=scores,
                                                    labels_3d=labels)
            sample.pred_instances = InstanceData(bboxes=bboxes, scores=scores, labels=labels)
            names = [self.classes[int(k)] for k in labels]
            sample.pred_annos = annos_from_camera_boxes(boxes.tensor, bboxes, scores, names)
        return samples


def decode_queries(out: Mapping[str, Tensor], cam2img: Tensor, input_hw: tuple[int, int],
                   topk: int = 50, score_thr: float = 0.0) -> dict[str, Tensor]:
    """Top-k (query, class) pairs of one image -> boxes in the frame of ``cam2img``.

    Args:
        out: one image's ``logits`` ``(N, K)``, ``boxes`` ``(N, 6)``, ``dims`` ``(N, 3)``,
            ``depth`` ``(N, 2)``, ``heading`` ``(N, 24)``.
        cam2img: ``(3, 4)`` projection of the network input.
        input_hw: the network input's ``(H, W)`` (the normalisation of ``boxes``).

    Returns:
        ``boxes_3d`` ``(M, 7)`` camera boxes ``[x, y, z, l, h, w, ry]`` (bottom centre),
        ``bboxes`` ``(M, 4)`` 2D boxes in input pixels, ``scores`` ``(M,)`` (class probability x
        ``exp(-log_variance)``, the official score), ``labels`` ``(M,)``, ``alpha`` ``(M,)``.
    """
    h_in, w_in = input_hw
    prob = out['logits'].sigmoid()
    n, k = prob.shape
    values, index = prob.flatten().topk(min(topk, n * k))
    query, labels = index // k, index % k
    box = out['boxes'][query]
    scale = box.new_tensor([w_in, h_in, w_in, h_in])
    bboxes = cxcylrtb_to_xyxy(box) * scale
    depth = out['depth'][query, 0]
    scores = values * torch.exp(-out['depth'][query, 1])
    dims = out['dims'][query]  # (h, w, l)
    centre = backproject(box[:, :2] * scale[:2], depth, cam2img)
    bottom = centre + torch.stack([torch.zeros_like(depth), dims[:, 0] / 2,
                                   torch.zeros_like(depth)], dim=1)
    alpha = decode_heading(out['heading'][query])
    ry = limit_period(alpha + ray_angle((bboxes[:, 0] + bboxes[:, 2]) / 2, cam2img))
    boxes_3d = torch.cat([bottom, dims[:, [2, 0, 1]], ry[:, None]], dim=1)
    keep = scores >= score_thr
    return {'boxes_3d': boxes_3d[keep], 'bboxes': bboxes[keep], 'scores': scores[keep],
            'labels': labels[keep], 'alpha': alpha[keep]}


def undo_image_transform(det: dict[str, Tensor], meta: Mapping[str, Any]) -> dict[str, Tensor]:
    """Map detections from the network input back to the original image and camera.

    The pipeline's order is assumed: horizontal flip of the loaded image (``flip``), then the
    scale / crop affine (``img_affine``, else ``diag(scale_factor)``). 3D boxes decoded with the
    transformed ``cam2img = A F P2 G`` lie in the mirrored camera frame when flipped, so they are
    mirrored back (``x -> -x``, ``ry -> pi - ry``); scale and crop need nothing in 3D. 2D boxes go
    through ``A^-1``, then the flip, and are clipped to ``ori_shape``.
    """
    det = dict(det)
    bboxes = det['bboxes']
    if 'img_affine' in meta:
        affine = torch.as_tensor(np.asarray(meta['img_affine'], dtype=np.float32))
    else:
        sx, sy = (meta.get('scale_factor') or (1.0, 1.0))[:2]
        affine = torch.diag(torch.tensor([sx, sy, 1.0], dtype=torch.float32))
    inv = torch.linalg.inv(affine.double()).to(bboxes)
    corners = bboxes.reshape(-1, 2, 2)
    corners = corners @ inv[:2, :2].T + inv[:2, 2]
    bboxes = torch.cat([corners.min(dim=1).values, corners.max(dim=1).values], dim=1)
    ori_h, ori_w = (meta.get('ori_shape') or meta.get('img_shape'))[:2]
    if meta.get('flip', False):
        bboxes = torch.stack([ori_w - bboxes[:, 2], bboxes[:, 1], ori_w - bboxes[:, 0],
                              bboxes[:, 3]], dim=1)
        boxes = det['boxes_3d'].clone()
        boxes[:, 0] = -boxes[:, 0]
        boxes[:, 6] = limit_period(math.pi - boxes[:, 6])
        det['boxes_3d'] = boxes
    limit = bboxes.new_tensor([ori_w, ori_h, ori_w, ori_h])
    det['bboxes'] = torch.minimum(bboxes.clamp(min=0), limit)
    return det


# ----------------------------------------------------------------------------- checkpoints
# Official parameters the official forward never uses (so not built here).
_UNUSED_OFFICIAL = (r'^label_enc\.', r'\.sa_v_proj\.', r'^depthaware_transformer\.decoder\.'
                    r'(query_scale|ref_point_head)\.')
# The decoder holds the detector's box / size heads a second time (the same modules).
_DUPLICATED_OFFICIAL = {r'^depthaware_transformer\.decoder\.bbox_embed\.': 'bbox_embed.',
                        r'^depthaware_transformer\.decoder\.dim_embed\.': 'dim_embed_3d.'}


def convert_official_state_dict(state: Mapping[str, Tensor],
                                classes: Sequence[str] = ('Car', 'Pedestrian', 'Cyclist')
                                ) -> dict[str, Tensor]:
    """Official MonoDETR ``model_state`` (``module.`` already stripped) -> our names.

    * ``backbone.0.body.*`` -> ``backbone.*``; ``FrozenBatchNorm2d`` has no
      ``num_batches_tracked``, so a zero is added for every BatchNorm;
    * ``depthaware_transformer.*`` -> ``transformer.*``;
    * the decoder's copies of ``bbox_embed`` / ``dim_embed`` are dropped (checked equal to the
      detector's), as are the parameters the official forward never uses (``label_enc``,
      ``sa_v_proj``, the decoder's ``query_scale`` / ``ref_point_head``);
    * ``class_embed`` rows are reordered from the official ``(Pedestrian, Car, Cyclist)`` to
      ``classes``.
    """
    unknown = [c for c in classes if c not in OFFICIAL_CLASSES]
    if unknown:
        raise ValueError(f'convert_official_state_dict: classes {unknown} are not among the '
                         f'official {OFFICIAL_CLASSES}')
    order = torch.tensor([OFFICIAL_CLASSES.index(c) for c in classes])
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        if any(re.search(p, key) for p in _UNUSED_OFFICIAL):
            continue
        dup = next((p for p in _DUPLICATED_OFFICIAL if re.search(p, key)), None)
        if dup is not None:
            twin = re.sub(dup, _DUPLICATED_OFFICIAL[dup], key)
            if twin in state and not torch.equal(state[twin], value):
                raise ValueError(f'convert_official_state_dict: {key} differs from {twin}')
            continue
        if key.startswith('backbone.0.body.'):
            new = 'backbone.' + key[len('backbone.0.body.'):]
            out[new] = value
            if new.endswith('.running_var'):
                out[new[:-len('running_var')] + 'num_batches_tracked'] = torch.tensor(0)
            continue
        if key.startswith('depthaware_transformer.'):
            key = 'transformer.' + key[len('depthaware_transformer.'):]
        if re.match(r'^class_embed\.\d+\.(weight|bias)$', key):
            value = value[order]
        out[key] = value
    return out
