# mmsegmentation's schedule_80k: SGD (lr 0.01, momentum 0.9, weight decay 5e-4), poly decay
# (power 0.9) to 1e-4 over 80k iterations; validation every 8k.
# Leaf configs checkpoint at the same interval.
optimizer = dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0005)
optim_wrapper = dict(type='OptimWrapper', optimizer=optimizer, clip_grad=None)
param_scheduler = [
    dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=80000, by_epoch=False),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=80000, val_interval=8000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
