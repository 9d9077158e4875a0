"""Synthetic stereo pairs: the right image is the left scene seen at x - d, exactly."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from perception.datasets.synthetic.stereo import SyntheticStereoDataset, render_stereo_pair
from perception.registry import DATASETS

H, W, MAX_DISP = 96, 192, 24.0


def _sample_rows(image: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Bilinear sample of ``image`` ``(H, W[, C])`` at ``(x[v, u], v)``, float32."""
    rows = np.mgrid[0:x.shape[0], 0:x.shape[1]][0].astype(np.float32)
    return cv2.remap(image.astype(np.float32), x.astype(np.float32), rows, cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def _columns() -> np.ndarray:
    return np.mgrid[0:H, 0:W][1].astype(np.float64)


def _pair(seed: int, **kwargs) -> dict:
    return render_stereo_pair(H, W, MAX_DISP, np.random.default_rng(seed), **kwargs)


@pytest.mark.parametrize('seed', [0, 1, 2, 3])
def test_right_image_sampled_at_x_minus_d_reproduces_left(seed):
    pair = _pair(seed)
    disp, noc = pair['disparity'], ~pair['occluded']
    xs = _columns()
    left = pair['left'].astype(np.float32)
    error = np.abs(_sample_rows(pair['right'], xs - disp) - left).mean(axis=-1)
    # A one-pixel disparity error must be visible: compare where x - d - 1 is still in view.
    shifted = noc & (xs - disp - 1 >= 0)
    error_off = np.abs(_sample_rows(pair['right'], xs - disp - 1) - left).mean(axis=-1)
    assert noc.mean() > 0.7
    assert error[noc].mean() < 1.0  # grey levels (rounding to uint8 alone costs ~0.3)
    assert np.percentile(error[noc], 99) < 5.0
    assert error_off[shifted].mean() > 3.0
    assert error_off[shifted].mean() > 5 * error[noc].mean()


@pytest.mark.parametrize('seed', [0, 5])
def test_left_right_disparities_are_consistent(seed):
    pair = _pair(seed)
    disp, noc = pair['disparity'], ~pair['occluded']
    xs = _columns()
    # The right disparity is affine within a layer, so bilinear sampling at the match is exact.
    back = _sample_rows(pair['disparity_right'], xs - disp)
    np.testing.assert_allclose(back[noc], disp[noc], atol=1e-4)
    # And the layer seen at the match is the left pixel's layer.
    x0 = np.floor(xs - disp).astype(int)
    rows = np.mgrid[0:H, 0:W][0]
    assert np.array_equal(pair['layer_right'][rows[noc], x0[noc]], pair['layer_left'][noc])


def test_background_only_occlusion_is_exactly_the_out_of_view_band():
    pair = _pair(3, num_objects=0)
    disp = pair['disparity']
    assert (pair['layer_left'] == 0).all() and (pair['layer_right'] == 0).all()
    # A plane hides nothing of itself: only left pixels whose match leaves the image.
    assert np.array_equal(pair['occluded'], _columns() - disp < 0)
    # Background disparity is one affine function of (x, y): second differences vanish.
    np.testing.assert_allclose(np.diff(disp.astype(np.float64), 2, axis=1), 0, atol=1e-4)
    np.testing.assert_allclose(np.diff(disp.astype(np.float64), 2, axis=0), 0, atol=1e-4)


def test_objects_occlude_background_beside_them():
    pair = _pair(7, num_objects=4)
    occluded, layer = pair['occluded'], pair['layer_left']
    in_view = _columns() - pair['disparity'] >= 0
    assert (layer > 0).any()
    # Occlusion inside the view, not only the left band: background left of a nearer object.
    hidden = occluded & in_view & (layer == 0)
    assert hidden.sum() > 50
    # Each hidden background pixel has a nearer object within max_disparity px to its right.
    rows, cols = np.nonzero(hidden)
    offsets = np.arange(1, int(MAX_DISP) + 2)
    ahead = np.clip(cols[:, None] + offsets[None], 0, W - 1)
    nearer = pair['disparity'][rows[:, None], ahead] > pair['disparity'][rows, cols][:, None]
    assert nearer.any(axis=1).mean() > 0.95


@pytest.mark.parametrize('seed', range(6))
def test_disparity_range_and_types(seed):
    pair = _pair(seed)
    disp = pair['disparity']
    assert disp.dtype == np.float32 and disp.shape == (H, W)
    assert pair['left'].dtype == np.uint8 and pair['left'].shape == (H, W, 3)
    assert pair['right'].shape == (H, W, 3) and pair['right'].dtype == np.uint8
    assert disp.min() > 0 and disp.max() <= MAX_DISP
    assert pair['valid'].all() and pair['occluded'].dtype == bool
    # Objects are nearer than the background: several depths are present.
    assert disp[pair['layer_left'] > 0].mean() > disp[pair['layer_left'] == 0].mean()


def test_dataset_is_deterministic_per_index():
    a = SyntheticStereoDataset(num_pairs=4, height=H, width=W, max_disparity=MAX_DISP, seed=1)
    b = SyntheticStereoDataset(num_pairs=4, height=H, width=W, max_disparity=MAX_DISP, seed=1)
    other = SyntheticStereoDataset(num_pairs=4, height=H, width=W, max_disparity=MAX_DISP, seed=2)
    for key in ('img', 'img_right', 'gt_disp', 'noc_mask'):
        assert np.array_equal(a[2][key], b[2][key])
    assert not np.array_equal(a[2]['img'], a[1]['img'])
    assert not np.array_equal(a[2]['img'], other[2]['img'])
    assert len(a) == 4
    with pytest.raises(IndexError):
        a.get_frame(4)


def test_dataset_frame_keys_and_packing():
    dataset = DATASETS.build(dict(type='SyntheticStereoDataset', num_pairs=3, height=H, width=W,
                                  max_disparity=MAX_DISP, seed=0,
                                  pipeline=[dict(type='PackStereoInputs')]))
    raw = dataset.get_frame(1)
    assert raw['gt_valid'].all() and raw['img_shape'] == (H, W)
    assert 0 < raw['noc_mask'].mean() < 1
    packed = dataset[1]
    inputs, sample = packed['inputs'], packed['data_samples']
    assert inputs.shape == (2, 3, H, W) and inputs.dtype == torch.uint8
    assert torch.equal(inputs[0], torch.from_numpy(raw['img']).permute(2, 0, 1))
    assert torch.equal(inputs[1], torch.from_numpy(raw['img_right']).permute(2, 0, 1))
    assert torch.equal(sample.gt_disp.data[0], torch.from_numpy(raw['gt_disp']))
    assert torch.equal(sample.noc_mask.data[0], torch.from_numpy(raw['noc_mask']))
    assert sample.gt_valid.data.all()
    assert sample.metainfo['frame_id'] == 'synthetic_00001' and sample.metainfo['sample_idx'] == 1


def test_bad_arguments():
    with pytest.raises(ValueError, match='max_disparity'):
        render_stereo_pair(32, 32, 40, np.random.default_rng(0))
    with pytest.raises(ValueError, match='at least 8x8'):
        render_stereo_pair(4, 32, 4, np.random.default_rng(0))
    with pytest.raises(ValueError, match='num_pairs'):
        SyntheticStereoDataset(num_pairs=0)
