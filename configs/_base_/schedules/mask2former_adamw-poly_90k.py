# Mask2Former's semantic segmentation schedule: AdamW (lr 1e-4, weight decay 0.05, eps 1e-8),
# backbone at 0.1x lr, no weight decay on norms, queries and level embeddings, gradient clipping
# at L2 norm 0.01, poly decay (power 0.9) to 0 over 90k iterations (Cityscapes; ADE20K: 160k).
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05),
    clip_grad=dict(max_norm=0.01, norm_type=2),
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        custom_keys={
            'backbone': dict(lr_mult=0.1, decay_mult=1.0),
            'query_embed': dict(lr_mult=1.0, decay_mult=0.0),
            'query_feat': dict(lr_mult=1.0, decay_mult=0.0),
            'level_embed': dict(lr_mult=1.0, decay_mult=0.0),
            'relative_position_bias_table': dict(decay_mult=0.0),
            'attention_biases': dict(decay_mult=0.0),
        }),
)
param_scheduler = [
    dict(type='PolyLR', eta_min=0.0, power=0.9, begin=0, end=90000, by_epoch=False),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=90000, val_interval=5000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
