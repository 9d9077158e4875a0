# RAFT-Stereo fine-tuned on KITTI 2012 + 2015 from the SceneFlow model, with the settings the
# authors gave (princeton-vl/RAFT-Stereo issues #27 and #83): lr 1e-5, batch 3, crops 320x1000,
# 5,000 steps, 22 training iterations; sparse ground truth, so scaling resamples it sparsely.
_base_ = ['./raft-stereo_sceneflow.py']

load_from = 'checkpoints/raft-stereo_sceneflow.pth'  # tools/convert_ckpt.py raft-stereo ...
crop_size = (320, 1000)
train_pipeline = [
    dict(type='LoadStereoPair'),
    dict(type='LoadDisparity', required=True),
    dict(type='StereoColorJitter', saturation=(0.0, 1.4), asymmetric_prob=0.2),
    dict(type='StereoEraser', prob=0.5, max_rects=2, size_range=(50, 100)),
    dict(type='StereoRandomScale', min_scale=-0.2, max_scale=0.4, crop_size=crop_size,
         sparse=True),
    dict(type='StereoRandomCrop', crop_size=crop_size),
    dict(type='PackStereoInputs'),
]
test_pipeline = [
    dict(type='LoadStereoPair'),
    dict(type='LoadDisparity', required=True),
    dict(type='PackStereoInputs'),
]
train_dataloader = dict(
    batch_size=3,
    dataset=dict(
        _delete_=True,
        type='ConcatDataset',
        datasets=[
            dict(type='KittiStereoDataset', data_root='data/kitti_stereo/2012', year=2012,
                 pipeline=train_pipeline),
            dict(type='KittiStereoDataset', data_root='data/kitti_stereo/2015', year=2015,
                 pipeline=train_pipeline),
        ]),
)
# KITTI has no public validation split with ground truth: score the 2015 training pairs
# (the authors' validation) with the KITTI D1 protocol (error > 3 px and > 5%).
val_dataloader = dict(
    dataset=dict(_delete_=True, type='KittiStereoDataset', data_root='data/kitti_stereo/2015',
                 year=2015, test_mode=True, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='StereoMetric', max_disp=None)
test_evaluator = val_evaluator

max_iters = 5000
train_cfg = dict(max_iters=max_iters, val_interval=1000)
optim_wrapper = dict(optimizer=dict(lr=1e-5))
param_scheduler = [
    dict(type='OneCycleLR', eta_max=1e-5, total_steps=max_iters + 100, pct_start=0.01,
         by_epoch=False, anneal_strategy='linear'),
]
default_hooks = dict(checkpoint=dict(interval=1000))
