# ADE20K (SceneParsing150, ADEChallengeData2016), 150 classes with reduce_zero_label, as
# mmsegmentation's 512x512 recipe: random resize of (2048, 512) by 0.5-2.0, 512x512 crops with
# cat_max_ratio 0.75, flip, photometric distortion; evaluation with the short side at 512.
dataset_type = 'ADE20KDataset'
data_root = 'data/ade/ADEChallengeData2016/'
crop_size = (512, 512)
train_pipeline = [
    dict(type='LoadSegImage'),
    dict(type='LoadSegAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=(2048, 512), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadSegImage'),
    dict(type='RandomResize', scale=(2048, 512), ratio_range=None, keep_ratio=True),
    # The label map stays at the original size: predictions are resized back to ori_shape.
    dict(type='LoadSegAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=4,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(type=dataset_type, data_root=data_root, split='training',
                 pipeline=train_pipeline),
)
val_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(type=dataset_type, data_root=data_root, split='validation',
                 pipeline=test_pipeline),
)
test_dataloader = val_dataloader
# The loader already shifted the labels (reduce_zero_label above): the metric must not again.
val_evaluator = dict(type='SegMetric')
test_evaluator = val_evaluator
