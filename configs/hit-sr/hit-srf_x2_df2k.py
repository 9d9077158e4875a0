# HiT-SRF x2 (Zhang et al., ECCV 2024; HiT-SR on SRFormer-light's skeleton), 846,944 parameters,
# the published recipe of the official options/Train/train_HiT_SRF_x2.yml:
# LR patches 64, total batch 64 (16 per GPU on 4 GPUs: with N GPUs set batch_size=64 // N),
# Adam 5e-4 with betas (0.9, 0.99), halved at 250k/400k/450k/475k of 500k iterations, L1, no EMA.
# Data: DF2K (DIV2K + Flickr2K) as the official HiT-SRF-DF2K models; the paper's main
# HiT-SRF numbers were trained on DIV2K alone (drop the Flickr2K entry to reproduce them).
# Training LR patches are made from the HR images on the fly with MATLAB bicubic (bit-identical to
# the LR_bicubic files); validation on Set5 in the HR + LR_bicubic/X{s} layout.
_base_ = ['./hit-srf_x4_df2k.py']

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
