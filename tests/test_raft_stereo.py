"""RAFT-Stereo: size, correlation lookups, upsampling, loss, shapes and a tiny training run."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from mmengine.structures import BaseDataElement, PixelData

from perception.models.layers.conv_gru import ConvGRU
from perception.models.stereo.raft_stereo import (
    CorrPyramid1D,
    RAFTStereo,
    StereoDataPreprocessor,
    convex_upsample,
    correlation_volume,
    sequence_loss,
    sequence_loss_weights,
)

# Counted by building the official princeton-vl/RAFT-Stereo modules with the train_stereo.py
# defaults (hidden_dims [128]*3, n_downsample 2, n_gru_layers 3, corr 4 levels radius 4, batch
# context norm, no shared backbone): cnet 4,321,184 + update_block 4,399,888 +
# context_zqr_convs 1,328,256 + fnet 1,066,848.
OFFICIAL_PARAMS = 11_116_176


def small_model(**kwargs) -> RAFTStereo:
    cfg = dict(hidden_dims=(32, 32, 32), n_gru_layers=2, train_iters=3, test_iters=3)
    cfg.update(kwargs)
    return RAFTStereo(**cfg)


def test_parameter_count_matches_official():
    model = RAFTStereo()
    counts = {name: sum(p.numel() for p in child.parameters())
              for name, child in model.named_children()}
    assert counts['cnet'] == 4_321_184
    assert counts['update_block'] == 4_399_888
    assert counts['context_zqr_convs'] == 1_328_256
    assert counts['fnet'] == 1_066_848
    assert sum(p.numel() for p in model.parameters()) == OFFICIAL_PARAMS


def test_reg_lookup_matches_brute_force_and_grid_sample():
    torch.manual_seed(0)
    f1, f2 = torch.randn(1, 8, 2, 11), torch.randn(1, 8, 2, 11)
    corr = correlation_volume(f1, f2)
    brute = (f1[..., :, None] * f2[..., None, :]).sum(1) / math.sqrt(8)
    torch.testing.assert_close(corr, brute)
    pyr = CorrPyramid1D(f1, f2, num_levels=2, radius=1, mode='reg')
    # Integer positions at level 0 read the volume; level 1 reads averaged column pairs.
    x = torch.full((1, 2, 11), 4.0)
    out = pyr(x)  # (1, 6, 2, 11)
    torch.testing.assert_close(out[0, :3, 1, 5], brute[0, 1, 5, 3:6])
    pooled = (brute[0, 0, 7, 0::2][:5] + brute[0, 0, 7, 1::2][:5]) / 2
    torch.testing.assert_close(out[0, 3:, 0, 7], pooled[1:4])
    # Fractional and out-of-range positions equal grid_sample(align_corners=True, zeros).
    xs = torch.rand(1, 2, 11) * 20 - 5
    out = CorrPyramid1D(f1, f2, num_levels=1, radius=2, mode='reg')(xs)
    pos = xs[..., None] + torch.arange(-2.0, 3.0)  # (1, 2, 11, 5)
    grid = torch.stack([2 * pos / 10 - 1, torch.zeros_like(pos)], -1).reshape(22, 1, 5, 2)
    ref = F.grid_sample(brute.reshape(22, 1, 1, 11), grid, align_corners=True)
    torch.testing.assert_close(out[0].permute(1, 2, 0).reshape(22, 5), ref.reshape(22, 5))


@pytest.mark.parametrize('width', [23, 16])
def test_alt_lookup_equals_reg(width):
    torch.manual_seed(1)
    f1, f2 = torch.randn(2, 16, 5, width), torch.randn(2, 16, 5, width)
    xs = torch.rand(2, 5, width) * (width + 20) - 10  # includes positions outside the image
    reg = CorrPyramid1D(f1, f2, 4, 4, 'reg')(xs)
    alt = CorrPyramid1D(f1, f2, 4, 4, 'alt')(xs)
    assert reg.shape == (2, 36, 5, width)
    assert reg.abs().max() > 0.5
    torch.testing.assert_close(alt, reg, atol=1e-5, rtol=0)


def test_alt_model_equals_reg_model():
    torch.manual_seed(2)
    model = small_model().eval()
    x = torch.rand(1, 2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        reg = model.predict_disparity(x)
        model.corr_implementation = 'alt'
        alt = model.predict_disparity(x)
    torch.testing.assert_close(alt, reg, atol=1e-5, rtol=0)


def test_convex_upsample_constant_field():
    torch.manual_seed(3)
    flow = torch.full((2, 1, 3, 5), -2.5)
    mask = torch.randn(2, 9 * 16, 3, 5)
    up = convex_upsample(flow, mask, 4)
    assert up.shape == (2, 1, 12, 20)
    # Zero padding at the border makes border pixels a smaller convex mix; interior is exact.
    torch.testing.assert_close(up[:, :, 4:8, 4:16], torch.full((2, 1, 4, 12), -10.0))
    # A uniform mask on an interior pixel averages its 3x3 neighbourhood (times the factor).
    ramp = torch.arange(15.0).view(1, 1, 3, 5)
    up = convex_upsample(ramp, torch.zeros(1, 9 * 4, 3, 5), 2)
    torch.testing.assert_close(up[0, 0, 2:4, 4:6], torch.full((2, 2), 2 * 7.0))


def test_sequence_loss_weights_by_hand():
    torch.testing.assert_close(sequence_loss_weights(16),
                               torch.tensor([0.9 ** (15 - i) for i in range(16)],
                                            dtype=torch.float64))
    # n = 4: gamma ** (15 / 3) = 0.9 ** 5 per step.
    torch.testing.assert_close(sequence_loss_weights(4),
                               torch.tensor([0.9 ** 15, 0.9 ** 10, 0.9 ** 5, 1.0],
                                            dtype=torch.float64))
    torch.testing.assert_close(sequence_loss_weights(1), torch.ones(1, dtype=torch.float64))

    gt = torch.tensor([[[[1.0, 2.0, 800.0, 4.0]]]])
    valid = torch.tensor([[[[1.0, 1.0, 1.0, 0.0]]]])  # pixel 2 dropped by max_flow, 3 invalid
    preds = [gt + 3.0, gt - 1.0, torch.tensor([[[[1.5, 2.0, 0.0, 99.0]]]])]
    # weights for n = 3: 0.9 ** 15, 0.9 ** 7.5, 1; mean errors over pixels 0, 1: 3, 1, 0.25.
    expected = 0.9 ** 15 * 3 + 0.9 ** 7.5 * 1 + 0.25
    loss = sequence_loss(preds, gt, valid, gamma=0.9, max_flow=700)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_conv_gru_gates():
    torch.manual_seed(4)
    gru = ConvGRU(hidden_dim=4, input_dim=3)
    h, x = torch.randn(1, 4, 5, 6), torch.randn(1, 3, 5, 6)
    zero = torch.zeros(1, 4, 5, 6)
    # z -> 0 keeps the hidden state; z -> 1 and r -> 0 gives tanh(conv_q([0, x]) + cq).
    torch.testing.assert_close(gru(h, zero - 1e4, zero, zero, x), h)
    out = gru(h, zero + 1e4, zero - 1e4, zero + 0.5, x)
    ref = torch.tanh(gru.convq(torch.cat([zero, x], 1)) + 0.5)
    torch.testing.assert_close(out, ref)
    with pytest.raises(ValueError, match='input 3'):
        gru(h, zero, zero, zero, x[:, :2])


def test_preprocessor_and_odd_size_predict():
    torch.manual_seed(5)
    model = small_model(n_gru_layers=3)
    pair = torch.randint(0, 256, (2, 3, 37, 61), dtype=torch.uint8)
    pair[0, :, 0, 0] = 0
    pair[0, :, 0, 1] = 255
    data = model.data_preprocessor({'inputs': [pair], 'data_samples': [BaseDataElement()]})
    assert data['inputs'].shape == (1, 2, 3, 37, 61)
    assert data['inputs'][0, 0, :, 0, 0].tolist() == [-1.0] * 3
    assert data['inputs'][0, 0, :, 0, 1].tolist() == [1.0] * 3
    model.eval()
    with torch.no_grad():
        samples = model(**data, mode='predict')
    assert samples[0].pred_disp.shape == (37, 61)
    assert torch.isfinite(samples[0].pred_disp).all()
    # 'loss' mode on an odd size must say that training crops need the pad divisor.
    sample = BaseDataElement(gt_disp=PixelData(data=torch.ones(1, 37, 61)))
    with pytest.raises(ValueError, match='multiple of 32'):
        model.train()(data['inputs'], [sample], mode='loss')
    with pytest.raises(ValueError, match='different sizes'):
        StereoDataPreprocessor()({'inputs': [pair, pair[..., :60]]})


def _shifted_pairs(n: int, d: int, gen: torch.Generator, h: int = 32,
                   w: int = 64) -> torch.Tensor:
    """``(n, 2, 3, h, w)`` 0-255 pairs with left(x) = right(x - d): disparity ``d`` everywhere."""
    tex = torch.rand(n, 3, h // 4, (w + 16) // 4, generator=gen)
    tex = F.interpolate(tex, scale_factor=4, mode='bilinear', align_corners=False) * 255
    return torch.stack([tex[..., 8:8 + w], tex[..., 8 + d:8 + d + w]], 1)


def test_tiny_training_reduces_epe():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    model = small_model(train_iters=4, test_iters=4)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    d = 4
    held_out = model.data_preprocessor({'inputs': _shifted_pairs(2, d, gen)})['inputs']

    def epe() -> float:
        model.eval()
        with torch.no_grad():
            pred = model(held_out, mode='tensor')
        model.train()
        return (pred - d).abs().mean().item()

    before = epe()
    model.train()
    for _ in range(25):
        pairs = _shifted_pairs(2, d, gen)
        samples = []
        for _ in range(2):
            sample = BaseDataElement()
            sample.gt_disp = PixelData(data=torch.full((1, 32, 64), float(d)))
            sample.gt_valid = PixelData(data=torch.ones(1, 32, 64, dtype=torch.bool))
            samples.append(sample)
        data = model.data_preprocessor({'inputs': pairs, 'data_samples': samples}, True)
        losses = model(**data, mode='loss')
        assert set(losses) == {'loss_disp', 'epe'}
        opt.zero_grad()
        losses['loss_disp'].backward()
        opt.step()
    after = epe()
    assert before > 2.0
    assert after < 0.5 * before
