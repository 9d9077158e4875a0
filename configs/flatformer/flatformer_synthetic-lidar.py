# FlatFormer demo detector trained on synthetic LiDAR scenes (perception.datasets.synthetic.lidar)
# and evaluated on held-out scenes: the learning check of tests/test_learning_lidar.py.
#   python -m perception.datasets.synthetic.lidar data/synthetic_lidar --train 120 --val 30 \
#       --azimuth-step 0.16
#   python tools/create_data.py kitti --root-path data/synthetic_lidar
#   python tools/train.py configs/flatformer/flatformer_synthetic-lidar.py
# The model, data pipeline and optimiser are flatformer_demo.py's; only the schedule and the
# evaluation (Car only, once at the end) change.
#
# Measured (120 train / 30 held-out scenes written with seed 0, azimuth step 0.16; 124 moderate
# held-out Cars; one torch thread), held-out Car AP40 moderate, strict (IoU 0.7) / loose (0.5):
#   iterations  CPU-s   3D            BEV
#   1500         366    6.6 / 39.1    18.3 / 51.7
#   3000         690    9.2 / 49.2    20.6 / 51.8   (this config)
# The target (3D strict >= 70) is not reached: the heading is the weak part (median yaw
# error 0.64 rad on the held-out Cars found within 1.5 m after 1500 iterations, median centre
# error 0.27 m).
_base_ = ['./flatformer_demo.py']

max_iters = 3000
train_dataloader = dict(sampler=dict(type='InfiniteSampler', shuffle=True))
val_evaluator = dict(classes=['Car'])
test_evaluator = val_evaluator
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=50),
    dict(type='CosineAnnealingLR', T_max=max_iters - 50, eta_min=3e-5, by_epoch=False, begin=50,
         end=max_iters),
]
default_hooks = dict(checkpoint=dict(interval=max_iters), logger=dict(interval=50))
