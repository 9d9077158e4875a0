# Generated super-resolution pairs at x3: 96 px HR crops for training, 20 held-out 120 px images.
scale = 3

train_dataloader = dict(
    batch_size=16,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(type='SyntheticSRDataset', num_images=10000, hr_size=96, scale=scale, seed=0),
)
val_dataloader = dict(
    batch_size=1,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(type='SyntheticSRDataset', num_images=20, hr_size=120, scale=scale, seed=1),
)
test_dataloader = val_dataloader

val_evaluator = dict(type='SRMetric', crop_border=scale, y_channel=True, bicubic_baseline=True)
test_evaluator = val_evaluator
