# SEA-RAFT (M), stage 3 of the published recipe (official Tartan-C-T-TSKH432x960-M.json): the
# Sintel submission mix 20 x Sintel clean + 20 x Sintel final + 80 x KITTI + 30 x HD1K +
# FlyingThings3D clean, 432x960 crops, batch 32, 300k steps, AdamW lr 4e-4, wd 1e-5, gamma 0.85,
# scale 2**[-0.2, 0.6] (KITTI 2**[-0.3, 0.5], HD1K 2**[-0.5, 0.2], both sparse). Starts from
# the Things stage.
_base_ = ['./sea-raft-m_things-432x960.py']

load_from = 'work_dirs/sea-raft-m_things-432x960/iter_120000.pth'
crop_size = (432, 960)


def _aug(min_scale, max_scale, flip=True):
    return [
        dict(type='LoadFlowPair'),
        dict(type='LoadFlow', required=True),
        dict(type='FlowColorJitter'),
        dict(type='FlowEraser'),
        dict(type='FlowRandomScale', min_scale=min_scale, max_scale=max_scale,
             crop_size=crop_size),
        dict(type='FlowRandomFlip', horizontal_prob=0.5 if flip else 0.0,
             vertical_prob=0.1 if flip else 0.0),
        dict(type='FlowRandomCrop', crop_size=crop_size),
        dict(type='PackFlowInputs'),
    ]


def _sparse(min_scale, max_scale):
    # The official SparseFlowAugmentor (its KITTI and HD1K are sparse=True): symmetric colour
    # jitter, no stretch (valid points moved, not interpolated), h-flip 0.5 only, crop corner
    # drawn with a (20, 50) px margin.
    return [
        dict(type='LoadFlowPair'),
        dict(type='LoadFlow', required=True),
        dict(type='FlowColorJitter', brightness=0.3, contrast=0.3, saturation=(0.7, 1.3),
             hue=0.3 / 3.14, asymmetric_prob=0.0),
        dict(type='FlowEraser'),
        dict(type='FlowRandomScale', min_scale=min_scale, max_scale=max_scale, stretch_prob=0.0,
             crop_size=crop_size, sparse=True),
        dict(type='FlowRandomFlip', horizontal_prob=0.5, vertical_prob=0.0),
        dict(type='FlowRandomCrop', crop_size=crop_size, margin=(20, 50)),
        dict(type='PackFlowInputs'),
    ]


train_dataloader = dict(
    dataset=dict(_delete_=True, type='ConcatDataset', datasets=[
        dict(type='RepeatDataset', times=20, dataset=dict(
            type='SintelDataset', data_root='data/Sintel', pass_name='clean',
            pipeline=_aug(-0.2, 0.6))),
        dict(type='RepeatDataset', times=20, dataset=dict(
            type='SintelDataset', data_root='data/Sintel', pass_name='final',
            pipeline=_aug(-0.2, 0.6))),
        dict(type='RepeatDataset', times=80, dataset=dict(
            type='KittiFlowDataset', data_root='data/KITTI', pipeline=_sparse(-0.3, 0.5))),
        dict(type='RepeatDataset', times=30, dataset=dict(
            type='HD1KDataset', data_root='data/HD1K', pipeline=_sparse(-0.5, 0.2))),
        dict(type='FlyingThings3DFlowDataset', data_root='data/FlyingThings3D',
             render_pass='cleanpass', pipeline=_aug(-0.2, 0.6)),
    ]),
)

max_iters = 300000
lr = 4e-4
train_cfg = dict(max_iters=max_iters, val_interval=20000)
param_scheduler = [
    dict(type='OneCycleLR', eta_max=lr, total_steps=max_iters + 100, pct_start=0.05,
         by_epoch=False, anneal_strategy='linear'),
]
