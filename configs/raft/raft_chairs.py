# RAFT (Teed & Deng, ECCV 2020) at its published size (5.3 M parameters), stage 'chairs' of the
# published schedule (chairs -> things -> sintel -> kitti). Official train_standard.sh: 100000
# iterations, batch 10, crop (368, 496), AdamW lr 4e-4, weight decay 1e-4, 12 training
# iterations, sequence-loss gamma 0.8; train.py: eps 1e-8, one-cycle linear schedule over
# num_steps + 100 (5 % warm-up), gradients clipped at 1.0, BatchNorm trained in this stage only.
# Data as core/datasets.py fetch_dataloader: FlyingChairs training split, FlowAugmentor with
# scale 2**[-0.1, 1.0] and flips; validated on the FlyingChairs validation split (24 iterations).
_base_ = ['../_base_/default_runtime.py', '../_base_/schedules/raft-family_adamw-onecycle.py']
from perception.datasets.transforms.flow import flow_train_pipeline

model = dict(type='RAFT', small=False, corr_mode='full', train_iters=12, test_iters=24,
             loss_gamma=0.8, max_flow=400.0, freeze_bn=False,
             data_preprocessor=dict(type='StereoDataPreprocessor'))

crop_size = (368, 496)


# The official FlowAugmentor (dense ground truth): asymmetric colour jitter 0.2, eraser 0.5,
# scale 2**U(min_scale, max_scale) with stretch (prob 0.8, 2**U(-0.2, 0.2)) applied with prob
# 0.8, flips h 0.5 / v 0.1, random crop. The later stages change the scale range and the crop.
train_pipeline = flow_train_pipeline(crop_size, -0.1, 1.0)
test_pipeline = [
    dict(type='LoadFlowPair'),
    dict(type='LoadFlow', required=True),
    dict(type='PackFlowInputs'),
]
train_dataloader = dict(
    batch_size=10,
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
    dataset=dict(type='FlyingChairsDataset', data_root='data/FlyingChairs_release',
                 split='validation', pipeline=test_pipeline, test_mode=True),
)
test_dataloader = val_dataloader

max_iters = 100000
lr = 4e-4
train_cfg = dict(max_iters=max_iters, val_interval=5000)
optim_wrapper = dict(optimizer=dict(lr=lr, weight_decay=1e-4))
param_scheduler = [
    dict(type='OneCycleLR', eta_max=lr, total_steps=max_iters + 100, pct_start=0.05,
         by_epoch=False, anneal_strategy='linear'),
]
default_hooks = dict(checkpoint=dict(interval=5000, max_keep_ckpts=3))
benchmark = dict(input_shape=[2, 3, 436, 1024])
