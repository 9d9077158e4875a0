"""IGEV-Stereo: size, volumes, lookups, upsampling, loss, official keys and a tiny training run."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from mmengine.structures import BaseDataElement, PixelData

# Importing the module registers MobileNetV2 (the default feature backbone, built by type name).
from perception.models.backbones import mobilenet_v2  # noqa: F401
from perception.models.stereo.igev_stereo import (
    CombinedGeoEncodingVolume,
    IGEVStereo,
    context_upsample,
    convert_official_state_dict,
    disparity_regression,
    groupwise_correlation_volume,
    igev_loss,
)
from perception.registry import MODELS

KEYS_FILE = Path(__file__).parent / 'data' / 'official_keys' / 'igev_stereo.json'

# Counted by building the official gangweiX/IGEV modules (train_stereo.py defaults, timm 0.5.4
# mobilenetv2_100): 12,598,114 parameters, 16 of them the affine of a BatchNorm3d that
# cost_agg.conv1_up creates with bn=False and never applies (left out here).
OFFICIAL_PARAMS = 12_598_114
OFFICIAL_CHILDREN = {
    'cnet': 4_321_184, 'update_block': 4_108_384, 'context_zqr_convs': 1_328_256,
    'feature': 2_116_544, 'stem_2': 10_080, 'stem_4': 34_560, 'spx': 9_225, 'spx_2': 49_152,
    'spx_4': 25_920, 'spx_2_gru': 53_440, 'spx_gru': 9_225, 'conv': 82_944, 'desc': 9_312,
    'corr_stem': 1_744, 'corr_feature_att': 5_096, 'cost_agg': 432_832 - 16, 'classifier': 216,
}


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def small_model(**kwargs) -> IGEVStereo:
    cfg = dict(hidden_dims=(32, 32, 32), n_gru_layers=2, max_disp=32, train_iters=2,
               test_iters=2)
    cfg.update(kwargs)
    return IGEVStereo(**cfg)


def test_parameter_count_matches_official():
    model = IGEVStereo()
    counts = {name: n_params(child) for name, child in model.named_children()
              if name != 'data_preprocessor'}
    assert counts == OFFICIAL_CHILDREN
    assert n_params(model) == OFFICIAL_PARAMS - 16 == 12_598_098
    # The backbone part of ``feature``: MobileNetV2-100 stages 0..5 (no stage 6, no head).
    assert n_params(model.feature.backbone) == 1_337_792


def test_official_key_list_loads_strictly():
    doc = json.loads(KEYS_FILE.read_text())
    official = {k: torch.zeros(shape) for k, shape in doc['keys'].items()}
    assert doc['num_parameters'] == OFFICIAL_PARAMS
    converted = convert_official_state_dict(official)
    model = IGEVStereo()
    result = model.load_state_dict(converted, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    # Spot checks of the renames: timm stages inside ``feature`` and the context levels.
    assert 'feature.backbone.blocks.4.2.conv_pwl.weight' in converted  # official block3.1.2
    assert 'feature.block3.1.2.conv_pwl.weight' in official
    assert 'cnet.outputs32.0.weight' in converted  # official outputs16.0
    dropped = set(official) - {k for k in official if k in converted}
    assert all('.norm3.' in k or k.startswith('cost_agg.conv1_up.bn.') or
               k.startswith(('feature.', 'cnet.outputs')) for k in dropped)


def test_groupwise_correlation_volume_brute_force():
    torch.manual_seed(0)
    left, right = torch.randn(2, 8, 3, 7), torch.randn(2, 8, 3, 7)
    vol = groupwise_correlation_volume(left, right, 5, 4)
    assert vol.shape == (2, 4, 5, 3, 7)
    for d in (0, 1, 4):
        for x in (0, 3, 6):
            expected = ((left[..., x] * right[..., x - d]).view(2, 4, 2, 3).mean(2)
                        if x >= d else torch.zeros(2, 4, 3))
            torch.testing.assert_close(vol[:, :, d, :, x], expected)


def test_soft_argmin_on_volume_with_known_minimum():
    # A cost peaked at candidate 13.3 (a symmetric bump, far from both ends) -> 13.3.
    d = torch.arange(48.0).view(1, 48, 1, 1)
    prob = torch.softmax(-0.5 * (d - 13.3) ** 2, dim=1).expand(2, 48, 3, 4)
    torch.testing.assert_close(disparity_regression(prob), torch.full((2, 1, 3, 4), 13.3))
    # Through the model's classifier: a centre-tap kernel on channel 0 passes the volume through.
    # (A unit-width bump: the mean of a sampled Gaussian equals its centre to ~1e-8.)
    model = small_model(max_disp=128)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.weight[0, 0, 1, 1, 1] = 1.0
        target = torch.tensor([[8.0, 9.5], [17.0, 21.25]])  # (h, w) disparities in candidates
        cand = torch.arange(32.0).view(32, 1, 1)
        cost = torch.zeros(1, 8, 32, 2, 2)
        cost[0, 0] = -0.5 * (cand - target) ** 2
        init = model.initial_disparity(cost)
    torch.testing.assert_close(init[0, 0], target, atol=1e-4, rtol=0)


def test_model_recovers_a_shift_from_the_gwc_volume():
    # Right = left shifted by 3 columns: candidate 3 has the largest correlation everywhere.
    torch.manual_seed(1)
    left = torch.randn(1, 16, 4, 20)
    right = torch.roll(left, -3, dims=3)
    vol = groupwise_correlation_volume(left, right, 8, 8).sum(1)  # (1, 8, 4, 20)
    assert (vol[0, :, :, 3:17].argmax(0) == 3).all()


def test_combined_lookup_equals_grid_sample():
    torch.manual_seed(2)
    b, c, h, w, g, d = 1, 6, 2, 9, 3, 8
    f1, f2 = torch.randn(b, c, h, w), torch.randn(b, c, h, w)
    geo = torch.randn(b, g, d, h, w)
    fn = CombinedGeoEncodingVolume(f1, f2, geo, num_levels=2, radius=2)
    disp = torch.rand(b, 1, h, w) * 9 - 1  # includes positions outside the volume
    coords = torch.arange(w, dtype=torch.float32).expand(b, h, w)
    out = fn(disp, coords)
    assert out.shape == (b, 2 * (g + 1) * 5, h, w)
    # Reference: the official bilinear_sampler (grid_sample, align_corners=True, zeros).
    corr = torch.einsum('bcyi,bcyj->byij', f1, f2).reshape(b * h * w, 1, 1, w)
    vol = geo.permute(0, 3, 4, 1, 2).reshape(b * h * w, g, 1, d)
    dx = torch.arange(-2.0, 3.0).view(1, 1, 5, 1)
    ref = []
    for i in range(2):
        x0 = dx + disp.reshape(-1, 1, 1, 1) / 2 ** i
        xc = coords.reshape(-1, 1, 1, 1) / 2 ** i - disp.reshape(-1, 1, 1, 1) / 2 ** i + dx
        for img, x in ((vol, x0), (corr, xc)):
            grid = torch.cat([2 * x / (img.shape[-1] - 1) - 1, torch.zeros_like(x)], -1)
            ref.append(F.grid_sample(img, grid, align_corners=True).view(b, h, w, -1))
        vol = F.avg_pool2d(vol, (1, 2), (1, 2))
        corr = F.avg_pool2d(corr, (1, 2), (1, 2))
    ref = torch.cat(ref, -1).permute(0, 3, 1, 2)
    assert ref.abs().max() > 1.0
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_context_upsample_by_hand():
    disp = torch.arange(6.0).view(1, 1, 2, 3)
    # All weight on the centre tap (index 4): nearest-neighbour x4 upsampling.
    weights = torch.zeros(1, 9, 8, 12)
    weights[:, 4] = 1
    up = context_upsample(disp, weights)
    torch.testing.assert_close(up, disp.repeat_interleave(4, 2).repeat_interleave(4, 3))
    # All weight on the right neighbour (index 5): column x + 1, zero past the border.
    weights = torch.zeros(1, 9, 8, 12)
    weights[:, 5] = 1
    up = context_upsample(disp, weights)
    assert up[0, 0, 0, 0] == 1 and up[0, 0, 5, 7] == 5 and up[0, 0, 7, 11] == 0
    # Uniform weights average the 3x3 neighbourhood: pixel (0, 1) sees 0+1+2+3+4+5 over 9.
    up = context_upsample(disp, torch.full((1, 9, 8, 12), 1 / 9))
    torch.testing.assert_close(up[0, 0, 2, 5], torch.tensor(15 / 9))


def test_loss_by_hand():
    gt = torch.tensor([[[[1.0, 2.0, 250.0, 4.0]]]])
    valid = torch.tensor([[[[1.0, 1.0, 1.0, 0.0]]]])  # pixel 2 over max_disp, 3 invalid
    init = torch.tensor([[[[1.5, 4.0, 0.0, 99.0]]]])  # errors 0.5 (quadratic), 2 (linear)
    preds = [gt + 3.0, torch.tensor([[[[1.25, 2.0, 0.0, 0.0]]]])]
    # smooth-L1 (beta 1): (0.5 * 0.5 ** 2 + (2 - 0.5)) / 2 = 0.8125; sequence weights for n = 2:
    # 0.9 ** 15 and 1; mean errors 3 and 0.125.
    expected = 0.8125 + 0.9 ** 15 * 3 + 0.125
    loss = igev_loss(init, preds, gt, valid, gamma=0.9, max_disp=192)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss = igev_loss(init, preds, gt, valid, max_disp=192, init_weight=0.0)
    assert loss.item() == pytest.approx(0.9 ** 15 * 3 + 0.125, rel=1e-6)


@pytest.fixture(scope='module')
def tiny_eval_model() -> IGEVStereo:
    torch.manual_seed(3)
    return small_model(test_iters=1).eval()


@pytest.mark.parametrize('size', [(37, 53), (31, 33)])
def test_predict_shapes_for_any_size(size, tiny_eval_model):
    model = tiny_eval_model
    inputs = torch.rand(2, 2, 3, *size) * 255
    data = model.data_preprocessor({'inputs': list(inputs)})
    with torch.no_grad():
        out = model(data['inputs'], mode='tensor')
        samples = model(data['inputs'], [BaseDataElement(), BaseDataElement()], mode='predict')
    assert out.shape == (2, *size)
    assert samples[1].pred_disp.shape == size
    torch.testing.assert_close(samples[1].pred_disp, out[1])
    assert torch.isfinite(out).all()


def test_other_registry_backbone():
    # Any backbone with outputs at strides 4..32 fits: the adapters follow its channels.
    torch.manual_seed(5)
    model = small_model(test_iters=1, backbone=dict(type='ResNet', depth=18)).eval()
    assert model.feature.out_channels == [128, 256, 512, 512]
    assert model.conv.conv.in_channels == 128 + 48
    with torch.no_grad():
        out = model.predict_disparity(torch.rand(1, 2, 3, 32, 64) * 2 - 1)
    assert out.shape == (1, 32, 64) and torch.isfinite(out).all()


def test_forward_rejects_bad_sizes(tiny_eval_model):
    model = tiny_eval_model
    with pytest.raises(ValueError, match='divisible by 32'):
        model.forward_disparity(torch.zeros(1, 3, 32, 48), torch.zeros(1, 3, 32, 48))
    with pytest.raises(ValueError, match='one size'):
        model.forward_disparity(torch.zeros(1, 3, 32, 64), torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match='multiple of 32'):
        IGEVStereo(max_disp=100)


def test_registry_build_and_loss_mode():
    torch.manual_seed(4)
    model = MODELS.build(dict(type='IGEVStereo', hidden_dims=(16, 16, 16), n_gru_layers=3,
                              max_disp=32, train_iters=3))
    inputs = torch.rand(1, 2, 3, 32, 64) * 2 - 1
    sample = BaseDataElement(gt_disp=PixelData(data=torch.full((1, 32, 64), 4.0)),
                             gt_valid=PixelData(data=torch.ones(1, 32, 64)))
    losses = model(inputs, [sample], mode='loss')
    assert set(losses) == {'loss_disp', 'epe'}
    assert losses['loss_disp'].requires_grad and losses['loss_disp'].item() > 0
    init, preds = model.forward_disparity(inputs[:, 0], inputs[:, 1])
    assert init.shape == (1, 1, 32, 64) and len(preds) == 3


def test_frozen_2d_batchnorms_in_training():
    model = small_model().train()
    assert not model.cnet.norm1.training
    assert not model.feature.backbone.bn1.training
    assert model.corr_stem.bn.training  # the 3D BatchNorms train, as the official freeze_bn


def _shift_pair(h: int, w: int, shift: int) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(0)
    base = F.avg_pool2d(torch.rand(1, 3, h, w + shift, generator=gen), 3, 1, 1) * 2 - 1
    left, right = base[..., :w], base[..., shift:]  # left(x) = right(x - shift)
    gt = torch.full((1, 1, h, w), float(shift))
    valid = torch.ones_like(gt)
    valid[..., :shift] = 0  # no match inside the right image
    return left, right, gt, valid


def test_tiny_training_reduces_epe():
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        left, right, gt, valid = _shift_pair(32, 64, 5)
        model = small_model(n_gru_layers=1)
        opt = torch.optim.Adam(model.parameters(), lr=2e-3)

        def epe() -> float:
            model.eval()
            with torch.no_grad():
                _, preds = model.forward_disparity(left, right, test_mode=True)
            model.train()
            return (preds[-1] - gt)[valid.bool()].abs().mean().item()

        before = epe()
        for _ in range(30):
            init, preds = model.forward_disparity(left, right)
            loss = igev_loss(init, preds, gt, valid, max_disp=32)
            opt.zero_grad()
            loss.backward()
            opt.step()
        after = epe()
    finally:
        torch.set_num_threads(threads)
    assert math.isfinite(after)
    assert after < 0.35 * before and after < 1.5, (before, after)
