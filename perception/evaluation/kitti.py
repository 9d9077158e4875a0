"""KITTI object detection evaluation: 2D, BEV, 3D and AOS average precision, AP11 and AP40.

The protocol is the official devkit's (``cpp/evaluate_object.cpp``) as the Python ports of
mmdetection3d and OpenPCDet run it, which is where published KITTI numbers come from:

* Difficulties ``easy / moderate / hard``: a ground-truth object counts if its 2D box is taller than
  40 / 25 / 25 px, its occlusion is at most 0 / 1 / 2 and its truncation at most 0.15 / 0.3 / 0.5;
  other objects of the class are "ignored" (matching them is neither a TP nor an FN).
* Neighbouring classes: Van objects are ignored (not false positives) for Car, Person_sitting for
  Pedestrian. Detections lower than the difficulty's minimum height are ignored detections: they may
  absorb a ground-truth object without scoring (whatever their class, as in the reference).
* DontCare regions: an unmatched detection whose 2D box lies more than ``min_overlap`` inside a
  DontCare box (intersection over the detection's area) is not a false positive. The Python ports
  apply this in the 2D evaluation only, the C++ devkit in BEV and 3D as well (the KITTI server's
  numbers); ``kitti_eval(..., dontcare_in_3d=True)`` does the latter.
* Matching, per ground-truth object in file order: when collecting score thresholds, the unassigned
  detection with the highest score above the overlap threshold; when counting TP/FP at a threshold,
  the unassigned, non-ignored detection with the largest overlap (else the first ignored one).
* Score thresholds: the reference's ``get_thresholds`` samples 41 recall positions from the TP
  scores; precision is made monotone (max over higher recall) and AP11 averages positions
  0, 4, ..., 40 while AP40 averages positions 1..40. Note the devkit's well-known consequence: a
  class with n < 41 valid objects has only n thresholds, so even perfect detections score
  ``(n - 1) / 40`` AP40 and ``ceil(n / 4) / 11`` AP11 (both x 100).
* Overlaps: 2D IoU of image boxes; BEV IoU of the rotated rectangles ``(x, z, l, w, -ry)``;
  3D IoU as BEV intersection x height overlap / union volume. Unlike the reference's float32 GPU
  kernels they are exact (float64, exact polygon clipping): predictions equal to the ground truth
  have IoU 1.
* AOS: orientation similarity ``(1 + cos(alpha_gt - alpha_det)) / 2`` summed over the 2D TPs,
  divided by TP + FP, made monotone and averaged like precision.
* Strict / loose overlap thresholds per class (the reference's tables): 2D / BEV / 3D 0.7 for Car
  and Van, 0.5 for Pedestrian, Cyclist and Person_sitting (strict); BEV and 3D 0.5 / 0.25 (loose);
  Truck as OpenPCDet: 0.7 strict, 0.5 loose for all three.

Where the reference divides 0 by 0 (no TP and no FP left at a threshold, a corner case) it
produces NaN; here the precision is 0 there.

Results are percentages with mmdetection3d's key names,
``{Class}_{2D|BEV|3D|AOS}_{AP11|AP40}_{easy|moderate|hard}_{strict|loose}`` and, with several
classes, ``Overall_{Type}_{AP11|AP40}_{difficulty}`` (mean over classes at the strict thresholds).
The printed table is mmdetection3d's.

Everything is vectorised with NumPy over all frames and all score thresholds at once. Overlaps are
computed only for box pairs of the same frame. The reference's sequential greedy matching is done
in one step for the objects whose candidate detections no other object competes for (almost all),
and object by object (rank within the frame, all frames together) for the rest.
"""
from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from ..datasets.kitti_format import UNKNOWN_ALPHA, empty_annos, read_label_file, write_label_file
from ..engine.errors import DataError
from ..registry import METRICS
from .sample_fields import sample_field

__all__ = [
    'KITTI_CLASSES', 'KittiMetric', 'annos_from_camera_boxes', 'ap11', 'ap40', 'eval_class',
    'evaluate_label_dirs', 'get_thresholds', 'image_box_overlap', 'kitti_eval', 'min_overlaps_for'
]

KITTI_CLASSES = ('Car', 'Pedestrian', 'Cyclist', 'Van', 'Person_sitting', 'Truck')
DIFFICULTIES = ('easy', 'moderate', 'hard')
MIN_HEIGHT = (40.0, 25.0, 25.0)
MAX_OCCLUSION = (0, 1, 2)
MAX_TRUNCATION = (0.15, 0.3, 0.5)
NUM_SAMPLE_POINTS = 41
METRIC_TYPES = ('bbox', 'bev', '3d')
# Minimum overlaps per class: [strict, loose] x [bbox, bev, 3d].
_MIN_OVERLAPS = {
    'Car': ((0.7, 0.7, 0.7), (0.7, 0.5, 0.5)),
    'Pedestrian': ((0.5, 0.5, 0.5), (0.5, 0.25, 0.25)),
    'Cyclist': ((0.5, 0.5, 0.5), (0.5, 0.25, 0.25)),
    'Van': ((0.7, 0.7, 0.7), (0.7, 0.5, 0.5)),
    'Person_sitting': ((0.5, 0.5, 0.5), (0.5, 0.25, 0.25)),
    'Truck': ((0.7, 0.7, 0.7), (0.5, 0.5, 0.5)),
}
# Ground truth of the neighbouring class is ignored rather than counted as missed.
_NEIGHBOUR = {'car': 'van', 'pedestrian': 'person_sitting'}
_KEY_TYPES = {'bbox': '2D', 'bev': 'BEV', '3d': '3D', 'aos': 'AOS'}
_ROW_NAMES = {'bbox': 'bbox', 'bev': 'bev ', '3d': '3d  ', 'aos': 'aos '}

# Which AP summary samples which of the 41 precision positions.
_AP11_POSITIONS = tuple(range(0, NUM_SAMPLE_POINTS, 4))
_AP40_POSITIONS = tuple(range(1, NUM_SAMPLE_POINTS))


# --------------------------------------------------------------------------------------------
# Input: per-frame annotation dicts -> flat arrays
# --------------------------------------------------------------------------------------------

@dataclass
class _Boxes:
    """All frames' objects concatenated (frame-major, file order kept)."""
    frame: np.ndarray  # (N,) int64 frame index
    name: np.ndarray  # (N,) str, lower case
    raw_name: np.ndarray  # (N,) str as given
    bbox: np.ndarray  # (N, 4)
    alpha: np.ndarray  # (N,)
    truncated: np.ndarray | None  # (N,) ground truth only
    occluded: np.ndarray | None  # (N,)
    camera_boxes: np.ndarray | None  # (N, 7) [x, y, z, l, h, w, ry], None without 3D fields
    score: np.ndarray | None  # (N,) detections only
    num_frames: int

    def __len__(self) -> int:
        return len(self.frame)


def _stack(annos: Sequence[Mapping[str, Any]], kind: str) -> _Boxes:
    """Concatenate per-frame KITTI annotation dicts, checking every field's shape."""
    is_gt = kind == 'ground truth'
    needed = ['name', 'bbox'] + (['truncated', 'occluded', 'alpha'] if is_gt else ['score'])
    parts: dict[str, list[np.ndarray]] = {k: [] for k in (
        'name', 'bbox', 'alpha', 'truncated', 'occluded', 'score', 'box3d')}
    has_3d = True
    counts = []
    for index, anno in enumerate(annos):
        missing = [k for k in needed if k not in anno]
        if missing:
            raise KeyError(f'{kind} of frame {index}: missing {missing}')
        name = np.asarray(anno['name']).astype(str).reshape(-1)
        n = len(name)

        def field(key: str, width: int | None, default: float | None = None) -> np.ndarray:
            value = anno.get(key)
            if value is None:
                value = np.full(n, default, dtype=np.float64)
            value = np.asarray(value, dtype=np.float64)
            shape = (n,) if width is None else (n, width)
            if n == 0 and value.size == 0:
                return value.reshape(shape)
            if value.shape != shape:
                raise ValueError(f'{kind} of frame {index}: {key!r} has shape {value.shape}, '
                                 f'expected {shape} for {n} objects')
            return value

        parts['name'].append(name)
        parts['bbox'].append(field('bbox', 4))
        parts['alpha'].append(field('alpha', None, UNKNOWN_ALPHA))
        if is_gt:
            parts['truncated'].append(field('truncated', None))
            parts['occluded'].append(field('occluded', None))
        else:
            score = field('score', None)
            if not np.isfinite(score).all():
                raise ValueError(f'{kind} of frame {index}: scores must be finite numbers')
            parts['score'].append(score)
        if all(k in anno for k in ('location', 'dimensions', 'rotation_y')):
            parts['box3d'].append(np.concatenate(
                [field('location', 3), field('dimensions', 3), field('rotation_y', None)[:, None]],
                axis=1))
        else:
            has_3d = False
        counts.append(n)

    def cat(key: str, shape: tuple[int, ...]) -> np.ndarray:
        return np.concatenate(parts[key]) if parts[key] else np.zeros(shape)

    raw_name = cat('name', (0,)).astype(str)
    return _Boxes(
        frame=np.repeat(np.arange(len(counts)), counts).astype(np.int64),
        name=np.char.lower(raw_name) if raw_name.size else raw_name,
        raw_name=raw_name,
        bbox=cat('bbox', (0, 4)),
        alpha=cat('alpha', (0,)),
        truncated=cat('truncated', (0,)) if is_gt else None,
        occluded=cat('occluded', (0,)) if is_gt else None,
        camera_boxes=cat('box3d', (0, 7)) if has_3d else None,
        score=None if is_gt else cat('score', (0,)),
        num_frames=len(counts),
    )


# --------------------------------------------------------------------------------------------
# Overlaps
# --------------------------------------------------------------------------------------------

def image_box_overlap(boxes: np.ndarray, query_boxes: np.ndarray,
                      criterion: int = -1) -> np.ndarray:
    """Overlap of axis-aligned image boxes ``x1 y1 x2 y2`` (no +1 pixel, as the reference).

    Args:
        boxes: (N, 4).
        query_boxes: (M, 4).
        criterion: -1 intersection over union, 0 over the area of ``boxes``, 1 over the area of
            ``query_boxes``.

    Returns:
        (N, M) overlaps; 0 where the boxes do not intersect with positive width and height.
    """
    a = np.asarray(boxes, dtype=np.float64)[:, None, :]
    b = np.asarray(query_boxes, dtype=np.float64)[None, :, :]
    return _box2d_overlap(a, b, criterion)


def _box2d_overlap(a: np.ndarray, b: np.ndarray, criterion: int) -> np.ndarray:
    """Broadcasting core of :func:`image_box_overlap` over the leading dimensions."""
    iw = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0])
    ih = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    if criterion == -1:
        denom = area_a + area_b - inter
    elif criterion == 0:
        denom = np.broadcast_to(area_a, inter.shape)
    elif criterion == 1:
        denom = np.broadcast_to(area_b, inter.shape)
    else:
        raise ValueError(f'criterion must be -1, 0 or 1, got {criterion}')
    hit = (iw > 0) & (ih > 0)
    return np.where(hit, inter / np.where(hit & (denom != 0), denom, 1.0), 0.0)


def _frame_pairs(frame_a: np.ndarray, idx_a: np.ndarray, frame_b: np.ndarray, idx_b: np.ndarray,
                 num_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Every (a, b) pair of ``idx_a`` x ``idx_b`` within the same frame.

    ``idx_b`` must be sorted by frame (the stacked order is). Returns two (P,) index arrays,
    ordered by ``a`` and then ``b``.
    """
    count_b = np.bincount(frame_b[idx_b], minlength=num_frames)
    start_b = np.cumsum(count_b) - count_b
    reps = count_b[frame_a[idx_a]]
    pa = np.repeat(idx_a, reps)
    offset = np.arange(reps.sum()) - np.repeat(np.cumsum(reps) - reps, reps)
    pb = idx_b[np.repeat(start_b[frame_a[idx_a]], reps) + offset]
    return pa, pb


@dataclass
class _Pairs:
    """Detection / GT pairs of one frame with positive overlap."""
    dt: np.ndarray  # (P,) detection index
    gt: np.ndarray  # (P,) ground-truth index
    overlap: np.ndarray  # (P,) overlap value


def _pairwise_overlaps(gt: _Boxes, dt: _Boxes, metrics: Sequence[str], gt_mask: np.ndarray,
                      dt_mask: np.ndarray) -> dict[str, _Pairs]:
    """Overlaps (IoU, criterion -1) of detections with ground truth in the same frame.

    Args:
        gt, dt: stacked boxes; ``gt_mask`` (G,), ``dt_mask`` (D,) select the boxes to pair.
        metrics: any of 'bbox' (image boxes), 'bev' and '3d' (camera boxes; both come from one
            computation of the ground-plane intersections).

    Returns:
        per metric, the pairs with positive overlap.
    """
    unknown = [m for m in metrics if m not in METRIC_TYPES]
    if unknown:
        raise ValueError(f'metric must be one of {METRIC_TYPES}, got {unknown[0]!r}')
    pd, pg = _frame_pairs(dt.frame, np.flatnonzero(dt_mask), gt.frame, np.flatnonzero(gt_mask),
                          gt.num_frames)
    overlaps = {}
    if 'bbox' in metrics:
        overlaps['bbox'] = _box2d_overlap(dt.bbox[pd], gt.bbox[pg], -1)
    if 'bev' in metrics or '3d' in metrics:
        if gt.camera_boxes is None or dt.camera_boxes is None:
            missing = 'ground truth' if gt.camera_boxes is None else 'detections'
            raise KeyError('BEV and 3D evaluation need location, dimensions and rotation_y in '
                           f'the {missing}')
        bev, iou3d = _camera_box_overlaps(dt.camera_boxes[pd], gt.camera_boxes[pg])
        overlaps.update(bev=bev, **{'3d': iou3d})
    pairs = {}
    for metric in metrics:
        keep = overlaps[metric] > 0
        pairs[metric] = _Pairs(pd[keep], pg[keep], overlaps[metric][keep])
    return pairs


def _camera_box_overlaps(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Aligned BEV and 3D IoU of camera boxes (P, 7) ``[x, y, z, l, h, w, ry]``, bottom centre.

    Boxes with a size <= 0 (DontCare rows carry -1) overlap nothing. Far-apart pairs are skipped
    before the exact polygon clipping.
    """
    from ..models.ops.iou3d import bev_overlap

    bev_iou, iou3d = np.zeros(len(a)), np.zeros(len(a))
    sized = (a[:, 3:6] > 0).all(axis=1) & (b[:, 3:6] > 0).all(axis=1)
    # Bounding circles in the ground plane must meet for the rectangles to overlap.
    radius_a = 0.5 * np.hypot(a[:, 3], a[:, 5])
    radius_b = 0.5 * np.hypot(b[:, 3], b[:, 5])
    near = np.hypot(a[:, 0] - b[:, 0], a[:, 2] - b[:, 2]) <= (radius_a + radius_b) * (1 + 1e-9)
    idx = np.flatnonzero(sized & near)
    if idx.size == 0:
        return bev_iou, iou3d
    a, b = a[idx], b[idx]
    # BEV rectangle (x, z, l, w, -ry): ry turns the heading clockwise seen from above.
    bev_a = torch.from_numpy(np.stack([a[:, 0], a[:, 2], a[:, 3], a[:, 5], -a[:, 6]], axis=1))
    bev_b = torch.from_numpy(np.stack([b[:, 0], b[:, 2], b[:, 3], b[:, 5], -b[:, 6]], axis=1))
    inter = bev_overlap(bev_a, bev_b, aligned=True).numpy()
    union = a[:, 3] * a[:, 5] + b[:, 3] * b[:, 5] - inter
    bev_iou[idx] = np.where(inter > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    # Camera y points down: a box spans [y - h, y].
    height = np.minimum(a[:, 1], b[:, 1]) - np.maximum(a[:, 1] - a[:, 4], b[:, 1] - b[:, 4])
    inter = inter * np.maximum(height, 0.0)
    union = a[:, 3] * a[:, 4] * a[:, 5] + b[:, 3] * b[:, 4] * b[:, 5] - inter
    iou3d[idx] = np.where(inter > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    return bev_iou, iou3d


def _dontcare_overlap(gt: _Boxes, dt: _Boxes) -> np.ndarray:
    """(D,) largest overlap of each detection with a DontCare box of its frame (over its area)."""
    best = np.zeros(len(dt))
    dontcare = np.flatnonzero(gt.raw_name == 'DontCare')
    if dontcare.size and len(dt):
        pd, pg = _frame_pairs(dt.frame, np.arange(len(dt)), gt.frame, dontcare, gt.num_frames)
        np.maximum.at(best, pd, _box2d_overlap(dt.bbox[pd], gt.bbox[pg], 0))
    return best


# --------------------------------------------------------------------------------------------
# Matching and statistics
# --------------------------------------------------------------------------------------------

def get_thresholds(scores: np.ndarray, num_gt: int,
                   num_sample_points: int = NUM_SAMPLE_POINTS) -> np.ndarray:
    """Score thresholds at the recall sample positions (the reference's ``get_thresholds``).

    Args:
        scores: (K,) scores of the true positives (any order).
        num_gt: number of valid ground-truth objects.

    Returns:
        (T,) thresholds, descending, T <= ``num_sample_points``: walking down the sorted scores,
        a score is kept when its recall is at least as close to the next sample position as the
        following score's recall would be; the last score is always kept.
    """
    scores = np.sort(np.asarray(scores, dtype=np.float64))[::-1]
    n = len(scores)
    if n == 0:
        return scores
    i = np.arange(n)
    left = (i + 1) / num_gt
    right = np.where(i < n - 1, (i + 2) / num_gt, left)
    step = 1 / (num_sample_points - 1.0)
    kept = []
    current = 0.0
    start = 0
    while start < n and len(kept) < num_sample_points:
        # The kept condition is monotone in i, so the next kept score is the first that meets it.
        ok = (right[start:n - 1] - current) >= (current - left[start:n - 1])
        hit = np.flatnonzero(ok)
        pick = start + hit[0] if hit.size else n - 1
        kept.append(pick)
        current += step  # repeated addition, as the reference accumulates it
        start = pick + 1
    return scores[np.array(kept)]


def _first_true_per_segment(mask: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """(T, S) column of the first True of each segment of ``mask`` (T, n), or -1."""
    n = mask.shape[1]
    position = np.where(mask, np.arange(n), n)
    first = np.minimum.reduceat(position, starts, axis=1)
    return np.where(first < n, first, -1)


def _segment_starts(keys: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])


def _greedy_match(pair_gt: np.ndarray, pair_dt: np.ndarray, priority: tuple[np.ndarray, ...],
                  eligible: np.ndarray, gt_frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The reference's sequential assignment, run for T score thresholds at once.

    Each ground-truth object, in file order within its frame, takes its most preferred candidate
    detection that is eligible and not yet taken by an earlier object of the frame.

    Args:
        pair_gt, pair_dt: (P,) candidate pairs.
        priority: (P,) keys, most significant last (``np.lexsort`` order); smaller is preferred.
        eligible: (T, P) whether the pair's detection may be used at threshold t.
        gt_frame: (G,) frame of each ground-truth object.

    Returns:
        ``seg_gt`` (S,) the ground-truth objects with candidates, and ``chosen`` (T, S) the index
        into the pair arrays of each one's detection (-1 for none).
    """
    T, P = eligible.shape
    if P == 0:
        return np.zeros(0, dtype=np.int64), np.zeros((T, 0), dtype=np.int64)
    order = np.lexsort((*priority, pair_gt))
    gt_sorted, dt_sorted = pair_gt[order], pair_dt[order]
    eligible = eligible[:, order]
    starts = _segment_starts(gt_sorted)
    seg_gt = gt_sorted[starts]
    num_seg = len(starts)
    seg_of_pair = np.repeat(np.arange(num_seg), np.diff(np.r_[starts, P]))
    chosen = np.full((T, num_seg), -1, dtype=np.int64)

    # A detection that is a candidate of one object only cannot be taken by another: objects whose
    # candidates are all their own are matched independently, in one step.
    dets, det_local, det_count = np.unique(dt_sorted, return_inverse=True, return_counts=True)
    dependent = np.zeros(num_seg, dtype=bool)
    dependent[seg_of_pair[det_count[det_local] > 1]] = True

    def assign(pair_sel: np.ndarray, ok: np.ndarray, segs: np.ndarray) -> np.ndarray:
        first = _first_true_per_segment(ok, _segment_starts(seg_of_pair[pair_sel]))
        picked = pair_sel[np.maximum(first, 0)]
        chosen[:, segs] = np.where(first >= 0, order[picked], -1)
        return np.where(first >= 0, picked, -1)

    free = np.flatnonzero(~dependent)
    if free.size:
        pair_sel = np.flatnonzero(~dependent[seg_of_pair])
        assign(pair_sel, eligible[:, pair_sel], free)

    dep = np.flatnonzero(dependent)
    if dep.size:
        # Rank of each dependent object within its frame: objects of the same rank (one per frame)
        # are processed together.
        frames = gt_frame[seg_gt[dep]]
        run_start = np.r_[True, frames[1:] != frames[:-1]]
        positions = np.arange(dep.size)
        rank = positions - np.maximum.accumulate(np.where(run_start, positions, 0))
        dep_pairs = np.flatnonzero(dependent[seg_of_pair])
        pair_rank = np.empty(num_seg, dtype=np.int64)
        pair_rank[dep] = rank
        dep_pair_rank = pair_rank[seg_of_pair[dep_pairs]]
        taken = np.zeros((T, len(dets)), dtype=bool)
        for r in range(int(rank.max()) + 1):
            pair_sel = dep_pairs[dep_pair_rank == r]
            ok = eligible[:, pair_sel] & ~taken[:, det_local[pair_sel]]
            picked = assign(pair_sel, ok, dep[rank == r])
            t_idx, s_idx = np.nonzero(picked >= 0)
            taken[t_idx, det_local[picked[t_idx, s_idx]]] = True
    return seg_gt, chosen


@dataclass
class _ClassData:
    """Ignore flags of one class at one difficulty."""
    ignored_gt: np.ndarray  # (G,) 0 valid, 1 ignored, -1 not this class
    ignored_dt: np.ndarray  # (D,) 0 valid, 1 ignored (too small), -1 not this class
    num_valid_gt: int


def _class_data(gt: _Boxes, dt: _Boxes, class_name: str, difficulty: int) -> _ClassData:
    """The reference's ``clean_data``, vectorised."""
    cls = class_name.lower()
    neighbour = _NEIGHBOUR.get(cls)
    height = gt.bbox[:, 3] - gt.bbox[:, 1]
    hidden = ((gt.occluded > MAX_OCCLUSION[difficulty])
              | (gt.truncated > MAX_TRUNCATION[difficulty])
              | (height <= MIN_HEIGHT[difficulty]))
    same = gt.name == cls
    ignored_gt = np.full(len(gt), -1, dtype=np.int64)
    ignored_gt[same & ~hidden] = 0
    ignored_gt[(same & hidden) | (gt.name == neighbour)] = 1
    dt_height = np.abs(dt.bbox[:, 3] - dt.bbox[:, 1])
    ignored_dt = np.where(dt_height < MIN_HEIGHT[difficulty], 1,
                          np.where(dt.name == cls, 0, -1)).astype(np.int64)
    return _ClassData(ignored_gt, ignored_dt, int((ignored_gt == 0).sum()))


def _curves(gt: _Boxes, dt: _Boxes, pairs: _Pairs, data: _ClassData, min_overlap: float,
            dontcare: np.ndarray | None, compute_aos: bool) -> np.ndarray:
    """Precision, recall and orientation similarity at the 41 sample positions: (3, 41)."""
    out = np.zeros((3, NUM_SAMPLE_POINTS))
    score = dt.score
    cand = ((pairs.overlap > min_overlap) & (data.ignored_gt[pairs.gt] != -1)
            & (data.ignored_dt[pairs.dt] != -1))
    cg, cd, co = pairs.gt[cand], pairs.dt[cand], pairs.overlap[cand]

    # Pass 1: the highest-scoring candidate (first on ties) of each object; the TPs' scores give
    # the thresholds.
    seg_gt, chosen = _greedy_match(cg, cd, (cd, -score[cd]), np.ones((1, len(cg)), dtype=bool),
                                   gt.frame)
    det = cd[np.maximum(chosen[0], 0)]
    tp = (chosen[0] >= 0) & (data.ignored_gt[seg_gt] == 0) & (data.ignored_dt[det] == 0)
    thresholds = get_thresholds(score[det[tp]], data.num_valid_gt)
    if thresholds.size == 0:
        return out

    # Pass 2, all thresholds at once: the non-ignored candidate with the largest overlap (first on
    # ties), else the first ignored candidate.
    cand_ignored = data.ignored_dt[cd] == 1
    eligible = score[cd][None, :] >= thresholds[:, None]
    seg_gt, chosen = _greedy_match(cg, cd, (cd, np.where(cand_ignored, 0.0, -co), cand_ignored),
                                   eligible, gt.frame)
    matched = chosen >= 0
    det = cd[np.maximum(chosen, 0)]  # (T, S)
    valid_gt = data.ignored_gt[seg_gt] == 0  # (S,)
    det_valid = data.ignored_dt[det] == 0
    tp_mask = matched & valid_gt[None, :] & det_valid
    tp = tp_mask.sum(axis=1)
    fn = data.num_valid_gt - (matched & valid_gt[None, :]).sum(axis=1)
    # False positives: valid detections above the threshold, unassigned, outside DontCare areas.
    pool = data.ignored_dt == 0
    not_dontcare = np.ones(len(dt), dtype=bool) if dontcare is None else dontcare <= min_overlap
    pool_scores = np.sort(score[pool & not_dontcare])
    in_pool = len(pool_scores) - np.searchsorted(pool_scores, thresholds, side='left')
    fp = in_pool - (matched & det_valid & not_dontcare[det]).sum(axis=1)

    t = len(thresholds)
    positives = tp + fp
    with np.errstate(invalid='ignore', divide='ignore'):
        out[0, :t] = np.where(positives > 0, tp / np.maximum(positives, 1), 0.0)
        out[1, :t] = np.where(tp + fn > 0, tp / np.maximum(tp + fn, 1), 0.0)
    if compute_aos:
        delta = gt.alpha[seg_gt][None, :] - dt.alpha[det]
        similarity = np.where(tp_mask, (1.0 + np.cos(delta)) / 2.0, 0.0).sum(axis=1)
        out[2, :t] = np.where(positives > 0, similarity / np.maximum(positives, 1), 0.0)
    # Interpolate: the best value at this or any higher recall position.
    return np.maximum.accumulate(out[:, ::-1], axis=1)[:, ::-1]


def min_overlaps_for(classes: Sequence[str]) -> np.ndarray:
    """The reference's overlap thresholds: (2 strict/loose, 3 bbox/bev/3d, C)."""
    unknown = [c for c in classes if c not in _MIN_OVERLAPS]
    if unknown:
        raise DataError(f'unknown KITTI class {unknown[0]!r}; choose from {list(KITTI_CLASSES)}')
    return np.stack([np.array(_MIN_OVERLAPS[c]) for c in classes], axis=-1)


def _relevant_masks(gt: _Boxes, dt: _Boxes, classes: Sequence[str]) -> tuple[np.ndarray, ...]:
    """Boxes that can take part in matching for any of ``classes``: GT of the classes and their
    neighbours; detections of the classes or low enough to be ignored detections."""
    names = [c.lower() for c in classes]
    gt_names = names + [_NEIGHBOUR[c] for c in names if c in _NEIGHBOUR]
    gt_mask = np.isin(gt.name, gt_names)
    dt_mask = np.isin(dt.name, names) | (np.abs(dt.bbox[:, 3] - dt.bbox[:, 1]) < max(MIN_HEIGHT))
    return gt_mask, dt_mask


def eval_class(gt_annos: Sequence[Mapping[str, Any]], dt_annos: Sequence[Mapping[str, Any]],
               classes: Sequence[str], metric: str, min_overlaps: np.ndarray,
               compute_aos: bool = False,
               difficulties: Sequence[int] = (0, 1, 2)) -> dict[str, np.ndarray]:
    """Precision / recall / AOS curves of one overlap type (the reference's ``eval_class``).

    Args:
        gt_annos, dt_annos: one dict per frame (:func:`perception.datasets.kitti_format.
            read_label_file` layout; detections need ``score``).
        classes: class names, e.g. ``('Car', 'Pedestrian')``.
        metric: 'bbox', 'bev' or '3d'.
        min_overlaps: (K, C) overlap thresholds per threshold set (e.g. strict / loose) and class.
        compute_aos: also the orientation similarity (meaningful for 'bbox').
        difficulties: indices into easy / moderate / hard.

    Returns:
        ``precision``, ``recall``, ``orientation``: (C, len(difficulties), K, 41) arrays.
    """
    if len(gt_annos) != len(dt_annos):
        raise ValueError(f'{len(gt_annos)} ground-truth frames but {len(dt_annos)} detection '
                         'frames')
    gt, dt = _stack(gt_annos, 'ground truth'), _stack(dt_annos, 'detections')
    return _eval_class(gt, dt, classes, metric, np.asarray(min_overlaps, dtype=np.float64),
                       compute_aos, difficulties)


def _eval_class(gt: _Boxes, dt: _Boxes, classes: Sequence[str], metric: str,
                min_overlaps: np.ndarray, compute_aos: bool, difficulties: Sequence[int],
                pairs: _Pairs | None = None,
                dontcare_in_3d: bool = False) -> dict[str, np.ndarray]:
    if min_overlaps.ndim != 2 or min_overlaps.shape[1] != len(classes):
        raise ValueError(f'min_overlaps must have shape (K, {len(classes)}), got '
                         f'{min_overlaps.shape}')
    num_k = min_overlaps.shape[0]
    curves = np.zeros((3, len(classes), len(difficulties), num_k, NUM_SAMPLE_POINTS))
    if pairs is None:
        pairs = _pairwise_overlaps(gt, dt, [metric], *_relevant_masks(gt, dt, classes))[metric]
    dontcare = _dontcare_overlap(gt, dt) if metric == 'bbox' or dontcare_in_3d else None
    for c, class_name in enumerate(classes):
        for d, difficulty in enumerate(difficulties):
            data = _class_data(gt, dt, class_name, difficulty)
            for k in range(num_k):
                curves[:, c, d, k] = _curves(gt, dt, pairs, data, float(min_overlaps[k, c]),
                                             dontcare, compute_aos)
    return {'precision': curves[0], 'recall': curves[1], 'orientation': curves[2]}


def ap11(curve: np.ndarray) -> np.ndarray:
    """AP over recall 0, 0.1, ..., 1 (positions 0, 4, ..., 40), in percent; (..., 41) -> (...)."""
    total = 0.0
    for i in _AP11_POSITIONS:  # summed in the reference's order
        total = total + curve[..., i]
    return total / 11 * 100


def ap40(curve: np.ndarray) -> np.ndarray:
    """AP over recall 1/40, ..., 1 (positions 1..40), in percent; (..., 41) -> (...)."""
    total = 0.0
    for i in _AP40_POSITIONS:
        total = total + curve[..., i]
    return total / 40 * 100


# --------------------------------------------------------------------------------------------
# The evaluation as users call it
# --------------------------------------------------------------------------------------------

def kitti_eval(gt_annos: Sequence[Mapping[str, Any]], dt_annos: Sequence[Mapping[str, Any]],
               classes: Sequence[str] = ('Car', 'Pedestrian', 'Cyclist'),
               eval_types: Sequence[str] = ('bbox', 'bev', '3d', 'aos'),
               dontcare_in_3d: bool = False) -> tuple[dict[str, float], str]:
    """KITTI evaluation of detections against ground truth, frame by frame.

    Args:
        gt_annos: one dict per frame as :func:`read_label_file` returns for ``label_2`` files
            (``name``, ``truncated``, ``occluded``, ``alpha``, ``bbox``, ``dimensions`` (l, h, w),
            ``location``, ``rotation_y``).
        dt_annos: one dict per frame, the same keys plus ``score`` (``truncated``/``occluded`` not
            needed). ``alpha`` = -10 everywhere means "not predicted": AOS is then skipped.
        classes: classes to evaluate (from ``KITTI_CLASSES``).
        eval_types: any of 'bbox', 'bev', '3d', 'aos' ('aos' needs 'bbox').
        dontcare_in_3d: let DontCare regions remove false positives in BEV and 3D too, as the
            official C++ devkit does (default: 2D only, as mmdetection3d and OpenPCDet).

    Returns:
        ``(metrics, table)``: the metrics dict (percent, keys as in the module docstring) and the
        printed table (mmdetection3d's layout, with notes on anything that makes numbers
        degenerate, such as classes without ground truth).
    """
    classes = list(classes)
    if not classes:
        raise ValueError('kitti_eval: no classes to evaluate')
    min_overlaps = min_overlaps_for(classes)
    unknown = [t for t in eval_types if t not in _KEY_TYPES]
    if unknown:
        raise ValueError(f'kitti_eval: unknown eval type {unknown[0]!r}; choose from '
                         f'{list(_KEY_TYPES)}')
    if 'aos' in eval_types and 'bbox' not in eval_types:
        raise ValueError("kitti_eval: 'aos' needs 'bbox' (AOS uses the 2D matching)")
    if len(gt_annos) != len(dt_annos):
        raise ValueError(f'kitti_eval: {len(gt_annos)} ground-truth frames but '
                         f'{len(dt_annos)} detection frames')
    gt, dt = _stack(gt_annos, 'ground truth'), _stack(dt_annos, 'detections')

    notes = []
    compute_aos = 'aos' in eval_types
    # alpha = -10 means "not given" (as the reference checks); without any detection or object,
    # AOS is simply 0 like every AP.
    objects = gt.raw_name != 'DontCare'
    alpha_given = ((len(dt) == 0 or (dt.alpha != UNKNOWN_ALPHA).any())
                   and (not objects.any() or (gt.alpha[objects] != UNKNOWN_ALPHA).any()))
    if compute_aos and not alpha_given:
        compute_aos = False
        notes.append('AOS skipped: alpha is -10 (not given) in every detection or every '
                     'ground-truth object')
    if len(dt) == 0:
        notes.append(f'WARNING: there are no detections in any of the {gt.num_frames} frames: '
                     'every AP is 0')
    for c in classes:
        for d, difficulty in enumerate(DIFFICULTIES):
            if _class_data(gt, dt, c, d).num_valid_gt == 0:
                notes.append(f'{c} has no {difficulty} ground-truth objects: its {difficulty} '
                             'APs are 0 by definition')

    # results[type]: (C, 3 difficulties, 2 strict/loose) in percent, for AP11 and AP40.
    ap: dict[str, dict[str, np.ndarray]] = {'AP11': {}, 'AP40': {}}
    metrics_to_run = [m for m in METRIC_TYPES if m in eval_types]
    all_pairs = _pairwise_overlaps(gt, dt, metrics_to_run, *_relevant_masks(gt, dt, classes))
    for m, metric in enumerate(METRIC_TYPES):
        if metric not in eval_types:
            continue
        curves = _eval_class(gt, dt, classes, metric, min_overlaps[:, m, :],
                             compute_aos and metric == 'bbox', (0, 1, 2), all_pairs[metric],
                             dontcare_in_3d)
        ap['AP11'][metric] = ap11(curves['precision'])
        ap['AP40'][metric] = ap40(curves['precision'])
        if compute_aos and metric == 'bbox':
            ap['AP11']['aos'] = ap11(curves['orientation'])
            ap['AP40']['aos'] = ap40(curves['orientation'])

    metrics: dict[str, float] = {}
    for summary, by_type in ap.items():
        for metric, values in by_type.items():
            key_type = _KEY_TYPES[metric]
            for c, class_name in enumerate(classes):
                for k, strictness in enumerate(('strict', 'loose')):
                    for d, difficulty in enumerate(DIFFICULTIES):
                        metrics[f'{class_name}_{key_type}_{summary}_{difficulty}_{strictness}'] = \
                            float(values[c, d, k])
            if len(classes) > 1:
                overall = values[:, :, 0].mean(axis=0)
                for d, difficulty in enumerate(DIFFICULTIES):
                    metrics[f'Overall_{key_type}_{summary}_{difficulty}'] = float(overall[d])
    table = _format_table(ap, classes, min_overlaps, notes)
    return metrics, table


def _format_table(ap: dict[str, dict[str, np.ndarray]], classes: Sequence[str],
                  min_overlaps: np.ndarray, notes: Sequence[str]) -> str:
    """mmdetection3d's printed layout: per class and overlap set, then the class mean."""
    lines = []
    for summary, unordered in ap.items():
        # The reference prints bbox, bev, 3d, then aos.
        by_type = {t: unordered[t] for t in (*METRIC_TYPES, 'aos') if t in unordered}
        lines += ['', f'----------- {summary} Results ------------', '']
        for c, class_name in enumerate(classes):
            for k in range(min_overlaps.shape[0]):
                thresholds = ', '.join(f'{v:.2f}' for v in min_overlaps[k, :, c])
                lines.append(f'{class_name} {summary}@{thresholds}:')
                for metric, values in by_type.items():
                    digits = 2 if metric == 'aos' else 4
                    row = ', '.join(f'{v:.{digits}f}' for v in values[c, :, k])
                    lines.append(f'{_ROW_NAMES[metric]} {summary}:{row}')
        if len(classes) > 1:
            lines += ['', f'Overall {summary}@{", ".join(DIFFICULTIES)}:']
            for metric, values in by_type.items():
                digits = 2 if metric == 'aos' else 4
                row = ', '.join(f'{v:.{digits}f}' for v in values[:, :, 0].mean(axis=0))
                lines.append(f'{_ROW_NAMES[metric]} {summary}:{row}')
    if notes:
        lines += [''] + [f'note: {note}' for note in notes]
    return '\n'.join(lines) + '\n'


def _read_frame_ids(split_file: str | os.PathLike) -> list[str]:
    path = Path(split_file)
    if not path.is_file():
        raise DataError(f'split file {path} not found')
    ids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    bad = [(n, i) for n, i in enumerate(ids, start=1) if any(c.isspace() or c in '/\\' for c in i)]
    if bad:
        raise DataError(f'{path}, entry {bad[0][0]}: {bad[0][1]!r} is not a frame id '
                        '(one id such as 000123 per line)')
    if not ids:
        raise DataError(f'split file {path} lists no frames')
    return ids


def evaluate_label_dirs(gt_dir: str | os.PathLike, pred_dir: str | os.PathLike,
                        split_file: str | os.PathLike | None = None,
                        classes: Sequence[str] = ('Car', 'Pedestrian', 'Cyclist'),
                        ) -> tuple[dict[str, float], str]:
    """Evaluate a folder of KITTI detection files against a folder of ``label_2`` files.

    Args:
        gt_dir: ground-truth label files ``<frame id>.txt`` (15 fields per line).
        pred_dir: detection files with the same names (16 fields: the score last). A frame
            without a detection file has no detections; the table notes how many frames that was,
            and warns loudly when it was every frame.
        split_file: frame ids to evaluate, one per line (default: every ``.txt`` in ``gt_dir``).
            A listed frame without a ground-truth file is an error.
        classes: classes to evaluate.

    Returns:
        ``(metrics, table)`` as :func:`kitti_eval`.

    Raises:
        DataError: missing folders or ground-truth files, malformed lines (file and line named).
    """
    gt_dir, pred_dir = Path(gt_dir), Path(pred_dir)
    for folder, what in ((gt_dir, 'ground-truth label'), (pred_dir, 'prediction')):
        if not folder.is_dir():
            raise DataError(f'{what} folder {folder} not found')
    min_overlaps_for(classes)  # unknown class names fail before any file is read
    if split_file is not None:
        frame_ids = _read_frame_ids(split_file)
    else:
        frame_ids = sorted(p.stem for p in gt_dir.glob('*.txt'))
        if not frame_ids:
            raise DataError(f'{gt_dir} holds no label files (*.txt)')
    missing_gt = [i for i in frame_ids if not (gt_dir / f'{i}.txt').is_file()]
    if missing_gt:
        raise DataError(f'{len(missing_gt)} of the {len(frame_ids)} frames to evaluate have no '
                        f'ground-truth label file in {gt_dir}, e.g. {missing_gt[0]}.txt')

    gt_annos, dt_annos, no_prediction = [], [], []
    for frame_id in frame_ids:
        gt_annos.append(read_label_file(gt_dir / f'{frame_id}.txt', with_score=None))
        pred_path = pred_dir / f'{frame_id}.txt'
        if pred_path.is_file():
            dt_annos.append(read_label_file(pred_path, with_score=True))
        else:
            no_prediction.append(frame_id)
            dt_annos.append(empty_annos(with_score=True))

    metrics, table = kitti_eval(gt_annos, dt_annos, classes)
    notes = []
    if len(no_prediction) == len(frame_ids):
        notes.append(f'WARNING: {pred_dir} has no prediction file for any of the {len(frame_ids)} '
                     'frames: every AP is 0. Is it the right folder?')
    elif no_prediction:
        notes.append(f'{len(no_prediction)} of {len(frame_ids)} frames have no prediction file '
                     f'in {pred_dir} (e.g. {no_prediction[0]}.txt); they count as frames without '
                     'detections')
    for note in notes:
        print_log(note, logger='current', level=logging.WARNING)
    if notes:
        table += ''.join(f'note: {note}\n' for note in notes)
    table = f'KITTI evaluation of {len(frame_ids)} frames ({pred_dir} vs {gt_dir})\n' + table
    return metrics, table


# --------------------------------------------------------------------------------------------
# mmengine metric
# --------------------------------------------------------------------------------------------

def annos_from_camera_boxes(boxes: np.ndarray | torch.Tensor, bboxes_2d: np.ndarray | torch.Tensor,
                            scores: np.ndarray | torch.Tensor, names: Sequence[str],
                            ) -> dict[str, np.ndarray]:
    """KITTI detection annos from camera boxes.

    Args:
        boxes: (N, 7) camera boxes ``[x, y, z, l, h, w, ry]``, bottom centre.
        bboxes_2d: (N, 4) image boxes ``x1 y1 x2 y2`` (e.g. the projected 3D boxes, clipped to the
            image).
        scores: (N,) confidences.
        names: N class names.

    Returns:
        the :func:`read_label_file` layout with ``score``; ``alpha = ry - atan2(x, z)``.
    """
    boxes = np.asarray(_to_numpy(boxes), dtype=np.float64).reshape(-1, 7)
    bboxes_2d = np.asarray(_to_numpy(bboxes_2d), dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(_to_numpy(scores), dtype=np.float64).reshape(-1)
    names = np.asarray(list(names)).astype(str)
    n = len(boxes)
    if not (len(bboxes_2d) == len(scores) == len(names) == n):
        raise ValueError(f'annos_from_camera_boxes: {n} boxes, {len(bboxes_2d)} 2D boxes, '
                         f'{len(scores)} scores and {len(names)} names')
    return {
        'name': names,
        'truncated': np.full(n, -1.0),
        'occluded': np.full(n, -1, dtype=np.int64),
        'alpha': boxes[:, 6] - np.arctan2(boxes[:, 0], boxes[:, 2]),
        'bbox': bboxes_2d,
        'dimensions': boxes[:, 3:6].copy(),
        'location': boxes[:, :3].copy(),
        'rotation_y': boxes[:, 6].copy(),
        'score': scores,
    }


def _to_numpy(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return getattr(value, 'tensor', value) if not isinstance(value, np.ndarray) else value


@METRICS.register_module()
class KittiMetric(BaseMetric):
    """KITTI 2D / BEV / 3D / AOS AP (see :func:`kitti_eval`) in an mmengine evaluator.

    Each data sample provides its detections as ``pred_annos``, a dict in the
    :func:`read_label_file` layout with ``score`` (:func:`annos_from_camera_boxes` builds one from
    camera boxes), and its ground truth either as ``gt_annos`` (same layout) or through
    ``gt_label_dir`` and the sample's ``frame_id`` (str) or ``sample_idx`` (int, read as ``%06d``).

    Args:
        classes: classes to evaluate (default: the dataset's ``classes`` that KITTI knows, else
            Car, Pedestrian, Cyclist).
        gt_label_dir: folder of ``label_2`` files, when samples do not carry ``gt_annos``.
        eval_types: overlap types (see :func:`kitti_eval`).
        pred_out_dir: also write every frame's detections as a KITTI file there (a submission).
    """
    default_prefix = 'kitti'

    def __init__(self, classes: Sequence[str] | None = None, gt_label_dir: str | None = None,
                 eval_types: Sequence[str] = ('bbox', 'bev', '3d', 'aos'),
                 pred_out_dir: str | None = None, collect_device: str = 'cpu',
                 prefix: str | None = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if classes is not None:
            min_overlaps_for(classes)
        self.classes = None if classes is None else list(classes)
        self.gt_label_dir = gt_label_dir
        self.eval_types = tuple(eval_types)
        self.pred_out_dir = pred_out_dir

    def process(self, data_batch: Any, data_samples: Sequence[Any]) -> None:
        for sample in data_samples:
            pred = sample_field(sample, 'pred_annos')
            if pred is None:
                raise KeyError('KittiMetric: data sample has no pred_annos (build it with '
                               'annos_from_camera_boxes)')
            pred = {k: np.asarray(_to_numpy(v)) for k, v in dict(pred).items()}
            frame_id = self._frame_id(sample)
            gt = sample_field(sample, 'gt_annos')
            if gt is None:
                if self.gt_label_dir is None or frame_id is None:
                    raise KeyError('KittiMetric: data sample has no gt_annos; set gt_label_dir '
                                   'and give samples a frame_id or sample_idx')
                gt = read_label_file(Path(self.gt_label_dir) / f'{frame_id}.txt', with_score=None)
            gt = {k: np.asarray(_to_numpy(v)) for k, v in dict(gt).items()}
            if self.pred_out_dir is not None and frame_id is not None:
                write_label_file(Path(self.pred_out_dir) / f'{frame_id}.txt', pred, decimals=4)
            self.results.append({'gt': gt, 'pred': pred, 'frame_id': frame_id})

    @staticmethod
    def _frame_id(sample: Any) -> str | None:
        frame_id = sample_field(sample, 'frame_id')
        if frame_id is None and hasattr(sample, 'metainfo'):
            frame_id = sample.metainfo.get('frame_id')
        if frame_id is not None:
            return str(frame_id)
        index = sample_field(sample, 'sample_idx')
        if index is None and hasattr(sample, 'metainfo'):
            index = sample.metainfo.get('sample_idx')
        return None if index is None else f'{int(index):06d}'

    def compute_metrics(self, results: list[dict]) -> dict[str, float]:
        classes = self.classes
        if classes is None:
            known = [c for c in (self.dataset_meta or {}).get('classes', ()) if c in _MIN_OVERLAPS]
            classes = known or ['Car', 'Pedestrian', 'Cyclist']
        metrics, table = kitti_eval([r['gt'] for r in results], [r['pred'] for r in results],
                                    classes, self.eval_types)
        print_log('\n' + table, logger='current')
        if not any(len(r['pred']['name']) for r in results):
            warnings.warn('KittiMetric: no detections in any frame; every AP is 0', stacklevel=2)
        return metrics
