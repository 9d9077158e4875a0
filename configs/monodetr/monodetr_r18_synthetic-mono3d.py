# MonoDETR learning check on synthetic monocular scenes (perception.datasets.synthetic.mono3d:
# textured boxes "cars" on a textured ground plane seen by KITTI's camera, P2 scaled to 192x640),
# written in the KITTI layout and converted with tools/create_data.py kitti:
#   python -m perception.datasets.synthetic.mono3d data/synthetic_mono3d --train 480 --val 50 \
#       --height 192 --width 640
#   python tools/create_data.py kitti --root-path data/synthetic_mono3d
# The tiny demo model (ResNet-18 from scratch, 1 encoder + 2 decoder layers) with MonoDETR's
# published queries, 50 x 11 groups in training; Car only, with random flips; the 192x640 frames
# are fed at half size (96x320) to fit a CPU budget (labels, difficulty and scores stay in the
# 192x640 frame); scored on the held-out val frames.
# Why 11 groups: with the demo's 10 queries x 2 groups the loss stalled near 20 after two epochs
# (2D center and GIoU losses flat from epoch 5 to 16, held-out 2D AP40 0.15): too few queries,
# each sampling near its own reference points, to cover the image. With 50 x 11 they fell from
# the first epoch.
# Measured (2026-11, one thread, 480 train / 50 val frames, seed 0), held-out Car AP40 moderate:
#   epoch   2D strict   BEV loose   3D loose   3D strict
#       8        24.1         0.7        0.4         0.1
#      16        51.5        15.1       14.3         0.1
#      24        57.6        19.1       16.3         1.0
#      32        67.7        29.8       24.5         0.5
#      40        83.5        37.7       31.8         5.6   (this config; lr / 10 after epoch 32)
# About 4,500 CPU-s of training (0.95 s per iteration). Depth is what keeps the 3D numbers below
# the 2D ones: the cars are 12-18 px tall at this input size.
_base_ = ['./monodetr_tiny_demo.py']

data_root = 'data/synthetic_mono3d/'
class_names = ('Car',)
metainfo = dict(classes=class_names)
img_shape = (96, 320)  # network input; the frames are 192x640
meta_keys = {{_base_.meta_keys}}

model = dict(classes=class_names, num_queries=50, num_groups=11,
             test_cfg=dict(score_thr=0.05))
train_pipeline = [
    dict(type='LoadImage'),
    dict(type='LoadAnnotations3D', with_bbox_3d=True, with_label_3d=True, with_bbox=True,
         with_label=True, extra_keys=('truncated', 'occluded')),
    dict(type='RandomFlip3D', flip_ratio_bev_horizontal=0.5),
    dict(type='Mono3DResize', out_shape=img_shape, keep_ratio=True),
    dict(type='Mono3DTargets', min_depth=2.0, max_depth=65.0),
    dict(type='Pack3DDetInputs',
         keys=('img', 'gt_bboxes_3d', 'gt_labels_3d', 'gt_bboxes', 'gt_labels', 'centers_2d',
               'depths'),
         meta_keys=meta_keys),
]
train_dataloader = dict(
    batch_size=4,
    dataset=dict(data_root=data_root, ann_file='kitti_infos_train.pkl', metainfo=metainfo,
                 pipeline=train_pipeline))
test_pipeline = [
    dict(type='LoadImage'),
    dict(type='Mono3DResize', out_shape=img_shape, keep_ratio=True),
    dict(type='Pack3DDetInputs', keys=('img',), meta_keys=meta_keys),
]
val_dataloader = dict(
    batch_size=4,
    dataset=dict(data_root=data_root, ann_file='kitti_infos_val.pkl', metainfo=metainfo,
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(classes=list(class_names), gt_label_dir=data_root + 'training/label_2')
test_evaluator = val_evaluator

max_epochs = 40  # 120 iterations of 4 frames each
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
optim_wrapper = dict(optimizer=dict(lr=5e-4), clip_grad=dict(max_norm=1.0))
param_scheduler = [dict(type='MultiStepLR', milestones=[32], gamma=0.1, by_epoch=True, begin=0,
                        end=max_epochs)]
default_hooks = dict(checkpoint=dict(interval=max_epochs), logger=dict(interval=10))
