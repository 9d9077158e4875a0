# SegFormer head (256 channels, as SegFormer-B0/B1) on EfficientViT-M5 (strides 16, 32, 64),
# Cityscapes 512x1024 crops, batch 8 x 2, 160k iterations with SegFormer's AdamW recipe; sliding-
# window evaluation.
_base_ = [
    '../_base_/models/segformer_r50.py',
    '../_base_/datasets/cityscapes_512x1024.py',
    '../_base_/schedules/adamw-warmup-poly_160k.py',
    '../_base_/default_runtime.py',
]
model = dict(
    backbone=dict(_delete_=True, type='EfficientViT', arch='m5', out_indices=(0, 1, 2)),
    decode_head=dict(in_channels=[192, 288, 384], in_index=(0, 1, 2), channels=256,
                     num_classes=19),
    test_cfg=dict(mode='slide', crop_size=(512, 1024), stride=(384, 768)),
)
default_hooks = dict(checkpoint=dict(interval=16000))
