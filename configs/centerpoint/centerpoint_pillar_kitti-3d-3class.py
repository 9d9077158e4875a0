# CenterPoint-pillar on KITTI, Car / Pedestrian / Cyclist: 0.16 m dynamic pillars, SECOND 2D
# backbone + SECONDFPN, CenterHead (one task, rotated NMS per class), mmdetection3d's cyclic
# AdamW schedule over 80 epochs.
# The model's range [0, -39.68, -3, 69.12, 39.68, 1] (see the model config) replaces the dataset
# config's [0, -40, -3, 70.4, 40, 1] in the point and object range filters, so that every labelled
# box has its centre on the head's map.
_base_ = [
    '../_base_/models/centerpoint_kitti.py',
    '../_base_/datasets/kitti-3d-3class.py',
    '../_base_/schedules/cyclic-adamw_80e.py',
    '../_base_/default_runtime.py',
]

point_cloud_range = [0, -39.68, -3, 69.12, 39.68, 1]
data_root = 'data/kitti/'
class_names = ('Car', 'Pedestrian', 'Cyclist')

train_pipeline = [
    dict(type='LoadPointsFromFile', num_features=4, use_dims=4),
    dict(type='LoadAnnotations3D'),
    # db_info_path is taken under data_root (ObjectSample).
    dict(type='ObjectSample', db_info_path='kitti_dbinfos_train.pkl',
         data_root=data_root, classes=class_names,
         sample_groups=dict(Car=15, Pedestrian=10, Cyclist=10),
         min_points=dict(Car=5, Pedestrian=5, Cyclist=5)),
    dict(type='RandomFlip3D', flip_ratio_bev_horizontal=0.5),
    dict(type='GlobalRotScaleTrans', rot_range=[-0.78539816, 0.78539816],
         scale_ratio_range=[0.95, 1.05]),
    dict(type='PointsRangeFilter', point_cloud_range=point_cloud_range),
    dict(type='ObjectRangeFilter', point_cloud_range=point_cloud_range),
    dict(type='PointShuffle'),
    dict(type='Pack3DDetInputs', keys=['points', 'gt_bboxes_3d', 'gt_labels_3d']),
]
test_pipeline = [
    dict(type='LoadPointsFromFile', num_features=4, use_dims=4),
    dict(type='PointsRangeFilter', point_cloud_range=point_cloud_range),
    dict(type='Pack3DDetInputs', keys=['points']),
]
train_dataloader = dict(batch_size=4, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

default_hooks = dict(checkpoint=dict(by_epoch=True, interval=5, max_keep_ckpts=3))
log_processor = dict(by_epoch=True)
