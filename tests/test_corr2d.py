"""CorrPyramid2D: hand-computed lookups, tap order, full vs alt, gradients, bad input."""
import math

import pytest
import torch
import torch.nn.functional as F

from perception.models.layers.corr2d import CorrPyramid2D, correlation_planes


def _grid(b, h, w, dtype=torch.float64):
    ys, xs = torch.meshgrid(torch.arange(h, dtype=dtype), torch.arange(w, dtype=dtype),
                            indexing='ij')
    return torch.stack([xs, ys])[None].repeat(b, 1, 1, 1)


def test_planes():
    assert correlation_planes(4, 4) == 324
    assert correlation_planes(2, 1) == 18


@pytest.mark.parametrize('mode', ['full', 'alt'])
def test_hand_values_and_tap_order(mode):
    # C = 4 features; image 1 is all ones, so corr = sum_c fmap2 / sqrt(4) = sum_c fmap2 / 2.
    h, w, c = 4, 6, 4
    fmap1 = torch.ones(1, c, h, w, dtype=torch.float64)
    fmap2 = torch.arange(c * h * w, dtype=torch.float64).view(1, c, h, w)
    summed = fmap2.sum(1)[0] / 2  # (h, w): corr at each image-2 pixel
    corr = CorrPyramid2D(fmap1, fmap2, num_levels=2, radius=1, mode=mode)
    coords = _grid(1, h, w)
    out = corr(coords)
    assert out.shape == (1, 18, h, w)
    # pixel (x=2, y=1): tap index i*3 + j, i for dx = i - 1, j for dy = j - 1
    for i, dx in enumerate((-1, 0, 1)):
        for j, dy in enumerate((-1, 0, 1)):
            assert out[0, i * 3 + j, 1, 2] == pytest.approx(summed[1 + dy, 2 + dx].item())
    # x offset outer: tap 1 (dx=-1, dy=0) at (x=2,y=1) reads image 2 at (x=1,y=1)
    assert out[0, 1, 1, 2] == pytest.approx(summed[1, 1].item())
    # outside the image reads zero: pixel (0, 0), tap (dx=-1, dy=-1)
    assert out[0, 0, 0, 0] == 0
    # half-pixel bilinear: x = 2.5 averages columns 2 and 3
    half = coords.clone()
    half[:, 0] += 0.5
    out_half = corr(half)
    assert out_half[0, 4, 1, 2] == pytest.approx((summed[1, 2] + summed[1, 3]).item() / 2)
    # level 1: image 2 pooled 2x2, centre at coords / 2: pixel (x=2, y=2) -> (1, 1) of the
    # 2 x 3 pooled grid, centre tap 9 + 4
    pooled = F.avg_pool2d(summed[None, None], 2)[0, 0]
    assert out[0, 9 + 4, 2, 2] == pytest.approx(pooled[1, 1].item())
    assert out[0, 9 + 4, 0, 0] == pytest.approx(pooled[0, 0].item())


def test_full_matches_alt_float64():
    g = torch.Generator().manual_seed(0)
    f1 = torch.randn(2, 8, 9, 13, generator=g, dtype=torch.float64)
    f2 = torch.randn(2, 8, 9, 13, generator=g, dtype=torch.float64)
    coords = _grid(2, 9, 13) + 3 * torch.randn(2, 2, 9, 13, generator=g, dtype=torch.float64)
    full = CorrPyramid2D(f1, f2, 4, 4, 'full')(coords)
    alt = CorrPyramid2D(f1, f2, 4, 4, 'alt')(coords)
    assert full.shape == (2, 324, 9, 13)
    assert full.abs().max() > 0.1  # not trivially zero
    torch.testing.assert_close(full, alt, rtol=0, atol=1e-12)
    # the scale is 1 / sqrt(C): the level-0 centre tap at the identity grid is <f1, f2> / sqrt(8)
    ident = CorrPyramid2D(f1, f2, 1, 0, 'full')(_grid(2, 9, 13))
    torch.testing.assert_close(ident[:, 0], (f1 * f2).sum(1) / math.sqrt(8))


@pytest.mark.parametrize('mode', ['full', 'alt'])
def test_gradcheck(mode):
    g = torch.Generator().manual_seed(1)
    f1 = torch.randn(1, 3, 4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    f2 = torch.randn(1, 3, 4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    # non-integer positions keep away from bilinear kinks
    coords = (_grid(1, 4, 5) + 0.3 + 0.2 * torch.rand(1, 2, 4, 5, generator=g,
                                                       dtype=torch.float64)).requires_grad_()

    def fn(a, b, c):
        return CorrPyramid2D(a, b, 2, 1, mode)(c)

    assert torch.autograd.gradcheck(fn, (f1, f2, coords))


def test_bad_input():
    f = torch.zeros(1, 4, 8, 9)
    with pytest.raises(ValueError, match='at least 8 pixels'):
        CorrPyramid2D(torch.zeros(1, 4, 5, 9), torch.zeros(1, 4, 5, 9))
    with pytest.raises(ValueError, match='one shape'):
        CorrPyramid2D(f, torch.zeros(1, 4, 8, 7))
    with pytest.raises(ValueError, match='mode'):
        CorrPyramid2D(f, f, mode='cuda')
    with pytest.raises(ValueError, match='coords must be'):
        CorrPyramid2D(f, f)(torch.zeros(1, 2, 8, 8))
