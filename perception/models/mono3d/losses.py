"""MonoDETR's loss set: focal classification, 2D box L1 + GIoU, 3D centre, Laplacian depth,
size, heading bins, and the object-level depth-map loss, with auxiliary decoder losses.

Normalisations follow the official ``SetCriterion``: every matched loss is summed and divided by
``num_boxes`` = (number of ground-truth objects in the batch) x (number of query groups).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .coding import NUM_HEADING_BINS, cxcylrtb_to_xyxy, generalized_box_iou, lid_bin_index
from .matcher import HungarianMatcher

# Official loss weights (configs/monodetr.yaml).
DEFAULT_WEIGHTS = {'loss_ce': 2.0, 'loss_bbox': 5.0, 'loss_giou': 2.0, 'loss_center': 10.0,
                   'loss_depth': 1.0, 'loss_dim': 1.0, 'loss_angle': 1.0, 'loss_depth_map': 1.0}


def sigmoid_focal_loss(logits: Tensor, targets: Tensor, num_boxes: float, alpha: float = 0.25,
                       gamma: float = 2.0) -> Tensor:
    """RetinaNet focal loss on every logit, summed and divided by ``num_boxes``.

    ``logits``, ``targets`` (one-hot, 0/1): ``(B, Q, K)``. Equals the official
    ``sigmoid_focal_loss(...) * Q`` (mean over queries times ``Q``).
    """
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction='none')
    p_t = prob * targets + (1 - prob) * (1 - targets)
    alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
    return (alpha_t * ce * (1 - p_t) ** gamma).sum() / num_boxes


def box_masks(boxes: Tensor, height: int, width: int) -> Tensor:
    """Which cells of an ``height x width`` grid each box covers after flooring the top-left and
    ceiling the bottom-right corner (``x1 <= col < x2``). ``boxes`` ``(N, 4)`` in cell units ->
    ``(N, H, W)`` bool."""
    x1, y1 = boxes[:, 0].floor(), boxes[:, 1].floor()
    x2, y2 = boxes[:, 2].ceil(), boxes[:, 3].ceil()
    cols = torch.arange(width, device=boxes.device, dtype=boxes.dtype)
    rows = torch.arange(height, device=boxes.device, dtype=boxes.dtype)
    in_x = (cols[None] >= x1[:, None]) & (cols[None] < x2[:, None])  # (N, W)
    in_y = (rows[None] >= y1[:, None]) & (rows[None] < y2[:, None])  # (N, H)
    return in_y[:, :, None] & in_x[:, None, :]


def object_depth_target(boxes: Tensor, depths: Tensor, height: int, width: int) -> Tensor:
    """Object-level dense depth label: each 2D box filled with its object's depth, the nearest
    object winning where boxes overlap (the official fills far-to-near); 0 elsewhere.

    ``boxes`` ``(N, 4)`` xyxy in map cells, ``depths`` ``(N,)`` -> ``(H, W)``.
    """
    if len(boxes) == 0:
        return boxes.new_zeros(height, width)
    masks = box_masks(boxes, height, width)
    filled = torch.where(masks, depths[:, None, None], torch.full_like(depths[:, None, None],
                                                                       float('inf')))
    nearest = filled.min(dim=0).values
    return torch.where(torch.isinf(nearest), torch.zeros_like(nearest), nearest)


def depth_map_loss(logits: Tensor, boxes: Sequence[Tensor], depths: Sequence[Tensor],
                   depth_min: float = 1e-3, depth_max: float = 60.0, alpha: float = 0.25,
                   gamma: float = 2.0, fg_weight: float = 13.0, bg_weight: float = 1.0) -> Tensor:
    """The official ``DDNLoss``: softmax focal loss of the depth-bin logits against object-level
    labels (see :func:`object_depth_target`; background is the last bin), foreground pixels
    weighted ``fg_weight``, summed and divided by the number of pixels.

    Args:
        logits: ``(B, D + 1, H, W)``.
        boxes: per image ``(N_b, 4)`` xyxy in map cells; depths: per image ``(N_b,)``.
    """
    b, num_classes, h, w = logits.shape
    num_bins = num_classes - 1
    targets, fg = [], []
    for box, depth in zip(boxes, depths):
        targets.append(object_depth_target(box, depth, h, w))
        fg.append(box_masks(box, h, w).any(dim=0) if len(box) else
                  torch.zeros(h, w, dtype=torch.bool, device=logits.device))
    target = lid_bin_index(torch.stack(targets), depth_min, depth_max, num_bins)
    fg_mask = torch.stack(fg)
    log_p = F.log_softmax(logits, dim=1)
    focal = -alpha * (1 - log_p.exp()) ** gamma * log_p  # (B, D+1, H, W)
    # The official one-hot adds 1e-6 to every class (kornia's ``one_hot(eps=1e-6)``).
    one_hot = F.one_hot(target, num_classes).permute(0, 3, 1, 2).to(focal.dtype) + 1e-6
    loss = (one_hot * focal).sum(dim=1)
    weights = torch.where(fg_mask, torch.full_like(loss, fg_weight),
                          torch.full_like(loss, bg_weight))
    return (loss * weights).sum() / loss.numel()


def _zero(outputs: Mapping[str, Tensor]) -> Tensor:
    # Keeps every head in the graph when a batch has no objects.
    return sum(v.sum() for v in outputs.values() if isinstance(v, Tensor)) * 0.0


class MonoDETRLoss:
    """Matching plus the weighted MonoDETR losses for every decoder layer.

    Args:
        matcher: a :class:`HungarianMatcher`.
        weights: loss name -> weight (:data:`DEFAULT_WEIGHTS`).
        focal_alpha: class focal loss alpha (0.25).
        depth_min, depth_max: LID range of the depth map.

    ``__call__(layers, depth_logits, targets, num_groups)``: ``layers`` is a list (first to last
    decoder layer) of dicts with ``logits`` ``(B, N, K)``, ``boxes`` ``(B, N, 6)``, ``dims``
    ``(B, N, 3)`` (h, w, l), ``depth`` ``(B, N, 2)`` (depth, log-variance), ``heading``
    ``(B, N, 24)``; ``targets`` per image: ``labels``, ``boxes_3d`` ``(M, 6)``, ``depth`` ``(M,)``,
    ``size_3d`` ``(M, 3)``, ``heading_bin``, ``heading_res``, ``boxes_map`` ``(M, 4)`` (2D boxes in
    depth-map cells). Returns weighted losses: the last layer's as ``loss_*``, earlier layers' as
    ``d{i}.loss_*``, and ``loss_depth_map``.
    """

    def __init__(self, matcher: HungarianMatcher | None = None,
                 weights: Mapping[str, float] | None = None, focal_alpha: float = 0.25,
                 depth_min: float = 1e-3, depth_max: float = 60.0) -> None:
        self.matcher = matcher or HungarianMatcher()
        self.weights = dict(DEFAULT_WEIGHTS, **(weights or {}))
        self.focal_alpha = focal_alpha
        self.depth_min = depth_min
        self.depth_max = depth_max

    def __call__(self, layers: Sequence[Mapping[str, Tensor]], depth_logits: Tensor,
                 targets: Sequence[Mapping[str, Tensor]], num_groups: int = 1) -> dict[str, Tensor]:
        num_boxes = max(float(sum(len(t['labels']) for t in targets) * num_groups), 1.0)
        losses: dict[str, Tensor] = {}
        for i, out in enumerate(layers):
            indices = self.matcher(out['logits'], out['boxes'], list(targets), num_groups)
            prefix = '' if i == len(layers) - 1 else f'd{i}.'
            for name, value in self.layer_losses(out, targets, indices, num_boxes).items():
                losses[prefix + name] = value * self.weights[name]
        boxes = [t['boxes_map'] for t in targets]
        depths = [t['depth'] for t in targets]
        losses['loss_depth_map'] = self.weights['loss_depth_map'] * depth_map_loss(
            depth_logits, boxes, depths, self.depth_min, self.depth_max)
        return losses

    def layer_losses(self, out: Mapping[str, Tensor], targets: Sequence[Mapping[str, Tensor]],
                     indices: list[tuple[Tensor, Tensor]], num_boxes: float) -> dict[str, Tensor]:
        """Unweighted losses of one decoder layer given the matching."""
        logits = out['logits']
        device = logits.device
        batch_idx = torch.cat([torch.full_like(src, i) for i, (src, _) in enumerate(indices)])
        src_idx = torch.cat([src for src, _ in indices])
        batch_idx, src_idx = batch_idx.to(device), src_idx.to(device)

        def matched(key: str) -> Tensor:
            return torch.cat([t[key][j.to(device)] for t, (_, j) in zip(targets, indices)])

        labels = matched('labels').long()
        onehot = torch.zeros_like(logits)
        onehot[batch_idx, src_idx, labels] = 1.0
        losses = {'loss_ce': sigmoid_focal_loss(logits, onehot, num_boxes, self.focal_alpha)}
        if len(src_idx) == 0:
            zero = _zero(out)
            losses.update({k: zero for k in ('loss_center', 'loss_bbox', 'loss_giou',
                                             'loss_depth', 'loss_dim', 'loss_angle')})
            return losses

        boxes = out['boxes'][batch_idx, src_idx]
        gt_boxes = matched('boxes_3d')
        l1 = (boxes - gt_boxes).abs()
        losses['loss_center'] = l1[:, :2].sum() / num_boxes
        losses['loss_bbox'] = l1[:, 2:].sum() / num_boxes
        giou = torch.diag(generalized_box_iou(cxcylrtb_to_xyxy(boxes), cxcylrtb_to_xyxy(gt_boxes)))
        losses['loss_giou'] = (1 - giou).sum() / num_boxes

        depth = out['depth'][batch_idx, src_idx]
        gt_depth = matched('depth')
        # Laplacian aleatoric uncertainty: sqrt(2) exp(-s) |d - d*| + s, s = log-variance.
        losses['loss_depth'] = (1.4142 * torch.exp(-depth[:, 1]) * (depth[:, 0] - gt_depth).abs()
                                + depth[:, 1]).sum() / num_boxes

        dims = out['dims'][batch_idx, src_idx]
        gt_dims = matched('size_3d')
        dim_loss = (dims - gt_dims).abs() / gt_dims
        with torch.no_grad():  # rescale the relative error to the absolute L1's magnitude
            compensation = F.l1_loss(dims, gt_dims) / dim_loss.mean()
        losses['loss_dim'] = (dim_loss * compensation).sum() / num_boxes

        heading = out['heading'][batch_idx, src_idx]
        gt_bin, gt_res = matched('heading_bin').long(), matched('heading_res')
        cls_loss = F.cross_entropy(heading[:, :NUM_HEADING_BINS], gt_bin, reduction='none')
        res = heading[:, NUM_HEADING_BINS:].gather(1, gt_bin[:, None]).squeeze(1)
        losses['loss_angle'] = (cls_loss + (res - gt_res).abs()).sum() / num_boxes
        return losses
