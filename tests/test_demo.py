"""``make demo``'s pipeline on a reduced schedule (``tools/demo.py --quick``): every output it lists
exists and reopens with a reader the demo did not use to write it.

The quick schedule (6 + 4 scenes, 10 iterations) checks the plumbing, not the learning: the
detector's learning is checked by ``tests/test_learning_lidar.py``. Measured: 60 s of wall time on
the loaded 2-core machine, one torch thread.
"""
from __future__ import annotations

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
