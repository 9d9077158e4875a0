"""Rotated BEV / 3D overlap and IoU vs shapely polygons, Monte Carlo volumes and hand values."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from perception.models.ops.iou3d import (
    bev_iou,
    bev_overlap,
    box3d_iou,
    box3d_overlap,
    boxes3d_to_bev,
)

shapely = pytest.importorskip('shapely')


def corners_np(boxes: np.ndarray) -> np.ndarray:
    """(N, 4, 2) corners of (N, 5) rotated rectangles, counter-clockwise."""
    sx = np.array([1, 1, -1, -1]) * 0.5
    sy = np.array([-1, 1, 1, -1]) * 0.5
    lx, ly = sx * boxes[:, 2:3], sy * boxes[:, 3:4]
    c, s = np.cos(boxes[:, 4:5]), np.sin(boxes[:, 4:5])
    return np.stack([boxes[:, 0:1] + c * lx - s * ly, boxes[:, 1:2] + s * lx + c * ly], axis=-1)


def shapely_overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Reference (N,) intersection areas of paired boxes."""
    pa = shapely.polygons(corners_np(a))
    pb = shapely.polygons(corners_np(b))
    return shapely.area(shapely.intersection(pa, pb))


def clipped_overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Reference (N,) intersection areas by Sutherland-Hodgman clipping, one pair at a time.

    Used for degenerate pairs: GEOS (shapely 2.2 / GEOS 3.14) returns wrong areas for some
    exactly coincident edges (e.g. 0 for a square and its quarter turn), while clipping with a
    closed half-plane test degrades gracefully.
    """
    out = np.zeros(len(a))
    for n, (pa, pb) in enumerate(zip(corners_np(a), corners_np(b))):
        poly = list(pa)
        for k in range(4):
            p, edge = pb[k], pb[(k + 1) % 4] - pb[k]
            side = [edge[0] * (v[1] - p[1]) - edge[1] * (v[0] - p[0]) for v in poly]
            clipped = []
            for i in range(len(poly)):
                j = (i + 1) % len(poly)
                if side[i] >= 0:
                    clipped.append(poly[i])
                if (side[i] >= 0) != (side[j] >= 0):
                    clipped.append(poly[i] + side[i] / (side[i] - side[j]) * (poly[j] - poly[i]))
            poly = clipped
            if not poly:
                break
        if poly:
            x, y = np.array(poly).T
            out[n] = 0.5 * abs(x @ np.roll(y, -1) - y @ np.roll(x, -1))
    return out


def random_boxes(rng: np.random.Generator, n: int, spread: float = 2.0) -> np.ndarray:
    return np.c_[rng.uniform(-spread, spread, (n, 2)), rng.uniform(0.1, 4.0, (n, 2)),
                 rng.uniform(-math.pi, math.pi, n)]


def degenerate_pairs(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Pairs that break naive clipping: identical, quarter turns, shared and touching edges."""
    groups_a, groups_b = [], []
    base = random_boxes(rng, 200)
    groups_a.append(base)
    groups_b.append(base.copy())  # identical
    turned = base.copy()
    turned[:, 4] += rng.integers(1, 4, len(base)) * math.pi / 2
    square = base.copy()
    square[:, 3] = square[:, 2]
    groups_a += [base, square]
    groups_b += [turned, np.c_[square[:, :4], turned[:, 4]]]  # quarter turns of rects, squares
    heading = np.c_[np.cos(base[:, 4]), np.sin(base[:, 4])]
    normal = np.c_[-heading[:, 1], heading[:, 0]]
    for along, across in [(1.0, 0.0), (0.5, 0.0), (0.0, 1.0), (0.3, 1.0), (1.0, 1.0),
                          (0.0, 0.5), (0.25, 0.0)]:
        moved = base.copy()
        moved[:, :2] += heading * base[:, 2:3] * along + normal * base[:, 3:4] * across
        groups_a.append(base)
        groups_b.append(moved)
    # Same edge line, different lengths: a shorter box slid along the longer one's side.
    short = base.copy()
    short[:, 2] *= 0.5
    short[:, :2] += normal * base[:, 3:4] * 0.5 + heading * base[:, 2:3] * 0.1
    short[:, 3] = base[:, 3] * rng.uniform(0.2, 2.0, len(base))
    short[:, :2] += normal * (short[:, 3:4] / 2 - 0)
    groups_a.append(base)
    groups_b.append(short)
    # Nested: a smaller box inside, rotated with it or not.
    inner = base.copy()
    inner[:, 2:4] *= 0.3
    inner[:, 4] += rng.uniform(-math.pi, math.pi, len(base))
    groups_a.append(base)
    groups_b.append(inner)
    # Tiny perturbations of identical boxes (angles and offsets near the collinear tolerance).
    for scale in (1e-13, 1e-10, 1e-7, 1e-4):
        jitter = base.copy()
        jitter += rng.normal(0, scale, jitter.shape)
        groups_a.append(base)
        groups_b.append(jitter)
    return np.concatenate(groups_a), np.concatenate(groups_b)


def test_hand_computed_cases():
    a = torch.tensor([[0.0, 0.0, 1.0, 1.0, 0.0]] * 4, dtype=torch.float64)
    b = torch.tensor([[0.5, 0.0, 1.0, 1.0, 0.0],  # half overlap: 0.5, IoU 1/3
                      [0.0, 0.0, 1.0, 1.0, math.pi / 4],  # octagon: 2 (sqrt 2 - 1)
                      [0.0, 0.0, 2.0, 0.5, math.pi / 2],  # cross: 0.5 x 1
                      [0.1, 0.1, 0.4, 0.4, 0.3]], dtype=torch.float64)  # inside: 0.16
    overlap = bev_overlap(a, b, aligned=True)
    expected = torch.tensor([0.5, 2 * (math.sqrt(2) - 1), 0.5, 0.16], dtype=torch.float64)
    torch.testing.assert_close(overlap, expected, rtol=0, atol=1e-12)
    iou = bev_iou(a, b, aligned=True)
    torch.testing.assert_close(iou, torch.tensor([1 / 3, 2 * (math.sqrt(2) - 1) / (2 - 2 * (
        math.sqrt(2) - 1)), 0.5 / 1.5, 0.16], dtype=torch.float64), rtol=0, atol=1e-12)
    iof = bev_iou(b[:1], a[:1], mode='iof')
    assert iof.item() == pytest.approx(0.5, abs=1e-12)


def test_random_pairs_match_shapely():
    rng = np.random.default_rng(0)
    a, b = random_boxes(rng, 3000), random_boxes(rng, 3000)
    ref = shapely_overlap(a, b)
    got = bev_overlap(torch.from_numpy(a), torch.from_numpy(b), aligned=True).numpy()
    assert (ref > 0).mean() > 0.5  # the test exercises real overlaps
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-10)


def test_matrix_matches_aligned_and_shapely():
    rng = np.random.default_rng(1)
    a, b = random_boxes(rng, 60, spread=5), random_boxes(rng, 70, spread=5)
    mat = bev_overlap(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    ia, ib = np.meshgrid(np.arange(60), np.arange(70), indexing='ij')
    ref = shapely_overlap(a[ia.ravel()], b[ib.ravel()]).reshape(60, 70)
    assert 0.1 < (ref > 0).mean() < 0.9  # both the prefilter and the clipping are exercised
    np.testing.assert_allclose(mat, ref, rtol=0, atol=1e-10)
    iou = bev_iou(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    area_a, area_b = a[:, 2] * a[:, 3], b[:, 2] * b[:, 3]
    np.testing.assert_allclose(iou, ref / (area_a[:, None] + area_b[None] - ref), atol=1e-10)


def test_clipping_reference_matches_shapely():
    rng = np.random.default_rng(7)
    a, b = random_boxes(rng, 300), random_boxes(rng, 300)
    np.testing.assert_allclose(clipped_overlap(a, b), shapely_overlap(a, b), rtol=0, atol=1e-10)


@pytest.mark.parametrize('seed', [2, 21])
def test_degenerate_pairs_match_clipping(seed):
    rng = np.random.default_rng(seed)
    a, b = degenerate_pairs(rng)
    # Far from the origin too (KITTI x up to 70 m): rounding of the centres must not matter.
    offset = rng.uniform(-80, 80, (1, 2)) * (seed % 2)
    a[:, :2] += offset
    b[:, :2] += offset
    ref = clipped_overlap(a, b)
    got = bev_overlap(torch.from_numpy(a), torch.from_numpy(b), aligned=True).numpy()
    err = np.abs(got - ref)
    # Exact up to rounding, except nearly parallel edges (the jittered copies, the last 800
    # pairs): there the crossing point of two edges is ill-conditioned, in shapely as here.
    assert err[:-800].max() < 1e-10
    assert (err[-800:] / np.maximum(ref[-800:], 1)).max() < 1e-7


def test_identical_touching_nested_and_zero_size():
    rng = np.random.default_rng(3)
    boxes = torch.from_numpy(random_boxes(rng, 500) * [50, 50, 1, 1, 1])
    iou = bev_iou(boxes, boxes, aligned=True)
    assert (iou - 1).abs().max() <= 1e-9
    diag = torch.diagonal(bev_iou(boxes, boxes))
    assert (diag - 1).abs().max() <= 1e-9
    # 180 degree turn: the same rectangle.
    flipped = boxes.clone()
    flipped[:, 4] += math.pi
    assert (bev_iou(boxes, flipped, aligned=True) - 1).abs().max() <= 1e-9
    # Neighbours along the heading and sideways: touching, IoU exactly 0.
    heading = torch.stack([boxes[:, 4].cos(), boxes[:, 4].sin()], dim=1)
    normal = torch.stack([-heading[:, 1], heading[:, 0]], dim=1)
    for shift in (heading * boxes[:, 2:3], normal * boxes[:, 3:4], -heading * boxes[:, 2:3]):
        moved = boxes.clone()
        moved[:, :2] += shift
        assert bev_iou(boxes, moved, aligned=True).abs().max() <= 1e-9
    # Nested, concentric with the same heading: IoU is the area ratio.
    inner = boxes.clone()
    inner[:, 2] *= 0.5
    inner[:, 3] *= 0.8
    torch.testing.assert_close(bev_iou(boxes, inner, aligned=True),
                               torch.full((500,), 0.4, dtype=torch.float64), rtol=0, atol=1e-12)
    # Zero-size boxes: 0, never NaN.
    zero = boxes.clone()
    zero[::2, 2] = 0
    zero[1::2, 2:4] = 0
    for x, y in [(zero, boxes), (boxes, zero), (zero, zero)]:
        out = bev_iou(x, y)
        assert torch.isfinite(out).all() and out.abs().max() == 0


def test_3d_matches_monte_carlo():
    rng = np.random.default_rng(4)
    n = 12
    a = np.c_[rng.uniform(-1, 1, (n, 3)), rng.uniform(1, 3, (n, 3)), rng.uniform(-3, 3, n)]
    b = np.c_[a[:, :3] + rng.uniform(-1, 1, (n, 3)), rng.uniform(1, 3, (n, 3)),
              rng.uniform(-3, 3, n)]
    vol = box3d_overlap(torch.from_numpy(a), torch.from_numpy(b), aligned=True).numpy()
    samples = 200_000
    for i in range(n):
        # Uniform points in box a (LiDAR: bottom centre, z up), counted inside box b.
        local = rng.uniform(-0.5, 0.5, (samples, 3)) * a[i, 3:6]
        c, s = math.cos(a[i, 6]), math.sin(a[i, 6])
        pts = np.c_[a[i, 0] + c * local[:, 0] - s * local[:, 1],
                    a[i, 1] + s * local[:, 0] + c * local[:, 1],
                    a[i, 2] + a[i, 5] / 2 + local[:, 2]]
        d = pts - b[i, :3]
        c, s = math.cos(b[i, 6]), math.sin(b[i, 6])
        u, v = c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1]
        inside = (np.abs(u) <= b[i, 3] / 2) & (np.abs(v) <= b[i, 4] / 2) & (d[:, 2] >= 0) & (
            d[:, 2] <= b[i, 5])
        frac = inside.mean()
        va = np.prod(a[i, 3:6])
        sigma = va * math.sqrt(max(frac * (1 - frac), 1e-6) / samples)
        assert abs(vol[i] - frac * va) < 5 * sigma + 1e-9, (i, vol[i], frac * va)
    iou = box3d_iou(torch.from_numpy(a), torch.from_numpy(b), aligned=True).numpy()
    va, vb = np.prod(a[:, 3:6], 1), np.prod(b[:, 3:6], 1)
    np.testing.assert_allclose(iou, vol / (va + vb - vol), atol=1e-12)


def test_3d_height_overlap_and_camera_frame():
    # LiDAR: same footprint, z ranges [0, 2] and [1, 4] -> 1 x 4 x 1 = 4; union 8 + 12 - 4.
    a = torch.tensor([[0.0, 0.0, 0.0, 2.0, 2.0, 2.0, 0.3]], dtype=torch.float64)
    b = torch.tensor([[0.0, 0.0, 1.0, 2.0, 2.0, 3.0, 0.3]], dtype=torch.float64)
    assert box3d_overlap(a, b).item() == pytest.approx(4.0, abs=1e-12)
    assert box3d_iou(a, b).item() == pytest.approx(4 / 16, abs=1e-12)
    # Camera: y down, box spans [y - h, y]: [0, 1.5] and [1, 2] -> 0.5 x 3 x 1.5.
    ca = torch.tensor([[0.0, 1.5, 10.0, 3.0, 1.5, 1.5, 0.0]], dtype=torch.float64)
    cb = torch.tensor([[0.0, 2.0, 10.0, 3.0, 1.0, 1.5, 0.0]], dtype=torch.float64)
    assert box3d_overlap(ca, cb, frame='camera').item() == pytest.approx(0.5 * 4.5, abs=1e-12)
    # The same boxes read as LiDAR boxes would use z and column 5 for height: a different answer.
    assert box3d_overlap(ca, cb, frame='lidar').item() != pytest.approx(0.5 * 4.5)


def lidar_to_camera(boxes: np.ndarray) -> np.ndarray:
    """Ideal KITTI axes: x_cam = -y_lidar, y_cam = -z_lidar, z_cam = x_lidar; ry = -yaw - pi/2.

    Bottom centre stays the bottom centre (y_cam is the bottom because +y points down).
    """
    x, y, z, lng, w, h, yaw = boxes.T
    return np.c_[-y, -z, x, lng, h, w, -yaw - math.pi / 2]


def test_camera_and_lidar_frames_agree():
    rng = np.random.default_rng(5)
    a = np.c_[rng.uniform(-3, 3, (80, 2)), rng.uniform(-1, 1, 80), rng.uniform(1, 4, (80, 3)),
              rng.uniform(-math.pi, math.pi, 80)]
    b = np.c_[rng.uniform(-3, 3, (90, 2)), rng.uniform(-1, 1, 90), rng.uniform(1, 4, (90, 3)),
              rng.uniform(-math.pi, math.pi, 90)]
    lidar = box3d_iou(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    camera = box3d_iou(torch.from_numpy(lidar_to_camera(a)), torch.from_numpy(lidar_to_camera(b)),
                       frame='camera').numpy()
    assert (lidar > 0).mean() > 0.1
    np.testing.assert_allclose(camera, lidar, atol=1e-10)
    # The camera BEV is the LiDAR BEV mirrored (x_cam = -y_lidar, z_cam = x_lidar).
    bev_cam = boxes3d_to_bev(torch.from_numpy(lidar_to_camera(a)), 'camera').numpy()
    ref = shapely_overlap(np.c_[a[:, [0, 1, 3, 4, 6]]], np.c_[a[:, [0, 1, 3, 4, 6]]])
    np.testing.assert_allclose(shapely_overlap(bev_cam, bev_cam), ref, atol=1e-10)
    heading_cam = np.c_[np.cos(bev_cam[:, 4]), np.sin(bev_cam[:, 4])]  # in (x_cam, z_cam)
    heading_lidar = np.c_[np.cos(a[:, 6]), np.sin(a[:, 6])]  # in (x_lidar, y_lidar)
    np.testing.assert_allclose(heading_cam, np.c_[-heading_lidar[:, 1], heading_lidar[:, 0]],
                               atol=1e-12)


def test_dtype_device_errors_and_gradients():
    a = torch.tensor([[0.0, 0.0, 1.0, 1.0, 0.0]], dtype=torch.float32)
    assert bev_iou(a, a).dtype == torch.float32
    assert bev_iou(a, a.double()).dtype == torch.float64
    assert bev_iou(a, a[:0]).shape == (1, 0)
    with pytest.raises(ValueError, match=r'\(N, 5\)'):
        bev_iou(a[:, :4], a)
    with pytest.raises(ValueError, match='aligned'):
        bev_iou(a, a.repeat(2, 1), aligned=True)
    with pytest.raises(ValueError, match='frame'):
        box3d_iou(torch.zeros(1, 7), torch.zeros(1, 7), frame='image')
    with pytest.raises(ValueError, match='>= 0'):
        bev_iou(torch.tensor([[0.0, 0.0, -1.0, 1.0, 0.0]]), a)
    # Smooth almost everywhere: analytic gradients of a generic pair match finite differences.
    x = torch.tensor([[0.1, 0.2, 2.0, 1.0, 0.3]], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([[0.6, -0.1, 1.5, 1.2, -0.4]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda p, q: bev_iou(p, q, aligned=True), (x, y))


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_cuda_matches_cpu():
    rng = np.random.default_rng(6)
    a, b = random_boxes(rng, 300), random_boxes(rng, 400)
    cpu = bev_iou(torch.from_numpy(a), torch.from_numpy(b))
    gpu = bev_iou(torch.from_numpy(a).cuda().float(), torch.from_numpy(b).cuda().float())
    assert gpu.is_cuda and gpu.dtype == torch.float32
    torch.testing.assert_close(gpu.cpu().double(), cpu, rtol=0, atol=1e-6)


def test_pairwise_iou_upper_is_the_upper_triangle():
    from perception.models.ops.iou3d import pairwise_iou_upper

    rng = np.random.default_rng(8)
    boxes = torch.from_numpy(random_boxes(rng, 120, spread=4))
    full = bev_iou(boxes, boxes)
    assert torch.equal(pairwise_iou_upper(boxes), full.triu(1))
    assert (full.triu(1) > 0).sum() > 500
