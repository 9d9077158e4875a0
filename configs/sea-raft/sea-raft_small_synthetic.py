# A small SEA-RAFT (ResNet-18 encoders truncated as published, 32 stem channels, dim 64, one
# ConvNeXt update block, 3 correlation levels of radius 3, 3 training iterations; 2,162,020
# parameters) trained on generated 64x96 Sintel-layout pairs
# (perception.datasets.synthetic.write_synthetic_flow, shifts up to 8 px) at batch 8 with the
# published AdamW / one-cycle recipe at lr 4e-4: the learning tests' configuration
# (tests/test_learning_flow.py). The test writes the data and sets the data roots and
# `max_iters` (a short CI run and a long one). Measured in a plain loop, one thread: dim 32 with
# 16 stem channels costs half as much per step but reaches 2.30 px after 2000 steps where this
# width reaches 1.60 (8 test iterations); lr 1e-3 sent RAFT-small back to the zero flow.
_base_ = ['../_base_/default_runtime.py',
          '../_base_/schedules/raft-family_adamw-onecycle.py']

model = dict(
    type='SEARAFT',
    depth=18,
    dim=64,
    encoder_channels=32,
    num_blocks=1,
    corr_levels=3,
    corr_radius=3,
    train_iters=3,
    # more refinements than trained drift (2000 steps: 1.38 px at 1-2, 1.45 at 4, 1.76 at 12)
    test_iters=3,
    loss_gamma=0.85,
    data_preprocessor=dict(type='StereoDataPreprocessor'),
)

train_pipeline = [
    dict(type='LoadFlowPair'),
    dict(type='LoadFlow', required=True),
    dict(type='FlowRandomFlip', horizontal_prob=0.5, vertical_prob=0.1),
    dict(type='PackFlowInputs'),
]
test_pipeline = [
    dict(type='LoadFlowPair'),
    dict(type='LoadFlow', required=True),
    dict(type='PackFlowInputs'),
]
train_dataloader = dict(
    batch_size=8,
    num_workers=0,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type='SintelDataset', data_root='data/synthetic_flow/train', pass_name='clean',
                 pipeline=train_pipeline),
)
val_dataloader = dict(
    batch_size=4,
    num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='SintelDataset', data_root='data/synthetic_flow/val', pass_name='clean',
                 pipeline=test_pipeline, test_mode=True),
)
test_dataloader = val_dataloader

max_iters = 1500
lr = 4e-4
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
optim_wrapper = dict(optimizer=dict(lr=lr, weight_decay=1e-5))
param_scheduler = [
    dict(type='OneCycleLR', eta_max=lr, total_steps=max_iters + 100, pct_start=0.05,
         by_epoch=False, anneal_strategy='linear'),
]
default_hooks = dict(logger=dict(interval=50), checkpoint=dict(interval=max_iters))

# benchmark input: a pair at the synthetic scenes' size
benchmark = dict(input_shape=[2, 3, 64, 96])
