# SegFormer head on Swin-T (drop path 0.1), Cityscapes 512x1024 crops, batch 8 x 2, 160k iterations
# with SegFormer's AdamW recipe; sliding-window evaluation.
_base_ = [
    '../_base_/models/segformer_r50.py',
    '../_base_/datasets/cityscapes_512x1024.py',
    '../_base_/schedules/adamw-warmup-poly_160k.py',
    '../_base_/default_runtime.py',
]
model = dict(
    backbone=dict(_delete_=True, type='SwinTransformer', arch='tiny', window_size=7,
                  drop_path_rate=0.1, out_indices=(0, 1, 2, 3)),
    decode_head=dict(in_channels=[96, 192, 384, 768], num_classes=19),
    test_cfg=dict(mode='slide', crop_size=(512, 1024), stride=(384, 768)),
)
default_hooks = dict(checkpoint=dict(interval=16000))
