"""Synthetic flow pairs: the ground truth is exact, and the Sintel-layout writer round-trips."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from perception.datasets.flow import SintelDataset
from perception.datasets.flow_io import read_flo
from perception.datasets.synthetic.flow import (
    FlowLayer,
    FlowScene,
    render_flow_frame,
    render_flow_pair,
    scene_flow,
    write_synthetic_flow,
)
from perception.datasets.transforms.flow import LoadFlow, LoadFlowPair, PackFlowInputs


def _grid(height, width):
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    return np.stack([xs, ys], -1)


def test_flow_is_exact_on_the_continuous_scene():
    # Frame 2 sampled (continuously, no interpolation) at x + flow reproduces frame 1 exactly on
    # every non-occluded pixel, and the layer seen there is the same.
    pair = render_flow_pair(np.random.default_rng(3), 48, 64)
    scene = pair['scene']
    colour1, layer1 = render_flow_frame(scene, 0)
    target = _grid(48, 64) + pair['gt_flow'].astype(np.float64)
    colour2, layer2 = render_flow_frame(scene, 1, target)
    noc = pair['noc_mask']
    assert 0.5 < noc.mean() < 1.0  # some pixels are occluded or leave the image, most are not
    # float32 flow: |error in x| <= 1e-6 px; the texture's gradient is < 200 * 2 pi / 6 grey/px
    np.testing.assert_allclose(colour2[noc], colour1[noc], atol=2e-3)
    assert (layer2[noc] == layer1[noc]).all()
    # Occluded pixels really are different points: their colour differs on average.
    assert np.abs(colour2[~noc] - colour1[~noc]).mean() > 5


def test_hand_computed_pixel_and_occlusion():
    # Background translating by (2, -1); a square of half-size 5 at (20, 10) moving by (+6, 0):
    # it spans x 15..25 in frame 1 and x 21..31 in frame 2 (y 5..15 in both).
    background_motion = np.eye(3)
    background_motion[:2, 2] = (2.0, -1.0)
    square_motion = np.eye(3)
    square_motion[:2, 2] = (6.0, 0.0)
    texture = dict(freqs=np.array([[0.1, 0.0]]), phases=np.zeros(1), amps=np.ones((1, 3)),
                   base=np.full(3, 128.0))
    scene = FlowScene(40, 50, [
        FlowLayer(background_motion, 'all', np.zeros(2), np.ones(2), 0.0, **texture),
        FlowLayer(square_motion, 'rectangle', np.array([20.0, 10.0]), np.array([5.0, 5.0]), 0.0,
                  **texture)])
    flow, noc = scene_flow(scene, 0)
    np.testing.assert_allclose(flow[10, 20], (6.0, 0.0))  # on the square
    np.testing.assert_allclose(flow[30, 40], (2.0, -1.0))  # background
    assert noc[10, 20]  # the square's centre -> (26, 10), still the square's
    assert noc[10, 30]  # background -> (32, 9): right of the moved square, visible
    assert not noc[10, 27]  # background -> (29, 9): the moved square covers it
    assert not noc[30, 49] and noc[30, 46]  # x + 2 > 49 leaves the image; 48 stays
    # Colours: frame 1 at a background pixel is the texture at the pixel itself (pose identity).
    colour, layer = render_flow_frame(scene, 0, np.array([[40.0, 30.0]]))
    np.testing.assert_allclose(colour[0], 128.0 + np.sin(2 * np.pi * 0.1 * 40.0))
    # Frame 2 at (42, 29) shows the background point that was at (40, 30).
    np.testing.assert_allclose(render_flow_frame(scene, 1, np.array([[42.0, 29.0]]))[0], colour)


def test_bilinear_warp_reproduces_first_frame():
    # On the 8-bit images, warping frame 2 back with the gt flow matches frame 1 on matched pixels
    # to interpolation and rounding error, while a zero flow does not.
    errors, zero_errors = [], []
    for seed in range(4):
        pair = render_flow_pair(np.random.default_rng(seed), 64, 96)
        ys, xs = np.mgrid[0:64, 0:96].astype(np.float32)
        flow = pair['gt_flow']
        warped = cv2.remap(pair['img_next'].astype(np.float32), xs + flow[..., 0],
                           ys + flow[..., 1], cv2.INTER_LINEAR)
        zero = pair['img_next'].astype(np.float32)
        noc = pair['noc_mask']
        errors.append(np.abs(warped - pair['img'])[noc].mean())
        zero_errors.append(np.abs(zero - pair['img'])[noc].mean())
        assert np.median(np.abs(warped - pair['img'])[noc]) <= 1.0
    # measured on seeds 0-3: mean error 0.6-0.8 grey levels (bilinear on 6-40 px periods, plus the
    # layer boundaries) against 12-20 for a zero flow.
    assert max(errors) < 1.5
    assert min(zero_errors) > 5.0


def test_pair_is_deterministic_and_fast():
    a = render_flow_pair(np.random.default_rng(7), 64, 96)
    b = render_flow_pair(np.random.default_rng(7), 64, 96)
    np.testing.assert_array_equal(a['img_next'], b['img_next'])
    np.testing.assert_array_equal(a['gt_flow'], b['gt_flow'])
    assert a['img'].dtype == np.uint8 and a['img'].shape == (64, 96, 3)
    assert a['gt_flow'].dtype == np.float32 and a['gt_flow'].shape == (64, 96, 2)
    magnitude = np.linalg.norm(a['gt_flow'], axis=2)
    assert 0.3 < magnitude.mean() and magnitude.max() < 15


def test_write_synthetic_flow_reads_back_as_sintel(tmp_path):
    names = write_synthetic_flow(tmp_path, num_scenes=2, frames_per_scene=3, size=(32, 48),
                                 seed=5)
    assert names == ['scene_000', 'scene_001']
    dataset = SintelDataset(data_root=str(tmp_path), pass_name='clean', split='training',
                            pipeline=[LoadFlowPair(), LoadFlow(required=True), PackFlowInputs()])
    assert len(dataset) == 4  # 2 scenes x 2 consecutive pairs
    frame = dataset.get_data_info(1)
    assert frame['frame_id'] == 'clean/scene_000/frame_0002'
    assert frame['img_next_path'].endswith('scene_000/frame_0003.png')
    packed = dataset[1]
    assert packed['inputs'].shape == (2, 3, 32, 48)
    sample = packed['data_samples']
    assert sample.gt_flow.data.shape == (2, 32, 48)
    assert sample.noc_mask.data.shape == (1, 32, 48) and sample.gt_valid.data.all()
    # Flow of scene 0, frames 2 -> 3 equals the scene's own flow, and the images are the render.
    rng = np.random.default_rng([5, 0])
    from perception.datasets.synthetic.flow import random_flow_scene
    scene = random_flow_scene(rng, 32, 48)
    flow, noc = scene_flow(scene, 1)
    np.testing.assert_allclose(read_flo(frame['flow_path']), flow, atol=1e-5)
    np.testing.assert_array_equal(sample.noc_mask.data[0].numpy(), noc)
    np.testing.assert_allclose(sample.gt_flow.data.numpy().transpose(1, 2, 0), flow, atol=1e-5)
    clean = np.clip(np.round(render_flow_frame(scene, 1)[0]), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(packed['inputs'][0].permute(1, 2, 0).numpy(), clean)
    final = SintelDataset(data_root=str(tmp_path), pass_name='final')
    assert len(final) == 4
    with pytest.raises(FileExistsError):
        write_synthetic_flow(tmp_path, num_scenes=1, size=(32, 48))
