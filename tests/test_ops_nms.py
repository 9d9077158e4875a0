"""Rotated, circle and per-class NMS against greedy reference loops and hand-built cases."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from perception.models.ops.nms import batched_nms_bev, circle_nms, greedy_suppress, nms_bev

shapely = pytest.importorskip('shapely')


def shapely_iou(a: np.ndarray, b: np.ndarray) -> float:
    polys = []
    for cx, cy, dx, dy, ang in (a, b):
        c, s = math.cos(ang), math.sin(ang)
        pts = [(sx * dx / 2, sy * dy / 2) for sx, sy in [(1, -1), (1, 1), (-1, 1), (-1, -1)]]
        polys.append(shapely.Polygon([(cx + c * x - s * y, cy + s * x + c * y) for x, y in pts]))
    inter = polys[0].intersection(polys[1]).area
    return inter / (polys[0].area + polys[1].area - inter)


def reference_nms(boxes: np.ndarray, scores: np.ndarray, thr: float) -> list[int]:
    """The textbook greedy loop over pairs (test-only), IoU from shapely."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    keep: list[int] = []
    for i in order:
        if all(shapely_iou(boxes[i], boxes[j]) <= thr for j in keep):
            keep.append(i)
    return keep


def clustered_boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    """Detector-like output: jittered copies around a few objects, so NMS has work to do."""
    objects = np.c_[rng.uniform(0, 30, (8, 2)), rng.uniform(3, 4.5, 8), rng.uniform(1.5, 2, 8),
                    rng.uniform(-math.pi, math.pi, 8)]
    boxes = objects[rng.integers(0, 8, n)]
    return boxes + rng.normal(0, [0.6, 0.6, 0.3, 0.1, 0.3], (n, 5)).clip(-1, 1)


def test_greedy_semantics_hand_built():
    # A (0.9) overlaps B (0.8) with IoU 0.6; B overlaps C (0.7) with IoU 0.6; A and C do not meet.
    # B is suppressed by A, so C survives: greedy NMS, not "suppressed by any higher box".
    boxes = torch.tensor([[0.0, 0.0, 4.0, 1.0, 0.0],
                          [1.0, 0.0, 4.0, 1.0, 0.0],
                          [2.0, 0.0, 4.0, 1.0, 0.0]])
    # IoU(A, B) = IoU(B, C) = 3 / 5 = 0.6, IoU(A, C) = 2 / 6 = 1/3.
    scores = torch.tensor([0.9, 0.8, 0.7])
    assert nms_bev(boxes, scores, 0.5).tolist() == [0, 2]
    assert nms_bev(boxes, scores, 0.3).tolist() == [0]  # 1/3 > 0.3: A removes C too
    assert nms_bev(boxes, scores, 0.6).tolist() == [0, 1, 2]  # strict '>': 0.6 stays
    assert nms_bev(boxes, scores, 0.59).tolist() == [0, 2]
    assert nms_bev(boxes, scores.flip(0), 0.5).tolist() == [2, 0]
    assert nms_bev(boxes, scores, 0.5, post_max=1).tolist() == [0]
    # pre_max drops the lowest scores before NMS.
    assert nms_bev(boxes, scores, 0.5, pre_max=2).tolist() == [0]


def test_nms_matches_reference_loop():
    rng = np.random.default_rng(0)
    for n, thr in [(150, 0.1), (150, 0.5), (200, 0.7)]:
        boxes = clustered_boxes(rng, n)
        scores = rng.permutation(n) / n  # distinct scores: a unique answer
        got = nms_bev(torch.from_numpy(boxes), torch.from_numpy(scores), thr).tolist()
        ref = reference_nms(boxes, scores, thr)
        assert 8 <= len(ref) < n
        assert got == ref


def test_greedy_suppress_brute_force():
    rng = np.random.default_rng(1)
    over = torch.from_numpy(rng.random((300, 300)) < 0.02)
    removed = [False] * 300
    ref = []
    for i in range(300):
        if not removed[i]:
            ref.append(i)
            for j in range(i + 1, 300):
                removed[j] = removed[j] or bool(over[i, j])
    assert greedy_suppress(over).tolist() == ref


def test_circle_nms_centerpoint_semantics():
    centers = torch.tensor([[0.0, 0.0], [1.0, 1.0], [3.0, 0.0], [10.0, 0.0]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    # Squared distances to box 0: 2, 9, 100. CenterPoint: removed when d^2 <= thresh.
    assert circle_nms(centers, scores, 2.0).tolist() == [0, 2, 3]  # 2 <= 2: removed
    assert circle_nms(centers, scores, 1.99).tolist() == [0, 1, 2, 3]
    assert circle_nms(centers, scores, 9.0).tolist() == [0, 3]
    # The same threshold read as a plain distance: d <= 3 removes boxes 1 and 2.
    assert circle_nms(centers, scores, 3.0, squared=False).tolist() == [0, 3]
    assert circle_nms(centers, scores, 3.0).tolist() == [0, 2, 3]  # d^2 = 9 > 3
    assert circle_nms(centers, scores, 9.0, post_max=1).tolist() == [0]
    # Greedy: box 1 is removed by box 0, so it cannot remove box 4 next to it.
    centers = torch.tensor([[0.0, 0.0], [1.5, 0.0], [3.0, 0.0]])
    assert circle_nms(centers, torch.tensor([3.0, 2.0, 1.0]), 4.0).tolist() == [0, 2]


def test_circle_nms_matches_reference_loop():
    rng = np.random.default_rng(2)
    centers = rng.uniform(0, 20, (400, 2))
    scores = rng.permutation(400).astype(np.float64)
    order = np.argsort(-scores)
    removed = np.zeros(400, bool)
    ref = []
    for i_pos, i in enumerate(order):  # CenterPoint's loop
        if removed[i]:
            continue
        ref.append(int(i))
        for j in order[i_pos + 1:]:
            if (centers[i, 0] - centers[j, 0]) ** 2 + (centers[i, 1] - centers[j, 1]) ** 2 <= 4:
                removed[j] = True
    got = circle_nms(torch.from_numpy(centers), torch.from_numpy(scores), 4.0, post_max=40)
    assert len(ref) > 40
    assert got.tolist() == ref[:40]


def test_batched_nms_keeps_classes_apart():
    boxes = torch.tensor([[0.0, 0.0, 4.0, 2.0, 0.0]] * 3 + [[0.2, 0.0, 4.0, 2.0, 0.0]])
    scores = torch.tensor([0.5, 0.9, 0.7, 0.8])
    labels = torch.tensor([0, 1, 0, 1])
    # Class 0: boxes 0, 2 identical -> keep 2; class 1: 1 and 3 overlap -> keep 1.
    assert batched_nms_bev(boxes, scores, labels, 0.5).tolist() == [1, 2]
    assert nms_bev(boxes, scores, 0.5).tolist() == [1]
    assert batched_nms_bev(boxes, scores, labels, 0.5, post_max=1).tolist() == [1]
    rng = np.random.default_rng(3)
    boxes = torch.from_numpy(clustered_boxes(rng, 200))
    scores = torch.from_numpy(rng.permutation(200) / 200)
    labels = torch.from_numpy(rng.integers(0, 3, 200))
    got = batched_nms_bev(boxes, scores, labels, 0.3)
    expected = []
    for c in range(3):
        idx = (labels == c).nonzero(as_tuple=True)[0]
        expected += idx[nms_bev(boxes[idx], scores[idx], 0.3)].tolist()
    assert sorted(got.tolist()) == sorted(expected)
    assert (scores[got].diff() <= 0).all()


def test_empty_and_bad_input():
    assert nms_bev(torch.zeros(0, 5), torch.zeros(0), 0.5).shape == (0,)
    assert circle_nms(torch.zeros(0, 2), torch.zeros(0), 1.0).shape == (0,)
    assert batched_nms_bev(torch.zeros(0, 5), torch.zeros(0), torch.zeros(0), 0.5).shape == (0,)
    with pytest.raises(ValueError, match='scores'):
        nms_bev(torch.zeros(3, 5), torch.zeros(2), 0.5)
    with pytest.raises(ValueError, match=r'\(N, 5\)'):
        nms_bev(torch.zeros(3, 7), torch.zeros(3), 0.5)


def dense_reference_nms(boxes: torch.Tensor, scores: torch.Tensor, thr: float) -> torch.Tensor:
    """The previous nms_bev: the full upper-triangle IoU matrix, then the greedy walk."""
    from perception.models.ops.iou3d import pairwise_iou_upper
    order = torch.sort(scores, descending=True, stable=True)[1]
    if order.numel() == 0:
        return order
    return order[greedy_suppress(pairwise_iou_upper(boxes[order]) > thr)]


def hard_box_sets(rng: np.random.Generator) -> list[np.ndarray]:
    clustered = clustered_boxes(rng, 400)
    touching = np.array([[0.0, 0.0, 2.0, 1.0, 0.0], [2.0, 0.0, 2.0, 1.0, 0.0],
                         [0.0, 1.0, 2.0, 1.0, 0.0], [4.0, 0.0, 2.0, 1.0, 0.0]])
    duplicates = np.repeat(clustered_boxes(rng, 30), 4, axis=0)
    rotated = clustered_boxes(rng, 200)
    rotated[:, 4] = rng.uniform(-math.pi, math.pi, 200)
    spread = np.c_[rng.uniform(0, 70, (300, 2)), rng.uniform(3, 4.5, 300),
                   rng.uniform(1.5, 2, 300), rng.uniform(-math.pi, math.pi, 300)]
    return [clustered, touching, duplicates, rotated, spread, np.zeros((0, 5)),
            np.array([[1.0, 2.0, 3.0, 1.5, 0.3]])]


@pytest.mark.parametrize('thr', [0.1, 0.5, 0.7])
def test_prefiltered_nms_keeps_the_dense_indices(thr):
    rng = np.random.default_rng(int(thr * 10))
    for boxes in hard_box_sets(rng):
        boxes_t = torch.from_numpy(boxes)
        for scores in (rng.random(len(boxes)), np.round(rng.random(len(boxes)), 1)):  # with ties
            scores_t = torch.from_numpy(scores)
            got = nms_bev(boxes_t, scores_t, thr)
            ref = dense_reference_nms(boxes_t, scores_t, thr)
            assert torch.equal(got, ref), (len(boxes), thr)
    # The sets are not trivial: each group of 4 exact duplicates keeps at most one box (IoU 1).
    boxes = torch.from_numpy(hard_box_sets(np.random.default_rng(5))[2])
    kept = nms_bev(boxes, torch.arange(120.0), thr)
    assert 0 < len(kept) <= 30
    assert len(set((kept // 4).tolist())) == len(kept)


@pytest.mark.parametrize('block', [1, 7, 64])
def test_blocks_of_any_size_keep_the_dense_indices(block):
    # Small blocks make the cross-block step (a block's kept boxes removing lower-scoring boxes
    # through the x-sorted window) do most of the work; nms_bev uses 256.
    from perception.models.ops.nms import _greedy_blocks
    rng = np.random.default_rng(11 + block)
    for boxes in hard_box_sets(rng)[:5]:
        boxes_t = torch.from_numpy(boxes)
        scores_t = torch.from_numpy(np.round(rng.random(len(boxes)), 2))
        order = torch.sort(scores_t, descending=True, stable=True)[1]
        for thr in (0.1, 0.5):
            got = order[_greedy_blocks(boxes_t[order], thr, block)]
            assert torch.equal(got, dense_reference_nms(boxes_t, scores_t, thr)), (block, thr)
