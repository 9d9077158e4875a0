"""Sparse convolutions against a dense ``conv3d`` on the same grid, and against spconv."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from perception.models.layers.sparse_voxels import SparseVoxels, make_sparse_voxels
from perception.models.ops.sparse_conv import (
    SparseConv3d,
    SparseSequential,
    SubMConv3d,
    conv_output_shape,
    sparse_conv3d,
    submanifold_conv3d,
)


def random_voxels(counts: list[int], shape: tuple[int, int, int], channels: int, seed: int,
                  dtype: torch.dtype = torch.float64) -> SparseVoxels:
    """``counts[b]`` distinct random sites in cloud ``b``, rows shuffled across the batch."""
    gen = torch.Generator().manual_seed(seed)
    cells = shape[0] * shape[1] * shape[2]
    coords = []
    for b, count in enumerate(counts):
        flat = torch.randperm(cells, generator=gen)[:count]
        z, y, x = flat // (shape[1] * shape[2]), flat // shape[2] % shape[1], flat % shape[2]
        coords.append(torch.stack([torch.full_like(z, b), z, y, x], 1))
    coords = torch.cat(coords)
    coords = coords[torch.randperm(coords.shape[0], generator=gen)]
    feats = torch.randn(coords.shape[0], channels, generator=gen, dtype=dtype)
    return make_sparse_voxels(feats, coords, shape, len(counts))


def dense_weight(weight: torch.Tensor) -> torch.Tensor:
    """spconv (C_out, kz, ky, kx, C_in) -> conv3d (C_out, C_in, kz, ky, kx)."""
    return weight.permute(0, 4, 1, 2, 3)


def gather(dense: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """(B, C, Z, Y, X) at (N, 4) coords -> (N, C)."""
    b, z, y, x = coords.unbind(1)
    return dense.permute(0, 2, 3, 4, 1)[b, z, y, x]


@pytest.mark.parametrize('kernel,dilation', [(3, 1), (1, 1), (5, 1), ((3, 1, 3), 1), (3, 2),
                                             ((3, 5, 1), (2, 1, 1))])
def test_submanifold_matches_dense_conv(kernel, dilation):
    voxels = random_voxels([60, 7, 0], (5, 6, 7), 3, seed=1)
    k = (kernel,) * 3 if isinstance(kernel, int) else kernel
    d = (dilation,) * 3 if isinstance(dilation, int) else dilation
    gen = torch.Generator().manual_seed(2)
    weight = torch.randn(4, *k, 3, generator=gen, dtype=torch.float64)
    bias = torch.randn(4, generator=gen, dtype=torch.float64)
    out = submanifold_conv3d(voxels, weight, bias, dilation)
    assert torch.equal(out.coords, voxels.coords)
    assert out.spatial_shape == voxels.spatial_shape and out.features.shape == (67, 4)
    pad = tuple(di * (ki - 1) // 2 for ki, di in zip(k, d))
    ref = F.conv3d(voxels.dense(), dense_weight(weight), bias, padding=pad, dilation=d)
    torch.testing.assert_close(out.features, gather(ref, voxels.coords), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('kernel,stride,padding,dilation', [
    (3, 2, 1, 1), (3, 1, 0, 1), (3, 1, 1, 1), (2, 2, 0, 1), (3, 2, (0, 1, 1), 1),
    ((3, 1, 1), (2, 1, 1), 0, 1), (3, 1, 2, 2), (3, 3, 1, 1), ((1, 3, 2), (1, 2, 3), (0, 1, 1), 1),
])
def test_sparse_conv_matches_dense_conv(kernel, stride, padding, dilation):
    voxels = random_voxels([80, 3, 0], (7, 8, 9), 2, seed=3)
    k = (kernel,) * 3 if isinstance(kernel, int) else kernel
    gen = torch.Generator().manual_seed(4)
    weight = torch.randn(5, *k, 2, generator=gen, dtype=torch.float64)
    bias = torch.randn(5, generator=gen, dtype=torch.float64)
    out = sparse_conv3d(voxels, weight, bias, stride, padding, dilation)
    ref = F.conv3d(voxels.dense(), dense_weight(weight), None, stride, padding, dilation)
    assert out.spatial_shape == tuple(ref.shape[2:])
    assert out.spatial_shape == conv_output_shape((7, 8, 9), kernel, stride, padding, dilation)
    # Active outputs: receptive field holds an active input = conv of the occupancy with ones.
    occupancy = (voxels.dense().abs().sum(1, keepdim=True) > 0).double()
    ones = torch.ones(1, 1, *k, dtype=torch.float64)
    active = F.conv3d(occupancy, ones, None, stride, padding, dilation)[:, 0] > 0
    expected = active.nonzero()  # row-major order = sorted linear index
    assert torch.equal(out.coords, expected)
    assert out.batch_size == 3 and not (out.coords[:, 0] == 2).any()  # the empty cloud stays empty
    torch.testing.assert_close(out.features, gather(ref, expected) + bias, rtol=1e-12, atol=1e-12)


def test_output_shape_as_spconv_kitti():
    # SECOND's strides on KITTI's grid: 41 x 1600 x 1408 -> 21 x 800 x 704 -> ... -> 2 x 200 x 176.
    shape = conv_output_shape((41, 1600, 1408), 3, 2, 1)
    assert shape == (21, 800, 704)
    shape = conv_output_shape(conv_output_shape(shape, 3, 2, 1), 3, 2, (0, 1, 1))
    assert shape == (5, 200, 176)
    assert conv_output_shape(shape, (3, 1, 1), (2, 1, 1), 0) == (2, 200, 176)


def test_empty_input():
    voxels = random_voxels([0, 0], (4, 4, 4), 3, seed=0)
    weight = torch.randn(2, 3, 3, 3, 3, dtype=torch.float64)
    bias = torch.randn(2, dtype=torch.float64)
    sub = submanifold_conv3d(voxels, weight, bias)
    reg = sparse_conv3d(voxels, weight, bias, stride=2, padding=1)
    assert sub.features.shape == (0, 2) and reg.features.shape == (0, 2)
    assert reg.coords.shape == (0, 4) and reg.spatial_shape == (2, 2, 2)


def test_gradients_match_dense_conv():
    voxels = random_voxels([40, 5], (5, 5, 6), 3, seed=5)
    gen = torch.Generator().manual_seed(6)
    for fn, kw in [(submanifold_conv3d, {}), (sparse_conv3d, dict(stride=2, padding=1))]:
        feats = voxels.features.clone().requires_grad_(True)
        weight = torch.randn(4, 3, 3, 3, 3, generator=gen, dtype=torch.float64, requires_grad=True)
        out = fn(voxels.with_features(feats), weight, None, **kw)
        probe = torch.randn(out.features.shape, generator=gen, dtype=torch.float64)
        grads = torch.autograd.grad((out.features * probe).sum(), (feats, weight))

        dense_in = voxels.with_features(feats).dense().detach().requires_grad_(True)
        ref = F.conv3d(dense_in, dense_weight(weight), None, kw.get('stride', 1),
                       kw.get('padding', 1))
        ref_out = gather(ref, out.coords)
        ref_grads = torch.autograd.grad((ref_out * probe).sum(), (dense_in, weight))
        torch.testing.assert_close(grads[0], gather(ref_grads[0], voxels.coords))
        torch.testing.assert_close(grads[1], ref_grads[1])


def test_gradcheck_tiny():
    voxels = random_voxels([6, 2], (3, 3, 3), 2, seed=7)
    weight = torch.randn(2, 3, 3, 3, 2, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(2, dtype=torch.float64, requires_grad=True)
    feats = voxels.features.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda f, w, b: submanifold_conv3d(voxels.with_features(f), w, b).features,
        (feats, weight, bias))
    assert torch.autograd.gradcheck(
        lambda f, w, b: sparse_conv3d(voxels.with_features(f), w, b, 2, 1).features,
        (feats, weight, bias))


def test_modules_shapes_init_and_errors():
    conv = SubMConv3d(4, 8, 3, bias=True, backend='torch')
    assert conv.weight.shape == (8, 3, 3, 3, 4) and conv.bias.shape == (8,)
    bound = 1 / (4 * 27) ** 0.5  # spconv's kaiming-uniform(a=sqrt(5)) bound
    assert conv.weight.abs().max() <= bound and conv.weight.abs().max() > 0.9 * bound
    down = SparseConv3d(4, 8, (3, 1, 1), stride=(2, 1, 1), backend='torch')
    assert down.weight.shape == (8, 3, 1, 1, 4) and down.bias is None
    assert set(down.state_dict()) == {'weight'}
    with pytest.raises(ValueError, match='odd'):
        SubMConv3d(4, 8, 2)
    with pytest.raises(ValueError, match='backend'):
        SubMConv3d(4, 8, backend='cuda')
    voxels = random_voxels([5], (3, 3, 3), 3, seed=0, dtype=torch.float32)
    with pytest.raises(ValueError, match='input channels'):
        conv(voxels)


def test_sparse_sequential_routes_features():
    torch.manual_seed(0)
    seq = SparseSequential(SubMConv3d(3, 4, backend='torch'), torch.nn.BatchNorm1d(4),
                           torch.nn.ReLU(), SparseConv3d(4, 2, 3, 2, 1, backend='torch'))
    seq.eval()
    voxels = random_voxels([20, 4], (6, 6, 6), 3, seed=8, dtype=torch.float32)
    out = seq(voxels)
    step = seq[2](seq[1](seq[0](voxels).features))
    ref = sparse_conv3d(voxels.with_features(step), seq[3].weight, None, 2, 1)
    assert torch.equal(out.coords, ref.coords)
    torch.testing.assert_close(out.features, ref.features)
    assert list(seq.state_dict())[:2] == ['0.weight', '1.weight']


@pytest.mark.parametrize('subm,kwargs', [
    (True, dict(kernel_size=3)), (True, dict(kernel_size=(3, 1, 3), dilation=2)),
    (False, dict(kernel_size=3, stride=2, padding=1)),
    (False, dict(kernel_size=3, stride=2, padding=(0, 1, 1))),
    (False, dict(kernel_size=(3, 1, 1), stride=(2, 1, 1))),
])
def test_spconv_parity(subm, kwargs, two_threads):
    """Forward and gradients on two threads (spconv's CPU kernels race there; the backend runs
    them on one)."""
    pytest.importorskip('spconv.pytorch')
    cls = SubMConv3d if subm else SparseConv3d
    torch.manual_seed(0)
    ours = cls(3, 5, bias=True, backend='torch', **kwargs)
    theirs = cls(3, 5, bias=True, backend='spconv', **kwargs)
    theirs.load_state_dict(ours.state_dict())
    voxels = random_voxels([300, 17], (9, 20, 18), 3, seed=9, dtype=torch.float32)
    feats_a = voxels.features.clone().requires_grad_(True)
    feats_b = voxels.features.clone().requires_grad_(True)
    out_a = ours(voxels.with_features(feats_a))
    out_b = theirs(voxels.with_features(feats_b))
    assert out_a.spatial_shape == out_b.spatial_shape
    assert torch.equal(out_a.coords, out_b.coords)
    torch.testing.assert_close(out_a.features, out_b.features, rtol=1e-5, atol=1e-5)
    probe = torch.randn(out_a.features.shape)
    (out_a.features * probe).sum().backward()
    (out_b.features * probe).sum().backward()  # needs the CPU stream patch on a CPU build
    torch.testing.assert_close(feats_a.grad, feats_b.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours.weight.grad, theirs.weight.grad, rtol=1e-4, atol=1e-4)
