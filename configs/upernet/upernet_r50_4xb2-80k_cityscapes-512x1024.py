# UPerNet on ResNet-50 with an FCN auxiliary head, Cityscapes 512x1024 crops, batch 4 x 2, 80k
# iterations of mmsegmentation's SGD poly schedule; sliding-window evaluation.
_base_ = [
    '../_base_/models/upernet_r50.py',
    '../_base_/datasets/cityscapes_512x1024.py',
    '../_base_/schedules/sgd-poly_80k.py',
    '../_base_/default_runtime.py',
]
model = dict(test_cfg=dict(mode='slide', crop_size=(512, 1024), stride=(384, 768)))
default_hooks = dict(checkpoint=dict(interval=8000))
