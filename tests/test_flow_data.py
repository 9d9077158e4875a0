"""Optical-flow data: file formats, dataset folder scanners, flow-exact augmentation, packing."""
from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest
import torch

from perception.datasets.flow import (
    FlyingChairsDataset,
    FlyingThings3DFlowDataset,
    HD1KDataset,
    KittiFlowDataset,
    SintelDataset,
)
from perception.datasets.flow_io import (
    read_flo,
    read_flow,
    read_kitti_flow,
    read_pfm_flow,
    write_flo,
    write_kitti_flow,
    write_pfm_flow,
)
from perception.datasets.stereo_io import read_pfm, write_pfm
from perception.datasets.synthetic.flow import render_flow_pair, write_synthetic_flow
from perception.datasets.transforms.flow import (
    FlowColorJitter,
    FlowEraser,
    FlowRandomCrop,
    FlowRandomFlip,
    FlowRandomScale,
    LoadFlow,
    LoadFlowPair,
    PackFlowInputs,
    resample_sparse_flow,
)
from perception.engine.errors import DataError
from perception.registry import DATASETS, TRANSFORMS


def _spec_read_flo(path):
    """A .flo reader written from the Middlebury spec (flow-code/README): float tag 202021.25,
    int width, int height, then width * height * 2 floats (u, v interleaved), row major, LE."""
    with open(path, 'rb') as f:
        tag, width, height = struct.unpack('<fii', f.read(12))
        assert tag == 202021.25
        values = struct.unpack(f'<{width * height * 2}f', f.read(width * height * 8))
    return np.array(values, dtype=np.float32).reshape(height, width, 2)


# ----------------------------------------------------------------------------------------- .flo

def test_flo_round_trip_against_independent_readers(tmp_path):
    flow = np.random.default_rng(0).normal(0, 20, size=(7, 11, 2)).astype(np.float32)
    path = tmp_path / 'a.flo'
    write_flo(path, flow)
    assert path.stat().st_size == 12 + 7 * 11 * 8
    np.testing.assert_array_equal(_spec_read_flo(path), flow)
    np.testing.assert_array_equal(read_flo(path), flow)
    flowiz = pytest.importorskip('flowiz')  # the dev extra installs it
    np.testing.assert_array_equal(flowiz.read_flow(str(path)), flow)


def test_flo_hand_written_bytes():
    # width 2, height 1: pixel (0, 0) = (1.5, -2), pixel (0, 1) = (3, 4)
    raw = b'PIEH' + struct.pack('<ii', 2, 1) + struct.pack('<4f', 1.5, -2.0, 3.0, 4.0)
    assert struct.unpack('<f', b'PIEH')[0] == 202021.25
    import tempfile
    with tempfile.NamedTemporaryFile(suffix='.flo') as f:
        f.write(raw)
        f.flush()
        flow = read_flo(f.name)
        np.testing.assert_array_equal(flow, [[[1.5, -2.0], [3.0, 4.0]]])
        flow, valid = read_flow(f.name)
        assert valid.all()


def test_flo_bad_inputs_name_the_file(tmp_path):
    good = tmp_path / 'good.flo'
    write_flo(good, np.zeros((4, 5, 2), np.float32))
    raw = good.read_bytes()
    bad_magic = tmp_path / 'magic.flo'
    bad_magic.write_bytes(b'PIEX' + raw[4:])
    with pytest.raises(DataError, match=r"magic.flo: not a .flo file.*expected 202021.25"):
        read_flo(bad_magic)
    truncated = tmp_path / 'short.flo'
    truncated.write_bytes(raw[:-4])
    with pytest.raises(DataError, match=r'short.flo: truncated .flo: 5x4x2 float32 need 160'):
        read_flo(truncated)
    header_only = tmp_path / 'tiny.flo'
    header_only.write_bytes(raw[:6])
    with pytest.raises(DataError, match='tiny.flo: truncated'):
        read_flo(header_only)
    nan = tmp_path / 'nan.flo'
    values = np.zeros((4, 5, 2), np.float32)
    values[2, 3, 1] = np.nan
    nan.write_bytes(raw[:12] + values.astype('<f4').tobytes())
    with pytest.raises(DataError, match=r'nan.flo: 1 NaN value\(s\).*row 2, column 3'):
        read_flo(nan)
    with pytest.raises(DataError, match='missing.flo: .flo file not found'):
        read_flo(tmp_path / 'missing.flo')
    with pytest.raises(ValueError, match='NaN'):
        write_flo(tmp_path / 'x.flo', values)


def test_unknown_flow_marker_is_invalid(tmp_path):
    flow = np.ones((2, 3, 2), np.float32)
    flow[1, 2] = (1e10, 1e10)  # Middlebury's unknown flow
    write_flo(tmp_path / 'u.flo', flow)
    values, valid = read_flow(tmp_path / 'u.flo')
    assert valid.sum() == 5 and not valid[1, 2]
    assert (values[1, 2] == 0).all()
    with pytest.raises(DataError, match=r"unknown flow file extension '.txt'"):
        read_flow(tmp_path / 'u.txt')


# ---------------------------------------------------------------------------------- KITTI PNG

def test_kitti_flow_png_hand_values(tmp_path):
    # KITTI devkit: u = (R - 2^15) / 64, v = (G - 2^15) / 64, valid = B; OpenCV stores B, G, R.
    rgb = np.zeros((1, 3, 3), np.uint16)
    rgb[0, 0] = (32768 + 96, 32768 - 128, 1)  # u 1.5, v -2.0
    rgb[0, 1] = (0, 65535, 1)                  # u -512, v 511.984375
    rgb[0, 2] = (40000, 40000, 0)              # invalid
    path = tmp_path / '000000_10.png'
    cv2.imwrite(str(path), rgb[..., ::-1].copy())
    flow, valid = read_kitti_flow(path)
    np.testing.assert_array_equal(valid, [[True, True, False]])
    np.testing.assert_array_equal(flow[0, 0], (1.5, -2.0))
    np.testing.assert_array_equal(flow[0, 1], (-512.0, 65535 / 64 - 512))
    np.testing.assert_array_equal(flow[0, 2], (0.0, 0.0))
    # round trip: values on the 1/64 grid come back exactly
    values = np.round(np.random.default_rng(1).uniform(-100, 100, (5, 6, 2)) * 64) / 64
    mask = np.random.default_rng(2).random((5, 6)) < 0.6
    write_kitti_flow(tmp_path / 'w.png', values, mask)
    back, back_valid = read_kitti_flow(tmp_path / 'w.png')
    np.testing.assert_array_equal(back_valid, mask)
    np.testing.assert_array_equal(back[mask], values[mask].astype(np.float32))


def test_kitti_flow_png_must_be_16_bit_3_channel(tmp_path):
    eight = tmp_path / 'eight.png'
    cv2.imwrite(str(eight), np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(DataError, match='eight.png: a KITTI flow map must be a 16-bit 3-channel '
                                        r'PNG \(u, v, valid\); found 8-bit with 3'):
        read_kitti_flow(eight)
    gray = tmp_path / 'gray.png'
    cv2.imwrite(str(gray), np.zeros((4, 4), np.uint16))
    with pytest.raises(DataError, match='gray.png.*found 16-bit with 1 channel'):
        read_kitti_flow(gray)
    junk = tmp_path / 'junk.png'
    junk.write_bytes(b'not a png')
    with pytest.raises(DataError, match='junk.png: cannot decode'):
        read_kitti_flow(junk)


# ----------------------------------------------------------------------------------------- PFM

def test_pfm_flow_round_trip_and_channels(tmp_path):
    flow = np.random.default_rng(3).normal(0, 5, (4, 6, 2)).astype(np.float32)
    path = tmp_path / 'OpticalFlowIntoFuture_0006_L.pfm'
    write_pfm_flow(path, flow)
    raw = read_pfm(path)
    assert raw.shape == (4, 6, 3) and (raw[..., 2] == 0).all()
    np.testing.assert_array_equal(read_pfm_flow(path), flow)
    values, valid = read_flow(path)
    np.testing.assert_array_equal(values, flow)
    write_pfm(tmp_path / 'disp.pfm', np.zeros((4, 6), np.float32))
    with pytest.raises(DataError, match=r'disp.pfm: a flow PFM must have 3 channels \(PF\)'):
        read_pfm_flow(tmp_path / 'disp.pfm')


# ------------------------------------------------------------------------------------- datasets

def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b'')


def test_flying_chairs_split_file(tmp_path):
    for i in (1, 2, 3):
        for suffix in ('img1.ppm', 'img2.ppm', 'flow.flo'):
            _touch(tmp_path / 'data' / f'{i:05d}_{suffix}')
    (tmp_path / 'FlyingChairs_train_val.txt').write_text('1\n2\n1\n')
    train = FlyingChairsDataset(data_root=str(tmp_path), split='training')
    assert [train.get_data_info(i)['frame_id'] for i in range(len(train))] == ['00001', '00003']
    val = FlyingChairsDataset(data_root=str(tmp_path), split='validation')
    info = val.get_data_info(0)
    assert info['img_next_path'].endswith('00002_img2.ppm') and info['flow_format'] == 'flo'
    assert len(FlyingChairsDataset(data_root=str(tmp_path), split='all')) == 3
    (tmp_path / 'FlyingChairs_train_val.txt').write_text('1\n2\n')
    with pytest.raises(DataError, match='expected 3 labels'):
        FlyingChairsDataset(data_root=str(tmp_path))
    (tmp_path / 'FlyingChairs_train_val.txt').unlink()
    with pytest.raises(DataError, match='FlyingChairs_train_val.txt: FlyingChairs split file not'):
        FlyingChairsDataset(data_root=str(tmp_path))
    (tmp_path / 'data' / '00002_flow.flo').unlink()
    with pytest.raises(DataError, match=r'1 missing file\(s\) of flow pairs: 00002: flow '):
        FlyingChairsDataset(data_root=str(tmp_path), split='all')


def test_flying_things_both_directions(tmp_path):
    seq = tmp_path / 'frames_cleanpass' / 'TRAIN' / 'A' / '0000' / 'left'
    flows = tmp_path / 'optical_flow' / 'TRAIN' / 'A' / '0000'
    for n in (6, 7, 8):
        _touch(seq / f'{n:04d}.png')
        _touch(flows / 'into_future' / 'left' / f'OpticalFlowIntoFuture_{n:04d}_L.pfm')
        _touch(flows / 'into_past' / 'left' / f'OpticalFlowIntoPast_{n:04d}_L.pfm')
    dataset = FlyingThings3DFlowDataset(data_root=str(tmp_path))
    pairs = [dataset.get_data_info(i) for i in range(len(dataset))]
    names = [(p['img_path'][-8:-4], p['img_next_path'][-8:-4], p['flow_path'].split('/')[-1])
             for p in pairs]
    assert names == [('0006', '0007', 'OpticalFlowIntoFuture_0006_L.pfm'),
                     ('0007', '0008', 'OpticalFlowIntoFuture_0007_L.pfm'),
                     ('0007', '0006', 'OpticalFlowIntoPast_0007_L.pfm'),
                     ('0008', '0007', 'OpticalFlowIntoPast_0008_L.pfm')]
    assert pairs[0]['frame_id'] == 'TRAIN/A/0000/left/into_future/0006'
    assert {p['flow_format'] for p in pairs} == {'pfm'}
    with pytest.raises(DataError, match='no image pairs found.*frames_finalpass'):
        FlyingThings3DFlowDataset(data_root=str(tmp_path), render_pass='finalpass')


def test_kitti_flow_and_hd1k_scanners(tmp_path):
    kitti = tmp_path / 'kitti' / 'training'
    for name in ('000000', '000001'):
        _touch(kitti / 'image_2' / f'{name}_10.png')
        _touch(kitti / 'image_2' / f'{name}_11.png')
        _touch(kitti / 'flow_occ' / f'{name}_10.png')
        _touch(kitti / 'flow_noc' / f'{name}_10.png')
    dataset = KittiFlowDataset(data_root=str(tmp_path / 'kitti'))
    info = dataset.get_data_info(1)
    assert info['frame_id'] == '000001_10' and info['img_next_path'].endswith('000001_11.png')
    assert info['flow_path'].endswith('flow_occ/000001_10.png')
    assert info['noc_path'].endswith('flow_noc/000001_10.png')
    assert info['noc_format'] == 'kitti_png' and info['flow_format'] == 'kitti_png'
    assert 'noc_path' not in KittiFlowDataset(data_root=str(tmp_path / 'kitti'),
                                              flow_type='noc').get_data_info(0)
    hd1k = tmp_path / 'hd1k'
    for n in range(3):
        _touch(hd1k / 'hd1k_input' / 'image_2' / f'000004_{n:04d}.png')
        _touch(hd1k / 'hd1k_flow_gt' / 'flow_occ' / f'000004_{n:04d}.png')
    pairs = HD1KDataset(data_root=str(hd1k))
    assert len(pairs) == 2  # the last frame has no successor
    assert pairs.get_data_info(1)['img_next_path'].endswith('000004_0002.png')
    with pytest.raises(DataError, match='HD1KDataset root folder not found'):
        HD1KDataset(data_root=str(tmp_path / 'nowhere'))


def test_sintel_masks_and_registry(tmp_path):
    write_synthetic_flow(tmp_path, num_scenes=1, frames_per_scene=2, size=(16, 24), seed=1)
    invalid = np.zeros((16, 24), np.uint8)
    invalid[3, 4] = 255
    cv2.imwrite(str(tmp_path / 'training/invalid/scene_000/frame_0001.png'), invalid)
    dataset = DATASETS.build(dict(type='SintelDataset', data_root=str(tmp_path)))
    frame = dataset.get_data_info(0)
    assert frame['noc_format'] == 'occlusion_png'
    results = LoadFlow()(LoadFlowPair()(dict(frame)))
    assert results['gt_valid'].sum() == 16 * 24 - 1 and not results['gt_valid'][3, 4]
    occlusion = cv2.imread(frame['noc_path'], cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(results['noc_mask'], occlusion == 0)
    assert not results['noc_mask'].all()
    with pytest.raises(DataError, match='no image pairs found for SintelDataset'):
        SintelDataset(data_root=str(tmp_path), split='training', scenes=['other'])
    for name in ('LoadFlowPair', 'LoadFlow', 'FlowColorJitter', 'FlowEraser', 'FlowRandomScale',
                 'FlowRandomFlip', 'PackFlowInputs'):
        assert TRANSFORMS.get(name) is not None


def test_load_errors_name_the_files(tmp_path):
    cv2.imwrite(str(tmp_path / 'a.png'), np.zeros((4, 6, 3), np.uint8))
    cv2.imwrite(str(tmp_path / 'b.png'), np.zeros((5, 6, 3), np.uint8))
    with pytest.raises(DataError, match=r'a.png is 6x4, .*b.png is 6x5'):
        LoadFlowPair()({'img_path': str(tmp_path / 'a.png'),
                        'img_next_path': str(tmp_path / 'b.png')})
    write_flo(tmp_path / 'f.flo', np.zeros((5, 6, 2), np.float32))
    results = LoadFlowPair()({'img_path': str(tmp_path / 'a.png'),
                              'img_next_path': str(tmp_path / 'a.png'),
                              'flow_path': str(tmp_path / 'f.flo'), 'flow_format': 'flo'})
    with pytest.raises(DataError, match=r'f.flo: flow is 6x5, image .*a.png is 6x4'):
        LoadFlow()(results)
    with pytest.raises(DataError, match='has no ground-truth flow'):
        LoadFlow(required=True)({'frame_id': 'x', 'flow_path': None})


# ------------------------------------------------------------------------------- augmentation

def _warp_error(results):
    """Mean |img - img_next(x + flow)| over matched pixels (bilinear), and with a zero flow."""
    first = results['img'].astype(np.float32)
    second = results['img_next'].astype(np.float32)
    height, width = first.shape[:2]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    flow = results['gt_flow']
    warped = cv2.remap(second, xs + flow[..., 0], ys + flow[..., 1], cv2.INTER_LINEAR)
    tx, ty = xs + flow[..., 0], ys + flow[..., 1]
    inside = (tx >= 0) & (tx <= width - 1) & (ty >= 0) & (ty <= height - 1)  # a crop cuts some
    mask = results['noc_mask'] & results['gt_valid'] & inside
    return np.abs(warped - first)[mask].mean(), np.abs(second - first)[mask].mean()


def _pair(seed=0):
    pair = render_flow_pair(np.random.default_rng(seed), 64, 96, max_shift=6.0)
    pair.pop('scene')
    return pair


@pytest.mark.parametrize('horizontal,vertical', [(1.0, 0.0), (0.0, 1.0), (1.0, 1.0)])
def test_flip_negates_the_flipped_component(horizontal, vertical):
    pair = _pair()
    u, v = pair['gt_flow'][..., 0].copy(), pair['gt_flow'][..., 1].copy()
    out = FlowRandomFlip(horizontal, vertical)(dict(pair))
    assert out['flip_horizontal'] == bool(horizontal)
    assert out['flip_vertical'] == bool(vertical)
    if horizontal:
        u, v = -u[:, ::-1], v[:, ::-1]
    if vertical:
        u, v = u[::-1], -v[::-1]
    np.testing.assert_array_equal(out['gt_flow'][..., 0], u)
    np.testing.assert_array_equal(out['gt_flow'][..., 1], v)
    error, zero = _warp_error(out)
    assert error < 1.5 and zero > 5  # measured 0.6-0.8 vs 12-20 (unflipped: the same)


def test_scale_and_crop_keep_the_flow_consistent():
    np.random.seed(0)
    for seed in range(3):
        pair = _pair(seed)
        before = _warp_error(pair)[0]
        scale = FlowRandomScale(min_scale=0.3, max_scale=0.5, prob=1.0, stretch_prob=1.0)
        out = scale(dict(pair))
        s_x, s_y = out['scale_factor']
        assert out['img'].shape[:2] == (round(64 * s_y), round(96 * s_x))
        assert out['gt_flow'].shape == out['img'].shape[:2] + (2,)
        # flow magnitudes scale per axis (dense, everything valid)
        np.testing.assert_allclose(np.abs(out['gt_flow'][..., 0]).mean(),
                                   s_x * np.abs(pair['gt_flow'][..., 0]).mean(), rtol=0.05)
        error, zero = _warp_error(out)
        # measured: 0.4-0.8 after upscaling (before: 0.6-0.8); a flow left unscaled gives > 2
        assert error < max(1.5, 1.2 * before) and zero > 5
        unscaled = dict(out, gt_flow=out['gt_flow'] / np.array([s_x, s_y], np.float32))
        assert _warp_error(unscaled)[0] > error + 0.5
        crop = FlowRandomCrop((40, 56))(dict(out))
        y0, x0 = crop['crop_offset']
        np.testing.assert_array_equal(crop['gt_flow'], out['gt_flow'][y0:y0 + 40, x0:x0 + 56])
        np.testing.assert_array_equal(crop['img_next'], out['img_next'][y0:y0 + 40, x0:x0 + 56])
        # measured up to 2.07 on these crops (fewer pixels, layer edges weigh more) vs > 5 unwarped
        crop_error, crop_zero = _warp_error(crop)
        assert crop_error < 3.0 and crop_zero > 5


def test_scale_raises_small_images_to_the_crop():
    pair = _pair()
    out = FlowRandomScale(min_scale=-0.5, max_scale=-0.5, prob=0.0, stretch_prob=0.0,
                          crop_size=(80, 100))(dict(pair))
    assert out['img'].shape[0] >= 88 and out['img'].shape[1] >= 108


def test_scale_floor_is_one_for_both_axes():
    # The official augmentors clip s_x and s_y at one floor, max((h + 8) / H, (w + 8) / W): a
    # KITTI-sized 375x1242 frame for a 432x960 crop gets both axes >= 440 / 375 = 1.1733 (dense)
    # or 433 / 375 = 1.1547 (sparse), although its width alone would allow 0.78.
    for sparse, floor in ((False, 440 / 375), (True, 433 / 375)):
        scale = FlowRandomScale(min_scale=-0.5, max_scale=-0.5, stretch_prob=0.0,
                                crop_size=(432, 960), sparse=sparse)
        assert scale._draw(375, 1242, sparse) == pytest.approx((floor, floor), abs=1e-12)
    # Above the floor the drawn scale is kept, with its stretch.
    np.random.seed(0)
    sx, sy = FlowRandomScale(min_scale=0.5, max_scale=0.5, stretch_prob=1.0,
                             crop_size=(432, 960))._draw(375, 1242, False)
    assert sx != sy and min(sx, sy) > 2 ** 0.3


def test_sparse_resample_by_hand():
    flow = np.zeros((4, 6, 2), np.float32)
    valid = np.zeros((4, 6), bool)
    flow[1, 2] = (3.0, -1.0)
    valid[1, 2] = True
    noc = valid.copy()
    out, out_valid, out_noc = resample_sparse_flow(flow, valid, 2.0, 0.5, (2, 12), noc)
    # x: (2 + 0.5) * 2 - 0.5 = 4.5 -> round half to even 4; y: (1 + 0.5) * 0.5 - 0.5 = 0.25 -> 0
    assert out_valid.sum() == 1 and out_valid[0, 4]
    np.testing.assert_array_equal(out[0, 4], (6.0, -0.5))
    assert out_noc[0, 4]
    # a sparse (KITTI-like) map takes this path automatically in FlowRandomScale
    pair = {'img': np.zeros((4, 6, 3), np.uint8), 'img_next': np.zeros((4, 6, 3), np.uint8),
            'gt_flow': flow, 'gt_valid': valid}
    np.random.seed(1)
    result = FlowRandomScale(min_scale=1.0, max_scale=1.0, stretch_prob=0.0, prob=1.0)(pair)
    assert result['gt_valid'].sum() == 1
    np.testing.assert_array_equal(result['gt_flow'][result['gt_valid']], [[6.0, -2.0]])


def test_colour_jitter_is_asymmetric_only_when_asked():
    image = np.full((8, 8, 3), 120, np.uint8)
    np.random.seed(0)
    same = FlowColorJitter(brightness=0.4, contrast=0, saturation=(1, 1), hue=0,
                           asymmetric_prob=0.0)({'img': image, 'img_next': image.copy()})
    np.testing.assert_array_equal(same['img'], same['img_next'])
    assert not (same['img'] == 120).all()
    different = FlowColorJitter(brightness=0.4, contrast=0, saturation=(1, 1), hue=0,
                                asymmetric_prob=1.0)({'img': image, 'img_next': image.copy()})
    assert not np.array_equal(different['img'], different['img_next'])


def test_eraser_paints_only_the_second_frame():
    pair = _pair()
    np.random.seed(3)
    out = FlowEraser(prob=1.0, size_range=(10, 20))(dict(pair))
    np.testing.assert_array_equal(out['img'], pair['img'])
    np.testing.assert_array_equal(out['gt_flow'], pair['gt_flow'])
    assert (out['img_next'] != pair['img_next']).any(axis=2).sum() >= 10


def test_pack_flow_inputs_layout():
    pair = _pair()
    packed = PackFlowInputs()(dict(pair, frame_id='f'))
    assert packed['inputs'].shape == (2, 3, 64, 96) and packed['inputs'].dtype == torch.uint8
    np.testing.assert_array_equal(packed['inputs'][1].permute(1, 2, 0).numpy(), pair['img_next'])
    sample = packed['data_samples']
    np.testing.assert_array_equal(sample.gt_flow.data[0].numpy(), pair['gt_flow'][..., 0])
    np.testing.assert_array_equal(sample.gt_flow.data[1].numpy(), pair['gt_flow'][..., 1])
    assert sample.gt_valid.data.dtype == torch.bool and sample.noc_mask.data.shape == (1, 64, 96)
    assert sample.metainfo['frame_id'] == 'f'
    with pytest.raises(DataError, match='two \\(H, W, 3\\) images of one size'):
        PackFlowInputs()(dict(pair, img_next=pair['img_next'][:10]))
