"""CenterPoint's head (Yin, Zhou and Krähenbühl, "Center-based 3D Object Detection and Tracking",
CVPR 2021), with the numerics of mmdetection3d's ``CenterHead`` and ``CenterPointBBoxCoder``.

Objects are points: a class heatmap peaks at each box centre in the bird's-eye view, and at the
peak cell separate heads regress the sub-cell offset (2), the gravity-centre height (1), the log
sizes ``(l, w, h)`` (3), ``(sin yaw, cos yaw)`` (2) and, for nuScenes, the velocity (2). Classes are
split into tasks (one heatmap head per group of similar classes); a shared 3x3 conv feeds them.

Geometry: BEV cell ``(i, j)`` of the head's ``(H, W)`` map covers
``x in pcr[0] + [j, j + 1) * vx * out_size_factor`` (y likewise with ``i``).

* Targets (per frame and task, vectorised over boxes): the centre in map cells
  ``c = (xy - pcr[:2]) / voxel_size / out_size_factor`` (float32), its truncation ``c_int`` (the
  peak cell), a Gaussian of radius ``max(min_radius, int(gaussian_radius(w, l, overlap)))``
  cells (CornerNet's radius; sigma = (2r + 1) / 6; values below float64 eps of the peak are 0)
  drawn with a max into the class's heatmap, and the regression row
  ``[c - c_int, z_gravity, log(l, w, h), sin yaw, cos yaw(, vx, vy)]`` at index ``k`` of the box
  (boxes ordered by class within the task, the first ``max_objs`` kept).
* Losses: Gaussian focal loss (alpha 2, gamma 4, mmdet's form) on ``clamp(sigmoid, 1e-4, 1 - 1e-4)``
  averaged by the number of cells equal to 1; L1 on the gathered regressions times
  ``code_weights``, averaged by ``num_boxes + 1e-4``, weight 0.25 (mmdetection3d's config).
* Decoding: sigmoid heatmap (optionally kept only at 3x3 local maxima, CenterPoint's max-pool NMS),
  top-K over classes and cells, ``xy = (cell + offset) * out_size_factor * voxel_size + pcr[:2]``,
  ``yaw = atan2(sin, cos)``, sizes ``exp``; boxes with score > ``score_threshold`` and centre in
  ``post_center_limit_range`` go to rotated NMS per class (``nms_type='rotate'``) or to
  CenterPoint's circle NMS (``'circle'``, nuScenes). Boxes come out as LiDAR
  ``[x, y, z, l, w, h, yaw(, vx, vy)]`` with the bottom centre (``z = z_gravity - h / 2``).

Yaw encodings (``yaw_encoding``):

* ``'sincos'`` (CenterPoint, the default): ``rot`` regresses ``(sin yaw, cos yaw)``.
* ``'axis_direction'``: ``rot`` regresses ``(sin 2 yaw, cos 2 yaw)``, the box's axis, which does
  not change when the box is turned by pi, and a ``dir`` branch (1 channel) classifies which end
  is the front, SECOND's direction classifier (Yan et al., Sensors 2018):
  ``dir = floor(((yaw - dir_offset) mod 2 pi) / pi)``, binary cross-entropy, weight
  ``loss_dir_weight``. Decoding: ``axis = atan2(sin 2 yaw, cos 2 yaw) / 2``,
  ``yaw = ((axis - dir_offset) mod pi) + dir_offset + pi * dir``. Why: where the front and the
  back of an object look alike, the ``(sin, cos)`` targets of the two readings are opposite
  vectors; the L1 regression then averages them towards 0 and ``atan2`` of what is left is noise,
  although the box (which the 3D IoU sees modulo pi) was clear.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...registry import MODELS
from ...structures import limit_period
from ..ops.nms import batched_nms_bev, circle_nms
from ..ops.voxelize import grid_size

__all__ = ['CenterHead', 'SeparateHead', 'center_targets', 'decode_task', 'direction_bin',
           'draw_gaussians', 'gaussian_focal_loss', 'gaussian_radius', 'yaw_from_axis_direction']

_FLOAT32_EPS = torch.finfo(torch.float32).eps  # mmdet's weight_reduce_loss adds it to avg_factor


# ------------------------------------------------------------------------------------ targets
def gaussian_radius(height: Tensor, width: Tensor, min_overlap: float = 0.5) -> Tensor:
    """CornerNet's Gaussian radius (the three corner-shift cases; the smallest wins).

    Args:
        height, width: (N,) box extents in heatmap cells.
        min_overlap: IoU a box shifted by the radius keeps with the original.

    Returns:
        (N,) radii (float).
    """
    b1 = height + width
    c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + torch.sqrt(b1 ** 2 - 4 * c1)) / 2
    b2 = 2 * (height + width)
    c2 = (1 - min_overlap) * width * height
    r2 = (b2 + torch.sqrt(b2 ** 2 - 16 * c2)) / 2
    a3 = 4 * min_overlap
    b3 = -2 * min_overlap * (height + width)
    c3 = (min_overlap - 1) * width * height
    r3 = (b3 + torch.sqrt(b3 ** 2 - 4 * a3 * c3)) / 2
    return torch.minimum(torch.minimum(r1, r2), r3)


def draw_gaussians(heatmap: Tensor, centers: Tensor, radii: Tensor, labels: Tensor) -> Tensor:
    """Draw one Gaussian per box into a class heatmap, keeping the max where they overlap.

    As mmdetection3d's ``draw_heatmap_gaussian`` applied box after box, for all boxes at once:
    a ``(2r + 1)^2`` window, ``exp(-(dx^2 + dy^2) / (2 sigma^2))`` with ``sigma = (2r + 1) / 6``,
    values below float64 eps (of the peak 1) set to 0, clipped to the map.

    Args:
        heatmap: (C, H, W) float map (not modified).
        centers: (N, 2) int64 ``(x, y)`` peak cells, inside the map.
        radii: (N,) int64 radii in cells.
        labels: (N,) int64 class channel of each box.

    Returns:
        (C, H, W) the maximum of ``heatmap`` and the Gaussians.
    """
    num_classes, height, width = heatmap.shape
    out = heatmap.clone()
    if len(centers) == 0:
        return out
    r_max = int(radii.max())
    offsets = torch.arange(-r_max, r_max + 1, device=heatmap.device)
    dy, dx = torch.meshgrid(offsets, offsets, indexing='ij')  # (D, D)
    r = radii.view(-1, 1, 1)
    sigma = (2 * r + 1).to(torch.float64) / 6
    values = torch.exp(-(dx ** 2 + dy ** 2).to(torch.float64) / (2 * sigma ** 2))
    values = torch.where(values < torch.finfo(torch.float64).eps, 0.0, values)
    xs = centers[:, 0].view(-1, 1, 1) + dx
    ys = centers[:, 1].view(-1, 1, 1) + dy
    valid = ((dx.abs() <= r) & (dy.abs() <= r) & (xs >= 0) & (xs < width) & (ys >= 0)
             & (ys < height))
    flat = (labels.view(-1, 1, 1) * height + ys) * width + xs
    out.view(-1).scatter_reduce_(0, flat[valid], values[valid].to(heatmap.dtype), reduce='amax',
                                 include_self=True)
    return out


def center_targets(boxes: Tensor, labels: Tensor, num_classes: int, feature_size: Sequence[int],
                   voxel_size: Sequence[float], point_cloud_range: Sequence[float],
                   out_size_factor: int, max_objs: int = 500, gaussian_overlap: float = 0.1,
                   min_radius: int = 2, norm_bbox: bool = True,
                   with_velocity: bool = False, yaw_encoding: str = 'sincos',
                   dir_offset: float = 0.0) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """CenterPoint targets of one frame and one task.

    Args:
        boxes: (N, 7 or 9) LiDAR boxes ``[x, y, z_gravity, l, w, h, yaw(, vx, vy)]`` (gravity
            centre height), ordered as the regression rows should be.
        labels: (N,) class index within the task.
        num_classes: classes of the task.
        feature_size: ``(W, H)`` of the head's map.
        voxel_size: ``(vx, vy[, vz])``.
        point_cloud_range: ``(x0, y0, ...)``.
        out_size_factor: voxel cells per map cell.
        max_objs: regression rows (boxes past it are ignored).
        gaussian_overlap, min_radius: the Gaussian radius rule.
        norm_bbox: regress log sizes.
        with_velocity: append ``(vx, vy)`` to the rows (boxes must have 9 columns).
        yaw_encoding: ``'sincos'`` or ``'axis_direction'`` (module docstring).
        dir_offset: the direction bins' boundary (``'axis_direction'`` only).

    Returns:
        ``heatmap`` (C, H, W), ``anno_box`` (max_objs, 8 or 10, plus the direction bin 0/1 as a
        last column with ``'axis_direction'``), ``ind`` (max_objs,) int64 flat cell
        ``y * W + x``, ``mask`` (max_objs,) uint8 (1 where a row holds a box).
    """
    _check_yaw_encoding(yaw_encoding)
    axis_direction = yaw_encoding == 'axis_direction'
    width, height = int(feature_size[0]), int(feature_size[1])
    code_size = (10 if with_velocity else 8) + int(axis_direction)
    device = boxes.device
    boxes = boxes[:max_objs].to(torch.float32)
    labels = labels[:max_objs].to(torch.int64)
    n = len(boxes)
    if with_velocity and boxes.shape[1] < 9:
        raise ValueError(f'center_targets: with_velocity needs (N, 9) boxes, got '
                         f'{tuple(boxes.shape)}')
    vsize = torch.tensor([float(v) for v in voxel_size[:2]], dtype=torch.float32, device=device)
    low = torch.tensor([float(v) for v in point_cloud_range[:2]], dtype=torch.float32,
                       device=device)
    extent = boxes[:, 3:5] / vsize / out_size_factor  # (l, w) in map cells
    center = (boxes[:, :2] - low) / vsize / out_size_factor
    center_int = center.to(torch.int64)  # truncation toward zero, as mmdetection3d's int cast
    radius = gaussian_radius(extent[:, 1], extent[:, 0], gaussian_overlap)
    radius = torch.clamp(radius.to(torch.int64), min=int(min_radius))
    valid = ((extent > 0).all(dim=1) & (center_int[:, 0] >= 0) & (center_int[:, 0] < width)
             & (center_int[:, 1] >= 0) & (center_int[:, 1] < height))
    heatmap = draw_gaussians(boxes.new_zeros((num_classes, height, width)), center_int[valid],
                             radius[valid], labels[valid])
    dims = boxes[:, 3:6].log() if norm_bbox else boxes[:, 3:6]
    yaw = boxes[:, 6:7]
    angle = 2 * yaw if axis_direction else yaw
    parts = [center - center_int, boxes[:, 2:3], dims, torch.sin(angle), torch.cos(angle)]
    if with_velocity:
        parts.append(boxes[:, 7:9])
    if axis_direction:
        parts.append(direction_bin(yaw, dir_offset))
    rows = torch.cat(parts, dim=1) if n else boxes.new_zeros((0, code_size))
    anno_box = boxes.new_zeros((max_objs, code_size))
    anno_box[:n] = torch.where(valid[:, None], rows, rows.new_zeros(()))
    ind = torch.zeros(max_objs, dtype=torch.int64, device=device)
    ind[:n] = torch.where(valid, center_int[:, 1] * width + center_int[:, 0], 0)
    mask = torch.zeros(max_objs, dtype=torch.uint8, device=device)
    mask[:n] = valid.to(torch.uint8)
    return heatmap, anno_box, ind, mask


def _check_yaw_encoding(yaw_encoding: str) -> None:
    if yaw_encoding not in ('sincos', 'axis_direction'):
        raise ValueError(f"yaw_encoding must be 'sincos' or 'axis_direction', got "
                         f'{yaw_encoding!r}')


def direction_bin(yaw: Tensor, dir_offset: float = 0.0) -> Tensor:
    """SECOND's direction bin of ``yaw`` (any shape): ``floor(((yaw - off) mod 2 pi) / pi)``,
    0 or 1, as ``yaw``'s dtype."""
    return torch.floor(limit_period(yaw - dir_offset, 0.0, 2 * math.pi) / math.pi).clamp(0, 1)


def yaw_from_axis_direction(sin2: Tensor, cos2: Tensor, second_bin: Tensor,
                            dir_offset: float = 0.0) -> Tensor:
    """Yaw in ``[-pi, pi)`` from the axis ``(sin 2 yaw, cos 2 yaw)`` and the direction bin
    (``second_bin``: bool, True for bin 1), all of one shape; inverts :func:`direction_bin`."""
    axis = 0.5 * torch.atan2(sin2, cos2)
    return limit_period(limit_period(axis - dir_offset, 0.0, math.pi) + dir_offset
                        + math.pi * second_bin.to(axis.dtype))


# ------------------------------------------------------------------------------------ losses
def gaussian_focal_loss(pred: Tensor, target: Tensor, alpha: float = 2.0,
                        gamma: float = 4.0) -> Tensor:
    """Element-wise Gaussian focal loss (CornerNet / mmdet's ``gaussian_focal_loss``).

    ``-log(p) (1 - p)^alpha`` where the target is exactly 1, ``-log(1 - p) p^alpha (1 - t)^gamma``
    elsewhere (eps 1e-12 inside the logs).

    Args:
        pred: probabilities, any shape.
        target: Gaussian targets in [0, 1], same shape.
    """
    eps = 1e-12
    pos = target.eq(1).to(pred.dtype)
    neg_weights = (1 - target).pow(gamma)
    pos_loss = -(pred + eps).log() * (1 - pred).pow(alpha) * pos
    neg_loss = -(1 - pred + eps).log() * pred.pow(alpha) * neg_weights
    return pos_loss + neg_loss


def _gather_cells(feat: Tensor, ind: Tensor) -> Tensor:
    """(B, C, H, W) map, (B, K) flat cells -> (B, K, C)."""
    flat = feat.flatten(2)  # (B, C, H*W)
    return flat.gather(2, ind[:, None, :].expand(-1, flat.shape[1], -1)).transpose(1, 2)


# ------------------------------------------------------------------------------------ decoding
def decode_task(preds: Mapping[str, Tensor], voxel_size: Sequence[float],
                point_cloud_range: Sequence[float], out_size_factor: int, max_num: int = 500,
                score_threshold: float | None = 0.1,
                post_center_range: Sequence[float] | None = None, norm_bbox: bool = True,
                max_pool_nms: bool = False, yaw_encoding: str = 'sincos',
                dir_offset: float = 0.0) -> list[dict[str, Tensor]]:
    """Top-K boxes of one task's raw outputs (mmdetection3d's ``CenterPointBBoxCoder.decode``).

    Args:
        preds: ``heatmap`` (B, C, H, W) logits, ``reg`` (B, 2, H, W), ``height`` (B, 1, H, W),
            ``dim`` (B, 3, H, W), ``rot`` (B, 2, H, W) (sin, cos of yaw, or of 2 yaw with
            ``'axis_direction'``, which also needs the ``dir`` logits (B, 1, H, W)), optionally
            ``vel``.
        voxel_size, point_cloud_range, out_size_factor: the map's geometry.
        max_num: K.
        score_threshold: keep scores strictly above it (None: all).
        post_center_range: ``(x0, y0, z0, x1, y1, z1)`` the gravity centre must lie in
            (inclusive).
        norm_bbox: the ``dim`` head regresses log sizes.
        max_pool_nms: keep only 3x3 local maxima of the heatmap (CenterPoint).
        yaw_encoding, dir_offset: see the module docstring.

    Returns:
        per frame ``bboxes`` (M, 7 or 9) ``[x, y, z_gravity, l, w, h, yaw(, vx, vy)]``,
        ``scores`` (M,), ``labels`` (M,) int64 class within the task, sorted by score.
    """
    heat = preds['heatmap'].sigmoid()
    if max_pool_nms:
        heat = heat * (F.max_pool2d(heat, 3, stride=1, padding=1) == heat)
    batch, num_classes, height, width = heat.shape
    k = min(int(max_num), num_classes * height * width)
    scores, flat = torch.topk(heat.reshape(batch, -1), k)  # (B, K)
    labels = torch.div(flat, height * width, rounding_mode='floor')
    cells = flat - labels * height * width
    ys = torch.div(cells, width, rounding_mode='floor')
    xs = cells - ys * width
    reg = _gather_cells(preds['reg'], cells)
    x = (xs.to(heat.dtype) + reg[..., 0]) * out_size_factor * voxel_size[0] + point_cloud_range[0]
    y = (ys.to(heat.dtype) + reg[..., 1]) * out_size_factor * voxel_size[1] + point_cloud_range[1]
    z = _gather_cells(preds['height'], cells)[..., 0]
    dims = _gather_cells(preds['dim'], cells)
    dims = dims.exp() if norm_bbox else dims
    rot = _gather_cells(preds['rot'], cells)
    _check_yaw_encoding(yaw_encoding)
    if yaw_encoding == 'axis_direction':
        second_bin = _gather_cells(preds['dir'], cells)[..., 0] > 0
        yaw = yaw_from_axis_direction(rot[..., 0], rot[..., 1], second_bin, dir_offset)
    else:
        yaw = limit_period(torch.atan2(rot[..., 0], rot[..., 1]))
    parts = [x[..., None], y[..., None], z[..., None], dims, yaw[..., None]]
    if 'vel' in preds:
        parts.append(_gather_cells(preds['vel'], cells))
    boxes = torch.cat(parts, dim=2)  # (B, K, code)
    keep = torch.ones_like(scores, dtype=torch.bool)
    if score_threshold is not None:
        keep &= scores > score_threshold
    if post_center_range is not None:
        pcr = boxes.new_tensor([float(v) for v in post_center_range])
        keep &= ((boxes[..., :3] >= pcr[:3]) & (boxes[..., :3] <= pcr[3:])).all(dim=2)
    # NaN boxes (a diverged network) are never returned.
    keep &= torch.isfinite(boxes).all(dim=2) & torch.isfinite(scores)
    return [{'bboxes': boxes[i][keep[i]], 'scores': scores[i][keep[i]],
             'labels': labels[i][keep[i]]} for i in range(batch)]


# ------------------------------------------------------------------------------------ modules
def _conv_bn_relu(c_in: int, c_out: int, kernel: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class SeparateHead(nn.Module):
    """One small conv branch per regression target (mmdetection3d's ``SeparateHead``).

    Args:
        in_channels: input channels.
        heads: ``name -> (out_channels, num_convs)``; ``num_convs - 1`` conv-BN-ReLU layers of
            ``head_conv`` channels, then a conv with bias.
        head_conv: hidden channels.
        final_kernel: kernel size of every conv.
        init_bias: bias of the ``heatmap`` branch's last conv (-2.19: sigmoid 0.1).
    """

    def __init__(self, in_channels: int, heads: Mapping[str, tuple[int, int]],
                 head_conv: int = 64, final_kernel: int = 3, init_bias: float = -2.19) -> None:
        super().__init__()
        self.heads = dict(heads)
        for name, (channels, num_convs) in self.heads.items():
            layers: list[nn.Module] = []
            c_in = in_channels
            for _ in range(int(num_convs) - 1):
                layers += _conv_bn_relu(c_in, head_conv, final_kernel)
                c_in = head_conv
            layers.append(nn.Conv2d(c_in, int(channels), final_kernel, padding=final_kernel // 2,
                                    bias=True))
            self.add_module(name, nn.Sequential(*layers))
        # mmdetection3d's init_cfg: Kaiming (normal, fan-out) for every conv, heatmap bias -2.19.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode='fan_out', nonlinearity='relu')
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        if 'heatmap' in self.heads:
            nn.init.constant_(getattr(self, 'heatmap')[-1].bias, init_bias)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return {name: getattr(self, name)(x) for name in self.heads}


@MODELS.register_module()
class CenterHead(nn.Module):
    """CenterPoint head: shared conv, one :class:`SeparateHead` per task, targets, losses, decoding.

    Args:
        in_channels: channels of the BEV feature map (the neck's output).
        tasks: ``[dict(num_class=n, class_names=[...]), ...]``; the classes of all tasks in order
            must be the dataset's label order.
        common_heads: regression heads ``name -> (channels, num_convs)``: ``reg (2, 2)``,
            ``height (1, 2)``, ``dim (3, 2)``, ``rot (2, 2)`` and ``vel (2, 2)`` for velocities.
        voxel_size: ``(vx, vy, vz)`` of the voxel grid.
        point_cloud_range: ``(x0, y0, z0, x1, y1, z1)``.
        out_size_factor: voxel cells per head cell.
        share_conv_channel: channels of the shared conv.
        num_heatmap_convs: convs of the heatmap branch.
        head_conv, final_kernel, init_bias: see :class:`SeparateHead`.
        norm_bbox: regress log sizes.
        loss_heatmap_weight: weight of the focal loss (mmdetection3d: 1).
        loss_bbox_weight: weight of the L1 loss (mmdetection3d: 0.25).
        yaw_encoding: ``'sincos'`` (CenterPoint) or ``'axis_direction'`` (axis + SECOND's
            direction classifier, which needs ``common_heads['dir'] = (1, num_convs)``); see the
            module docstring.
        dir_offset: the direction bins' boundary in radians (``'axis_direction'``).
        loss_dir_weight: weight of the direction cross-entropy (SECOND / PointPillars: 0.2).
        focal_alpha, focal_gamma: Gaussian focal loss exponents (2, 4).
        train_cfg: ``max_objs`` (500), ``dense_reg`` (1), ``gaussian_overlap`` (0.1),
            ``min_radius`` (2), ``code_weights`` (ones).
        test_cfg: ``max_per_img`` (K, 500), ``score_threshold`` (0.1), ``post_center_limit_range``,
            ``max_pool_nms`` (False), ``nms_type`` ('rotate' or 'circle'), ``nms_thr`` (0.2),
            ``pre_max_size`` (1000), ``post_max_size`` (83), ``min_radius`` (circle NMS
            thresholds per task).
    """

    def __init__(self, in_channels: int, tasks: Sequence[Mapping[str, Any]],
                 common_heads: Mapping[str, Sequence[int]], voxel_size: Sequence[float],
                 point_cloud_range: Sequence[float], out_size_factor: int,
                 share_conv_channel: int = 64, num_heatmap_convs: int = 2, head_conv: int = 64,
                 final_kernel: int = 3, init_bias: float = -2.19, norm_bbox: bool = True,
                 loss_heatmap_weight: float = 1.0, loss_bbox_weight: float = 0.25,
                 focal_alpha: float = 2.0, focal_gamma: float = 4.0,
                 yaw_encoding: str = 'sincos', dir_offset: float = 0.0,
                 loss_dir_weight: float = 0.2,
                 train_cfg: Mapping[str, Any] | None = None,
                 test_cfg: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.class_names = [list(t['class_names']) for t in tasks]
        self.num_classes = [len(names) for names in self.class_names]
        for task, num in zip(tasks, self.num_classes):
            if task.get('num_class', num) != num:
                raise ValueError(f'CenterHead: task {dict(task)} has num_class '
                                 f'{task["num_class"]} but {num} class names')
        self.voxel_size = [float(v) for v in voxel_size]
        self.point_cloud_range = [float(v) for v in point_cloud_range]
        self.out_size_factor = int(out_size_factor)
        nx, ny, _ = grid_size(self.voxel_size, self.point_cloud_range)
        self.feature_size = (nx // self.out_size_factor, ny // self.out_size_factor)  # (W, H)
        self.common_heads = {k: tuple(int(x) for x in v) for k, v in common_heads.items()}
        missing = {'reg', 'height', 'dim', 'rot'} - set(self.common_heads)
        if missing:
            raise ValueError(f'CenterHead: common_heads lacks {sorted(missing)}')
        _check_yaw_encoding(yaw_encoding)
        self.yaw_encoding = yaw_encoding
        self.dir_offset = float(dir_offset)
        self.loss_dir_weight = float(loss_dir_weight)
        if (yaw_encoding == 'axis_direction') != ('dir' in self.common_heads):
            raise ValueError(f"CenterHead: common_heads needs a 'dir' head (1 channel) exactly "
                             f"when yaw_encoding is 'axis_direction', got yaw_encoding "
                             f"{yaw_encoding!r} and heads {sorted(self.common_heads)}")
        if self.common_heads.get('dir', (1,))[0] != 1:
            raise ValueError(f"CenterHead: the 'dir' head has 1 channel (a logit), got "
                             f"{self.common_heads['dir'][0]}")
        self.with_velocity = 'vel' in self.common_heads
        self.code_size = 10 if self.with_velocity else 8
        self.norm_bbox = norm_bbox
        self.loss_heatmap_weight = float(loss_heatmap_weight)
        self.loss_bbox_weight = float(loss_bbox_weight)
        self.focal_alpha, self.focal_gamma = float(focal_alpha), float(focal_gamma)
        self.train_cfg = dict(train_cfg or {})
        self.test_cfg = dict(test_cfg or {})
        code_weights = self.train_cfg.get('code_weights', [1.0] * self.code_size)
        if len(code_weights) != self.code_size:
            layout = 'offset 2, height 1, dim 3, rot 2' + (', vel 2' if self.with_velocity else '')
            raise ValueError(f'CenterHead: code_weights needs {self.code_size} values '
                             f'({layout}), got {len(code_weights)}')
        self.register_buffer('code_weights', torch.tensor(code_weights, dtype=torch.float32),
                             persistent=False)
        nms_type = self.test_cfg.get('nms_type', 'rotate')
        if nms_type not in ('rotate', 'circle'):
            raise ValueError(f"CenterHead: test_cfg nms_type must be 'rotate' or 'circle', "
                             f'got {nms_type!r}')

        self.shared_conv = nn.Sequential(*_conv_bn_relu(in_channels, share_conv_channel, 3))
        self.task_heads = nn.ModuleList()
        for num in self.num_classes:
            heads = copy.deepcopy(self.common_heads)
            heads['heatmap'] = (num, num_heatmap_convs)
            self.task_heads.append(SeparateHead(share_conv_channel, heads, head_conv, final_kernel,
                                                init_bias))

    # -------------------------------------------------------------------------- forward
    def forward(self, feats: Sequence[Tensor] | Tensor) -> list[dict[str, Tensor]]:
        """BEV features ``[(B, C, H, W)]`` (the neck's list) -> one dict of maps per task."""
        x = feats if isinstance(feats, Tensor) else feats[0]
        x = self.shared_conv(x)
        return [head(x) for head in self.task_heads]

    # -------------------------------------------------------------------------- training
    def get_targets(self, boxes: Sequence[Tensor], labels: Sequence[Tensor]
                    ) -> list[tuple[Tensor, Tensor, Tensor, Tensor]]:
        """Batched targets, one ``(heatmap (B, C, H, W), anno_box (B, M, code), ind (B, M),
        mask (B, M))`` per task.

        Args:
            boxes: per frame (N_i, 7 or 9) LiDAR boxes with the **bottom** centre.
            labels: per frame (N_i,) dataset labels.
        """
        cfg = self.train_cfg
        max_objs = int(cfg.get('max_objs', 500)) * int(cfg.get('dense_reg', 1))
        per_task: list[list[tuple[Tensor, ...]]] = [[] for _ in self.num_classes]
        for frame_boxes, frame_labels in zip(boxes, labels):
            frame_boxes = frame_boxes.clone()
            frame_boxes[:, 2] = frame_boxes[:, 2] + frame_boxes[:, 5] / 2  # gravity centre
            first = 0
            for t, num in enumerate(self.num_classes):
                local = frame_labels.to(torch.int64) - first
                in_task = (local >= 0) & (local < num)
                # Class-major order inside the task, as mmdetection3d concatenates per class.
                idx = in_task.nonzero(as_tuple=True)[0]
                idx = idx[torch.sort(local[idx], stable=True)[1]]
                per_task[t].append(center_targets(
                    frame_boxes[idx], local[idx], num, self.feature_size, self.voxel_size,
                    self.point_cloud_range, self.out_size_factor, max_objs,
                    float(cfg.get('gaussian_overlap', 0.1)), int(cfg.get('min_radius', 2)),
                    self.norm_bbox, self.with_velocity, self.yaw_encoding, self.dir_offset))
                first += num
        return [tuple(torch.stack(parts) for parts in zip(*frames)) for frames in per_task]

    def loss_by_feat(self, preds: Sequence[Mapping[str, Tensor]], boxes: Sequence[Tensor],
                     labels: Sequence[Tensor]) -> dict[str, Tensor]:
        """``task{t}.loss_heatmap`` and ``task{t}.loss_bbox`` for every task.

        Args:
            preds: :meth:`forward` outputs.
            boxes, labels: ground truth per frame (LiDAR boxes, bottom centre; dataset labels).
        """
        targets = self.get_targets(boxes, labels)
        losses = {}
        for t, (pred, (heatmap, anno_box, ind, mask)) in enumerate(zip(preds, targets)):
            prob = torch.clamp(pred['heatmap'].sigmoid(), min=1e-4, max=1 - 1e-4)
            num_pos = max(float(heatmap.eq(1).sum()), 1.0)
            focal = gaussian_focal_loss(prob, heatmap, self.focal_alpha, self.focal_gamma)
            losses[f'task{t}.loss_heatmap'] = (self.loss_heatmap_weight * focal.sum()
                                               / (num_pos + _FLOAT32_EPS))
            names = ['reg', 'height', 'dim', 'rot'] + (['vel'] if self.with_velocity else [])
            box_pred = _gather_cells(torch.cat([pred[n] for n in names], dim=1), ind)
            box_mask = mask.to(box_pred.dtype)
            num = box_mask.sum()
            if self.yaw_encoding == 'axis_direction':
                dir_target = anno_box[..., self.code_size]
                anno_box = anno_box[..., :self.code_size]
                dir_logit = _gather_cells(pred['dir'], ind)[..., 0]
                dir_loss = F.binary_cross_entropy_with_logits(dir_logit, dir_target,
                                                              reduction='none')
                losses[f'task{t}.loss_dir'] = (self.loss_dir_weight * (dir_loss * box_mask).sum()
                                               / (num + 1e-4))
            weights = (box_mask[..., None] * ~torch.isnan(anno_box)
                       * self.code_weights.to(box_pred.dtype))
            diff = torch.where(weights > 0, (box_pred - anno_box).abs(), box_pred.new_zeros(()))
            losses[f'task{t}.loss_bbox'] = (self.loss_bbox_weight * (diff * weights).sum()
                                            / (num + 1e-4 + _FLOAT32_EPS))
        return losses

    # -------------------------------------------------------------------------- inference
    def predict_by_feat(self, preds: Sequence[Mapping[str, Tensor]]) -> list[dict[str, Tensor]]:
        """Decoded, NMS-filtered detections per frame.

        Returns:
            per frame ``bboxes`` (M, 7 or 9) LiDAR ``[x, y, z, l, w, h, yaw(, vx, vy)]`` with the
            bottom centre, ``scores`` (M,), ``labels`` (M,) int64 dataset labels.
        """
        cfg = self.test_cfg
        nms_type = cfg.get('nms_type', 'rotate')
        post_range = cfg.get('post_center_limit_range')
        per_task = []
        for t, pred in enumerate(preds):
            decoded = decode_task(pred, self.voxel_size, self.point_cloud_range,
                                  self.out_size_factor, int(cfg.get('max_per_img', 500)),
                                  cfg.get('score_threshold', 0.1), post_range, self.norm_bbox,
                                  bool(cfg.get('max_pool_nms', False)), self.yaw_encoding,
                                  self.dir_offset)
            kept = []
            for det in decoded:
                if nms_type == 'circle':
                    radius = cfg.get('min_radius', [1.0] * len(self.num_classes))[t]
                    keep = circle_nms(det['bboxes'][:, :2], det['scores'], float(radius),
                                      post_max=cfg.get('post_max_size', 83))
                else:
                    bev = det['bboxes'][:, [0, 1, 3, 4, 6]]
                    keep = batched_nms_bev(bev, det['scores'], det['labels'],
                                           float(cfg.get('nms_thr', 0.2)),
                                           pre_max=cfg.get('pre_max_size', 1000),
                                           post_max=cfg.get('post_max_size', 83))
                kept.append({key: value[keep] for key, value in det.items()})
            per_task.append(kept)
        results = []
        for i in range(len(per_task[0]) if per_task else 0):
            offsets = torch.cumsum(torch.tensor([0] + self.num_classes[:-1]), 0).tolist()
            bboxes = torch.cat([task[i]['bboxes'] for task in per_task])
            bboxes = torch.cat([bboxes[:, :2], bboxes[:, 2:3] - bboxes[:, 5:6] / 2, bboxes[:, 3:]],
                               dim=1)  # gravity centre -> bottom centre
            results.append({
                'bboxes': bboxes,
                'scores': torch.cat([task[i]['scores'] for task in per_task]),
                'labels': torch.cat([task[i]['labels'] + off
                                     for task, off in zip(per_task, offsets)]),
            })
        return results
