# SwinIR classical (Liang et al., ICCVW 2021) x4, the published recipe of the official
# 001_classicalSR_DF2K_s64w8_SwinIR-M_x4 model
# (KAIR options/swinir/train_swinir_sr_classical.json):
# DF2K, LR patches 64, total batch 32 (4 per GPU on 8 GPUs: with N GPUs set batch_size=32 // N),
# Adam 2e-4, halved at 250k/400k/450k/475k of 500k iterations, L1, EMA 0.999.
# (KAIR fine-tunes x3/x4 from x2 with half the learning rate and milestones; this config trains
# from scratch.)
# Training LR patches are made from the HR images on the fly with MATLAB bicubic (bit-identical to
# the LR_bicubic files); validation on Set5 in the HR + LR_bicubic/X{s} layout.
_base_ = [
    '../_base_/datasets/sr_df2k_x4.py', '../_base_/schedules/sr_adam_500k.py',
    '../_base_/default_runtime.py'
]

scale = 4

model = dict(
    type='SuperResolver',
    network=dict(type='SwinIR', scale=scale, in_channels=3, embed_dim=180, depths=(6,) * 6,
                 num_heads=(6,) * 6, window_size=8, mlp_ratio=2.0, upsampler='pixelshuffle'),
    pixel_loss=dict(type='L1Loss', loss_weight=1.0),
    # The DIV2K RGB mean the official network subtracts itself (img_range 1): here the wrapper
    # centres the image, so the network sees exactly what the official one sees.
    pixel_mean=(0.4488, 0.4371, 0.4040),
)

train_dataloader = dict(batch_size=32)

optim_wrapper = dict(optimizer=dict(lr=2e-4, betas=(0.9, 0.999)))
# Exponential moving average of the weights (decay 0.999), which the official code evaluates.
custom_hooks = [dict(type='EMAHook', momentum=0.001, update_buffers=False)]
default_hooks = dict(checkpoint=dict(interval=5000))

# tools/benchmark.py input: one 256x256 RGB LR image.
benchmark = dict(input_shape=[3, 256, 256])
