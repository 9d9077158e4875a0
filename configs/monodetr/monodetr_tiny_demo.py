# A small MonoDETR for CPU demos and learning tests: ResNet-18, 10 queries x 2 groups, one
# encoder and two decoder layers, 192x640 images, a short schedule without augmentation.
_base_ = ['./monodetr_r50_kitti-mono3d.py']

img_shape = (192, 640)
model = dict(backbone=dict(depth=18), num_queries=10, num_groups=2, num_encoder_layers=1,
             num_decoder_layers=2, dropout=0.0, test_cfg=dict(score_thr=0.05))
meta_keys = {{_base_.meta_keys}}
train_pipeline = [
    dict(type='LoadImage'),
    dict(type='LoadAnnotations3D', with_bbox_3d=True, with_label_3d=True, with_bbox=True,
         with_label=True, extra_keys=('truncated', 'occluded')),
    dict(type='Mono3DResize', out_shape=img_shape, keep_ratio=True),
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
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                        dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(num_workers=0, persistent_workers=False,
                      dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

max_epochs = 50
train_cfg = dict(max_epochs=max_epochs, val_interval=50)
optim_wrapper = dict(optimizer=dict(lr=1e-3))
param_scheduler = [dict(type='MultiStepLR', milestones=[40], gamma=0.1, by_epoch=True, begin=0,
                        end=max_epochs)]
default_hooks = dict(checkpoint=dict(interval=50), logger=dict(interval=5))
