# LION-RetNet on KITTI: lion-mamba_kitti-3d-3class.py with the official RetNet operator
# (second_with_lion_retnet_64dim.yaml): chunkwise multi-scale retention (chunks of 64), 2 heads,
# key width x1, value width x2, FFN ratio 4 (used_MLP, hence no gate), drop path 0.2.
_base_ = ['./lion-mamba_kitti-3d-3class.py']

model = dict(
    backbone_3d=dict(
        operator='retnet',
        operator_cfg=dict(_delete_=True, n_head=2, expand_k=1, expand_v=2, hidden_rate=4,
                          used_MLP=True, drop_path=0.2)))
