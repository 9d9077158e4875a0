"""FlatFormer: flattened-window mapping, group attention, the backbone, official keys, configs."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from perception.models.layers.positional_encoding import sincos_position_encoding
from perception.models.layers.sparse_voxels import make_sparse_voxels
from perception.models.lidar3d.flatformer import (
    FLATTEN_VARIANTS,
    FlatFormer,
    FlatGroupAttention,
    convert_official_state_dict,
    flatten_window_groups,
    flattened_window_keys,
)
from perception.registry import MODELS

ROOT = Path(__file__).resolve().parent.parent
OFFICIAL_KEYS = ROOT / 'tests/data/official_keys/flatformer.json'
SMALL = dict(in_channels=32, num_heads=4, num_blocks=2, window_shape=(5, 5), group_size=16)


def random_coords(counts: list[int], shape: tuple[int, int, int], seed: int = 0) -> torch.Tensor:
    """(N, 4) unique (batch, z, y, x) per cloud, clouds in order, cloud b has counts[b] voxels."""
    gen = torch.Generator().manual_seed(seed)
    size_z, size_y, size_x = shape
    rows = []
    for b, n in enumerate(counts):
        lin = torch.randperm(size_z * size_y * size_x, generator=gen)[:n]
        rows.append(torch.stack([torch.full_like(lin, b), lin // (size_y * size_x),
                                 lin // size_x % size_y, lin % size_x], 1))
    return torch.cat(rows) if rows else torch.zeros(0, 4, dtype=torch.long)


def voxels_of(coords, shape, batch_size, channels=32, seed=1, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    feats = torch.randn(coords.shape[0], channels, generator=gen, dtype=dtype)
    return make_sparse_voxels(feats, coords, shape, batch_size)


def small_model(**overrides) -> FlatFormer:
    torch.manual_seed(0)
    return FlatFormer(**{**SMALL, **overrides}).double().eval()


def grid_order(sort_axis: str, shifted: bool = False) -> list[tuple[int, int]]:
    """(x, y) of a full 4 x 4 grid in flattened order, 2 x 2 windows."""
    y, x = torch.meshgrid(torch.arange(4), torch.arange(4), indexing='ij')
    coords = torch.stack([torch.zeros(16, dtype=torch.long), torch.zeros(16, dtype=torch.long),
                          y.flatten(), x.flatten()], 1)
    order = torch.argsort(flattened_window_keys(coords, (1, 4, 4), (2, 2), sort_axis, shifted))
    return [(int(coords[i, 3]), int(coords[i, 2])) for i in order]


def test_flattened_order_is_the_official_snake():
    # Window rows (y) one after the other, windows along x in a snake; inside a window column
    # after column in a snake; the in-window order reversed in odd window rows.
    assert grid_order('x') == [(0, 0), (0, 1), (1, 1), (1, 0), (2, 0), (2, 1), (3, 1), (3, 0),
                               (3, 2), (3, 3), (2, 3), (2, 2), (1, 2), (1, 3), (0, 3), (0, 2)]
    assert grid_order('y') == [(0, 0), (1, 0), (1, 1), (0, 1), (0, 2), (1, 2), (1, 3), (0, 3),
                               (2, 3), (3, 3), (3, 2), (2, 2), (2, 1), (3, 1), (3, 0), (2, 0)]
    # Shift by one cell: cell (0, 0) is alone in its window, then the window of x 1..2, y 0.
    assert grid_order('x', shifted=True)[:3] == [(0, 0), (1, 0), (2, 0)]


def test_shifted_groups_differ_from_unshifted():
    y, x = torch.meshgrid(torch.arange(8), torch.arange(8), indexing='ij')
    coords = torch.stack([torch.zeros(64, dtype=torch.long)] * 2 + [y.flatten(), x.flatten()], 1)

    def group_sets(axis, shifted):
        groups = flatten_window_groups(coords, 1, (1, 8, 8), (4, 4), 16, axis, shifted)
        return {frozenset(g.tolist()) for g in groups.slot_voxel.view(-1, 16)}

    plain = group_sets('x', False)
    # Unshifted 4 x 4 windows on an 8 x 8 grid: each group is exactly one window.
    windows = {frozenset(yy * 8 + xx for yy in range(y0, y0 + 4) for xx in range(x0, x0 + 4))
               for y0 in (0, 4) for x0 in (0, 4)}
    assert plain == windows
    assert group_sets('x', True) != plain
    assert group_sets('y', False) == plain  # same windows, traversed in another order
    assert group_sets('y', True) != group_sets('x', True)


@pytest.mark.parametrize('axis, shifted', FLATTEN_VARIANTS)
def test_mapping_properties(axis, shifted):
    counts, size = [0, 5, 37, 16, 0, 70], 8
    coords = random_coords(counts, (2, 20, 30))
    perm = torch.randperm(coords.shape[0], generator=torch.Generator().manual_seed(3))
    coords = coords[perm]  # rows of clouds interleaved
    groups = flatten_window_groups(coords, len(counts), (2, 20, 30), (5, 4), size, axis, shifted)
    num_slots = groups.slot_voxel.shape[0]
    assert num_slots == size * sum(math.ceil(n / size) for n in counts)
    assert groups.num_groups * size == num_slots
    # Every voxel is in exactly one valid slot, and voxel_slot is the inverse map.
    valid = groups.slot_voxel[groups.slot_valid]
    assert torch.equal(valid.sort().values, torch.arange(coords.shape[0]))
    assert torch.equal(groups.slot_voxel[groups.voxel_slot], torch.arange(coords.shape[0]))
    assert groups.slot_valid[groups.voxel_slot].all()
    # Groups never mix clouds; padding only at the end of a cloud's last group.
    batch = coords[groups.slot_voxel, 0].view(-1, size)
    slot_valid = groups.slot_valid.view(-1, size)
    for g in range(groups.num_groups):
        assert batch[g][slot_valid[g]].unique().numel() == 1
        n_valid = int(slot_valid[g].sum())
        assert n_valid >= 1 and slot_valid[g][:n_valid].all()
    cloud_of_group = torch.stack([batch[g][slot_valid[g]][0] for g in range(groups.num_groups)])
    assert torch.equal(cloud_of_group.bincount(minlength=len(counts)),
                       torch.tensor([math.ceil(n / size) for n in counts]))
    assert int((~slot_valid).sum()) == sum(-n % size for n in counts)


def test_mapping_rejects_bad_batch_index():
    coords = torch.tensor([[2, 0, 0, 0]])
    with pytest.raises(ValueError, match=r'\[0, 2\)'):
        flatten_window_groups(coords, 2, (1, 4, 4), (2, 2), 4, 'x', False)
    with pytest.raises(ValueError, match='inside the grid'):
        flatten_window_groups(torch.tensor([[0, 0, 1, 4]]), 1, (1, 4, 4), (2, 2), 4, 'x', False)


def test_group_attention_equals_brute_force():
    torch.manual_seed(0)
    channels, heads, size = 12, 3, 8
    coords = random_coords([1, 11, 0, 19], (1, 9, 9), seed=5)
    attn = FlatGroupAttention(channels, heads).double()
    x = torch.randn(coords.shape[0], channels, dtype=torch.float64)
    pe = torch.randn(coords.shape[0], channels, dtype=torch.float64)
    groups = flatten_window_groups(coords, 4, (1, 9, 9), (3, 3), size, 'y', True)
    out = attn(x, pe, groups)

    w, b = attn.in_proj.weight, attn.in_proj.bias
    q = (x + pe) @ w[:channels].T + b[:channels]
    k = (x + pe) @ w[channels:2 * channels].T + b[channels:2 * channels]
    v = x @ w[2 * channels:].T + b[2 * channels:]
    ref = torch.zeros_like(x)
    head_dim = channels // heads
    slot_valid = groups.slot_valid.view(-1, size)
    for g, members in enumerate(groups.slot_voxel.view(-1, size).unbind(0)):
        idx = members[slot_valid[g]]  # the group's voxels
        for h in range(heads):
            cols = slice(h * head_dim, (h + 1) * head_dim)
            logits = q[idx, cols] @ k[idx, cols].T / math.sqrt(head_dim)
            ref[idx, cols] = torch.softmax(logits, dim=1) @ v[idx, cols]
    ref = ref @ attn.out_proj.weight.T + attn.out_proj.bias
    assert (out - ref).abs().max() < 1e-10
    # The single voxel of cloud 0 attends only to itself: output = out_proj(v).
    lone = 0
    assert torch.allclose(out[lone], v[lone] @ attn.out_proj.weight.T + attn.out_proj.bias,
                          atol=1e-12)


def test_batch_output_equals_each_cloud_alone():
    # Empty cloud, fewer voxels than a group, exactly a group, many groups, very different sizes.
    counts, shape = [0, 3, 16, 300, 1, 45], (1, 40, 40)
    model = small_model()
    coords = random_coords(counts, shape, seed=2)
    voxels = voxels_of(coords, shape, len(counts))
    with torch.no_grad():
        out = model(voxels)
        assert torch.equal(out.coords, voxels.coords)
        assert out.features.shape == (sum(counts), 32) and torch.isfinite(out.features).all()
        for b in range(len(counts)):
            rows = coords[:, 0] == b
            alone = voxels.features[rows]
            single_coords = coords[rows].clone()
            single_coords[:, 0] = 0
            ref = model(make_sparse_voxels(alone, single_coords, shape, 1)).features
            assert ref.shape == (counts[b], 32)
            if counts[b]:
                assert (out.features[rows] - ref).abs().max().item() < 1e-12


def test_empty_and_tiny_inputs():
    model = small_model()
    empty = voxels_of(torch.zeros(0, 4, dtype=torch.long), (1, 10, 10), 2)
    out = model(empty)
    assert out.features.shape == (0, 32) and out.batch_size == 2
    one = voxels_of(torch.tensor([[0, 0, 3, 4]]), (1, 10, 10), 1)
    out = model(one)
    assert out.features.shape == (1, 32) and torch.isfinite(out.features).all()
    # Post-norm output: every row is LayerNorm-ed (mean 0, biased variance 1 at init).
    assert abs(out.features.mean().item()) < 1e-12
    assert abs(out.features.var(unbiased=False).item() - 1) < 1e-4


def test_permutation_equivariance():
    shape = (2, 24, 24)  # two height cells: z breaks ties in the order
    coords = random_coords([90, 41], shape, seed=4)
    voxels = voxels_of(coords, shape, 2)
    perm = torch.randperm(coords.shape[0], generator=torch.Generator().manual_seed(9))
    model = small_model()
    with torch.no_grad():
        out = model(voxels).features
        shuffled = model(make_sparse_voxels(voxels.features[perm], coords[perm], shape, 2))
    assert (shuffled.features - out[perm]).abs().max() < 1e-12


def test_gradients_flow_to_every_parameter():
    shape = (1, 30, 30)
    coords = random_coords([50, 7], shape, seed=6)
    model = small_model().train()
    feats = torch.randn(coords.shape[0], 32, dtype=torch.float64, requires_grad=True)
    out = model(make_sparse_voxels(feats, coords, shape, 2))
    (out.features * torch.randn_like(out.features)).sum().backward()
    assert torch.isfinite(feats.grad).all() and feats.grad.abs().sum() > 0
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


def test_position_encoding_hand_values():
    pe = sincos_position_encoding(torch.tensor([[1.0, 2.0]], dtype=torch.float64), 10, 100.0)
    # 10 channels for 2 axes: 4 per axis (wavelengths 1, 1, 10, 10), 2 zero channels.
    expected = [math.sin(1), math.cos(1), math.sin(0.1), math.cos(0.1),
                math.sin(2), math.cos(2), math.sin(0.2), math.cos(0.2), 0, 0]
    assert torch.allclose(pe[0], torch.tensor(expected, dtype=torch.float64), atol=1e-15)
    model = FlatFormer(**SMALL)
    voxels = voxels_of(torch.tensor([[0, 0, 2, 1]]), (1, 5, 5), 1, dtype=torch.float32)
    encoded = model.position_encoding(voxels, torch.float64)[0]  # x = 1 first, then y = 2
    assert encoded[0] == pytest.approx(math.sin(1)) and encoded[16] == pytest.approx(math.sin(2))


def test_bad_channels():
    with pytest.raises(ValueError, match='32-channel'):
        small_model()(voxels_of(torch.tensor([[0, 0, 1, 1]]), (1, 4, 4), 1, channels=8))


def test_published_size_and_official_keys_load_strictly():
    spec = json.loads(OFFICIAL_KEYS.read_text())
    model = MODELS.build(dict(type='FlatFormer'))  # the official Waymo defaults
    assert model.out_channels == 128
    assert sum(p.numel() for p in model.parameters()) == spec['num_parameters'] == 1059840
    state = {k: torch.zeros(shape) for k, shape in spec['keys'].items()}
    model.load_state_dict(convert_official_state_dict(state), strict=True)
    prefixed = {f'middle_encoder.{k}': v for k, v in state.items()}
    prefixed['bbox_head.shared_conv.weight'] = torch.zeros(1)  # other modules: ignored
    model.load_state_dict(convert_official_state_dict(prefixed), strict=True)
    with pytest.raises(KeyError, match='unknown official FlatFormer key'):
        convert_official_state_dict({'block_list.0.block.0.attn.bogus': torch.zeros(1)})


# Each config and the CenterPoint config whose bases it shares (written by another module).
CONFIGS = {'flatformer_demo.py': 'centerpoint/centerpoint_pillar_synthetic-lidar_demo.py',
           'flatformer_kitti-3d-3class.py': 'centerpoint/centerpoint_pillar_kitti-3d-3class.py',
           'flatformer_nus-3d.py': '_base_/models/centerpoint_nus.py'}


def load_flatformer_config(name: str):
    from perception.engine.config import load_config
    from perception.engine.errors import ConfigError
    # The detector's modules register LidarDetector, DynamicVFE, SECOND, CenterHead.
    pytest.importorskip('perception.models.lidar3d.detector')
    base = ROOT / 'configs' / CONFIGS[name]
    try:
        load_config(str(base))
    except (ConfigError, FileNotFoundError) as err:
        pytest.skip(f'base config {base.name} does not load yet: {err}')
    return load_config(str(ROOT / 'configs/flatformer' / name))


@pytest.mark.parametrize('name', sorted(CONFIGS))
def test_configs_build_the_backbone(name):
    cfg = load_flatformer_config(name)
    backbone = MODELS.build(cfg.model.backbone_3d)
    assert isinstance(backbone, FlatFormer)
    assert backbone.in_channels == cfg.model.voxel_encoder.feat_channels[-1]
    assert cfg.model.bev_backbone.in_channels == backbone.out_channels
    if name != 'flatformer_demo.py':  # the published backbone
        assert sum(p.numel() for p in backbone.parameters()) == 1059840
