# SegFormer head on ResNet-50, Cityscapes 512x1024 crops, batch 8 x 2, 160k iterations with
# SegFormer's AdamW recipe; sliding-window evaluation at full resolution.
_base_ = [
    '../_base_/models/segformer_r50.py',
    '../_base_/datasets/cityscapes_512x1024.py',
    '../_base_/schedules/adamw-warmup-poly_160k.py',
    '../_base_/default_runtime.py',
]
model = dict(test_cfg=dict(mode='slide', crop_size=(512, 1024), stride=(384, 768)))
default_hooks = dict(checkpoint=dict(interval=16000))
