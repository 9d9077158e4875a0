# nuScenes 3D detection, LiDAR with 10 sweeps, 10 classes: infos from
# `tools/create_data.py nuscenes`, boxes in the LiDAR frame with velocity.
dataset_type = 'NuScenesDataset'
data_root = 'data/nuscenes/'
class_names = ('car', 'truck', 'construction_vehicle', 'bus', 'trailer', 'barrier', 'motorcycle',
               'bicycle', 'pedestrian', 'traffic_cone')
metainfo = dict(classes=class_names)
point_cloud_range = [-51.2, -51.2, -5.0, 51.2, 51.2, 3.0]

train_pipeline = [
    dict(type='LoadPointsFromFile', num_features=5, use_dims=5),
    dict(type='LoadPointsFromMultiSweeps', sweeps_num=9, use_dims=[0, 1, 2, 3, 4]),
    dict(type='LoadAnnotations3D'),
    dict(type='GlobalRotScaleTrans', rot_range=[-0.3925, 0.3925],
         scale_ratio_range=[0.95, 1.05]),
    dict(type='RandomFlip3D', flip_ratio_bev_horizontal=0.5, flip_ratio_bev_vertical=0.5),
    dict(type='PointsRangeFilter', point_cloud_range=point_cloud_range),
    dict(type='ObjectRangeFilter', point_cloud_range=point_cloud_range),
    dict(type='ObjectNameFilter', classes=class_names),
    dict(type='PointShuffle'),
    dict(type='Pack3DDetInputs', keys=['points', 'gt_bboxes_3d', 'gt_labels_3d']),
]
test_pipeline = [
    dict(type='LoadPointsFromFile', num_features=5, use_dims=5),
    dict(type='LoadPointsFromMultiSweeps', sweeps_num=9, use_dims=[0, 1, 2, 3, 4],
         test_mode=True),
    dict(type='PointsRangeFilter', point_cloud_range=point_cloud_range),
    dict(type='Pack3DDetInputs', keys=['points']),
]

train_dataloader = dict(
    batch_size=4,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(type=dataset_type, data_root=data_root, ann_file='nuscenes_infos_train.pkl',
                 metainfo=metainfo, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=1,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(type=dataset_type, data_root=data_root, ann_file='nuscenes_infos_val.pkl',
                 metainfo=metainfo, pipeline=test_pipeline, test_mode=True))
test_dataloader = val_dataloader

val_evaluator = dict(type='NuScenesMetric')
test_evaluator = val_evaluator
