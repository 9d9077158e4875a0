# LION-RWKV on KITTI: lion-mamba_kitti-3d-3class.py with the official RWKV operator
# (second_with_lion_rwkv_64dim.yaml): Vision-RWKV 6 blocks with bidirectional WKV, 4 heads
# (head size 16), time shift by 1, FFN ratio 4, layer scale 1e-5, drop path 0.2.
_base_ = ['./lion-mamba_kitti-3d-3class.py']

model = dict(
    backbone_3d=dict(
        operator='rwkv',
        operator_cfg=dict(_delete_=True, n_head=4, hidden_rate=4, init_values=1e-5,
                          drop_path=0.2)))
