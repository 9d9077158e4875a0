"""Frame buffers of the live node: keep only the newest unprocessed frame, count the dropped.

A node that queues every message falls further behind whenever inference is slower than the
sensor; these buffers hold at most one pending frame (one per camera for stereo), so the node
always works on the newest data and the drop counters say how much it skipped. Thread-safe:
subscription callbacks ``put`` while a worker ``take``s.
"""
from __future__ import annotations

import threading
from typing import Any

__all__ = ['LatestFrameBuffer', 'LatestPairBuffer', 'LiveInference']


class LatestFrameBuffer:
    """Holds the newest frame; ``put`` replaces an unprocessed one (counted in ``dropped``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._item: Any = None
        self._full = False
        self.received = 0
        self.dropped = 0
        self.taken = 0

    def put(self, item: Any) -> None:
        with self._lock:
            self.received += 1
            if self._full:
                self.dropped += 1
            self._item, self._full = item, True

    def take(self) -> Any:
        """The pending frame (then the buffer is empty), or ``None`` when there is none."""
        with self._lock:
            if not self._full:
                return None
            item, self._item, self._full = self._item, None, False
            self.taken += 1
            return item

    def __len__(self) -> int:
        with self._lock:
            return int(self._full)


class LatestPairBuffer:
    """Newest left and right frames, taken together when their stamps agree.

    ``take`` returns ``(left, right)`` when both are pending and ``|t_left - t_right| <=
    tolerance_ns``; if they disagree, the older of the two can never be matched by a newer
    frame, so it is discarded (``dropped``) and ``None`` returned.
    """

    def __init__(self, tolerance_ns: int) -> None:
        self.tolerance_ns = int(tolerance_ns)
        self._lock = threading.Lock()
        self._pending: dict[str, tuple[int, Any] | None] = {'left': None, 'right': None}
        self.dropped = 0
        self.taken = 0

    def put(self, side: str, stamp_ns: int, item: Any) -> None:
        if side not in self._pending:
            raise ValueError(f"side must be 'left' or 'right', got {side!r}")
        with self._lock:
            if self._pending[side] is not None:
                self.dropped += 1
            self._pending[side] = (int(stamp_ns), item)

    def take(self) -> tuple[Any, Any] | None:
        with self._lock:
            left, right = self._pending['left'], self._pending['right']
            if left is None or right is None:
                return None
            if abs(left[0] - right[0]) <= self.tolerance_ns:
                self._pending = {'left': None, 'right': None}
                self.taken += 1
                return left[1], right[1]
            self._pending['left' if left[0] < right[0] else 'right'] = None
            self.dropped += 1
            return None


class LiveInference:
    """The message handling of the live node, without rclpy.

    Subscription callbacks hand over serialised CDR bytes (``on_message``); images and clouds go
    into latest-frame buffers (stereo: a pair buffer), CameraInfo is kept decoded (only its
    newest matters). ``step`` — called by the worker — deserialises the newest frame, runs the
    model and returns the outputs as ``(topic, CDR bytes)``, ready to publish.

    Args:
        runner: the model wrapper (``RosInference``).
        roles: input role -> topic, as ``bag_infer.py`` resolves them (``cloud``; ``image``,
            ``info``; ``left``, ``right``, ``left_info``, ``right_info``).
        tolerance_ns: stereo: largest left / right header stamp difference.
    """

    def __init__(self, runner, roles: dict[str, str], tolerance_ns: int = 10_000_000) -> None:
        from .typestore import ros_typestore

        self.runner, self.roles = runner, dict(roles)
        self.store = ros_typestore()
        self.frames = LatestFrameBuffer()
        self.pairs = LatestPairBuffer(tolerance_ns)
        self.infos: dict[str, Any] = {}
        self.frames_without_info = 0
        self._by_topic = {topic: role for role, topic in self.roles.items()}

    def on_message(self, topic: str, data: bytes, msgtype: str) -> None:
        """Callback: store the newest message of ``topic`` (``msgtype`` as in the bag)."""
        from .messages import header_stamp_ns

        role = self._by_topic.get(topic)
        if role is None:
            return
        if role.endswith('info'):
            self.infos[topic] = self.store.deserialize_cdr(data, msgtype)
        elif role in ('left', 'right'):
            msg = self.store.deserialize_cdr(data, msgtype)
            self.pairs.put(role, header_stamp_ns(msg.header), (topic, msg))
        else:
            self.frames.put((topic, data, msgtype))

    def step(self) -> list[tuple[str, bytes]] | None:
        """Process the newest pending frame; ``None`` when there is nothing to do."""
        task, roles = self.runner.task, self.roles
        if task == 'stereo':
            pair = self.pairs.take()
            if pair is None:
                return None
            (left_topic, left), (right_topic, right) = pair
            left_info = self.infos.get(roles.get('left_info', ''))
            right_info = self.infos.get(roles.get('right_info', ''))
            outputs = self.runner.stereo(left, right, (left_topic, right_topic), left_info,
                                         right_info, (roles.get('left_info', ''),
                                                      roles.get('right_info', '')))
        else:
            frame = self.frames.take()
            if frame is None:
                return None
            topic, data, msgtype = frame
            msg = self.store.deserialize_cdr(data, msgtype)
            if task == 'lidar3d':
                outputs = self.runner.lidar3d(msg, topic)
            elif task == 'seg':
                outputs = self.runner.seg(msg, topic)
            else:
                info = self.infos.get(roles['info'])
                if info is None:  # no calibration yet: nothing to project with
                    self.frames_without_info += 1
                    return []
                outputs = self.runner.mono3d(msg, info, topic, roles['info'])
        return [(topic, bytes(self.store.serialize_cdr(msg, msg.__msgtype__)))
                for topic, msg in outputs]
