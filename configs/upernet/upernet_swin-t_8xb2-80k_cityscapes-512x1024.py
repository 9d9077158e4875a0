# UPerNet on Swin-T (drop path 0.3) with an FCN auxiliary head on stage 3, Cityscapes 512x1024
# crops, batch 8 x 2, 80k iterations of mmsegmentation's Swin AdamW recipe; sliding-window
# evaluation.
_base_ = [
    '../_base_/models/upernet_r50.py',
    '../_base_/datasets/cityscapes_512x1024.py',
    '../_base_/schedules/adamw-warmup-poly_160k.py',
    '../_base_/default_runtime.py',
]
model = dict(
    backbone=dict(_delete_=True, type='SwinTransformer', arch='tiny', window_size=7,
                  drop_path_rate=0.3, out_indices=(0, 1, 2, 3)),
    decode_head=dict(in_channels=[96, 192, 384, 768], num_classes=19),
    auxiliary_head=dict(in_channels=384, num_classes=19),
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
