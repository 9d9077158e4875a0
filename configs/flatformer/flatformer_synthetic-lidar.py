# FlatFormer demo detector trained on synthetic LiDAR scenes (perception.datasets.synthetic.lidar)
# and evaluated on held-out scenes: the learning check of tests/test_learning_lidar.py.
#   python -m perception.datasets.synthetic.lidar data/synthetic_lidar --train 120 --val 100 \
#       --azimuth-step 0.16
#   python tools/create_data.py kitti --root-path data/synthetic_lidar
#   python tools/train.py configs/flatformer/flatformer_synthetic-lidar.py
# The pillar encoder, FlatFormer, data pipeline and optimiser are flatformer_demo.py's. Changed:
# the schedule (OpenPCDet's one-cycle KITTI schedule), the evaluation (Car only, once at the end)
# and the BEV resolution of the head (below).
#
# Measured (120 train / 100 held-out scenes written with seed 0, azimuth step 0.16; 402 moderate
# held-out Cars; one torch thread), held-out Car AP40 moderate, strict (IoU 0.7) / loose (0.5):
#   head cells  schedule   seed  CPU-s   3D             BEV            (3000 iterations)
#   0.32 m      one-cycle  0     1145    80.1 / 96.8    91.0 / 97.0   (this config)
#   0.32 m      one-cycle  1     1240    61.9 / 94.3    88.5 / 94.4
#   0.32 m      cosine     0     1177    73.0 / 94.6    93.9 / 97.3
#   0.32 m      cosine     1     1180    47.5 / 90.4    77.5 / 93.5
#   0.64 m      cosine     0      717    54.9 / 91.3    76.4 / 94.1   (the demo's strides)
#   0.64 m      cosine     1      688    30.7 / 84.7    53.8 / 89.4
# With the demo's 0.64 m head cells the box regression underfits: on the training scenes
# themselves the median length error stayed at 0.24 m (always answering the class's mean length
# would give 0.29 m), although the points span at least 95 % of the length of 56 % of the
# held-out cars. With 0.32 m cells the held-out median errors of the length and of the centre
# along the heading fall from 0.28 m and 0.16 m to 0.19 m and 0.11 m, and the share of held-out
# cars matched at 3D IoU >= 0.7 from 71 % to 83 % (cosine, seed 0). Results vary from run to run
# (the seed rows: the seed-1 runs' training loss trails seed 0's all along); the one-cycle
# schedule (a tenth of the peak lr at the start, the peak at 40 %) lifted both seeds.
_base_ = ['./flatformer_demo.py']

# The head on 0.32 m cells, as in PointPillars' and CenterPoint-pillar's KITTI configs (there
# 0.16 m pillars and a first stage of stride 2; here the demo's 0.32 m pillars and a first stage
# of stride 1).
model = dict(bev_backbone=dict(layer_strides=[1, 2, 2]), neck=dict(upsample_strides=[1, 2, 4]),
             head=dict(out_size_factor=1))

max_iters = 3000
train_dataloader = dict(sampler=dict(type='InfiniteSampler', shuffle=True))
val_evaluator = dict(classes=['Car'])
test_evaluator = val_evaluator
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
# OpenPCDet's adam_onecycle for KITTI (peak lr 3e-3, div_factor 10, pct_start 0.4); the demo's
# AdamW (weight decay 0.01, gradient clipping at 10) is the rest of that recipe.
param_scheduler = [
    dict(type='OneCycleLR', eta_max=3e-3, total_steps=max_iters, pct_start=0.4, div_factor=10,
         final_div_factor=1e4, by_epoch=False),
]
default_hooks = dict(checkpoint=dict(interval=max_iters), logger=dict(interval=50))
