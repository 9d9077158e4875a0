"""SEA-RAFT: parity with the official code, parameter counts, the mixture-of-Laplace loss by hand,
shapes, padding, bad inputs and a loss that falls on a tiny batch."""
from __future__ import annotations

import json
import math
import os

import pytest
import torch
from mmengine.structures import BaseDataElement, PixelData

from perception.models.backbones.resnet import ResNet
from perception.models.flow.sea_raft import (
    SEARAFT,
    convert_official_state_dict,
    laplace_log_scales,
    mixture_of_laplace_loss,
    mixture_of_laplace_nll,
    sea_raft_l,
    sea_raft_m,
    sea_raft_s,
)

FIXTURE = os.path.join(os.path.dirname(__file__), 'data', 'sea_raft_official.json')


def _fill(key: str, shape: list[int], gen: torch.Generator) -> torch.Tensor | None:
    """Deterministic, well-scaled pseudo-random values for one official parameter / buffer
    (the same rule generated the fixture with the official code)."""
    u = torch.rand(shape, generator=gen, dtype=torch.float64)
    leaf = key.rsplit('.', 1)[-1]
    if leaf == 'num_batches_tracked':
        return None
    if leaf == 'running_var' or (leaf == 'weight' and len(shape) == 1):
        return 0.5 + u
    if leaf in ('running_mean', 'bias'):
        return 0.2 * (u - 0.5)
    if leaf == 'gamma':
        return 0.1 + 0.4 * u
    fan_in = math.prod(shape[1:])
    return (2 * u - 1) * (3.0 / fan_in) ** 0.5


def _official_random_state(shapes: dict[str, list[int]], seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for key in sorted(shapes):
        value = _fill(key, shapes[key], gen)
        if value is not None:
            out[key] = value
    return out


@pytest.fixture(scope='module')
def official():
    with open(FIXTURE) as f:
        return json.load(f)


def _pair(b: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 2, 3, h, w, generator=g) * 2 - 1


def test_parameter_counts_match_official(official):
    # Counts of the official RAFT(args) with the S / M / L configs (fixture, measured there).
    assert official['params'] == {'S': 8_883_460, 'M': 19_663_876, 'L': 19_663_876}
    for name, builder in (('S', sea_raft_s), ('M', sea_raft_m), ('L', sea_raft_l)):
        n = sum(p.numel() for p in builder().parameters())
        assert n == official['params'][name], name
    assert sea_raft_l().test_iters == 12 and sea_raft_m().test_iters == 4


def test_matches_official_every_iteration(official):
    """Flow and info (Laplace parameters) of all 5 predictions equal the official SEA-RAFT-S
    run in float64 on the same pseudo-random weights; 130x150 is padded to 136x152 as the
    official code pads. Measured max |difference|: flow 9e-14 px, info 5e-15; bound 1e-9.
    The on-demand ('alt') correlation gives the same predictions (measured 1e-13)."""
    shapes = official['official_shapes']
    model = sea_raft_s().double().eval()
    model.load_state_dict(convert_official_state_dict(_official_random_state(shapes)),
                          strict=True)
    h, w = official['height'], official['width']
    gen = torch.Generator().manual_seed(1)
    img1 = (torch.rand(1, 3, h, w, generator=gen, dtype=torch.float64) * 255).round()
    img2 = torch.roll(img1, shifts=(2, 3), dims=(2, 3))
    gt = torch.randn(1, 2, h, w, generator=gen, dtype=torch.float64) * 3
    with torch.no_grad():
        flows, infos = model.forward_flow(2 * (img1 / 255.0) - 1, 2 * (img2 / 255.0) - 1, iters=4)
    assert len(flows) == len(infos) == 5
    (r0, rs), (c0, cs) = official['rows'], official['cols']
    flow = torch.stack(flows)[:, 0]
    info = torch.stack(infos)[:, 0]
    ref_flow = torch.tensor(official['flow'], dtype=torch.float64)
    ref_info = torch.tensor(official['info'], dtype=torch.float64)
    assert (flow[:, :, r0::rs, c0::cs] - ref_flow).abs().max() < 1e-9
    assert (info[:, :, r0::rs, c0::cs] - ref_info).abs().max() < 1e-9
    sums = flow.abs().sum(dim=(1, 2, 3)), info.abs().sum(dim=(1, 2, 3))
    torch.testing.assert_close(sums[0], torch.tensor(official['flow_abs_sum'],
                                                     dtype=torch.float64), rtol=1e-11, atol=0)
    torch.testing.assert_close(sums[1], torch.tensor(official['info_abs_sum'],
                                                     dtype=torch.float64), rtol=1e-11, atol=0)
    model.corr_mode = 'alt'
    with torch.no_grad():
        alt, _ = model.forward_flow(2 * (img1 / 255.0) - 1, 2 * (img2 / 255.0) - 1, iters=4)
    assert (torch.stack(alt)[:, 0] - flow).abs().max() < 1e-9
    # The official sequence_loss on the same predictions (gamma 0.85, all pixels valid).
    loss = mixture_of_laplace_loss(flows, infos, gt, torch.ones(1, 1, h, w, dtype=torch.bool),
                                   gamma=0.85)
    assert loss.item() == pytest.approx(official['loss'], rel=1e-12)


def test_convert_drops_duplicate_norm_and_module_prefix():
    sd = {'module.cnet.layer2.0.bn3.weight': torch.ones(1),
          'module.cnet.layer2.0.downsample.1.weight': torch.ones(1),
          'fnet.final_conv.bias': torch.zeros(1), 'flow_head.0.weight': torch.zeros(1)}
    assert sorted(convert_official_state_dict(sd)) == [
        'cnet.backbone.layer2.0.downsample.1.weight', 'flow_head.0.weight', 'fnet.proj.bias']


def _hand_nll(e: float, alpha: tuple[float, float], b: tuple[float, float]) -> float:
    return -math.log(sum(a / (2 * s) * math.exp(-e / s) for a, s in zip(alpha, b)))


def test_mixture_of_laplace_loss_by_hand():
    # logits (0, ln 3) -> alpha (1/4, 3/4); raw log-scales (ln 2, 0.7) -> b = (2, 1): the second
    # is clamped to [var_min, 0] = [0, 0]; the first lies inside [0, 10].
    flow = torch.tensor([1.0, -2.0], dtype=torch.float64).view(1, 2, 1, 1)
    gt = torch.tensor([1.5, 0.0], dtype=torch.float64).view(1, 2, 1, 1)
    info = torch.tensor([0.0, math.log(3), math.log(2), 0.7], dtype=torch.float64).view(1, 4, 1, 1)
    expect_u = _hand_nll(0.5, (0.25, 0.75), (2.0, 1.0))
    expect_v = _hand_nll(2.0, (0.25, 0.75), (2.0, 1.0))
    nll = mixture_of_laplace_nll(flow, info, gt)
    assert nll.flatten().tolist() == pytest.approx([expect_u, expect_v], rel=1e-12)
    valid = torch.ones(1, 1, 1, 1, dtype=torch.bool)
    one = mixture_of_laplace_loss([flow], [info], gt, valid)
    assert one.item() == pytest.approx((expect_u + expect_v) / 2, rel=1e-12)
    # Two predictions: gamma**1 on the first, 1 on the last. A raw scale beyond var_max clamps.
    info2 = torch.tensor([0.0, 0.0, 12.0, -3.0], dtype=torch.float64).view(1, 4, 1, 1)
    assert laplace_log_scales(info2).flatten().tolist() == [10.0, 0.0]
    second = (_hand_nll(0.5, (0.5, 0.5), (math.exp(10), 1.0))
              + _hand_nll(2.0, (0.5, 0.5), (math.exp(10), 1.0))) / 2
    two = mixture_of_laplace_loss([flow, flow], [info, info2], gt, valid, gamma=0.8)
    assert two.item() == pytest.approx(0.8 * (expect_u + expect_v) / 2 + second, rel=1e-12)
    # Invalid pixels and |gt| >= max_flow are left out of the mean.
    gt3 = torch.cat([gt, torch.full_like(gt, 500.0), gt], dim=3)
    flow3, info3 = flow.expand(1, 2, 1, 3), info.expand(1, 4, 1, 3)
    valid3 = torch.tensor([True, True, False]).view(1, 1, 1, 3)
    assert mixture_of_laplace_loss([flow3], [info3], gt3, valid3).item() == pytest.approx(
        one.item(), rel=1e-12)


def test_truncated_resnet_encoder():
    r = ResNet(depth=18, num_stages=3, out_indices=(2,), stem_pool=False, conv_bias=True,
               relu_before_add=True)
    assert not hasattr(r, 'layer4') and r.conv1.bias is not None
    assert r(torch.zeros(1, 3, 32, 48))[0].shape == (1, 256, 4, 6)
    with pytest.raises(ValueError, match='out_indices'):
        ResNet(depth=18, num_stages=3, out_indices=(3,))
    with pytest.raises(ValueError, match='relu_before_add'):
        ResNet(depth=50, relu_before_add=True)


def test_shapes_iters_and_padding():
    torch.manual_seed(0)
    model = SEARAFT(depth=18, dim=32, num_blocks=1, corr_levels=2, test_iters=3).eval()
    x = _pair(2, 37, 53)  # not multiples of 8: padded to 40x56 and cropped back
    with torch.no_grad():
        flows = model(x, mode='tensor')
        assert len(flows) == 4 and all(f.shape == (2, 2, 37, 53) for f in flows)
        assert model.predict_flow(x, iters=0).shape == (2, 2, 37, 53)
        torch.testing.assert_close(model.predict_flow(x, iters=3), flows[-1])
        # Direct regression = iteration 0 of every run.
        torch.testing.assert_close(model.predict_flow(x, iters=0), flows[0])
        # A warm start replaces the regressed flow: a constant init is the first prediction
        # away from the border (convex upsampling reads zeros beyond it).
        init = torch.full((2, 2, 37, 53), 4.0)
        model.test_iters = 0
        warm = model.predict_flow(x, flow_init=init)
        torch.testing.assert_close(warm[..., 8:-8, 8:-8], init[..., 8:-8, 8:-8])
        samples = model(x, [BaseDataElement(), BaseDataElement()], mode='predict')
    assert samples[0].pred_flow.data.shape == (2, 37, 53)


def test_bad_inputs():
    model = SEARAFT(depth=18, dim=32, num_blocks=1).eval()
    with pytest.raises(ValueError, match=r'\(B, 2, 3, H, W\)'):
        model.predict_flow(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match='one size'):
        model.forward_flow(torch.zeros(1, 3, 64, 64), torch.zeros(1, 3, 64, 72))
    with pytest.raises(ValueError, match='iters'):
        model.predict_flow(_pair(1, 64, 64), iters=-1)
    with pytest.raises(ValueError, match='flow_init'):
        model.predict_flow(_pair(1, 64, 64), flow_init=torch.zeros(1, 2, 16, 16))
    with pytest.raises(ValueError, match='gt_flow'):
        model(_pair(1, 32, 32), [BaseDataElement()], mode='loss')
    with pytest.raises(ValueError, match='mode'):
        model(_pair(1, 32, 32), mode='nope')
    with pytest.raises(ValueError, match='at least 64x64'):
        model.predict_flow(_pair(1, 32, 80))
    with pytest.raises(ValueError, match='depth'):
        SEARAFT(depth=50)


def test_loss_decreases_on_tiny_batch():
    torch.manual_seed(0)
    model = SEARAFT(depth=18, dim=32, num_blocks=1, corr_levels=2, train_iters=2)
    x = _pair(2, 32, 48)
    gt = torch.zeros(2, 2, 32, 48)
    gt[:, 0], gt[:, 1] = 1.5, -0.5
    samples = []
    for i in range(2):
        s = BaseDataElement()
        s.gt_flow = PixelData(data=gt[i])
        s.gt_valid = PixelData(data=torch.ones(1, 32, 48, dtype=torch.bool))
        samples.append(s)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-4)
    losses = []
    for _ in range(12):
        out = model(x, samples, mode='loss')
        opt.zero_grad()
        out['loss_flow'].backward()
        opt.step()
        losses.append(out['loss_flow'].item())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.7 * losses[0], losses
