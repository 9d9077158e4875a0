"""The ROS 2 message types the toolkit reads and writes, as one ``rosbags`` typestore.

rosbags ships the core ROS 2 Humble interfaces (``sensor_msgs``, ``stereo_msgs``,
``visualization_msgs``, ...) but not ``vision_msgs``. Its types are registered here from their
``.msg`` definitions in the layout of vision_msgs 4.x (the release that ships with ROS 2 Humble):
``Detection3D`` has ``header``, ``results``, ``bbox`` and ``id`` (no ``source_cloud``), and an
``ObjectHypothesisWithPose`` nests an ``ObjectHypothesis`` (``class_id`` string, ``score``).
"""
from __future__ import annotations

import functools

from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

__all__ = ['VISION_MSGS_DEFINITIONS', 'ros_typestore']

# type name -> .msg text (vision_msgs 4.x, ROS 2 Humble).
VISION_MSGS_DEFINITIONS: dict[str, str] = {
    'vision_msgs/msg/ObjectHypothesis': 'string class_id\nfloat64 score\n',
    'vision_msgs/msg/ObjectHypothesisWithPose': (
        'vision_msgs/ObjectHypothesis hypothesis\n'
        'geometry_msgs/PoseWithCovariance pose\n'),
    'vision_msgs/msg/BoundingBox3D': 'geometry_msgs/Pose center\ngeometry_msgs/Vector3 size\n',
    'vision_msgs/msg/BoundingBox3DArray': (
        'std_msgs/Header header\nvision_msgs/BoundingBox3D[] boxes\n'),
    'vision_msgs/msg/Detection3D': (
        'std_msgs/Header header\n'
        'vision_msgs/ObjectHypothesisWithPose[] results\n'
        'vision_msgs/BoundingBox3D bbox\n'
        'string id\n'),
    'vision_msgs/msg/Detection3DArray': (
        'std_msgs/Header header\nvision_msgs/Detection3D[] detections\n'),
    'vision_msgs/msg/Point2D': 'float64 x\nfloat64 y\n',
    'vision_msgs/msg/Pose2D': 'vision_msgs/Point2D position\nfloat64 theta\n',
    'vision_msgs/msg/BoundingBox2D': (
        'vision_msgs/Pose2D center\nfloat64 size_x\nfloat64 size_y\n'),
    'vision_msgs/msg/Detection2D': (
        'std_msgs/Header header\n'
        'vision_msgs/ObjectHypothesisWithPose[] results\n'
        'vision_msgs/BoundingBox2D bbox\n'
        'string id\n'),
    'vision_msgs/msg/Detection2DArray': (
        'std_msgs/Header header\nvision_msgs/Detection2D[] detections\n'),
}


@functools.lru_cache(maxsize=None)
def ros_typestore() -> Typestore:
    """ROS 2 Humble types plus ``vision_msgs`` (built once; treat it as read-only)."""
    store = get_typestore(Stores.ROS2_HUMBLE)
    types = {}
    for name, text in VISION_MSGS_DEFINITIONS.items():
        types.update(get_types_from_msg(text, name))
    store.register(types)
    return store
