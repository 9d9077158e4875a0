# RAFT (Teed & Deng, ECCV 2020), stage 'chairs' of the published schedule
# (chairs -> things -> sintel -> kitti)
# official train_standard.sh: 100000 iterations, batch 10, crop (368, 496), AdamW lr 4e-4,
# weight decay 1e-4, sequence-loss gamma 0.8, one-cycle (linear) schedule, gradients clipped at 1.
# Model, optimiser and schedule only: the dataloaders are still to be added.
_base_ = ['../_base_/default_runtime.py']

crop_size = (368, 496)
model = dict(type='RAFT', small=False, corr_mode='full', train_iters=12, test_iters=24,
             loss_gamma=0.8, max_flow=400.0, freeze_bn=False,
             data_preprocessor=dict(type='StereoDataPreprocessor'))
train_batch_size = 10
train_cfg = dict(type='IterBasedTrainLoop', max_iters=100000, val_interval=5000)
optim_wrapper = dict(type='OptimWrapper',
                     optimizer=dict(type='AdamW', lr=4e-4, weight_decay=1e-4, eps=1e-8),
                     clip_grad=dict(max_norm=1.0))
param_scheduler = [
    dict(type='OneCycleLR', eta_max=4e-4, total_steps=100000 + 100, pct_start=0.05,
         by_epoch=False,
         anneal_strategy='linear'),
]
benchmark = dict(input_shape=[2, 3, 436, 1024])
