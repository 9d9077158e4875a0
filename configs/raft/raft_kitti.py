# RAFT (Teed & Deng, ECCV 2020), stage 'kitti' of the published schedule
# (chairs -> things -> sintel -> kitti)
# official train_standard.sh: 50000 iterations, batch 6, crop (288, 960), AdamW lr 1e-4,
# weight decay 1e-5, sequence-loss gamma 0.85, one-cycle (linear) schedule, gradients clipped at 1.
# Model, optimiser and schedule only: the dataloaders are still to be added.
_base_ = ['../_base_/default_runtime.py']

crop_size = (288, 960)
model = dict(type='RAFT', small=False, corr_mode='full', train_iters=12, test_iters=24,
             loss_gamma=0.85, max_flow=400.0, freeze_bn=True,
             data_preprocessor=dict(type='StereoDataPreprocessor'))
train_batch_size = 6
train_cfg = dict(type='IterBasedTrainLoop', max_iters=50000, val_interval=5000)
optim_wrapper = dict(type='OptimWrapper',
                     optimizer=dict(type='AdamW', lr=1e-4, weight_decay=1e-5, eps=1e-8),
                     clip_grad=dict(max_norm=1.0))
param_scheduler = [
    dict(type='OneCycleLR', eta_max=1e-4, total_steps=50000 + 100, pct_start=0.05,
         by_epoch=False,
         anneal_strategy='linear'),
]
benchmark = dict(input_shape=[2, 3, 375, 1242])
