"""Run a model over a ROS bag and write a new bag with the inputs plus the predictions.

    python tools/ros/bag_infer.py --task lidar3d|mono3d|stereo|seg --in IN_BAG --out OUT_BAG
        --config C --checkpoint K [--topics T ...] [--ns NS] [--storage sqlite3|mcap]
        [--sync-tolerance-ms 10] [--iters N] [--force] [--device cpu] [--cfg-options K=V ...]

``--topics`` names the input topics in this order (defaults are make_bag.py's KITTI topics; an
``.../image_raw`` default falls back to ``.../image_raw/compressed`` when only that exists):

- lidar3d: CLOUD (sensor_msgs/PointCloud2 with x y z intensity)
- mono3d: IMAGE [INFO] (Image or CompressedImage; CameraInfo, default ``<camera>/camera_info``)
- stereo: LEFT RIGHT [LEFT_INFO RIGHT_INFO] (left / right paired by header stamp within
  ``--sync-tolerance-ms``; without CameraInfo topics the DisparityImage has f = T = 0)
- seg: IMAGE

Every input message is copied to the output. Outputs (``--ns``, default ``/perception/<task>``):
``<ns>/detections`` (vision_msgs/Detection3DArray) and ``<ns>/markers``
(visualization_msgs/MarkerArray) for lidar3d / mono3d, ``<ns>/disparity``
(stereo_msgs/DisparityImage) for stereo, ``<ns>/labels`` (sensor_msgs/Image, mono8 or 16UC1) for
seg; each with the header stamp and frame id of its input message (for stereo the left image's)
and written at the input's bag time. The output bag is written to a temporary folder and
renamed when complete; on any error (missing topic, corrupt bag, wrong encoding, unsupported
PointCloud2 layout) the tool prints one line naming the problem, leaves no output behind and
exits with status 1.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from mmengine.config import DictAction

from perception.engine.config import load_config
from perception.engine.errors import DataError, PerceptionError
from perception.registry import UnknownTypeError
from perception.ros.bags import (
    STORAGES,
    AtomicBagWriter,
    bag_topics,
    iter_messages,
    match_pairs,
    open_bag,
    require_topics,
)
from perception.ros.messages import header_stamp_ns
from perception.ros.pipeline import INPUT_TYPES, TASKS, RosInference, camera_info_topic

KITTI_LEFT = '/kitti/camera_color_left/image_raw'
KITTI_RIGHT = '/kitti/camera_color_right/image_raw'
DEFAULT_TOPICS = {'lidar3d': ['/kitti/velo/pointcloud'], 'mono3d': [KITTI_LEFT],
                  'stereo': [KITTI_LEFT, KITTI_RIGHT], 'seg': [KITTI_LEFT]}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--task', required=True, choices=TASKS)
    parser.add_argument('--in', dest='input', required=True, help='input bag')
    parser.add_argument('--out', required=True, help='output rosbag2 folder')
    parser.add_argument('--config', required=True, help='model config')
    parser.add_argument('--checkpoint', help='checkpoint (.pth); omitted: initial weights')
    parser.add_argument('--topics', nargs='+', help='input topics (see above)')
    parser.add_argument('--ns', help='output namespace (default /perception/<task>)')
    parser.add_argument('--storage', choices=STORAGES, default='sqlite3')
    parser.add_argument('--sync-tolerance-ms', type=float, default=10.0,
                        help='stereo: largest left/right header stamp difference')
    parser.add_argument('--iters', type=int, help='stereo refinement iterations')
    parser.add_argument('--force', action='store_true', help='replace an existing output')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
                        help='config overrides, e.g. model.test_cfg.score_thr=0.3')
    return parser.parse_args(argv)


def resolve_topics(task: str, given: list[str] | None, have: dict[str, str],
                   path: str) -> dict[str, str]:
    """Role -> topic for the task, from ``--topics`` or the defaults; checks count and types."""
    roles = list(INPUT_TYPES[task])
    topics = list(given or DEFAULT_TOPICS[task])
    images = [r for r in roles if r in ('image', 'left', 'right')]
    if given is None:  # defaults: fall back to the compressed transport
        topics = [t if t in have or f'{t}/compressed' not in have else f'{t}/compressed'
                  for t in topics]
    required = 2 if task == 'stereo' else 1
    if not required <= len(topics) <= len(roles) or (task == 'stereo' and len(topics) == 3):
        raise PerceptionError(f'--topics for {task}: expected {" ".join(r.upper() for r in roles)}'
                              f' (the first {required} required), got {topics}')
    mapping = dict(zip(roles, topics))
    if task in ('mono3d', 'stereo') and len(topics) == required:
        for image_role in images:
            info_role = 'info' if image_role == 'image' else f'{image_role}_info'
            info = camera_info_topic(mapping[image_role])
            if task == 'mono3d' or info in have:
                mapping[info_role] = info
    require_topics(have, mapping.values(), path)
    for role, topic in mapping.items():
        if have[topic] not in INPUT_TYPES[task][role]:
            raise DataError(f'{path}: topic {topic} has type {have[topic]}; the {task} {role} '
                            f'input must be {" or ".join(INPUT_TYPES[task][role])}')
    if task == 'stereo' and ('left_info' in mapping) != ('right_info' in mapping):
        for role in ('left_info', 'right_info'):  # one camera's calibration is no use
            mapping.pop(role, None)
    return mapping


class _ByStamp:
    """Messages of one topic looked up by the nearest header stamp."""

    def __init__(self, items: list[tuple[int, object]]) -> None:
        items = sorted(items, key=lambda item: item[0])
        self.stamps = np.array([t for t, _ in items], dtype=np.int64)
        self.msgs = [m for _, m in items]

    def nearest(self, stamp: int):
        pos = int(np.searchsorted(self.stamps, stamp))
        candidates = [i for i in (pos - 1, pos) if 0 <= i < len(self.msgs)]
        return self.msgs[min(candidates, key=lambda i: abs(int(self.stamps[i]) - stamp))]


def run(args: argparse.Namespace) -> int:
    """Process the bag; returns the number of frames run through the model."""
    out = Path(args.out)
    if (out.exists() or out.is_symlink()) and not args.force:
        raise DataError(f'{out}: output exists; pass --force to replace it')
    if Path(args.input).resolve() == out.resolve():
        raise PerceptionError(f'--out {out} is the input bag')
    with open_bag(args.input) as reader:
        have = bag_topics(reader)
        roles = resolve_topics(args.task, args.topics, have, args.input)
        info_topics = [t for r, t in roles.items() if r.endswith('info')]
        infos: dict[str, list[tuple[int, object]]] = {t: [] for t in info_topics}
        stamps: dict[str, list[int]] = {roles[r]: [] for r in ('left', 'right') if r in roles}
        # Pass 1 (small messages, and the stereo stamps): calibration may be stored after the
        # image of its frame, and the pairs are known before the images are decoded.
        for m in iter_messages(reader, args.input, [*info_topics, *stamps]):
            if m.topic in infos:
                infos[m.topic].append((header_stamp_ns(m.msg.header), m.msg))
            else:
                stamps[m.topic].append(header_stamp_ns(m.msg.header))
        for topic, items in infos.items():
            if not items:
                raise DataError(f'{args.input}: topic {topic} has no messages')
        calibration = {topic: _ByStamp(items) for topic, items in infos.items()}
        pairs: dict[int, int] = {}
        if args.task == 'stereo':
            left, right = stamps[roles['left']], stamps[roles['right']]
            matched = match_pairs(left, right, int(args.sync_tolerance_ms * 1e6))
            pairs = {('left', i): j for i, j in matched} | {('right', j): i for i, j in matched}
            if not pairs:
                raise DataError(f'{args.input}: no left/right pair of {roles["left"]} and '
                                f'{roles["right"]} within {args.sync_tolerance_ms} ms')
        frames_total = len(pairs) // 2 if args.task == 'stereo' else (
            reader.topics[roles.get('cloud', roles.get('image'))].msgcount)

        from perception.apis.inference import init_model

        runner_ns = (args.ns or f'/perception/{args.task}').rstrip('/')
        clash = [t for t in have if t.startswith(f'{runner_ns}/')]
        if clash:
            raise PerceptionError(f'{args.input} already has output topics {clash}: pass another '
                                  '--ns')
        model = init_model(load_config(args.config, args.cfg_options), args.checkpoint,
                           args.device)
        runner = RosInference(args.task, model, ns=args.ns, iters=args.iters)
        done, start = 0, time.perf_counter()
        with AtomicBagWriter(out, args.storage, args.force) as writer:
            for connection in reader.connections:
                if not writer.has_topic(connection.topic):
                    writer.add_connection(connection.topic, connection.msgtype,
                                          reader.typestore)
            for topic, msgtype in runner.output_topics.items():
                writer.add_connection(topic, msgtype)
            index = {topic: -1 for topic in stamps}
            pending: dict[tuple[str, int], object] = {}
            for m in iter_messages(reader, args.input):
                # rosbag2 stores CDR; a ROS 1 bag's messages are converted.
                raw = m.rawdata if reader.is2 else reader.typestore.ros1_to_cdr(m.rawdata,
                                                                                 m.msgtype)
                writer.write_raw(m.topic, m.timestamp, raw)
                outputs = None
                if args.task == 'lidar3d' and m.topic == roles['cloud']:
                    outputs = runner.lidar3d(m.msg, m.topic)
                elif args.task == 'seg' and m.topic == roles['image']:
                    outputs = runner.seg(m.msg, m.topic)
                elif args.task == 'mono3d' and m.topic == roles['image']:
                    info = calibration[roles['info']].nearest(header_stamp_ns(m.msg.header))
                    outputs = runner.mono3d(m.msg, info, m.topic, roles['info'])
                elif args.task == 'stereo' and m.topic in stamps:
                    outputs = _stereo_step(runner, roles, calibration, pairs, index, pending, m)
                if outputs is not None:
                    for topic, msg in outputs:
                        writer.write(topic, m.timestamp, msg)
                    done += 1
                    elapsed = time.perf_counter() - start
                    print(f'[{done}/{frames_total}] {m.topic} t={m.timestamp / 1e9:.3f} s, '
                          f'{elapsed / done:.2f} s/frame', flush=True)
    return done


def _stereo_step(runner, roles, calibration, pairs, index, pending, m):
    """Keep pair members until both are read; run the pair when the second arrives.

    ``pairs`` maps left index -> right index and right index -> left index (keys ``('left',
    i)`` / ``('right', j)``); ``index`` counts the messages read per topic.
    """
    index[m.topic] += 1
    side = 'left' if m.topic == roles['left'] else 'right'
    i = index[m.topic]
    if (side, i) not in pairs:
        return None  # no partner within the tolerance
    pending[(side, i)] = m
    left_i = i if side == 'left' else pairs[(side, i)]
    right_i = pairs[('left', left_i)]
    left, right = pending.get(('left', left_i)), pending.get(('right', right_i))
    if left is None or right is None:
        return None
    del pending[('left', left_i)], pending[('right', right_i)]
    left_info = right_info = None
    if 'left_info' in roles:
        stamp = header_stamp_ns(left.msg.header)
        left_info = calibration[roles['left_info']].nearest(stamp)
        right_info = calibration[roles['right_info']].nearest(stamp)
    return runner.stereo(left.msg, right.msg, (left.topic, right.topic), left_info, right_info,
                         (roles.get('left_info', ''), roles.get('right_info', '')))


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        frames = run(args)
    except (PerceptionError, UnknownTypeError, FileNotFoundError) as err:
        if os.environ.get('PERCEPTION_DEBUG'):
            raise
        print(f'error: {err}', file=sys.stderr)
        return 1
    print(f'wrote {args.out}: {frames} frames through the {args.task} model')
    return 0


if __name__ == '__main__':
    sys.exit(main())
