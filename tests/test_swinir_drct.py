"""SwinIR and DRCT: published sizes, official key layouts, any-size input, locality, learning."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from perception.engine import load_config
from perception.models.layers.padding import reflect_pad_to_multiple
from perception.models.layers.window_attention import (
    WindowAttention,
    attend_in_windows,
    shifted_window_mask,
)
from perception.models.super_resolution import DIV2K_RGB_MEAN, SuperResolver
from perception.models.super_resolution import drct as drct_mod
from perception.models.super_resolution import swinir as swinir_mod
from perception.models.super_resolution.drct import DRCT
from perception.models.super_resolution.swinir import SwinIR, pixelshuffle_upsample

from .conftest import ROOT

KEYS_DIR = Path(__file__).parent / 'data' / 'official_keys'

# Counted on the official network_swinir.py / DRCT_arch.py definitions with the published
# constructor arguments (the official classes were built and their parameters summed).
PARAM_COUNTS = {
    'swinir_light_x2': 910_152,
    'swinir_light_x3': 918_267,
    'swinir_light_x4': 929_628,
    'swinir_classical_x2': 11_752_487,
    'swinir_classical_x3': 11_937_127,
    'swinir_classical_x4': 11_900_199,
    'drct_x2': 13_991_867,
    'drct_x3': 14_176_507,
    'drct_x4': 14_139_579,
    'drct_l_x2': 27_433_007,
    'drct_l_x3': 27_617_647,
    'drct_l_x4': 27_580_719,
}


def _builder(name: str):
    return getattr(swinir_mod if name.startswith('swinir') else drct_mod, name)


def _n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _head_params(net: torch.nn.Module) -> int:
    return _n_params(net.upsample) + sum(
        _n_params(getattr(net, name)) for name in ('conv_before_upsample', 'conv_last')
        if hasattr(net, name))


@pytest.mark.parametrize('family', ['swinir_light', 'swinir_classical', 'drct', 'drct_l'])
def test_builders_have_the_official_parameter_counts(family):
    with torch.device('meta'):  # sizes only: no memory, no initialisation cost
        model = _builder(f'{family}_x4')()
    assert _n_params(model) == PARAM_COUNTS[f'{family}_x4']
    body = _n_params(model) - _head_params(model)
    # x2 / x3 differ only in the reconstruction head: build the builders small to get it.
    for scale in (2, 3):
        small = _builder(f'{family}_x{scale}')(depths=(1,), num_heads=(6,))
        assert small.scale == scale and small.window_size == model.window_size
        assert type(small.upsample[-1]).__name__ == 'PixelShuffle'
        assert body + _head_params(small) == PARAM_COUNTS[f'{family}_x{scale}']


def test_published_sizes_round_to_the_papers_figures():
    # SwinIR paper: 11.9M classical x4; DRCT paper: 14.1M and 27.6M (x4).
    assert round(PARAM_COUNTS['swinir_classical_x4'] / 1e5) == 119
    assert round(PARAM_COUNTS['drct_x4'] / 1e5) == 141
    assert round(PARAM_COUNTS['drct_l_x4'] / 1e5) == 276


def test_drct_block_widths_heads_and_mlp_follow_the_official_rule():
    with torch.device('meta'):
        group = drct_mod.drct_x4().layers[0]
    widths = [b.norm1.normalized_shape[0] for b in group.blocks]
    assert widths == [180, 212, 244, 276, 308]  # dim + k * gc, gc = 32
    # num_heads - (width % num_heads) with num_heads 6.
    assert [b.attn.num_heads for b in group.blocks] == [6, 4, 2, 6, 4]
    assert [b.mlp.fc1.out_features for b in group.blocks] == [360, 424, 488, 276, 308]
    assert [b.shift_size for b in group.blocks] == [0, 8, 0, 8, 0]
    assert [a.out_channels for a in group.adjusts] == [32, 32, 32, 32, 180]


def _zeros_like_official(name: str, device: str = 'meta') -> dict[str, torch.Tensor]:
    spec = json.loads((KEYS_DIR / f'{name}.json').read_text())
    return {k: torch.zeros(shape, device=device) for k, shape in spec['keys'].items()}


@pytest.mark.parametrize('name', ['swinir_light_x4', 'swinir_classical_x3', 'swinir_classical_x4',
                                  'drct_x4', 'drct_l_x4'])
def test_official_key_layout_loads_strictly(name):
    official = _zeros_like_official(name)
    module = swinir_mod if name.startswith('swinir') else drct_mod
    mapped = module.convert_official_state_dict({'params': official})
    assert len(mapped) == len(official) - sum(
        k.endswith(('relative_position_index', 'attn_mask')) for k in official)
    with torch.device('meta'):
        model = _builder(name)()
    # strict: every official tensor has a home of the same shape and nothing is missing.
    model.load_state_dict(mapped, strict=True, assign=True)
    spec = json.loads((KEYS_DIR / f'{name}.json').read_text())
    assert spec['num_parameters'] == PARAM_COUNTS[name]


def test_official_layout_refuses_the_wrong_variant():
    mapped = swinir_mod.convert_official_state_dict(_zeros_like_official('swinir_classical_x3'))
    with torch.device('meta'):
        model = swinir_mod.swinir_classical_x4()
    with pytest.raises(RuntimeError, match='upsample'):
        model.load_state_dict(mapped, strict=True, assign=True)


def test_conversion_unwraps_files_and_renames():
    w = torch.ones(2)
    state = {'params': {'layers.0.residual_group.blocks.1.attn.qkv.weight': w},
             'params_ema': {'module.layers.3.residual_group.blocks.5.norm1.bias': w,
                            'module.patch_embed.norm.weight': w,
                            'layers.0.residual_group.blocks.1.attn_mask': w,
                            'layers.0.residual_group.blocks.1.attn.relative_position_index': w}}
    # BasicSR evaluates the EMA weights: params_ema wins unless asked otherwise.
    assert sorted(swinir_mod.convert_official_state_dict(state)) == [
        'embed_norm.weight', 'layers.3.blocks.5.norm1.bias']
    assert list(swinir_mod.convert_official_state_dict(state, param_key='params')) == [
        'layers.0.blocks.1.attn.qkv.weight']
    drct_state = {'layers.11.swin5.attn.proj.weight': w, 'layers.2.adjust1.bias': w,
                  'layers.0.swin2.attn_mask': w, 'conv_before_upsample.0.weight': w}
    assert sorted(drct_mod.convert_official_state_dict(drct_state)) == [
        'conv_before_upsample.0.weight', 'layers.11.blocks.4.attn.proj.weight',
        'layers.2.adjusts.0.bias']


def _tiny_swinir(scale: int = 2, upsampler: str = 'pixelshuffledirect', **kwargs) -> SwinIR:
    cfg = dict(embed_dim=12, depths=(2,), num_heads=(2,), window_size=8, num_feat=8,
               drop_path_rate=0.0)
    return SwinIR(scale=scale, upsampler=upsampler, **{**cfg, **kwargs}).double().eval()


def _tiny_drct(scale: int = 2, **kwargs) -> DRCT:
    cfg = dict(embed_dim=12, depths=(1,), num_heads=(2,), window_size=8, gc=8, num_feat=8,
               drop_path_rate=0.0)
    return DRCT(scale=scale, **{**cfg, **kwargs}).double().eval()


@pytest.mark.parametrize('make, scale, size', [
    (lambda s: _tiny_swinir(s), 2, (13, 21)),
    (lambda s: _tiny_swinir(s), 3, (8, 9)),
    (lambda s: _tiny_swinir(s, 'pixelshuffle'), 4, (17, 10)),
    (lambda s: _tiny_swinir(s, 'pixelshuffle'), 3, (5, 31)),
    (lambda s: _tiny_drct(s), 4, (11, 19)),
    (lambda s: _tiny_drct(s), 3, (16, 7)),
])
def test_any_input_size_gives_scale_times_the_size(make, scale, size):
    torch.manual_seed(0)
    net = make(scale)
    with torch.no_grad():
        out = net(torch.rand(2, 3, *size, dtype=torch.float64))
    assert out.shape == (2, 3, size[0] * scale, size[1] * scale)
    assert torch.isfinite(out).all()


def test_upsampler_layouts_and_bad_input():
    assert [type(m).__name__ for m in pixelshuffle_upsample(4, 8)] == [
        'Conv2d', 'PixelShuffle', 'Conv2d', 'PixelShuffle']
    assert pixelshuffle_upsample(3, 8)[0].out_channels == 72
    with pytest.raises(ValueError, match='2\\^n and 3'):
        pixelshuffle_upsample(5, 8)
    with pytest.raises(ValueError, match='upsampler'):
        SwinIR(upsampler='nearest+conv')
    with pytest.raises(ValueError, match=r'expects \(B, 3, H, W\)'):
        _tiny_swinir()(torch.zeros(1, 1, 8, 8, dtype=torch.float64))
    # A pad longer than the side reflects again (the official code refuses such inputs).
    assert _tiny_swinir()(torch.zeros(1, 3, 3, 8, dtype=torch.float64)).shape[-2:] == (6, 16)


def test_reflect_padding_matches_numpy_reflect():
    x = torch.arange(2 * 5 * 6, dtype=torch.float64).view(1, 2, 5, 6)
    padded = reflect_pad_to_multiple(x, 4)
    assert padded.shape == (1, 2, 8, 8)
    expected = np.pad(x.numpy(), ((0, 0), (0, 0), (0, 3), (0, 2)), mode='reflect')
    assert torch.equal(padded, torch.from_numpy(expected))
    assert torch.equal(reflect_pad_to_multiple(x[..., :4, :4], 4), x[..., :4, :4])


@pytest.mark.parametrize('make', [_tiny_swinir, _tiny_drct], ids=['swinir', 'drct'])
def test_translation_by_a_window_translates_the_output(make):
    """Crops offset by one window (8 px) see the same windows: away from the borders (where
    padding differs) the outputs are the same pixels, shifted by 8 * scale."""
    torch.manual_seed(0)
    net, s = make(2), 2
    image = torch.rand(1, 3, 96, 96, dtype=torch.float64)
    with torch.no_grad():
        a = net(image[..., :85, :85])  # reflect-padded to 88 internally
        b = net(image[..., 8:93, 8:93])
    # Border effects travel about one window per block: LR 36..58 of A is clear of both borders.
    inner_a = a[..., 36 * s:58 * s, 36 * s:58 * s]
    inner_b = b[..., 28 * s:50 * s, 28 * s:50 * s]
    assert (inner_a - inner_b).abs().max() < 1e-10
    # Near the borders the two crops see different context, so the check above is not vacuous:
    # B's top-left corner (its image border) and A's bottom-right (its padded border) differ.
    assert (a[..., 8 * s:16 * s, 8 * s:16 * s] - b[..., :8 * s, :8 * s]).abs().max() > 1e-9
    assert (a[..., 77 * s:85 * s, 77 * s:85 * s]
            - b[..., 69 * s:77 * s, 69 * s:77 * s]).abs().max() > 1e-9


def test_window_attention_is_local_to_windows_and_shifted_windows():
    torch.manual_seed(0)
    attn = WindowAttention(8, 4, 2).double().eval()
    x = torch.rand(1, 8, 8, 8, dtype=torch.float64)
    bumped = x.clone()
    bumped[0, 5, 6] += 1.0  # a token of window (1, 1) of the 2 x 2 grid of 4 x 4 windows
    with torch.no_grad():
        diff = (attend_in_windows(bumped, attn) - attend_in_windows(x, attn)).abs().sum(-1)[0]
    changed = diff > 1e-12
    assert changed[4:, 4:].all() and not changed[:4].any() and not changed[:, :4].any()
    mask = shifted_window_mask(8, 8, 4, 2).double()
    with torch.no_grad():
        diff = (attend_in_windows(bumped, attn, 2, mask)
                - attend_in_windows(x, attn, 2, mask)).abs().sum(-1)[0]
    changed = diff > 1e-12
    expected = torch.zeros(8, 8, dtype=torch.bool)
    # Rolled by -2, the token sits in the rolled window rows 0..3 x cols 4..7, i.e. original
    # rows 2..5 x cols 6, 7, 0, 1; the mask keeps cols 0, 1 (across the wrap-around seam) apart.
    expected[2:6, 6:] = True
    assert torch.equal(changed, expected)


def test_residual_paths_are_identities_when_branches_are_zero():
    torch.manual_seed(0)
    net = _tiny_drct()
    group = net.layers[0]
    x = torch.rand(1, 16, 16, 12, dtype=torch.float64)
    mask = torch.zeros(4, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        group.adjusts[-1].weight.zero_()
        group.adjusts[-1].bias.zero_()
        assert torch.equal(group(x, mask), x)  # x + 0.2 * x5 with x5 = 0
        group.adjusts[-1].bias.fill_(1.0)
        assert torch.allclose(group(x, mask), x + 0.2)
    rstb = _tiny_swinir().layers[0]
    with torch.no_grad():
        rstb.conv.weight.zero_()
        rstb.conv.bias.fill_(-0.5)
        assert torch.allclose(rstb(x, mask), x - 0.5)


def test_shifted_block_without_mask_is_refused():
    block = _tiny_swinir().layers[0].blocks[1]
    with pytest.raises(ValueError, match='mask'):
        block(torch.zeros(1, 8, 8, 12, dtype=torch.float64))


def test_superresolver_centring_equals_the_official_mean_handling():
    """Official: net_off(x) = body((x - mean) * 1) / 1 + mean. The wrapper with pixel_mean does
    exactly that around our (centred) network; with a zero body the output is the mean."""
    model = SuperResolver(network=dict(type='SwinIR', scale=2, embed_dim=12, depths=(2,),
                                       num_heads=(2,), window_size=8),
                          pixel_mean=DIV2K_RGB_MEAN)
    with torch.no_grad():
        for p in model.network.upsample.parameters():
            p.zero_()
        out = model(torch.rand(1, 3, 9, 10), mode='tensor')
    assert out.shape == (1, 3, 18, 20)
    assert torch.allclose(out, torch.tensor(DIV2K_RGB_MEAN).view(1, 3, 1, 1).expand_as(out))


def test_tiny_swinir_light_overfits_a_few_patches():
    torch.manual_seed(0)
    hr = F.interpolate(torch.rand(2, 3, 8, 8), size=32, mode='bicubic', align_corners=False)
    hr = hr.clamp(0, 1)
    lr = F.interpolate(hr, scale_factor=0.5, mode='bicubic', antialias=True, align_corners=False)
    model = SuperResolver(network=dict(type='SwinIR', scale=2, embed_dim=16, depths=(2,),
                                       num_heads=(2,), window_size=8, drop_path_rate=0.0),
                          pixel_mean=DIV2K_RGB_MEAN)
    optim = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = (model(lr, mode='tensor') - hr).abs().mean()
        optim.zero_grad()
        loss.backward()
        optim.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], (losses[0], losses[-1])


CONFIGS = sorted((ROOT / 'configs' / 'swinir').glob('*.py')) + sorted(
    (ROOT / 'configs' / 'drct').glob('*.py'))


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: p.name)
def test_configs_are_consistent(path):
    cfg = load_config(path)
    net = cfg.model.network
    assert cfg.model.type == 'SuperResolver' and net.type in ('SwinIR', 'DRCT')
    assert tuple(cfg.model.pixel_mean) == DIV2K_RGB_MEAN
    assert cfg.benchmark == dict(input_shape=[3, 256, 256])
    train = cfg.train_dataloader.dataset
    parts = train.get('datasets', [train])
    for part in parts:
        assert part.scale == net.scale
    if 'synthetic' in path.name:
        return
    assert cfg.val_dataloader.dataset.scale == net.scale == cfg.val_evaluator.crop_border
    assert all(p.type == 'SRTrainDataset' and p.patch_size == 64 for p in parts)
    assert cfg.optim_wrapper.optimizer.lr == 2e-4
    assert cfg.param_scheduler[0].milestones == [250000, 400000, 450000, 475000]
    assert cfg.train_cfg.max_iters == 500000
    family, scale = path.stem.split('_')[:2]
    embed, groups, window = {'swinir-light': (60, 4, 8), 'swinir-classical': (180, 6, 8),
                             'drct': (180, 6, 16), 'drct-l': (180, 12, 16)}[family]
    assert (net.scale, net.embed_dim, len(net.depths), net.window_size) == (
        int(scale[1:]), embed, groups, window)
