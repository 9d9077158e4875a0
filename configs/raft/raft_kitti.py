# RAFT, stage 'kitti' of the published schedule (chairs -> things -> sintel -> kitti), from the
# sintel stage. Official train_standard.sh: 50000 iterations, batch 6, crop (288, 960), AdamW
# lr 1e-4, weight decay 1e-5, gamma 0.85. Data: KITTI 2015 training, sparse augmentation with
# scale 2**[-0.2, 0.4] and no flips; validated on KITTI 2015 training (24 iterations, Fl-all).
_base_ = ['./raft_sintel.py']
from perception.datasets.transforms.flow import flow_train_pipeline

load_from = 'work_dirs/raft_sintel/iter_100000.pth'
model = dict(test_iters=24, loss_gamma=0.85)
crop_size = (288, 960)
# the official SparseFlowAugmentor as in raft_sintel.py, without flips (do_flip=False)
train_pipeline = flow_train_pipeline(crop_size, -0.2, 0.4, sparse=True, flip=False)
train_dataloader = dict(
    dataset=dict(_delete_=True, type='KittiFlowDataset', data_root='data/KITTI',
                 split='training', pipeline=train_pipeline),
)
val_dataloader = dict(
    dataset=dict(_delete_=True, type='KittiFlowDataset', data_root='data/KITTI',
                 split='training', test_mode=True, pipeline=[
                     dict(type='LoadFlowPair'),
                     dict(type='LoadFlow', required=True),
                     dict(type='PackFlowInputs'),
                 ]),
)
test_dataloader = val_dataloader

max_iters = 50000
lr = 1e-4
train_cfg = dict(max_iters=max_iters)
optim_wrapper = dict(optimizer=dict(lr=lr, weight_decay=1e-5))
param_scheduler = [
    dict(type='OneCycleLR', eta_max=lr, total_steps=max_iters + 100, pct_start=0.05,
         by_epoch=False, anneal_strategy='linear'),
]
benchmark = dict(input_shape=[2, 3, 375, 1242])
