"""HiT-SR learns: HiT-SIR x2 trained briefly on CPU beats MATLAB bicubic on Set5 by 1 dB.

The smallest HiT-SR variant (HiT-SIR, x2, the published architecture: 772,064 parameters) is
trained from scratch with L1 on random 48 x 48 LR patches of the natural photographs that ship
with the project's sample data (KITTI, nuScenes and Middlebury camera images; never Set5), whose
LR versions are made on the fly with MATLAB bicubic exactly as the benchmark's LR files are.
Only the schedule is shortened: a fixed number of Adam steps on small batches, a short linear
warm-up and a cosine decay. It is then scored on Set5 x2 with the benchmark protocol
(``SRMetric``: PSNR on Y, crop border 2, predictions rounded to 8 bits) next to the MATLAB-bicubic
baseline, and must beat it by at least 1 dB.

One change from the published initialisation: the last conv (the one-step upsampler) starts with
its PyTorch-default weights scaled by 0.1, so that the untrained network's output is close to the
mean image instead of noise as strong as the images themselves. In a short run this matters: at
step 50 the L1 loss was 0.069 with it and 0.095 without.

Calibration (2026-11-22, this recipe, one thread on the shared 2-core machine, Set5 scored every
500 steps of the 4,000-step schedule): PSNR-Y 30.52 dB at step 500, 34.23 at 1,000, 33.49 at 1,500
(the learning rate is still high), 34.22 at 2,000, 34.94 at 2,500 and 35.88 dB at 3,000 against
33.67 dB bicubic: +1 dB is passed by step 2,500 and +2.2 dB reached at 3,000, so the full schedule
has a margin. About 1.2 CPU-s per step, 80 CPU minutes in all. That run drew its crops from a
loader repeated a fixed 100 times; the test sizes the loader to its iterations, so its crops come
in another order. Marked ``long``: it is far beyond the CI budget (``make test-long``).

The images are cut into 256 x 256 tiles first so that each crop reads a small file, not a
1600 x 900 photograph (a tenth of the step time otherwise).
"""
from __future__ import annotations

import math
import os
import time

import cv2
import numpy as np
import pytest
import torch
from mmengine.dataset import pseudo_collate

from perception.datasets.super_resolution import PairedImageDataset, SRTrainDataset, read_rgb
from perception.evaluation.super_resolution import SRMetric
from perception.models.super_resolution import DIV2K_RGB_MEAN, SuperResolver

pytestmark = [pytest.mark.slow, pytest.mark.long]

SCALE = 2
TILE = 256  # HR tile side
PATCH, BATCH, LR, WARMUP = 48, 4, 2e-3, 20
ITERS = int(os.environ.get('PERCEPTION_SR_LEARN_ITERS', 4000))
# 2 threads is the intended setting; override (e.g. 1) to measure on a busy machine.
THREADS = int(os.environ.get('PERCEPTION_SR_LEARN_THREADS', 2))
OUTPUT_INIT_SCALE = 0.1


def _training_images(shared_data) -> list:
    """Natural photographs from the sample data (Set5 excluded); im1 of Middlebury is skipped
    because it is nearly the same picture as im0."""
    paths = sorted((shared_data / 'kitti_mini' / 'training' / 'image_2').glob('*.png'))
    paths.append(shared_data / 'middlebury_pairs' / 'Motorcycle' / 'im0.png')
    paths += sorted((shared_data / 'nuscenes_frame').glob('*.jpg'))
    return paths


def _write_tiles(paths: list, folder) -> int:
    """Cut every image into non-overlapping ``TILE x TILE`` tiles (the remainder is dropped)."""
    count = 0
    for path in paths:
        image = cv2.cvtColor(read_rgb(path), cv2.COLOR_RGB2BGR)
        for top in range(0, image.shape[0] - TILE + 1, TILE):
            for left in range(0, image.shape[1] - TILE + 1, TILE):
                tile = image[top:top + TILE, left:left + TILE]
                cv2.imwrite(str(folder / f'{path.stem}_{top}_{left}.png'), tile)
                count += 1
    return count


def _lr_factor(step: int) -> float:
    """Linear warm-up over ``WARMUP`` steps, then cosine decay to 0 at ``ITERS``."""
    if step < WARMUP:
        return (step + 1) / WARMUP
    progress = min(step - WARMUP, ITERS - WARMUP) / max(ITERS - WARMUP, 1)
    return 0.5 * (1 + math.cos(math.pi * progress))


def _evaluate(model: SuperResolver, dataset: PairedImageDataset) -> dict[str, float]:
    metric = SRMetric(crop_border=SCALE, y_channel=True, bicubic_baseline=True)
    model.eval()
    with torch.no_grad():
        for index in range(len(dataset)):
            batch = pseudo_collate([dataset[index]])
            metric.process(batch, model.test_step(batch))
    return metric.compute_metrics(metric.results)


def test_hit_sir_x2_beats_bicubic_on_set5(shared_data, tmp_path):
    images = _training_images(shared_data)
    assert len(images) == 10  # 3 KITTI + 1 Middlebury + 6 nuScenes
    # 4 per KITTI image, 15 of Middlebury, 18 per nuScenes camera.
    num_tiles = _write_tiles(images, tmp_path)
    assert num_tiles == 3 * 4 + 15 + 6 * 18
    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        torch.manual_seed(0)
        train = SRTrainDataset(str(tmp_path), None, scale=SCALE, patch_size=PATCH,
                               use_flip=True, use_rot=True,
                               repeat=math.ceil(ITERS * BATCH / num_tiles))  # ITERS batches
        np.random.seed(0)  # SRTrainDataset draws its crops and flips from NumPy's generator
        loader = torch.utils.data.DataLoader(train, batch_size=BATCH, shuffle=True,
                                             collate_fn=pseudo_collate)
        model = SuperResolver(network=dict(type='HiTSIR', scale=SCALE),
                              pixel_mean=DIV2K_RGB_MEAN)
        assert sum(p.numel() for p in model.network.parameters()) == 772_064
        with torch.no_grad():
            for param in model.network.upsample[0].parameters():
                param.mul_(OUTPUT_INIT_SCALE)
        optimizer = torch.optim.Adam(model.parameters(), lr=LR, betas=(0.9, 0.99))
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_factor)
        wall, cpu = time.perf_counter(), time.process_time()
        model.train()
        for step, batch in enumerate(loader, 1):
            data = model.data_preprocessor(batch, True)
            loss = model(**data, mode='loss')['loss_pix']
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            if step == ITERS:
                break
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        scores = _evaluate(model, PairedImageDataset(str(shared_data / 'sr_set5'), SCALE))
    finally:
        torch.set_num_threads(threads)
    print(f'\nHiT-SIR x2, {ITERS} steps of {BATCH} x {PATCH}^2 on {THREADS} thread(s): '
          f'{wall:.0f} s wall, {cpu:.0f} s CPU. Set5 PSNR-Y {scores["PSNR"]:.2f} dB '
          f'(SSIM {scores["SSIM"]:.4f}), MATLAB bicubic {scores["PSNR_bicubic"]:.2f} dB '
          f'(SSIM {scores["SSIM_bicubic"]:.4f})')
    # The published MATLAB-bicubic Set5 x2 baseline is 33.66 dB.
    assert scores['PSNR_bicubic'] == pytest.approx(33.67, abs=0.02)
    assert scores['PSNR'] >= scores['PSNR_bicubic'] + 1.0
