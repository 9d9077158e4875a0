# UPerNet on ResNet-50 with an FCN auxiliary head, ADE20K 512x512 crops, batch 4 x 4, 160k
# iterations of mmsegmentation's SGD poly schedule.
_base_ = [
    '../_base_/models/upernet_r50.py',
    '../_base_/datasets/ade20k_512x512.py',
    '../_base_/schedules/sgd-poly_160k.py',
    '../_base_/default_runtime.py',
]
model = dict(decode_head=dict(num_classes=150), auxiliary_head=dict(num_classes=150))
default_hooks = dict(checkpoint=dict(interval=16000))
