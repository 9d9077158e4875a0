"""Input messages -> model -> output messages, for ``tools/ros/bag_infer.py`` and the live node.

:class:`RosInference` holds a model and turns the messages of one frame into the messages to
publish, each a ``(topic, message)`` pair whose header (stamp and frame id) is that of the
input message:

| task | inputs | outputs |
|---|---|---|
| lidar3d | PointCloud2 | ``<ns>/detections`` Detection3DArray, ``<ns>/markers`` MarkerArray |
| mono3d | Image / CompressedImage + CameraInfo | the same, in the image's optical frame |
| stereo | left + right Image + CameraInfo | ``<ns>/disparity`` stereo_msgs/DisparityImage |
| seg | Image / CompressedImage | ``<ns>/labels`` Image (mono8 / 16UC1 class indices) |

Mono3D boxes come out of the model in the frame of the projection ``P`` (KITTI: rectified
camera 0 even for camera 2); they are shifted by ``t = inv(P[:, :3]) @ P[:, 3]`` into the image's
own optical frame, whose axes are parallel for rectified cameras, so ``frame_id`` is exact.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ..engine.errors import DataError
from .messages import (
    camera_info_matrices,
    detection3d_array,
    disparity_image,
    image_msg_to_rgb,
    label_image,
    marker_array,
    pointcloud2_to_array,
)

__all__ = ['IMAGE_TYPES', 'INPUT_TYPES', 'TASKS', 'RosInference', 'camera_info_topic',
           'model_class_names', 'stereo_focal_baseline']

TASKS = ('lidar3d', 'mono3d', 'stereo', 'seg')
IMAGE_TYPES = ('sensor_msgs/msg/Image', 'sensor_msgs/msg/CompressedImage')
# task -> message types accepted for each input role.
INPUT_TYPES = {
    'lidar3d': {'cloud': ('sensor_msgs/msg/PointCloud2',)},
    'mono3d': {'image': IMAGE_TYPES, 'info': ('sensor_msgs/msg/CameraInfo',)},
    'stereo': {'left': IMAGE_TYPES, 'right': IMAGE_TYPES,
               'left_info': ('sensor_msgs/msg/CameraInfo',),
               'right_info': ('sensor_msgs/msg/CameraInfo',)},
    'seg': {'image': IMAGE_TYPES},
}


def camera_info_topic(image_topic: str) -> str:
    """``/cam/image_raw`` or ``/cam/image_raw/compressed`` -> ``/cam/camera_info``."""
    topic = image_topic.removesuffix('/compressed')
    return topic.rsplit('/', 1)[0] + '/camera_info' if '/' in topic.strip('/') else (
        topic + '/camera_info')


def model_class_names(model) -> list[str] | None:
    """Class names of a model: ``model.classes``, else the config's ``class_names`` or the test
    dataset's ``metainfo['classes']``; ``None`` when none of them is there."""
    names = getattr(model, 'classes', None)
    if names:
        return list(names)
    cfg = getattr(model, 'cfg', None)
    if cfg is None:
        return None
    if cfg.get('class_names'):
        return list(cfg['class_names'])
    try:
        names = cfg['test_dataloader']['dataset']['metainfo']['classes']
    except (KeyError, TypeError):
        return None
    return list(names) if names else None


def stereo_focal_baseline(left_p: np.ndarray, right_p: np.ndarray) -> tuple[float, float]:
    """Focal length (px) and baseline of a rectified pair from the two ``(3, 4)`` projections.

    ``P = K [I | t]`` with ``P[0, 3] = -f * x_cam``; the baseline is the x offset between the
    cameras, ``(P_left[0, 3] - P_right[0, 3]) / f`` (ROS: ``-Tx_right / f`` with ``Tx_left = 0``;
    KITTI: both relative to camera 0).
    """
    return float(left_p[0, 0]), float((left_p[0, 3] - right_p[0, 3]) / right_p[0, 0])


def _optical_offset(p: np.ndarray) -> np.ndarray:
    """``(3,)`` translation from the frame of ``P`` to the camera's own optical frame."""
    return np.linalg.solve(p[:, :3], p[:, 3])


class RosInference:
    """Run one task's model on ROS messages.

    Args:
        task: one of ``TASKS``.
        model: the model from ``init_model``.
        ns: output topic namespace (default ``/perception/<task>``).
        class_names: names for ``class_id`` (default ``model_class_names(model)``).
        infer: the inference function (default the task's ``perception.apis`` one:
            ``inference_lidar3d(model, points)``, ``inference_mono3d(model, rgb, P)``,
            ``inference_stereo(model, left, right, iters)``, ``inference_segmentation(model,
            rgb)``); tests pass a stand-in.
        iters: stereo refinement iterations (``None``: the model's).
    """

    def __init__(self, task: str, model, ns: str | None = None,
                 class_names: Sequence[str] | None = None, infer: Callable | None = None,
                 iters: int | None = None) -> None:
        if task not in TASKS:
            raise ValueError(f'task must be one of {TASKS}, got {task!r}')
        self.task, self.model, self.iters = task, model, iters
        self.ns = (ns or f'/perception/{task}').rstrip('/')
        self.class_names = class_names if class_names is not None else model_class_names(model)
        if infer is None:
            from ..apis import inference as api

            infer = {'lidar3d': api.inference_lidar3d, 'mono3d': api.inference_mono3d,
                     'stereo': api.inference_stereo, 'seg': api.inference_segmentation}[task]
        self.infer = infer

    @property
    def output_topics(self) -> dict[str, str]:
        """Output topic -> message type."""
        if self.task in ('lidar3d', 'mono3d'):
            return {f'{self.ns}/detections': 'vision_msgs/msg/Detection3DArray',
                    f'{self.ns}/markers': 'visualization_msgs/msg/MarkerArray'}
        if self.task == 'stereo':
            return {f'{self.ns}/disparity': 'stereo_msgs/msg/DisparityImage'}
        return {f'{self.ns}/labels': 'sensor_msgs/msg/Image'}

    def _detections(self, header, result: dict, box_frame: str) -> list[tuple[str, object]]:
        boxes = np.asarray(result['boxes_3d'], dtype=np.float64)
        if boxes.size == 0:
            boxes = boxes.reshape(0, 7)
        return [(f'{self.ns}/detections',
                 detection3d_array(header, boxes, result['scores'], result['labels'], box_frame,
                                   self.class_names)),
                (f'{self.ns}/markers',
                 marker_array(header, boxes, result['labels'], box_frame))]

    def lidar3d(self, cloud, topic: str) -> list[tuple[str, object]]:
        """PointCloud2 (fields x y z intensity) -> detections in the cloud's frame."""
        points = pointcloud2_to_array(cloud, topic)
        return self._detections(cloud.header, self.infer(self.model, points), 'lidar')

    def mono3d(self, image, info, topic: str, info_topic: str) -> list[tuple[str, object]]:
        """Image + CameraInfo (``P``) -> detections in the image's optical frame."""
        rgb = image_msg_to_rgb(image, topic)
        _, p = camera_info_matrices(info, info_topic)
        result = dict(self.infer(self.model, rgb, p))
        boxes = np.array(result['boxes_3d'], dtype=np.float64).reshape(-1, 7)
        boxes[:, :3] += _optical_offset(p)
        result['boxes_3d'] = boxes
        return self._detections(image.header, result, 'camera')

    def stereo(self, left, right, topics: Sequence[str], left_info=None,
               right_info=None, info_topics: Sequence[str] = ('', '')
               ) -> list[tuple[str, object]]:
        """Left + right images (+ their CameraInfo for ``f`` and ``T``) -> DisparityImage.

        Without CameraInfo ``f`` and ``T`` are 0 (disparity only, no metric depth).
        """
        left_rgb = image_msg_to_rgb(left, topics[0])
        right_rgb = image_msg_to_rgb(right, topics[1])
        if left_rgb.shape != right_rgb.shape:
            raise DataError(f'{topics[0]} is {left_rgb.shape[1]}x{left_rgb.shape[0]} but '
                            f'{topics[1]} is {right_rgb.shape[1]}x{right_rgb.shape[0]}: a '
                            'rectified pair must have one size')
        focal = baseline = 0.0
        if left_info is not None and right_info is not None:
            focal, baseline = stereo_focal_baseline(
                camera_info_matrices(left_info, info_topics[0])[1],
                camera_info_matrices(right_info, info_topics[1])[1])
        disp = self.infer(self.model, left_rgb, right_rgb, self.iters)
        return [(f'{self.ns}/disparity', disparity_image(disp, left.header, focal, baseline))]

    def seg(self, image, topic: str) -> list[tuple[str, object]]:
        """Image -> label map Image at the input size, same header."""
        labels = self.infer(self.model, image_msg_to_rgb(image, topic))
        return [(f'{self.ns}/labels', label_image(labels, image.header))]
