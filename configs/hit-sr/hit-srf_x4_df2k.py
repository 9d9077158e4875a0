# HiT-SRF x4 (Zhang et al., ECCV 2024; HiT-SR on SRFormer-light's skeleton), 866,420 parameters,
# the published recipe of the official options/Train/train_HiT_SRF_x4.yml:
# LR patches 64, total batch 64 (16 per GPU on 4 GPUs: with N GPUs set batch_size=64 // N),
# Adam 5e-4 with betas (0.9, 0.99), halved at 250k/400k/450k/475k of 500k iterations, L1, no EMA.
# Data: DF2K (DIV2K + Flickr2K) as the official HiT-SRF-DF2K models; the paper's main
# HiT-SRF numbers were trained on DIV2K alone (drop the Flickr2K entry to reproduce them).
# The official x4 model starts from the x2 weights (non-strict: the upsampler differs):
# set load_from to an x2 checkpoint of this recipe to do the same.
# Training LR patches are made from the HR images on the fly with MATLAB bicubic (bit-identical to
# the LR_bicubic files); validation on Set5 in the HR + LR_bicubic/X{s} layout.
_base_ = ['./hit-sir_x4_df2k.py']

model = dict(network=dict(type='HiTSRF'))
