# FlatFormer demo detector trained on synthetic LiDAR scenes (perception.datasets.synthetic.lidar)
# and evaluated on held-out scenes: the learning check of tests/test_learning_lidar.py.
#   python -m perception.datasets.synthetic.lidar data/synthetic_lidar --train 120 --val 30 \
#       --azimuth-step 0.16
#   python tools/create_data.py kitti --root-path data/synthetic_lidar
#   python tools/train.py configs/flatformer/flatformer_synthetic-lidar.py
# The model, data pipeline and optimiser are flatformer_demo.py's; only the schedule and the
# evaluation (Car only, once at the end) change.
#
# Measured (120 train / 30 held-out scenes written with seed 0, azimuth step 0.16; 115 moderate
# held-out Cars; one torch thread), held-out Car AP40 moderate, strict (IoU 0.7) / loose (0.5):
#   iterations  CPU-s   3D             BEV
#   3000          717   55.9 / 94.0    83.3 / 94.0   (this config)
#   6000         1389   46.3 / 87.5    67.7 / 87.5   (longer overfits the 120 scenes)
# With CenterPoint's (sin, cos) yaw instead of the demo's axis + direction head, and the earlier
# scenes (independent car dimensions): 9.2 / 49.2 at 3000 iterations. The target (3D
# strict >= 70) is not reached; as for LION (lion-mamba_synthetic-lidar.py), what is left is
# mostly the length and height of cars seen end-on (median errors 0.29 m and 0.09 m).
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
