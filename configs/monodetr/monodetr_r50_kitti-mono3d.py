# MonoDETR (Zhang et al., ICCV 2023) on KITTI mono3D with the published settings
# (ZrrSkywalker/MonoDETR configs/monodetr.yaml): ResNet-50, 50 queries x 11 groups, 3 + 3 layers,
# 80 LID bins over [1e-3, 60] m; AdamW lr 2e-4 wd 1e-4, batch 16, 195 epochs, lr x0.1 at epochs
# 125 and 165; images 384x1280; flip 0.5, random crop 0.5 with scale / shift 0.05.
# The published yaml sets `warmup: False` (its optional warm-up: 5 epochs rising from 1e-5);
# set `warmup_epochs = 5` below for a linear one.
_base_ = ['../_base_/default_runtime.py']

dataset_type = 'KittiDataset'
data_root = 'data/kitti/'
class_names = ('Car', 'Pedestrian', 'Cyclist')
metainfo = dict(classes=class_names)
img_shape = (384, 1280)
meta_keys = ('sample_idx', 'frame_id', 'img_path', 'ori_shape', 'img_shape', 'cam2img',
             'ori_cam2img', 'scale_factor', 'img_affine', 'flip', 'flip_direction', 'box_frame')

model = dict(
    type='MonoDETR',
    data_preprocessor=dict(type='MonoDETRDataPreprocessor', size_divisor=32),
    backbone=dict(type='ResNet', depth=50, out_indices=(1, 2, 3)),
    classes=class_names,
    num_queries=50,
    num_groups=11,
    hidden_dim=256,
    num_heads=8,
    d_ffn=256,
    dropout=0.1,
    num_feature_levels=4,
    num_encoder_layers=3,
    num_decoder_layers=3,
    enc_points=4,
    dec_points=4,
    num_depth_bins=80,
    depth_min=1e-3,
    depth_max=60.0,
    depth_mode='monodetr',
    mean_size=None,  # published: absolute sizes (meanshape: False); 'kitti' for class means
    freeze_backbone_stages=1,
    freeze_backbone_norm=True,
    matcher=dict(cost_class=2.0, cost_bbox=5.0, cost_giou=2.0, cost_center=10.0),
    loss=dict(focal_alpha=0.25,
              weights=dict(loss_ce=2.0, loss_bbox=5.0, loss_giou=2.0, loss_center=10.0,
                           loss_depth=1.0, loss_dim=1.0, loss_angle=1.0, loss_depth_map=1.0)),
    test_cfg=dict(topk=50, score_thr=0.2))
# The official model starts from torchvision's ImageNet ResNet-50; converted official weights:
# load_from = 'checkpoints/monodetr_official.pth'  # tools/convert_ckpt.py monodetr OFFICIAL.pth

train_pipeline = [
    dict(type='LoadImage'),
    dict(type='LoadAnnotations3D', with_bbox_3d=True, with_label_3d=True, with_bbox=True,
         with_label=True, extra_keys=('truncated', 'occluded')),
    dict(type='Mono3DPhotoMetric'),
    dict(type='RandomFlip3D', flip_ratio_bev_horizontal=0.5),
    dict(type='Mono3DRandomCropResize', out_shape=img_shape, crop_prob=0.5, scale=0.05,
         shift=0.05),
    dict(type='Mono3DTargets', min_depth=2.0, max_depth=65.0),
    dict(type='Pack3DDetInputs',
         keys=('img', 'gt_bboxes_3d', 'gt_labels_3d', 'gt_bboxes', 'gt_labels', 'centers_2d',
               'depths'),
         meta_keys=meta_keys),
]
test_pipeline = [
    dict(type='LoadImage'),
    dict(type='Mono3DResize', out_shape=img_shape, keep_ratio=True),
    dict(type='Pack3DDetInputs', keys=('img',), meta_keys=meta_keys),
]

train_dataloader = dict(
    batch_size=16,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(type=dataset_type, data_root=data_root, ann_file='kitti_infos_train.pkl',
                 modality=dict(use_lidar=False, use_camera=True), box_frame='camera',
                 metainfo=metainfo,
                 filter_empty_gt=True, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(type=dataset_type, data_root=data_root, ann_file='kitti_infos_val.pkl',
                 modality=dict(use_lidar=False, use_camera=True), box_frame='camera',
                 metainfo=metainfo,
                 pipeline=test_pipeline, test_mode=True))
test_dataloader = val_dataloader
val_evaluator = dict(type='KittiMetric', classes=class_names,
                     gt_label_dir=data_root + 'training/label_2')
test_evaluator = val_evaluator

max_epochs = 195
warmup_epochs = 0
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=5)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(type='OptimWrapper',
                     optimizer=dict(type='AdamW', lr=2e-4, weight_decay=1e-4))
param_scheduler = [
    dict(type='MultiStepLR', milestones=[125, 165], gamma=0.1, by_epoch=True, begin=0,
         end=max_epochs),
]
if warmup_epochs:
    param_scheduler.insert(0, dict(type='LinearLR', start_factor=0.05, by_epoch=True, begin=0,
                                   end=warmup_epochs, convert_to_iter_based=True))
default_hooks = dict(checkpoint=dict(by_epoch=True, interval=5, max_keep_ckpts=3))
log_processor = dict(by_epoch=True)
auto_scale_lr = dict(enable=False, base_batch_size=16)
