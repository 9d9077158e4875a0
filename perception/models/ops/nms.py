"""Non-maximum suppression of bird's-eye-view boxes: rotated (IoU), circle (centres), per class.

Every function sorts by score (descending; equal scores keep their input order), suppresses greedily
and returns indices into the input, highest score first.

Rotated NMS (:func:`nms_bev`) never builds the (K, K) overlap matrix. It decides the boxes in
blocks of the next few hundred undecided ones by score. Inside a block, a sort-and-sweep along x on
the boxes' axis-aligned bounding boxes lists the pairs that can overlap at all, a cheap upper bound
on their IoU drops the pairs that cannot pass the threshold, and greedy then runs in rounds: each
round keeps every box whose higher-scoring candidate neighbours are all decided, and computes the
exact rotated IoU only between those newly kept boxes and the boxes they may still remove. A
round is one vectorised step over pairs; the number of rounds is the longest chain of dependent
decisions (a few dozen on detector output), not the number of boxes. The block's kept boxes then
remove every lower-scoring box they overlap by more than the threshold, found by a window search
in the x-sorted remaining boxes, before the next block is drawn. Detector output is many copies
of few objects, so the first blocks' kept boxes clear most of the list, and the pairs among
copies of one object that greedy never needs are not formed. The kept indices are those of the
dense greedy pass: a box is kept iff no kept, higher-scoring box has IoU > threshold with it.

Circle NMS builds the (K, K) distance matrix and walks it on the CPU (:func:`greedy_suppress`),
visiting only the boxes it keeps.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .iou3d import _aabb_half_extents, _chunked_pair_overlap

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


def _window_reach(half_extent: Tensor, centre: Tensor, other_max: Tensor) -> Tensor:
    """How far in x from ``centre`` a box of x half-extent ``half_extent`` can meet another box.

    Only a superset is needed (the exact test follows): widened a little so that rounding in
    ``centre + reach`` never drops a pair.
    """
    reach = half_extent + other_max
    return reach + 1e-9 * (reach + centre.abs()) + 1e-12


def _expand_windows(lo: Tensor, hi: Tensor) -> tuple[Tensor, Tensor]:
    """Every position of the windows ``[lo[w], hi[w])`` (empty where ``hi <= lo``), with no Python
    loop: (P,) int64 window numbers ``w`` and positions, window by window."""
    counts = (hi - lo).clamp(min=0)
    window = torch.repeat_interleave(torch.arange(lo.numel(), device=lo.device), counts)
    offsets = torch.cumsum(counts, 0) - counts
    return window, lo[window] + torch.arange(window.numel(), device=lo.device) - offsets[window]


def _aabb_overlap(boxes: Tensor, ext: Tensor, first: Tensor, second: Tensor) -> Tensor:
    """(P,) bool: the pairs' axis-aligned bounding boxes overlap (strict, on both axes, as
    :func:`~perception.models.ops.iou3d.bev_overlap`)."""
    return ((boxes[first, :2] - boxes[second, :2]).abs() < ext[first] + ext[second]).all(dim=1)


def _candidate_pairs(boxes: Tensor, ext: Tensor) -> tuple[Tensor, Tensor]:
    """Pairs ``i < j`` of (K, 5) float64 boxes whose axis-aligned bounding boxes overlap.

    Sort-and-sweep: after sorting the centres by x, box p can only meet the boxes q > p whose x lies
    below ``x_p + ext_p + max(ext)``; those windows are found with one ``searchsorted`` and expanded
    into pairs without a Python loop, then the exact bounding-box test keeps the pairs that can
    overlap. ``ext`` is the boxes' (K, 2) bounding-box half extents.

    Returns:
        (P,) int64 ``first`` and ``second`` positions into ``boxes``, ``first < second``.
    """
    xs, by_x = torch.sort(boxes[:, 0], stable=True)
    reach = _window_reach(ext[by_x, 0], xs, ext[:, 0].max())
    hi = torch.searchsorted(xs, xs + reach, side='left')
    p, q = _expand_windows(torch.arange(1, boxes.shape[0] + 1, device=boxes.device), hi)
    a, b = by_x[p], by_x[q]
    close = _aabb_overlap(boxes, ext, a, b)
    a, b = a[close], b[close]
    return torch.minimum(a, b), torch.maximum(a, b)


def _iou_upper_bound(boxes: Tensor, ext: Tensor, area: Tensor, first: Tensor, second: Tensor
                     ) -> Tensor:
    """(P,) upper bound on the IoU of each pair: the intersection of two rotated rectangles lies in
    the intersection of their bounding boxes and is at most the smaller area."""
    ca, cb, ea, eb = boxes[first, :2], boxes[second, :2], ext[first], ext[second]
    side = (torch.minimum(ca + ea, cb + eb) - torch.maximum(ca - ea, cb - eb)).clamp(min=0)
    inter = torch.minimum(side.prod(dim=1), torch.minimum(area[first], area[second]))
    union = area[first] + area[second] - inter
    return torch.where(union > 0, inter / torch.where(union > 0, union, 1.0), 0.0)


def _may_suppress(boxes: Tensor, ext: Tensor, area: Tensor, first: Tensor, second: Tensor,
                  iou_threshold: float) -> tuple[Tensor, Tensor]:
    """The pairs whose IoU bound can exceed the threshold; the margin covers rounding in the exact
    IoU (measured differences against the bound are ~1e-16)."""
    maybe = _iou_upper_bound(boxes, ext, area, first, second) > iou_threshold - 1e-9
    return first[maybe], second[maybe]


def _pair_iou(boxes: Tensor, area: Tensor, first: Tensor, second: Tensor) -> Tensor:
    """(P,) exact IoU of the listed pairs, the same float64 operations as ``bev_iou``."""
    inter = _chunked_pair_overlap(boxes[first], boxes[second])
    denom = area[first] + area[second] - inter
    positive = denom > 0
    ratio = inter / torch.where(positive, denom, torch.ones_like(denom))
    return torch.where(positive, ratio, torch.zeros_like(ratio)).clamp(0, 1)


def _greedy_rounds(boxes: Tensor, ext: Tensor, area: Tensor, iou_threshold: float) -> Tensor:
    """Greedy rotated NMS of (K, 5) float64 boxes sorted by score, with their (K, 2) bounding-box
    half extents and (K,) areas; (K,) bool kept mask.

    Each round is vectorised over the open pairs; see the module docstring.
    """
    k = boxes.shape[0]
    first, second = _may_suppress(boxes, ext, area, *_candidate_pairs(boxes, ext), iou_threshold)
    undecided = torch.ones(k, dtype=torch.bool, device=boxes.device)
    kept = torch.zeros(k, dtype=torch.bool, device=boxes.device)
    while True:  # a loop over greedy rounds, not over boxes
        # A box waits while any open pair links it to an undecided, higher-scoring box.
        waiting = torch.zeros(k, dtype=torch.bool, device=boxes.device)
        waiting[second] = True
        new = undecided & ~waiting
        if not bool(new.any()):
            break
        kept |= new
        undecided &= ~new
        # The newly kept boxes remove their undecided neighbours with IoU above the threshold.
        from_new = new[first]
        hit_first, hit_second = first[from_new], second[from_new]
        if hit_first.numel():
            over = _pair_iou(boxes, area, hit_first, hit_second) > iou_threshold
            undecided[hit_second[over]] = False
        # Pairs from decided boxes are settled; pairs to removed boxes no longer matter.
        open_pair = undecided[first] & undecided[second]
        first, second = first[open_pair], second[open_pair]
    if bool(undecided.any()):  # cannot happen: the best undecided box never waits
        raise RuntimeError('nms_bev: greedy rounds stopped with undecided boxes')
    return kept


def _greedy_blocks(boxes: Tensor, iou_threshold: float, block: int = 256) -> Tensor:
    """Greedy rotated NMS of (K, 5) float64 boxes sorted by score; (K,) bool kept mask.

    Blocks of ``block`` undecided boxes are decided by :func:`_greedy_rounds`; each block's kept
    boxes then remove the lower-scoring boxes they overlap (module docstring).
    """
    k = boxes.shape[0]
    area = boxes[:, 2] * boxes[:, 3]
    ext = _aabb_half_extents(boxes)
    x_order = torch.sort(boxes[:, 0], stable=True)[1]
    reach_max = ext[:, 0].max()
    kept = torch.zeros(k, dtype=torch.bool, device=boxes.device)
    undecided = torch.ones(k, dtype=torch.bool, device=boxes.device)
    while True:  # a loop over blocks of boxes
        members = undecided.nonzero(as_tuple=True)[0][:block]
        if members.numel() == 0:
            return kept
        undecided[members] = False
        winners = members[_greedy_rounds(boxes[members], ext[members], area[members],
                                         iou_threshold)]
        kept[winners] = True
        # Every box still undecided scores below the whole block: the winners remove those they
        # overlap by more than the threshold.
        rest = x_order[undecided[x_order]]
        if rest.numel() == 0:
            return kept
        xs, centre = boxes[rest, 0], boxes[winners, 0]
        reach = _window_reach(ext[winners, 0], centre, reach_max)
        window, pos = _expand_windows(torch.searchsorted(xs, centre - reach, side='left'),
                                      torch.searchsorted(xs, centre + reach, side='right'))
        src, dst = winners[window], rest[pos]
        close = _aabb_overlap(boxes, ext, src, dst)
        src, dst = _may_suppress(boxes, ext, area, src[close], dst[close], iou_threshold)
        if src.numel():
            over = _pair_iou(boxes, area, src, dst) > iou_threshold
            undecided[dst[over]] = False


def nms_bev(boxes: Tensor, scores: Tensor, iou_threshold: float, pre_max: int | None = None,
            post_max: int | None = None) -> Tensor:
    """Rotated NMS on BEV boxes, as mmdetection3d's ``nms_bev`` (exact rotated IoU).

    A box is removed when its IoU with a kept, higher-scoring box is greater than
    ``iou_threshold`` (strictly, as mmcv's ``nms_rotated``). Only pairs whose bounding boxes
    overlap get the exact IoU, and only when the higher-scoring one is kept (module docstring).

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
    sorted_boxes = boxes[order].to(torch.float64)
    if (sorted_boxes[:, 2:4] < 0).any():
        raise ValueError('box sizes must be >= 0')
    if iou_threshold < 0:  # every IoU (0 included) exceeds it: the best box removes all others
        keep = order[:1]
    else:
        keep = order[_greedy_blocks(sorted_boxes, float(iou_threshold))]
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
