# SwinIR classical (Liang et al., ICCVW 2021) x2, the published recipe of the official
# 001_classicalSR_DF2K_s64w8_SwinIR-M_x2 model
# (KAIR options/swinir/train_swinir_sr_classical.json):
# DF2K, LR patches 64, total batch 32 (4 per GPU on 8 GPUs: with N GPUs set batch_size=32 // N),
# Adam 2e-4, halved at 250k/400k/450k/475k of 500k iterations, L1, EMA 0.999.
# (KAIR fine-tunes x3/x4 from x2 with half the learning rate and milestones; this config trains
# from scratch.)
# Training LR patches are made from the HR images on the fly with MATLAB bicubic (bit-identical to
# the LR_bicubic files); validation on Set5 in the HR + LR_bicubic/X{s} layout.
_base_ = ['./swinir-classical_x4_df2k.py']

scale = 2

model = dict(network=dict(scale=scale))
train_dataloader = dict(dataset=dict(datasets=[
    dict(type='SRTrainDataset', hr_dir='data/DIV2K/DIV2K_train_HR', lr_dir=None,
         scale=scale, patch_size=64, use_flip=True, use_rot=True),
    dict(type='SRTrainDataset', hr_dir='data/Flickr2K/Flickr2K_HR', lr_dir=None,
         scale=scale, patch_size=64, use_flip=True, use_rot=True),
]))
val_dataloader = dict(dataset=dict(scale=scale))
test_dataloader = val_dataloader
val_evaluator = dict(crop_border=scale)
test_evaluator = val_evaluator
