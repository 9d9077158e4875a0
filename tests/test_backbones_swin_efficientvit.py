"""Swin and EfficientViT backbones: shapes, parameter counts, freezing, drop path, the shifted
window mask, and loading official / timm checkpoints (synthetic state dicts built from the
published names and shapes)."""
from __future__ import annotations

import pytest
import torch

from perception.engine.checkpoint_mapping import load_pretrained
from perception.engine.errors import CheckpointError
from perception.models.backbones import efficientvit as evit
from perception.models.backbones import swin
from perception.models.layers.window_attention import (
    relative_position_index,
    shifted_window_mask,
    window_partition,
    window_reverse,
)
from perception.registry import MODELS


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# --- window attention helpers -------------------------------------------------------------------

def test_window_partition_order_and_round_trip():
    x = torch.arange(2 * 14 * 21 * 3, dtype=torch.float32).view(2, 14, 21, 3)
    win = window_partition(x, 7)
    assert win.shape == (2 * 2 * 3, 7, 7, 3)
    # window k of image b is rows (k // 3) * 7.., cols (k % 3) * 7.. (row-major windows)
    assert torch.equal(win[4], x[0, 7:14, 7:14])
    assert torch.equal(win[6 + 2], x[1, 0:7, 14:21])
    assert torch.equal(window_reverse(win, 7, 14, 21), x)


def test_relative_position_index_hand_values():
    idx = relative_position_index(2)  # offsets in [-1, 1]^2 -> rows (dy + 1) * 3 + (dx + 1)
    # token order (0,0), (0,1), (1,0), (1,1); query (0,0) vs key (1,1): offset (-1, -1) -> 0
    assert idx[0, 3] == 0 and idx[3, 0] == 8 and idx[1, 2] == 2  # (0,1) vs (1,0): (-1, 1) -> 2
    assert torch.all(idx.diagonal() == 4)


def test_shifted_window_mask_regions():
    mask = shifted_window_mask(14, 14, 7, 3)
    assert mask.shape == (4, 49, 49)
    assert torch.all(mask[0] == 0)  # the top-left window of the rolled map is one region
    # last window (bottom-right, rolled) holds 4 regions of 4x4, 4x3, 3x4, 3x3 tokens
    allowed = (mask[3] == 0).sum(1)
    assert sorted(set(allowed.tolist())) == [9, 12, 16]
    assert int((mask[3] == 0).sum()) == 16 ** 2 + 12 ** 2 * 2 + 9 ** 2


# --- Swin ---------------------------------------------------------------------------------------

@pytest.mark.parametrize('name, expected', [
    ('swin_tiny', 28_288_354), ('swin_small', 49_606_258), ('swin_base', 87_768_224)])
def test_swin_param_counts(name, expected):
    model = swin.BUILDERS[name]()
    dims = model.num_features
    # published ImageNet-1k count = backbone - output norms 0..2 + classifier Linear (the final
    # LayerNorm is our norm3)
    side_norms = sum(2 * d for d in dims[:3])
    head = dims[3] * 1000 + 1000
    assert n_params(model) - side_norms + head == expected
    if name == 'swin_tiny':
        assert n_params(model) == 27_520_698  # with the 4 mmseg-style output norms


def test_swin_odd_input_shapes_and_registry():
    model = MODELS.build(dict(type='SwinTransformer', arch='tiny')).eval()
    assert model.out_channels == (96, 192, 384, 768)
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 225, 301))
    assert [tuple(o.shape) for o in outs] == [
        (1, 96, 57, 76), (1, 192, 29, 38), (1, 384, 15, 19), (1, 768, 8, 10)]
    assert all(torch.isfinite(o).all() for o in outs)
    small = swin.swin_tiny(out_indices=(1, 3)).eval()
    assert small.out_channels == (192, 768)
    with torch.no_grad():
        outs = small(torch.randn(2, 3, 32, 40))  # every stage smaller than a window
    assert [tuple(o.shape) for o in outs] == [(2, 192, 4, 5), (2, 768, 1, 2)]


def _block_influence(block: swin.SwinBlock, size: tuple[int, int], token: tuple[int, int]):
    torch.manual_seed(1)
    x = torch.randn(1, *size, block.norm1.normalized_shape[0], dtype=torch.float64)
    x2 = x.clone()
    x2[0, token[0], token[1]] += torch.randn(x.shape[-1], dtype=torch.float64)  # LN-visible
    with torch.no_grad():
        return (block(x2) - block(x)).abs().amax(-1)[0]  # (H, W)


@pytest.mark.parametrize('token, rows, cols', [
    ((1, 12), range(0, 3), range(10, 14)),    # corner piece: rolled around, masked from the rest
    ((5, 5), range(3, 10), range(3, 10)),     # a full shifted window
    ((12, 4), range(10, 14), range(3, 10)),   # bottom band
])
def test_shifted_window_mask_blocks_cross_seam_attention(token, rows, cols):
    """After one shifted block a token influences exactly the tokens of its shifted window (the
    bands [0, 3), [3, 10), [10, 14) of a 14 x 14 map with window 7, shift 3), never across a seam
    of the cyclic roll."""
    torch.manual_seed(0)
    block = swin.SwinBlock(12, 3, window_size=7, shift=True).double().eval()
    with torch.no_grad():
        block.attn.relative_position_bias_table.normal_()
    change = _block_influence(block, (14, 14), token)
    expected = torch.zeros(14, 14, dtype=torch.bool)
    expected[rows.start:rows.stop, cols.start:cols.stop] = True
    assert torch.equal(change > 1e-9, expected)
    assert change[expected].min() > 1e-6


def test_regular_window_block_and_single_window_map():
    torch.manual_seed(0)
    block = swin.SwinBlock(12, 3, window_size=7, shift=False).double().eval()
    change = _block_influence(block, (14, 14), (8, 2))
    expected = torch.zeros(14, 14, dtype=torch.bool)
    expected[7:14, 0:7] = True
    assert torch.equal(change > 1e-9, expected)
    # a map that is one window does not shift: every token sees every token
    shifted = swin.SwinBlock(12, 3, window_size=7, shift=True).double().eval()
    assert bool((_block_influence(shifted, (5, 7), (0, 0)) > 1e-9).all())


def test_swin_frozen_stages():
    model = swin.swin_tiny(frozen_stages=2, drop_path_rate=0.2)
    model.train()
    frozen = [model.patch_embed, model.layers[0], model.layers[1], model.norm0, model.norm1]
    for m in frozen:
        assert not m.training
        assert all(not p.requires_grad for p in m.parameters())
    assert model.layers[2].training and all(p.requires_grad for p in model.layers[2].parameters())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    sum(o.mean() for o in model(torch.randn(1, 3, 64, 64))).backward()
    opt.step()
    after = model.state_dict()
    assert torch.equal(before['layers.1.blocks.1.attn.qkv.weight'],
                       after['layers.1.blocks.1.attn.qkv.weight'])
    assert torch.equal(before['patch_embed.proj.weight'], after['patch_embed.proj.weight'])
    assert not torch.equal(before['layers.2.blocks.0.attn.qkv.weight'],
                           after['layers.2.blocks.0.attn.qkv.weight'])


def test_swin_drop_path_only_in_training():
    model = swin.swin_tiny(drop_path_rate=0.5, out_indices=(3,))
    rates = [b.drop_path.drop_prob for stage in model.layers for b in stage.blocks]
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.5) and len(rates) == 12
    x = torch.randn(2, 3, 64, 64)
    model.eval()
    with torch.no_grad():
        e1, e2 = model(x)[0], model(x)[0]
        model.train()
        torch.manual_seed(0)
        t1 = model(x)[0]
        torch.manual_seed(1)
        t2 = model(x)[0]
    assert torch.equal(e1, e2)
    assert not torch.allclose(t1, t2)
    assert not torch.allclose(t1, e1)


def official_swin_state(embed_dim=96, depths=(2, 2, 6, 2), heads=(3, 6, 12, 24), img=224):
    """A state dict with the names and shapes of microsoft/Swin-Transformer's ImageNet-1k model."""
    g = torch.Generator().manual_seed(0)
    sd: dict[str, torch.Tensor] = {}

    def put(name, *shape):
        sd[name] = torch.randn(*shape, generator=g)

    put('patch_embed.proj.weight', embed_dim, 3, 4, 4)
    put('patch_embed.proj.bias', embed_dim)
    put('patch_embed.norm.weight', embed_dim)
    put('patch_embed.norm.bias', embed_dim)
    res = img // 4
    for i, (depth, nh) in enumerate(zip(depths, heads)):
        c = embed_dim * 2 ** i
        for j in range(depth):
            p = f'layers.{i}.blocks.{j}.'
            for norm in ('norm1', 'norm2'):
                put(p + norm + '.weight', c)
                put(p + norm + '.bias', c)
            put(p + 'attn.relative_position_bias_table', 13 * 13, nh)
            sd[p + 'attn.relative_position_index'] = torch.zeros(49, 49, dtype=torch.long)
            put(p + 'attn.qkv.weight', 3 * c, c)
            put(p + 'attn.qkv.bias', 3 * c)
            put(p + 'attn.proj.weight', c, c)
            put(p + 'attn.proj.bias', c)
            put(p + 'mlp.fc1.weight', 4 * c, c)
            put(p + 'mlp.fc1.bias', 4 * c)
            put(p + 'mlp.fc2.weight', c, 4 * c)
            put(p + 'mlp.fc2.bias', c)
            if j % 2 and res > 7:  # the official code keeps no mask where the map is one window
                sd[p + 'attn_mask'] = torch.zeros((res // 7) ** 2, 49, 49)
        if i < len(depths) - 1:
            put(f'layers.{i}.downsample.norm.weight', 4 * c)
            put(f'layers.{i}.downsample.norm.bias', 4 * c)
            put(f'layers.{i}.downsample.reduction.weight', 2 * c, 4 * c)
            res //= 2
    c = embed_dim * 2 ** (len(depths) - 1)
    put('norm.weight', c)
    put('norm.bias', c)
    put('head.weight', 1000, c)
    put('head.bias', 1000)
    return sd


def to_timm_swin(sd):
    """timm's names for the same weights: merging moves to the start of the next stage."""
    out = {}
    for k, v in sd.items():
        if k.endswith(('relative_position_index', 'attn_mask')):
            continue
        for i in range(3):
            k = k.replace(f'layers.{i}.downsample.', f'LAYERS.{i + 1}.downsample.')
        out[k.replace('LAYERS.', 'layers.').replace('head.', 'head.fc.')] = v
    return out


@pytest.mark.parametrize('layout', ['official', 'timm'])
def test_swin_loads_official_and_timm_layouts(layout):
    sd = official_swin_state()
    src = sd if layout == 'official' else to_timm_swin(sd)
    model = swin.swin_tiny()
    load_pretrained(model, src, layout=layout)
    own = model.state_dict()
    assert torch.equal(own['layers.1.downsample.reduction.weight'],
                       sd['layers.1.downsample.reduction.weight'])
    assert torch.equal(own['layers.2.blocks.5.attn.relative_position_bias_table'],
                       sd['layers.2.blocks.5.attn.relative_position_bias_table'])
    assert torch.equal(own['norm3.weight'], sd['norm.weight'])
    assert torch.equal(own['norm0.weight'], torch.ones(96))  # no counterpart: stays identity
    # the index buffer is recomputed, not taken from the file (which held zeros here)
    assert model.layers[0].blocks[0].attn.relative_position_index.max() == 168
    assert load_pretrained(swin.swin_tiny(), src, layout='auto') is not None


def test_swin_strict_loading_refuses_missing_and_misshapen():
    sd = official_swin_state()
    del sd['layers.3.blocks.1.mlp.fc2.weight']
    with pytest.raises(CheckpointError, match='fc2'):
        load_pretrained(swin.swin_tiny(), sd, layout='official')
    sd = official_swin_state(embed_dim=128, depths=(2, 2, 2, 2), heads=(4, 8, 16, 32))
    with pytest.raises(CheckpointError):
        load_pretrained(swin.swin_tiny(), sd, layout='official')


# --- EfficientViT -------------------------------------------------------------------------------

# Published (official code / timm) counts with the BN+Linear ImageNet head at 224 x 224, whose last
# stage (4 x 4) carries 4 x 4 bias tables: window_size=(7, 7, 4) rebuilds exactly that model.
EVIT_COUNTS = {'m0': 2_349_436, 'm1': 2_980_560, 'm2': 4_187_554, 'm3': 6_900_722,
               'm4': 8_804_228, 'm5': 12_473_772}


@pytest.mark.parametrize('arch', sorted(EVIT_COUNTS))
def test_efficientvit_param_counts(arch):
    model = evit.BUILDERS[f'efficientvit_{arch}'](window_size=(7, 7, 4))
    c = model.embed_dim[-1]
    head = 2 * c + c * 1000 + 1000  # BatchNorm1d(C) + Linear(C, 1000)
    assert n_params(model) + head == EVIT_COUNTS[arch]
    # the dense default (7 x 7 windows everywhere) adds 33 bias entries per head in stage 3
    dense = evit.BUILDERS[f'efficientvit_{arch}']()
    cfg = evit.EFFICIENTVIT_ARCHS[arch]
    assert n_params(dense) - n_params(model) == 33 * cfg['num_heads'][2] * cfg['depth'][2]


def test_efficientvit_shapes_any_size():
    model = MODELS.build(dict(type='EfficientViT', arch='m0')).eval()
    assert model.out_channels == (64, 128, 192)
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 225, 301))
        assert [tuple(o.shape) for o in outs] == [(1, 64, 15, 19), (1, 128, 8, 10),
                                                   (1, 192, 4, 5)]
        outs = evit.efficientvit_m5(out_indices=(2,)).eval()(torch.randn(2, 3, 224, 224))
    assert [tuple(o.shape) for o in outs] == [(2, 384, 4, 4)]


def test_cga_offset_bias_and_window_locality():
    idx = evit.offset_bias_index(3)
    # token order (0,0), (0,1), (0,2), (1,0)...; query (0,0) vs key (2,1): |dy| * 3 + |dx| = 7
    assert idx[0, 7] == 7 and idx[7, 0] == 7 and idx[5, 3] == 2 and torch.all(idx.diagonal() == 0)
    torch.manual_seed(0)
    lwa = evit.LocalWindowAttention(16, 4, 2, 2.0, 7, (3, 3)).double().eval()
    with torch.no_grad():
        randomise_bn(lwa)  # the output projection's BN starts at 0 (zero residual branch)
        lwa.attn.attention_biases.normal_()
        x = torch.randn(1, 16, 9, 10, dtype=torch.float64)
        x2 = x.clone()
        x2[0, :, 8, 2] += 1.0  # window (1, 0) of the padded 14 x 14 map
        change = (lwa(x2) - lwa(x)).abs().amax(1)[0]
    expected = torch.zeros(9, 10, dtype=torch.bool)
    expected[7:9, 0:7] = True
    assert torch.equal(change > 1e-9, expected)
    # the bias of a map smaller than the window uses the offsets it has, from the same table
    bias = lwa.attn.bias(2, 3)
    table = lwa.attn.attention_biases
    assert bias.shape == (2, 6, 6)
    assert bias[1, 0, 5] == table[1, 1 * 7 + 2]  # (0,0) vs (1,2)


def randomise_bn(module: torch.nn.Module) -> None:
    """Residual branches end in a BN initialised to 0; give every BN weight a nonzero value."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)


def test_efficientvit_frozen_stages_and_drop_path():
    model = evit.efficientvit_m0(frozen_stages=1, drop_path_rate=0.5)
    randomise_bn(model)
    model.train()
    assert not model.patch_embed.training and not model.blocks1.training
    assert model.blocks2.training
    assert all(not p.requires_grad for p in model.blocks1.parameters())
    assert all(p.requires_grad for p in model.blocks2.parameters())
    mean = model.blocks1[0].ffn0.m.pw1.bn.running_mean.clone()
    stem_mean = model.patch_embed[0].bn.running_mean.clone()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.manual_seed(0)
        t1 = model(x)[-1]
        torch.manual_seed(1)
        t2 = model(x)[-1]
        model.eval()
        e1, e2 = model(x)[-1], model(x)[-1]
    assert torch.equal(model.blocks1[0].ffn0.m.pw1.bn.running_mean, mean)  # frozen BN kept
    assert torch.equal(model.patch_embed[0].bn.running_mean, stem_mean)
    assert not torch.allclose(t1, t2)  # drop path active in training
    assert torch.equal(e1, e2)
    rates = [b.mixer.drop_path.drop_prob for b in model.blocks3
             if isinstance(b, evit.EfficientViTBlock)]
    assert rates[-1] == pytest.approx(0.5)


def official_efficientvit_state(arch='m0', img=224, key_dim=16, window=7):
    """State dict with the names/shapes of microsoft/Cream's EfficientViT classifier."""
    cfg = evit.EFFICIENTVIT_ARCHS[arch]
    g = torch.Generator().manual_seed(0)
    sd: dict[str, torch.Tensor] = {}

    def conv_bn(prefix, cin, cout, k=1, groups=1):
        fan_in = cin // groups * k * k  # keep activations bounded through the whole network
        sd[prefix + 'c.weight'] = torch.randn(cout, cin // groups, k, k, generator=g) / fan_in ** .5
        sd[prefix + 'bn.weight'] = 0.5 + torch.rand(cout, generator=g)
        for name in ('bias', 'running_mean'):
            sd[prefix + 'bn.' + name] = 0.1 * torch.randn(cout, generator=g)
        sd[prefix + 'bn.running_var'] = torch.rand(cout, generator=g) + 0.5
        sd[prefix + 'bn.num_batches_tracked'] = torch.tensor(7)

    def dw_ffn(prefix, c):
        conv_bn(prefix + '0.m.', c, c, 3, c)
        conv_bn(prefix + '1.m.pw1.', c, 2 * c)
        conv_bn(prefix + '1.m.pw2.', 2 * c, c)

    e = cfg['embed_dim']
    for n, (cin, cout) in enumerate([(3, e[0] // 8), (e[0] // 8, e[0] // 4),
                                     (e[0] // 4, e[0] // 2), (e[0] // 2, e[0])]):
        conv_bn(f'patch_embed.{2 * n}.', cin, cout, 3)
    res = img // 16
    for s in range(3):
        c, nh = e[s], cfg['num_heads'][s]
        j0 = 0
        if s > 0:
            p = f'blocks{s + 1}.'
            dw_ffn(p + '0.', e[s - 1])
            h = 4 * e[s - 1]
            conv_bn(p + '1.conv1.', e[s - 1], h)
            conv_bn(p + '1.conv2.', h, h, 3, h)
            rd = max(8, int(h * 0.25 + 4) // 8 * 8)
            sd[p + '1.se.fc1.weight'] = torch.randn(rd, h, 1, 1, generator=g)
            sd[p + '1.se.fc1.bias'] = torch.randn(rd, generator=g)
            sd[p + '1.se.fc2.weight'] = torch.randn(h, rd, 1, 1, generator=g)
            sd[p + '1.se.fc2.bias'] = torch.randn(h, generator=g)
            conv_bn(p + '1.conv3.', h, c)
            dw_ffn(p + '2.', c)
            res = (res - 1) // 2 + 1
            j0 = 3
        r = min(window, res)
        d = c // nh  # attn_ratio * key_dim = C / (key_dim * heads) * key_dim
        for j in range(cfg['depth'][s]):
            p = f'blocks{s + 1}.{j0 + j}.'
            for part in ('dw0', 'dw1'):
                conv_bn(p + part + '.m.', c, c, 3, c)
            for part in ('ffn0', 'ffn1'):
                conv_bn(p + part + '.m.pw1.', c, 2 * c)
                conv_bn(p + part + '.m.pw2.', 2 * c, c)
            a = p + 'mixer.m.attn.'
            for hd in range(nh):
                conv_bn(a + f'qkvs.{hd}.', c // nh, 2 * key_dim + d)
                k = cfg['kernels'][hd]
                conv_bn(a + f'dws.{hd}.', key_dim, key_dim, k, key_dim)
            conv_bn(a + 'proj.1.', d * nh, c)
            sd[a + 'attention_biases'] = torch.randn(nh, r * r, generator=g)
            sd[a + 'attention_bias_idxs'] = torch.zeros(r * r, r * r, dtype=torch.long)
    for name in ('weight', 'bias', 'running_mean', 'running_var'):
        sd['head.bn.' + name] = torch.randn(e[2], generator=g)
    sd['head.bn.num_batches_tracked'] = torch.tensor(7)
    sd['head.l.weight'] = torch.randn(1000, e[2], generator=g)
    sd['head.l.bias'] = torch.randn(1000, generator=g)
    return sd


def to_timm_efficientvit(sd):
    """timm efficientvit_msra names for the same weights."""
    import re
    out = {}
    for k, v in sd.items():
        if k.endswith('attention_bias_idxs'):
            continue
        m = re.match(r'^patch_embed\.(\d)\.', k)
        if m:
            k = f'patch_embed.conv{int(m.group(1)) // 2 + 1}.' + k[m.end():]
        m = re.match(r'^blocks(\d)\.(\d+)\.', k)
        if m:
            s, j, rest = int(m.group(1)) - 1, int(m.group(2)), k[m.end():]
            if s > 0 and j < 3:
                k = f'stages.{s}.downsample.{("res1", "patchmerge", "res2")[j]}.{rest}'
            else:
                k = f'stages.{s}.blocks.{j - 3 if s > 0 else j}.{rest}'
        k = re.sub(r'\.c\.weight$', '.conv.weight', k).replace('head.l.', 'head.linear.')
        out[k] = v
    return out


@pytest.mark.parametrize('layout', ['official', 'timm'])
def test_efficientvit_loads_official_and_timm_layouts(layout):
    sd = official_efficientvit_state('m0')
    src = sd if layout == 'official' else to_timm_efficientvit(sd)
    exact = evit.efficientvit_m0(window_size=(7, 7, 4))  # the classifier's own windows
    load_pretrained(exact, src, layout=layout)
    own = exact.state_dict()
    for key in ('blocks2.1.se.fc1.weight', 'blocks3.5.mixer.m.attn.dws.3.c.weight',
                'blocks3.5.mixer.m.attn.attention_biases', 'patch_embed.6.bn.running_var'):
        assert torch.equal(own[key], sd[key]), key
    # default 7 x 7 windows: the 4 x 4 table is embedded, larger offsets repeat its edge
    dense = evit.efficientvit_m0()
    load_pretrained(dense, src, layout=layout)
    old = sd['blocks3.3.mixer.m.attn.attention_biases'].view(4, 4, 4)
    new = dense.state_dict()['blocks3.3.mixer.m.attn.attention_biases'].view(4, 7, 7)
    assert torch.equal(new[:, :4, :4], old)
    assert torch.equal(new[:, 6, 2], old[:, 3, 2]) and torch.equal(new[:, 5, 6], old[:, 3, 3])
    # on a 4 x 4 last-stage map both models compute the same thing
    exact.eval()
    dense.eval()
    with torch.no_grad():
        x = torch.randn(1, 3, 224, 224)
        ref = exact(x)[2]
        assert torch.isfinite(ref).all() and ref.abs().max() > 1e-3
        assert torch.allclose(ref, dense(x)[2], atol=1e-5)


def test_efficientvit_strict_loading_refuses_wrong_variant():
    with pytest.raises(CheckpointError):
        load_pretrained(evit.efficientvit_m1(), official_efficientvit_state('m0'),
                        layout='official')
