"""`make demo`: LiDAR 3D detection end to end, with the tools users run.

    python tools/demo.py [--task lidar3d|sr] [--work-dir DIR] [--quick]

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


def kitti_table(metrics: dict) -> str:
    """The Car rows of KITTI's table (AP40, easy / moderate / hard) as text."""
    lines = [f'{"":24s} {"easy":>8s} {"moderate":>9s} {"hard":>8s}']
    for title, key in TABLE_KEYS:
        values = [metrics.get(key.format(level)) for level in ('easy', 'moderate', 'hard')]
        if all(v is None for v in values):
            continue
        lines.append(f'{title:24s} ' + ' '.join(
            f'{v:{w}.2f}' if v is not None else f'{"-":>{w}s}' for v, w in zip(values, (8, 9, 8))))
    return '\n'.join(lines)


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
        order = torch.argsort(torch.from_numpy(result['scores'])[pred_car], descending=True)
        taken = torch.zeros(iou.shape[1], dtype=bool)
        for i in order.tolist():  # a handful of boxes
            ious = torch.where(taken, -1.0, iou[i])
            j = int(ious.argmax())
            if ious[j] >= 0.5:
                taken[j] = True
                matched += 1
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--task', choices=['lidar3d', 'sr'], default='lidar3d')
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
    result = demo_lidar3d(work_dir, args.quick)
    summary_lidar3d(result, time.perf_counter() - start)
    return 0


if __name__ == '__main__':
    sys.exit(main())
