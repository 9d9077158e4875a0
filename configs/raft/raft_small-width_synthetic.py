# A small RAFT (RAFT-small's encoders at widths 16/32/48, 64-channel features, 3 correlation levels
# of radius 3, 6 training iterations) trained on generated 64x96 Sintel-layout pairs
# (perception.datasets.synthetic.write_synthetic_flow, shifts up to 8 px): the learning test's
# configuration (tests/test_learning_flow.py), beside SEA-RAFT's
# (configs/sea-raft/sea-raft_small_synthetic.py) on the same data. The test writes the data and sets
# the data roots and `max_iters`.
_base_ = ['../sea-raft/sea-raft_small_synthetic.py']

model = dict(
    _delete_=True,
    type='RAFT',
    small=True,
    encoder_widths=(16, 32, 48),
    feature_dim=64,
    corr_levels=3,
    corr_radius=3,
    train_iters=6,
    test_iters=12,
    loss_gamma=0.8,
    data_preprocessor=dict(type='StereoDataPreprocessor'),
)
