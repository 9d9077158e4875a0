"""Hard and dynamic voxelisation against a per-point reference loop and spconv's PointToVoxel."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from perception.models.ops.voxelize import (
    Voxelizer,
    grid_size,
    row_major_keys,
    scatter_mean,
    unique_voxels,
    voxelize_dynamic,
    voxelize_hard,
)

KITTI_VOXEL = [0.05, 0.05, 0.1]
KITTI_RANGE = [0, -40, -3, 70.4, 40, 1]


def reference_hard(points: np.ndarray, voxel_size, pc_range, max_points: int, max_voxels: int):
    """The C kernels' loop, one point at a time (test-only): float32 constants, first come."""
    size = np.float32(voxel_size)
    low, high = np.float32(pc_range[:3]), np.float32(pc_range[3:])
    grid = [int(np.floor(g + np.float32(0.5))) for g in (high - low) / size]
    cells = np.floor((points[:, :3] - low.astype(points.dtype)) / size.astype(points.dtype))
    table: dict[tuple, int] = {}
    voxels, coords, num = [], [], []
    for i, cell in enumerate(cells):
        if not all(0 <= cell[j] < grid[j] for j in range(3)):
            continue
        key = (int(cell[2]), int(cell[1]), int(cell[0]))
        if key not in table:
            if len(table) >= max_voxels:
                continue
            table[key] = len(table)
            coords.append(key)
            num.append(0)
            voxels.append(np.zeros((max_points, points.shape[1]), dtype=points.dtype))
        v = table[key]
        if num[v] < max_points:
            voxels[v][num[v]] = points[i]
            num[v] += 1
    n = len(coords)
    voxels = np.array(voxels).reshape(n, max_points, points.shape[1])
    return voxels, np.array(coords, dtype=np.int32).reshape(n, 3), np.array(num, np.int32)


def lidar_frame(rng: np.random.Generator, n: int, dtype=np.float32) -> np.ndarray:
    """A KITTI-like cloud: spread points, dense clusters (many per voxel), points on cell edges
    and on the range limits, and points outside the range."""
    spread = np.c_[rng.uniform(-5, 75, n), rng.uniform(-45, 45, n), rng.uniform(-4, 2, n)]
    cluster = spread[: n // 3] * 0.003 + [20.0, 5.0, -1.0]
    edges = np.c_[rng.integers(0, 1409, n // 10) * 0.05, rng.integers(-800, 801, n // 10) * 0.05,
                  rng.integers(-30, 11, n // 10) * 0.1]
    xyz = np.r_[spread[n // 3:], cluster, edges]
    pts = np.c_[xyz, rng.uniform(0, 1, len(xyz))].astype(dtype)
    return pts[rng.permutation(len(pts))]


def test_grid_size_float32_and_c_rounding():
    assert grid_size(KITTI_VOXEL, KITTI_RANGE) == [1408, 1600, 40]
    # (0.5 - 0) / float32(0.2) rounds to exactly 2.5 in float32; C's round() gives 3.
    assert grid_size([0.2, 0.2, 0.2], [0, 0, 0, 0.5, 0.5, 0.5]) == [3, 3, 3]
    with pytest.raises(ValueError, match='empty grid'):
        grid_size([1, 1, 1], [0, 0, 0, 0, 1, 1])
    with pytest.raises(ValueError, match='voxel_size'):
        grid_size([1, 1], [0, 0, 0, 1, 1, 1])


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
@pytest.mark.parametrize('max_points,max_voxels', [(5, 2000), (35, 100000), (1, 500)])
def test_hard_matches_reference_loop(dtype, max_points, max_voxels):
    rng = np.random.default_rng(0)
    pts = lidar_frame(rng, 6000, dtype)
    voxels, coords, num = voxelize_hard(torch.from_numpy(pts), KITTI_VOXEL, KITTI_RANGE,
                                        max_points, max_voxels)
    ref_v, ref_c, ref_n = reference_hard(pts, KITTI_VOXEL, KITTI_RANGE, max_points, max_voxels)
    assert voxels.dtype == torch.from_numpy(pts).dtype and coords.dtype == torch.int32
    np.testing.assert_array_equal(coords.numpy(), ref_c)
    np.testing.assert_array_equal(num.numpy(), ref_n)
    np.testing.assert_array_equal(voxels.numpy(), ref_v)
    assert ref_n.max() == max_points  # the per-voxel limit was reached
    if max_voxels < 10000:
        assert len(ref_c) == max_voxels  # and the voxel limit


def test_hard_hand_built():
    # Voxel size 1 on [0, 4)^3: points open voxels (z, y, x) = (0,0,1), (0,0,0), (0,0,1) again...
    pts = torch.tensor([[1.5, 0.2, 0.1, 1.0],
                        [0.5, 0.5, 0.5, 2.0],
                        [1.9, 0.9, 0.9, 3.0],
                        [4.0, 0.0, 0.0, 4.0],  # x == max: outside
                        [1.1, 0.1, 0.1, 5.0],  # third point of voxel 0: over max_points=2
                        [3.0, 3.0, 3.0, 6.0],  # a third voxel: over max_voxels=2
                        [0.0, 0.0, 0.0, 7.0],  # on the lower range limit: inside voxel 1
                        [float('nan'), 0.0, 0.0, 8.0]])
    voxels, coords, num = voxelize_hard(pts, [1, 1, 1], [0, 0, 0, 4, 4, 4], 2, 2)
    assert coords.tolist() == [[0, 0, 1], [0, 0, 0]]
    assert num.tolist() == [2, 2]
    assert voxels[:, :, 3].tolist() == [[1.0, 3.0], [2.0, 7.0]]
    dyn = voxelize_dynamic(pts, [1, 1, 1], [0, 0, 0, 4, 4, 4])
    assert dyn.tolist() == [[0, 0, 1], [0, 0, 0], [0, 0, 1], [-1, -1, -1], [0, 0, 1],
                            [3, 3, 3], [0, 0, 0], [-1, -1, -1]]
    empty = voxelize_hard(pts[3:4], [1, 1, 1], [0, 0, 0, 4, 4, 4], 2, 2)
    assert [t.shape for t in empty] == [(0, 2, 4), (0, 3), (0,)]


def test_dynamic_unique_and_scatter_mean():
    rng = np.random.default_rng(1)
    pts = lidar_frame(rng, 5000)
    coords = voxelize_dynamic(torch.from_numpy(pts), KITTI_VOXEL, KITTI_RANGE)
    _, ref_c, _ = reference_hard(pts, KITTI_VOXEL, KITTI_RANGE, 1, 10**6)
    valid = (coords >= 0).all(dim=1)
    assert 0 < (~valid).sum() < len(pts)
    assert ((coords < 0).all(dim=1) == ~valid).all()  # out of range: the whole row is -1
    assert {tuple(c) for c in coords[valid].tolist()} == {tuple(c) for c in ref_c.tolist()}
    voxel_coords, inverse, counts = unique_voxels(coords)
    assert len(voxel_coords) == len(ref_c) and counts.sum() == valid.sum()
    assert torch.equal(voxel_coords[inverse[valid]], coords[valid])
    assert (inverse[~valid] == -1).all()
    means = scatter_mean(torch.from_numpy(pts), inverse, len(voxel_coords))
    for v in rng.choice(len(voxel_coords), 50, replace=False):  # test-only loop over voxels
        members = pts[(inverse == int(v)).numpy()]
        np.testing.assert_allclose(means[v].numpy(), members.mean(axis=0), rtol=1e-6)


def test_voxelizer_module_batches_and_modes():
    rng = np.random.default_rng(2)
    clouds = [torch.from_numpy(lidar_frame(rng, 3000)) for _ in range(2)]
    vox = Voxelizer(KITTI_VOXEL, KITTI_RANGE, max_num_points=5, max_voxels=(1000, 800),
                    backend='torch')
    voxels, coords, num = vox(clouds)
    single = [voxelize_hard(c, KITTI_VOXEL, KITTI_RANGE, 5, 1000) for c in clouds]
    assert coords.shape[1] == 4
    assert coords[:, 0].tolist() == [0] * 1000 + [1] * 1000
    assert torch.equal(coords[:, 1:], torch.cat([s[1] for s in single]))
    assert torch.equal(voxels, torch.cat([s[0] for s in single]))
    vox.eval()
    assert vox(clouds[0])[1].shape == (800, 3)
    dyn = Voxelizer(KITTI_VOXEL, KITTI_RANGE, max_num_points=-1)
    (dyn_coords,) = dyn(clouds)
    first = len(clouds[0])
    assert dyn_coords.shape == (first + len(clouds[1]), 4)
    assert dyn_coords[:, 0].tolist() == [0] * first + [1] * len(clouds[1])
    assert torch.equal(dyn_coords[first:, 1:], voxelize_dynamic(clouds[1], KITTI_VOXEL,
                                                                KITTI_RANGE))
    with pytest.raises(ValueError, match='backend'):
        Voxelizer(KITTI_VOXEL, KITTI_RANGE, backend='mmcv')


def test_spconv_point_to_voxel_parity():
    pytest.importorskip('spconv')
    from spconv.pytorch.utils import PointToVoxel

    rng = np.random.default_rng(3)
    pts = torch.from_numpy(lidar_frame(rng, 120000))
    for max_points, max_voxels in [(5, 16000), (35, 20000), (5, 200000), (1, 100)]:
        gen = PointToVoxel(vsize_xyz=KITTI_VOXEL, coors_range_xyz=KITTI_RANGE,
                           num_point_features=4, max_num_voxels=max_voxels,
                           max_num_points_per_voxel=max_points)
        ref = gen(pts)
        ours = voxelize_hard(pts, KITTI_VOXEL, KITTI_RANGE, max_points, max_voxels)
        for a, b in zip(ours, ref):
            assert a.dtype == b.dtype and torch.equal(a, b)
        assert list(gen.grid_size) == grid_size(KITTI_VOXEL, KITTI_RANGE)[::-1]
    # Half-way grid rounding agrees too.
    gen = PointToVoxel(vsize_xyz=[0.2] * 3, coors_range_xyz=[0, 0, 0, 0.5, 0.5, 0.5],
                       num_point_features=4, max_num_voxels=10, max_num_points_per_voxel=2)
    assert list(gen.grid_size) == [3, 3, 3]
    vox = Voxelizer(KITTI_VOXEL, KITTI_RANGE, max_num_points=5, max_voxels=16000)
    assert vox.uses_spconv(pts)
    torch_vox = Voxelizer(KITTI_VOXEL, KITTI_RANGE, max_num_points=5, max_voxels=16000,
                          backend='torch')
    for a, b in zip(vox(pts), torch_vox(pts)):
        assert torch.equal(a, b)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_cuda_matches_cpu():
    rng = np.random.default_rng(4)
    pts = torch.from_numpy(lidar_frame(rng, 50000))
    cpu = voxelize_hard(pts, KITTI_VOXEL, KITTI_RANGE, 5, 8000)
    gpu = voxelize_hard(pts.cuda(), KITTI_VOXEL, KITTI_RANGE, 5, 8000)
    for a, b in zip(cpu, gpu):
        assert b.is_cuda and torch.equal(a, b.cpu())


def test_voxelizer_builds_from_config():
    from perception.registry import MODELS

    vox = MODELS.build(dict(type='Voxelizer', voxel_size=KITTI_VOXEL, point_cloud_range=KITTI_RANGE,
                            max_num_points=5, max_voxels=(16000, 40000), backend='torch'))
    assert isinstance(vox, Voxelizer) and vox.grid_size == [1408, 1600, 40]
    assert vox.max_voxels == (16000, 40000)


@pytest.mark.parametrize('high', [5, 2 ** 40])  # an int64 key, and the fallback past 2**62
def test_unique_voxels_equals_torch_unique_rows(high):
    rng = np.random.default_rng(3)
    coords = torch.from_numpy(rng.integers(0, high, size=(4000, 4)))
    coords[:2000] = coords[rng.integers(0, 2000, size=2000)]  # many repeated rows
    coords[rng.choice(4000, 300, replace=False), rng.integers(0, 4, size=300)] = -1
    voxel_coords, inverse, counts = unique_voxels(coords)
    valid = (coords >= 0).all(1)
    expected, inv, cnt = torch.unique(coords[valid], dim=0, return_inverse=True,
                                      return_counts=True)
    assert torch.equal(voxel_coords, expected) and torch.equal(counts, cnt)
    assert torch.equal(inverse[valid], inv) and (inverse[~valid] == -1).all()


def test_unique_voxels_of_no_valid_point():
    voxel_coords, inverse, counts = unique_voxels(torch.full((5, 4), -1))
    assert voxel_coords.shape == (0, 4) and counts.shape == (0,)
    assert (inverse == -1).all()


def test_row_major_keys_sort_as_the_rows():
    rows = torch.tensor([[1, 0, 2], [0, 3, 4], [0, 3, 0], [1, 0, 0]])
    assert row_major_keys(rows, (4, 5)).tolist() == [22, 19, 15, 20]  # (z * 4 + y) * 5 + x
    with pytest.raises(ValueError, match='3 columns'):
        row_major_keys(rows[:, :2], (4, 5))
