"""ROS bags: atomic writing, reading, pairing, make_bag.py and bag_infer.py round trips."""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip('rosbags')

import torch  # noqa: E402

from perception.engine.errors import DataError  # noqa: E402
from perception.ros.bags import (  # noqa: E402
    AtomicBagWriter,
    bag_topics,
    iter_messages,
    match_pairs,
    open_bag,
    read_topic,
)
from perception.ros.messages import (  # noqa: E402
    BOX_EDGES,
    array_to_image,
    array_to_pointcloud2,
    box_corners,
    camera_info_matrices,
    header_stamp_ns,
    image_to_array,
    make_camera_info,
    make_header,
    pointcloud2_to_array,
)
from perception.structures import KittiCalibration  # noqa: E402

from .conftest import ROOT  # noqa: E402

T0 = 1_600_000_000 * 10**9
MONO_CONFIG = ROOT / 'configs/monodetr/monodetr_tiny_demo.py'
STEREO_CONFIG = ROOT / 'configs/raft-stereo/raft-stereo_tiny_demo.py'
SEG_CONFIG = ROOT / 'configs/segformer/segformer_r18_1xb8-300_synthetic-seg-64x128.py'
LIDAR_CONFIG = ROOT / 'configs/flatformer/flatformer_demo.py'
SMALL_CONFIG = ROOT / 'configs/espcn/espcn_x3_synthetic-sr.py'  # any model: bad-input tests


def load_tool(name: str):
    spec = importlib.util.spec_from_file_location(f'ros_{name}', ROOT / 'tools/ros' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bag_infer = load_tool('bag_infer')
make_bag = load_tool('make_bag')


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith('.'))


def marker_points(marker) -> np.ndarray:
    return np.array([[p.x, p.y, p.z] for p in marker.points])


def bbox_corners(detection) -> np.ndarray:
    """Corners of a vision_msgs box from its own pose and size."""
    c, q, s = (detection.bbox.center.position, detection.bbox.center.orientation,
               detection.bbox.size)
    return box_corners(np.array([[c.x, c.y, c.z]]), np.array([[q.x, q.y, q.z, q.w]]),
                       np.array([[s.x, s.y, s.z]]))[0]


def random_checkpoint(config: Path, path: Path) -> Path:
    """Randomly initialised weights (seed 0) saved as a checkpoint."""
    from perception.apis.inference import init_model

    torch.manual_seed(0)
    torch.save({'state_dict': init_model(config).state_dict()}, path)
    return path


# ------------------------------------------------------------------------------ bag library
def test_match_pairs_nearest_one_to_one_within_tolerance():
    left = [100, 200, 300, 400]
    right = [402, 199, 330, 205, 900]
    # 100: nearest 199 (99 > tol); 200 -> 199 (1); 300 -> 330 (30 > tol); 400 -> 402 (2).
    assert match_pairs(left, right, 10) == [(1, 1), (3, 0)]
    # 205 is taken by the closer 200 only once: a second left at 206 stays unpaired -> 205.
    assert match_pairs([200, 206], [205], 10) == [(1, 0)]
    assert match_pairs([], right, 10) == []


def test_atomic_writer_roundtrip_force_and_failure(tmp_path):
    out = tmp_path / 'bag'
    cloud = np.arange(12, dtype=np.float32).reshape(3, 4)
    with AtomicBagWriter(out) as writer:
        for i in range(3):
            writer.write('/points', T0 + i, array_to_pointcloud2(cloud + i,
                                                                 make_header(T0 + i, 'velodyne')))
    assert sorted(p.name for p in out.iterdir()) == ['bag.db3', 'metadata.yaml']
    msgs = read_topic(out, '/points')
    assert [t for t, _ in msgs] == [T0, T0 + 1, T0 + 2]
    np.testing.assert_array_equal(pointcloud2_to_array(msgs[2][1]), cloud + 2)

    with pytest.raises(DataError, match='output exists; pass --force'):
        with AtomicBagWriter(out):
            pass
    with pytest.raises(RuntimeError, match='midway'):
        with AtomicBagWriter(out, force=True) as writer:
            writer.write('/points', T0, array_to_pointcloud2(cloud, make_header(T0, 'v')))
            raise RuntimeError('midway')
    assert len(read_topic(out, '/points')) == 3  # the old bag is untouched
    with AtomicBagWriter(out, storage='mcap', force=True) as writer:
        writer.write('/points', T0 + 5, array_to_pointcloud2(cloud, make_header(T0 + 5, 'v')))
    assert sorted(p.name for p in out.iterdir()) == ['bag.mcap', 'metadata.yaml']
    assert [t for t, _ in read_topic(out / 'bag.mcap', '/points')] == [T0 + 5]
    assert leftovers(tmp_path) == []


def test_reading_errors_name_the_bag_and_topics(tmp_path):
    with pytest.raises(DataError, match='nothing: bag not found'):
        read_topic(tmp_path / 'nothing', '/x')
    out = tmp_path / 'bag'
    with AtomicBagWriter(out) as writer:
        writer.write('/a', T0, array_to_image(np.zeros((2, 2), np.uint8), 'mono8',
                                              make_header(T0, 'cam')))
    with pytest.raises(DataError, match=r"no topic '/b' in the bag; topics in the bag: /a "
                       r'\(sensor_msgs/msg/Image\)'):
        read_topic(out, '/b')
    garbage = tmp_path / 'junk.db3'
    garbage.write_bytes(b'not a database' * 100)
    with pytest.raises(DataError, match='junk.db3: cannot read the bag'):
        read_topic(garbage, '/a')
    truncated = tmp_path / 'cut'
    with AtomicBagWriter(truncated, storage='mcap') as writer:
        writer.write('/a', T0, array_to_image(np.zeros((64, 64), np.uint8), 'mono8',
                                              make_header(T0, 'cam')))
    data = (truncated / 'cut.mcap').read_bytes()
    (truncated / 'cut.mcap').write_bytes(data[:len(data) // 2])
    with pytest.raises(DataError, match='cut.*cannot read the bag'):
        read_topic(truncated, '/a')


# -------------------------------------------------------------------------------- make_bag
def test_make_bag_from_kitti_mini(shared_data, tmp_path, capsys):
    kitti = shared_data / 'kitti_mini'
    out = tmp_path / 'kitti'
    assert make_bag.main([str(out), '--kitti', str(kitti), '--frames', '000007', '000008',
                          '--storage', 'mcap']) == 0
    printed = capsys.readouterr().out
    assert 'frame 000007: no' in printed and 'image_3 not found' in printed
    split = kitti / 'training'
    with open_bag(out) as reader:
        assert {t: c.msgcount for t, c in reader.topics.items()} == {
            '/kitti/velo/pointcloud': 1, '/kitti/camera_color_left/image_raw': 2,
            '/kitti/camera_color_left/camera_info': 2}
        msgs = list(iter_messages(reader, out))
    by_topic: dict[str, list] = {}
    for m in msgs:
        by_topic.setdefault(m.topic, []).append(m)
        assert header_stamp_ns(m.msg.header) == m.timestamp
    # 10 Hz: 000007 at T0, 000008 at T0 + 0.1 s; the cloud only for 000008.
    assert [m.timestamp for m in by_topic['/kitti/camera_color_left/image_raw']] == [
        T0, T0 + 10**8]
    (cloud,) = by_topic['/kitti/velo/pointcloud']
    assert cloud.timestamp == T0 + 10**8 and cloud.msg.header.frame_id == 'velodyne'
    np.testing.assert_array_equal(pointcloud2_to_array(cloud.msg), np.fromfile(
        split / 'velodyne/000008.bin', np.float32).reshape(-1, 4))
    image = by_topic['/kitti/camera_color_left/image_raw'][1].msg
    assert (image.encoding, image.header.frame_id) == ('rgb8', 'camera_color_left')
    import cv2
    np.testing.assert_array_equal(image_to_array(image), cv2.imread(
        str(split / 'image_2/000008.png'))[..., ::-1])
    calib = KittiCalibration.from_file(split / 'calib/000008.txt')
    info = by_topic['/kitti/camera_color_left/camera_info'][1].msg
    k, p = camera_info_matrices(info)
    np.testing.assert_array_equal(p, calib.P2)
    np.testing.assert_array_equal(np.asarray(info.r).reshape(3, 3), calib.R0_rect)
    assert (info.width, info.height) == (image.width, image.height)


def test_make_bag_nuscenes_compressed(shared_data, tmp_path):
    out = tmp_path / 'nus'
    assert make_bag.main([str(out), '--nuscenes', str(shared_data / 'nuscenes_frame'),
                          '--compressed']) == 0
    with open_bag(out) as reader:
        topics = bag_topics(reader)
        assert topics['/LIDAR_TOP'] == 'sensor_msgs/msg/PointCloud2'
        assert topics['/CAM_FRONT/image_raw/compressed'] == 'sensor_msgs/msg/CompressedImage'
        assert len(topics) == 13
        lidar = next(iter_messages(reader, out, ['/LIDAR_TOP']))
    points = pointcloud2_to_array(lidar.msg, '/LIDAR_TOP', optional=('ring',))
    assert points.shape == (34688, 5) and lidar.msg.header.frame_id == 'LIDAR_TOP'
    assert lidar.timestamp == 1532402927647951 * 1000


# ----------------------------------------------------------------------------- bag_infer
def kitti_bag(shared_data: Path, out: Path, frames=('000008',)) -> Path:
    assert make_bag.main([str(out), '--kitti', str(shared_data / 'kitti_mini'),
                          '--frames', *frames]) == 0
    return out


def test_bag_infer_mono3d_on_kitti(shared_data, tmp_path):
    """MonoDETR tiny demo config with random weights (seed 0) and score_thr 0 on frame 8."""
    bag = kitti_bag(shared_data, tmp_path / 'in', ('000008',))
    ckpt = random_checkpoint(MONO_CONFIG, tmp_path / 'mono.pth')
    out = tmp_path / 'out'
    assert bag_infer.main(['--task', 'mono3d', '--in', str(bag), '--out', str(out),
                           '--config', str(MONO_CONFIG), '--checkpoint', str(ckpt),
                           '--cfg-options', 'model.test_cfg.score_thr=0']) == 0
    with open_bag(out) as reader:
        counts = {t: (c.msgtype, c.msgcount) for t, c in reader.topics.items()}
        msgs = {m.topic: m for m in iter_messages(reader, out)}
    assert counts == {
        '/kitti/velo/pointcloud': ('sensor_msgs/msg/PointCloud2', 1),
        '/kitti/camera_color_left/image_raw': ('sensor_msgs/msg/Image', 1),
        '/kitti/camera_color_left/camera_info': ('sensor_msgs/msg/CameraInfo', 1),
        '/perception/mono3d/detections': ('vision_msgs/msg/Detection3DArray', 1),
        '/perception/mono3d/markers': ('visualization_msgs/msg/MarkerArray', 1)}
    image = msgs['/kitti/camera_color_left/image_raw']
    det = msgs['/perception/mono3d/detections']
    markers = msgs['/perception/mono3d/markers'].msg.markers
    assert det.timestamp == image.timestamp == T0
    assert header_stamp_ns(det.msg.header) == header_stamp_ns(image.msg.header)
    assert det.msg.header.frame_id == 'camera_color_left'
    assert len(det.msg.detections) > 0 and len(markers) == len(det.msg.detections) + 1
    # The same numbers as the inference API, moved from camera 0 into camera 2's frame.
    from perception.apis.inference import inference_mono3d, init_model

    calib = KittiCalibration.from_file(shared_data / 'kitti_mini/training/calib/000008.txt')
    model = init_model(bag_infer.load_config(MONO_CONFIG, {'model.test_cfg.score_thr': 0}),
                       ckpt)
    ref = inference_mono3d(model, image_to_array(image.msg), calib.P2)
    offset = np.linalg.solve(calib.P2[:, :3], calib.P2[:, 3])
    assert len(ref['boxes_3d']) == len(det.msg.detections)
    for d, box, score, marker in zip(det.msg.detections, ref['boxes_3d'], ref['scores'],
                                     markers[1:]):
        centre = np.array([d.bbox.center.position.x, d.bbox.center.position.y,
                           d.bbox.center.position.z])
        expected = box[:3] + offset - [0, box[4] / 2, 0]  # bottom -> geometric centre
        np.testing.assert_allclose(centre, expected, atol=1e-5)
        assert centre[2] > 0  # in front of the camera
        assert d.results[0].hypothesis.score == pytest.approx(float(score), abs=1e-6)
        assert d.results[0].hypothesis.class_id in ('Car', 'Pedestrian', 'Cyclist')
        q = d.bbox.center.orientation
        assert (q.x, q.z) == (0, 0) and math.atan2(q.y, q.w) * 2 == pytest.approx(
            float(box[6]), abs=1e-5)
        np.testing.assert_allclose(marker_points(marker), bbox_corners(d)[BOX_EDGES.reshape(-1)],
                                   atol=1e-9)
        assert marker.header.frame_id == 'camera_color_left'


def test_bag_infer_lidar3d_frames_and_stamps(shared_data, tmp_path, monkeypatch):
    """The LiDAR path end to end with a stand-in model (one box around each cloud's points)."""
    import perception.apis.inference as api

    seen = []

    def fake_lidar3d(model, points):
        seen.append(points)
        lo, hi = points[:, :3].min(0), points[:, :3].max(0)
        box = np.array([[*(lo + hi) / 2, *(hi - lo), 0.3]])
        box[0, 2] = lo[2]  # bottom centre
        return {'boxes_3d': box, 'scores': np.array([0.7]), 'labels': np.array([0])}

    monkeypatch.setattr(api, 'init_model', lambda *a, **k: torch.nn.Identity())
    monkeypatch.setattr(api, 'inference_lidar3d', fake_lidar3d)
    bag = kitti_bag(shared_data, tmp_path / 'in', ('000000', '000007', '000008'))
    out = tmp_path / 'out'
    assert bag_infer.main(['--task', 'lidar3d', '--in', str(bag), '--out', str(out),
                           '--config', str(SMALL_CONFIG), '--ns', '/lidar']) == 0
    split = shared_data / 'kitti_mini/training'
    np.testing.assert_array_equal(seen[1], np.fromfile(split / 'velodyne/000008.bin',
                                                       np.float32).reshape(-1, 4))
    dets = read_topic(out, '/lidar/detections')
    markers = read_topic(out, '/lidar/markers')
    assert [t for t, _ in dets] == [T0, T0 + 2 * 10**8] == [t for t, _ in markers]
    for (t, det), (_, arr), cloud in zip(dets, markers, seen):
        assert det.header.frame_id == 'velodyne' and header_stamp_ns(det.header) == t
        (d,) = det.detections
        corners = bbox_corners(d)
        lo, hi = cloud[:, :3].min(0), cloud[:, :3].max(0)
        assert d.bbox.center.position.z == pytest.approx((lo[2] + hi[2]) / 2, abs=1e-5)
        np.testing.assert_allclose(marker_points(arr.markers[1]),
                                   corners[BOX_EDGES.reshape(-1)], atol=1e-9)


def test_bag_infer_lidar3d_flatformer_on_kitti(shared_data, tmp_path):
    """The FlatFormer demo detector (random weights, seed 0, score threshold 0) on frame 8's cloud:
    the bag's detections are the inference API's, in the cloud's frame at its stamp."""
    bag = kitti_bag(shared_data, tmp_path / 'in', ('000008',))
    ckpt = random_checkpoint(LIDAR_CONFIG, tmp_path / 'flatformer.pth')
    out = tmp_path / 'out'
    options = ['--cfg-options', 'model.test_cfg.score_threshold=0']
    assert bag_infer.main(['--task', 'lidar3d', '--in', str(bag), '--out', str(out),
                           '--config', str(LIDAR_CONFIG), '--checkpoint', str(ckpt),
                           *options]) == 0
    with open_bag(out) as reader:
        counts = {t: (c.msgtype, c.msgcount) for t, c in reader.topics.items()}
        msgs = {m.topic: m for m in iter_messages(reader, out)}
    assert counts['/perception/lidar3d/detections'] == ('vision_msgs/msg/Detection3DArray', 1)
    assert counts['/perception/lidar3d/markers'] == ('visualization_msgs/msg/MarkerArray', 1)
    assert counts['/kitti/velo/pointcloud'] == ('sensor_msgs/msg/PointCloud2', 1)
    cloud = msgs['/kitti/velo/pointcloud']
    det = msgs['/perception/lidar3d/detections']
    assert det.timestamp == cloud.timestamp == T0
    assert header_stamp_ns(det.msg.header) == header_stamp_ns(cloud.msg.header)
    assert det.msg.header.frame_id == 'velodyne'

    from perception.apis.inference import inference_lidar3d, init_model

    model = init_model(bag_infer.load_config(LIDAR_CONFIG, {'model.test_cfg.score_threshold': 0}),
                       ckpt)
    points = np.fromfile(shared_data / 'kitti_mini/training/velodyne/000008.bin',
                         np.float32).reshape(-1, 4)
    ref = inference_lidar3d(model, points)
    assert len(ref['boxes_3d']) == len(det.msg.detections) > 0
    low, high = np.array(model.cfg.point_cloud_range[:3]), np.array(model.cfg.point_cloud_range[3:])
    for d, box, score in zip(det.msg.detections, ref['boxes_3d'], ref['scores']):
        centre = np.array([d.bbox.center.position.x, d.bbox.center.position.y,
                           d.bbox.center.position.z])
        expected = box[:3] + [0, 0, box[5] / 2]  # LiDAR bottom centre -> geometric centre
        np.testing.assert_allclose(centre, expected, atol=1e-4)
        # Detections lie in the cloud's (velodyne) frame: inside the model's range there.
        assert (centre[:2] >= low[:2] - 1e-3).all() and (centre[:2] <= high[:2] + 1e-3).all()
        assert d.results[0].hypothesis.score == pytest.approx(float(score), abs=1e-6)
        q = d.bbox.center.orientation
        assert (q.x, q.y) == (0, 0) and math.atan2(q.z, q.w) * 2 == pytest.approx(
            float(box[6]), abs=1e-5)


def _image_header_bag(path: Path, frames: list[tuple[int, np.ndarray, np.ndarray]],
                      p_left: np.ndarray, p_right: np.ndarray, orphan_right: int) -> None:
    with AtomicBagWriter(path) as writer:
        for stamp, left, right in frames:
            for side, img, p in (('left', left, p_left), ('right', right, p_right)):
                t = stamp + (2_000_000 if side == 'right' else 0)  # 2 ms later
                header = make_header(t, f'mb_{side}')
                writer.write(f'/mb/{side}/image_raw', t, array_to_image(img, 'rgb8', header))
                writer.write(f'/mb/{side}/camera_info', t, make_camera_info(
                    header, img.shape[1], img.shape[0], p))
        header = make_header(orphan_right, 'mb_right')
        writer.write('/mb/right/image_raw', orphan_right, array_to_image(
            frames[0][2], 'rgb8', header))


def test_bag_infer_stereo_middlebury(shared_data, tmp_path):
    """RAFT-Stereo tiny demo, random weights, on the Motorcycle pair at 192 x 128."""
    import cv2

    pair = shared_data / 'middlebury_pairs/Motorcycle'
    left, right = (cv2.resize(cv2.imread(str(pair / name))[..., ::-1], (192, 128),
                              interpolation=cv2.INTER_AREA) for name in ('im0.png', 'im1.png'))
    p_left = np.array([[258.0, 0, 96, 0], [0, 258, 64, 0], [0, 0, 1, 0]])
    p_right = p_left.copy()
    p_right[0, 3] = -258 * 0.193
    bag = tmp_path / 'stereo'
    # Two pairs 2 ms apart, and a right image 50 ms after the second with no left partner.
    _image_header_bag(bag, [(T0, left, right), (T0 + 10**8, left, right)], p_left, p_right,
                      T0 + 15 * 10**7)
    ckpt = random_checkpoint(STEREO_CONFIG, tmp_path / 'stereo.pth')
    out = tmp_path / 'out'
    assert bag_infer.main(['--task', 'stereo', '--in', str(bag), '--out', str(out),
                           '--config', str(STEREO_CONFIG), '--checkpoint', str(ckpt),
                           '--topics', '/mb/left/image_raw', '/mb/right/image_raw',
                           '--iters', '2']) == 0
    disps = read_topic(out, '/perception/stereo/disparity')
    assert len(disps) == 2
    from perception.apis.inference import inference_stereo, init_model

    ref = inference_stereo(init_model(STEREO_CONFIG, ckpt), left, right, iters=2)
    for (t, msg), stamp in zip(disps, (T0, T0 + 10**8)):
        assert t == stamp + 2_000_000  # written when the pair is complete
        assert header_stamp_ns(msg.header) == stamp and msg.header.frame_id == 'mb_left'
        assert (msg.f, msg.t) == pytest.approx((258.0, 0.193))
        disp = image_to_array(msg.image)
        assert msg.image.encoding == '32FC1' and disp.shape == (128, 192)
        np.testing.assert_allclose(disp, ref, atol=1e-4)
        assert msg.min_disparity == pytest.approx(max(float(ref.min()), 0.0), abs=1e-4)
        assert msg.max_disparity == pytest.approx(float(ref.max()), abs=1e-4)
    assert len(read_topic(out, '/mb/right/image_raw')) == 3  # every input is copied


def test_bag_infer_segmentation(shared_data, tmp_path):
    import cv2

    image = cv2.resize(cv2.imread(str(shared_data / 'kitti_mini/training/image_2/000008.png')),
                       (160, 48))[..., ::-1]
    bag = tmp_path / 'seg'
    with AtomicBagWriter(bag, storage='mcap') as writer:
        header = make_header(T0, 'cam')
        writer.write('/cam/image_raw', T0, array_to_image(np.ascontiguousarray(image), 'rgb8',
                                                          header))
    ckpt = random_checkpoint(SEG_CONFIG, tmp_path / 'seg.pth')
    out = tmp_path / 'out'
    assert bag_infer.main(['--task', 'seg', '--in', str(bag), '--out', str(out), '--config',
                           str(SEG_CONFIG), '--checkpoint', str(ckpt), '--topics',
                           '/cam/image_raw', '--storage', 'mcap']) == 0
    ((t, msg),) = read_topic(out, '/perception/seg/labels')
    assert t == T0 and msg.header.frame_id == 'cam' and msg.encoding == 'mono8'
    labels = image_to_array(msg)
    from perception.apis.inference import inference_segmentation, init_model

    ref = inference_segmentation(init_model(SEG_CONFIG, ckpt), np.ascontiguousarray(image))
    np.testing.assert_array_equal(labels, ref)
    assert labels.shape == (48, 160) and labels.max() < 5


# ---------------------------------------------------------------------------- bad input
def _fails(args: list[str], capsys, out: Path, *patterns: str) -> str:
    assert bag_infer.main(args) == 1
    err = capsys.readouterr().err
    for pattern in patterns:
        assert pattern in err, err
    assert not out.exists()
    assert leftovers(out.parent) == []
    return err


def test_bag_infer_bad_inputs(tmp_path, capsys):
    common = ['--config', str(SMALL_CONFIG)]
    good = tmp_path / 'good'
    with AtomicBagWriter(good) as writer:
        header = make_header(T0, 'velodyne')
        writer.write('/cloud_xyz', T0, array_to_pointcloud2(np.zeros((4, 3)), header,
                                                            ('x', 'y', 'z')))
        writer.write('/depth', T0, array_to_image(np.zeros((4, 4), np.float32), '32FC1',
                                                  make_header(T0, 'cam')))
    out = tmp_path / 'out'
    # A missing topic: named, with the bag's topics listed.
    _fails(['--task', 'seg', '--in', str(good), '--out', str(out), *common], capsys, out,
           "no topic '/kitti/camera_color_left/image_raw'", '/cloud_xyz (sensor_msgs/msg/'
           'PointCloud2), /depth (sensor_msgs/msg/Image)')
    # A cloud without intensity.
    _fails(['--task', 'lidar3d', '--in', str(good), '--out', str(out), '--topics', '/cloud_xyz',
            *common], capsys, out, '/cloud_xyz: unsupported PointCloud2 layout',
           "no field(s) ['intensity']", 'x:f4@0, y:f4@4, z:f4@8')
    # A depth image where a colour one is expected.
    _fails(['--task', 'seg', '--in', str(good), '--out', str(out), '--topics', '/depth',
            *common], capsys, out, "/depth: image encoding '32FC1'", "expected one of ['rgb8'")
    # A topic of the wrong type.
    _fails(['--task', 'lidar3d', '--in', str(good), '--out', str(out), '--topics', '/depth',
            *common], capsys, out, 'topic /depth has type sensor_msgs/msg/Image')
    # A corrupt bag.
    corrupt = tmp_path / 'corrupt'
    corrupt.mkdir()
    (corrupt / 'metadata.yaml').write_text('rosbag2_bagfile_information: [unclosed')
    _fails(['--task', 'seg', '--in', str(corrupt), '--out', str(out), *common], capsys, out,
           f'{corrupt}: cannot read the bag')
    # An existing output is kept without --force.
    out.mkdir()
    (out / 'keep').write_text('x')
    assert bag_infer.main(['--task', 'seg', '--in', str(good), '--out', str(out),
                           '--topics', '/depth', *common]) == 1
    assert 'output exists; pass --force' in capsys.readouterr().err
    assert (out / 'keep').read_text() == 'x'
