# Iteration-based schedule: Adam at 1e-3, decayed x0.3 at 2k and 2.6k, validation every 1k.
train_cfg = dict(type='IterBasedTrainLoop', max_iters=3000, val_interval=1000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=1e-3, betas=(0.9, 0.999)))
param_scheduler = [
    dict(type='MultiStepLR', by_epoch=False, milestones=[2000, 2600], gamma=0.3),
]
