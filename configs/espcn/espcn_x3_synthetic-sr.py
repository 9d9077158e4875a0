# ESPCN x3 trained on generated images: `make demo TASK=sr` (tools/demo.py --task sr).
_base_ = [
    '../_base_/models/espcn.py',
    '../_base_/datasets/synthetic_sr_x3.py',
    '../_base_/schedules/adam_iter-3k.py',
    '../_base_/default_runtime.py',
]

# tools/benchmark.py input: one 256x256 RGB LR image (768x768 output).
benchmark = dict(input_shape=[3, 256, 256])
