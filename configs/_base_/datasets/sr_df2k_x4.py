# DF2K (DIV2K + Flickr2K HR images) for x4 training: 64 px LR patches made on the fly with MATLAB
# bicubic (bit-identical to the LR_bicubic files), BasicSR's flips and transposes; Set5 (HR +
# LR_bicubic/X4) for validation, PSNR / SSIM on Y with the scale as border. x2 / x3 configs
# override `scale` in the dataset entries and the evaluator.
scale = 4

train_dataloader = dict(
    batch_size=16,
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
