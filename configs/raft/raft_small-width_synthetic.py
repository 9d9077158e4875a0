# RAFT (convex 8x upsampling, the full update block) at CPU widths: encoders 16/32/48, 64-channel
# features, hidden and context 64, 3 correlation levels of radius 3, 6 training iterations;
# 2,052,448 parameters. Trained on generated 64x96 Sintel-layout pairs
# (perception.datasets.synthetic.write_synthetic_flow, shifts up to 8 px) beside SEA-RAFT's
# configs/sea-raft/sea-raft_small_synthetic.py on the same data: tests/test_learning_flow.py.
# RAFT-small's bilinear upsampling is not used here: on these pairs it alone costs 0.80 px of
# EPE given the exact 1/8-resolution flow (convex upsampling of the same flow: below 0.12 px).
_base_ = ['../sea-raft/sea-raft_small_synthetic.py']

model = dict(
    _delete_=True,
    type='RAFT',
    small=False,
    encoder_widths=(16, 32, 48),
    feature_dim=64,
    hidden_dim=64,
    context_dim=64,
    corr_levels=3,
    corr_radius=3,
    train_iters=6,
    test_iters=6,
    loss_gamma=0.8,
    data_preprocessor=dict(type='StereoDataPreprocessor'),
)
