# SegFormer's and mmsegmentation's Swin schedule: AdamW (lr 6e-5, weight decay 0.01), linear
# warm-up from 1e-6 x lr over 1500 iterations, then linear (poly, power 1) decay to 0 at 160k.
# No weight decay on norms, position / relative-bias tables; the decode head learns 10x faster
# (SegFormer's head_lr_mult; mmseg's Swin UPerNet keeps 1x and overrides it).
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        custom_keys={
            'relative_position_bias_table': dict(decay_mult=0.0),
            'attention_biases': dict(decay_mult=0.0),
            'decode_head': dict(lr_mult=10.0),
        }),
)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=1500, end=160000, by_epoch=False),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=160000, val_interval=16000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
