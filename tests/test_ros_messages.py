"""ROS 2 message <-> NumPy conversions, box messages, frame buffers (perception.ros)."""
from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip('rosbags')

from perception.engine.errors import DataError  # noqa: E402
from perception.ros.live import LatestFrameBuffer, LatestPairBuffer  # noqa: E402
from perception.ros.messages import (  # noqa: E402
    BOX_EDGES,
    array_to_image,
    array_to_pointcloud2,
    box_corners,
    boxes_to_poses,
    camera_info_matrices,
    compressed_image_to_rgb,
    detection3d_array,
    disparity_image,
    header_stamp_ns,
    image_msg_to_rgb,
    image_to_array,
    image_to_rgb,
    label_image,
    make_camera_info,
    make_header,
    marker_array,
    pointcloud2_to_array,
    rgb_to_compressed_image,
)
from perception.ros.pipeline import (  # noqa: E402
    RosInference,
    camera_info_topic,
    stereo_focal_baseline,
)
from perception.ros.typestore import ros_typestore  # noqa: E402
from perception.structures import CameraBoxes3D, LiDARBoxes3D  # noqa: E402

TYPES = ros_typestore().types
HEADER = make_header(1_600_000_000_123_456_789, 'velodyne')


def roundtrip(msg):
    """Serialise to CDR and back, as a bag or a subscriber would."""
    store = ros_typestore()
    return store.deserialize_cdr(store.serialize_cdr(msg, msg.__msgtype__), msg.__msgtype__)


def test_header_stamp():
    assert (HEADER.stamp.sec, HEADER.stamp.nanosec) == (1_600_000_000, 123_456_789)
    assert header_stamp_ns(HEADER) == 1_600_000_000_123_456_789


def test_typestore_has_vision_msgs_humble_layout():
    fields = TYPES['vision_msgs/msg/Detection3D'].__dataclass_fields__
    assert [f for f in fields if f != '__msgtype__'] == ['header', 'results', 'bbox', 'id']
    hyp = TYPES['vision_msgs/msg/ObjectHypothesis'].__dataclass_fields__
    assert 'class_id' in hyp and 'score' in hyp


# ------------------------------------------------------------------------------ PointCloud2
def test_pointcloud2_roundtrip():
    points = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    msg = roundtrip(array_to_pointcloud2(points, HEADER))
    assert (msg.point_step, msg.row_step, msg.width, msg.height) == (16, 800, 50, 1)
    np.testing.assert_array_equal(pointcloud2_to_array(msg, '/cloud'), points)


def _cloud(records: np.ndarray, fields, height: int, row_pad: int, bigendian: bool):
    """A PointCloud2 of structured ``records`` ``(height * width,)`` with padded rows."""
    width = records.size // height
    step = records.dtype.itemsize
    rows = records.view(np.uint8).reshape(height, width * step)
    padded = np.concatenate([rows, np.full((height, row_pad), 0xAB, np.uint8)], axis=1)
    point_field = TYPES['sensor_msgs/msg/PointField']
    return TYPES['sensor_msgs/msg/PointCloud2'](
        header=HEADER, height=height, width=width,
        fields=[point_field(name=n, offset=o, datatype=d, count=c) for n, o, d, c in fields],
        is_bigendian=bigendian, point_step=step, row_step=width * step + row_pad,
        data=padded.reshape(-1), is_dense=False)


def test_pointcloud2_any_layout_big_endian_padded_organised():
    # An Ouster-like layout, big-endian: intensity first, x y z as float64 further on, a uint16
    # ring, 3 bytes of padding per point and 5 per row, 2 rows.
    dtype = np.dtype({'names': ['intensity', 'ring', 'x', 'y', 'z'],
                      'formats': ['>f4', '>u2', '>f8', '>f8', '>f8'],
                      'offsets': [0, 4, 9, 17, 25], 'itemsize': 36})
    records = np.zeros(6, dtype)
    records['x'] = [1, 2, 3, 4, np.nan, 6]
    records['y'] = [10, 20, 30, 40, 50, 60]
    records['z'] = [-1, -2, -3, -4, -5, -6]
    records['intensity'] = [0.5, 0.25, 0, 1, 2, 3]
    records['ring'] = [7, 8, 9, 10, 11, 65535]
    msg = roundtrip(_cloud(records, [('intensity', 0, 7, 1), ('ring', 4, 4, 1), ('x', 9, 8, 1),
                                     ('y', 17, 8, 1), ('z', 25, 8, 1)], 2, 5, True))
    out = pointcloud2_to_array(msg, '/ouster/points', optional=('ring', 'time'))
    # The NaN point is dropped; the columns are x y z intensity ring.
    np.testing.assert_array_equal(out, np.array(
        [[1, 10, -1, 0.5, 7], [2, 20, -2, 0.25, 8], [3, 30, -3, 0, 9], [4, 40, -4, 1, 10],
         [6, 60, -6, 3, 65535]], np.float32))
    assert pointcloud2_to_array(msg, '/t', skip_nans=False).shape == (6, 4)


def test_pointcloud2_unsupported_layouts_name_topic_and_fields():
    dtype = np.dtype({'names': ['x', 'y', 'z'], 'formats': ['<f4'] * 3, 'offsets': [0, 4, 8],
                      'itemsize': 16})
    msg = _cloud(np.zeros(3, dtype), [('x', 0, 7, 1), ('y', 4, 7, 1), ('z', 8, 7, 1)], 1, 0,
                 False)
    with pytest.raises(DataError, match=r"/velo.*no field\(s\) \['intensity'\].*x:f4@0, y:f4@4"):
        pointcloud2_to_array(msg, '/velo')
    vector = _cloud(np.zeros(3, dtype), [('x', 0, 7, 1), ('y', 4, 7, 1), ('z', 8, 7, 1),
                                         ('intensity', 12, 7, 2)], 1, 0, False)
    with pytest.raises(DataError, match=r"/velo.*field 'intensity' must be one scalar"):
        pointcloud2_to_array(vector, '/velo')
    short = _cloud(np.zeros(3, dtype), [('x', 0, 7, 1), ('y', 4, 7, 1), ('z', 8, 7, 1),
                                        ('intensity', 12, 7, 1)], 1, 0, False)
    short.width = 4
    with pytest.raises(DataError, match='/velo: PointCloud2 data has 48 bytes'):
        pointcloud2_to_array(short, '/velo')


# ---------------------------------------------------------------------------------- images
def test_image_encodings_step_and_byte_order():
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    msg = roundtrip(array_to_image(rgb, 'rgb8', HEADER))
    np.testing.assert_array_equal(image_to_rgb(msg, '/cam'), rgb)
    # bgr8 with 2 bytes of row padding: channels reversed, padding cut.
    padded = np.concatenate([rgb[..., ::-1].reshape(2, 9), np.zeros((2, 2), np.uint8)], 1)
    bgr = TYPES['sensor_msgs/msg/Image'](header=HEADER, height=2, width=3, encoding='bgr8',
                                         is_bigendian=0, step=11, data=padded.reshape(-1))
    np.testing.assert_array_equal(image_to_rgb(bgr, '/cam'), rgb)
    mono = array_to_image(rgb[..., 0], 'mono8', HEADER)
    np.testing.assert_array_equal(image_to_rgb(mono, '/cam'), np.repeat(rgb[..., :1], 3, 2))
    depth = np.array([[1, 256], [65535, 4660]], np.uint16)
    big = TYPES['sensor_msgs/msg/Image'](header=HEADER, height=2, width=2, encoding='16UC1',
                                         is_bigendian=1, step=4,
                                         data=np.frombuffer(depth.astype('>u2').tobytes(),
                                                            np.uint8))
    np.testing.assert_array_equal(image_to_array(big, '/depth'), depth)


def test_image_wrong_encoding_is_a_clear_error():
    depth = array_to_image(np.zeros((2, 2), np.float32), '32FC1', HEADER)
    with pytest.raises(DataError, match=r"/cam/image_raw: image encoding '32FC1' cannot be read "
                       r"as a colour image; expected one of \['rgb8', 'bgr8'"):
        image_msg_to_rgb(depth, '/cam/image_raw')
    odd = TYPES['sensor_msgs/msg/Image'](header=HEADER, height=1, width=1, encoding='yuv422',
                                         is_bigendian=0, step=2, data=np.zeros(2, np.uint8))
    with pytest.raises(DataError, match="/cam: unsupported image encoding 'yuv422'"):
        image_to_array(odd, '/cam')


def test_compressed_images():
    rgb = np.random.default_rng(1).integers(0, 255, (8, 12, 3), dtype=np.uint8)
    png = roundtrip(rgb_to_compressed_image(rgb, HEADER, 'png'))
    np.testing.assert_array_equal(image_msg_to_rgb(png, '/c'), rgb)
    smooth = np.broadcast_to(np.arange(12, dtype=np.uint8)[None, :, None] * 20, (8, 12, 3))
    jpeg = rgb_to_compressed_image(np.ascontiguousarray(smooth), HEADER, 'jpeg')
    assert np.abs(compressed_image_to_rgb(jpeg, '/c').astype(int) - smooth).max() < 20
    png.format = 'bgr8; tiff compressed'
    with pytest.raises(DataError, match=r"/c: unsupported CompressedImage format .*tiff"):
        image_msg_to_rgb(png, '/c')
    png.format, png.data = 'png', np.zeros(10, np.uint8)
    with pytest.raises(DataError, match='/c: cannot decode'):
        image_msg_to_rgb(png, '/c')


def test_label_image():
    small = roundtrip(label_image(np.array([[0, 3], [255, 1]]), HEADER))
    assert small.encoding == 'mono8' and small.step == 2
    np.testing.assert_array_equal(image_to_array(small), [[0, 3], [255, 1]])
    large = label_image(np.array([[0, 300]]), HEADER)
    assert large.encoding == '16UC1'
    np.testing.assert_array_equal(image_to_array(large), [[0, 300]])
    with pytest.raises(ValueError, match=r'\[-1, 2\]'):
        label_image(np.array([[-1, 2]]), HEADER)


def test_camera_info_and_stereo_geometry():
    p_left = np.array([[700.0, 0, 320, 0], [0, 700, 240, 0], [0, 0, 1, 0]])
    p_right = p_left.copy()
    p_right[0, 3] = -700 * 0.12  # ROS: Tx = -fx * baseline
    info = roundtrip(make_camera_info(HEADER, 640, 480, p_right))
    k, p = camera_info_matrices(info, '/right/camera_info')
    np.testing.assert_array_equal(p, p_right)
    np.testing.assert_array_equal(k, p_right[:, :3])
    assert stereo_focal_baseline(p_left, p) == pytest.approx((700.0, 0.12))
    # KITTI: both projections relative to camera 0.
    p2, p3 = p_left.copy(), p_left.copy()
    p2[0, 3], p3[0, 3] = 700 * 0.06, -700 * 0.48
    assert stereo_focal_baseline(p2, p3) == pytest.approx((700.0, 0.54))
    info.p = np.zeros(12)
    with pytest.raises(DataError, match='/right/camera_info: CameraInfo has an all-zero'):
        camera_info_matrices(info, '/right/camera_info')
    assert camera_info_topic('/kitti/camera_color_left/image_raw') == (
        '/kitti/camera_color_left/camera_info')
    assert camera_info_topic('/cam/image_raw/compressed') == '/cam/camera_info'


# ----------------------------------------------------------------------------------- boxes
def _sorted_rows(corners: np.ndarray) -> np.ndarray:
    return corners[np.lexsort(corners.T[::-1])]


def test_box_poses_and_corners_match_our_box_structures():
    lidar = np.array([[1.0, 2.0, 3.0, 4.0, 2.0, 1.5, math.pi / 2],
                      [-5.0, 0.5, -1.0, 3.0, 1.0, 2.0, -0.3]])
    centre, quat, size = boxes_to_poses(lidar, 'lidar')
    np.testing.assert_allclose(centre[0], [1, 2, 3.75])
    np.testing.assert_allclose(quat[0], [0, 0, math.sin(math.pi / 4), math.cos(math.pi / 4)])
    np.testing.assert_allclose(size[0], [4, 2, 1.5])
    ours = box_corners(centre, quat, size)
    ref = LiDARBoxes3D(lidar).corners.double().numpy()
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(_sorted_rows(a), _sorted_rows(b), atol=1e-6)
    # Box 0 at yaw 90 degrees: its length runs along +y, so corners span y in 2 +- 2.
    assert ours[0, :, 1].min() == pytest.approx(0) and ours[0, :, 1].max() == pytest.approx(4)

    camera = np.array([[1.0, 1.6, 8.0, 3.7, 1.5, 1.6, 1.9]])
    centre, quat, size = boxes_to_poses(camera, 'camera')
    np.testing.assert_allclose(centre[0], [1, 0.85, 8])
    np.testing.assert_allclose(quat[0], [0, math.sin(0.95), 0, math.cos(0.95)])
    ours = box_corners(centre, quat, size)
    ref = CameraBoxes3D(camera).corners.double().numpy()
    np.testing.assert_allclose(_sorted_rows(ours[0]), _sorted_rows(ref[0]), atol=1e-6)


def test_detection_and_marker_messages():
    boxes = np.array([[10.0, -2.0, -1.5, 4.0, 1.8, 1.6, 0.4, 1.0, 2.0],
                      [20.0, 3.0, -1.0, 0.8, 0.6, 1.7, -2.0, 0.0, 0.0]])  # + velocities
    header = make_header(5 * 10**9, 'velodyne')
    det = roundtrip(detection3d_array(header, boxes, [0.9, 0.3], [0, 1], 'lidar',
                                      ['Car', 'Pedestrian']))
    assert det.header.frame_id == 'velodyne' and len(det.detections) == 2
    second = det.detections[1]
    assert second.results[0].hypothesis.class_id == 'Pedestrian'
    assert second.results[0].hypothesis.score == pytest.approx(0.3)
    assert (second.bbox.center.position.x, second.bbox.center.position.z) == pytest.approx(
        (20.0, -0.15))
    assert (second.bbox.size.x, second.bbox.size.y, second.bbox.size.z) == pytest.approx(
        (0.8, 0.6, 1.7))
    assert second.id == '1' and header_stamp_ns(second.header) == 5 * 10**9

    markers = roundtrip(marker_array(header, boxes, [0, 1], 'lidar')).markers
    marker = TYPES['visualization_msgs/msg/Marker']
    assert [m.action for m in markers] == [marker.DELETEALL, marker.ADD, marker.ADD]
    assert all(m.header.frame_id == 'velodyne' for m in markers)
    assert markers[1].type == marker.LINE_LIST and len(markers[1].points) == 24
    corners = box_corners(*boxes_to_poses(boxes, 'lidar'))
    for i, m in enumerate(markers[1:]):
        points = np.array([[p.x, p.y, p.z] for p in m.points])
        np.testing.assert_allclose(points, corners[i][BOX_EDGES.reshape(-1)], atol=1e-12)
        # Every drawn edge is a length, a width or a height of its box.
        lengths = np.linalg.norm(points[0::2] - points[1::2], axis=1)
        assert np.allclose(np.sort(lengths), np.repeat(np.sort(boxes[i, 3:6]), 4))
    empty = marker_array(header, np.zeros((0, 7)), np.zeros(0), 'lidar')
    assert len(empty.markers) == 1


def test_disparity_image():
    disp = np.array([[1.5, np.nan], [40.0, 2.0]], np.float32)
    msg = roundtrip(disparity_image(disp, make_header(7, 'left'), 700.0, 0.54))
    assert (msg.f, msg.t, msg.min_disparity, msg.max_disparity) == pytest.approx(
        (700.0, 0.54, 1.5, 40.0))
    assert msg.image.encoding == '32FC1' and msg.image.header.frame_id == 'left'
    np.testing.assert_array_equal(image_to_array(msg.image), [[1.5, -1], [40, 2]])


def test_mono3d_boxes_move_into_the_image_optical_frame():
    p = np.array([[700.0, 0, 600, 700 * 0.06], [0, 700, 180, 700 * 0.01], [0, 0, 1, 0.005]])
    box = np.array([[1.0, 1.5, 10.0, 4.0, 1.5, 1.6, 0.0]])

    def fake(model, rgb, cam2img):
        assert rgb.shape == (4, 6, 3)
        np.testing.assert_array_equal(cam2img, p)
        return {'boxes_3d': box, 'scores': np.array([0.8]), 'labels': np.array([0])}

    runner = RosInference('mono3d', model=None, infer=fake, class_names=['Car'])
    image = array_to_image(np.zeros((4, 6, 3), np.uint8), 'rgb8', make_header(9, 'cam_left'))
    info = make_camera_info(make_header(9, 'cam_left'), 6, 4, p)
    (det_topic, det), (marker_topic, _) = runner.mono3d(image, info, '/img', '/info')
    assert (det_topic, marker_topic) == ('/perception/mono3d/detections',
                                         '/perception/mono3d/markers')
    assert det.header.frame_id == 'cam_left'
    pos = det.detections[0].bbox.center.position
    # P = K [I | t]: t = inv(K) @ P[:, 3] = ((42 - 600 * 0.005) / 700, (7 - 180 * 0.005) / 700,
    # 0.005) moves camera-0 points into the camera's own frame; the centre is 0.75 m above the
    # bottom (-y).
    assert (pos.x, pos.y, pos.z) == pytest.approx((1 + 39 / 700, 1.5 + 6.1 / 700 - 0.75, 10.005))


# ---------------------------------------------------------------------------- live buffers
def test_latest_frame_buffer_keeps_only_the_newest():
    buf = LatestFrameBuffer()
    assert buf.take() is None
    for i in range(5):
        buf.put(i)
    assert len(buf) == 1 and buf.take() == 4 and buf.take() is None
    buf.put(5)
    assert buf.take() == 5
    assert (buf.received, buf.dropped, buf.taken) == (6, 4, 2)


def test_latest_pair_buffer_pairs_by_stamp_and_drops_stale():
    buf = LatestPairBuffer(tolerance_ns=5)
    buf.put('left', 100, 'L100')
    assert buf.take() is None                 # no right yet
    buf.put('right', 130, 'R130')
    assert buf.take() is None                 # 30 ns apart: the older left is dropped
    buf.put('left', 128, 'L128')
    assert buf.take() == ('L128', 'R130')
    buf.put('left', 200, 'L200')
    buf.put('left', 300, 'L300')              # replaces an unprocessed left
    assert (buf.dropped, buf.taken) == (2, 1)
    with pytest.raises(ValueError):
        buf.put('middle', 0, None)


def test_live_inference_processes_only_the_newest_frame():
    from perception.ros.live import LiveInference

    calls = []

    def fake(model, rgb, cam2img):
        calls.append(int(rgb[0, 0, 0]))
        return {'boxes_3d': np.array([[0.0, 1.0, 5.0, 2.0, 1.0, 1.0, 0.0]]),
                'scores': np.array([0.5]), 'labels': np.array([2])}

    store = ros_typestore()
    runner = RosInference('mono3d', model=None, infer=fake, ns='/live')
    live = LiveInference(runner, {'image': '/cam/image_raw', 'info': '/cam/camera_info'})
    p = np.array([[100.0, 0, 3, 0], [0, 100, 2, 0], [0, 0, 1, 0]])

    def image(i):
        msg = array_to_image(np.full((4, 6, 3), i, np.uint8), 'rgb8', make_header(i, 'cam'))
        return bytes(store.serialize_cdr(msg, msg.__msgtype__))

    live.on_message('/cam/image_raw', image(1), 'sensor_msgs/msg/Image')
    assert live.step() == [] and live.frames_without_info == 1  # no calibration yet
    info = make_camera_info(make_header(0, 'cam'), 6, 4, p)
    live.on_message('/cam/camera_info', bytes(store.serialize_cdr(info, info.__msgtype__)),
                    'sensor_msgs/msg/CameraInfo')
    for i in (2, 3, 4):  # the model is busy: three frames arrive
        live.on_message('/cam/image_raw', image(i), 'sensor_msgs/msg/Image')
    live.on_message('/other', b'', 'std_msgs/msg/String')  # not subscribed: ignored
    outputs = live.step()
    assert live.step() is None
    assert calls == [4] and (live.frames.received, live.frames.dropped) == (4, 2)
    assert [t for t, _ in outputs] == ['/live/detections', '/live/markers']
    det = store.deserialize_cdr(outputs[0][1], 'vision_msgs/msg/Detection3DArray')
    assert header_stamp_ns(det.header) == 4 and det.header.frame_id == 'cam'
    assert det.detections[0].results[0].hypothesis.class_id == '2'


def test_node_without_rclpy_exits_with_a_clear_message():
    import importlib.util

    if importlib.util.find_spec('rclpy') is not None:
        pytest.skip('rclpy is installed here')
    from .conftest import ROOT, run_tool

    result = run_tool(ROOT / 'tools/ros/node.py', '--task', 'seg', '--config', 'unused.py')
    assert result.returncode == 1
    assert 'ROS 2 is not available here (cannot import rclpy' in result.stderr
    assert 'bag_infer.py' in result.stderr
