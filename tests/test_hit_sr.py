"""HiT-SR (HiT-SIR / HiT-SNG / HiT-SRF): sizes, official key mapping, SCC numerics, learning."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from perception.models.layers.padding import reflect_pad_to_multiple
from perception.models.super_resolution import DIV2K_RGB_MEAN, hit_sr
from perception.models.super_resolution.hit_sr import (
    HiTSR,
    SpatialChannelCorrelation,
    cell_averaged_position_bias,
    convert_official_state_dict,
)
from perception.registry import MODELS

KEYS_DIR = Path(__file__).parent / 'data' / 'official_keys'

# Trainable parameters of the official modules (basicsr/archs/hit_*_arch.py at the published
# settings), counted in a separate environment that builds them.
OFFICIAL_PARAMS = {
    ('sir', 2): 772_064, ('sir', 3): 780_179, ('sir', 4): 791_540,
    ('sng', 2): 1_012_584, ('sng', 3): 1_020_699, ('sng', 4): 1_032_060,
    ('srf', 2): 846_944, ('srf', 3): 855_059, ('srf', 4): 866_420,
}


def tiny_hit(variant: str, scale: int = 2, **kwargs) -> HiTSR:
    """A small HiT-SR with the published structure: windows 4 and 8 on base 8.

    32 channels keep the position-bias MLP (width C/16) at 2: at width 1 its LayerNorm outputs a
    constant.
    """
    cfg = dict(embed_dim=32, depths=(2,), num_heads=(2,), window_ratios=(0.5, 1))
    cfg.update(kwargs)
    return HiTSR(scale=scale, variant=variant, **cfg)


@pytest.mark.parametrize('variant,scale', sorted(OFFICIAL_PARAMS))
def test_published_parameter_counts(variant, scale):
    model = getattr(hit_sr, f'hit_{variant}_x{scale}')()
    assert sum(p.numel() for p in model.parameters()) == OFFICIAL_PARAMS[(variant, scale)]
    assert model.scale == scale
    assert model.windows == [4, 8, 16, 32, 48, 64]


def test_registered_types_build():
    for name, cls in (('HiTSIR', 'sir'), ('HiTSNG', 'sng'), ('HiTSRF', 'srf')):
        model = MODELS.build(dict(type=name, scale=3, embed_dim=16, depths=(1,), num_heads=(2,)))
        assert model.variant == cls and model.scale == 3


@pytest.mark.parametrize('variant', ['sir', 'sng', 'srf'])
@pytest.mark.parametrize('size', [(5, 3), (13, 30), (17, 8)])
def test_any_input_size(variant, size):
    torch.manual_seed(0)
    model = tiny_hit(variant, scale=3).eval()
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        y = model(x)
        single = model(x[1:])
    assert y.shape == (2, 3, size[0] * 3, size[1] * 3)
    assert torch.isfinite(y).all()
    # Padding is per image: batching changes nothing.
    torch.testing.assert_close(y[1:], single, atol=1e-5, rtol=1e-5)


def test_training_mode_with_dropout_reaches_every_parameter():
    torch.manual_seed(0)
    for variant in ('sir', 'sng', 'srf'):
        model = tiny_hit(variant, drop_rate=0.1, value_drop_rate=0.1, drop_path_rate=0.1).train()
        model(torch.randn(2, 3, 12, 9)).square().mean().backward()
        unused = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
        assert not unused, f'{variant}: no gradient reaches {unused}'


def test_published_model_on_odd_size():
    model = hit_sr.hit_sir_x2().eval()
    with torch.no_grad():
        y = model(torch.rand(1, 3, 9, 21))
    assert y.shape == (1, 3, 18, 42)


def test_reflect_pad_matches_numpy_reflect():
    # numpy's 'reflect' repeats the reflection for pads longer than the axis, as ours does.
    rng = np.random.default_rng(0)
    for h, w, multiple in [(1, 2, 4), (3, 5, 16), (9, 10, 8), (5, 64, 64)]:
        x = rng.standard_normal((1, 2, h, w)).astype(np.float32)
        ours = reflect_pad_to_multiple(torch.from_numpy(x), multiple).numpy()
        ref = np.pad(x, ((0, 0), (0, 0), (0, -h % multiple), (0, -w % multiple)), mode='reflect')
        np.testing.assert_array_equal(ours, ref)


def test_bad_input_is_rejected():
    model = tiny_hit('sir')
    with pytest.raises(ValueError, match=r'expects \(B, 3, H, W\)'):
        model(torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError, match='not a multiple of base window'):
        SpatialChannelCorrelation(16, window=12, base_window=8, num_heads=2)


# ----------------------------------------------------------------------------------------------
# Official checkpoints
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize('variant', ['sir', 'sng', 'srf'])
def test_official_keys_load_strictly(variant):
    spec = json.loads((KEYS_DIR / f'hit_{variant}_x4.json').read_text())
    official = {k: torch.zeros(shape) for k, shape in spec['keys'].items()}
    model = getattr(hit_sr, f'hit_{variant}_x4')()
    # The official files hold the weights under 'params'.
    mapped = convert_official_state_dict({'params': official})
    model.load_state_dict(mapped, strict=True)
    assert sum(p.numel() for p in model.parameters()) == spec['num_params']
    assert all(torch.count_nonzero(p) == 0 for p in model.parameters())
    # Only the recomputed relative-position indices are dropped.
    dropped = set(official) - {k for k in official if not k.endswith('relative_position_index')}
    assert len(mapped) == len(official) - len(dropped)
    assert len(dropped) == (24 if variant == 'sng' else 0)


def test_convert_rejects_unknown_keys():
    with pytest.raises(KeyError, match='absolute_pos_embed'):
        convert_official_state_dict({'absolute_pos_embed': torch.zeros(1)})


def test_convert_prefers_params_over_ema():
    a, b = torch.zeros(2), torch.ones(2)
    both = {'params': {'norm.weight': a}, 'params_ema': {'norm.weight': b}}
    assert convert_official_state_dict(both)['norm.weight'] is a
    out = convert_official_state_dict(both, param_key='params_ema')
    assert out['norm.weight'] is b


# ----------------------------------------------------------------------------------------------
# SCC against the paper's equations, written out slowly
# ----------------------------------------------------------------------------------------------
def reference_scc(scc: SpatialChannelCorrelation, x: torch.Tensor) -> torch.Tensor:
    """SCC of ``x`` ``(B, C, Hp, Wp)`` window by window, pair by pair (float64)."""
    w, b, heads, d = scc.window, scc.base, scc.num_heads, scc.head_dim
    s = w // b
    qv = scc.dfe(x).permute(0, 2, 3, 1)                                   # (B, Hp, Wp, Ca)
    half = heads * d
    lin_w = scc.spatial_linear.weight[0]
    lin_b = scc.spatial_linear.bias[0]
    out = torch.zeros(*qv.shape[:3], 2 * half, dtype=x.dtype)
    # Position bias of every (query, key) pair from the MLP of their offset.
    coords = [(i, j) for i in range(w) for j in range(w)]
    offsets = torch.tensor([[qi - ki, qj - kj] for qi, qj in coords for ki, kj in coords],
                           dtype=x.dtype)
    pair_bias = scc.pos_bias(offsets).view(w * w, w * w, heads)
    for n in range(qv.shape[0]):
        for top in range(0, qv.shape[1], w):
            for left in range(0, qv.shape[2], w):
                win = qv[n, top:top + w, left:left + w].reshape(w * w, 2, heads, d)
                q, v = win[:, 0], win[:, 1]                               # (L, heads, d)
                # Spatial: each b x b cell's keys reduced by the learnt linear map.
                vb = torch.zeros(b * b, heads, d, dtype=x.dtype)
                cell_bias = torch.zeros(w * w, b * b, heads, dtype=x.dtype)
                for ay in range(b):
                    for ax in range(b):
                        keys = [(ay * s + i) * w + ax * s + j for i in range(s) for j in range(s)]
                        vb[ay * b + ax] = sum(lin_w[t] * v[k] for t, k in enumerate(keys)) + lin_b
                        cell_bias[:, ay * b + ax] = pair_bias[:, keys].mean(dim=1)
                spatial = torch.zeros(w * w, heads, d, dtype=x.dtype)
                for h in range(heads):
                    corr = q[:, h] @ vb[:, h].T / d + cell_bias[:, :, h]
                    spatial[:, h] = corr @ vb[:, h]
                # Channel: one head, C/2 x C/2 correlation normalised by the token count.
                qc, vc = q.reshape(w * w, half), v.reshape(w * w, half)
                channel = vc @ (qc.T @ vc / (w * w)).T
                res = torch.cat([spatial.reshape(w * w, half), channel], dim=1)
                out[n, top:top + w, left:left + w] = res.view(w, w, -1)
    return scc.proj(out)


@pytest.mark.parametrize('window,base', [(4, 2), (4, 4), (2, 4)])
def test_scc_equals_slow_reference(window, base):
    torch.manual_seed(0)
    scc = SpatialChannelCorrelation(32, window=window, base_window=base, num_heads=2).double()
    with torch.no_grad():
        for p in scc.parameters():
            p.add_(0.1 * torch.randn_like(p))
        x = torch.randn(2, 32, 2 * window, 3 * window, dtype=torch.float64)
        torch.testing.assert_close(scc(x), reference_scc(scc, x), atol=1e-10, rtol=1e-10)


def test_cell_averaged_bias_is_the_mean_of_pair_biases():
    torch.manual_seed(1)
    w, b, heads = 8, 2, 3
    table = torch.randn((2 * w - 1) ** 2, heads, dtype=torch.float64)
    ours = cell_averaged_position_bias(table, w, b)                     # (heads, L, b*b)
    ys, xs = torch.meshgrid(torch.arange(w), torch.arange(w), indexing='ij')
    ys, xs = ys.flatten(), xs.flatten()
    index = (ys[:, None] - ys[None] + w - 1) * (2 * w - 1) + xs[:, None] - xs[None] + w - 1
    full = table[index].permute(2, 0, 1).view(heads, w * w, b, w // b, b, w // b)
    torch.testing.assert_close(ours, full.mean(dim=(3, 5)).reshape(heads, w * w, b * b))


# ----------------------------------------------------------------------------------------------
# Learning
# ----------------------------------------------------------------------------------------------
def test_tiny_model_overfits_one_image():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    # A smooth random image and its bicubic x2 downscale.
    hr = F.interpolate(torch.rand(1, 3, 6, 6), size=(32, 32), mode='bicubic', align_corners=False)
    hr = hr.clamp(0, 1)
    lr = F.interpolate(hr, scale_factor=0.5, mode='bicubic', align_corners=False, antialias=True)
    mean = torch.tensor(DIV2K_RGB_MEAN).view(1, 3, 1, 1)
    model = tiny_hit('sir', scale=2)
    optim = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(60):
        loss = (model(lr - mean) + mean - hr).abs().mean()
        optim.zero_grad()
        loss.backward()
        optim.step()
        losses.append(loss.item())
    assert min(losses[-5:]) < 0.5 * losses[0], losses
