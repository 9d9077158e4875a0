# A tiny SwinIR-light (embed 30, two groups of two blocks, window 8) trained on generated x3 pairs:
# a CPU demo of the SwinIR pipeline, not a published model. 96 px HR crops give 32 px LR inputs
# (four 8 px windows a side).
_base_ = [
    '../_base_/datasets/synthetic_sr_x3.py',
    '../_base_/schedules/adam_iter-3k.py',
    '../_base_/default_runtime.py',
]

model = dict(
    type='SuperResolver',
    network=dict(type='SwinIR', scale=3, in_channels=3, embed_dim=30, depths=(2, 2),
                 num_heads=(3, 3), window_size=8, mlp_ratio=2.0, upsampler='pixelshuffledirect',
                 drop_path_rate=0.0),
    pixel_loss=dict(type='L1Loss', loss_weight=1.0),
    pixel_mean=(0.4488, 0.4371, 0.4040),
)
# Transformers want a gentler step than ESPCN's 1e-3.
optim_wrapper = dict(optimizer=dict(lr=5e-4))

# tools/benchmark.py input: one 256x256 RGB LR image.
benchmark = dict(input_shape=[3, 256, 256])
