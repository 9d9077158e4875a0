# RAFT, stage 'sintel' of the published schedule (chairs -> things -> sintel -> kitti), from the
# things stage. Official train_standard.sh: 100000 iterations, batch 6, crop (368, 768), AdamW
# lr 1.25e-4, weight decay 1e-5, gamma 0.85. Data (fetch_dataloader, 'C+T+K+S+H'): 100 x Sintel
# clean + 100 x Sintel final + 200 x KITTI 2015 + 5 x HD1K + FlyingThings3D clean; scale
# 2**[-0.2, 0.6] (KITTI 2**[-0.3, 0.5], HD1K 2**[-0.5, 0.2], both sparse, with flips).
_base_ = ['./raft_things.py']

load_from = 'work_dirs/raft_things/iter_100000.pth'
model = dict(test_iters=32, loss_gamma=0.85)
crop_size = (368, 768)


def _dense(min_scale, max_scale):
    # the official FlowAugmentor, as in raft_chairs.py
    return [
        dict(type='LoadFlowPair'),
        dict(type='LoadFlow', required=True),
        dict(type='FlowColorJitter'),
        dict(type='FlowEraser'),
        dict(type='FlowRandomScale', min_scale=min_scale, max_scale=max_scale,
             crop_size=crop_size),
        dict(type='FlowRandomFlip', horizontal_prob=0.5, vertical_prob=0.1),
        dict(type='FlowRandomCrop', crop_size=crop_size),
        dict(type='PackFlowInputs'),
    ]


def _sparse(min_scale, max_scale):
    # The official SparseFlowAugmentor (KITTI, HD1K): weaker symmetric colour jitter, eraser
    # 0.5, scale without stretch (valid points moved, not interpolated), h-flip 0.5 only, crop
    # corner drawn with a (20, 50) px margin.
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
        dict(type='RepeatDataset', times=100, dataset=dict(
            type='SintelDataset', data_root='data/Sintel', pass_name='clean',
            pipeline=_dense(-0.2, 0.6))),
        dict(type='RepeatDataset', times=100, dataset=dict(
            type='SintelDataset', data_root='data/Sintel', pass_name='final',
            pipeline=_dense(-0.2, 0.6))),
        dict(type='RepeatDataset', times=200, dataset=dict(
            type='KittiFlowDataset', data_root='data/KITTI',
            pipeline=_sparse(-0.3, 0.5))),
        dict(type='RepeatDataset', times=5, dataset=dict(
            type='HD1KDataset', data_root='data/HD1K',
            pipeline=_sparse(-0.5, 0.2))),
        dict(type='FlyingThings3DFlowDataset', data_root='data/FlyingThings3D',
             render_pass='cleanpass', pipeline=_dense(-0.2, 0.6)),
    ]),
)

max_iters = 100000
lr = 1.25e-4
train_cfg = dict(max_iters=max_iters)
optim_wrapper = dict(optimizer=dict(lr=lr, weight_decay=1e-5))
param_scheduler = [
    dict(type='OneCycleLR', eta_max=lr, total_steps=max_iters + 100, pct_start=0.05,
         by_epoch=False, anneal_strategy='linear'),
]
