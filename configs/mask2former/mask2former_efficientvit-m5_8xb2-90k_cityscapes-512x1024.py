# Mask2Former on EfficientViT-M5, Cityscapes 512x1024 crops, batch 8 x 2, 90k iterations of
# Mask2Former's AdamW poly recipe; whole-image evaluation at full resolution, as the official
# configs. The backbone has three levels (strides 16, 32, 64); an FPN neck brings them to 256
# channels and adds a fourth (stride 128) so the head gets the four levels it expects (its mask
# features are then at stride 16).
_base_ = [
    '../_base_/models/mask2former_r50.py',
    '../_base_/datasets/cityscapes_512x1024.py',
    '../_base_/schedules/mask2former_adamw-poly_90k.py',
    '../_base_/default_runtime.py',
]
model = dict(
    backbone=dict(_delete_=True, type='EfficientViT', arch='m5', out_indices=(0, 1, 2)),
    neck=dict(type='FPN', in_channels=[192, 288, 384], out_channels=256, num_outs=4,
              add_extra_convs='on_output'),
    decode_head=dict(in_channels=[256, 256, 256, 256], num_classes=19),
)
train_dataloader = dict(batch_size=2)
default_hooks = dict(checkpoint=dict(interval=5000))
