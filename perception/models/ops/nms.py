"""Non-maximum suppression of bird's-eye-view boxes: rotated (IoU), circle (centres), per class.

Every function sorts by score (descending; equal scores keep their input order), suppresses greedily
and returns indices into the input, highest score first. The overlap matrix of the candidates is
computed in one vectorised call; the greedy pass then walks a boolean matrix on the CPU, visiting
only the boxes it keeps.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .iou3d import pairwise_iou_upper

__all__ = ['nms_bev', 'circle_nms', 'batched_nms_bev']


def _check_scores(boxes: Tensor, scores: Tensor, width: int, name: str) -> None:
    if boxes.dim() != 2 or boxes.shape[1] != width:
        raise ValueError(f'{name} must have shape (N, {width}), got {tuple(boxes.shape)}')
    if scores.shape != (boxes.shape[0],):
        raise ValueError(f'scores must have shape ({boxes.shape[0]},), got {tuple(scores.shape)}')


def _sorted_order(scores: Tensor, pre_max: int | None) -> Tensor:
    order = torch.sort(scores, descending=True, stable=True)[1]
    return order if pre_max is None else order[:pre_max]


def greedy_suppress(suppresses: Tensor) -> Tensor:
    """Greedy pass of NMS over candidates already sorted by score.

    Args:
        suppresses: (K, K) bool; ``suppresses[i, j]`` says candidate i, if kept, removes
            candidate j. Only the upper triangle (j > i) is read.

    Returns:
        (K,) int64 positions of the kept candidates, ascending, on the input's device.
    """
    k = suppresses.shape[0]
    over = np.triu(suppresses.cpu().numpy(), 1)
    removed = np.zeros(k, dtype=bool)
    keep = []
    i = 0
    while i < k:
        keep.append(i)
        removed |= over[i]
        # Jump to the next candidate still standing: a loop over kept boxes, not over pairs.
        rest = np.flatnonzero(~removed[i + 1:])
        if rest.size == 0:
            break
        i += 1 + int(rest[0])
    return torch.as_tensor(keep, dtype=torch.long, device=suppresses.device)


def nms_bev(boxes: Tensor, scores: Tensor, iou_threshold: float, pre_max: int | None = None,
            post_max: int | None = None) -> Tensor:
    """Rotated NMS on BEV boxes, as mmdetection3d's ``nms_bev`` (exact rotated IoU).

    A box is removed when its IoU with a kept, higher-scoring box is greater than
    ``iou_threshold`` (strictly, as mmcv's ``nms_rotated``).

    Args:
        boxes: (N, 5) ``[cx, cy, dx, dy, angle]``.
        scores: (N,) scores.
        iou_threshold: IoU above which the lower-scoring box is suppressed.
        pre_max: keep only the ``pre_max`` highest scores before NMS.
        post_max: return at most ``post_max`` indices.

    Returns:
        (K,) int64 indices into ``boxes``, highest score first.
    """
    _check_scores(boxes, scores, 5, 'boxes')
    order = _sorted_order(scores, pre_max)
    if order.numel() == 0:
        return order
    keep = order[greedy_suppress(pairwise_iou_upper(boxes[order]) > iou_threshold)]
    return keep if post_max is None else keep[:post_max]


def circle_nms(centers: Tensor, scores: Tensor, distance_threshold: float,
               post_max: int | None = None, squared: bool = True) -> Tensor:
    """Circle NMS on box centres, as CenterPoint.

    CenterPoint (the original code and mmdetection3d's ``circle_nms``) removes a box when
    ``dx**2 + dy**2 <= thresh`` for a kept, higher-scoring box: the threshold is compared with the
    **squared** distance, and its config values (``min_radius = [4, 12, 10, 1, 0.85, 0.175]`` in
    m) are passed as that threshold unchanged. ``squared=True`` (the default) reproduces that;
    ``squared=False`` compares the plain distance instead (``dist <= distance_threshold``).

    Args:
        centers: (N, 2) BEV centres.
        scores: (N,) scores.
        distance_threshold: threshold on the squared distance (or the distance).
        post_max: return at most ``post_max`` indices (CenterPoint: ``post_max_size``).
        squared: whether ``distance_threshold`` is a squared distance.

    Returns:
        (K,) int64 indices into ``centers``, highest score first.
    """
    _check_scores(centers, scores, 2, 'centers')
    order = _sorted_order(scores, None)
    if order.numel() == 0:
        return order
    c = centers[order].to(torch.float64)
    dist2 = (c[:, None, :] - c[None, :, :]).square().sum(dim=-1)
    limit = distance_threshold if squared else distance_threshold ** 2
    keep = order[greedy_suppress(dist2 <= limit)]
    return keep if post_max is None else keep[:post_max]


def batched_nms_bev(boxes: Tensor, scores: Tensor, labels: Tensor, iou_threshold: float,
                    pre_max: int | None = None, post_max: int | None = None) -> Tensor:
    """Rotated NMS within each class; boxes of different classes never suppress each other.

    Args:
        boxes: (N, 5) ``[cx, cy, dx, dy, angle]``.
        scores: (N,) scores.
        labels: (N,) integer class labels.
        iou_threshold: as :func:`nms_bev`.
        pre_max: candidates per class before NMS.
        post_max: indices returned in all (the best over all classes).

    Returns:
        (K,) int64 indices into ``boxes``, highest score first.
    """
    _check_scores(boxes, scores, 5, 'boxes')
    if labels.shape != scores.shape:
        raise ValueError(f'labels must have shape {tuple(scores.shape)}, got {tuple(labels.shape)}')
    kept = []
    for label in torch.unique(labels).tolist():  # a loop over classes
        idx = (labels == label).nonzero(as_tuple=True)[0]
        kept.append(idx[nms_bev(boxes[idx], scores[idx], iou_threshold, pre_max)])
    if not kept:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    keep = torch.cat(kept)
    keep = keep[torch.sort(scores[keep], descending=True, stable=True)[1]]
    return keep if post_max is None else keep[:post_max]
