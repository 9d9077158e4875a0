# A tiny HiT-SIR (embed 32, two groups of two blocks with windows 4 and 8 on base 8) trained on
# generated x3 pairs: a CPU demo of the HiT-SR pipeline, not a published model. 96 px HR crops
# give 32 px LR inputs.
_base_ = [
    '../_base_/datasets/synthetic_sr_x3.py',
    '../_base_/schedules/adam_iter-3k.py',
    '../_base_/default_runtime.py',
]

model = dict(
    type='SuperResolver',
    network=dict(type='HiTSIR', scale=3, in_channels=3, embed_dim=32, depths=(2, 2),
                 num_heads=(2, 2), base_window=8, window_ratios=(0.5, 1), mlp_ratio=2.0),
    pixel_loss=dict(type='L1Loss', loss_weight=1.0),
    pixel_mean=(0.4488, 0.4371, 0.4040),
)
# The official recipe's 5e-4 with its betas (0.9, 0.99).
optim_wrapper = dict(optimizer=dict(lr=5e-4, betas=(0.9, 0.99)))

# tools/benchmark.py input: one 256x256 RGB LR image.
benchmark = dict(input_shape=[3, 256, 256])
