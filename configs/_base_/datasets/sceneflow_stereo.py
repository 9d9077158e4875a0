# SceneFlow (FlyingThings3D + Monkaa + Driving, finalpass) for stereo training; FlyingThings3D TEST
# for validation. Augmentation as RAFT-Stereo's train_stereo.py: colour jitter (20% asymmetric,
# saturation 0-1.4), 2 eraser rectangles, log2 scale in [-0.2, 0.4] with stretch, 320x720 crops.
data_root = 'data/sceneflow'
crop_size = (320, 720)

train_pipeline = [
    dict(type='LoadStereoPair'),
    dict(type='LoadDisparity', required=True),
    dict(type='StereoColorJitter', saturation=(0.0, 1.4), asymmetric_prob=0.2),
    dict(type='StereoEraser', prob=0.5, max_rects=2, size_range=(50, 100)),
    dict(type='StereoRandomScale', min_scale=-0.2, max_scale=0.4, crop_size=crop_size),
    dict(type='StereoRandomCrop', crop_size=crop_size),
    dict(type='PackStereoInputs'),
]
test_pipeline = [
    dict(type='LoadStereoPair'),
    dict(type='LoadDisparity', required=True),
    dict(type='PackStereoInputs'),
]

train_dataloader = dict(
    batch_size=8,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(type='SceneFlowDataset', data_root=data_root, split='TRAIN',
                 render_pass='finalpass', pipeline=train_pipeline),
)
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(type='SceneFlowDataset', data_root=data_root, split='TEST',
                 render_pass='finalpass', test_mode=True, pipeline=test_pipeline),
)
test_dataloader = val_dataloader
# SceneFlow is scored on pixels with disparity < 192, as RAFT-Stereo and IGEV report it.
val_evaluator = dict(type='StereoMetric', max_disp=192)
test_evaluator = val_evaluator
