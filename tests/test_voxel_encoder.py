"""DynamicVFE against a brute-force loop over voxels, and its bad-input behaviour."""
from __future__ import annotations

import math

import pytest
import torch

from perception.models.layers.voxel_encoder import DynamicVFE, scatter_max

VOXEL = (0.5, 0.5, 1.0)
RANGE = (0.0, -2.0, -1.0, 4.0, 2.0, 1.0)  # grid 8 x 8 x 2


def _cloud(seed: int, n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xyz = torch.rand(n, 3, generator=g) * torch.tensor([5.0, 5.0, 2.6]) + torch.tensor(
        [-0.5, -2.5, -1.3])  # some points outside the range on every side
    return torch.cat([xyz, torch.rand(n, 1, generator=g)], dim=1)


def _randomised(vfe: DynamicVFE) -> DynamicVFE:
    torch.manual_seed(0)
    for layer in vfe.vfe_layers:
        bn = layer[1]
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.2, 0.2)
    return vfe.eval()


def _brute_force(vfe: DynamicVFE, clouds: list[torch.Tensor]) -> dict[tuple, torch.Tensor]:
    """Voxel (b, z, y, x) -> feature, one voxel at a time, in float64 arithmetic."""
    size = torch.tensor(VOXEL, dtype=torch.float64)
    low = torch.tensor(RANGE[:3], dtype=torch.float64)
    high = torch.tensor(RANGE[3:], dtype=torch.float64)
    layers = [(layer[0].weight.double(), layer[1]) for layer in vfe.vfe_layers]
    out = {}
    for b, cloud in enumerate(clouds):
        pts = cloud.double()
        inside = ((pts[:, :3] >= low) & (pts[:, :3] < high)).all(1)
        pts = pts[inside]
        cells = torch.floor((pts[:, :3] - low) / size).long()
        for cell in {tuple(c) for c in cells.tolist()}:
            p = pts[(cells == torch.tensor(cell)).all(1)]
            centre = (torch.tensor(cell, dtype=torch.float64) + 0.5) * size + low
            x = torch.cat([p, p[:, :3] - p[:, :3].mean(0), p[:, :3] - centre,
                           p[:, :3].norm(dim=1, keepdim=True)], dim=1)
            for i, (weight, bn) in enumerate(layers):
                y = x @ weight.T
                y = (y - bn.running_mean.double()) / torch.sqrt(bn.running_var.double() + bn.eps)
                y = torch.relu(y * bn.weight.double() + bn.bias.double())
                vmax = y.max(0).values
                x = torch.cat([y, vmax.expand_as(y)], dim=1)
            out[(b, cell[2], cell[1], cell[0])] = vmax
    return out


def test_dynamic_vfe_matches_brute_force():
    vfe = _randomised(DynamicVFE(4, (8, 6, 5), VOXEL, RANGE, with_distance=True))
    clouds = [_cloud(1, 300), _cloud(2, 200), _cloud(3, 5)]
    with torch.no_grad():
        voxels = vfe(clouds)
        ref = _brute_force(vfe, clouds)
    assert voxels.spatial_shape == (2, 8, 8) and voxels.batch_size == 3
    assert voxels.features.shape[1] == 5 and vfe.out_channels == 5
    got = {tuple(c): f for c, f in zip(voxels.coords.tolist(), voxels.features)}
    assert set(got) == set(ref)
    assert len(got) == len(voxels.coords)  # one row per voxel
    err = max(float((got[k].double() - ref[k]).abs().max()) for k in ref)
    assert err < 1e-5


def test_dynamic_vfe_layer_widths_and_pillars():
    vfe = DynamicVFE(4, (64, 64), (0.16, 0.16, 4), (0, -39.68, -3, 69.12, 39.68, 1))
    # Input 4 + 3 (cluster) + 3 (centre) = 10 features; the second layer sees 2 x 64.
    assert vfe.vfe_layers[0][0].in_features == 10 and vfe.vfe_layers[1][0].in_features == 128
    assert vfe.vfe_layers[0][0].bias is None
    bn = vfe.vfe_layers[0][1]
    assert bn.eps == 1e-3 and bn.momentum == 0.01
    assert vfe.spatial_shape == (1, 496, 432)
    voxels = vfe([torch.tensor([[10.0, 0.0, -1.0, 0.5], [10.05, 0.05, 0.5, 0.1]])])
    # Two points in one pillar: cell x = floor(10 / 0.16) = 62, y = floor(39.68 / 0.16) = 248.
    assert voxels.coords.tolist() == [[0, 0, 248, 62]]


def test_scatter_max_gradient_goes_to_the_max():
    feats = torch.tensor([[1.0, 5.0], [3.0, 2.0], [7.0, 7.0]], requires_grad=True)
    out = scatter_max(feats, torch.tensor([0, 0, 1]), 2)
    assert out.tolist() == [[3.0, 5.0], [7.0, 7.0]]
    out.sum().backward()
    assert feats.grad.tolist() == [[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]


def test_empty_and_out_of_range_clouds_give_no_voxels():
    vfe = DynamicVFE(4, (8, 8), VOXEL, RANGE).train()
    outside = torch.tensor([[10.0, 0.0, 0.0, 0.1], [-1.0, 0.0, 0.0, 0.2],
                            [1.0, 0.0, math.inf, 0.3]])
    voxels = vfe([torch.zeros((0, 4)), outside])
    assert voxels.num_voxels == 0 and voxels.features.shape == (0, 8)
    assert voxels.batch_size == 2
    # BatchNorm never saw a zero-row batch: its statistics stay finite.
    assert all(torch.isfinite(layer[1].running_mean).all() for layer in vfe.vfe_layers)
    # A batch mixing empty and non-empty clouds keeps the batch index of the non-empty one.
    voxels = vfe([torch.zeros((0, 4)), _cloud(4, 50)])
    assert voxels.num_voxels > 0 and set(voxels.coords[:, 0].tolist()) == {1}


def test_nan_points_raise_a_clear_error():
    vfe = DynamicVFE(4, (8,), VOXEL, RANGE)
    bad = _cloud(5, 20)
    bad[[2, 7, 9], 1] = math.nan
    with pytest.raises(ValueError, match=r'point cloud 1 has 3 of 20 points with NaN'):
        vfe([_cloud(6, 10), bad])
    with pytest.raises(ValueError, match=r'point cloud 0 must have shape \(P, >=4\)'):
        vfe([torch.zeros(5, 3)])
