# LION-Mamba demo detector trained on synthetic LiDAR scenes (perception.datasets.synthetic.lidar)
# and evaluated on held-out scenes: the learning check of tests/test_learning_lidar.py.
#   python -m perception.datasets.synthetic.lidar data/synthetic_lidar --train 120 --val 30 \
#       --azimuth-step 0.16
#   python tools/create_data.py kitti --root-path data/synthetic_lidar
#   python tools/train.py configs/lion/lion-mamba_synthetic-lidar.py
# The model, data pipeline and optimiser are lion-mamba_demo.py's; only the schedule and the
# evaluation (Car only, once at the end) change.
#
# Measured (120 train / 30 held-out scenes written with seed 0, azimuth step 0.16; 115 moderate
# held-out Cars; one torch thread), held-out Car AP40 moderate, strict (IoU 0.7) / loose (0.5):
#   iterations  CPU-s   3D             BEV
#   1500        1257    53.8 / 96.1    77.4 / 96.1
# (about 0.85 s per iteration of 2 scenes). With CenterPoint's (sin, cos) yaw instead of the
# demo's axis + direction head, and the earlier scenes (independent car dimensions): 26.0 / 63.1.
# The target (3D strict >= 70) is not reached. What is left, in the share of the matched
# held-out Cars at 3D IoU >= 0.7 (70 %) when one quantity is replaced by the truth: centre 82 %,
# yaw 80 %, height and bottom 85 %, all three sizes 86 %, length 75 %. Lengths and heights are
# close to guesses (most cars are seen end-on, their roofs at grazing angles): median errors
# 0.26 m and 0.085 m, where always answering the class's mean size would give 0.29 m and 0.094 m.
_base_ = ['./lion-mamba_demo.py']

max_iters = 1500
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
