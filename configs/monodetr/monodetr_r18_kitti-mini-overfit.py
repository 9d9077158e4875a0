# MonoDETR overfitting the three real frames of the shared kitti_mini sample (000000, 000007,
# 000008): a learning check, not a benchmark. The tiny demo model (ResNet-18 from scratch,
# 10 queries x 2 groups, 1 encoder + 2 decoder layers, 192x640) trained on all three frames
# without augmentation and evaluated on the same frames.
# Data: convert the sample with `tools/create_data.py kitti --root-path ../shared/data/kitti_mini
# --out-dir OUT` and point `ann_file` at OUT/kitti_infos_trainval.pkl (absolute path).
#
# Evaluation repeats the three frames 9 times: they hold only 5 moderate Cars, and the KITTI
# devkit caps AP40 at (n - 1) / 40 for n < 41 valid objects (docs/conventions.md), so without the
# repetition even perfect detections would score 10. With 45 (identical) objects the precision /
# recall curve is that of the three frames, sampled finely enough for perfect detections to
# score 100.
_base_ = ['./monodetr_tiny_demo.py']

data_root = '../shared/data/kitti_mini/'
ann_file = 'kitti_infos_trainval.pkl'
img_shape = (192, 640)
eval_repeats = 9

model = dict(test_cfg=dict(score_thr=0.05))
train_dataloader = dict(
    batch_size=3,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(data_root=data_root, ann_file=ann_file, filter_empty_gt=False))
val_dataloader = dict(
    batch_size=3,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(_delete_=True, type='RepeatDataset', times=eval_repeats,
                 dataset=dict(type='KittiDataset', data_root=data_root, ann_file=ann_file,
                              modality=dict(use_lidar=False, use_camera=True),
                              box_frame='camera', metainfo={{_base_.metainfo}},
                              pipeline={{_base_.test_pipeline}}, test_mode=True)))
test_dataloader = val_dataloader
val_evaluator = dict(classes=['Car'], gt_label_dir=data_root + 'training/label_2')
test_evaluator = val_evaluator

max_epochs = 250
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs + 1)
optim_wrapper = dict(optimizer=dict(lr=1e-3), clip_grad=dict(max_norm=1.0))
param_scheduler = [dict(type='MultiStepLR', milestones=[200], gamma=0.1, by_epoch=True, begin=0,
                        end=max_epochs)]
default_hooks = dict(checkpoint=dict(interval=max_epochs), logger=dict(interval=10))
