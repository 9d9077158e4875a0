"""A live ROS 2 node: subscribe, infer, publish; stale frames are dropped, never queued.

    python tools/ros/node.py --task lidar3d|mono3d|stereo|seg --config C --checkpoint K
        [--topics T ...] [--ns NS] [--queue-depth 1] [--sync-tolerance-ms 10] [--iters N]
        [--device cpu|cuda] [--cfg-options K=V ...]

Needs ROS 2 (``rclpy``, and ``vision_msgs`` for the detection tasks) from a sourced ROS 2
installation; without it the node says so and exits with status 1 (``bag_infer.py`` runs the
same models on recorded bags without ROS 2). Topics, outputs, headers and frame ids are those of
``bag_infer.py``; an image topic ending in ``/compressed`` is subscribed as CompressedImage.

Subscriptions take serialised messages with a queue of ``--queue-depth`` (default 1) and hand
them to ``perception.ros.live.LiveInference``: it keeps only the newest unprocessed frame (the
newest left / right pair for stereo), so when the model is slower than the sensor the node
skips frames instead of falling behind. A worker thread runs the model and publishes; it logs
received / processed / dropped counts every ``--log-every`` frames. A bad frame (wrong encoding,
unsupported cloud layout) is logged and skipped.
"""
from __future__ import annotations

import argparse
import sys
import threading
import time

from mmengine.config import DictAction

from perception.engine.errors import PerceptionError
from perception.ros.pipeline import INPUT_TYPES, TASKS, camera_info_topic

DEFAULT_TOPICS = {'lidar3d': ['/kitti/velo/pointcloud'],
                  'mono3d': ['/kitti/camera_color_left/image_raw'],
                  'stereo': ['/kitti/camera_color_left/image_raw',
                             '/kitti/camera_color_right/image_raw'],
                  'seg': ['/kitti/camera_color_left/image_raw']}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--task', required=True, choices=TASKS)
    parser.add_argument('--config', required=True)
    parser.add_argument('--checkpoint')
    parser.add_argument('--topics', nargs='+', help='input topics, as for bag_infer.py')
    parser.add_argument('--ns', help='output namespace (default /perception/<task>)')
    parser.add_argument('--queue-depth', type=int, default=1)
    parser.add_argument('--sync-tolerance-ms', type=float, default=10.0)
    parser.add_argument('--iters', type=int)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--log-every', type=int, default=50)
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE')
    return parser.parse_args(argv)


def topic_roles(task: str, topics: list[str] | None) -> dict[str, tuple[str, str]]:
    """Role -> (topic, message type) from ``--topics`` (CameraInfo topics derived if absent)."""
    roles = list(INPUT_TYPES[task])
    topics = list(topics or DEFAULT_TOPICS[task])
    required = 2 if task == 'stereo' else 1
    if not required <= len(topics) <= len(roles) or (task == 'stereo' and len(topics) == 3):
        raise PerceptionError(f'--topics for {task}: expected {" ".join(r.upper() for r in roles)}'
                              f' (the first {required} required), got {topics}')
    mapping = dict(zip(roles, topics))
    for role in [r for r in roles if r in ('image', 'left', 'right')]:
        info_role = 'info' if role == 'image' else f'{role}_info'
        if task in ('mono3d', 'stereo') and info_role not in mapping:
            mapping[info_role] = camera_info_topic(mapping[role])
    result = {}
    for role, topic in mapping.items():
        if role.endswith('info'):
            msgtype = 'sensor_msgs/msg/CameraInfo'
        elif role == 'cloud':
            msgtype = 'sensor_msgs/msg/PointCloud2'
        else:
            msgtype = ('sensor_msgs/msg/CompressedImage' if topic.endswith('/compressed')
                       else 'sensor_msgs/msg/Image')
        result[role] = (topic, msgtype)
    return result


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        import rclpy
        from rclpy.qos import HistoryPolicy, QoSProfile
        from rosidl_runtime_py.utilities import get_message
    except ImportError as err:
        print(f'error: ROS 2 is not available here (cannot import rclpy: {err}). Source a ROS 2 '
              'installation first (e.g. `source /opt/ros/humble/setup.bash`, with vision_msgs '
              'installed), or run tools/ros/bag_infer.py on a recorded bag, which needs no '
              'ROS 2.', file=sys.stderr)
        return 1
    try:
        roles = topic_roles(args.task, args.topics)
        from perception.apis.inference import init_model
        from perception.engine.config import load_config
        from perception.ros.live import LiveInference
        from perception.ros.pipeline import RosInference

        model = init_model(load_config(args.config, args.cfg_options), args.checkpoint,
                           args.device)
        runner = RosInference(args.task, model, ns=args.ns, iters=args.iters)
        output_classes = {t: get_message(m) for t, m in runner.output_topics.items()}
    except (PerceptionError, FileNotFoundError, ModuleNotFoundError, ValueError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    live = LiveInference(runner, {r: t for r, (t, _) in roles.items()},
                         int(args.sync_tolerance_ms * 1e6))

    rclpy.init()
    node = rclpy.create_node(f'perception_{args.task}')
    qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=max(1, args.queue_depth))
    for topic, msgtype in roles.values():
        node.create_subscription(
            get_message(msgtype), topic,
            lambda data, topic=topic, msgtype=msgtype: live.on_message(topic, data, msgtype),
            qos, raw=True)
    publishers = {t: node.create_publisher(cls, t, qos) for t, cls in output_classes.items()}
    log = node.get_logger()
    log.info(f'{args.task}: {", ".join(t for t, _ in roles.values())} -> '
             f'{", ".join(publishers)}')

    def work() -> None:
        done = 0
        while rclpy.ok():
            try:
                outputs = live.step()
            except PerceptionError as err:  # one bad frame must not stop the robot's node
                log.error(str(err))
                continue
            if outputs is None:
                time.sleep(0.002)
                continue
            for topic, data in outputs:
                publishers[topic].publish(data)
            done += 1
            if done % max(1, args.log_every) == 0:
                buf = live.pairs if args.task == 'stereo' else live.frames
                log.info(f'processed {done} frames, dropped {buf.dropped} stale ones')

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    try:
        rclpy.spin(node)
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
