# SEA-RAFT (M) at its published size (19.7 M parameters: ResNet-34 encoders truncated to three
# stages, dim 128, two ConvNeXt update blocks, radius 4, 4 iterations), stage 1 of the published
# recipe (official config/train/Tartan-C368x496-M.json): FlyingChairs, 368x496 crops, batch 16,
# 100k steps, AdamW lr 2.5e-4, wd 1e-4, eps 1e-8, one-cycle linear schedule (5 % warm-up, 100
# extra steps), gradient clipping at 1.0, loss gamma 0.8, mixture-of-Laplace bounds [0, 10].
# The official recipe starts from a TartanAir pre-training (Tartan480x640: batch 32, lr 4e-4,
# 300k steps); this project has no TartanAir dataset yet, so pass it with `load_from` if you
# have one. Stages chain through `load_from` (see the later configs).
_base_ = ['../_base_/default_runtime.py',
          '../_base_/schedules/raft-family_adamw-onecycle.py']
from perception.datasets.transforms.flow import flow_train_pipeline

model = dict(
    type='SEARAFT',
    depth=34,
    dim=128,
    num_blocks=2,
    corr_levels=4,
    corr_radius=4,
    train_iters=4,
    test_iters=4,
    loss_gamma=0.8,
    max_flow=400.0,
    var_min=0.0,
    var_max=10.0,
    data_preprocessor=dict(type='StereoDataPreprocessor'),
)

crop_size = (368, 496)
# Official FlowAugmentor: chairs scale 2**[-0.1, 1.0], stretch 0.8 / 0.2, spatial prob 0.8,
# flips h 0.5 / v 0.1, asymmetric colour jitter 0.2, eraser 0.5.
train_pipeline = flow_train_pipeline(crop_size, -0.1, 1.0)
test_pipeline = [
    dict(type='LoadFlowPair'),
    dict(type='LoadFlow', required=True),
    dict(type='PackFlowInputs'),
]
train_dataloader = dict(
    batch_size=16,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type='FlyingChairsDataset', data_root='data/FlyingChairs_release',
                 split='training', pipeline=train_pipeline),
)
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='SintelDataset', data_root='data/Sintel', pass_name='clean',
                 split='training', pipeline=test_pipeline, test_mode=True),
)
test_dataloader = val_dataloader

max_iters = 100000
lr = 2.5e-4
train_cfg = dict(max_iters=max_iters, val_interval=10000)
optim_wrapper = dict(optimizer=dict(lr=lr, weight_decay=1e-4))
param_scheduler = [
    dict(type='OneCycleLR', eta_max=lr, total_steps=max_iters + 100, pct_start=0.05,
         by_epoch=False, anneal_strategy='linear'),
]
default_hooks = dict(checkpoint=dict(interval=10000, max_keep_ckpts=3))

# tools/benchmark.py input: one Sintel-sized pair (2 frames x 3 x 436 x 1024).
benchmark = dict(input_shape=[2, 3, 436, 1024])
