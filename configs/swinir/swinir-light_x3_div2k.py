# SwinIR lightweight (Liang et al., ICCVW 2021) x3, the published recipe of the official
# 002_lightweightSR_DIV2K_s64w8_SwinIR-S_x3 model
# (KAIR options/swinir/train_swinir_sr_lightweight.json):
# DIV2K, LR patches 64, total batch 64 (8 per GPU on 8 GPUs: with N GPUs set batch_size=64 // N),
# Adam 2e-4, halved at 250k/400k/450k/475k of 500k iterations, L1, EMA 0.999.
# (KAIR fine-tunes x3/x4 from x2 with half the learning rate and milestones; this config trains
# from scratch.)
# Training LR patches are made from the HR images on the fly with MATLAB bicubic (bit-identical to
# the LR_bicubic files); validation on Set5 in the HR + LR_bicubic/X{s} layout.
_base_ = ['./swinir-light_x4_div2k.py']

scale = 3

model = dict(network=dict(scale=scale))
train_dataloader = dict(dataset=dict(scale=scale))
val_dataloader = dict(dataset=dict(scale=scale))
test_dataloader = val_dataloader
val_evaluator = dict(crop_border=scale)
test_evaluator = val_evaluator
