# Mask2Former on ResNet-50, ADE20K 512x512 crops, batch 8 x 2, 160k iterations of Mask2Former's
# AdamW poly recipe.
_base_ = [
    '../_base_/models/mask2former_r50.py',
    '../_base_/datasets/ade20k_512x512.py',
    '../_base_/schedules/mask2former_adamw-poly_90k.py',
    '../_base_/default_runtime.py',
]
model = dict(decode_head=dict(num_classes=150))
train_dataloader = dict(batch_size=2)
param_scheduler = [
    dict(type='PolyLR', eta_min=0.0, power=0.9, begin=0, end=160000, by_epoch=False),
]
train_cfg = dict(max_iters=160000)
default_hooks = dict(checkpoint=dict(interval=5000))
