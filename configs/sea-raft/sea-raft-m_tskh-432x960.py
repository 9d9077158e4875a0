# SEA-RAFT (M), stage 3 of the published recipe (official Tartan-C-T-TSKH432x960-M.json): the
# Sintel submission mix 20 x Sintel clean + 20 x Sintel final + 80 x KITTI + 30 x HD1K +
# FlyingThings3D clean, 432x960 crops, batch 32, 300k steps, AdamW lr 4e-4, wd 1e-5, gamma 0.85,
# scale 2**[-0.2, 0.6] (KITTI 2**[-0.3, 0.5], HD1K 2**[-0.5, 0.2], both sparse). Starts from
# the Things stage.
_base_ = ['./sea-raft-m_things-432x960.py']
from perception.datasets.transforms.flow import flow_train_pipeline

load_from = 'work_dirs/sea-raft-m_things-432x960/iter_120000.pth'
crop_size = (432, 960)

train_dataloader = dict(
    dataset=dict(_delete_=True, type='ConcatDataset', datasets=[
        dict(type='RepeatDataset', times=20, dataset=dict(
            type='SintelDataset', data_root='data/Sintel', pass_name='clean',
            pipeline=flow_train_pipeline(crop_size, -0.2, 0.6))),
        dict(type='RepeatDataset', times=20, dataset=dict(
            type='SintelDataset', data_root='data/Sintel', pass_name='final',
            pipeline=flow_train_pipeline(crop_size, -0.2, 0.6))),
        dict(type='RepeatDataset', times=80, dataset=dict(
            type='KittiFlowDataset', data_root='data/KITTI',
            pipeline=flow_train_pipeline(crop_size, -0.3, 0.5, sparse=True))),
        dict(type='RepeatDataset', times=30, dataset=dict(
            type='HD1KDataset', data_root='data/HD1K',
            pipeline=flow_train_pipeline(crop_size, -0.5, 0.2, sparse=True))),
        dict(type='FlyingThings3DFlowDataset', data_root='data/FlyingThings3D',
             render_pass='cleanpass', pipeline=flow_train_pipeline(crop_size, -0.2, 0.6)),
    ]),
)

max_iters = 300000
lr = 4e-4
train_cfg = dict(max_iters=max_iters, val_interval=20000)
param_scheduler = [
    dict(type='OneCycleLR', eta_max=lr, total_steps=max_iters + 100, pct_start=0.05,
         by_epoch=False, anneal_strategy='linear'),
]
