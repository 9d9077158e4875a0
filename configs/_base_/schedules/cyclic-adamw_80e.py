# mmdetection3d's cyclic AdamW recipe (SECOND / PointPillars / CenterPoint on KITTI) over 80 epochs
# (its cyclic-40e schedule on a dataset repeated twice): AdamW(betas 0.95, 0.99, weight decay
# 0.01), gradient clipping at 10; the learning rate rises by cosine from lr to 10 lr over the first
# 40 % of training and falls to lr * 1e-4 over the rest. The momentum (AdamW's beta1) follows
# mmdetection3d's values literally: down to eta_min 0.85 / 0.95 (about 0.895) at 40 %, then up
# towards 1.
lr = 0.0018
max_epochs = 80
warm_epochs = 32  # 40 %

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=lr, betas=(0.95, 0.99), weight_decay=0.01),
    clip_grad=dict(max_norm=10, norm_type=2))
param_scheduler = [
    dict(type='CosineAnnealingLR', T_max=warm_epochs, eta_min=lr * 10, begin=0, end=warm_epochs,
         by_epoch=True, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - warm_epochs, eta_min=lr * 1e-4,
         begin=warm_epochs, end=max_epochs, by_epoch=True, convert_to_iter_based=True),
    dict(type='CosineAnnealingMomentum', T_max=warm_epochs, eta_min=0.85 / 0.95, begin=0,
         end=warm_epochs, by_epoch=True, convert_to_iter_based=True),
    dict(type='CosineAnnealingMomentum', T_max=max_epochs - warm_epochs, eta_min=1,
         begin=warm_epochs, end=max_epochs, by_epoch=True, convert_to_iter_based=True),
]

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=5)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
auto_scale_lr = dict(enable=False, base_batch_size=48)
