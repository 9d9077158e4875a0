# DRCT (Hsu et al., CVPRW 2024) x3, the official options/train/train_DRCT_SRx3_from_scratch.yml:
# DF2K, LR patches 64 (gt_size 192), 4 per GPU (batch_size is per GPU in mmengine too), Adam 2e-4
# betas (0.9, 0.99), halved at 250k/400k/450k/475k of 500k iterations, L1, EMA 0.999.
# Training LR patches are made from the HR images on the fly with MATLAB bicubic (bit-identical to
# the LR_bicubic files); validation on Set5 in the HR + LR_bicubic/X{s} layout.
_base_ = ['./drct_x4_df2k.py']

scale = 3

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
