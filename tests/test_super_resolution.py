"""ESPCN, the SR wrapper, the generated data and the PSNR protocol."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.dataset import pseudo_collate

from perception.datasets import PairedImageDataset, SyntheticSRDataset
from perception.engine import DataError
from perception.evaluation import SRMetric, psnr, rgb_to_y
from perception.models.super_resolution import ESPCN, SuperResolver, espcn_x3


def test_espcn_has_the_published_parameter_count():
    # Shi et al. 2016, x3 on Y: 1*64*25+64 + 64*32*9+32 + 32*9*9+9.
    assert sum(p.numel() for p in espcn_x3().parameters()) == 22_729
    assert sum(p.numel() for p in ESPCN(scale=4, in_channels=3).parameters()) == (
        3 * 64 * 25 + 64 + 64 * 32 * 9 + 32 + 32 * 48 * 9 + 48)


def test_espcn_output_layout_is_the_periodic_shuffle():
    net = ESPCN(scale=2, in_channels=1)
    with torch.no_grad():
        for conv in net.convs:
            conv.weight.zero_()
            conv.bias.zero_()
        net.convs[-1].bias.copy_(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    out = net(torch.zeros(1, 1, 2, 3))
    assert out.shape == (1, 1, 4, 6)
    # Sub-pixel channel k = 2 * i + j lands at offset (i, j) of every 2x2 output cell.
    assert torch.equal(out[0, 0, :2, :2], torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    assert torch.equal(out[0, 0, 2:, 4:], torch.tensor([[1.0, 2.0], [3.0, 4.0]]))


def test_espcn_rejects_wrong_channels():
    with pytest.raises(ValueError, match=r'expects \(B, 1, H, W\), got \(1, 3, 8, 8\)'):
        espcn_x3()(torch.zeros(1, 3, 8, 8))


def test_synthetic_dataset_is_deterministic_and_consistent():
    dataset = SyntheticSRDataset(num_images=3, hr_size=48, scale=3, seed=7)
    a, b = dataset[1], dataset[1]
    assert torch.equal(a['inputs'], b['inputs'])
    assert a['inputs'].shape == (3, 16, 16) and a['data_samples'].gt_img.shape == (3, 48, 48)
    assert not torch.equal(dataset[0]['inputs'], a['inputs'])
    other_seed = SyntheticSRDataset(num_images=3, hr_size=48, scale=3, seed=8)
    assert not torch.equal(other_seed[1]['inputs'], a['inputs'])
    # LR values are 8-bit, like a saved image.
    assert torch.equal((a['inputs'] * 255).round(), a['inputs'] * 255)
    # The LR image is the HR image seen through a low-pass: close to its 3x3 block means.
    blocks = F.avg_pool2d(a['data_samples'].gt_img[None], 3)[0]
    assert (blocks - a['inputs']).abs().mean() < 0.03


def test_psnr_matches_the_formula():
    target = torch.full((3, 8, 8), 100.0)
    pred = target + 1.0
    assert psnr(pred, target).item() == pytest.approx(20 * math.log10(255.0), abs=1e-9)
    pred[:, 0, :] += 100  # only the border row is wrong: cropping removes it
    assert psnr(pred, target, crop_border=1).item() == pytest.approx(48.1308036, abs=1e-6)
    assert psnr(target, target).item() == math.inf


def test_y_channel_is_matlab_rgb2ycbcr():
    colours = torch.tensor([[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255]],
                           dtype=torch.float64).T.reshape(3, 5, 1)
    y = rgb_to_y(colours).flatten()
    # MATLAB: rgb2ycbcr(uint8([...])) gives 16, 235, 81, 145, 41 before rounding.
    assert y.tolist() == pytest.approx([16.0, 235.0, 81.481, 144.553, 40.966], abs=1e-9)


def test_sr_metric_aggregates_per_image_means():
    metric = SRMetric(crop_border=0, y_channel=False, bicubic_baseline=False)
    gt = torch.full((3, 6, 6), 100 / 255)
    samples = [
        {'pred_img': gt + 1 / 255, 'gt_img': gt},  # MSE 1 -> 48.13 dB
        {'pred_img': gt + 2 / 255, 'gt_img': gt},  # MSE 4 -> 42.11 dB
    ]
    metric.process({'inputs': [None, None]}, samples)
    result = metric.compute_metrics(metric.results)
    expected = (20 * math.log10(255) + 20 * math.log10(255 / 2)) / 2
    assert result['PSNR'] == pytest.approx(expected, abs=1e-4)


def test_paired_dataset_reads_the_set5_layout(shared_data):
    dataset = PairedImageDataset(str(shared_data / 'sr_set5'), scale=3)
    assert len(dataset) == 5
    item = dataset[0]
    lr, hr = item['inputs'], item['data_samples'].gt_img
    assert hr.shape[-2] == 3 * lr.shape[-2] and hr.shape[-1] == 3 * lr.shape[-1]
    assert item['data_samples'].name == 'baby'


def test_paired_dataset_names_the_missing_file(tmp_path):
    (tmp_path / 'HR').mkdir()
    (tmp_path / 'LR_bicubic/X2').mkdir(parents=True)
    import cv2
    cv2.imwrite(str(tmp_path / 'HR/img.png'), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(DataError, match=r'imgx2.png: LR image for img.png not found'):
        PairedImageDataset(str(tmp_path), scale=2)
    with pytest.raises(DataError, match='folder not found'):
        PairedImageDataset(str(tmp_path), scale=4)


def _train(model: SuperResolver, dataset: SyntheticSRDataset, iters: int, batch: int,
           milestones: list[int]) -> list[float]:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=0.3)
    losses = []
    model.train()
    for it in range(iters):
        data = model.data_preprocessor(
            pseudo_collate([dataset[it * batch + j] for j in range(batch)]), True)
        loss = model(**data, mode='loss')['loss_pix']
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
    return losses


def _evaluate(model: SuperResolver, dataset) -> dict[str, float]:
    metric = SRMetric(crop_border=3, y_channel=True, bicubic_baseline=True)
    model.eval()
    with torch.no_grad():
        for i in range(len(dataset)):
            batch = pseudo_collate([dataset[i]])
            outputs = model(**model.data_preprocessor(batch, False), mode='predict')
            metric.process(batch, outputs)
    return metric.compute_metrics(metric.results)


def test_training_reduces_the_loss_quickly():
    torch.manual_seed(0)
    model = SuperResolver(network=dict(type='ESPCN', scale=3, in_channels=3))
    losses = _train(model, SyntheticSRDataset(10_000, 48, 3, seed=0), iters=150, batch=8,
                    milestones=[1000])
    assert np.mean(losses[-20:]) < 0.45 * np.mean(losses[:5])


@pytest.mark.slow
def test_espcn_learns_to_beat_bicubic(shared_data):
    """Measured 2026-12-08 (one thread, machine busy, 164 s): held-out PSNR-Y 33.44 dB against
    bicubic 33.06 (+0.39), Set5 30.89 against 30.40 (+0.49), after 800 steps (was 1,500, cut
    for CI's time); the +0.2 dB bound leaves 0.19 dB for other CPUs' kernels."""
    torch.manual_seed(0)
    model = SuperResolver(network=dict(type='ESPCN', scale=3, in_channels=3))
    _train(model, SyntheticSRDataset(100_000, 96, 3, seed=0), iters=800, batch=16,
           milestones=[550, 700])
    held_out = _evaluate(model, SyntheticSRDataset(20, 120, 3, seed=1))
    assert held_out['PSNR'] > held_out['PSNR_bicubic'] + 0.2, held_out
    # Real images it never saw, downscaled by MATLAB's bicubic rather than torch's.
    set5 = _evaluate(model, PairedImageDataset(str(shared_data / 'sr_set5'), scale=3))
    assert set5['PSNR'] > set5['PSNR_bicubic'], set5
