"""LION 3D backbone: grouping, voxel generation, merging, the backbone's invariances, configs."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from perception.models.layers.sparse_voxels import make_sparse_voxels
from perception.models.lidar3d.lion import (
    LION,
    LIONLayer,
    PatchMerging3D,
    convert_official_state_dict,
    diffuse_voxels,
    group_index,
    merge_voxels,
    window_sort_keys,
)

ROOT = Path(__file__).resolve().parent.parent
KEYS_DIR = ROOT / 'tests/data/official_keys'
SHAPE = (16, 24, 24)
OPERATORS = {
    'mamba': dict(d_state=4, chunk_size=8),
    'rwkv': dict(n_head=2, init_values=1e-2, chunk_size=8),
    'retnet': dict(n_head=2, chunk_size=8),
}


def tiny_lion(operator: str = 'mamba') -> LION:
    torch.manual_seed(0)
    return LION(in_channels=16, layer_dims=(16,) * 4, depths=(2, 2, 2, 2),
                window_shapes=((5, 5, 8), (5, 5, 4), (5, 5, 2), (5, 5, 1)),
                group_sizes=(16, 16, 8, 8), out_window_shape=(5, 5, 2), out_group_size=8,
                operator=operator, operator_cfg=OPERATORS[operator]).eval()


def random_cloud(num: int, batch: int, seed: int, shape=SHAPE):
    g = torch.Generator().manual_seed(seed)
    z_size, y_size, x_size = shape
    lin = torch.randperm(z_size * y_size * x_size, generator=g)[:num]
    coords = torch.stack([torch.full_like(lin, batch), lin // (y_size * x_size),
                          lin // x_size % y_size, lin % x_size], 1)
    return coords, torch.randn(num, 16, generator=g)


def canonical(voxels):
    z_size, y_size, x_size = voxels.spatial_shape
    c = voxels.coords
    key = ((c[:, 0] * z_size + c[:, 1]) * y_size + c[:, 2]) * x_size + c[:, 3]
    order = torch.argsort(key)
    return c[order], voxels.features[order]


# ------------------------------------------------------------------------------ pure functions
def test_group_index_hand_computed():
    batch = torch.tensor([0, 1, 0, 0, 1, 0, 0])
    order = torch.tensor([5, 0, 2, 3, 6, 1, 4])  # cloud 0's five voxels, then cloud 1's two
    index, mask = group_index(order, batch, batch_size=3, group_size=2)
    expected = torch.tensor([[5, 0], [2, 3], [6, 7], [1, 4]])
    assert torch.equal(index, expected)
    assert torch.equal(mask, expected < 7)
    empty_index, empty_mask = group_index(order[:0], batch[:0], 2, 4)
    assert empty_index.shape == (0, 4) and empty_mask.shape == (0, 4)


def test_window_sort_keys_orders():
    # a 4 x 4 grid, 2 x 2 windows; A (y0, x0), B (y1, x0), C (y0, x2), D (y2, x0), E (y0, x1),
    # and F: cloud 1 at (y0, x0)
    coords = torch.tensor([[0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 2], [0, 0, 2, 0], [0, 0, 0, 1],
                           [1, 0, 0, 0]])
    keys = window_sort_keys(coords, (1, 4, 4), (2, 2, 1))
    # x: windows x-major (D's window x0-1 / y2-3 before C's x2-3 / y0-1), cells x-major
    assert torch.argsort(keys['x']).tolist() == [0, 1, 4, 3, 2, 5]  # A B E D C F
    # y: windows y-major, cells y-major (E at x1 before B at y1)
    assert torch.argsort(keys['y']).tolist() == [0, 4, 1, 2, 3, 5]  # A E B C D F
    # shifted by (1, 1): A alone; B, D share the window (x0-1, y2-3); E, C share (x2-3, y0-1)
    shifted = window_sort_keys(coords, (1, 4, 4), (2, 2, 1), shift=True)
    assert torch.argsort(shifted['x']).tolist() == [0, 1, 3, 4, 2, 5]  # A B D E C F


def test_diffuse_voxels_adds_only_diagonal_neighbours_of_the_strongest():
    coords = torch.tensor([[0, 1, 5, 5], [0, 1, 0, 0], [0, 2, 3, 3], [0, 0, 7, 7], [0, 0, 2, 2],
                           [1, 0, 4, 4], [1, 0, 6, 6]])
    feats = torch.tensor([[5.0], [4.0], [-1.0], [0.0], [1.0], [3.0], [2.0]])
    new_coords, new_feats = diffuse_voxels(coords, feats, (3, 8, 8), 2, diff_scale=0.5)
    # cloud 0: int(5 * 0.5) = 2 strongest (rows 0 and 1); cloud 1: int(2 * 0.5) = 1 (row 5)
    expected = []
    for dx, dy in [(-1, 1), (1, 1), (-1, -1), (1, -1)]:
        for b, z, y, x in [(0, 1, 5, 5), (0, 1, 0, 0), (1, 0, 4, 4)]:
            expected.append((b, z, min(max(y + dy, 0), 7), min(max(x + dx, 0), 7)))
    assert torch.equal(new_coords[:7], coords)
    assert sorted(map(tuple, new_coords[7:].tolist())) == sorted(expected)
    assert torch.equal(new_feats[:7], feats) and (new_feats[7:] == 0).all()
    # two offsets: only the y + 1 neighbours
    two, _ = diffuse_voxels(coords, feats, (3, 8, 8), 2, 0.5, num_offsets=2)
    assert len(two) == 7 + 2 * 3


def test_merge_voxels_sums_and_maps_back():
    coords = torch.tensor([[0, 0, 0, 0], [0, 1, 1, 1], [0, 0, 0, 2], [1, 0, 0, 0], [0, 2, 0, 0]])
    feats = torch.tensor([[1.0], [2.0], [4.0], [8.0], [16.0]])
    new_coords, merged, shape, inverse = merge_voxels(coords, feats, (3, 4, 3), (2, 2, 2))
    assert shape == (2, 2, 2)
    table = {tuple(c): f for c, f in zip(new_coords.tolist(), merged[:, 0].tolist())}
    assert table == {(0, 0, 0, 0): 3.0, (0, 0, 0, 1): 4.0, (1, 0, 0, 0): 8.0, (0, 1, 0, 0): 16.0}
    assert torch.equal(new_coords[inverse], torch.stack(
        [coords[:, 0], coords[:, 1] // 2, coords[:, 2] // 2, coords[:, 3] // 2], 1))


def test_patch_merging_with_generation_never_duplicates():
    coords, feats = random_cloud(60, 0, 3)
    coords2, feats2 = random_cloud(25, 1, 4)
    voxels = make_sparse_voxels(torch.cat([feats, feats2]), torch.cat([coords, coords2]), SHAPE,
                                2)
    torch.manual_seed(0)
    merge = PatchMerging3D(16, (1, 1, 2), diffusion=True, diff_scale=0.2).eval()
    out, inverse = merge(voxels)
    assert out.spatial_shape == (8, 24, 24)
    assert len(torch.unique(out.coords, dim=0)) == out.num_voxels  # no duplicate
    # every output voxel is a merged input voxel or a diagonal BEV neighbour of one
    src = voxels.coords
    allowed = set()
    for dx, dy in [(0, 0), (-1, 1), (1, 1), (-1, -1), (1, -1)]:
        for b, z, y, x in src.tolist():
            allowed.add((b, z // 2, min(max(y + dy, 0), 23), min(max(x + dx, 0), 23)))
    assert set(map(tuple, out.coords.tolist())) <= allowed
    # int(60 * 0.2) + int(25 * 0.2) = 17 voxels diffused: at most 4 * 17 new cells
    plain = {(b, z // 2, y, x) for b, z, y, x in src.tolist()}
    assert 0 < len(set(map(tuple, out.coords.tolist())) - plain) <= 4 * 17
    assert torch.equal(out.coords[inverse][:, [0, 2, 3]], src[:, [0, 2, 3]])


# ------------------------------------------------------------------------------ backbone
@pytest.mark.parametrize('operator', ['mamba', 'rwkv', 'retnet'])
def test_backbone_shapes_batch_independence_and_permutation(operator):
    # float64: in float32 batching changes BLAS blocking and LayerNorms of small residuals
    # amplify the rounding to ~1e-4; in float64 the results agree to ~1e-13
    model = tiny_lion(operator).double()
    c0, f0 = random_cloud(70, 0, 10)
    c1, f1 = random_cloud(9, 1, 11)  # fewer voxels than one group
    f0, f1 = f0.double(), f1.double()
    both = make_sparse_voxels(torch.cat([f0, f1]), torch.cat([c0, c1]), SHAPE, 2)
    with torch.no_grad():
        out = model(both)
        alone0 = model(make_sparse_voxels(f0, c0, SHAPE, 1))
        c1_as_0 = c1.clone()
        c1_as_0[:, 0] = 0
        alone1 = model(make_sparse_voxels(f1, c1_as_0, SHAPE, 1))
        perm = torch.randperm(79, generator=torch.Generator().manual_seed(0))
        permuted = model(make_sparse_voxels(both.features[perm], both.coords[perm], SHAPE, 2))
    assert out.spatial_shape == model.output_shape(SHAPE) == (1, 24, 24)
    assert out.features.shape[1] == model.out_channels == 16
    assert torch.isfinite(out.features).all()
    coords, feats = canonical(out)
    in_cloud0 = coords[:, 0] == 0
    a_coords, a_feats = canonical(alone0)
    b_coords, b_feats = canonical(alone1)
    assert torch.equal(coords[in_cloud0], a_coords)
    torch.testing.assert_close(feats[in_cloud0], a_feats, atol=1e-9, rtol=1e-9)
    assert torch.equal(coords[~in_cloud0][:, 1:], b_coords[:, 1:])
    torch.testing.assert_close(feats[~in_cloud0], b_feats, atol=1e-9, rtol=1e-9)
    p_coords, p_feats = canonical(permuted)
    assert torch.equal(p_coords, coords)
    torch.testing.assert_close(p_feats, feats, atol=1e-9, rtol=1e-9)
    # the output mixes information across voxels: changing one input voxel moves many others
    # (compared on the voxels both runs share: the change may alter which voxels are generated)
    changed = both.features.clone()
    changed[0] = torch.linspace(-5, 5, 16, dtype=changed.dtype)  # not a constant shift
    with torch.no_grad():
        c_coords, c_feats = canonical(model(both.with_features(changed)))
    before = {tuple(c): f for c, f in zip(coords.tolist(), feats)}
    moved = [(f - before[tuple(c)]).abs().max() > 1e-4
             for c, f in zip(c_coords.tolist(), c_feats) if tuple(c) in before]
    assert sum(moved) > 20


def test_backbone_empty_and_single_voxel_and_gradients():
    model = tiny_lion('mamba')
    empty = make_sparse_voxels(torch.zeros(0, 16), torch.zeros(0, 4, dtype=torch.long), SHAPE, 2)
    out = model(empty)
    assert out.num_voxels == 0 and out.features.shape == (0, 16)
    assert out.spatial_shape == (1, 24, 24) and out.batch_size == 2
    model.train()
    one = make_sparse_voxels(torch.randn(1, 16), torch.tensor([[1, 3, 4, 5]]), SHAPE, 2)
    out = model(one)
    assert out.num_voxels == 1 and torch.isfinite(out.features).all()
    coords, feats = random_cloud(40, 0, 5)
    feats.requires_grad_(True)
    out = model(make_sparse_voxels(feats, coords, SHAPE, 1))
    out.features.square().mean().backward()
    assert torch.isfinite(feats.grad).all() and feats.grad.abs().sum() > 0
    with pytest.raises(ValueError, match='input channels'):
        model(make_sparse_voxels(torch.randn(3, 8), coords[:3], SHAPE, 1))


def test_lion_layer_padding_does_not_leak():
    """The last group of a cloud is padded: results equal a run where the group is full of real
    voxels only in the valid part, whatever sits in the padding."""
    torch.manual_seed(0)
    layer = LIONLayer(16, (5, 5, 8), 16, ('x', 'y'), True, 'retnet', OPERATORS['retnet']).eval()
    coords, feats = random_cloud(21, 0, 7)
    voxels = make_sparse_voxels(feats, coords, SHAPE, 1)
    with torch.no_grad():
        out = layer(voxels).features
        # 21 voxels = a full group + 5: the first 16 in sort order form a sequence on their own
        order = torch.argsort(window_sort_keys(coords, SHAPE, (5, 5, 8))['x'])
        block = layer.blocks[0]
        first = block(feats[order[:16]].unsqueeze(0))[0]
        tail = block(feats[order[16:]].unsqueeze(0))[0]
    assert out.shape == feats.shape and torch.isfinite(out).all()
    # compare the first direction alone on a copy of the layer with one block
    single = LIONLayer(16, (5, 5, 8), 16, ('x',), False, 'retnet', OPERATORS['retnet']).eval()
    single.blocks[0].load_state_dict(block.state_dict())
    with torch.no_grad():
        got = single(voxels).features
    torch.testing.assert_close(got[order[:16]], first, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(got[order[16:]], tail, atol=1e-6, rtol=1e-6)


# ------------------------------------------------------------------------------ published model
def test_published_kitti_size_and_official_keys_load_strictly():
    spec = json.loads((KEYS_DIR / 'lion_mamba_kitti.json').read_text())
    model = LION()  # the published KITTI LION-Mamba
    assert sum(p.numel() for p in model.parameters()) == spec['num_parameters'] == 2_755_840
    zeros = {k: torch.zeros(shape) for k, shape in spec['keys'].items()}
    model.load_state_dict(convert_official_state_dict(zeros), strict=True)
    # an OpenPCDet detector checkpoint: only the backbone_3d entries are taken
    detector = {'backbone_3d.' + k: v for k, v in zeros.items()}
    detector['dense_head.conv_cls.weight'] = torch.zeros(2)
    model.load_state_dict(convert_official_state_dict(detector), strict=True)


def test_official_nuscenes_keys_load_strictly():
    spec = json.loads((KEYS_DIR / 'lion_mamba_nus.json').read_text())
    model = LION(in_channels=128, layer_dims=(128,) * 4)
    assert sum(p.numel() for p in model.parameters()) == spec['num_parameters'] == 10_041_856
    zeros = {k: torch.zeros(shape) for k, shape in spec['keys'].items()}
    model.load_state_dict(convert_official_state_dict(zeros), strict=True)


def test_published_rwkv_and_retnet_sizes():
    # counts of the official modules built on CPU (stubbed CUDA ops), KITTI 64-channel configs
    rwkv = LION(operator='rwkv', operator_cfg=dict(n_head=4, hidden_rate=4, init_values=1e-5))
    retnet = LION(operator='retnet', operator_cfg=dict(n_head=2, expand_k=1, expand_v=2))
    assert sum(p.numel() for p in rwkv.parameters()) == 4_331_392
    assert sum(p.numel() for p in retnet.parameters()) == 3_336_832


def test_bad_arguments():
    with pytest.raises(ValueError, match='layer_dims'):
        LION(in_channels=64, layer_dims=(64, 128, 64, 64))
    with pytest.raises(ValueError, match='window_shapes'):
        LION(window_shapes=((13, 13, 32),))
    with pytest.raises(ValueError, match='unknown linear RNN operator'):
        LION(operator='gru')


# ------------------------------------------------------------------------------ configs
@pytest.mark.parametrize('name', ['lion-mamba_kitti-3d-3class', 'lion-rwkv_kitti-3d-3class',
                                  'lion-retnet_kitti-3d-3class', 'lion-mamba_nus-3d'])
def test_configs_build_published_backbones(name):
    pytest.importorskip('perception.models.lidar3d.detector')
    from perception.engine.config import load_config
    from perception.registry import MODELS
    cfg = load_config(str(ROOT / 'configs/lion' / f'{name}.py'))
    backbone = MODELS.build(cfg.model.backbone_3d)
    assert isinstance(backbone, LION)
    vfe = cfg.model.voxel_encoder
    assert vfe.feat_channels[-1] == backbone.in_channels
    pcr, size = vfe.point_cloud_range, vfe.voxel_size
    grid = tuple(round((pcr[i + 3] - pcr[i]) / size[i]) for i in (2, 1, 0))
    assert grid in ((32, 400, 352), (32, 360, 360))
    z_out = backbone.output_shape(grid)[0]
    assert cfg.model.bev_backbone.in_channels == backbone.out_channels * z_out
