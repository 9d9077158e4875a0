"""``tools/infer.py stereo`` end to end on the Middlebury Motorcycle pair, and its pieces."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from perception.apis.inference import (
    depth_to_points,
    disparity_to_depth,
    inference_stereo,
    init_model,
    write_ply,
)
from perception.datasets.stereo_io import read_pfm
from perception.engine.errors import CheckpointError, DataError
from perception.visualization.colors import colormap_lut

from .conftest import ROOT, SHARED_DATA, run_tool

# A small RAFT-Stereo (5.6 M parameters, features at 1/8) that runs a 1482x994 pair in seconds.
TINY_CONFIG = ROOT / 'configs/raft-stereo/raft-stereo_tiny_demo.py'
# Middlebury 2014 style, at the half resolution of the shared pair (baseline in mm).
FOCAL, BASELINE, DOFFS, CX, CY = 1989.955, 193.001, 62.172, 622.386, 496.5
CALIB = (f'cam0=[{FOCAL} 0 {CX}; 0 {FOCAL} {CY}; 0 0 1]\n'
         f'cam1=[{FOCAL} 0 {CX + DOFFS}; 0 {FOCAL} {CY}; 0 0 1]\n'
         f'doffs={DOFFS}\nbaseline={BASELINE}\nwidth=1482\nheight=994\nndisp=140\n')
PAIR = SHARED_DATA / 'middlebury_pairs' / 'Motorcycle'


@pytest.fixture(scope='module')
def tiny_model(tmp_path_factory) -> tuple[Path, Path]:
    """A config and a checkpoint whose model predicts clearly positive disparities."""
    root = tmp_path_factory.mktemp('tiny_raft')
    config = TINY_CONFIG
    torch.manual_seed(0)
    model = init_model(config)
    state = model.state_dict()
    # Bias the flow head towards negative flow (= positive disparity, about 2 x 3 x 8 = 48 px
    # after two iterations) so that depth and the point cloud have many valid pixels.
    state['update_block.flow_head.conv2.bias'][0] = -3.0
    checkpoint = root / 'tiny.pth'
    torch.save({'state_dict': state, 'meta': {'note': 'test'}}, checkpoint)
    return config, checkpoint


@pytest.fixture(scope='module')
def motorcycle_run(tiny_model, tmp_path_factory) -> Path:
    if not PAIR.is_dir():
        pytest.skip(f'shared sample data not found at {PAIR}')
    config, checkpoint = tiny_model
    root = tmp_path_factory.mktemp('infer_stereo')
    calib = root / 'calib.txt'
    calib.write_text(CALIB)
    out = root / 'out'
    proc = run_tool('tools/infer.py', 'stereo', config, checkpoint, '--left', PAIR / 'im0.png',
                    '--right', PAIR / 'im1.png', '--calib', calib, '--iters', '2', '--out-dir',
                    out)
    assert proc.returncode == 0, proc.stderr
    assert 'disparity 1482x994' in proc.stdout
    return out


def _read_ply(path: Path) -> tuple[str, np.ndarray]:
    raw = path.read_bytes()
    end = raw.index(b'end_header\n') + len(b'end_header\n')
    header = raw[:end].decode('ascii')
    dtype = np.dtype([('x', '<f4'), ('y', '<f4'), ('z', '<f4'), ('red', 'u1'), ('green', 'u1'),
                      ('blue', 'u1')])
    assert (len(raw) - end) % dtype.itemsize == 0
    return header, np.frombuffer(raw, dtype=dtype, offset=end)


def test_outputs_formats_and_values(motorcycle_run: Path, tiny_model):
    out = motorcycle_run
    assert sorted(p.name for p in out.iterdir()) == [
        'cloud.ply', 'depth.pfm', 'disp.pfm', 'disp.png', 'disp_color.png']

    disp = read_pfm(out / 'disp.pfm')
    assert disp.shape == (994, 1482) and disp.dtype == np.float32
    assert np.isfinite(disp).all() and disp.min() >= 0
    valid = disp > 0
    assert valid.mean() > 0.5, 'the biased model should give mostly positive disparity'
    assert 5 < float(np.median(disp[valid])) < 200

    # The tool's disparity is the in-process inference (clamped at 0) at full resolution.
    config, checkpoint = tiny_model
    model = init_model(config, checkpoint)
    direct = inference_stereo(model, str(PAIR / 'im0.png'), str(PAIR / 'im1.png'), iters=2)
    np.testing.assert_allclose(disp, np.maximum(direct, 0), atol=1e-3)

    kitti = cv2.imread(str(out / 'disp.png'), cv2.IMREAD_UNCHANGED)
    assert kitti.dtype == np.uint16 and kitti.shape == (994, 1482)
    expected = np.where(valid, np.clip(np.round(disp.astype(np.float64) * 256), 1, 65535), 0)
    np.testing.assert_array_equal(kitti, expected.astype(np.uint16))

    color = cv2.imread(str(out / 'disp_color.png'), cv2.IMREAD_UNCHANGED)
    assert color.dtype == np.uint8 and color.shape == (994, 1482, 3)
    top = np.unravel_index(np.argmax(disp), disp.shape)
    np.testing.assert_array_equal(color[top][::-1], colormap_lut('turbo')[255])  # BGR file

    depth = read_pfm(out / 'depth.pfm')
    assert depth.shape == (994, 1482)
    np.testing.assert_array_equal(np.isfinite(depth), valid)  # doffs > 0: every d > 0 is valid
    rows, cols = np.nonzero(valid)
    picks = np.linspace(0, len(rows) - 1, 7).astype(int)
    for r, c in zip(rows[picks], cols[picks]):
        assert depth[r, c] == pytest.approx(FOCAL * BASELINE / (disp[r, c] + DOFFS), rel=1e-5)

    header, vertices = _read_ply(out / 'cloud.ply')
    assert header.startswith('ply\nformat binary_little_endian 1.0\n')
    assert f'element vertex {int(valid.sum())}\n' in header
    assert ('property float x\nproperty float y\nproperty float z\nproperty uchar red\n'
            'property uchar green\nproperty uchar blue\n') in header
    assert len(vertices) == valid.sum()
    left = cv2.cvtColor(cv2.imread(str(PAIR / 'im0.png')), cv2.COLOR_BGR2RGB)
    for i in (0, len(vertices) // 2, len(vertices) - 1):  # vertices are in row-major pixel order
        r, c = rows[i], cols[i]
        z = depth[r, c]
        np.testing.assert_allclose([vertices['x'][i], vertices['y'][i], vertices['z'][i]],
                                   [(c - CX) * z / FOCAL, (r - CY) * z / FOCAL, z], rtol=1e-5)
        assert [vertices['red'][i], vertices['green'][i], vertices['blue'][i]] == list(left[r, c])


def test_max_side_rescales_disparity(tiny_model, tmp_path: Path):
    if not PAIR.is_dir():
        pytest.skip(f'shared sample data not found at {PAIR}')
    config, checkpoint = tiny_model
    proc = run_tool('tools/infer.py', 'stereo', config, checkpoint, '--left', PAIR / 'im0.png',
                    '--right', PAIR / 'im1.png', '--focal', '1000', '--baseline', '0.5',
                    '--max-side', '370', '--out-dir', tmp_path)
    assert proc.returncode == 0, proc.stderr
    disp = read_pfm(tmp_path / 'disp.pfm')
    assert disp.shape == (994, 1482)
    # The network saw a 370x248 copy; its disparities are 1482 / 370 times larger at full size.
    left, right = (cv2.cvtColor(cv2.imread(str(PAIR / name)), cv2.COLOR_BGR2RGB)
                   for name in ('im0.png', 'im1.png'))
    small = [cv2.resize(im, (370, 248), interpolation=cv2.INTER_AREA) for im in (left, right)]
    small_disp = inference_stereo(init_model(config, checkpoint), *small)
    assert np.median(disp) == pytest.approx(np.median(np.maximum(small_disp, 0)) * 1482 / 370,
                                            rel=0.02)
    depth = read_pfm(tmp_path / 'depth.pfm')
    r, c = np.unravel_index(np.argmax(disp), disp.shape)
    assert depth[r, c] == pytest.approx(1000 * 0.5 / disp[r, c], rel=1e-5)  # doffs 0


def test_low_memory_gives_the_same_disparity(tiny_model, tmp_path: Path):
    if not PAIR.is_dir():
        pytest.skip(f'shared sample data not found at {PAIR}')
    config, checkpoint = tiny_model
    outputs = []
    for extra in ([], ['--low-memory']):
        out = tmp_path / ('alt' if extra else 'reg')
        proc = run_tool('tools/infer.py', 'stereo', config, checkpoint, '--left',
                        PAIR / 'im0.png', '--right', PAIR / 'im1.png', '--max-side', '400',
                        '--iters', '2', '--out-dir', out, *extra)
        assert proc.returncode == 0, proc.stderr
        outputs.append(read_pfm(out / 'disp.pfm'))
    # On-demand correlation lookups equal the stored volume's (up to float rounding).
    assert np.abs(outputs[0] - outputs[1]).max() < 1e-3
    assert outputs[0].max() > 10


def test_mismatched_sizes_is_a_one_line_error(tiny_model, tmp_path: Path, shared_data):
    config, checkpoint = tiny_model
    right = cv2.imread(str(PAIR / 'im1.png'))[:-10]
    cv2.imwrite(str(tmp_path / 'right.png'), right)
    proc = run_tool('tools/infer.py', 'stereo', config, checkpoint, '--left', PAIR / 'im0.png',
                    '--right', tmp_path / 'right.png', '--out-dir', tmp_path / 'out')
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: stereo pair of different sizes')
    assert '1482x994' in lines[0] and '1482x984' in lines[0]
    assert not (tmp_path / 'out').exists()


def test_api_errors_and_helpers(tiny_model, tmp_path: Path):
    config, checkpoint = tiny_model
    model = init_model(config, checkpoint)
    saved = torch.load(checkpoint, weights_only=True)['state_dict']
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())
    assert not model.training

    # A checkpoint of another shape is refused (strict), not half loaded.
    bad = tmp_path / 'bad.pth'
    torch.save({'state_dict': {k: v for k, v in saved.items() if 'fnet' not in k}}, bad)
    with pytest.raises(CheckpointError, match='missing'):
        init_model(config, bad)

    a = np.zeros((64, 96, 3), np.uint8)
    with pytest.raises(DataError, match='different sizes'):
        inference_stereo(model, a, np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(DataError, match='uint8'):
        inference_stereo(model, a.astype(np.float32), a)
    disp = inference_stereo(model, a, a, iters=1)  # not a multiple of 32: padded and cropped
    assert disp.shape == (64, 96) and disp.dtype == np.float32

    # Hand-computed geometry: f = 100 px, B = 0.5 m, doffs = 2 px.
    d = np.array([[8.0, 0.0], [-1.0, np.inf]])
    depth = disparity_to_depth(d, 100.0, 0.5, doffs=2.0)
    assert depth[0, 0] == pytest.approx(5.0) and np.isinf(depth[[0, 1, 1], [1, 0, 1]]).all()
    colors = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    points, rgb = depth_to_points(np.array([[np.inf, 2.0], [4.0, 0.0]]), 100.0, 0.5, 0.5, colors)
    np.testing.assert_allclose(points, [[0.01, -0.01, 2.0], [-0.02, 0.02, 4.0]], rtol=1e-6)
    np.testing.assert_array_equal(rgb, [[3, 4, 5], [6, 7, 8]])

    write_ply(tmp_path / 'c.ply', points, rgb)
    header, vertices = _read_ply(tmp_path / 'c.ply')
    assert 'element vertex 2\n' in header
    np.testing.assert_array_equal(vertices['z'], [2.0, 4.0])
    np.testing.assert_array_equal(vertices['blue'], [5, 8])
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith('.')] == []
