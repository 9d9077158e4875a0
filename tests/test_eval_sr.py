"""MATLAB bicubic imresize, SSIM, the SR metric's baseline and ``tools/eval.py sr``."""
from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
import torch
from mmengine.dataset import pseudo_collate

from perception.datasets import PairedImageDataset
from perception.datasets.transforms.imresize import imresize, resize_weights
from perception.engine import DataError
from perception.evaluation.super_resolution import (
    SRMetric,
    evaluate_image_dirs,
    gaussian_window,
    psnr,
    rgb_to_y,
    ssim,
)
from tests.conftest import run_tool

SET5 = ('baby', 'bird', 'butterfly', 'head', 'woman')


# --------------------------------------------------------------------------- references
def _cubic(x: float) -> float:
    x = abs(x)
    if x <= 1:
        return 1.5 * x**3 - 2.5 * x**2 + 1
    if x <= 2:
        return -0.5 * x**3 + 2.5 * x**2 - 4 * x + 2
    return 0.0


def _resize_1d_reference(signal: np.ndarray, out_len: int, scale: float) -> np.ndarray:
    """Textbook MATLAB imresize along one axis, one output sample at a time."""
    n = len(signal)
    width = 4 / scale if scale < 1 else 4
    out = np.zeros(out_len)
    for i in range(1, out_len + 1):
        u = i / scale + 0.5 * (1 - 1 / scale)
        taps = range(math.floor(u - width / 2), math.floor(u - width / 2) + math.ceil(width) + 2)
        w = [scale * _cubic(scale * (u - j)) if scale < 1 else _cubic(u - j) for j in taps]
        total = sum(w)
        for j, wj in zip(taps, w):
            k = j - 1
            while not 0 <= k < n:  # symmetric padding, repeated for kernels wider than the image
                k = -k - 1 if k < 0 else 2 * n - 1 - k
            out[i - 1] += wj / total * signal[k]
    return out


def _resize_reference(image: np.ndarray, out_shape: tuple[int, int],
                      scales: tuple[float, float]) -> np.ndarray:
    order = sorted(range(2), key=lambda a: scales[a])
    for axis in order:
        image = np.apply_along_axis(_resize_1d_reference, axis, image, out_shape[axis],
                                    scales[axis])
    return image


def _ssim_reference(x: np.ndarray, y: np.ndarray) -> float:
    """Wang et al.'s SSIM of one channel, window by window (valid positions only)."""
    g = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    values = []
    for i in range(x.shape[0] - 10):
        for j in range(x.shape[1] - 10):
            a, b = x[i:i + 11, j:j + 11], y[i:i + 11, j:j + 11]
            ma, mb = (w * a).sum(), (w * b).sum()
            va, vb = (w * (a - ma) ** 2).sum(), (w * (b - mb) ** 2).sum()
            cov = (w * (a - ma) * (b - mb)).sum()
            values.append((2 * ma * mb + c1) * (2 * cov + c2)
                          / ((ma**2 + mb**2 + c1) * (va + vb + c2)))
    return float(np.mean(values))


def _read(path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def _chw(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).double()


# --------------------------------------------------------------------------- imresize
@pytest.mark.parametrize('in_shape, kwargs', [
    ((9, 7), dict(scale=0.5)), ((12, 10), dict(scale=1 / 3)), ((5, 6), dict(scale=2)),
    ((4, 5), dict(scale=3)), ((10, 8), dict(output_shape=(4, 13))),  # down in H, up in W
    ((3, 17), dict(output_shape=(7, 4))), ((6, 6), dict(scale=0.25)),  # kernel wider than image
])
def test_imresize_matches_the_per_sample_formula(in_shape, kwargs):
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, in_shape)
    out = imresize(image, **kwargs)
    if 'scale' in kwargs:
        scales = (kwargs['scale'],) * 2
        shape = tuple(math.ceil(kwargs['scale'] * n) for n in in_shape)
    else:
        shape = kwargs['output_shape']
        scales = tuple(o / i for o, i in zip(shape, in_shape))
    assert out.shape == shape
    np.testing.assert_allclose(out, _resize_reference(image, shape, scales), atol=1e-10)


def test_imresize_weights_and_simple_cases():
    weights, indices = resize_weights(8, 4, 0.5)
    assert weights.shape == (4, 10)  # ceil(4 / 0.5) + 2 taps
    np.testing.assert_allclose(weights.sum(1), 1, atol=1e-12)
    assert indices.min() >= 0 and indices.max() <= 7
    # First output sample sits at input coordinate 1.5 (1-based): taps -3..6, mirrored (0-based)
    # to 3, 2, 1, 0 | 0, 1, ...; the outermost tap is 4.5 samples away (2.25 > 2): weight 0.
    assert indices[0].tolist() == [3, 2, 1, 0, 0, 1, 2, 3, 4, 5]
    assert weights[0, 0] == 0 and weights[0, 1] < 0  # 3.5 away: the negative lobe
    image = np.random.default_rng(1).uniform(0, 1, (6, 5, 3))
    np.testing.assert_allclose(imresize(image, 1), image, atol=1e-12)  # scale 1 is the identity
    np.testing.assert_allclose(imresize(np.full((7, 9), 42.0), 0.37), 42.0, atol=1e-12)
    np.testing.assert_allclose(imresize(np.full((4, 3), 42.0), 2.5), 42.0, atol=1e-12)
    # A linear ramp is reproduced away from the borders when upscaling by 2 (cubic with a=-0.5
    # interpolates linear functions exactly).
    ramp = np.tile(np.arange(10.0), (3, 1))
    up = imresize(ramp, output_shape=(3, 20))
    np.testing.assert_allclose(up[:, 4:16], np.tile(np.arange(4, 16) / 2 - 0.25, (3, 1)),
                               atol=1e-12)


def test_imresize_torch_layout_dtype_and_errors():
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (2, 3, 20, 16), dtype=np.uint8)  # (B, C, H, W)
    out = imresize(torch.from_numpy(image), 0.5)
    assert out.dtype == torch.uint8 and out.shape == (2, 3, 10, 8)
    ref = imresize(image[1].transpose(1, 2, 0), 0.5)  # numpy (H, W, C)
    assert np.array_equal(out[1].numpy().transpose(1, 2, 0), ref)
    float_out = imresize(torch.from_numpy(image).double(), 0.5)
    assert float_out.dtype == torch.float64
    assert (float_out - out.double()).abs().max() <= 1.0  # uint8 rounds after each axis
    with pytest.raises(ValueError, match='exactly one of scale and output_shape'):
        imresize(image[0, 0], 0.5, output_shape=(3, 3))
    with pytest.raises(TypeError, match='uint8 or float'):
        imresize(torch.zeros(4, 4, dtype=torch.int32), 2)


def test_imresize_reproduces_matlab_set5_lr_files(shared_data):
    """The Set5 LR files were made by MATLAB imresize(uint8 HR cropped to a multiple of s, 1/s)."""
    root = shared_data / 'sr_set5'
    for scale in (2, 3, 4):
        differing = total = 0
        for name in SET5:
            hr = _read(root / f'HR/{name}.png')
            lr = _read(root / f'LR_bicubic/X{scale}/{name}x{scale}.png')
            h, w = hr.shape[0] // scale * scale, hr.shape[1] // scale * scale
            ours = imresize(hr[:h, :w], 1 / scale)
            assert ours.shape == lr.shape
            differing += int((ours != lr).sum())
            total += lr.size
        # Bit-exact on every pixel (needs round-half-away-from-zero after each axis).
        assert differing == 0, f'x{scale}: {differing} of {total} values differ'


# Our numbers (float Y, crop = scale) and the published bicubic Set5 table values.
SET5_BICUBIC = {2: (33.6734, 0.93029, 33.66, 0.9299), 3: (30.4033, 0.86891, 30.39, 0.8682),
                4: (28.4290, 0.81114, 28.42, 0.8104)}


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_set5_bicubic_baseline_lands_on_the_published_values(shared_data, scale):
    root = shared_data / 'sr_set5'
    psnrs, ssims = [], []
    for name in SET5:
        lr = _read(root / f'LR_bicubic/X{scale}/{name}x{scale}.png')
        up = imresize(lr, scale)
        hr = _read(root / f'HR/{name}.png')[:up.shape[0], :up.shape[1]]
        psnrs.append(psnr(_chw(up), _chw(hr), scale, y_channel=True).item())
        ssims.append(ssim(_chw(up), _chw(hr), scale, y_channel=True).item())
    ours_psnr, ours_ssim, pub_psnr, pub_ssim = SET5_BICUBIC[scale]
    assert np.mean(psnrs) == pytest.approx(ours_psnr, abs=1e-4)
    assert np.mean(ssims) == pytest.approx(ours_ssim, abs=1e-5)
    # x4 is within 0.01 dB of the table; x2 / x3 are 0.013 dB above it: the tables' MATLAB
    # scripts used uint8-rounded Y (see the report); SSIM is within 0.001 at every scale.
    assert np.mean(psnrs) == pytest.approx(pub_psnr, abs=0.01 if scale == 4 else 0.015)
    assert np.mean(ssims) == pytest.approx(pub_ssim, abs=0.001)


# --------------------------------------------------------------------------- SSIM
def test_gaussian_window_is_fspecial():
    g = gaussian_window(11, 1.5)
    assert g.sum().item() == pytest.approx(1.0, abs=1e-15)
    np.testing.assert_allclose(g.numpy(), cv2.getGaussianKernel(11, 1.5)[:, 0], atol=1e-16)
    assert g[5].item() == pytest.approx(0.2660117248617943, abs=1e-15)


def test_ssim_matches_the_window_by_window_definition():
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 255, (3, 24, 19)).round()
    y = np.clip(x + rng.normal(0, 20, x.shape), 0, 255).round()
    expected = np.mean([_ssim_reference(x[c], y[c]) for c in range(3)])
    got = ssim(torch.from_numpy(x), torch.from_numpy(y)).item()
    assert got == pytest.approx(expected, abs=1e-12)
    assert 0.9 < got < 0.99
    # crop_border and Y: the same as cropping / converting by hand first.
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    y_ref = _ssim_reference(rgb_to_y(xt[:, 2:-2, 2:-2])[0].numpy(),
                            rgb_to_y(yt[:, 2:-2, 2:-2])[0].numpy())
    assert ssim(xt, yt, crop_border=2, y_channel=True).item() == pytest.approx(y_ref, abs=1e-12)


def test_ssim_properties_and_batching():
    rng = np.random.default_rng(4)
    x = torch.from_numpy(rng.uniform(0, 255, (2, 3, 32, 32)))
    assert torch.equal(ssim(x, x), torch.ones(2, dtype=torch.float64))
    y = (x + torch.from_numpy(rng.normal(0, 10, x.shape))).clamp(0, 255)
    batched = ssim(x, y)
    assert batched.shape == (2,)
    assert batched[1].item() == pytest.approx(ssim(x[1], y[1]).item(), abs=1e-14)
    assert ssim(x, y).mean() > ssim(x, (x + 40 * torch.randn_like(x)).clamp(0, 255)).mean()
    assert ssim(x[0], y[0]).item() == pytest.approx(ssim(y[0], x[0]).item(), abs=1e-14)
    with pytest.raises(ValueError, match='smaller than the 11x11 window'):
        ssim(x[0], y[0], crop_border=11)
    with pytest.raises(ValueError, match='differ in shape'):
        ssim(x[0], y[1, :, :30])


# --------------------------------------------------------------------------- SRMetric
def test_sr_metric_bicubic_baseline_is_matlab_bicubic(shared_data):
    dataset = PairedImageDataset(str(shared_data / 'sr_set5'), scale=4)
    metric = SRMetric(crop_border=4, y_channel=True, bicubic_baseline=True)
    for i in range(len(dataset)):
        batch = pseudo_collate([dataset[i]])
        sample = batch['data_samples'][0]
        sample.pred_img = sample.gt_img.clone()  # a perfect prediction
        metric.process(batch, [sample])
    result = metric.compute_metrics(metric.results)
    assert set(result) == {'PSNR', 'SSIM', 'PSNR_bicubic', 'SSIM_bicubic'}
    assert result['PSNR'] == math.inf and result['SSIM'] == 1.0
    assert result['PSNR_bicubic'] == pytest.approx(SET5_BICUBIC[4][0], abs=1e-4)
    assert result['SSIM_bicubic'] == pytest.approx(SET5_BICUBIC[4][1], abs=1e-5)


def test_sr_metric_ssim_is_nan_for_images_below_the_window():
    metric = SRMetric(crop_border=0, y_channel=False, bicubic_baseline=False)
    gt = torch.full((3, 6, 6), 0.5)
    metric.process({'inputs': [None]}, [{'pred_img': gt, 'gt_img': gt}])
    assert math.isnan(metric.compute_metrics(metric.results)['SSIM'])


# --------------------------------------------------------------------------- offline CLI
def _write_predictions(shared_data, folder, scale, suffix):
    folder.mkdir()
    for name in SET5:
        lr = _read(shared_data / f'sr_set5/LR_bicubic/X{scale}/{name}x{scale}.png')
        up = imresize(lr, scale)
        cv2.imwrite(str(folder / f'{name}{suffix}.png'), cv2.cvtColor(up, cv2.COLOR_RGB2BGR))


def test_evaluate_image_dirs_pairs_and_crops(shared_data, tmp_path):
    # x3: butterfly (256), head (280) and woman (344 x 228) are not multiples of 3 -> GT crop.
    _write_predictions(shared_data, tmp_path / 'pred', 3, 'x3')
    results, table = evaluate_image_dirs(shared_data / 'sr_set5/HR', tmp_path / 'pred', 3,
                                         y_channel=True)
    assert results['PSNR'] == pytest.approx(SET5_BICUBIC[3][0], abs=1e-4)
    assert results['SSIM'] == pytest.approx(SET5_BICUBIC[3][1], abs=1e-5)
    assert results['butterfly/PSNR'] == pytest.approx(24.0385, abs=1e-4)
    assert len(results) == 2 + 2 * len(SET5)
    assert 'butterfly' in table and table.splitlines()[-1].startswith('mean')


def test_evaluate_image_dirs_errors(shared_data, tmp_path):
    _write_predictions(shared_data, tmp_path / 'pred', 4, '')
    (tmp_path / 'pred/bird.png').unlink()
    with pytest.raises(DataError, match=r'bird.png: prediction for bird.png not found'):
        evaluate_image_dirs(shared_data / 'sr_set5/HR', tmp_path / 'pred', 4)
    # x2-sized ground truth against x4 predictions: off by far more than the scale.
    with pytest.raises(DataError, match=r'prediction is 128x128 but the ground truth baby.png '
                       r'is 512x512'):
        evaluate_image_dirs(shared_data / 'sr_set5/HR', shared_data / 'sr_set5/LR_bicubic/X4',
                            4)
    with pytest.raises(DataError, match='ground-truth folder not found'):
        evaluate_image_dirs(tmp_path / 'nowhere', tmp_path / 'pred', 4)


def test_eval_tool_sr_end_to_end(shared_data, tmp_path):
    _write_predictions(shared_data, tmp_path / 'pred', 4, 'x4')
    out = tmp_path / 'result.json'
    proc = run_tool('tools/eval.py', 'sr', shared_data / 'sr_set5/HR', tmp_path / 'pred',
                    '--scale', '4', '--y-channel', '--out', out)
    assert proc.returncode == 0, proc.stderr
    assert 'woman' in proc.stdout and 'mean' in proc.stdout
    metrics = json.loads(out.read_text())
    assert metrics['PSNR'] == pytest.approx(SET5_BICUBIC[4][0], abs=1e-4)
    assert metrics['SSIM'] == pytest.approx(SET5_BICUBIC[4][1], abs=1e-5)
    # Missing predictions: one line naming the file, exit status 2.
    (tmp_path / 'pred/headx4.png').unlink()
    proc = run_tool('tools/eval.py', 'sr', shared_data / 'sr_set5/HR', tmp_path / 'pred',
                    '--scale', '4')
    assert proc.returncode == 2
    assert 'error:' in proc.stderr and 'head.png not found' in proc.stderr
    assert 'Traceback' not in proc.stderr
