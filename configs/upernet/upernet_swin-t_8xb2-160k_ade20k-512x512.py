# UPerNet on Swin-T (drop path 0.3) with an FCN auxiliary head on stage 3, ADE20K 512x512 crops,
# batch 8 x 2, 160k iterations of mmsegmentation's Swin AdamW recipe.
_base_ = [
    '../_base_/models/upernet_r50.py',
    '../_base_/datasets/ade20k_512x512.py',
    '../_base_/schedules/adamw-warmup-poly_160k.py',
    '../_base_/default_runtime.py',
]
model = dict(
    backbone=dict(_delete_=True, type='SwinTransformer', arch='tiny', window_size=7,
                  drop_path_rate=0.3, out_indices=(0, 1, 2, 3)),
    decode_head=dict(in_channels=[96, 192, 384, 768], num_classes=150),
    auxiliary_head=dict(in_channels=384, num_classes=150),
)
train_dataloader = dict(batch_size=2)
# mmsegmentation's Swin UPerNet trains the heads at the base learning rate.
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'decode_head': dict(lr_mult=1.0)}))
default_hooks = dict(checkpoint=dict(interval=16000))
