"""Multi-scale deformable attention against a brute-force transcription of the CUDA kernel."""
import math

import numpy as np
import pytest
import torch

from perception.models.layers.ms_deform_attn import (
    MultiScaleDeformableAttention,
    flatten_levels,
    level_start_index,
    multi_scale_deformable_attention,
)


def _bilinear_cuda(img: np.ndarray, x: float, y: float) -> np.ndarray:
    """Deformable-DETR's ms_deform_im2col_bilinear for one location; img (H, W, D)."""
    h, w = img.shape[:2]
    h_im, w_im = y * h - 0.5, x * w - 0.5
    out = np.zeros(img.shape[2])
    if not (h_im > -1 and w_im > -1 and h_im < h and w_im < w):
        return out
    h_low, w_low = math.floor(h_im), math.floor(w_im)
    h_high, w_high = h_low + 1, w_low + 1
    lh, lw = h_im - h_low, w_im - w_low
    hh, hw = 1 - lh, 1 - lw
    if h_low >= 0 and w_low >= 0:
        out += hh * hw * img[h_low, w_low]
    if h_low >= 0 and w_high <= w - 1:
        out += hh * lw * img[h_low, w_high]
    if h_high <= h - 1 and w_low >= 0:
        out += lh * hw * img[h_high, w_low]
    if h_high <= h - 1 and w_high <= w - 1:
        out += lh * lw * img[h_high, w_high]
    return out


def _brute_force(value, shapes, locs, weights):
    """Loops over every batch, query, head, level and point; returns (B, Q, M*D)."""
    value, locs, weights = (t.double().numpy() for t in (value, locs, weights))
    b, _, m, d = value.shape
    q, num_levels, p = locs.shape[1], locs.shape[3], locs.shape[4]
    starts = np.concatenate([[0], np.cumsum([h * w for h, w in shapes])])
    out = np.zeros((b, q, m, d))
    for bi in range(b):
        for qi in range(q):
            for mi in range(m):
                for li in range(num_levels):
                    h, w = shapes[li]
                    img = value[bi, starts[li]:starts[li + 1], mi].reshape(h, w, d)
                    for pi in range(p):
                        x, y = locs[bi, qi, mi, li, pi]
                        out[bi, qi, mi] += weights[bi, qi, mi, li, pi] * _bilinear_cuda(img, x, y)
    return out.reshape(b, q, m * d)


@pytest.mark.parametrize('shapes', [[(5, 7), (3, 4), (1, 6), (2, 1)], [(1, 9)], [(4, 4), (2, 2)]])
def test_core_matches_cuda_formula(shapes):
    g = torch.Generator().manual_seed(len(shapes))
    b, q, m, d, p = 2, 5, 3, 4, 3
    num_levels = len(shapes)
    s = sum(h * w for h, w in shapes)
    value = torch.randn(b, s, m, d, generator=g, dtype=torch.float64)
    # Locations spread over [-0.3, 1.3] so some fall partly or fully outside the maps.
    locs = torch.rand(b, q, m, num_levels, p, 2, generator=g, dtype=torch.float64) * 1.6 - 0.3
    weights = torch.rand(b, q, m, num_levels, p, generator=g, dtype=torch.float64)
    weights = weights / weights.sum((-1, -2), keepdim=True)
    spatial = torch.tensor(shapes, dtype=torch.long)
    out = multi_scale_deformable_attention(value, spatial, locs, weights)
    assert out.shape == (b, q, m * d)
    ref = _brute_force(value, shapes, locs, weights)
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-12)
    # float32 path agrees too.
    out32 = multi_scale_deformable_attention(value.float(), spatial, locs.float(), weights.float())
    np.testing.assert_allclose(out32.numpy(), ref, atol=1e-5)


def test_pixel_centres_and_edges():
    # One 2x3 map, values 0..5: a location on a pixel centre reads that pixel exactly; the left
    # edge of the first column (x = 0) reads half of it (the other corner is outside, zero).
    value = torch.arange(6, dtype=torch.float64).view(1, 6, 1, 1)
    spatial = torch.tensor([[2, 3]])
    locs = torch.tensor([[(1.5 / 3, 0.5 / 2), (2.5 / 3, 1.5 / 2), (0.0, 1.5 / 2), (1.0, 1.0),
                          (2.0 / 3, 1.5 / 2)]], dtype=torch.float64)  # (P=5, 2)
    locs = locs.view(1, 1, 1, 1, 5, 2).expand(1, 5, 1, 1, 5, 2).clone()
    weights = torch.eye(5, dtype=torch.float64).view(1, 5, 1, 1, 5)  # query i reads point i
    out = multi_scale_deformable_attention(value, spatial, locs, weights).view(5)
    # (1.5/3, 0.25) -> pixel (0, 1) = 1; (2.5/3, 0.75) -> (1, 2) = 5; x=0 -> 0.5 * v(1,0) = 1.5;
    # (1, 1) -> corner: 0.25 * v(1, 2) = 1.25; x between columns 1 and 2 of row 1 -> (4+5)/2.
    np.testing.assert_allclose(out.numpy(), [1.0, 5.0, 1.5, 1.25, 4.5], atol=1e-12)


def test_level_helpers():
    spatial = torch.tensor([[4, 5], [2, 3], [1, 1]])
    assert level_start_index(spatial).tolist() == [0, 20, 26]
    feats = [torch.randn(2, 3, 4, 5), torch.randn(2, 3, 2, 3), torch.randn(2, 3, 1, 1)]
    tokens, shapes = flatten_levels(feats)
    assert tokens.shape == (2, 27, 3)
    assert shapes.tolist() == spatial.tolist()
    # Row-major: token 20 + 1*3 + 2 is level 1, row 1, column 2.
    assert torch.equal(tokens[:, 25], feats[1][:, :, 1, 2])
    with pytest.raises(ValueError, match='level 1'):
        flatten_levels([torch.randn(2, 3, 4, 5), torch.randn(2, 4, 2, 3)])


def _module_with_offsets(num_levels=2, num_points=2):
    mod = MultiScaleDeformableAttention(embed_dims=4, num_heads=1, num_levels=num_levels,
                                        num_points=num_points)
    # Zero weights: offsets = bias, independent of the query.
    offsets = torch.tensor([[[1.0, 2.0], [-2.0, 0.5]], [[0.0, -1.0], [4.0, 4.0]]])
    with torch.no_grad():
        mod.sampling_offsets.bias.copy_(offsets.flatten())
    return mod


def test_reference_point_forms():
    mod = _module_with_offsets()
    spatial = torch.tensor([[4, 8], [2, 2]])  # (H, W)
    query = torch.randn(1, 1, 4)
    # 2-d: offsets in pixels of each level, divided by (W, H).
    ref2 = torch.tensor([[[[0.5, 0.25], [0.1, 0.9]]]])
    locs, weights = mod.sampling_locations(query, ref2, spatial)
    expected2 = torch.tensor([[[0.5 + 1 / 8, 0.25 + 2 / 4], [0.5 - 2 / 8, 0.25 + 0.5 / 4]],
                              [[0.1 + 0 / 2, 0.9 - 1 / 2], [0.1 + 4 / 2, 0.9 + 4 / 2]]])
    torch.testing.assert_close(locs.view(2, 2, 2), expected2)
    torch.testing.assert_close(weights, torch.full((1, 1, 1, 2, 2), 0.25))  # uniform at init
    # 4-d (cx, cy, w, h): offset / P * (w, h) / 2.
    ref4 = torch.tensor([[[[0.5, 0.5, 0.2, 0.4], [0.3, 0.6, 1.0, 0.2]]]])
    locs, _ = mod.sampling_locations(query, ref4, spatial)
    expected4 = torch.tensor([[[0.5 + 1 / 2 * 0.1, 0.5 + 2 / 2 * 0.2],
                               [0.5 - 2 / 2 * 0.1, 0.5 + 0.5 / 2 * 0.2]],
                              [[0.3 + 0.0, 0.6 - 1 / 2 * 0.1], [0.3 + 4 / 2 * 0.5,
                                                                 0.6 + 4 / 2 * 0.1]]])
    torch.testing.assert_close(locs.view(2, 2, 2), expected4)
    # 6-d (x, y, l, r, t, b): offset / P * ((l + r) / 2, (t + b) / 2).
    ref6 = torch.tensor([[[[0.5, 0.5, 0.1, 0.3, 0.2, 0.4], [0.2, 0.2, 0.0, 0.4, 0.6, 0.0]]]])
    locs, _ = mod.sampling_locations(query, ref6, spatial)
    expected6 = torch.tensor([[[0.5 + 1 / 2 * 0.2, 0.5 + 2 / 2 * 0.3],
                               [0.5 - 2 / 2 * 0.2, 0.5 + 0.5 / 2 * 0.3]],
                              [[0.2 + 0.0, 0.2 - 1 / 2 * 0.3], [0.2 + 4 / 2 * 0.2,
                                                                 0.2 + 4 / 2 * 0.3]]])
    torch.testing.assert_close(locs.view(2, 2, 2), expected6)
    with pytest.raises(ValueError, match='2, 4 or 6'):
        mod.sampling_locations(query, torch.rand(1, 1, 2, 3), spatial)


def test_initialisation_rings():
    mod = MultiScaleDeformableAttention(embed_dims=16, num_heads=8, num_levels=2, num_points=3)
    bias = mod.sampling_offsets.bias.view(8, 2, 3, 2)
    # Head 0 points right, head 1 diagonally (45 deg normalised to max-norm 1), head 2 down;
    # point k at distance k + 1; identical for every level.
    torch.testing.assert_close(bias[0, 1, 2], torch.tensor([3.0, 0.0]))
    torch.testing.assert_close(bias[1, 0, 1], torch.tensor([2.0, 2.0]))
    torch.testing.assert_close(bias[2, 0, 0], torch.tensor([0.0, 1.0]), atol=1e-6, rtol=0)
    torch.testing.assert_close(bias[5, 1, 0], torch.tensor([-1.0, -1.0]))
    assert mod.sampling_offsets.weight.abs().sum() == 0
    assert mod.attention_weights.weight.abs().sum() == 0
    assert mod.value_proj.bias.abs().sum() == 0 and mod.output_proj.bias.abs().sum() == 0
    names = {k for k, _ in mod.named_parameters()}
    assert names == {f'{n}.{t}' for n in ('sampling_offsets', 'attention_weights', 'value_proj',
                                          'output_proj') for t in ('weight', 'bias')}
    assert mod.sampling_offsets.out_features == 8 * 2 * 3 * 2
    assert mod.attention_weights.out_features == 8 * 2 * 3


def test_module_matches_core_and_padding_mask():
    torch.manual_seed(0)
    mod = MultiScaleDeformableAttention(embed_dims=8, num_heads=2, num_levels=2, num_points=2)
    for p in mod.parameters():  # non-trivial weights everywhere
        torch.nn.init.normal_(p, std=0.3)
    spatial = torch.tensor([[3, 4], [1, 2]])
    value = torch.randn(2, 14, 8)
    query = torch.randn(2, 5, 8)
    ref = torch.rand(2, 5, 2, 2)
    mask = torch.zeros(2, 14, dtype=torch.bool)
    mask[0, 10:] = True
    mask[1, :3] = True
    out = mod(query, ref, value, spatial, mask)
    # Independent composition: projected values zeroed at padding, then the brute-force core.
    v = mod.value_proj(value).masked_fill(mask[..., None], 0).view(2, 14, 2, 4)
    locs, weights = mod.sampling_locations(query, ref, spatial)
    ref_out = _brute_force(v.detach(), [(3, 4), (1, 2)], locs.detach(), weights.detach())
    ref_out = mod.output_proj(torch.from_numpy(ref_out).float())
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)
    # Padded inputs have no influence at all.
    value2 = value.clone()
    value2[mask] = 100.0
    torch.testing.assert_close(mod(query, ref, value2, spatial, mask), out)
    assert not torch.allclose(mod(query, ref, value2, spatial, None), out)
    with pytest.raises(ValueError, match='levels'):
        mod(query, ref, value[:, :12], spatial[:1])


def test_gradcheck():
    g = torch.Generator().manual_seed(3)
    shapes = torch.tensor([[3, 2], [1, 3]])
    value = torch.randn(1, 9, 2, 2, generator=g, dtype=torch.float64, requires_grad=True)
    # Keep locations away from integer pixel coordinates, where bilinear is not differentiable.
    locs = (torch.rand(1, 2, 2, 2, 2, 2, generator=g, dtype=torch.float64) * 0.8 + 0.1)
    locs.requires_grad_(True)
    weights = torch.rand(1, 2, 2, 2, 2, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda v, loc, w: multi_scale_deformable_attention(v, shapes, loc, w),
        (value, locs, weights), eps=1e-6, atol=1e-5)


def test_benchmark_reference_agrees(tmp_path):
    """tools/benchmark_msda.py times the op against a corner-gathering reference; the two agree."""
    from .conftest import run_tool
    done = run_tool('tools/benchmark_msda.py', '--height', '64', '--width', '128', '--runs', '1')
    assert done.returncode == 0, done.stderr
    rows = [line.split('|') for line in done.stdout.splitlines() if line.startswith('| encoder')
            or line.startswith('| decoder')]
    assert [r[1].strip() for r in rows] == ['encoder', 'decoder']
    # 64x128 -> levels 8x16, 4x8, 2x4, 1x2: 170 encoder queries.
    assert rows[0][2].strip() == '170'
    assert all(float(r[9]) < 1e-5 for r in rows)
