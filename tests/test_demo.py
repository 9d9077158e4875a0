"""``make demo``'s pipeline on a reduced schedule (``tools/demo.py --quick``): every output it lists
exists and reopens with a reader the demo did not use to write it.

The quick schedule (6 + 4 scenes, 10 iterations) checks the plumbing, not the learning: the
detector's learning is checked by ``tests/test_learning_lidar.py``. Measured: 60 s of wall time on
the loaded 2-core machine, one torch thread.
"""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from perception.datasets.kitti_format import read_label_file

from .conftest import ROOT


@pytest.mark.slow
def test_demo_quick_writes_valid_outputs(tmp_path):
    mcap_reader = pytest.importorskip('mcap_ros2.reader')
    env = {**os.environ, 'OMP_NUM_THREADS': '1',
           'PYTHONPATH': os.pathsep.join([str(ROOT), os.environ.get('PYTHONPATH', '')])}
    run = subprocess.run([sys.executable, str(ROOT / 'tools/demo.py'), '--quick', '--work-dir',
                          str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = run.stdout

    # The KITTI table (the three difficulties, Car 3D and BEV rows) and the summary.
    assert re.search(r'easy\s+moderate\s+hard', out), out[-3000:]
    assert re.search(r'Car 3D AP40 \(IoU 0\.7\)(\s+\d+\.\d\d){3}', out)
    assert re.search(r'Car BEV AP40 \(IoU 0\.7\)(\s+\d+\.\d\d){3}', out)
    found = re.search(r'KITTI frame 000008: (\d+) detections, (\d+) Cars, (\d+) of the '
                      r"label's (\d+) Cars matched at BEV IoU 0\.5", out)
    assert found, out[-3000:]
    detections, cars, matched, label_cars = map(int, found.groups())
    assert label_cars == 6  # frame 000008's label holds six Cars
    assert matched <= min(cars, label_cars) and cars <= detections
    paths = dict(re.findall(r'^\s+(\w+)\s+(/\S+)$', out, flags=re.M))
    for name in ('bev_png', 'image_png', 'label_txt', 'mcap', 'checkpoint', 'metrics_json'):
        assert name in paths and os.path.isfile(paths[name]), (name, paths)

    # The PNGs decode: the BEV at 0.1 m per pixel over 70.4 m x 80 m, the overlay at the image's
    # size.
    with Image.open(paths['bev_png']) as bev:
        assert bev.size == (800, 704) and bev.mode == 'RGB'
        assert np.asarray(bev).any()
    with Image.open(paths['image_png']) as overlay, \
            Image.open(ROOT / 'data/demo/kitti_000008/training/image_2/000008.png') as image:
        assert overlay.size == image.size
        # Boxes were drawn: the overlay differs from the camera image.
        assert (np.asarray(overlay.convert('RGB')) != np.asarray(image.convert('RGB'))).any()

    # The predictions parse with the project's KITTI reader, with scores, one row per detection
    # seen by the camera (boxes behind it or outside the image are not written).
    annos = read_label_file(paths['label_txt'], with_score=True)
    assert 0 < len(annos['name']) <= detections
    assert (annos['name'] == 'Car').sum() <= cars
    assert set(annos['name']) <= {'Car', 'Pedestrian', 'Cyclist'}
    assert ((annos['score'] > 0) & (annos['score'] <= 1)).all()

    # The MCAP bag reopens with the independent mcap-ros2 reader: the point cloud of the frame and
    # one Detection3DArray + MarkerArray with as many detections as the demo counted (markers: one
    # DELETEALL, then one per box).
    counts: Counter = Counter()
    sizes = {}
    for message in mcap_reader.read_ros2_messages(paths['mcap']):
        counts[message.schema.name] += 1
        msg = message.ros_msg
        if message.schema.name == 'sensor_msgs/msg/PointCloud2':
            sizes['points'] = msg.width * msg.height
        elif message.schema.name == 'vision_msgs/msg/Detection3DArray':
            sizes['detections'] = len(msg.detections)
        elif message.schema.name == 'visualization_msgs/msg/MarkerArray':
            sizes['markers'] = len(msg.markers)
    assert counts['sensor_msgs/msg/PointCloud2'] == 1
    assert counts['vision_msgs/msg/Detection3DArray'] == 1
    assert counts['visualization_msgs/msg/MarkerArray'] == 1
    points = np.fromfile(ROOT / 'data/demo/kitti_000008/training/velodyne/000008.bin', np.float32)
    assert sizes == {'points': points.size // 4, 'detections': detections,
                     'markers': detections + 1}


# ----------------------------------------------------------------------------- other tasks
MMENGINE_DUMPS = ('System environment:', 'Hooks will be executed')


def _run_demo(task: str, work_dir) -> tuple[str, dict[str, str]]:
    """``tools/demo.py --task TASK --quick``; returns the console and the summary's outputs."""
    env = {**os.environ, 'OMP_NUM_THREADS': '1',
           'PYTHONPATH': os.pathsep.join([str(ROOT), os.environ.get('PYTHONPATH', '')])}
    run = subprocess.run([sys.executable, str(ROOT / 'tools/demo.py'), '--task', task, '--quick',
                          '--work-dir', str(work_dir)], cwd=ROOT, env=env, capture_output=True,
                         text=True)
    console = run.stdout + run.stderr
    assert run.returncode == 0, console[-3000:]
    # mmengine's environment dump and hook table go to the log file, not the console.
    for dump in MMENGINE_DUMPS:
        assert dump not in console, dump
    assert re.search(r'^done in \d+ s$', run.stdout, flags=re.M), run.stdout[-3000:]
    summary = run.stdout[run.stdout.index('[demo] summary'):]
    paths = dict(re.findall(r'^\s+(\w+)\s+(/\S+)$', summary, flags=re.M))
    for name, path in paths.items():
        assert os.path.isfile(path), (name, path)
    return run.stdout, paths


def _read_pfm(path) -> np.ndarray:
    """A PFM reader written from the format's definition (header 'Pf' / 'PF', 'W H', scale whose
    sign gives the byte order; rows stored bottom to top)."""
    raw = open(path, 'rb').read()
    magic, size, scale, data = raw.split(b'\n', 3)
    assert magic == b'Pf'
    width, height = map(int, size.split())
    dtype = '<f4' if float(scale) < 0 else '>f4'
    return np.frombuffer(data, dtype=dtype, count=width * height).reshape(height, width)[::-1]


@pytest.mark.slow
def test_demo_mono3d_quick(tmp_path):
    """MonoDETR's demo on its reduced schedule (8 + 4 synthetic frames, one epoch): the KITTI
    table, the real frame's overlay / BEV PNGs and label file. Measured: 43 s of wall time on the
    loaded 2-core machine, one torch thread."""
    out, paths = _run_demo('mono3d', tmp_path)
    assert re.search(r'easy\s+moderate\s+hard', out), out[-3000:]
    for row in ('Car 2D AP40 \\(IoU 0\\.7\\)', 'Car 3D AP40 \\(IoU 0\\.5\\)'):
        assert re.search(row + r'(\s+\d+\.\d\d){3}', out), row
    found = re.search(r"KITTI frame 000008: (\d+) detections, (\d+) Cars; of the label's (\d+) "
                      r'Cars (\d+) matched at 3D IoU 0\.5, (\d+) at BEV IoU 0\.5', out)
    assert found, out[-3000:]
    detections, cars, label_cars, matched_3d, matched_bev = map(int, found.groups())
    assert label_cars == 6 and cars <= detections
    # A 3D match at IoU 0.5 implies a BEV overlap at least as large.
    assert matched_3d <= matched_bev <= min(cars, label_cars)

    image = ROOT / 'data/demo/kitti_000008/training/image_2/000008.png'
    with Image.open(paths['image_png']) as overlay, Image.open(image) as camera:
        assert overlay.size == camera.size
        # The label's boxes (green) are drawn whatever the detector found.
        assert (np.asarray(overlay.convert('RGB')) != np.asarray(camera.convert('RGB'))).any()
    with Image.open(paths['bev_png']) as bev:
        assert bev.size == (800, 704) and np.asarray(bev).any()
    annos = read_label_file(paths['label_txt'], with_score=True)
    assert len(annos['name']) <= detections
    assert set(annos['name']) <= {'Car'}
    assert ((annos['score'] > 0) & (annos['score'] <= 1)).all()


@pytest.mark.slow
def test_demo_stereo_quick(tmp_path):
    """RAFT-Stereo's demo on its reduced schedule (6 steps): EPE / D1 printed, and the outputs of
    ``tools/infer.py stereo`` on the shipped Middlebury pair reopened with independent readers
    (PIL, a PFM reader and a PLY parser written here). Measured: 43 s of wall time on the loaded
    2-core machine, one torch thread."""
    out, paths = _run_demo('stereo', tmp_path)
    found = re.search(r'held-out generated pairs: EPE (\d+\.\d+) px, D1-all (\d+\.\d+) %', out)
    assert found, out[-3000:]
    assert float(found[1]) > 0 and 0 <= float(found[2]) <= 100
    found = re.search(r'left-right consistency (\d+\.\d) % of (\d+) pixels', out)
    assert found and 0 <= float(found[1]) <= 100 and 0 < int(found[2]) <= 370 * 248

    pair = ROOT / 'data/demo/middlebury_motorcycle'
    with Image.open(pair / 'im0.png') as im0:
        left = np.asarray(im0.convert('RGB'))
    assert left.shape == (248, 370, 3)
    with Image.open(paths['disp_color_png']) as color:
        assert color.size == (370, 248) and color.mode == 'RGB'
    disp = _read_pfm(paths['disp_pfm'])
    assert disp.shape == (248, 370) and disp.min() >= 0
    with Image.open(paths['disp_png']) as kitti:  # KITTI 16-bit: round(d * 256) >= 1, 0 = invalid
        kitti_disp = np.asarray(kitti, dtype=np.float64) / 256
    np.testing.assert_allclose(kitti_disp[disp > 0], disp[disp > 0], atol=1 / 256 + 1e-6)

    # Depth from Middlebury's calibration (scaled to 1/8, see the pair's README):
    # Z = f * B / (d + doffs), millimetres.
    depth = _read_pfm(paths['depth_pfm'])
    valid = disp > 0
    np.testing.assert_array_equal(np.isfinite(depth), valid)
    np.testing.assert_allclose(depth[valid], 497.489 * 193.001 / (disp[valid] + 15.543),
                               rtol=1e-5)

    # The PLY: header, one vertex per valid pixel (row-major), z = depth, colours = left image.
    raw = open(paths['cloud_ply'], 'rb').read()
    end = raw.index(b'end_header\n') + len(b'end_header\n')
    header = raw[:end].decode('ascii').splitlines()
    assert header[:2] == ['ply', 'format binary_little_endian 1.0']
    count = int(next(line.split()[2] for line in header if line.startswith('element vertex')))
    assert count == int(valid.sum()) > 0
    vertex = np.frombuffer(raw, offset=end, dtype=[('x', '<f4'), ('y', '<f4'), ('z', '<f4'),
                                                   ('r', 'u1'), ('g', 'u1'), ('b', 'u1')])
    assert len(vertex) == count
    np.testing.assert_array_equal(vertex['z'], depth[valid])
    np.testing.assert_array_equal(np.stack([vertex['r'], vertex['g'], vertex['b']], 1),
                                  left[valid])


@pytest.mark.slow
def test_demo_seg_quick(tmp_path):
    """SegFormer's demo on its reduced schedule (16 synthetic images, 6 steps): mIoU printed and
    the real KITTI image's overlay decoded with PIL. Measured: 29 s of wall time on the loaded
    2-core machine, one torch thread."""
    out, paths = _run_demo('seg', tmp_path)
    found = re.search(r'held-out synthetic images: mIoU (\d+\.\d\d)', out)
    assert found and 0 <= float(found[1]) <= 100, out[-3000:]
    shares = re.search(r'KITTI frame 000008 \(1242x375\): pixels per class: (.*)$', out,
                       flags=re.M)
    assert shares, out[-3000:]
    percent = [float(v) for v in re.findall(r'(\d+\.\d) %', shares[1])]
    assert len(percent) == 5 and abs(sum(percent) - 100) < 0.3
    image = ROOT / 'data/demo/kitti_000008/training/image_2/000008.png'
    with Image.open(paths['overlay_png']) as overlay, Image.open(image) as camera:
        assert overlay.size == camera.size and overlay.mode == 'RGB'
        assert (np.asarray(overlay) != np.asarray(camera.convert('RGB'))).any()


def _load_demo_module():
    spec = importlib.util.spec_from_file_location('perception_demo', ROOT / 'tools/demo.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_console_has_no_mmengine_dump(tmp_path, capfd):
    """A demo step (``run_tool``: ``tools/test.py`` as a subprocess, as every task runs it) on an
    untrained ESPCN and two generated images: mmengine's environment dump and hook table reach
    the log file in the work dir, not the console. Measured: 22 s of wall time on the loaded
    2-core machine (one subprocess start of torch + mmengine is most of it)."""
    import torch

    from perception.apis import init_model

    demo = _load_demo_module()
    checkpoint = tmp_path / 'espcn_untrained.pth'
    torch.save({'state_dict': init_model(demo.SR_CONFIG).state_dict()}, checkpoint)
    metrics_file = tmp_path / 'metrics.json'
    demo.run_tool([sys.executable, 'tools/test.py', demo.SR_CONFIG, checkpoint, '--work-dir',
                   tmp_path / 'test', '--out', metrics_file, '--cfg-options',
                   'test_dataloader.dataset.num_images=2'], 'evaluating an untrained ESPCN')
    console = capfd.readouterr()
    console = console.out + console.err
    assert 'evaluating an untrained ESPCN' in console  # the demo's own lines do reach it
    assert 'sr/PSNR' in metrics_file.read_text()
    logs = ''.join(p.read_text() for p in (tmp_path / 'test').glob('*/*.log'))
    for dump in MMENGINE_DUMPS:
        assert dump not in console, dump
        assert dump in logs, dump
