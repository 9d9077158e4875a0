# RAFT-Stereo at its published size (11.1 M parameters) trained on SceneFlow as the paper:
# train_stereo.py --batch_size 8 --train_iters 22 --valid_iters 32 --spatial_scale -0.2 0.4
# --saturation_range 0 1.4 --n_downsample 2 --num_steps 200000 (AdamW lr 2e-4, wd 1e-5,
# one-cycle linear schedule with 1% warm-up, gradient clipping at 1.0, BatchNorm frozen).
_base_ = ['../_base_/datasets/sceneflow_stereo.py', '../_base_/default_runtime.py']

model = dict(
    type='RAFTStereo',
    hidden_dims=(128, 128, 128),
    n_gru_layers=3,
    n_downsample=2,
    corr_levels=4,
    corr_radius=4,
    corr_implementation='reg',
    train_iters=22,
    test_iters=32,
    max_disp=700,
    data_preprocessor=dict(type='StereoDataPreprocessor'),
)

max_iters = 200000
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=10000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(type='OptimWrapper',
                     optimizer=dict(type='AdamW', lr=2e-4, weight_decay=1e-5, eps=1e-8),
                     clip_grad=dict(max_norm=1.0))
# The official schedule runs num_steps + 100 steps of one cycle (ends just above zero).
param_scheduler = [
    dict(type='OneCycleLR', eta_max=2e-4, total_steps=max_iters + 100, pct_start=0.01,
         by_epoch=False, anneal_strategy='linear'),
]
default_hooks = dict(checkpoint=dict(interval=10000, max_keep_ckpts=5))

# tools/benchmark.py input: one KITTI-sized pair (2 views x 3 x 375 x 1242).
benchmark = dict(input_shape=[2, 3, 375, 1242])
