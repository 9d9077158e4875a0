# SEA-RAFT (M), stage 2 of the published recipe (official Tartan-C-T432x960-M.json): FlyingThings3D
# clean + final passes, 432x960 crops, batch 32, 120k steps, AdamW lr 4e-4, wd 1e-5, loss gamma
# 0.85, scale 2**[-0.4, 0.8]. Starts from the Chairs stage.
_base_ = ['./sea-raft-m_chairs-368x496.py']
from perception.datasets.transforms.flow import flow_train_pipeline

load_from = 'work_dirs/sea-raft-m_chairs-368x496/iter_100000.pth'
model = dict(loss_gamma=0.85)
crop_size = (432, 960)
_aug = flow_train_pipeline(crop_size, -0.4, 0.8)
train_dataloader = dict(
    batch_size=32,
    dataset=dict(_delete_=True, type='ConcatDataset', datasets=[
        dict(type='FlyingThings3DFlowDataset', data_root='data/FlyingThings3D',
             render_pass=render_pass, pipeline=_aug)
        for render_pass in ('cleanpass', 'finalpass')]),
)

max_iters = 120000
lr = 4e-4
train_cfg = dict(max_iters=max_iters)
optim_wrapper = dict(optimizer=dict(lr=lr, weight_decay=1e-5))
param_scheduler = [
    dict(type='OneCycleLR', eta_max=lr, total_steps=max_iters + 100, pct_start=0.05,
         by_epoch=False, anneal_strategy='linear'),
]
