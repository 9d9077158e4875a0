# UPerNet on EfficientViT-M5 (levels at strides 16, 32, 64; pyramid pooling on the last) with an FCN
# auxiliary head on stride 32, Cityscapes 512x1024 crops, batch 8 x 2, 80k iterations of the
# transformer AdamW recipe; sliding-window evaluation.
_base_ = [
    '../_base_/models/upernet_r50.py',
    '../_base_/datasets/cityscapes_512x1024.py',
    '../_base_/schedules/adamw-warmup-poly_160k.py',
    '../_base_/default_runtime.py',
]
model = dict(
    backbone=dict(_delete_=True, type='EfficientViT', arch='m5', out_indices=(0, 1, 2)),
    decode_head=dict(in_channels=[192, 288, 384], in_index=(0, 1, 2), num_classes=19),
    auxiliary_head=dict(in_channels=288, in_index=1, num_classes=19),
    test_cfg=dict(mode='slide', crop_size=(512, 1024), stride=(384, 768)),
)
train_dataloader = dict(batch_size=2)
# mmsegmentation's Swin UPerNet trains the heads at the base learning rate.
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'decode_head': dict(lr_mult=1.0)}))
# The transformer recipe over 80k iterations (warm-up as for 160k).
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=1500, end=80000, by_epoch=False),
]
train_cfg = dict(max_iters=80000, val_interval=8000)
default_hooks = dict(checkpoint=dict(interval=8000))
