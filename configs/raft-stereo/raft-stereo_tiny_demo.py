# A small RAFT-Stereo (5.6 M parameters, features at 1/8, two GRU levels) on generated pairs:
# CPU friendly, for demos and for tests of tools/infer.py stereo.
_base_ = ['../_base_/default_runtime.py']

model = dict(
    type='RAFTStereo',
    hidden_dims=(32, 32, 32),
    n_gru_layers=2,
    n_downsample=3,
    corr_levels=2,
    corr_radius=2,
    corr_implementation='reg',
    train_iters=4,
    test_iters=4,
    data_preprocessor=dict(type='StereoDataPreprocessor'),
)

# Generated 128x256 pairs (multiples of the model's padding divisor, 32) with exact disparity.
train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(type='SyntheticStereoDataset', num_pairs=2000, height=128, width=256,
                 max_disparity=32, seed=0, pipeline=[dict(type='PackStereoInputs')]),
)
val_dataloader = dict(
    batch_size=1,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(type='SyntheticStereoDataset', num_pairs=20, height=128, width=256,
                 max_disparity=32, seed=1, pipeline=[dict(type='PackStereoInputs')]),
)
test_dataloader = val_dataloader
val_evaluator = dict(type='StereoMetric')
test_evaluator = val_evaluator

train_cfg = dict(type='IterBasedTrainLoop', max_iters=2000, val_interval=1000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=4e-4, weight_decay=1e-5),
                     clip_grad=dict(max_norm=1.0))
param_scheduler = [
    dict(type='OneCycleLR', eta_max=4e-4, total_steps=2000, pct_start=0.01, by_epoch=False,
         anneal_strategy='linear'),
]

# benchmark input: a stereo pair at the synthetic scenes' size
benchmark = dict(input_shape=[2, 3, 64, 128])
