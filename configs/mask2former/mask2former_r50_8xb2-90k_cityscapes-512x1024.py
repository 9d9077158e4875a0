# Mask2Former on ResNet-50, Cityscapes 512x1024 crops, batch 8 x 2, 90k iterations of Mask2Former's
# AdamW poly recipe; whole-image evaluation at full resolution, as the official configs.
_base_ = [
    '../_base_/models/mask2former_r50.py',
    '../_base_/datasets/cityscapes_512x1024.py',
    '../_base_/schedules/mask2former_adamw-poly_90k.py',
    '../_base_/default_runtime.py',
]
model = dict(decode_head=dict(num_classes=19))
train_dataloader = dict(batch_size=2)
default_hooks = dict(checkpoint=dict(interval=5000))
