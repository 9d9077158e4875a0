"""MobileNetV2 backbone: published size, output strides and channels, freezing, timm key layout.

The synthetic timm checkpoint below is written from timm's published ``mobilenetv2_100`` layout
(names and shapes), not from our modules, so a naming or shape slip on our side fails the strict
loader.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from perception.engine.checkpoint_mapping import load_pretrained
from perception.engine.errors import CheckpointError
from perception.models.backbones.mobilenet_v2 import (
    InvertedResidual,
    MobileNetV2,
    mobilenet_v2_100,
)
from perception.registry import MODELS

# timm mobilenetv2_100: 3,504,872 parameters; its classifier is Linear(1280, 1000).
TIMM_TOTAL, TIMM_CLASSIFIER = 3_504_872, 1280 * 1000 + 1000


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_parameter_count_equals_timm_without_classifier():
    assert n_params(mobilenet_v2_100()) == TIMM_TOTAL - TIMM_CLASSIFIER == 2_223_872
    # Stages 0..5 only (IGEV-Stereo's feature network): no 160 -> 320 stage, no head.
    assert n_params(mobilenet_v2_100(num_stages=6, out_indices=(5, ))) == 1_337_792


def test_output_strides_and_channels_for_odd_sizes():
    model = MODELS.build(dict(type='MobileNetV2', out_indices=(0, 1, 2, 3, 4, 5, 6, 7))).eval()
    assert model.out_channels == [16, 24, 32, 64, 96, 160, 320, 1280]
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 65, 97))
    # 3x3 stride-2 convs with padding 1 round up: 65 -> 33 -> 17 -> 9 -> 5 -> 3.
    sizes = [(33, 49), (17, 25), (9, 13), (5, 7), (5, 7), (3, 4), (3, 4), (3, 4)]
    assert [tuple(o.shape[1:]) for o in outs] == [(c, *s) for c, s in zip(model.out_channels,
                                                                          sizes)]
    # ReLU6 after the head: values in [0, 6].
    assert outs[-1].min() >= 0 and outs[-1].max() <= 6


def test_inverted_residual_identity_shortcut():
    block = InvertedResidual(24, 24, 1, 6).eval()
    nn.init.zeros_(block.bn3.weight)
    nn.init.zeros_(block.bn3.bias)  # the residual branch now outputs exactly zero
    x = torch.randn(2, 24, 5, 6)
    torch.testing.assert_close(block(x), x)
    strided = InvertedResidual(24, 24, 2, 6)
    assert not strided.has_skip and strided.conv_dw.stride == (2, 2)


def test_frozen_stages_and_norm_eval():
    model = mobilenet_v2_100(frozen_stages=2).train()
    assert not model.conv_stem.weight.requires_grad and not model.bn1.training
    assert all(not p.requires_grad for p in model.blocks[1].parameters())
    assert not model.blocks[1][0].bn1.training
    assert all(p.requires_grad for p in model.blocks[2].parameters())
    assert model.blocks[2][0].bn1.training
    model = mobilenet_v2_100(norm_eval=True).train()
    assert not any(m.training for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    with pytest.raises(ValueError, match='out_indices'):
        mobilenet_v2_100(num_stages=6, out_indices=(6, ))


def _timm_state_dict() -> dict[str, torch.Tensor]:
    """Keys and shapes of timm's mobilenetv2_100 (efficientnet builder names)."""
    state: dict[str, torch.Tensor] = {}

    def conv(name: str, o: int, i: int, k: int) -> None:
        state[f'{name}.weight'] = torch.randn(o, i, k, k)

    def bn(name: str, c: int) -> None:
        state.update({f'{name}.weight': torch.rand(c) + 0.5, f'{name}.bias': torch.randn(c),
                      f'{name}.running_mean': torch.randn(c) * 0.1,
                      f'{name}.running_var': torch.rand(c) + 0.5,
                      f'{name}.num_batches_tracked': torch.tensor(0)})

    conv('conv_stem', 32, 3, 3)
    bn('bn1', 32)
    conv('blocks.0.0.conv_dw', 32, 1, 3)
    bn('blocks.0.0.bn1', 32)
    conv('blocks.0.0.conv_pw', 16, 32, 1)
    bn('blocks.0.0.bn2', 16)
    cin = 16
    for s, (c, n) in enumerate([(24, 2), (32, 3), (64, 4), (96, 3), (160, 3), (320, 1)], 1):
        for j in range(n):
            mid = cin * 6
            p = f'blocks.{s}.{j}'
            conv(f'{p}.conv_pw', mid, cin, 1)
            bn(f'{p}.bn1', mid)
            conv(f'{p}.conv_dw', mid, 1, 3)
            bn(f'{p}.bn2', mid)
            conv(f'{p}.conv_pwl', c, mid, 1)
            bn(f'{p}.bn3', c)
            cin = c
    conv('conv_head', 1280, 320, 1)
    bn('bn2', 1280)
    state['classifier.weight'] = torch.randn(1000, 1280)
    state['classifier.bias'] = torch.randn(1000)
    return state


def test_timm_layout_loads_strictly():
    torch.manual_seed(0)
    state = _timm_state_dict()
    assert sum(v.numel() for k, v in state.items()
               if not k.endswith(('running_mean', 'running_var', 'num_batches_tracked'))) \
        == TIMM_TOTAL
    model = mobilenet_v2_100()
    report = load_pretrained(model, state, layout='timm')
    assert not report.missing and not report.unexpected
    torch.testing.assert_close(model.blocks[5][2].conv_pwl.weight,
                               state['blocks.5.2.conv_pwl.weight'])
    torch.testing.assert_close(model.bn2.running_var, state['bn2.running_var'])
    # Auto-detection picks the timm layout; a truncated backbone refuses the extra stages.
    assert load_pretrained(mobilenet_v2_100(), state, layout='auto').loaded == report.loaded
    with pytest.raises(CheckpointError):
        load_pretrained(MobileNetV2(num_stages=6, out_indices=(5, )), state, layout='timm')


def _to_torchvision(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm names -> torchvision ``mobilenet_v2`` names (``features.<i>``, layers by position,
    ``classifier.1``), written out from torchvision's module layout."""
    ds = {'conv_dw': '0.0', 'bn1': '0.1', 'conv_pw': '1', 'bn2': '2'}
    ir = {'conv_pw': '0.0', 'bn1': '0.1', 'conv_dw': '1.0', 'bn2': '1.1', 'conv_pwl': '2',
          'bn3': '3'}
    first = [1, 2, 4, 7, 11, 14, 17]  # features index of each stage's first block
    out = {}
    for key, value in state.items():
        parts = key.split('.')
        if parts[0] == 'blocks':
            stage, block, layer = int(parts[1]), int(parts[2]), parts[3]
            pos = (ds if stage == 0 else ir)[layer]
            new = f'features.{first[stage] + block}.conv.{pos}.' + '.'.join(parts[4:])
        else:
            head = {'conv_stem': 'features.0.0', 'bn1': 'features.0.1',
                    'conv_head': 'features.18.0', 'bn2': 'features.18.1',
                    'classifier': 'classifier.1'}[parts[0]]
            new = head + '.' + '.'.join(parts[1:])
        out[new] = value
    return out


def test_torchvision_layout_equals_timm_layout():
    torch.manual_seed(1)
    state = _timm_state_dict()
    tv = _to_torchvision(state)
    assert 'features.17.conv.3.running_var' in tv and 'features.1.conv.2.weight' in tv
    from_timm, from_tv = mobilenet_v2_100(), mobilenet_v2_100()
    load_pretrained(from_timm, state, layout='timm')
    report = load_pretrained(from_tv, tv, layout='auto')  # detects the torchvision layout
    assert report.ok
    for (name, a), (_, b) in zip(from_timm.state_dict().items(), from_tv.state_dict().items()):
        assert torch.equal(a, b), name
