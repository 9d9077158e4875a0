# LION-Mamba demo detector overfitting frame 000008 of the shared kitti_mini sample: a learning
# check, not a benchmark. The tiny LION-Mamba of lion-mamba_demo.py trained on that one frame
# without augmentation and evaluated on the same frame (Car, BEV and 3D AP40).
# Data: convert the sample with `tools/create_data.py kitti --root-path ../shared/data/kitti_mini
# --out-dir OUT`, set `data_root` to OUT (it holds training/velodyne_reduced) and `gt_label_dir` to
# the sample's training/label_2. Only 000008 has a point cloud among the train/val frames
# (000007 has none), so the val split (000008 alone) is both training and evaluation set.
#
# Evaluation repeats the frame 11 times: it holds only 4 moderate Cars, and the KITTI devkit caps
# AP40 at (n - 1) / 40 for n < 41 valid objects (docs/conventions.md); with 44 identical objects
# perfect detections score 100.
#
# Measured (one torch thread, CPU): Car BEV AP40 moderate (IoU 0.7) 100 and 3D AP40 (IoU 0.7)
# 100 after 400 iterations, about 1 s per iteration (2026-12-07; the heatmap loss is below 1e-3
# from iteration 160, yet 250 iterations reach only BEV AP40 6.25).
_base_ = ['./lion-mamba_demo.py']

data_root = '../shared/data/kitti_mini/'
ann_file = 'kitti_infos_val.pkl'
eval_repeats = 11
point_cloud_range = [0, -39.68, -3, 69.12, 39.68, 1]

train_pipeline = [
    dict(type='LoadPointsFromFile', num_features=4, use_dims=4),
    dict(type='LoadAnnotations3D'),
    dict(type='PointsRangeFilter', point_cloud_range=point_cloud_range),
    dict(type='ObjectRangeFilter', point_cloud_range=point_cloud_range),
    dict(type='Pack3DDetInputs', keys=['points', 'gt_bboxes_3d', 'gt_labels_3d']),
]
# InfiniteSampler: with a one-frame epoch mmengine's iteration loop would restart (and sleep 2 s)
# after every iteration.
train_dataloader = dict(
    batch_size=1,
    sampler=dict(type='InfiniteSampler', shuffle=False),
    dataset=dict(data_root=data_root, ann_file=ann_file, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    dataset=dict(_delete_=True, type='RepeatDataset', times=eval_repeats,
                 dataset=dict(type='KittiDataset', data_root=data_root, ann_file=ann_file,
                              modality=dict(use_lidar=True), box_frame='lidar',
                              metainfo={{_base_.metainfo}}, pipeline={{_base_.test_pipeline}},
                              test_mode=True)))
test_dataloader = val_dataloader
val_evaluator = dict(classes=['Car'], gt_label_dir=data_root + 'training/label_2')
test_evaluator = val_evaluator

max_iters = 400
train_cfg = dict(max_iters=max_iters, val_interval=max_iters + 1)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=20),
    dict(type='CosineAnnealingLR', T_max=max_iters - 20, eta_min=3e-5, by_epoch=False, begin=20,
         end=max_iters),
]
default_hooks = dict(checkpoint=dict(interval=max_iters), logger=dict(interval=20))
