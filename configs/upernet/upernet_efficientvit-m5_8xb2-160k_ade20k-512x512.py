# UPerNet on EfficientViT-M5 (levels at strides 16, 32, 64; pyramid pooling on the last) with an FCN
# auxiliary head on stride 32, ADE20K 512x512 crops, batch 8 x 2, 160k iterations of the transformer
# AdamW recipe.
_base_ = [
    '../_base_/models/upernet_r50.py',
    '../_base_/datasets/ade20k_512x512.py',
    '../_base_/schedules/adamw-warmup-poly_160k.py',
    '../_base_/default_runtime.py',
]
model = dict(
    backbone=dict(_delete_=True, type='EfficientViT', arch='m5', out_indices=(0, 1, 2)),
    decode_head=dict(in_channels=[192, 288, 384], in_index=(0, 1, 2), num_classes=150),
    auxiliary_head=dict(in_channels=288, in_index=1, num_classes=150),
)
train_dataloader = dict(batch_size=2)
# mmsegmentation's Swin UPerNet trains the heads at the base learning rate.
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'decode_head': dict(lr_mult=1.0)}))
default_hooks = dict(checkpoint=dict(interval=16000))
