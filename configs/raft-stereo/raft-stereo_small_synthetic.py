# A small RAFT-Stereo (1.1 M parameters: encoder stages 32/48/64, 128-d matching features, GRUs of
# 48 at 1/4 and 1/8) trained on generated 64x128 pairs with disparities up to 16 px: the learning
# test's configuration (tests/test_learning_stereo.py), a few CPU minutes.
_base_ = ['./raft-stereo_tiny_demo.py']

model = dict(encoder_widths=(32, 48, 64), feature_dim=128, hidden_dims=(48, 48, 48),
             n_downsample=2, n_gru_layers=2, corr_levels=3, corr_radius=3, train_iters=6,
             test_iters=12)

pair = dict(height=64, width=128, max_disparity=16)
train_dataloader = dict(dataset=dict(num_pairs=100000, **pair))
val_dataloader = dict(dataset=dict(num_pairs=24, **pair))
test_dataloader = val_dataloader

max_iters = 600
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
optim_wrapper = dict(optimizer=dict(lr=1e-3))
param_scheduler = [
    dict(type='OneCycleLR', eta_max=1e-3, total_steps=max_iters, pct_start=0.05, by_epoch=False,
         anneal_strategy='linear'),
]
default_hooks = dict(logger=dict(interval=50), checkpoint=dict(interval=max_iters))

# benchmark input: a stereo pair at the synthetic scenes' size
benchmark = dict(input_shape=[2, 3, 64, 128])
