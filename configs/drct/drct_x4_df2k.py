# DRCT (Hsu et al., CVPRW 2024) x4, the official options/train/train_DRCT_SRx4_from_scratch.yml:
# DF2K, LR patches 64 (gt_size 256), 4 per GPU (batch_size is per GPU in mmengine too), Adam 2e-4
# betas (0.9, 0.99), halved at 250k/400k/450k/475k of 500k iterations, L1, EMA 0.999.
# Training LR patches are made from the HR images on the fly with MATLAB bicubic (bit-identical to
# the LR_bicubic files); validation on Set5 in the HR + LR_bicubic/X{s} layout.
_base_ = ['../_base_/default_runtime.py']

scale = 4

model = dict(
    type='SuperResolver',
    network=dict(type='DRCT', scale=scale, in_channels=3, embed_dim=180, depths=(6,) * 6,
                 num_heads=(6,) * 6, window_size=16, mlp_ratio=2.0, gc=32),
    pixel_loss=dict(type='L1Loss', loss_weight=1.0),
    # The DIV2K RGB mean the official network subtracts itself (img_range 1): here the wrapper
    # centres the image, so the network sees exactly what the official one sees.
    pixel_mean=(0.4488, 0.4371, 0.4040),
)

train_dataloader = dict(
    batch_size=4,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(
        type='ConcatDataset',
        datasets=[
            dict(type='SRTrainDataset', hr_dir='data/DIV2K/DIV2K_train_HR', lr_dir=None,
                 scale=scale, patch_size=64, use_flip=True, use_rot=True),
            dict(type='SRTrainDataset', hr_dir='data/Flickr2K/Flickr2K_HR', lr_dir=None,
                 scale=scale, patch_size=64, use_flip=True, use_rot=True),
        ]),
)
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(type='PairedImageDataset', data_root='data/sr_benchmarks/Set5', scale=scale),
)
test_dataloader = val_dataloader
val_evaluator = dict(type='SRMetric', crop_border=scale, y_channel=True, bicubic_baseline=True)
test_evaluator = val_evaluator

train_cfg = dict(type='IterBasedTrainLoop', max_iters=500000, val_interval=5000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='Adam', lr=2e-4, betas=(0.9, 0.99), weight_decay=0.0))
param_scheduler = [
    dict(type='MultiStepLR', by_epoch=False, milestones=[250000, 400000, 450000, 475000],
         gamma=0.5),
]
# Exponential moving average of the weights (decay 0.999), which the official code evaluates.
custom_hooks = [dict(type='EMAHook', momentum=0.001, update_buffers=False)]
default_hooks = dict(checkpoint=dict(interval=5000))

# tools/benchmark.py input: one 256x256 RGB LR image.
benchmark = dict(input_shape=[3, 256, 256])
