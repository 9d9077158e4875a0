# SegFormer head on ResNet-50, ADE20K 512x512 crops, batch 8 x 2, 160k iterations with SegFormer's
# AdamW recipe.
_base_ = [
    '../_base_/models/segformer_r50.py',
    '../_base_/datasets/ade20k_512x512.py',
    '../_base_/schedules/adamw-warmup-poly_160k.py',
    '../_base_/default_runtime.py',
]
model = dict(decode_head=dict(num_classes=150))
train_dataloader = dict(batch_size=2)
default_hooks = dict(checkpoint=dict(interval=16000))
