"""Pure conversions between ROS 2 messages (``rosbags`` dataclasses) and NumPy arrays.

Nothing here needs ROS 2 itself: messages are the dataclasses of :func:`ros_typestore`, so the
same functions serve bag files (``perception.ros.bags``) and a live node (``tools/ros/node.py``).
Every reader takes the ``topic`` the message came from, so a bad message is reported by topic,
field and what was expected (``DataError``).

Box messages: a ``vision_msgs/BoundingBox3D`` has its pose at the box's *geometric* centre and
``size`` along the box's own x, y, z axes. Our boxes (``docs/conventions.md``) have the bottom
centre: LiDAR ``[x, y, z, l, w, h, yaw]`` (centre ``z + h/2``, rotation ``yaw`` about +z, size
``(l, w, h)``) and camera ``[x, y, z, l, h, w, ry]`` (centre ``y - h/2`` since +y points down,
rotation ``ry`` about +y, size ``(l, h, w)``).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..engine.errors import DataError
from .typestore import ros_typestore

__all__ = [
    'COLOR_ENCODINGS', 'IMAGE_ENCODINGS', 'POINTFIELD_DTYPES', 'array_to_image',
    'array_to_pointcloud2', 'box_corners', 'boxes_to_poses', 'camera_info_matrices',
    'compressed_image_to_rgb', 'detection3d_array', 'disparity_image', 'header_stamp_ns',
    'image_msg_to_rgb', 'image_to_array', 'image_to_rgb', 'label_image', 'make_camera_info',
    'make_header', 'marker_array', 'pointcloud2_to_array', 'rgb_to_compressed_image',
    'BOX_EDGES',
]

# sensor_msgs/PointField datatype -> NumPy type code (without byte order).
POINTFIELD_DTYPES = {1: 'i1', 2: 'u1', 3: 'i2', 4: 'u2', 5: 'i4', 6: 'u4', 7: 'f4', 8: 'f8'}
# sensor_msgs/image_encodings -> (NumPy type code, channels).
IMAGE_ENCODINGS = {
    'rgb8': ('u1', 3), 'bgr8': ('u1', 3), 'rgba8': ('u1', 4), 'bgra8': ('u1', 4),
    'mono8': ('u1', 1), 'mono16': ('u2', 1), '8UC1': ('u1', 1), '8UC3': ('u1', 3),
    '16UC1': ('u2', 1), '16SC1': ('i2', 1), '32SC1': ('i4', 1), '32FC1': ('f4', 1),
    '64FC1': ('f8', 1),
}
# Encodings that image_to_rgb turns into RGB.
COLOR_ENCODINGS = ('rgb8', 'bgr8', 'rgba8', 'bgra8', 'mono8')
COMPRESSED_FORMATS = ('jpeg', 'png')


def _types():
    return ros_typestore().types


def make_header(stamp_ns: int, frame_id: str):
    """``std_msgs/Header`` for a time in integer nanoseconds since the epoch."""
    types = _types()
    stamp = types['builtin_interfaces/msg/Time'](sec=int(stamp_ns) // 10**9,
                                                 nanosec=int(stamp_ns) % 10**9)
    return types['std_msgs/msg/Header'](stamp=stamp, frame_id=frame_id)


def header_stamp_ns(header) -> int:
    """A header's stamp in integer nanoseconds."""
    return int(header.stamp.sec) * 10**9 + int(header.stamp.nanosec)


# --------------------------------------------------------------------------------- PointCloud2
def _describe_fields(msg) -> str:
    return ', '.join(f'{f.name}:{POINTFIELD_DTYPES.get(f.datatype, f"type{f.datatype}")}'
                     f'@{f.offset}' + (f'x{f.count}' if f.count != 1 else '') for f in msg.fields)


def pointcloud2_to_array(msg, topic: str = '<message>',
                         fields: Sequence[str] = ('x', 'y', 'z', 'intensity'),
                         optional: Sequence[str] = (), skip_nans: bool = True) -> np.ndarray:
    """Read named fields of a ``sensor_msgs/PointCloud2`` as ``(P, C)`` float32.

    Field order, offsets, padding, ``point_step``, ``row_step`` and ``is_bigendian`` are taken from
    the message, so any layout of scalar fields works (Velodyne, Ouster, Livox drivers...).

    Args:
        msg: the PointCloud2.
        topic: for error messages.
        fields: names that must be present, in the column order wanted.
        optional: names appended as further columns when present (e.g. ``('ring', 'time')``).
        skip_nans: drop points whose x, y or z is not finite (organised clouds mark missing
            returns with NaN).

    Returns:
        ``(P, C)`` float32, ``C = len(fields) +`` the optional fields found.

    Raises:
        DataError: a required field is missing, or a field is not a single scalar of a known
            datatype inside ``point_step``, or the data is shorter than the header says.
    """
    by_name = {f.name: f for f in msg.fields}
    names = list(fields) + [n for n in optional if n in by_name]
    missing = [n for n in fields if n not in by_name]
    layout = f'fields found: [{_describe_fields(msg)}], point_step {msg.point_step}'
    if missing:
        raise DataError(f'{topic}: unsupported PointCloud2 layout: no field(s) {missing}; need '
                        f'{list(fields)}; {layout}')
    order = '>' if msg.is_bigendian else '<'
    formats, offsets = [], []
    for name in names:
        field = by_name[name]
        code = POINTFIELD_DTYPES.get(field.datatype)
        if code is None or field.count != 1 or (
                field.offset + np.dtype(code).itemsize > msg.point_step):
            raise DataError(f'{topic}: unsupported PointCloud2 layout: field {name!r} must be one '
                            f'scalar of datatype 1-8 within point_step; {layout}')
        formats.append(order + code)
        offsets.append(field.offset)
    height, width, step, row_step = (int(msg.height), int(msg.width), int(msg.point_step),
                                     int(msg.row_step))
    data = np.frombuffer(memoryview(msg.data).cast('B'), dtype=np.uint8)
    if row_step < width * step or data.size < height * row_step:
        raise DataError(f'{topic}: PointCloud2 data has {data.size} bytes, row_step {row_step}; '
                        f'{height} rows x {width} points x point_step {step} do not fit')
    dtype = np.dtype({'names': names, 'formats': formats, 'offsets': offsets, 'itemsize': step})
    # Rows may carry padding beyond width * point_step: cut it before viewing as records.
    rows = data[:height * row_step].reshape(height, row_step)[:, :width * step]
    records = np.ascontiguousarray(rows).view(dtype).reshape(-1)
    out = np.empty((records.size, len(names)), dtype=np.float32)
    for column, name in enumerate(names):
        out[:, column] = records[name]
    if skip_nans and all(n in names for n in 'xyz'):
        xyz = [names.index(n) for n in 'xyz']
        out = out[np.isfinite(out[:, xyz]).all(axis=1)]
    return out


def array_to_pointcloud2(points: np.ndarray, header,
                         fields: Sequence[str] = ('x', 'y', 'z', 'intensity')):
    """``(P, C)`` array -> unorganised little-endian float32 ``sensor_msgs/PointCloud2``."""
    points = np.asarray(points, dtype=np.float32)
    if points.ndim != 2 or points.shape[1] != len(fields):
        raise ValueError(f'points must be (P, {len(fields)}) for fields {list(fields)}, got '
                         f'{points.shape}')
    types = _types()
    point_field = types['sensor_msgs/msg/PointField']
    msg_fields = [point_field(name=name, offset=4 * i, datatype=7, count=1)
                  for i, name in enumerate(fields)]
    data = np.frombuffer(np.ascontiguousarray(points, dtype='<f4').tobytes(), dtype=np.uint8)
    return types['sensor_msgs/msg/PointCloud2'](
        header=header, height=1, width=len(points), fields=msg_fields, is_bigendian=False,
        point_step=4 * len(fields), row_step=4 * len(fields) * len(points), data=data,
        is_dense=bool(np.isfinite(points).all()))


# ------------------------------------------------------------------------------------- images
def image_to_array(msg, topic: str = '<message>') -> np.ndarray:
    """A ``sensor_msgs/Image`` as stored: ``(H, W)`` or ``(H, W, C)``, native byte order.

    Rows may be padded (``step > width * pixel size``); multi-byte pixels follow
    ``is_bigendian``. Channel order is the encoding's (``bgr8`` stays BGR).
    """
    if msg.encoding not in IMAGE_ENCODINGS:
        raise DataError(f'{topic}: unsupported image encoding {msg.encoding!r}; expected one of '
                        f'{sorted(IMAGE_ENCODINGS)}')
    code, channels = IMAGE_ENCODINGS[msg.encoding]
    dtype = np.dtype(('>' if msg.is_bigendian else '<') + code)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    row_bytes = width * channels * dtype.itemsize
    data = np.frombuffer(memoryview(msg.data).cast('B'), dtype=np.uint8)
    if step < row_bytes or data.size < height * step:
        raise DataError(f'{topic}: {msg.encoding} image of {width}x{height} needs step >= '
                        f'{row_bytes} and {height} x step bytes; got step {step}, {data.size} '
                        'bytes')
    rows = np.ascontiguousarray(data[:height * step].reshape(height, step)[:, :row_bytes])
    image = rows.view(dtype).reshape((height, width, channels) if channels > 1
                                     else (height, width))
    return image.astype(dtype.newbyteorder('='), copy=False)


def image_to_rgb(msg, topic: str = '<message>') -> np.ndarray:
    """A colour or mono8 ``sensor_msgs/Image`` -> ``(H, W, 3)`` uint8 RGB.

    Raises:
        DataError: any other encoding (depth or disparity images, 16-bit...).
    """
    if msg.encoding not in COLOR_ENCODINGS:
        raise DataError(f'{topic}: image encoding {msg.encoding!r} cannot be read as a colour '
                        f'image; expected one of {list(COLOR_ENCODINGS)}')
    image = image_to_array(msg, topic)
    if msg.encoding == 'mono8':
        return np.repeat(image[..., None], 3, axis=2)
    if msg.encoding.startswith('bgr'):
        image = image[..., 2::-1]
    return np.ascontiguousarray(image[..., :3])


def compressed_image_to_rgb(msg, topic: str = '<message>') -> np.ndarray:
    """A jpeg / png ``sensor_msgs/CompressedImage`` -> ``(H, W, 3)`` uint8 RGB.

    ``format`` may be a bare ``jpeg`` / ``png`` or image_transport's ``"bgr8; jpeg compressed
    bgr8"``; the payload is a standard file either way.
    """
    import cv2  # only needed for compressed images

    fmt = str(msg.format).lower()
    if not any(name in fmt for name in (*COMPRESSED_FORMATS, 'jpg')):
        raise DataError(f'{topic}: unsupported CompressedImage format {msg.format!r}; expected '
                        f'one of {list(COMPRESSED_FORMATS)}')
    data = np.frombuffer(memoryview(msg.data).cast('B'), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        raise DataError(f'{topic}: cannot decode the {msg.format!r} CompressedImage '
                        f'({data.size} bytes)')
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def image_msg_to_rgb(msg, topic: str = '<message>') -> np.ndarray:
    """``sensor_msgs/Image`` or ``CompressedImage`` -> ``(H, W, 3)`` uint8 RGB."""
    if msg.__msgtype__ == 'sensor_msgs/msg/CompressedImage':
        return compressed_image_to_rgb(msg, topic)
    if msg.__msgtype__ == 'sensor_msgs/msg/Image':
        return image_to_rgb(msg, topic)
    raise DataError(f'{topic}: expected sensor_msgs/msg/Image or CompressedImage, got '
                    f'{msg.__msgtype__}')


def array_to_image(array: np.ndarray, encoding: str, header):
    """``(H, W)`` / ``(H, W, C)`` array -> ``sensor_msgs/Image`` (little-endian, unpadded)."""
    if encoding not in IMAGE_ENCODINGS:
        raise ValueError(f'unknown encoding {encoding!r}; known: {sorted(IMAGE_ENCODINGS)}')
    code, channels = IMAGE_ENCODINGS[encoding]
    array = np.asarray(array)
    expected = array.shape[:2] + ((channels,) if channels > 1 else ())
    if array.ndim not in (2, 3) or array.shape != expected:
        raise ValueError(f'{encoding} image must have shape (H, W) + {expected[2:]}, got '
                         f'{array.shape}')
    little = np.ascontiguousarray(array, dtype='<' + code)
    height, width = array.shape[:2]
    return _types()['sensor_msgs/msg/Image'](
        header=header, height=height, width=width, encoding=encoding, is_bigendian=0,
        step=width * channels * little.dtype.itemsize,
        data=np.frombuffer(little.tobytes(), dtype=np.uint8))


def rgb_to_compressed_image(rgb: np.ndarray, header, fmt: str = 'png'):
    """``(H, W, 3)`` uint8 RGB -> ``sensor_msgs/CompressedImage`` (``png`` or ``jpeg``)."""
    import cv2

    if fmt not in COMPRESSED_FORMATS:
        raise ValueError(f'format must be one of {COMPRESSED_FORMATS}, got {fmt!r}')
    ok, encoded = cv2.imencode('.png' if fmt == 'png' else '.jpg',
                               cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f'OpenCV could not encode the image as {fmt}')
    return _types()['sensor_msgs/msg/CompressedImage'](header=header, format=fmt,
                                                       data=encoded.reshape(-1))


def label_image(labels: np.ndarray, header):
    """``(H, W)`` integer label map -> ``mono8`` Image (labels <= 255) or ``16UC1``.

    Raises:
        ValueError: negative labels or labels above 65535.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f'label map must be (H, W), got {labels.shape}')
    low, high = (int(labels.min()), int(labels.max())) if labels.size else (0, 0)
    if low < 0 or high > 65535:
        raise ValueError(f'labels must lie in [0, 65535] for an image, got [{low}, {high}]')
    return array_to_image(labels, 'mono8' if high <= 255 else '16UC1', header)


# -------------------------------------------------------------------------------- calibration
def camera_info_matrices(msg, topic: str = '<message>') -> tuple[np.ndarray, np.ndarray]:
    """``K`` ``(3, 3)`` and ``P`` ``(3, 4)`` float64 of a ``sensor_msgs/CameraInfo``.

    Raises:
        DataError: an uncalibrated camera (``P`` all zero, as ROS drivers publish it).
    """
    k = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
    p = np.asarray(msg.p, dtype=np.float64).reshape(3, 4)
    if not p[:, :3].any():
        raise DataError(f'{topic}: CameraInfo has an all-zero projection matrix P (uncalibrated '
                        'camera); a calibrated P (3x4, row-major) is needed')
    return k, p


def make_camera_info(header, width: int, height: int, p: np.ndarray, k: np.ndarray | None = None,
                     r: np.ndarray | None = None, d: Sequence[float] = (),
                     distortion_model: str = 'plumb_bob'):
    """``sensor_msgs/CameraInfo`` from ``P`` ``(3, 4)``; ``K`` defaults to ``P[:, :3]``."""
    p = np.asarray(p, dtype=np.float64).reshape(3, 4)
    k = p[:, :3] if k is None else np.asarray(k, dtype=np.float64).reshape(3, 3)
    r = np.eye(3) if r is None else np.asarray(r, dtype=np.float64).reshape(3, 3)
    types = _types()
    roi = types['sensor_msgs/msg/RegionOfInterest'](x_offset=0, y_offset=0, height=0, width=0,
                                                    do_rectify=False)
    return types['sensor_msgs/msg/CameraInfo'](
        header=header, height=int(height), width=int(width), distortion_model=distortion_model,
        d=np.asarray(d, dtype=np.float64), k=k.reshape(-1), r=r.reshape(-1), p=p.reshape(-1),
        binning_x=0, binning_y=0, roi=roi)


# -------------------------------------------------------------------------------------- boxes
# The 12 edges of a box over the corners of box_corners (indices into its 8 corners).
# Corners joined by an edge differ in exactly one sign: the faces at local x = -l/2 and +l/2,
# then the four edges between them.
BOX_EDGES = np.array([[0, 1], [1, 3], [3, 2], [2, 0],
                      [4, 5], [5, 7], [7, 6], [6, 4],
                      [0, 4], [1, 5], [2, 6], [3, 7]])
# Corner i has local coordinates (sx, sy, sz) * size / 2 with the signs of i's bits (x: bit 2).
_CORNER_SIGNS = np.array([[(i >> 2) & 1, (i >> 1) & 1, i & 1] for i in range(8)]) * 2.0 - 1


def boxes_to_poses(boxes: np.ndarray, box_frame: str) -> tuple[np.ndarray, np.ndarray,
                                                                  np.ndarray]:
    """Our bottom-centre boxes -> geometric centres, quaternions and sizes (vision_msgs).

    Args:
        boxes: ``(N, >=7)``: LiDAR ``[x, y, z, l, w, h, yaw, ...]`` (``box_frame='lidar'``) or
            camera ``[x, y, z, l, h, w, ry, ...]`` (``'camera'``); extra columns are ignored.

    Returns:
        centres ``(N, 3)``, quaternions ``(N, 4)`` as ``(x, y, z, w)``, sizes ``(N, 3)`` along
        the box's local x, y, z axes; float64.
    """
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] < 7:
        raise ValueError(f'boxes must be (N, >=7), got {boxes.shape}')
    centre = boxes[:, :3].copy()
    half = boxes[:, 6] / 2
    quat = np.zeros((len(boxes), 4))
    quat[:, 3] = np.cos(half)
    if box_frame == 'lidar':
        centre[:, 2] += boxes[:, 5] / 2  # bottom -> geometric centre, +z up
        quat[:, 2] = np.sin(half)        # yaw about +z
    elif box_frame == 'camera':
        centre[:, 1] -= boxes[:, 4] / 2  # +y points down
        quat[:, 1] = np.sin(half)        # ry about +y
    else:
        raise ValueError(f"box_frame must be 'lidar' or 'camera', got {box_frame!r}")
    return centre, quat, boxes[:, 3:6].copy()


def _quat_to_matrix(quat: np.ndarray) -> np.ndarray:
    """``(N, 4)`` unit quaternions ``(x, y, z, w)`` -> ``(N, 3, 3)`` rotation matrices."""
    x, y, z, w = quat.T
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
    ], axis=1)


def box_corners(centre: np.ndarray, quat: np.ndarray, size: np.ndarray) -> np.ndarray:
    """``(N, 8, 3)`` corners of oriented boxes (corner ``i``: signs of bits 2, 1, 0 of ``i``)."""
    local = _CORNER_SIGNS[None] * np.asarray(size)[:, None, :] / 2  # (N, 8, 3)
    return np.einsum('nij,nkj->nki', _quat_to_matrix(np.asarray(quat)), local) + centre[:, None]


def _pose(types, centre: np.ndarray, quat: np.ndarray):
    return types['geometry_msgs/msg/Pose'](
        position=types['geometry_msgs/msg/Point'](x=float(centre[0]), y=float(centre[1]),
                                                  z=float(centre[2])),
        orientation=types['geometry_msgs/msg/Quaternion'](
            x=float(quat[0]), y=float(quat[1]), z=float(quat[2]), w=float(quat[3])))


def _class_id(label: int, class_names: Sequence[str] | None) -> str:
    if class_names is not None and 0 <= label < len(class_names):
        return str(class_names[label])
    return str(label)


def detection3d_array(header, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray,
                      box_frame: str, class_names: Sequence[str] | None = None):
    """``vision_msgs/Detection3DArray`` of ``N`` boxes in ``header.frame_id``.

    Each detection has one hypothesis (``class_id`` = class name, or the label as text without
    names; ``score``) whose pose is the box pose, and ``id`` = its index in this message.
    """
    types = _types()
    centre, quat, size = boxes_to_poses(boxes, box_frame)
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels).astype(np.int64)
    if not (len(scores) == len(labels) == len(centre)):
        raise ValueError(f'{len(centre)} boxes, {len(scores)} scores, {len(labels)} labels')
    covariance = np.zeros(36)
    detections = []
    for i in range(len(centre)):  # one message object per box: no way around a loop
        pose = _pose(types, centre[i], quat[i])
        hypothesis = types['vision_msgs/msg/ObjectHypothesisWithPose'](
            hypothesis=types['vision_msgs/msg/ObjectHypothesis'](
                class_id=_class_id(int(labels[i]), class_names), score=float(scores[i])),
            pose=types['geometry_msgs/msg/PoseWithCovariance'](pose=pose,
                                                               covariance=covariance))
        bbox = types['vision_msgs/msg/BoundingBox3D'](
            center=pose, size=types['geometry_msgs/msg/Vector3'](
                x=float(size[i, 0]), y=float(size[i, 1]), z=float(size[i, 2])))
        detections.append(types['vision_msgs/msg/Detection3D'](
            header=header, results=[hypothesis], bbox=bbox, id=str(i)))
    return types['vision_msgs/msg/Detection3DArray'](header=header, detections=detections)


# A colour per label (RGB in [0, 1]), cycled.
_PALETTE = np.array([[0.0, 0.9, 0.3], [1.0, 0.6, 0.0], [0.2, 0.6, 1.0], [1.0, 0.2, 0.6],
                     [0.9, 0.9, 0.1], [0.6, 0.3, 1.0], [0.1, 0.9, 0.9], [1.0, 0.3, 0.2]])


def marker_array(header, boxes: np.ndarray, labels: np.ndarray, box_frame: str,
                 ns: str = 'detections', line_width: float = 0.05):
    """``visualization_msgs/MarkerArray`` drawing each box's 12 edges as a ``LINE_LIST``.

    The first marker is ``DELETEALL`` (so boxes of the previous frame disappear in RViz /
    Foxglove); then marker ``i`` (``id = i``) holds 24 points, the end points of the edges in
    ``BOX_EDGES`` order, in ``header.frame_id`` with an identity pose.
    """
    types = _types()
    marker_type = types['visualization_msgs/msg/Marker']
    point, color = types['geometry_msgs/msg/Point'], types['std_msgs/msg/ColorRGBA']
    centre, quat, size = boxes_to_poses(boxes, box_frame)
    lines = box_corners(centre, quat, size)[:, BOX_EDGES.reshape(-1)]  # (N, 24, 3)
    labels = np.asarray(labels).astype(np.int64)
    identity = _pose(types, np.zeros(3), np.array([0.0, 0.0, 0.0, 1.0]))
    duration = types['builtin_interfaces/msg/Duration'](sec=0, nanosec=0)

    def marker(marker_id: int, action: int, kind: int, points: list, rgb=(1.0, 1.0, 1.0)):
        return marker_type(
            header=header, ns=ns, id=marker_id, type=kind, action=action, pose=identity,
            scale=types['geometry_msgs/msg/Vector3'](x=line_width, y=0.0, z=0.0),
            color=color(r=float(rgb[0]), g=float(rgb[1]), b=float(rgb[2]), a=1.0),
            lifetime=duration, frame_locked=False, points=points, colors=[],
            texture_resource='', texture=types['sensor_msgs/msg/CompressedImage'](
                header=header, format='', data=np.zeros(0, np.uint8)),
            uv_coordinates=[], text='', mesh_resource='',
            mesh_file=types['visualization_msgs/msg/MeshFile'](filename='',
                                                               data=np.zeros(0, np.uint8)),
            mesh_use_embedded_materials=False)

    markers = [marker(0, marker_type.DELETEALL, marker_type.LINE_LIST, [])]
    for i in range(len(lines)):
        pts = [point(x=float(x), y=float(y), z=float(z)) for x, y, z in lines[i]]
        markers.append(marker(i, marker_type.ADD, marker_type.LINE_LIST, pts,
                              _PALETTE[labels[i] % len(_PALETTE)]))
    return types['visualization_msgs/msg/MarkerArray'](markers=markers)


# ---------------------------------------------------------------------------------- disparity
def disparity_image(disparity: np.ndarray, header, focal: float, baseline: float,
                    min_disparity: float | None = None, max_disparity: float | None = None,
                    delta_d: float = 0.0):
    """``stereo_msgs/DisparityImage`` with a ``32FC1`` image.

    Args:
        disparity: ``(H, W)`` left-image disparity in pixels; non-finite pixels are written as
            ``-1`` (below ``min_disparity``, which is how the message marks invalid pixels).
        focal: ``f`` in pixels; baseline: ``T`` (the unit of depth ``Z = f T / d``).
        min_disparity, max_disparity: default to the range of the finite values (at least 0).
        delta_d: smallest resolvable disparity step; a float network output has none (0).
    """
    disparity = np.asarray(disparity, dtype=np.float32)
    if disparity.ndim != 2:
        raise ValueError(f'disparity must be (H, W), got {disparity.shape}')
    finite = np.isfinite(disparity)
    values = disparity[finite]
    if min_disparity is None:
        min_disparity = max(float(values.min()), 0.0) if values.size else 0.0
    if max_disparity is None:
        max_disparity = float(values.max()) if values.size else 0.0
    image = np.where(finite, disparity, np.float32(-1.0))
    height, width = disparity.shape
    types = _types()
    roi = types['sensor_msgs/msg/RegionOfInterest'](x_offset=0, y_offset=0, height=height,
                                                    width=width, do_rectify=False)
    return types['stereo_msgs/msg/DisparityImage'](
        header=header, image=array_to_image(image, '32FC1', header), f=float(focal),
        t=float(baseline), valid_window=roi, min_disparity=float(min_disparity),
        max_disparity=float(max_disparity), delta_d=float(delta_d))
