# RAFT, stage 'kitti' of the published schedule (chairs -> things -> sintel -> kitti), from the
# sintel stage. Official train_standard.sh: 50000 iterations, batch 6, crop (288, 960), AdamW
# lr 1e-4, weight decay 1e-5, gamma 0.85. Data: KITTI 2015 training, sparse augmentation with
# scale 2**[-0.2, 0.4] and no flips; validated on KITTI 2015 training (24 iterations, Fl-all).
_base_ = ['./raft_sintel.py']

load_from = 'work_dirs/raft_sintel/iter_100000.pth'
model = dict(test_iters=24, loss_gamma=0.85)
crop_size = (288, 960)
# the official SparseFlowAugmentor as in raft_sintel.py, without flips (do_flip=False)
train_pipeline = [
    dict(type='LoadFlowPair'),
    dict(type='LoadFlow', required=True),
    dict(type='FlowColorJitter', brightness=0.3, contrast=0.3, saturation=(0.7, 1.3),
         hue=0.3 / 3.14, asymmetric_prob=0.0),
    dict(type='FlowEraser'),
    dict(type='FlowRandomScale', min_scale=-0.2, max_scale=0.4, stretch_prob=0.0,
         crop_size=crop_size, sparse=True),
    dict(type='FlowRandomFlip', horizontal_prob=0.0, vertical_prob=0.0),
    dict(type='FlowRandomCrop', crop_size=crop_size, margin=(20, 50)),
    dict(type='PackFlowInputs'),
]
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
