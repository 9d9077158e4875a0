"""ResNet and ConvNeXt backbones: published sizes, outputs, freezing, and ImageNet key mapping.

The synthetic checkpoints below are written from the published layouts (torchvision / timm /
facebookresearch names and shapes), not from our modules, so a naming or shape slip on our side
fails the strict loader.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from perception.engine.checkpoint_mapping import (
    detect_layout,
    load_pretrained,
    map_state_dict,
)
from perception.engine.errors import CheckpointError
from perception.models.backbones import convnext, resnet
from perception.models.backbones.convnext import ConvNeXt, convnext_tiny
from perception.models.backbones.resnet import ResNet, resnet18, resnet50
from perception.registry import MODELS


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def on_meta(builder, **kwargs) -> nn.Module:
    """Build without allocating or initialising weights (sizes only)."""
    with torch.device('meta'):
        return builder(**kwargs)


# ----------------------------------------------------------------------------- sizes
# Published totals with the ImageNet-1k classifier, and what that classifier holds.
# torchvision model docs: resnet18 11,689,512; resnet34 21,797,672; resnet50 25,557,032;
# resnet101 44,549,160; the classifier is fc = Linear(512 * expansion, 1000).
@pytest.mark.parametrize('builder, published, fc_in', [
    (resnet.resnet18, 11_689_512, 512),
    (resnet.resnet34, 21_797_672, 512),
    (resnet.resnet50, 25_557_032, 2048),
    (resnet.resnet101, 44_549_160, 2048),
])
def test_resnet_parameter_counts_equal_torchvision_without_fc(builder, published, fc_in):
    assert n_params(on_meta(builder)) == published - (fc_in * 1000 + 1000)


def test_resnet50_is_23_5m_without_classifier():
    assert n_params(on_meta(resnet50)) == 23_508_032


# timm / the ConvNeXt paper: T 28,589,128; S 50,223,688; B 88,591,464 parameters. The head removed
# here is the final LayerNorm(C) + Linear(C, 1000), C = 768 (T, S) or 1024 (B); out_norm=False is
# the classifier trunk exactly (out_norm=True adds one LayerNorm per returned stage).
@pytest.mark.parametrize('builder, published, width', [
    (convnext.convnext_tiny, 28_589_128, 768),
    (convnext.convnext_small, 50_223_688, 768),
    (convnext.convnext_base, 88_591_464, 1024),
])
def test_convnext_parameter_counts_equal_published_without_head(builder, published, width):
    head = 2 * width + width * 1000 + 1000
    assert n_params(on_meta(builder, out_norm=False)) == published - head
    model = on_meta(builder)
    assert n_params(model) == published - head + 2 * sum(ConvNeXt.ARCH[model.variant][1])


def test_convnext_tiny_is_27_8m_without_head():
    assert n_params(on_meta(convnext_tiny, out_norm=False)) == 27_818_592


# ----------------------------------------------------------------------------- outputs
@pytest.mark.parametrize('builder, channels', [
    (resnet18, [64, 128, 256, 512]),
    (resnet50, [256, 512, 1024, 2048]),
    (convnext_tiny, [96, 192, 384, 768]),
])
def test_outputs_at_strides_4_to_32(builder, channels):
    model = builder().eval()
    assert model.out_channels == channels
    with torch.no_grad():
        outs = model(torch.randn(2, 3, 64, 96))
    assert [tuple(o.shape) for o in outs] == [
        (2, c, 64 // s, 96 // s) for c, s in zip(channels, (4, 8, 16, 32))]
    sub = builder(out_indices=(1, 3)).eval()
    assert sub.out_channels == [channels[1], channels[3]]
    with torch.no_grad():
        assert [o.shape[1] for o in sub(torch.randn(1, 3, 64, 64))] == [channels[1], channels[3]]


def test_registry_builds_both():
    with torch.device('meta'):
        assert isinstance(MODELS.build(dict(type='ResNet', depth=34)), ResNet)
        model = MODELS.build(dict(type='ConvNeXt', variant='small', out_indices=(2, )))
    assert isinstance(model, ConvNeXt) and model.out_channels == [384]


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match='depth must be one of'):
        ResNet(depth=42)
    with pytest.raises(ValueError, match='variant must be one of'):
        ConvNeXt(variant='huge')
    with pytest.raises(ValueError, match='out_indices'):
        resnet18(out_indices=(4, ))
    with pytest.raises(ValueError, match=r'expects \(B, 3, H, W\)'):
        resnet18()(torch.zeros(1, 1, 32, 32))


def _basic_resnet_parameters(width: int, blocks: tuple[int, ...]) -> int:
    """Hand count of a BasicBlock ResNet without classifier: 7x7 stem, then per stage of width
    ``width * 2**i`` two 3x3 convs + two BatchNorms per block, a 1x1 + BatchNorm shortcut where
    the width or stride changes."""
    total = 3 * 49 * width + 2 * width
    c_in = width
    for i, n in enumerate(blocks):
        c = width * 2 ** i
        for j in range(n):
            first_in = c_in if j == 0 else c
            total += first_in * 9 * c + c * 9 * c + 4 * c
            if j == 0 and (i > 0 or first_in != c):
                total += first_in * c + 2 * c
        c_in = c
    return total


def test_resnet_base_channels_scales_every_stage():
    assert sum(p.numel() for p in resnet18().parameters()) == _basic_resnet_parameters(
        64, (2, 2, 2, 2))  # 11,176,512: torchvision's 11,689,512 less the 513,000 classifier
    narrow = ResNet(depth=18, base_channels=16)
    assert narrow.out_channels == [16, 32, 64, 128]
    assert sum(p.numel() for p in narrow.parameters()) == _basic_resnet_parameters(
        16, (2, 2, 2, 2))
    outs = narrow(torch.zeros(1, 3, 64, 64))
    assert [tuple(o.shape) for o in outs] == [(1, 16, 16, 16), (1, 32, 8, 8), (1, 64, 4, 4),
                                              (1, 128, 2, 2)]
    with pytest.raises(ValueError, match='base_channels must be >= 1'):
        ResNet(depth=18, base_channels=0)


def test_resnet_v1_5_strides_on_the_3x3_conv():
    model = resnet50()
    block = model.layer2[0]
    assert block.conv1.stride == (1, 1) and block.conv2.stride == (2, 2)
    assert block.downsample[0].stride == (2, 2) and block.downsample[0].kernel_size == (1, 1)
    assert model.layer1[0].downsample is not None and resnet18().layer1[0].downsample is None


def test_resnet_frozen_stages_and_norm_eval():
    model = resnet18(frozen_stages=1, norm_eval=True)
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen and all(n.startswith(('conv1', 'bn1', 'layer1.')) for n in frozen)
    assert all(p.requires_grad for n, p in model.named_parameters()
               if n.startswith(('layer2', 'layer3', 'layer4')))
    model.train()
    assert not model.bn1.training and not model.layer1.training
    assert model.layer2.training and model.layer2[0].conv1.training
    # norm_eval: running statistics do not move in a training-mode forward.
    before = model.layer3[0].bn1.running_mean.clone()
    model(torch.randn(2, 3, 64, 64) * 5 + 3)
    assert torch.equal(model.layer3[0].bn1.running_mean, before)
    # Without norm_eval they do (stage 2 trains).
    free = resnet18(frozen_stages=1).train()
    before = free.layer3[0].bn1.running_mean.clone()
    free(torch.randn(2, 3, 64, 64) * 5 + 3)
    assert not torch.equal(free.layer3[0].bn1.running_mean, before)
    assert not free.bn1.training  # frozen stem stays in eval mode


def test_convnext_frozen_stages_layer_scale_and_drop_path():
    model = convnext_tiny(frozen_stages=2, drop_path_rate=0.1).train()
    frozen = {n.split('.')[0] + ('.' + n.split('.')[1] if n.startswith('stages') else '')
              for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {'stem', 'stages.0', 'stages.1'}
    assert not model.stages[1].training and model.stages[2].training
    # Layer scale starts at 1e-6.
    assert torch.equal(model.stages[0].blocks[0].gamma, torch.full((96, ), 1e-6))
    # Stochastic depth: 18 blocks, rate 0.1 * i / 17 for block i (stage offsets 0, 3, 6, 15).
    rates = [b.drop_path.drop_prob if hasattr(b.drop_path, 'drop_prob') else 0.0
             for stage in model.stages for b in stage.blocks]
    assert len(rates) == 18
    assert rates == pytest.approx([0.1 * i / 17 for i in range(18)])
    assert isinstance(model.stages[0].blocks[0].drop_path, nn.Identity)


# ----------------------------------------------------------------------------- key mapping
def torchvision_resnet_state(depth: int, fc: bool = True, tracked: bool = True) -> dict:
    """A state dict with torchvision's names and shapes for resnet{depth}, filled with
    distinct values (written from torchvision's layout, not from our model)."""
    gen = torch.Generator().manual_seed(depth)
    state: dict[str, torch.Tensor] = {}

    def conv(name, cout, cin, k):
        state[f'{name}.weight'] = torch.randn(cout, cin, k, k, generator=gen) * 0.05

    def bn(name, c):
        state[f'{name}.weight'] = torch.rand(c, generator=gen) + 0.5
        state[f'{name}.bias'] = torch.randn(c, generator=gen) * 0.1
        state[f'{name}.running_mean'] = torch.randn(c, generator=gen) * 0.1
        state[f'{name}.running_var'] = torch.rand(c, generator=gen) + 0.5
        if tracked:
            state[f'{name}.num_batches_tracked'] = torch.tensor(100)

    bottleneck = depth >= 50
    blocks = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 6, 3], 101: [3, 4, 23, 3]}[depth]
    conv('conv1', 64, 3, 7)
    bn('bn1', 64)
    cin = 64
    for i, (n, planes) in enumerate(zip(blocks, [64, 128, 256, 512])):
        cout = planes * (4 if bottleneck else 1)
        for j in range(n):
            p = f'layer{i + 1}.{j}'
            if bottleneck:
                conv(f'{p}.conv1', planes, cin, 1)
                bn(f'{p}.bn1', planes)
                conv(f'{p}.conv2', planes, planes, 3)
                bn(f'{p}.bn2', planes)
                conv(f'{p}.conv3', cout, planes, 1)
                bn(f'{p}.bn3', cout)
            else:
                conv(f'{p}.conv1', planes, cin, 3)
                bn(f'{p}.bn1', planes)
                conv(f'{p}.conv2', planes, planes, 3)
                bn(f'{p}.bn2', planes)
            if j == 0 and (i > 0 or cin != cout):
                conv(f'{p}.downsample.0', cout, cin, 1)
                bn(f'{p}.downsample.1', cout)
            cin = cout
    if fc:
        state['fc.weight'] = torch.randn(1000, cin, generator=gen) * 0.01
        state['fc.bias'] = torch.zeros(1000)
    return state


def convnext_state(layout: str, depths=(3, 3, 9, 3), dims=(96, 192, 384, 768)) -> dict:
    """ConvNeXt weights with the names and shapes of timm's or the official classifier."""
    gen = torch.Generator().manual_seed(7)
    state: dict[str, torch.Tensor] = {}

    def put(name, *shape, scale=0.05, offset=0.0):
        state[name] = torch.randn(*shape, generator=gen) * scale + offset

    official = layout == 'official'
    stem = 'downsample_layers.0' if official else 'stem'
    put(f'{stem}.0.weight', dims[0], 3, 4, 4)
    put(f'{stem}.0.bias', dims[0])
    put(f'{stem}.1.weight', dims[0], scale=0.1, offset=1.0)
    put(f'{stem}.1.bias', dims[0])
    for i, (depth, dim) in enumerate(zip(depths, dims)):
        if i > 0:
            down = f'downsample_layers.{i}' if official else f'stages.{i}.downsample'
            put(f'{down}.0.weight', dims[i - 1], scale=0.1, offset=1.0)
            put(f'{down}.0.bias', dims[i - 1])
            put(f'{down}.1.weight', dim, dims[i - 1], 2, 2)
            put(f'{down}.1.bias', dim)
        for j in range(depth):
            if official:
                p, dw, fc1, fc2 = f'stages.{i}.{j}', 'dwconv', 'pwconv1', 'pwconv2'
            else:
                p, dw, fc1, fc2 = f'stages.{i}.blocks.{j}', 'conv_dw', 'mlp.fc1', 'mlp.fc2'
            put(f'{p}.gamma', dim, scale=0.1, offset=0.5)
            put(f'{p}.{dw}.weight', dim, 1, 7, 7)
            put(f'{p}.{dw}.bias', dim)
            put(f'{p}.norm.weight', dim, scale=0.1, offset=1.0)
            put(f'{p}.norm.bias', dim)
            put(f'{p}.{fc1}.weight', 4 * dim, dim)
            put(f'{p}.{fc1}.bias', 4 * dim)
            put(f'{p}.{fc2}.weight', dim, 4 * dim)
            put(f'{p}.{fc2}.bias', dim)
    norm, head = ('norm', 'head') if official else ('head.norm', 'head.fc')
    put(f'{norm}.weight', dims[-1], scale=0.1, offset=1.0)
    put(f'{norm}.bias', dims[-1])
    put(f'{head}.weight', 1000, dims[-1])
    put(f'{head}.bias', 1000)
    return state


@pytest.mark.parametrize('layout', ['torchvision', 'timm', 'auto'])
def test_resnet18_loads_torchvision_and_timm_layouts(layout):
    state = torchvision_resnet_state(18)
    model = resnet18()
    report = load_pretrained(model, state, layout=layout)
    assert report.ok and report.loaded == len(state) - 2  # all but fc.weight, fc.bias
    own = model.state_dict()
    for key in ('conv1.weight', 'layer1.1.bn2.running_var', 'layer3.0.downsample.0.weight',
                'layer4.1.conv2.weight'):
        assert torch.equal(own[key], state[key])
    assert 'fc.weight' not in own


def test_resnet50_loads_old_checkpoint_without_num_batches_tracked(tmp_path):
    state = torchvision_resnet_state(50, tracked=False)
    path = tmp_path / 'resnet50.pth'
    torch.save({'state_dict': {f'module.{k}': v for k, v in state.items()}}, path)
    model = resnet50()
    report = load_pretrained(model, path, layout='torchvision')
    assert report.ok
    assert torch.equal(model.layer2[0].conv2.weight, state['layer2.0.conv2.weight'])
    assert torch.equal(model.layer4[2].bn3.running_mean, state['layer4.2.bn3.running_mean'])


def test_shape_mismatch_and_unknown_layout_are_reported():
    state = torchvision_resnet_state(18)
    with pytest.raises(CheckpointError, match=r'layer1\.0\.conv1\.weight: checkpoint '
                                              r'\(64, 64, 3, 3\) vs model \(64, 64, 1, 1\)'):
        load_pretrained(resnet50(), {k: v for k, v in state.items()
                                     if k.startswith('layer1.0.conv1')} | {
            k: v for k, v in resnet50().state_dict().items()
            if not k.startswith('layer1.0.conv1')}, layout='torchvision')
    with pytest.raises(CheckpointError, match="no checkpoint layout 'caffe'"):
        load_pretrained(resnet18(), state, layout='caffe')
    missing = {k: v for k, v in state.items() if not k.startswith('layer4.1.bn2')}
    with pytest.raises(CheckpointError, match=r'missing in the checkpoint \(layer4\.1\.bn2'):
        load_pretrained(resnet18(), missing, layout='torchvision')
    model = resnet18()
    before = model.conv1.weight.clone()
    with pytest.raises(CheckpointError):
        load_pretrained(model, missing, layout='torchvision')
    assert torch.equal(model.conv1.weight, before)  # strict: nothing loaded


@pytest.mark.parametrize('layout', ['timm', 'official'])
def test_convnext_tiny_loads_timm_and_official_layouts(layout):
    state = convnext_state(layout)
    model = convnext_tiny()
    assert detect_layout(model, state) == layout
    report = load_pretrained(model, state, layout=layout)
    assert report.ok
    own = model.state_dict()
    if layout == 'official':
        pairs = {'stem.0.weight': 'downsample_layers.0.0.weight',
                 'stem.1.bias': 'downsample_layers.0.1.bias',
                 'stages.3.downsample.1.weight': 'downsample_layers.3.1.weight',
                 'stages.2.blocks.8.conv_dw.weight': 'stages.2.8.dwconv.weight',
                 'stages.2.blocks.8.mlp.fc2.weight': 'stages.2.8.pwconv2.weight',
                 'stages.0.blocks.1.gamma': 'stages.0.1.gamma',
                 'norms.3.weight': 'norm.weight'}
    else:
        pairs = {k: k for k in ('stem.0.weight', 'stages.1.downsample.0.weight',
                                'stages.2.blocks.8.mlp.fc1.bias', 'stages.3.blocks.2.gamma')}
        pairs['norms.3.weight'] = 'head.norm.weight'
    for ours, theirs in pairs.items():
        assert torch.equal(own[ours], state[theirs]), ours
    # Output norms of stages 0-2 are not in a classifier checkpoint: they stay at identity.
    assert torch.equal(own['norms.0.weight'], torch.ones(96))
    # Without output norms the classifier's final norm is simply not used.
    bare = convnext_tiny(out_norm=False)
    assert load_pretrained(bare, state, layout=layout).ok


def test_map_state_dict_rules_drop_and_collisions():
    state = {'a.0.w': torch.zeros(1), 'a.1.w': torch.ones(1), 'head.w': torch.zeros(2)}
    out = map_state_dict(state, [(r'^a\.(\d)\.', r'b.\1.'), (r'\.w$', '.weight')], drop=['^head'])
    assert list(out) == ['b.0.weight', 'b.1.weight']
    with pytest.raises(CheckpointError, match="sends both 'a.0.w' and 'a.1.w'"):
        map_state_dict(state, [(r'^a\.\d\.', 'a.')], drop=['^head'])


# ----------------------------------------------------------------------------- numerics
def _bn(x, state, name):
    return F.batch_norm(x, state[f'{name}.running_mean'], state[f'{name}.running_var'],
                        state[f'{name}.weight'], state[f'{name}.bias'], False, 0.0, 1e-5)


def reference_resnet50(x: torch.Tensor, state: dict) -> list[torch.Tensor]:
    """ResNet-50 v1.5 forward written from the paper + torchvision's layout, functionally."""
    x = F.relu(_bn(F.conv2d(x, state['conv1.weight'], stride=2, padding=3), state, 'bn1'))
    x = F.max_pool2d(x, 3, 2, 1)
    outs = []
    for i, n in enumerate([3, 4, 6, 3]):
        for j in range(n):
            p = f'layer{i + 1}.{j}'
            stride = 2 if (i > 0 and j == 0) else 1
            y = F.relu(_bn(F.conv2d(x, state[f'{p}.conv1.weight']), state, f'{p}.bn1'))
            y = F.relu(_bn(F.conv2d(y, state[f'{p}.conv2.weight'], stride=stride, padding=1),
                           state, f'{p}.bn2'))
            y = _bn(F.conv2d(y, state[f'{p}.conv3.weight']), state, f'{p}.bn3')
            if j == 0:
                x = _bn(F.conv2d(x, state[f'{p}.downsample.0.weight'], stride=stride), state,
                        f'{p}.downsample.1')
            x = F.relu(x + y)
        outs.append(x)
    return outs


def reference_convnext(x: torch.Tensor, state: dict, depths=(3, 3, 9, 3)) -> torch.Tensor:
    """The official ConvNeXt forward (to the last stage), functionally, on official names."""

    def ln2d(t, name):  # the official channels_first LayerNorm
        u = t.mean(1, keepdim=True)
        s = (t - u).pow(2).mean(1, keepdim=True)
        t = (t - u) / torch.sqrt(s + 1e-6)
        return state[f'{name}.weight'][:, None, None] * t + state[f'{name}.bias'][:, None, None]

    for i, depth in enumerate(depths):
        d = f'downsample_layers.{i}'
        if i == 0:
            x = ln2d(F.conv2d(x, state[f'{d}.0.weight'], state[f'{d}.0.bias'], stride=4),
                     f'{d}.1')
        else:
            x = F.conv2d(ln2d(x, f'{d}.0'), state[f'{d}.1.weight'], state[f'{d}.1.bias'],
                         stride=2)
        for j in range(depth):
            p = f'stages.{i}.{j}'
            w = state[f'{p}.dwconv.weight']
            y = F.conv2d(x, w, state[f'{p}.dwconv.bias'], padding=3, groups=w.shape[0])
            y = y.permute(0, 2, 3, 1)
            y = F.layer_norm(y, y.shape[-1:], state[f'{p}.norm.weight'], state[f'{p}.norm.bias'],
                             1e-6)
            y = F.linear(F.gelu(F.linear(y, state[f'{p}.pwconv1.weight'],
                                         state[f'{p}.pwconv1.bias'])),
                         state[f'{p}.pwconv2.weight'], state[f'{p}.pwconv2.bias'])
            x = x + (state[f'{p}.gamma'] * y).permute(0, 3, 1, 2)
    return x


def test_resnet50_matches_functional_reference_after_loading():
    state = torchvision_resnet_state(50)
    model = resnet50().eval()
    load_pretrained(model, state, layout='torchvision')
    x = torch.randn(1, 3, 96, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = model(x)
        ref = reference_resnet50(x, state)
    for a, b in zip(ours, ref):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_convnext_tiny_matches_official_forward_after_loading():
    state = convnext_state('official')
    model = convnext_tiny(out_indices=(3, ), out_norm=False).eval()
    load_pretrained(model, state, layout='official')
    x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        (ours, ) = model(x)
        ref = reference_convnext(x, state)
    assert ours.shape == (1, 768, 2, 3)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)
    # With the output norm, the last level is LayerNorm(norm.*) of the same features.
    normed = convnext_tiny(out_indices=(3, )).eval()
    load_pretrained(normed, state, layout='official')
    with torch.no_grad():
        (out, ) = normed(x)
    expect = F.layer_norm(ref.permute(0, 2, 3, 1), (768, ), state['norm.weight'],
                          state['norm.bias'], 1e-6).permute(0, 3, 1, 2)
    torch.testing.assert_close(out, expect, rtol=1e-4, atol=1e-4)
