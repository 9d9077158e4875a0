"""Stereo data: disparity file formats, the dataset folder scanners, and stereo augmentation."""
from __future__ import annotations

import os
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from scipy.ndimage import map_coordinates

from perception.datasets.stereo import (
    ETH3DDataset,
    KittiStereoDataset,
    MiddleburyDataset,
    SceneFlowDataset,
)
from perception.datasets.stereo_io import (
    read_calib_txt,
    read_kitti_disparity,
    read_pfm,
    write_kitti_disparity,
    write_pfm,
)
from perception.datasets.transforms.stereo import (
    LoadDisparity,
    LoadStereoPair,
    PackStereoInputs,
    StereoColorJitter,
    StereoEraser,
    StereoRandomCrop,
    StereoRandomFlip,
    StereoRandomScale,
    _adjust_hue,
    resample_sparse_disparity,
)
from perception.engine.errors import ConfigError, DataError
from perception.evaluation.stereo import StereoMetric
from perception.registry import DATASETS, TRANSFORMS

# ------------------------------------------------------------------------------------------ PFM


def test_pfm_hand_written_bytes_little_endian_rows_bottom_up(tmp_path):
    # Six floats stored in file order 1..6: the FIRST stored row is the image's BOTTOM row.
    path = tmp_path / 'a.pfm'
    path.write_bytes(b'Pf\n2 3\n-1.0\n' + struct.pack('<6f', 1, 2, 3, 4, 5, 6))
    image = read_pfm(path)
    assert image.dtype == np.float32 and image.shape == (3, 2)
    np.testing.assert_array_equal(image, [[5, 6], [3, 4], [1, 2]])


def test_pfm_hand_written_bytes_big_endian_and_colour(tmp_path):
    path = tmp_path / 'b.pfm'
    path.write_bytes(b'Pf\n2 3\n1.0\n' + struct.pack('>6f', 1, 2, 3, 4, 5, 6))
    np.testing.assert_array_equal(read_pfm(path), [[5, 6], [3, 4], [1, 2]])
    # PF: 1 x 2 pixels of (r, g, b); header tokens split over lines differently.
    path = tmp_path / 'c.pfm'
    path.write_bytes(b'PF\n1\n2\n-1\n' + struct.pack('<6f', 1, 2, 3, 4, 5, 6))
    image = read_pfm(path)
    assert image.shape == (2, 1, 3)
    np.testing.assert_array_equal(image[:, 0], [[4, 5, 6], [1, 2, 3]])


@pytest.mark.parametrize('little_endian', [True, False])
@pytest.mark.parametrize('shape', [(5, 7), (4, 6, 3)])
def test_pfm_round_trip(tmp_path, little_endian, shape):
    rng = np.random.default_rng(0)
    array = rng.uniform(-300, 300, size=shape).astype(np.float32)
    array.flat[3] = np.inf  # the invalid marker survives
    path = tmp_path / 'x.pfm'
    write_pfm(path, array, little_endian=little_endian)
    raw = path.read_bytes()
    kind = b'PF' if len(shape) == 3 else b'Pf'
    assert raw.startswith(kind + f'\n{shape[1]} {shape[0]}\n'.encode()
                          + (b'-1.0\n' if little_endian else b'1.0\n'))
    # Bottom row stored first, in the requested byte order.
    first = struct.unpack('<f' if little_endian else '>f', raw[raw.index(b'1.0\n') + 4:][:4])[0]
    assert first == array[-1].flat[0]
    back = read_pfm(path)
    np.testing.assert_array_equal(back, array)
    assert back.dtype == np.float32 and back.flags.writeable
    assert not list(tmp_path.glob('.*tmp'))  # atomic write leaves no temporary file


def test_pfm_nan_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / 'disp0GT.pfm'
    path.write_bytes(b'Pf\n2 2\n-1.0\n' + struct.pack('<4f', 1, float('nan'), 3, float('inf')))
    with pytest.raises(DataError, match=r'disp0GT\.pfm.*1 NaN.*row 1, column 1'):
        read_pfm(path)
    with pytest.raises(ValueError, match='NaN'):
        write_pfm(tmp_path / 'y.pfm', np.array([[np.nan]], np.float32))


@pytest.mark.parametrize('raw, message', [
    (b'P6\n2 2\n255\n', 'not a PFM'),
    (b'Pf\n2 2\n-1.0\n' + b'\0' * 12, 'truncated PFM.*16 bytes.*found 12'),
    (b'Pf\n2 x\n-1.0\n' + b'\0' * 16, 'malformed PFM header'),
    (b'Pf\n2 2\n0\n' + b'\0' * 16, 'scale'),
])
def test_pfm_malformed(tmp_path, raw, message):
    path = tmp_path / 'bad.pfm'
    path.write_bytes(raw)
    with pytest.raises(DataError, match=message):
        read_pfm(path)


# ------------------------------------------------------------------------------------ KITTI PNG


def test_kitti_png_round_trip(tmp_path):
    disp = np.array([[0.0, 1 / 256, 10.5], [255.99609375, np.nan, -3.0]], dtype=np.float32)
    path = tmp_path / '000000_10.png'
    write_kitti_disparity(path, disp)
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint16
    np.testing.assert_array_equal(raw, [[0, 1, 2688], [65535, 0, 0]])
    back, valid = read_kitti_disparity(path)
    np.testing.assert_array_equal(valid, [[False, True, True], [True, False, False]])
    np.testing.assert_array_equal(back, [[0, 1 / 256, 10.5], [255.99609375, 0, 0]])
    # A tiny positive value stays valid (1/256), a masked one becomes invalid.
    write_kitti_disparity(path, np.full((1, 2), 1e-4), valid=np.array([[True, False]]))
    np.testing.assert_array_equal(cv2.imread(str(path), cv2.IMREAD_UNCHANGED), [[1, 0]])


def test_kitti_png_wrong_bit_depth(tmp_path):
    path = tmp_path / 'disp8.png'
    cv2.imwrite(str(path), np.full((4, 5), 7, np.uint8))
    with pytest.raises(DataError, match=r'disp8\.png.*16-bit single-channel.*found 8-bit with 1'):
        read_kitti_disparity(path)
    path = tmp_path / 'disp_rgb16.png'
    cv2.imwrite(str(path), np.full((4, 5, 3), 700, np.uint16))
    with pytest.raises(DataError, match=r'disp_rgb16\.png.*found 16-bit with 3 channel'):
        read_kitti_disparity(path)
    with pytest.raises(DataError, match='not found'):
        read_kitti_disparity(tmp_path / 'none.png')


# ------------------------------------------------------------------------------------ calib.txt

MOTORCYCLE_CALIB = """cam0=[3979.911 0 1244.772; 0 3979.911 1019.507; 0 0 1]
cam1=[3979.911 0 1369.115; 0 3979.911 1019.507; 0 0 1]
doffs=124.343
baseline=193.001
width=2964
height=1988
ndisp=270
isint=0
vmin=23
vmax=245
dyavg=-0.502
dymax=2.144
"""


def test_calib_txt(tmp_path):
    path = tmp_path / 'calib.txt'
    path.write_text(MOTORCYCLE_CALIB)
    calib = read_calib_txt(path)
    assert calib.focal == 3979.911 and calib.baseline == 193.001 and calib.doffs == 124.343
    assert (calib.width, calib.height, calib.ndisp) == (2964, 1988, 270)
    assert calib.cam1[0, 2] == 1369.115 and calib.extra['vmax'] == 245
    # depth (mm) of d = 100 px: f * B / (d + doffs)
    assert calib.focal * calib.baseline / (100 + calib.doffs) == pytest.approx(3423.89, abs=0.01)
    # Without doffs it is the principal-point difference.
    path.write_text(MOTORCYCLE_CALIB.replace('doffs=124.343\n', ''))
    assert read_calib_txt(path).doffs == pytest.approx(124.343)
    path.write_text(MOTORCYCLE_CALIB.replace('baseline=193.001\n', ''))
    with pytest.raises(DataError, match=r'calib\.txt: missing baseline'):
        read_calib_txt(path)
    path.write_text(MOTORCYCLE_CALIB.replace('0 0 1]\ncam1', '0 1]\ncam1'))
    with pytest.raises(DataError, match='cam0 must be a 3x3'):
        read_calib_txt(path)
    path.write_text('cam0=[1 0 0; 0 1 0; 0 0 1]\nbaseline 3\n')
    with pytest.raises(DataError, match='line 2: expected key=value'):
        read_calib_txt(path)


# ------------------------------------------------------------------------------ dataset folders


def _image(path: Path, height: int = 6, width: int = 8, value: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = (np.arange(height * width * 3).reshape(height, width, 3) + value) % 256
    cv2.imwrite(str(path), image.astype(np.uint8))


def _pfm(path: Path, value: float = 2.5, height: int = 6, width: int = 8) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_pfm(path, np.full((height, width), value, np.float32))


def _kitti(path: Path, value: float = 3.0, height: int = 6, width: int = 8) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    disp = np.full((height, width), value, np.float32)
    disp[0, 0] = 0
    write_kitti_disparity(path, disp)


def _mask(path: Path, height: int = 6, width: int = 8) -> None:
    mask = np.full((height, width), 255, np.uint8)
    mask[1, :] = 128
    mask[2, :] = 0
    cv2.imwrite(str(path), mask)


@pytest.fixture
def sceneflow_root(tmp_path):
    root = tmp_path / 'sceneflow'
    pairs = ['FlyingThings3D/{p}/TRAIN/B/0001/{s}/0006', 'FlyingThings3D/{p}/TRAIN/A/0000/{s}/0007',
             'FlyingThings3D/{p}/TRAIN/A/0000/{s}/0006', 'FlyingThings3D/{p}/TEST/A/0000/{s}/0006',
             'Monkaa/{p}/a_rain_of_stones_x2/{s}/0000',
             'Driving/{p}/15mm_focallength/scene_forwards/fast/{s}/0001']
    for index, pair in enumerate(pairs):
        for side in ('left', 'right'):
            _image(root / (pair.format(p='frames_finalpass', s=side) + '.png'))
            _pfm(root / (pair.format(p='disparity', s=side) + '.pfm'), value=index + 1)
    return root


def test_sceneflow_dataset(sceneflow_root):
    root = sceneflow_root
    train = SceneFlowDataset(str(root))
    assert [train.get_data_info(i)['frame_id'] for i in range(len(train))] == [
        'FlyingThings3D/TRAIN/A/0000/0006', 'FlyingThings3D/TRAIN/A/0000/0007',
        'FlyingThings3D/TRAIN/B/0001/0006', 'Monkaa/a_rain_of_stones_x2/0000',
        'Driving/15mm_focallength/scene_forwards/fast/0001']
    info = train.get_data_info(0)
    assert info['img_path'] == str(root / 'FlyingThings3D/frames_finalpass/TRAIN/A/0000/left/'
                                          '0006.png')
    assert info['img_right_path'] == str(root / 'FlyingThings3D/frames_finalpass/TRAIN/A/0000/'
                                                'right/0006.png')
    assert info['disp_path'] == str(root / 'FlyingThings3D/disparity/TRAIN/A/0000/left/0006.pfm')
    assert info['disp_format'] == 'pfm'
    test = SceneFlowDataset(str(root), split='TEST')
    assert len(test) == 1 and test.get_data_info(0)['frame_id'] == 'FlyingThings3D/TEST/A/0000/0006'
    assert len(SceneFlowDataset(str(root), subsets=['Monkaa', 'Driving'])) == 2
    # Through a pipeline: the disparity written for pair index 2 (value 3).
    ds = SceneFlowDataset(str(root), pipeline=[LoadStereoPair(), LoadDisparity()])
    item = ds[0]
    assert item['img'].shape == (6, 8, 3) and np.all(item['gt_disp'] == 3)
    assert item['gt_valid'].all()
    with pytest.raises(DataError, match='no stereo pairs.*frames_cleanpass'):
        SceneFlowDataset(str(root), render_pass='cleanpass')
    with pytest.raises(ConfigError, match='only FlyingThings3D has a TEST'):
        SceneFlowDataset(str(root), split='TEST', subsets=['Monkaa'])
    os.remove(root / 'Monkaa/frames_finalpass/a_rain_of_stones_x2/right/0000.png')
    os.remove(root / 'FlyingThings3D/disparity/TRAIN/B/0001/left/0006.pfm')
    with pytest.raises(DataError, match=r'2 missing.*TRAIN/B/0001/0006: disp .*left/0006\.pfm.*'
                                        r'a_rain_of_stones_x2/0000: img_right .*right/0000\.png'):
        SceneFlowDataset(str(root))


def test_sceneflow_registered():
    assert DATASETS.get('SceneFlowDataset') is SceneFlowDataset
    assert TRANSFORMS.get('PackStereoInputs') is PackStereoInputs


@pytest.mark.parametrize('year', [2012, 2015])
def test_kitti_stereo_dataset(tmp_path, year):
    names = {2012: ('colored_0', 'colored_1', 'disp_occ', 'disp_noc'),
             2015: ('image_2', 'image_3', 'disp_occ_0', 'disp_noc_0')}[year]
    root = tmp_path / str(year)
    for frame in ('000001', '000000'):
        for folder in names[:2]:
            _image(root / 'training' / folder / f'{frame}_10.png')
            _image(root / 'training' / folder / f'{frame}_11.png')  # not a stereo GT frame
            _image(root / 'testing' / folder / f'{frame}_10.png')
        _kitti(root / 'training' / names[2] / f'{frame}_10.png', value=4.0)
        _kitti(root / 'training' / names[3] / f'{frame}_10.png', value=4.0)
    ds = KittiStereoDataset(str(root), pipeline=[LoadStereoPair(), LoadDisparity()])
    assert ds.year == year and len(ds) == 2
    info = ds.get_data_info(0)
    assert info['frame_id'] == '000000_10' and info['disp_format'] == 'kitti_png'
    assert info['disp_path'].endswith(f'{names[2]}/000000_10.png')
    assert info['noc_path'].endswith(f'{names[3]}/000000_10.png')
    item = ds[1]
    assert item['gt_disp'][0, 0] == 0 and not item['gt_valid'][0, 0] and item['gt_disp'][3, 3] == 4
    assert item['noc_mask'].sum() == 6 * 8 - 1
    noc = KittiStereoDataset(str(root), year=year, disp_type='noc').get_data_info(0)
    assert noc['disp_path'].endswith(f'{names[3]}/000000_10.png') and 'noc_path' not in noc
    test = KittiStereoDataset(str(root), split='testing')
    assert len(test) == 2 and test.get_data_info(1)['disp_path'] is None
    os.remove(root / 'training' / names[2] / '000001_10.png')
    with pytest.raises(DataError, match=rf'000001_10: disp .*{names[2]}/000001_10\.png'):
        KittiStereoDataset(str(root))
    with pytest.raises(DataError, match='root folder not found'):
        KittiStereoDataset(str(tmp_path / 'nothing'), year=year)


def test_middlebury_dataset(tmp_path):
    root = tmp_path / 'middlebury'
    for scene in ('Motorcycle', 'Adirondack'):
        folder = root / 'MiddEval3/trainingH' / scene
        _image(folder / 'im0.png')
        _image(folder / 'im1.png')
        disp = np.full((6, 8), 7.5, np.float32)
        disp[5, :] = np.inf
        folder.mkdir(parents=True, exist_ok=True)
        write_pfm(folder / 'disp0GT.pfm', disp)
        _mask(folder / 'mask0nocc.png')
        (folder / 'calib.txt').write_text(MOTORCYCLE_CALIB)
        _image(root / 'MiddEval3/testH' / scene / 'im0.png')
        _image(root / 'MiddEval3/testH' / scene / 'im1.png')
    perfect = root / '2014/Pipes-perfect'
    for name in ('im0.png', 'im1.png', 'im1E.png', 'im1L.png'):
        _image(perfect / name)
    _pfm(perfect / 'disp0.pfm')
    ds = MiddleburyDataset(str(root), pipeline=[LoadStereoPair(), LoadDisparity()])
    assert [ds.get_data_info(i)['frame_id'] for i in range(2)] == ['trainingH/Adirondack',
                                                                   'trainingH/Motorcycle']
    info = ds.get_data_info(1)
    assert info['noc_format'] == 'mask_png' and info['calib_path'].endswith('calib.txt')
    item = ds[0]
    # inf = invalid: stored as 0 with gt_valid False; the noc mask is the 255 pixels only.
    assert item['gt_valid'].sum() == 5 * 8 and np.all(item['gt_disp'][5] == 0)
    assert np.all(item['gt_disp'][:5] == 7.5)
    assert item['noc_mask'].sum() == 4 * 8 and not item['noc_mask'][1:3].any()
    assert len(MiddleburyDataset(str(root), scenes=['Motorcycle'])) == 1
    test = MiddleburyDataset(str(root), split='testH')
    assert len(test) == 2 and test.get_data_info(0)['disp_path'] is None
    y2014 = MiddleburyDataset(str(root), split='2014', right_variants=('', 'E', 'L'))
    assert [y2014.get_data_info(i)['img_right_path'][-8:] for i in range(3)] == [
        '/im1.png', 'im1E.png', 'im1L.png']
    assert y2014.get_data_info(0)['disp_path'].endswith('Pipes-perfect/disp0.pfm')
    with pytest.raises(DataError, match='no stereo pairs.*trainingQ'):
        MiddleburyDataset(str(root), split='trainingQ')


def test_eth3d_dataset(tmp_path):
    root = tmp_path / 'eth3d'
    for scene in ('playground_1l', 'delivery_area_1l'):
        _image(root / 'two_view_training' / scene / 'im0.png')
        _image(root / 'two_view_training' / scene / 'im1.png')
        _pfm(root / 'two_view_training_gt' / scene / 'disp0GT.pfm', value=1.25)
        _mask(root / 'two_view_training_gt' / scene / 'mask0nocc.png')
    _image(root / 'two_view_test/lakeside_1l/im0.png')
    _image(root / 'two_view_test/lakeside_1l/im1.png')
    ds = ETH3DDataset(str(root), pipeline=[LoadStereoPair(), LoadDisparity()])
    assert [ds.get_data_info(i)['frame_id'] for i in range(2)] == ['delivery_area_1l',
                                                                   'playground_1l']
    item = ds[1]
    assert np.all(item['gt_disp'] == 1.25) and item['noc_mask'].sum() == 32
    test = ETH3DDataset(str(root), split='test')
    assert len(test) == 1 and test.get_data_info(0)['disp_path'] is None
    os.remove(root / 'two_view_training/playground_1l/im1.png')
    with pytest.raises(DataError, match=r'playground_1l: img_right .*playground_1l/im1\.png'):
        ETH3DDataset(str(root))


# ----------------------------------------------------------------------- loading (real pair)


def test_load_stereo_pair_real_motorcycle(shared_data, tmp_path):
    folder = shared_data / 'middlebury_pairs' / 'Motorcycle'
    results = LoadStereoPair()({'img_path': str(folder / 'im0.png'),
                                'img_right_path': str(folder / 'im1.png')})
    assert results['img'].shape == (994, 1482, 3) and results['img_right'].shape == (994, 1482, 3)
    assert results['img'].dtype == np.uint8 and results['img_shape'] == (994, 1482)
    # RGB order: cv2 reads BGR, so the loaded red channel is the file's third channel.
    np.testing.assert_array_equal(results['img'][..., 0],
                                  cv2.imread(str(folder / 'im0.png'))[..., 2])
    small = tmp_path / 'im1_small.png'
    cv2.imwrite(str(small), cv2.resize(cv2.imread(str(folder / 'im1.png')), (741, 497)))
    with pytest.raises(DataError, match=r'left .*im0\.png is 1482x994, right .*im1_small\.png '
                                        r'is 741x497'):
        LoadStereoPair()({'img_path': str(folder / 'im0.png'), 'img_right_path': str(small)})


def test_load_disparity_size_mismatch(tmp_path):
    _image(tmp_path / 'im0.png')
    _image(tmp_path / 'im1.png')
    _pfm(tmp_path / 'disp.pfm', height=5)
    results = LoadStereoPair()({'img_path': str(tmp_path / 'im0.png'),
                                'img_right_path': str(tmp_path / 'im1.png'),
                                'disp_path': str(tmp_path / 'disp.pfm'), 'disp_format': 'pfm'})
    with pytest.raises(DataError, match=r'disp\.pfm: disparity map is 8x5, image .* is 8x6'):
        LoadDisparity()(results)
    with pytest.raises(DataError, match='no ground-truth'):
        LoadDisparity(required=True)({'disp_path': None, 'frame_id': 'x'})


# ------------------------------------------------------------- augmentation keeps disparity exact


def _texture(u: np.ndarray, v: np.ndarray, seed: int = 0) -> np.ndarray:
    """A smooth analytic RGB texture (periods 20-40 px), float32 ~0-255, at any real (u, v).

    Smooth enough that bilinear resampling errs by ~0.1-0.3 grey levels, textured enough that a
    disparity wrong by 0.3 px errs by ~1.5.
    """
    rng = np.random.default_rng(seed)
    out = np.full(np.broadcast(u, v).shape + (3,), 128.0)
    for channel in range(3):
        for _ in range(4):
            angle, freq = rng.uniform(0, 2 * np.pi), rng.uniform(1 / 40, 1 / 20)
            phase = 2 * np.pi * freq * (np.cos(angle) * u + np.sin(angle) * v)
            out[..., channel] += 25 * np.sin(phase + rng.uniform(0, 2 * np.pi))
    return out.astype(np.float32)


def _synthetic_pair(height: int, width: int, a: float, b: float) -> dict:
    """Left/right images of a plane with disparity ``d(u) = a + b u`` (left-referenced).

    Left pixel ``u`` sees texture position ``u``; it appears in the right image at
    ``x = u - d(u) = (1 - b) u - a``, so the right image at ``x`` shows ``(x + a) / (1 - b)``.
    """
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    return {'img': _texture(u, v), 'img_right': _texture((u + a) / (1 - b), v),
            'gt_disp': (a + b * u).astype(np.float32), 'gt_valid': np.ones((height, width), bool),
            'img_shape': (height, width), 'frame_id': 'synthetic'}


def _warp_error(results: dict, disp: np.ndarray | None = None, border: int = 3) -> float:
    """Mean |left - right warped by the disparity| over valid pixels away from the borders."""
    left, right = results['img'], results['img_right']
    disp = results['gt_disp'] if disp is None else disp
    height, width = disp.shape
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    x = u - disp
    ok = (results['gt_valid'] & (x >= border) & (x <= width - 1 - border)
          & (v >= border) & (v <= height - 1 - border) & (u >= border) & (u <= width - 1 - border))
    assert ok.sum() > 0.2 * ok.size
    warped = np.stack([map_coordinates(right[..., c].astype(np.float64), [v[ok], x[ok]], order=1)
                       for c in range(3)], axis=-1)
    return float(np.abs(warped - left[ok]).mean())


def test_synthetic_pair_itself_is_consistent():
    results = _synthetic_pair(60, 120, a=8.0, b=0.05)
    assert _warp_error(results) < 0.2
    assert _warp_error(results, results['gt_disp'] + 0.3) > 1.0


@pytest.mark.parametrize('a, b', [(9.0, 0.0), (4.0, 0.06)])
def test_scale_with_stretch_keeps_disparity_consistent(a, b):
    scale = StereoRandomScale(min_scale=np.log2(1.3), max_scale=np.log2(1.3), stretch_prob=1.0,
                              max_stretch=0.3)
    checked = 0
    for seed in range(20):
        np.random.seed(seed)
        results = scale(_synthetic_pair(60, 120, a, b))
        scale_x, scale_y = results['scale_factor']
        if abs(scale_x - scale_y) < 0.1 * scale_x:  # want a clear x/y stretch
            continue
        height, width = results['img'].shape[:2]
        assert (height, width) == (round(60 * scale_y), round(120 * scale_x))
        assert results['gt_disp'].shape == (height, width) and results['gt_valid'].all()
        error = _warp_error(results)
        assert error < 0.4
        # Scaling the values by s_y (or not at all) is visibly wrong.
        for wrong in (results['gt_disp'] / scale_x * scale_y, results['gt_disp'] / scale_x):
            assert _warp_error(results, wrong) > max(1.0, 4 * error)
        checked += 1
        if checked == 3:
            break
    assert checked == 3


def test_scale_then_crop_then_flip_keeps_disparity_consistent():
    np.random.seed(7)
    pipeline = [StereoRandomScale(min_scale=-0.5, max_scale=0.3, crop_size=(40, 80)),
                StereoRandomCrop((40, 80)), StereoRandomFlip(prob=1.0)]
    for _ in range(4):
        results = _synthetic_pair(60, 120, a=6.0, b=0.05)
        for transform in pipeline:
            results = transform(results)
        assert results['img'].shape == (40, 80, 3) and results['gt_disp'].shape == (40, 80)
        assert results['flip_vertical'] and results['img_shape'] == (40, 80)
        scale_x, scale_y = results['scale_factor']
        assert scale_x >= 88 / 120 and scale_y >= 48 / 60  # raised so that the crop fits
        # The disparity of the plane at the crop's columns, in the scaled image's pixels.
        y0, x0 = results['crop_offset']
        u_scaled = np.arange(x0, x0 + 80) + 0.0
        u_orig = (u_scaled + 0.5) / scale_x - 0.5
        inside = (u_orig >= 0) & (u_orig <= 119)  # cv2 replicates the border beyond
        np.testing.assert_allclose(results['gt_disp'][0][inside],
                                   scale_x * (6.0 + 0.05 * u_orig[inside]), atol=1e-3)
        assert _warp_error(results) < 0.4


def test_sparse_ground_truth_is_resampled_not_interpolated():
    rng = np.random.default_rng(3)
    results = _synthetic_pair(60, 120, a=10.0, b=0.0)
    keep = rng.random((60, 120)) < 0.3  # KITTI-like sparse LiDAR ground truth
    results['gt_valid'] = keep
    results['gt_disp'] = np.where(keep, results['gt_disp'], 0).astype(np.float32)
    results['noc_mask'] = keep.copy()
    np.random.seed(0)
    out = StereoRandomScale(min_scale=-0.4, max_scale=-0.4, stretch_prob=0.0)(results)
    scale_x, scale_y = out['scale_factor']
    assert scale_x == scale_y == pytest.approx(2 ** -0.4)
    valid = out['gt_valid']
    # Every valid value is exactly 10 * s_x (an interpolation with the zeros would be smaller),
    # and at most one point per target pixel (the count cannot exceed the valid source points).
    np.testing.assert_allclose(out['gt_disp'][valid], 10.0 * scale_x, rtol=1e-6)
    assert np.all(out['gt_disp'][~valid] == 0)
    assert 0.25 * valid.size < valid.sum() <= keep.sum()
    np.testing.assert_array_equal(out['noc_mask'], valid)
    assert _warp_error(out) < 0.4


def test_resample_sparse_disparity_hand_computed():
    disp = np.zeros((4, 4), np.float32)
    valid = np.zeros((4, 4), bool)
    disp[1, 2], valid[1, 2] = 5.0, True  # centre (2.5, 1.5) -> x2 -> (4.5, 2.5)
    disp[3, 3], valid[3, 3] = 7.0, True  # centre (3.5, 3.5) -> (6.5, 6.5)
    out, out_valid, _ = resample_sparse_disparity(disp, valid, 2.0, 2.0, (8, 8))
    # np.round rounds halves to even: (4.5, 2.5) -> pixel (4, 2), (6.5, 6.5) -> (6, 6).
    assert out_valid.sum() == 2 and out[2, 4] == 10.0 and out[6, 6] == 14.0
    # Halving: two points compete for one pixel; the one nearer the pixel centre wins.
    disp = np.array([[1.0, 2.0, 0, 0]], np.float32)
    out, out_valid, _ = resample_sparse_disparity(disp, disp > 0, 0.5, 1.0, (1, 2))
    # x = 0 -> -0.25 -> pixel 0 (distance 0.25); x = 1 -> 0.25 -> pixel 0 (distance 0.25): tie
    # broken by the stable sort (first point); values are multiplied by s_x.
    assert out_valid.tolist() == [[True, False]] and out[0, 0] == 0.5


def test_dense_scale_with_holes_drops_mixed_pixels():
    results = _synthetic_pair(20, 40, a=5.0, b=0.0)
    results['gt_valid'][:, 30:] = False  # 75 % valid: resized as a dense map (sparse=None)
    results['gt_disp'][:, 30:] = 0
    results['noc_mask'] = np.zeros((20, 40), bool)
    results['noc_mask'][:10] = True
    out = StereoRandomScale(min_scale=0.5, max_scale=0.5, stretch_prob=0)(results)
    valid = out['gt_valid']
    assert out['noc_mask'].shape == (28, 57)  # round(20 * 1.414), round(40 * 1.414)
    assert out['noc_mask'][:14].all() and not out['noc_mask'][14:].any()
    np.testing.assert_allclose(out['gt_disp'][valid], 5.0 * 2 ** 0.5, rtol=1e-5)
    # Output column x' samples source x = (x' + 0.5) / sqrt(2) - 0.5 between floor(x) and
    # floor(x) + 1: both valid (< 30) up to x' = 41, an invalid neighbour from x' = 42 on.
    assert valid[:, :42].all() and not valid[:, 42:].any()


def test_crop_and_flip_details():
    results = _synthetic_pair(30, 50, a=3.0, b=0.0)
    with pytest.raises(DataError, match='50x30, smaller than the crop 60x20'):
        StereoRandomCrop((20, 60))(dict(results))
    np.random.seed(1)
    out = StereoRandomCrop((20, 40), y_jitter=2)(dict(results))
    assert out['img_right'].shape == (20, 40, 3)
    with pytest.raises(ConfigError, match='vertical'):
        StereoRandomFlip(direction='horizontal')
    flipped = StereoRandomFlip(prob=1.0)(dict(results, gt_disp=np.arange(30.0)[:, None]
                                              * np.ones((1, 50), np.float32)))
    assert flipped['gt_disp'][0, 0] == 29 and np.array_equal(flipped['img'], results['img'][::-1])
    assert not StereoRandomFlip(prob=0.0)(dict(results))['flip_vertical']


# --------------------------------------------------------------------------------- photometric


def test_color_jitter_symmetric_and_asymmetric():
    image = np.random.default_rng(0).integers(0, 256, (16, 20, 3), dtype=np.uint8)
    np.random.seed(0)
    out = StereoColorJitter(asymmetric_prob=0.0)({'img': image.copy(), 'img_right': image.copy()})
    assert out['img'].dtype == np.uint8
    np.testing.assert_array_equal(out['img'], out['img_right'])  # one draw for both
    assert np.abs(out['img'].astype(int) - image).mean() > 1
    np.random.seed(0)
    out = StereoColorJitter(asymmetric_prob=1.0)({'img': image.copy(), 'img_right': image.copy()})
    assert np.abs(out['img'].astype(int) - out['img_right']).mean() > 1


def test_color_jitter_individual_operations():
    image = np.random.default_rng(1).uniform(20, 200, (8, 10, 3)).astype(np.float32)
    identity = StereoColorJitter(brightness=0, contrast=0, saturation=(1, 1), hue=0)
    out = identity({'img': image.copy(), 'img_right': image.copy()})
    np.testing.assert_allclose(out['img'], image, atol=1e-4)
    np.random.seed(5)
    bright = StereoColorJitter(brightness=0.2, contrast=0, saturation=(1, 1), hue=0)
    out = bright({'img': image.copy(), 'img_right': image.copy()})
    ratio = out['img'] / image
    assert 0.8 <= ratio.min() and ratio.max() <= 1.2 and np.ptp(ratio) < 1e-4  # one factor
    # Saturation 0 gives the BT.601 grey; hue 0.5 turn maps pure red to cyan.
    grey = StereoColorJitter(brightness=0, contrast=0, saturation=(0, 0), hue=0)(
        {'img': image.copy(), 'img_right': image.copy()})['img']
    expected = image @ np.array([0.299, 0.587, 0.114], np.float32)
    np.testing.assert_allclose(grey, np.repeat(expected[..., None], 3, -1), atol=1e-3)
    # A half-turn hue rotation maps pure red to cyan, a third of a turn to green.
    red = np.zeros((2, 2, 3), np.float32)
    red[..., 0] = 200
    np.testing.assert_allclose(_adjust_hue(red, 0.5)[0, 0], [0, 200, 200], atol=1e-3)
    np.testing.assert_allclose(_adjust_hue(red, 1 / 3)[0, 0], [0, 200, 0], atol=1e-3)
    np.random.seed(3)
    jitter = StereoColorJitter(brightness=0, contrast=0, saturation=(1, 1), hue=0.25)
    out = jitter({'img': red.copy(), 'img_right': red.copy()})['img'][0, 0]
    assert out.max() == pytest.approx(200, abs=1e-3) and out[2] == pytest.approx(0, abs=1e-3)


def test_eraser_paints_the_right_image_only():
    rng = np.random.default_rng(2)
    left = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    right = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    np.random.seed(0)
    out = StereoEraser(prob=1.0)({'img': left.copy(), 'img_right': right.copy()})
    np.testing.assert_array_equal(out['img'], left)
    changed = np.any(out['img_right'] != right, axis=-1)
    assert changed.sum() > 0
    mean_colour = right.reshape(-1, 3).mean(0).astype(np.uint8)
    np.testing.assert_array_equal(out['img_right'][changed],
                                  np.broadcast_to(mean_colour, (changed.sum(), 3)))
    np.random.seed(0)
    untouched = StereoEraser(prob=0.0)({'img': left, 'img_right': right.copy()})
    np.testing.assert_array_equal(untouched['img_right'], right)


# ------------------------------------------------------------------------------------- packing


def test_pack_stereo_inputs_feeds_the_metric():
    results = _synthetic_pair(12, 16, a=2.0, b=0.0)
    results['img'] = results['img'].astype(np.uint8)
    results['img_right'] = results['img_right'].astype(np.uint8)
    results['gt_valid'][0] = False
    results['noc_mask'] = np.ones((12, 16), bool)
    results['sample_idx'] = 3
    packed = PackStereoInputs()(results)
    inputs, sample = packed['inputs'], packed['data_samples']
    assert inputs.shape == (2, 3, 12, 16) and inputs.dtype == torch.uint8
    assert torch.equal(inputs[1].permute(1, 2, 0), torch.from_numpy(results['img_right']))
    assert sample.gt_disp.data.shape == (1, 12, 16) and sample.gt_disp.data.dtype == torch.float32
    assert sample.gt_valid.data.dtype == torch.bool and sample.gt_valid.data.sum() == 11 * 16
    assert sample.sample_idx == 3 and sample.img_shape == (12, 16)
    metric = StereoMetric()
    pred = sample.gt_disp.data[0] + 1.0  # off by 1 px everywhere
    metric.process({}, [{'pred_disp': pred, 'gt_disp': sample.gt_disp,
                         'gt_valid': sample.gt_valid, 'noc_mask': sample.noc_mask}])
    values = metric.compute_metrics(metric.results)
    assert values['EPE'] == pytest.approx(1.0) and values['bad_0.5'] == pytest.approx(100.0)
    float_pack = PackStereoInputs()({'img': np.zeros((4, 5, 3), np.float32),
                                     'img_right': np.zeros((4, 5, 3), np.float32)})
    assert float_pack['inputs'].dtype == torch.float32 and 'gt_disp' not in float_pack[
        'data_samples']
