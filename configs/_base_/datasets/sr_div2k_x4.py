# DIV2K alone for x4 training (otherwise as sr_df2k_x4.py).
_base_ = ['./sr_df2k_x4.py']

train_dataloader = dict(
    dataset=dict(_delete_=True, type='SRTrainDataset', hr_dir='data/DIV2K/DIV2K_train_HR',
                 lr_dir=None, scale={{_base_.scale}}, patch_size=64, use_flip=True,
                 use_rot=True))
