"""FPN neck: output shapes for mmdetection's extra-level options, sizes, and the top-down sum."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from perception.engine.checkpoint_mapping import load_pretrained
from perception.engine.errors import CheckpointError
from perception.models.layers.fpn import FPN
from perception.registry import MODELS

R50 = [256, 512, 1024, 2048]


def pyramid(h: int = 64, w: int = 96, channels=R50, batch: int = 2) -> list[torch.Tensor]:
    """Backbone-like inputs at strides 4..32 of an (h*4, w*4) image."""
    return [torch.randn(batch, c, h // 2**i, w // 2**i) for i, c in enumerate(channels)]


def test_faster_rcnn_fpn_shapes_and_size():
    fpn = FPN(R50, 256, num_outs=5)
    outs = fpn(pyramid())
    assert [tuple(o.shape) for o in outs] == [(2, 256, 64 // 2**i, 96 // 2**i) for i in range(5)]
    assert fpn.out_channels == [256] * 5
    # 4 laterals (1x1 + bias) + 4 output 3x3 convs (+ bias); max-pool adds nothing:
    # 256 * (256 + 512 + 1024 + 2048) + 4 * 256 + 4 * (256 * 256 * 9 + 256) = 3,344,384.
    assert sum(p.numel() for p in fpn.parameters()) == 3_344_384
    # The 5th level is a stride-2 subsample (kernel-1 max-pool) of the 4th.
    assert torch.equal(outs[4], outs[3][:, :, ::2, ::2])


@pytest.mark.parametrize('extra', ['on_input', 'on_lateral', 'on_output', True])
def test_retinanet_style_extra_convs(extra):
    fpn = FPN(R50, 256, num_outs=5, start_level=1, add_extra_convs=extra,
              relu_before_extra_convs=True)
    outs = fpn(pyramid(h=64, w=64))
    assert [tuple(o.shape) for o in outs] == [(2, 256, 32 // 2**i, 32 // 2**i) for i in range(5)]
    # Extra conv 1 reads the last input (2048 ch) for on_input, else a 256-ch map.
    first_extra = fpn.fpn_convs[3]
    assert first_extra.stride == (2, 2)
    assert first_extra.in_channels == (2048 if extra in ('on_input', True) else 256)
    assert len(fpn.lateral_convs) == 3 and len(fpn.fpn_convs) == 5


def test_top_down_is_nearest_upsampled_sum_and_handles_odd_sizes():
    # Identity laterals and identity 3x3 convs on one channel make the sums visible.
    fpn = FPN([1, 1, 1], out_channels=1, num_outs=3)
    with torch.no_grad():
        for conv in fpn.lateral_convs:
            conv.weight.fill_(1.0)
            conv.bias.zero_()
        for conv in fpn.fpn_convs:
            conv.weight.zero_()
            conv.weight[0, 0, 1, 1] = 1.0
            conv.bias.zero_()
    c3 = torch.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    c4 = torch.tensor([[[[10.0, 20.0], [30.0, 40.0]]]])
    c5 = torch.tensor([[[[100.0]]]])
    p3, p4, p5 = fpn([c3, c4, c5])
    assert torch.equal(p5, c5)
    assert torch.equal(p4, c4 + 100.0)
    # 2x2 -> 3x3 nearest: source index floor(i * 2 / 3) = 0, 0, 1.
    up = torch.tensor([[110.0, 110.0, 120.0], [110.0, 110.0, 120.0], [130.0, 130.0, 140.0]])
    assert torch.equal(p3[0, 0], c3[0, 0] + up)


def test_errors_and_registry():
    with pytest.raises(ValueError, match='num_outs=2 is fewer than the 4 input levels'):
        FPN(R50, num_outs=2)
    with pytest.raises(ValueError, match='add_extra_convs must be'):
        FPN(R50, add_extra_convs='on_top')
    with pytest.raises(ValueError, match='FPN input 1 must be'):
        FPN(R50)(pyramid(channels=[256, 256, 1024, 2048]))
    fpn = MODELS.build(dict(type='FPN', in_channels=[96, 192, 384, 768], out_channels=128,
                            num_outs=4))
    assert isinstance(fpn, FPN) and fpn.out_channels == [128] * 4


def test_mmdet_checkpoint_names_load():
    fpn = FPN(R50, 256, num_outs=5, start_level=1, add_extra_convs='on_input')
    # mmdetection's RetinaNet neck: ConvModule wrappers and a 'neck.' prefix.
    state = {}
    for i, c in enumerate(R50[1:]):
        state[f'neck.lateral_convs.{i}.conv.weight'] = torch.randn(256, c, 1, 1)
        state[f'neck.lateral_convs.{i}.conv.bias'] = torch.randn(256)
    for i in range(5):
        cin = 2048 if i == 3 else 256
        state[f'neck.fpn_convs.{i}.conv.weight'] = torch.randn(256, cin, 3, 3)
        state[f'neck.fpn_convs.{i}.conv.bias'] = torch.randn(256)
    assert load_pretrained(fpn, state, layout='mmdet').ok
    assert torch.equal(fpn.fpn_convs[3].weight, state['neck.fpn_convs.3.conv.weight'])
    assert torch.equal(fpn.lateral_convs[2].bias, state['neck.lateral_convs.2.conv.bias'])
    del state['neck.fpn_convs.4.conv.bias']
    with pytest.raises(CheckpointError, match=r'fpn_convs\.4\.bias'):
        load_pretrained(FPN(R50, 256, 5, start_level=1, add_extra_convs=True), state, 'mmdet')


def test_fpn_on_a_backbone_is_differentiable():
    from perception.models.backbones.resnet import resnet18
    backbone = resnet18()
    fpn = FPN(backbone.out_channels, 64, num_outs=5)
    outs = fpn(backbone(torch.randn(1, 3, 64, 64)))
    assert [o.shape[-1] for o in outs] == [16, 8, 4, 2, 1]
    sum(o.mean() for o in outs).backward()
    assert all(p.grad is not None for p in fpn.parameters())
    assert isinstance(fpn.lateral_convs[0], nn.Conv2d)
