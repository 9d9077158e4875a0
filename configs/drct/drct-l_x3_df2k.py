# DRCT-L (Hsu et al., CVPRW 2024) x3: 12 residual dense groups (27.6M parameters at x4).
# Trained here with DRCT's DF2K from-scratch recipe (options/train/train_DRCT_SRx3_from_scratch.yml:
# LR patches 64, 4 per GPU, Adam 2e-4 betas (0.9, 0.99), halved at 250k/400k/450k/475k of 500k,
# L1, EMA 0.999). The published DRCT-L weights were instead pretrained on ImageNet (800k
# iterations, milestones 300k/500k/650k/700k/750k) and fine-tuned on DF2K at lr 1e-5 for 250k
# (milestones 125k/200k/225k/240k): for that stage pass --cfg-options load_from=PRETRAINED
# optim_wrapper.optimizer.lr=1e-5 train_cfg.max_iters=250000 and matching milestones.
# Training LR patches are made from the HR images on the fly with MATLAB bicubic (bit-identical to
# the LR_bicubic files); validation on Set5 in the HR + LR_bicubic/X{s} layout.
_base_ = ['./drct-l_x4_df2k.py']

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
