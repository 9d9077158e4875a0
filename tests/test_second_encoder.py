"""SECOND's sparse encoder: shapes, parameter count, official keys, batch independence, spconv."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from perception.models.layers.sparse_voxels import SparseVoxels, make_sparse_voxels, sparse_to_bev
from perception.models.lidar3d.second import SparseEncoder, convert_official_state_dict
from perception.registry import MODELS

KEYS_FILE = Path(__file__).parent / 'data' / 'official_keys' / 'second_sparse_encoder.json'
KITTI = dict(in_channels=4, sparse_shape=[41, 1600, 1408])
NUS = dict(in_channels=5, sparse_shape=[41, 1024, 1024], output_channels=128,
           encoder_channels=((16, 16, 32), (32, 32, 64), (64, 64, 128), (128, 128)),
           encoder_paddings=((0, 0, 1), (0, 0, 1), (0, 0, [0, 1, 1]), (0, 0)),
           block_type='basicblock')
TINY = dict(in_channels=3, sparse_shape=[41, 24, 20], base_channels=4, output_channels=6,
            encoder_channels=((4,), (5, 5), (6, 6), (6,)),
            encoder_paddings=((1,), (1, 1), (1, 1), ((0, 1, 1),)), backend='torch')


def clustered_voxels(shape, counts, channels, seed) -> SparseVoxels:
    """LiDAR-like clusters of distinct voxels, ``counts[b]`` in cloud ``b``."""
    gen = torch.Generator().manual_seed(seed)
    coords = []
    for b, n in enumerate(counts):
        centres = torch.stack(
            [torch.randint(0, s, (n // 40 + 1,), generator=gen) for s in shape], 1)
        pts = centres[torch.randint(0, len(centres), (4 * n,), generator=gen)]
        pts = pts + torch.randint(-3, 4, pts.shape, generator=gen)
        pts = torch.minimum(pts.clamp(min=0), torch.tensor(shape) - 1)
        pts = torch.unique(pts, dim=0)[:n]
        coords.append(torch.cat([torch.full((len(pts), 1), b), pts], 1))
    coords = torch.cat(coords)
    feats = torch.randn(len(coords), channels, generator=gen)
    return make_sparse_voxels(feats, coords, shape, len(counts))


def test_kitti_shapes_and_param_count():
    model = MODELS.build(dict(type='SparseEncoder', backend='torch', **KITTI)).eval()
    # 27 * (4*16 + 16*16 + 16*32 + 2*32*32 + 32*64 + 2*64*64 + 64*64 + 2*64*64) + 3*64*128
    # conv weights + 2 * 640 BN affine: mmdetection3d's SECOND KITTI encoder has 711,872.
    assert sum(p.numel() for p in model.parameters()) == 711872
    assert model.out_channels == 128 and model.bev_channels == 256
    assert model.stage_num == 4 and model.strides == [1, 2, 4, 8]
    assert model.out_spatial_shape == (2, 200, 176)
    # The voxeliser's 40 x 1600 x 1408 KITTI grid is re-declared on sparse_shape.
    voxels = clustered_voxels((40, 1600, 1408), [300, 120], 4, seed=0)
    with torch.no_grad():
        out = model(voxels)
    assert out.spatial_shape == (2, 200, 176) and out.num_channels == 128
    assert out.batch_size == 2 and 0 < out.num_voxels < 420
    # Each output cell covers z cells [16z' - 9, 16z' + 22] and 8 x 8 (y, x) cells of the input
    # (receptive-field union of the strided convs): every output row must have an input in there.
    b, z, y, x = out.coords.unbind(1)
    ib, iz, iy, ix = voxels.coords.unbind(1)
    near = ((b[:, None] == ib) & ((iy[None] // 8 - y[:, None]).abs() <= 1)
            & ((ix[None] // 8 - x[:, None]).abs() <= 1))
    assert near.any(1).all()
    assert sparse_to_bev(out).shape == (2, 256, 200, 176)


def test_basicblock_layout_nuscenes_param_count():
    model = SparseEncoder(**NUS, backend='torch')
    # conv: 27*(5*16 + 4*16*16 + 16*32 + 4*32*32 + 32*64 + 4*64*64 + 64*128 + 4*128*128)
    # + 3*128*128; BN: 2 * (16*5 + 32*5 + 64*5 + 128*5 + 128)
    assert sum(p.numel() for p in model.parameters()) == 2694352
    assert model.strides == [2, 4, 8, 8] and model.out_spatial_shape == (2, 128, 128)
    voxels = clustered_voxels((41, 1024, 1024), [150], 5, seed=1)
    with torch.no_grad():
        out = model.eval()(voxels)
    assert out.spatial_shape == (2, 128, 128) and out.num_channels == 128


def test_official_keys_load_strictly():
    spec = json.loads(KEYS_FILE.read_text())
    model = SparseEncoder(**KITTI, backend='torch')
    assert sum(p.numel() for p in model.parameters()) == spec['num_parameters']
    state = {'middle_encoder.' + k: torch.zeros(v) for k, v in spec['keys'].items()}
    state['backbone.blocks.0.0.weight'] = torch.zeros(128, 256, 3, 3)  # other detector keys drop
    converted = convert_official_state_dict(state)
    model.load_state_dict(converted, strict=True)
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == spec['keys']


def test_convert_permutes_spconv1_layout():
    model = SparseEncoder(**KITTI, backend='torch')
    ours = model.state_dict()
    # mmcv / spconv 1.x checkpoints store (kz, ky, kx, C_in, C_out).
    old = {k: (v.permute(1, 2, 3, 4, 0) if v.dim() == 5 else v) for k, v in ours.items()}
    converted = convert_official_state_dict({'pts_middle_encoder.' + k: v for k, v in old.items()})
    for key, value in ours.items():
        assert torch.equal(converted[key], value), key
    same = convert_official_state_dict(ours)  # already spconv 2.x: unchanged
    assert all(torch.equal(same[k], v) for k, v in ours.items())
    # mmdetection3d's rule where the checkpoint carries module versions.
    meta_state = type(ours)(old)
    meta_state._metadata = {'conv_input.0': {'version': 1}}
    assert convert_official_state_dict(meta_state)['conv_input.0.weight'].shape == (16, 3, 3, 3, 4)
    meta_state._metadata = {'conv_input.0': {'version': 2}}
    assert convert_official_state_dict(meta_state)['conv_input.0.weight'].shape == (3, 3, 3, 4, 16)
    with pytest.raises(ValueError, match='layout'):
        convert_official_state_dict({'conv_input.0.weight': torch.zeros(3, 3, 3, 3, 3)})


def test_batch_independence():
    torch.manual_seed(0)
    model = SparseEncoder(**TINY).eval()
    both = clustered_voxels((41, 24, 20), [90, 12], 3, seed=2)
    with torch.no_grad():
        out = model(both)
        for b in range(2):
            rows = both.coords[:, 0] == b
            coords = both.coords[rows].clone()
            coords[:, 0] = 0
            alone = model(make_sparse_voxels(both.features[rows], coords, (41, 24, 20), 1))
            mine = out.coords[:, 0] == b
            assert torch.equal(out.coords[mine, 1:], alone.coords[:, 1:])
            torch.testing.assert_close(out.features[mine], alone.features, rtol=1e-5, atol=1e-6)
    assert (out.coords[:, 0] == 1).any()


def test_tiny_encoder_trains_and_bad_input():
    torch.manual_seed(0)
    model = SparseEncoder(**TINY)
    voxels = clustered_voxels((41, 24, 20), [60, 30], 3, seed=3)
    out = model(voxels)
    out.features.square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    with pytest.raises(ValueError, match='channels'):
        model(voxels.with_features(voxels.features[:, :2]))
    with pytest.raises(ValueError, match='fit'):
        model(make_sparse_voxels(voxels.features, voxels.coords, (42, 24, 20), 2))


def test_torch_path_matches_spconv_path(two_threads):
    pytest.importorskip('spconv.pytorch')
    torch.manual_seed(0)
    fast = SparseEncoder(**KITTI, backend='spconv').eval()
    slow = SparseEncoder(**KITTI, backend='torch').eval()
    slow.load_state_dict(fast.state_dict())
    for module in fast.modules():  # non-trivial BN statistics
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    slow.load_state_dict(fast.state_dict())
    voxels = clustered_voxels((41, 1600, 1408), [400, 150], 4, seed=4)
    # On two threads (the fixture): spconv 2.3's CPU kernels race there (outputs off by up to
    # 1.2e-2, even in float64), which the spconv backend avoids.
    with torch.no_grad():
        a, b = fast(voxels), slow(voxels)
        a64 = fast.double()(SparseVoxels(voxels.features.double(), voxels.coords,
                                         voxels.spatial_shape, voxels.batch_size))
        b64 = slow.double()(SparseVoxels(voxels.features.double(), voxels.coords,
                                         voxels.spatial_shape, voxels.batch_size))
    assert a.spatial_shape == b.spatial_shape == (2, 200, 176)
    assert torch.equal(a.coords, b.coords) and torch.equal(a64.coords, b64.coords)
    # float64: the two paths compute the same sums (measured max |diff| 2.8e-17, |x| <= 0.15).
    torch.testing.assert_close(a64.features, b64.features, rtol=0, atol=1e-12)
    # float32: measured max |diff| 1.5e-8 (threads 1 and 2, ATEN_CPU_CAPABILITY=default); 1e-5
    # leaves the margin for other kernels' summation order.
    torch.testing.assert_close(a.features, b.features, rtol=1e-5, atol=1e-5)


ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ('centerpoint_second_kitti-3d-3class.py', 'centerpoint_second_synthetic-lidar_demo.py')


def load_second_config(name: str):
    # The detector's modules register LidarDetector, DynamicVFE, SECOND, CenterHead.
    pytest.importorskip('perception.models.lidar3d.detector')
    from perception.engine.config import load_config
    return load_config(str(ROOT / 'configs/centerpoint' / name))


@pytest.mark.parametrize('name', CONFIGS)
def test_configs_chain_channels_and_grids(name):
    cfg = load_second_config(name)
    backbone = MODELS.build(cfg.model.backbone_3d)
    assert isinstance(backbone, SparseEncoder)
    assert backbone.in_channels == cfg.model.voxel_encoder.feat_channels[-1]
    assert cfg.model.bev_backbone.in_channels == backbone.bev_channels
    vfe = cfg.model.voxel_encoder
    grid = [round((vfe.point_cloud_range[i + 3] - vfe.point_cloud_range[i]) / vfe.voxel_size[i])
            for i in (2, 1, 0)]  # (Z, Y, X)
    assert [grid[0] + 1, grid[1], grid[2]] == list(backbone.sparse_shape)
    # The head's map is the grid over out_size_factor: the encoder's output (y, x).
    factor = cfg.model.head.out_size_factor
    assert backbone.out_spatial_shape[1:] == (grid[1] // factor, grid[2] // factor)
    if name.startswith('centerpoint_second_kitti'):
        assert backbone.out_spatial_shape == (2, 200, 176)
        assert sum(p.numel() for p in backbone.parameters()) == 711872 - 27 * 16 * (4 - 16)
