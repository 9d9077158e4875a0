"""Hungarian matching of MonoDETR queries to ground truth, one assignment per query group."""
from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from .coding import cxcylrtb_to_xyxy, generalized_box_iou


def focal_class_cost(logits: Tensor, labels: Tensor, alpha: float = 0.25,
                     gamma: float = 2.0) -> Tensor:
    """Deformable-DETR's focal matching cost: positive minus negative focal term of the target
    class. ``logits`` ``(N, K)``, ``labels`` ``(M,)`` -> ``(N, M)``."""
    prob = logits.sigmoid()
    neg = (1 - alpha) * prob ** gamma * -(1 - prob + 1e-8).log()
    pos = alpha * (1 - prob) ** gamma * -(prob + 1e-8).log()
    return pos[:, labels] - neg[:, labels]


def matching_cost(logits: Tensor, boxes: Tensor, gt_labels: Tensor, gt_boxes: Tensor,
                  cost_class: float = 2.0, cost_bbox: float = 5.0, cost_giou: float = 2.0,
                  cost_center: float = 10.0) -> Tensor:
    """Cost matrix ``(N, M)`` between ``N`` predictions and ``M`` targets.

    Args:
        logits: ``(N, K)`` class logits; boxes: ``(N, 6)`` ``(x, y, l, r, t, b)`` normalised.
        gt_labels: ``(M,)``; gt_boxes: ``(M, 6)``.

    ``cost = class * focal + center * L1(x, y) + bbox * L1(l, r, t, b) + giou * (-GIoU)``.
    """
    cost = cost_class * focal_class_cost(logits, gt_labels)
    cost = cost + cost_center * torch.cdist(boxes[:, :2], gt_boxes[:, :2], p=1)
    cost = cost + cost_bbox * torch.cdist(boxes[:, 2:], gt_boxes[:, 2:], p=1)
    giou = generalized_box_iou(cxcylrtb_to_xyxy(boxes), cxcylrtb_to_xyxy(gt_boxes))
    return cost - cost_giou * giou


class HungarianMatcher:
    """One-to-one assignment per image and per query group (MonoDETR's group-wise training).

    Args:
        cost_class, cost_bbox, cost_giou, cost_center: MonoDETR's weights 2, 5, 2, 10.

    ``__call__(logits (B, G*Q, K), boxes (B, G*Q, 6), targets, num_groups)`` where each target is a
    dict with ``labels`` ``(M_b,)`` and ``boxes_3d`` ``(M_b, 6)`` -> per image a pair
    ``(query_index, target_index)`` of int64 tensors: every target is matched once in each group
    (``min(Q, M_b)`` pairs per group), query indices are global over the groups.
    """

    def __init__(self, cost_class: float = 2.0, cost_bbox: float = 5.0, cost_giou: float = 2.0,
                 cost_center: float = 10.0) -> None:
        self.cost_class = cost_class
        self.cost_bbox = cost_bbox
        self.cost_giou = cost_giou
        self.cost_center = cost_center

    @torch.no_grad()
    def __call__(self, logits: Tensor, boxes: Tensor, targets: list[dict],
                 num_groups: int = 1) -> list[tuple[Tensor, Tensor]]:
        b, n = logits.shape[:2]
        if n % num_groups:
            raise ValueError(f'{n} queries do not split into {num_groups} groups')
        if len(targets) != b:
            raise ValueError(f'{b} images but {len(targets)} targets')
        per_group = n // num_groups
        results = []
        for i, target in enumerate(targets):
            labels, gt_boxes = target['labels'], target['boxes_3d']
            if len(labels) == 0:
                empty = torch.zeros(0, dtype=torch.int64)
                results.append((empty, empty))
                continue
            cost = matching_cost(logits[i], boxes[i], labels, gt_boxes, self.cost_class,
                                 self.cost_bbox, self.cost_giou, self.cost_center)
            cost = cost.float().cpu().numpy().reshape(num_groups, per_group, -1)
            rows, cols = [], []
            for g in range(num_groups):
                r, c = linear_sum_assignment(cost[g])
                rows.append(r + g * per_group)
                cols.append(c)
            results.append((torch.as_tensor(np.concatenate(rows), dtype=torch.int64),
                            torch.as_tensor(np.concatenate(cols), dtype=torch.int64)))
        return results
