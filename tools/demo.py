"""`make demo`: LiDAR 3D detection end to end, with the tools users run.

    python tools/demo.py [--task lidar3d|mono3d|stereo|seg|sr] [--work-dir DIR] [--quick]
    make demo [TASK=lidar3d|mono3d|stereo|seg|sr]

``lidar3d`` (the default), each step a subprocess of a tool or a call of ``perception.apis``:

1. ``python -m perception.datasets.synthetic.lidar`` writes synthetic LiDAR scenes (cars,
   pedestrians, cyclists seen by a 64-beam sensor) in the KITTI layout;
2. ``tools/create_data.py kitti`` converts them into info files;
3. ``tools/train.py`` trains the FlatFormer demo detector
   (``configs/flatformer/flatformer_demo.py``) on the training scenes;
4. ``tools/test.py`` evaluates the checkpoint on the held-out scenes (KITTI Car AP40);
5. the trained detector (``init_model`` + ``inference_lidar3d``) runs on the real KITTI frame 000008
   shipped in ``data/demo/kitti_000008``: a bird's-eye-view PNG and a camera-overlay PNG with the
   predicted and the labelled boxes, the predictions as a KITTI label file, the cars matched to
   the label at BEV IoU 0.5, and an MCAP bag (``tools/ros/make_bag.py`` +
   ``tools/ros/bag_infer.py``) with the point cloud, ``vision_msgs/Detection3DArray`` and
   ``visualization_msgs/MarkerArray``.

``--quick`` runs the same steps on a reduced schedule (a few scenes, a few iterations): the test
of ``tests/test_demo.py``; its detector has not learnt anything yet.
``sr`` trains ESPCN x3 on generated images and reports PSNR-Y next to bicubic.

The other tasks, each on data generated or shipped inside the project, through the same tools:

``mono3d``: ``python -m perception.datasets.synthetic.mono3d`` renders camera frames in the KITTI
layout, ``tools/create_data.py kitti`` converts them, ``tools/train.py`` trains MonoDETR
(``configs/monodetr/monodetr_r18_synthetic-mono3d.py``) for a few epochs, ``tools/test.py``
prints the KITTI table; ``init_model`` + ``inference_mono3d`` run on frame 000008's left image
with its P2: camera-overlay and BEV PNGs (labels green, predictions red), a KITTI label file, Cars
matched to the label at 3D and BEV IoU 0.5.

``stereo``: ``tools/train.py`` trains the small RAFT-Stereo
(``configs/raft-stereo/raft-stereo_small_synthetic.py``) on generated pairs, ``tools/test.py``
prints EPE / D1 on held-out pairs, ``tools/infer.py stereo`` runs on the Middlebury 2014
Motorcycle pair shipped in ``data/demo/middlebury_motorcycle`` (with its ``calib.txt``):
disparity PNG / PFM, colour map, depth PFM, coloured PLY; the same tool on the mirrored pair
gives the right view's disparity for the left-right consistency check.

``seg``: ``python -m perception.datasets.synthetic.segmentation`` writes textured-shape images in
the Cityscapes layout, ``tools/train.py`` trains SegFormer
(``configs/segformer/segformer_r18_1xb8-300_synthetic-seg-64x128.py``), ``tools/test.py``
prints mIoU; ``inference_segmentation`` labels frame 000008's left image: a colour overlay PNG.

Each ends with a summary: the metric reached, what the model did on the real data (the summary
says when a model trained minutes on synthetic data does not transfer), and every output path.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIDAR_CONFIG = ROOT / 'configs/flatformer/flatformer_demo.py'
SR_CONFIG = ROOT / 'configs/espcn/espcn_x3_synthetic-sr.py'
KITTI_FRAME = ROOT / 'data/demo/kitti_000008'
FRAME_ID = '000008'
PRED_COLOR = (255, 40, 40)
# (train scenes, held-out scenes, iterations). Full: about 0.45 s per scene and 0.5-0.8 s per
# iteration on a loaded 2-core machine, so that the whole demo stays within 6 minutes.
FULL = (60, 20, 300)
QUICK = (6, 4, 10)
TABLE_KEYS = [('Car 3D AP40 (IoU 0.7)', 'kitti/Car_3D_AP40_{}_strict'),
              ('Car BEV AP40 (IoU 0.7)', 'kitti/Car_BEV_AP40_{}_strict'),
              ('Car 3D AP40 (IoU 0.5)', 'kitti/Car_3D_AP40_{}_loose'),
              ('Car BEV AP40 (IoU 0.5)', 'kitti/Car_BEV_AP40_{}_loose')]


def say(message: str) -> None:
    print(f'[demo] {message}', flush=True)


def run_tool(args: list[str], what: str) -> None:
    """Run one user-facing command (shown as typed) and stop the demo if it fails."""
    shown = ' '.join(str(a) for a in args).replace(sys.executable, 'python')
    say(f'{what}:\n    {shown}')
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get('PYTHONPATH')])])}
    if subprocess.call([str(a) for a in args], cwd=ROOT, env=env) != 0:
        raise SystemExit(f'[demo] failed: {shown}')


def kitti_table(metrics: dict, rows: list[tuple[str, str]] = TABLE_KEYS) -> str:
    """The Car rows of KITTI's table (AP40, easy / moderate / hard) as text."""
    lines = [f'{"":24s} {"easy":>8s} {"moderate":>9s} {"hard":>8s}']
    for title, key in rows:
        values = [metrics.get(key.format(level)) for level in ('easy', 'moderate', 'hard')]
        if all(v is None for v in values):
            continue
        lines.append(f'{title:24s} ' + ' '.join(
            f'{v:{w}.2f}' if v is not None else f'{"-":>{w}s}' for v, w in zip(values, (8, 9, 8))))
    return '\n'.join(lines)


def greedy_matches(iou, scores, threshold: float) -> int:
    """Predictions matched one to one to labels, best score first, at ``iou >= threshold``.

    Args:
        iou: ``(P, G)`` tensor, prediction x label.
        scores: ``(P,)`` tensor.
    """
    import torch

    order = torch.argsort(scores, descending=True)
    taken = torch.zeros(iou.shape[1], dtype=torch.bool)
    matched = 0
    for i in order.tolist():  # a handful of boxes
        ious = torch.where(taken, -1.0, iou[i].double())
        j = int(ious.argmax())
        if ious[j] >= threshold:
            taken[j] = True
            matched += 1
    return matched


def lidar_frame_outputs(config: Path, checkpoint: Path, out_dir: Path) -> dict:
    """Detect objects on the shipped KITTI frame; write PNGs and the KITTI label file.

    Returns what the summary reports: counts and output paths."""
    import cv2
    import numpy as np
    import torch

    from perception.apis import inference_lidar3d, init_model
    from perception.datasets.kitti_format import read_label_file, write_label_file
    from perception.models.lidar3d.detector import kitti_annos_from_lidar_boxes
    from perception.models.ops.iou3d import bev_iou
    from perception.structures import CameraBoxes3D, KittiCalibration, LiDARBoxes3D
    from perception.visualization.boxes3d import draw_projected_boxes, render_bev, write_png

    folder = KITTI_FRAME / 'training'
    cloud = folder / 'velodyne' / f'{FRAME_ID}.bin'
    model = init_model(str(config), str(checkpoint), device='cpu')
    classes = list(model.class_names)
    result = inference_lidar3d(model, str(cloud))

    calib = KittiCalibration.from_file(folder / 'calib' / f'{FRAME_ID}.txt')
    bgr = cv2.imread(str(folder / 'image_2' / f'{FRAME_ID}.png'))
    image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    label = read_label_file(folder / 'label_2' / f'{FRAME_ID}.txt')
    keep = label['name'] != 'DontCare'
    gt_names = label['name'][keep]
    gt_camera = CameraBoxes3D(np.concatenate([label['location'][keep], label['dimensions'][keep],
                                              label['rotation_y'][keep, None]], axis=1))
    gt_lidar = gt_camera.convert_to('lidar', calib.cam2lidar)

    boxes = torch.from_numpy(result['boxes_3d'][:, :7]).double()
    names = [classes[i] for i in result['labels']]
    pred_lidar = LiDARBoxes3D(boxes)
    points = np.fromfile(cloud, dtype=np.float32).reshape(-1, 4)
    # Labels green (render_bev's ground-truth colour), predictions red whatever their class.
    render_bev(points, pred_lidar, out_dir / f'{FRAME_ID}_bev.png', gt_boxes=gt_lidar,
               colors=PRED_COLOR)
    overlay = draw_projected_boxes(image, gt_camera, calib.P2, colors=(0, 255, 0))
    overlay = draw_projected_boxes(overlay, pred_lidar, calib.lidar2img(2), labels=names,
                                   scores=result['scores'].tolist(), colors=PRED_COLOR)
    image_path = write_png(out_dir / f'{FRAME_ID}_image.png', overlay)

    annos = kitti_annos_from_lidar_boxes(
        boxes, torch.from_numpy(result['scores']), torch.from_numpy(result['labels']), classes,
        calib.lidar2cam, calib.P2, image.shape[:2])
    label_path = out_dir / f'{FRAME_ID}_pred.txt'
    write_label_file(label_path, annos, decimals=4)

    # Cars matched one to one (greedy by score) to labelled Cars at BEV IoU >= 0.5.
    pred_car = torch.from_numpy(np.asarray(names) == 'Car') if names else torch.zeros(0, dtype=bool)
    gt_car = torch.from_numpy(gt_names == 'Car')
    matched = 0
    if pred_car.any() and gt_car.any():
        def bev_of(b: torch.Tensor) -> torch.Tensor:
            return b[:, [0, 1, 3, 4, 6]]
        iou = bev_iou(bev_of(boxes[pred_car]), bev_of(gt_lidar.tensor[gt_car].double()))
        matched = greedy_matches(iou, torch.from_numpy(result['scores'])[pred_car], 0.5)
    return {'predicted_cars': int(pred_car.sum()), 'label_cars': int(gt_car.sum()),
            'matched_cars': matched, 'detections': len(names),
            'bev_png': out_dir / f'{FRAME_ID}_bev.png', 'image_png': image_path,
            'label_txt': label_path}


def demo_lidar3d(work_dir: Path, quick: bool) -> dict:
    num_train, num_val, iters = QUICK if quick else FULL
    data = work_dir / 'synthetic_lidar'
    train_dir = work_dir / 'train'
    outputs: dict[str, Path] = {}
    if data.exists():
        shutil.rmtree(data)  # a fresh set each run: the generator refuses to mix sets
    run_tool([sys.executable, '-m', 'perception.datasets.synthetic.lidar', data,
              '--train', num_train, '--val', num_val, '--seed', 0],
             f'1/5 writing {num_train} training and {num_val} held-out synthetic LiDAR scenes')
    run_tool([sys.executable, 'tools/create_data.py', 'kitti', '--root-path', data,
              '--workers', 1], '2/5 converting them to KITTI info files')
    roots = [f'{loader}.dataset.data_root={data}'
             for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')]
    labels = [f'{e}.gt_label_dir={data}/training/label_2'
              for e in ('val_evaluator', 'test_evaluator')]
    warm = max(1, iters // 10)
    schedule = [f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters + 1}',
                f'default_hooks.checkpoint.interval={iters}',
                f'default_hooks.logger.interval={max(1, min(20, iters // 5))}',
                f'param_scheduler.0.end={warm}', f'param_scheduler.1.begin={warm}',
                f'param_scheduler.1.end={iters}', f'param_scheduler.1.T_max={iters - warm}']
    start = time.perf_counter()
    run_tool([sys.executable, 'tools/train.py', LIDAR_CONFIG, '--work-dir', train_dir,
              '--cfg-options', *roots, *labels, *schedule],
             f'3/5 training the FlatFormer demo detector for {iters} iterations')
    train_seconds = time.perf_counter() - start
    checkpoint = Path((train_dir / 'last_checkpoint').read_text().strip())
    metrics_file = work_dir / 'test_metrics.json'
    run_tool([sys.executable, 'tools/test.py', LIDAR_CONFIG, checkpoint, '--work-dir',
              work_dir / 'test', '--out', metrics_file, '--cfg-options', *roots, *labels],
             f'4/5 evaluating {checkpoint.name} on the {num_val} held-out scenes')
    metrics = json.loads(metrics_file.read_text())
    say('KITTI evaluation, held-out synthetic scenes (AP40, %):\n' + kitti_table(metrics))

    say(f'5/5 the trained detector on the real KITTI frame {FRAME_ID} ({KITTI_FRAME})')
    frame_dir = work_dir / f'kitti_{FRAME_ID}'
    frame = lidar_frame_outputs(LIDAR_CONFIG, checkpoint, frame_dir)
    outputs.update(bev_png=frame['bev_png'], image_png=frame['image_png'],
                   label_txt=frame['label_txt'])
    bag_in, bag_out = frame_dir / 'kitti_bag', frame_dir / 'detections_bag'
    run_tool([sys.executable, 'tools/ros/make_bag.py', bag_in, '--kitti', KITTI_FRAME,
              '--frames', FRAME_ID, '--storage', 'mcap', '--force'],
             'writing the frame as a rosbag2 (MCAP)')
    run_tool([sys.executable, 'tools/ros/bag_infer.py', '--task', 'lidar3d', '--in', bag_in,
              '--out', bag_out, '--config', LIDAR_CONFIG, '--checkpoint', checkpoint,
              '--storage', 'mcap', '--force'],
             'running the detector over the bag (Detection3DArray + MarkerArray)')
    mcaps = sorted(bag_out.glob('*.mcap'))
    if mcaps:
        outputs['mcap'] = mcaps[0]
    outputs.update(checkpoint=checkpoint, metrics_json=metrics_file,
                   train_log_dir=train_dir)
    return {'metrics': metrics, 'frame': frame, 'outputs': outputs,
            'train_seconds': train_seconds, 'iters': iters}


def summary_lidar3d(result: dict, seconds: float) -> None:
    metrics, frame = result['metrics'], result['frame']
    moderate = metrics.get('kitti/Car_3D_AP40_moderate_strict', float('nan'))
    bev = metrics.get('kitti/Car_BEV_AP40_moderate_strict', float('nan'))
    lines = [
        f'done in {seconds:.0f} s ({result["iters"]} training iterations, '
        f'{result["train_seconds"]:.0f} s)',
        f'held-out synthetic scenes: Car AP40 moderate, IoU 0.7: 3D {moderate:.2f}, '
        f'BEV {bev:.2f}',
        f'KITTI frame {FRAME_ID}: {frame["detections"]} detections, '
        f'{frame["predicted_cars"]} Cars, {frame["matched_cars"]} of the label\'s '
        f'{frame["label_cars"]} Cars matched at BEV IoU 0.5',
        'outputs:',
        *(f'  {name:14s} {path}' for name, path in result['outputs'].items()),
    ]
    say('summary\n' + '\n'.join(lines))


def demo_sr(work_dir: Path, quick: bool) -> None:
    extra = ['--cfg-options', 'train_cfg.max_iters=20'] if quick else []
    run_tool([sys.executable, 'tools/train.py', SR_CONFIG, '--work-dir', work_dir, *extra],
             f'training {SR_CONFIG.name}')
    checkpoint = (work_dir / 'last_checkpoint').read_text().strip()
    metrics_file = work_dir / 'demo_metrics.json'
    run_tool([sys.executable, 'tools/test.py', SR_CONFIG, checkpoint, '--work-dir', work_dir,
              '--out', metrics_file], f'evaluating {checkpoint}')
    metrics = json.loads(metrics_file.read_text())
    say('result on held-out generated images: ' +
        ', '.join(f'{k} = {v:.2f}' for k, v in sorted(metrics.items())))


# ----------------------------------------------------------------------------- shared
def schedule_options(iters: int, warm_names: tuple[str, str] | None) -> list[str]:
    """``--cfg-options`` that shorten an iteration-based config to ``iters`` steps, validating
    only in ``tools/test.py``; ``warm_names``: the warm-up and main ``param_scheduler`` entries'
    indices as strings, or None to leave the scheduler alone."""
    options = [f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters + 1}',
               f'default_hooks.checkpoint.interval={iters}',
               f'default_hooks.logger.interval={max(1, min(20, iters // 5))}']
    if warm_names is not None:
        first, second = warm_names
        warm = max(1, iters // 15)
        options += [f'param_scheduler.{first}.end={warm}', f'param_scheduler.{second}.begin={warm}',
                    f'param_scheduler.{second}.end={iters}']
    return options


def train_and_test(config: Path, work_dir: Path, options: list[str], test_options: list[str],
                   what: str, steps: tuple[int, int]) -> tuple[Path, dict, float]:
    """``tools/train.py`` then ``tools/test.py --out metrics.json``; returns the checkpoint, the
    metrics and the training's wall time."""
    train_dir = work_dir / 'train'
    start = time.perf_counter()
    run_tool([sys.executable, 'tools/train.py', config, '--work-dir', train_dir,
              '--cfg-options', *options], f'{steps[0]}/{steps[1]} training {what}')
    seconds = time.perf_counter() - start
    checkpoint = Path((train_dir / 'last_checkpoint').read_text().strip())
    metrics_file = work_dir / 'test_metrics.json'
    test_args = ['--cfg-options', *test_options] if test_options else []
    run_tool([sys.executable, 'tools/test.py', config, checkpoint, '--work-dir',
              work_dir / 'test', '--out', metrics_file, *test_args],
             f'{steps[0] + 1}/{steps[1]} evaluating {checkpoint.name} on held-out synthetic data')
    return checkpoint, json.loads(metrics_file.read_text()), seconds


def summary(seconds: float, lines: list[str], outputs: dict) -> None:
    say('summary\n' + '\n'.join([
        f'done in {seconds:.0f} s', *lines, 'outputs:',
        *(f'  {name:14s} {path}' for name, path in outputs.items())]))


def read_kitti_frame() -> dict:
    """The shipped KITTI frame: RGB image, calibration, labelled (non-DontCare) camera boxes."""
    import cv2
    import numpy as np

    from perception.datasets.kitti_format import read_label_file
    from perception.structures import CameraBoxes3D, KittiCalibration

    folder = KITTI_FRAME / 'training'
    calib = KittiCalibration.from_file(folder / 'calib' / f'{FRAME_ID}.txt')
    bgr = cv2.imread(str(folder / 'image_2' / f'{FRAME_ID}.png'))
    label = read_label_file(folder / 'label_2' / f'{FRAME_ID}.txt')
    keep = label['name'] != 'DontCare'
    boxes = CameraBoxes3D(np.concatenate([label['location'][keep], label['dimensions'][keep],
                                          label['rotation_y'][keep, None]], axis=1))
    return {'image': cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), 'calib': calib, 'gt_camera': boxes,
            'gt_names': label['name'][keep],
            'image_path': folder / 'image_2' / f'{FRAME_ID}.png',
            'points': np.fromfile(folder / 'velodyne' / f'{FRAME_ID}.bin',
                                  dtype=np.float32).reshape(-1, 4)}


# ----------------------------------------------------------------------------- mono3d
MONO3D_CONFIG = ROOT / 'configs/monodetr/monodetr_r18_synthetic-mono3d.py'
# (train frames, held-out frames, epochs): 192x640 frames fed at 96x320, 4 per step. Full: 80
# steps, 3 min 22 s in all with one torch thread, the other core busy (2026-12-08); the previous
# 120 frames x 5 epochs took 7 min 37 s under heavier load and also ended near 0 AP: minutes of
# training show the pipeline, not accuracy.
MONO3D_FULL = (80, 20, 4)
MONO3D_QUICK = (8, 4, 1)
MONO3D_TABLE = [('Car 2D AP40 (IoU 0.7)', 'kitti/Car_2D_AP40_{}_strict'),
                ('Car BEV AP40 (IoU 0.5)', 'kitti/Car_BEV_AP40_{}_loose'),
                ('Car 3D AP40 (IoU 0.5)', 'kitti/Car_3D_AP40_{}_loose'),
                ('Car 3D AP40 (IoU 0.7)', 'kitti/Car_3D_AP40_{}_strict')]


def mono3d_frame_outputs(config: Path, checkpoint: Path, out_dir: Path) -> dict:
    """MonoDETR on the shipped KITTI frame's left image and P2: overlay and BEV PNGs (labels
    green, predictions red), the predictions as a KITTI label file, Cars matched to the label."""
    import numpy as np
    import torch

    from perception.apis import inference_mono3d, init_model
    from perception.datasets.kitti_format import write_label_file
    from perception.evaluation.kitti import annos_from_camera_boxes
    from perception.models.ops.iou3d import bev_iou, box3d_iou, boxes3d_to_bev
    from perception.structures import CameraBoxes3D
    from perception.visualization.boxes3d import draw_projected_boxes, render_bev, write_png

    frame = read_kitti_frame()
    calib = frame['calib']
    model = init_model(str(config), str(checkpoint), device='cpu')
    result = inference_mono3d(model, str(frame['image_path']), calib.P2)
    names = [model.classes[i] for i in result['labels']]
    pred_camera = CameraBoxes3D(torch.from_numpy(result['boxes_3d']).double())
    gt_camera = frame['gt_camera']

    out_dir.mkdir(parents=True, exist_ok=True)
    overlay = draw_projected_boxes(frame['image'], gt_camera, calib.P2, colors=(0, 255, 0))
    overlay = draw_projected_boxes(overlay, pred_camera, calib.P2, labels=names,
                                   scores=result['scores'].tolist(), colors=PRED_COLOR)
    image_path = write_png(out_dir / f'{FRAME_ID}_image.png', overlay)
    bev_path = out_dir / f'{FRAME_ID}_bev.png'
    render_bev(frame['points'], pred_camera.convert_to('lidar', calib.cam2lidar), bev_path,
               gt_boxes=gt_camera.convert_to('lidar', calib.cam2lidar), colors=PRED_COLOR)
    label_path = out_dir / f'{FRAME_ID}_pred.txt'
    write_label_file(label_path, annos_from_camera_boxes(
        result['boxes_3d'], result['bboxes_2d'], result['scores'], names), decimals=4)

    pred_car = torch.from_numpy(np.asarray(names, dtype=object) == 'Car') if names \
        else torch.zeros(0, dtype=torch.bool)
    gt_car = torch.from_numpy(frame['gt_names'] == 'Car')
    matched = {'3d': 0, 'bev': 0}
    if pred_car.any() and gt_car.any():
        pred, gt = pred_camera.tensor[pred_car], gt_camera.tensor[gt_car].double()
        scores = torch.from_numpy(result['scores'])[pred_car]
        matched['3d'] = greedy_matches(box3d_iou(pred, gt, frame='camera'), scores, 0.5)
        matched['bev'] = greedy_matches(bev_iou(boxes3d_to_bev(pred, 'camera'),
                                                boxes3d_to_bev(gt, 'camera')), scores, 0.5)
    return {'detections': len(names), 'max_score': float(result['scores'].max(initial=0.0)),
            'predicted_cars': int(pred_car.sum()),
            'label_cars': int(gt_car.sum()), 'matched': matched, 'image_png': image_path,
            'bev_png': bev_path, 'label_txt': label_path}


def demo_mono3d(work_dir: Path, quick: bool) -> tuple[list[str], dict]:
    num_train, num_val, epochs = MONO3D_QUICK if quick else MONO3D_FULL
    data = work_dir / 'synthetic_mono3d'
    if data.exists():
        shutil.rmtree(data)
    run_tool([sys.executable, '-m', 'perception.datasets.synthetic.mono3d', data,
              '--train', num_train, '--val', num_val, '--seed', 0, '--height', 192,
              '--width', 640],
             f'1/5 rendering {num_train} training and {num_val} held-out synthetic camera frames')
    run_tool([sys.executable, 'tools/create_data.py', 'kitti', '--root-path', data,
              '--workers', 1], '2/5 converting them to KITTI info files')
    roots = [f'{loader}.dataset.data_root={data}'
             for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')]
    labels = [f'{e}.gt_label_dir={data}/training/label_2'
              for e in ('val_evaluator', 'test_evaluator')]
    milestone = max(1, epochs - 1)
    schedule = [f'train_cfg.max_epochs={epochs}', f'train_cfg.val_interval={epochs + 1}',
                f'default_hooks.checkpoint.interval={epochs}', 'default_hooks.logger.interval=10',
                f'param_scheduler.0.milestones=[{milestone}]', f'param_scheduler.0.end={epochs}']
    iters = epochs * -(-num_train // 4)
    checkpoint, metrics, train_seconds = train_and_test(
        MONO3D_CONFIG, work_dir, [*roots, *labels, *schedule], [*roots, *labels],
        f'MonoDETR (ResNet-18, 50 x 11 queries) for {epochs} epochs ({iters} steps)', (3, 5))
    say('KITTI evaluation, held-out synthetic frames (AP40, %):\n'
        + kitti_table(metrics, MONO3D_TABLE))
    say(f'5/5 the trained detector on the real KITTI frame {FRAME_ID} (left image + P2)')
    frame = mono3d_frame_outputs(MONO3D_CONFIG, checkpoint, work_dir / f'kitti_{FRAME_ID}')
    lines = [
        f'training: {iters} steps in {train_seconds:.0f} s on {num_train} synthetic frames',
        'held-out synthetic frames: Car AP40 moderate: 2D (IoU 0.7) '
        f'{metrics.get("kitti/Car_2D_AP40_moderate_strict", float("nan")):.2f}, 3D (IoU 0.5) '
        f'{metrics.get("kitti/Car_3D_AP40_moderate_loose", float("nan")):.2f}',
        f'KITTI frame {FRAME_ID}: {frame["detections"]} detections, {frame["predicted_cars"]} '
        f'Cars; of the label\'s {frame["label_cars"]} Cars {frame["matched"]["3d"]} matched at '
        f'3D IoU 0.5, {frame["matched"]["bev"]} at BEV IoU 0.5',
        'note: a detector trained a few minutes on rendered boxes does not transfer to a real '
        f'camera image (highest score here {frame["max_score"]:.2f}): a match among many '
        'low-score boxes is chance, not detection (the learning check is '
        'tests/test_learning_mono3d.py, about 75 CPU minutes)',
    ]
    outputs = {'image_png': frame['image_png'], 'bev_png': frame['bev_png'],
               'label_txt': frame['label_txt'], 'checkpoint': checkpoint,
               'metrics_json': work_dir / 'test_metrics.json'}
    return lines, outputs


# ----------------------------------------------------------------------------- stereo
STEREO_CONFIG = ROOT / 'configs/raft-stereo/raft-stereo_small_synthetic.py'
MIDDLEBURY = ROOT / 'data/demo/middlebury_motorcycle'
# Training steps (4 generated 64x128 pairs each, disparities up to 16 px) and held-out pairs.
# Full: 120 steps, 5 min 37 s in all with one torch thread, the other core busy (2026-12-08); 80
# steps took 3 min 14 s but left 53 % of the Middlebury disparities outside the scene's range.
STEREO_FULL = (120, 24)
STEREO_QUICK = (6, 4)
# The network sees the 370x248 pair downscaled to this longer side, so that its disparities
# (up to about 31 px at 370x248) fall in the 0-16 px range of the training pairs.
STEREO_MAX_SIDE = 185
# Middlebury's disparity range of Motorcycle (calib.txt vmin = 23, vmax = 245 at 2964 px width)
# at the shipped 1/8 scale: where a correct disparity map lies.
MIDDLEBURY_RANGE = (23 / 8, 245 / 8)


def left_right_consistency(disp_left, disp_right, tolerance: float = 1.0) -> tuple[float, int]:
    """Fraction of left pixels whose disparity the right view confirms within ``tolerance`` px.

    ``disp_right`` is the right view's disparity (a right pixel ``x`` matches left ``x + d``).
    Left pixel ``(y, x)`` is consistent when ``x - d_L`` lies in the image and
    ``|d_L - d_R(y, round(x - d_L))| <= tolerance``; pixels whose match falls outside the right
    image are not counted. Returns the fraction and the number of pixels counted.
    """
    import numpy as np

    h, w = disp_left.shape
    cols = np.arange(w)[None, :] - disp_left
    inside = (cols >= -0.5) & (cols <= w - 0.5)
    target = np.clip(np.rint(cols), 0, w - 1).astype(np.int64)
    rows = np.broadcast_to(np.arange(h)[:, None], (h, w))
    agree = np.abs(disp_left - disp_right[rows, target]) <= tolerance
    counted = int(inside.sum())
    return (float((agree & inside).sum()) / counted if counted else float('nan')), counted


def demo_stereo(work_dir: Path, quick: bool) -> tuple[list[str], dict]:
    import cv2
    import numpy as np

    from perception.datasets.stereo_io import read_pfm

    iters, num_val = STEREO_QUICK if quick else STEREO_FULL
    options = [*schedule_options(iters, None),
               f'param_scheduler.0.total_steps={iters}',
               f'val_dataloader.dataset.num_pairs={num_val}',
               f'test_dataloader.dataset.num_pairs={num_val}']
    checkpoint, metrics, train_seconds = train_and_test(
        STEREO_CONFIG, work_dir, options,
        [f'test_dataloader.dataset.num_pairs={num_val}'],
        f'RAFT-Stereo (1.1 M parameters) on generated 64x128 pairs for {iters} steps', (1, 4))
    say(f'held-out generated pairs ({num_val}): ' + ', '.join(
        f'{key} {metrics[f"stereo/{key}"]:.3f}' for key in ('EPE', 'D1_all', 'bad_1.0', 'bad_3.0')
        if f'stereo/{key}' in metrics))

    out = work_dir / 'middlebury_motorcycle'
    left, right = MIDDLEBURY / 'im0.png', MIDDLEBURY / 'im1.png'
    run_tool([sys.executable, 'tools/infer.py', 'stereo', STEREO_CONFIG, checkpoint,
              '--left', left, '--right', right, '--calib', MIDDLEBURY / 'calib.txt',
              '--max-side', STEREO_MAX_SIDE, '--out-dir', out],
             '3/4 disparity, depth and point cloud of the real Middlebury pair')
    # The right view's disparity: the same tool on the mirrored pair (mirrored right image as
    # the left one), mirrored back.
    mirrored = work_dir / 'mirrored_pair'
    mirrored.mkdir(exist_ok=True)
    cv2.imwrite(str(mirrored / 'left.png'), cv2.imread(str(right))[:, ::-1])
    cv2.imwrite(str(mirrored / 'right.png'), cv2.imread(str(left))[:, ::-1])
    run_tool([sys.executable, 'tools/infer.py', 'stereo', STEREO_CONFIG, checkpoint,
              '--left', mirrored / 'left.png', '--right', mirrored / 'right.png',
              '--max-side', STEREO_MAX_SIDE, '--out-dir', mirrored / 'out'],
             "4/4 the right view's disparity (the mirrored pair), for the left-right check")
    disp = read_pfm(out / 'disp.pfm').astype(np.float64)
    disp_right = read_pfm(mirrored / 'out' / 'disp.pfm')[:, ::-1].astype(np.float64)
    consistent, counted = left_right_consistency(disp, disp_right)
    in_range = float(((disp >= MIDDLEBURY_RANGE[0]) & (disp <= MIDDLEBURY_RANGE[1])).mean())
    depth = read_pfm(out / 'depth.pfm')
    finite = np.isfinite(depth)
    median_depth = float(np.median(depth[finite])) / 1000 if finite.any() else float('nan')
    lines = [
        f'training: {iters} steps in {train_seconds:.0f} s',
        f'held-out generated pairs: EPE {metrics.get("stereo/EPE", float("nan")):.3f} px, '
        f'D1-all {metrics.get("stereo/D1_all", float("nan")):.2f} %',
        f'Middlebury Motorcycle ({disp.shape[1]}x{disp.shape[0]}): disparity '
        f'{np.percentile(disp, 2):.1f}-{np.percentile(disp, 98):.1f} px (2nd-98th percentile), '
        f'median depth {median_depth:.2f} m, left-right consistency {100 * consistent:.1f} % '
        f'of {counted} pixels (|d_L - d_R| <= 1 px), {100 * in_range:.1f} % of pixels inside '
        f"Middlebury's disparity range for this scene ({MIDDLEBURY_RANGE[0]:.1f}-"
        f'{MIDDLEBURY_RANGE[1]:.1f} px)',
        'note: trained minutes on generated 64x128 texture pairs, the model transfers only '
        'partly to a real scene (no ground truth ships with the pair; a near-zero disparity map '
        'is also left-right consistent, so read the two numbers together)',
    ]
    outputs = {'disp_color_png': out / 'disp_color.png', 'disp_png': out / 'disp.png',
               'disp_pfm': out / 'disp.pfm', 'depth_pfm': out / 'depth.pfm',
               'cloud_ply': out / 'cloud.ply', 'checkpoint': checkpoint,
               'metrics_json': work_dir / 'test_metrics.json'}
    return lines, outputs


# ----------------------------------------------------------------------------- seg
SEG_CONFIG = ROOT / 'configs/segformer/segformer_r18_1xb8-300_synthetic-seg-64x128.py'
# (training images, held-out images, steps of 8 crops of 64x128).
SEG_FULL = (300, 40, 300)
SEG_QUICK = (16, 8, 6)


def demo_seg(work_dir: Path, quick: bool) -> tuple[list[str], dict]:
    import numpy as np

    from perception.apis import inference_segmentation, init_model
    from perception.visualization.boxes3d import write_png
    from perception.visualization.overlays import default_palette, overlay_segmentation

    num_train, num_val, iters = SEG_QUICK if quick else SEG_FULL
    data = work_dir / 'synthetic_seg'
    if data.exists():
        shutil.rmtree(data)
    run_tool([sys.executable, '-m', 'perception.datasets.synthetic.segmentation', data,
              '--train', num_train, '--val', num_val],
             f'1/4 rendering {num_train} training and {num_val} held-out textured-shape images')
    roots = [f'{loader}.dataset.data_root={data}'
             for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')]
    checkpoint, metrics, train_seconds = train_and_test(
        SEG_CONFIG, work_dir, [*roots, *schedule_options(iters, ('0', '1'))], roots,
        f'SegFormer (ResNet-18, MLP head) for {iters} steps', (2, 4))
    say(f'held-out synthetic images ({num_val}): mIoU {metrics["seg/mIoU"]:.2f}, aAcc '
        f'{metrics.get("seg/aAcc", float("nan")):.2f} (per class above)')

    say(f'4/4 segmenting the left image of the real KITTI frame {FRAME_ID}')
    model = init_model(str(SEG_CONFIG), str(checkpoint), device='cpu')
    frame = read_kitti_frame()
    labels = inference_segmentation(model, frame['image'])
    classes = list(model.cfg.test_dataloader.dataset.metainfo['classes'])
    palette = default_palette(len(classes))
    out = work_dir / f'kitti_{FRAME_ID}'
    out.mkdir(parents=True, exist_ok=True)
    overlay_path = write_png(out / f'{FRAME_ID}_seg.png',
                             overlay_segmentation(frame['image'], labels, palette))
    shares = np.bincount(labels.ravel(), minlength=len(classes)) / labels.size
    lines = [
        f'training: {iters} steps in {train_seconds:.0f} s on {num_train} synthetic images',
        f'held-out synthetic images: mIoU {metrics["seg/mIoU"]:.2f}',
        f'KITTI frame {FRAME_ID} ({labels.shape[1]}x{labels.shape[0]}): pixels per class: '
        + ', '.join(f'{c} {100 * s:.1f} %' for c, s in zip(classes, shares)),
        "note: the model's classes are synthetic textures (stripes, checkers, speckle), not road "
        'scene classes: on the real image the overlay shows which texture each region resembles, '
        'not a scene segmentation',
    ]
    return lines, {'overlay_png': overlay_path, 'checkpoint': checkpoint,
                   'metrics_json': work_dir / 'test_metrics.json'}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--task', choices=['lidar3d', 'mono3d', 'stereo', 'seg', 'sr'],
                        default='lidar3d')
    parser.add_argument('--work-dir', help='where everything goes (default work_dirs/demo_TASK)')
    parser.add_argument('--quick', action='store_true',
                        help='a reduced schedule that checks the pipeline in about a minute')
    args = parser.parse_args(argv)
    work_dir = Path(args.work_dir or ROOT / f'work_dirs/demo_{args.task}').resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    if args.task == 'sr':
        demo_sr(work_dir, args.quick)
        return 0
    if args.task == 'lidar3d':
        result = demo_lidar3d(work_dir, args.quick)
        summary_lidar3d(result, time.perf_counter() - start)
        return 0
    lines, outputs = {'mono3d': demo_mono3d, 'stereo': demo_stereo,
                      'seg': demo_seg}[args.task](work_dir, args.quick)
    summary(time.perf_counter() - start, lines, outputs)
    return 0


if __name__ == '__main__':
    sys.exit(main())
