# Mask2Former on EfficientViT-M5, ADE20K 512x512 crops, batch 8 x 2, 160k iterations of
# Mask2Former's AdamW poly recipe. The backbone has three levels (strides 16, 32, 64); an FPN neck
# brings them to 256 channels and adds a fourth (stride 128) so the head gets the four levels it
# expects (its mask features are then at stride 16).
_base_ = [
    '../_base_/models/mask2former_r50.py',
    '../_base_/datasets/ade20k_512x512.py',
    '../_base_/schedules/mask2former_adamw-poly_90k.py',
    '../_base_/default_runtime.py',
]
model = dict(
    backbone=dict(_delete_=True, type='EfficientViT', arch='m5', out_indices=(0, 1, 2)),
    neck=dict(type='FPN', in_channels=[192, 288, 384], out_channels=256, num_outs=4,
              add_extra_convs='on_output'),
    decode_head=dict(in_channels=[256, 256, 256, 256], num_classes=150),
)
train_dataloader = dict(batch_size=2)
param_scheduler = [
    dict(type='PolyLR', eta_min=0.0, power=0.9, begin=0, end=160000, by_epoch=False),
]
train_cfg = dict(max_iters=160000)
default_hooks = dict(checkpoint=dict(interval=5000))
