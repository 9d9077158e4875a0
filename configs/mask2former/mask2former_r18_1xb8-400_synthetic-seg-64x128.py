# Demo: a small Mask2Former (64 channels, 16 queries, 2 pixel-decoder and 3 transformer-decoder
# layers, 2048 sampled points) on ResNet-18, trained from scratch on the synthetic textured-shape
# data (configs/_base_/datasets/synthetic-seg_64x128.py says how to write it); learning test in
# tests/test_learning_segmentation.py.
_base_ = [
    '../_base_/models/mask2former_r50.py',
    '../_base_/datasets/synthetic-seg_64x128.py',
    '../_base_/default_runtime.py',
]
model = dict(
    backbone=dict(depth=18),
    decode_head=dict(in_channels=[64, 128, 256, 512], num_classes=5, num_queries=16,
                     embed_dims=64, pixel_decoder_layers=2, pixel_decoder_ffn_dims=128,
                     decoder_layers=3, decoder_ffn_dims=256, train_num_points=2048),
)
# Mask2Former's AdamW recipe at a from-scratch learning rate, with a looser gradient clip.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05),
    clip_grad=dict(max_norm=1.0, norm_type=2),
    paramwise_cfg=dict(norm_decay_mult=0.0, custom_keys={
        'query_embed': dict(decay_mult=0.0), 'query_feat': dict(decay_mult=0.0),
        'level_embed': dict(decay_mult=0.0)}),
)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=20),
    dict(type='PolyLR', eta_min=0.0, power=0.9, begin=20, end=400, by_epoch=False),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=400, val_interval=400)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(logger=dict(interval=20),
                     checkpoint=dict(interval=400, max_keep_ckpts=1))
