# RAFT, stage 'sintel' of the published schedule (chairs -> things -> sintel -> kitti), from the
# things stage. Official train_standard.sh: 100000 iterations, batch 6, crop (368, 768), AdamW
# lr 1.25e-4, weight decay 1e-5, gamma 0.85. Data (fetch_dataloader, 'C+T+K+S+H'): 100 x Sintel
# clean + 100 x Sintel final + 200 x KITTI 2015 + 5 x HD1K + FlyingThings3D clean; scale
# 2**[-0.2, 0.6] (KITTI 2**[-0.3, 0.5], HD1K 2**[-0.5, 0.2], both sparse, with flips).
_base_ = ['./raft_things.py']
from perception.datasets.transforms.flow import flow_train_pipeline

load_from = 'work_dirs/raft_things/iter_100000.pth'
model = dict(test_iters=32, loss_gamma=0.85)
crop_size = (368, 768)


train_dataloader = dict(
    dataset=dict(_delete_=True, type='ConcatDataset', datasets=[
        dict(type='RepeatDataset', times=100, dataset=dict(
            type='SintelDataset', data_root='data/Sintel', pass_name='clean',
            pipeline=flow_train_pipeline(crop_size, -0.2, 0.6))),
        dict(type='RepeatDataset', times=100, dataset=dict(
            type='SintelDataset', data_root='data/Sintel', pass_name='final',
            pipeline=flow_train_pipeline(crop_size, -0.2, 0.6))),
        dict(type='RepeatDataset', times=200, dataset=dict(
            type='KittiFlowDataset', data_root='data/KITTI',
            pipeline=flow_train_pipeline(crop_size, -0.3, 0.5, sparse=True))),
        dict(type='RepeatDataset', times=5, dataset=dict(
            type='HD1KDataset', data_root='data/HD1K',
            pipeline=flow_train_pipeline(crop_size, -0.5, 0.2, sparse=True))),
        dict(type='FlyingThings3DFlowDataset', data_root='data/FlyingThings3D',
             render_pass='cleanpass', pipeline=flow_train_pipeline(crop_size, -0.2, 0.6)),
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
