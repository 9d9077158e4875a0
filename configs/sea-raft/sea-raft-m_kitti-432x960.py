# SEA-RAFT (M), the KITTI fine-tuning stage (official Tartan-C-T-TSKH-kitti432x960-M.json): KITTI
# 2015 training, 432x960 crops, batch 16, 10k steps, AdamW lr 1e-4, wd 1e-5, gamma 0.85, scale
# 2**[-0.2, 0.4], no flips. Starts from the TSKH stage; evaluated at 1242x375.
_base_ = ['./sea-raft-m_chairs-368x496.py']
from perception.datasets.transforms.flow import flow_train_pipeline

load_from = 'work_dirs/sea-raft-m_tskh-432x960/iter_300000.pth'
model = dict(loss_gamma=0.85)
crop_size = (432, 960)
# The official SparseFlowAugmentor (its KITTI is sparse=True) with do_flip False: symmetric
# colour jitter, no stretch (valid points moved, not interpolated), crop corner drawn with a
# (20, 50) px margin.
_aug = flow_train_pipeline(crop_size, -0.2, 0.4, sparse=True, flip=False)
train_dataloader = dict(
    batch_size=16,
    dataset=dict(_delete_=True, type='KittiFlowDataset', data_root='data/KITTI', pipeline=_aug),
)
val_dataloader = dict(
    dataset=dict(_delete_=True, type='KittiFlowDataset', data_root='data/KITTI',
                 test_mode=True, pipeline=[
                     dict(type='LoadFlowPair'), dict(type='LoadFlow', required=True),
                     dict(type='PackFlowInputs')]),
)
test_dataloader = val_dataloader

max_iters = 10000
lr = 1e-4
train_cfg = dict(max_iters=max_iters, val_interval=2000)
optim_wrapper = dict(optimizer=dict(lr=lr, weight_decay=1e-5))
param_scheduler = [
    dict(type='OneCycleLR', eta_max=lr, total_steps=max_iters + 100, pct_start=0.05,
         by_epoch=False, anneal_strategy='linear'),
]
default_hooks = dict(checkpoint=dict(interval=2000))

# tools/benchmark.py input: one KITTI-sized pair.
benchmark = dict(input_shape=[2, 3, 375, 1242])
