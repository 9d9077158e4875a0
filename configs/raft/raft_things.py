# RAFT, stage 'things' of the published schedule (chairs -> things -> sintel -> kitti), from the
# chairs stage. Official train_standard.sh: 100000 iterations, batch 6, crop (400, 720), AdamW
# lr 1.25e-4, weight decay 1e-4, gamma 0.8; BatchNorm frozen from here on (train.py). Data:
# FlyingThings3D clean + final passes, scale 2**[-0.4, 0.8]; validated on Sintel (32 iterations).
_base_ = ['./raft_chairs.py']
from perception.datasets.transforms.flow import flow_train_pipeline

load_from = 'work_dirs/raft_chairs/iter_100000.pth'
model = dict(test_iters=32, loss_gamma=0.8, freeze_bn=True)
crop_size = (400, 720)
train_pipeline = flow_train_pipeline(crop_size, -0.4, 0.8)
train_dataloader = dict(
    batch_size=6,
    dataset=dict(_delete_=True, type='ConcatDataset', datasets=[
        dict(type='FlyingThings3DFlowDataset', data_root='data/FlyingThings3D',
             render_pass=render_pass, pipeline=train_pipeline)
        for render_pass in ('cleanpass', 'finalpass')]),
)
val_dataloader = dict(
    dataset=dict(type='SintelDataset', data_root='data/Sintel', pass_name='clean',
                 split='training'),
)
test_dataloader = val_dataloader

max_iters = 100000
lr = 1.25e-4
train_cfg = dict(max_iters=max_iters)
optim_wrapper = dict(optimizer=dict(lr=lr, weight_decay=1e-4))
param_scheduler = [
    dict(type='OneCycleLR', eta_max=lr, total_steps=max_iters + 100, pct_start=0.05,
         by_epoch=False, anneal_strategy='linear'),
]
