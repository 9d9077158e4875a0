# KITTI 3D detection, LiDAR, 3 classes: infos from `tools/create_data.py kitti`, boxes in the LiDAR
# frame, SECOND/PointPillars-style augmentation (object paste, flip, global rotation and scaling).
dataset_type = 'KittiDataset'
data_root = 'data/kitti/'
class_names = ('Car', 'Pedestrian', 'Cyclist')
metainfo = dict(classes=class_names)
point_cloud_range = [0, -40, -3, 70.4, 40, 1]

train_pipeline = [
    dict(type='LoadPointsFromFile', num_features=4, use_dims=4),
    dict(type='LoadAnnotations3D'),
    dict(type='ObjectSample', db_info_path='kitti_dbinfos_train.pkl',  # under data_root
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

train_dataloader = dict(
    batch_size=4,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(type=dataset_type, data_root=data_root, ann_file='kitti_infos_train.pkl',
                 modality=dict(use_lidar=True), box_frame='lidar', metainfo=metainfo,
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=1,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(type=dataset_type, data_root=data_root, ann_file='kitti_infos_val.pkl',
                 modality=dict(use_lidar=True), box_frame='lidar', metainfo=metainfo,
                 pipeline=test_pipeline, test_mode=True))
test_dataloader = val_dataloader

val_evaluator = dict(type='KittiMetric', classes=class_names,
                     gt_label_dir=data_root + 'training/label_2')
test_evaluator = val_evaluator
