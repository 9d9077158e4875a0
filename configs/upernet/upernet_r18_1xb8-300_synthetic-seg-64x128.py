# Demo: UPerNet (64 channels) with an FCN auxiliary head on ResNet-18, trained from scratch on the
# synthetic textured-shape data (configs/_base_/datasets/synthetic-seg_64x128.py says how to write
# it). 300 AdamW steps on a CPU reach mIoU > 80 on the held-out images
# (tests/test_learning_segmentation.py).
_base_ = [
    '../_base_/models/upernet_r50.py',
    '../_base_/datasets/synthetic-seg_64x128.py',
    '../_base_/default_runtime.py',
]
model = dict(
    backbone=dict(depth=18),
    decode_head=dict(in_channels=[64, 128, 256, 512], channels=64, num_classes=5),
    auxiliary_head=dict(in_channels=256, channels=32, num_classes=5),
)
optim_wrapper = dict(type='OptimWrapper',
                     optimizer=dict(type='AdamW', lr=2e-3, weight_decay=1e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=20),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=20, end=300, by_epoch=False),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=300, val_interval=300)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(logger=dict(interval=20),
                     checkpoint=dict(interval=300, max_keep_ckpts=1))
