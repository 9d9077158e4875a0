# Tiny LION-Mamba detector for tests and CPU demos: the synthetic-LiDAR CenterPoint demo with a
# LION of 16 channels (Mamba d_state 4) on 0.32 x 0.32 x 0.25 m voxels (a 216 x 248 x 16 grid),
# 2 stages of depth 1 (merging by 2 x 2 x 2 inside a block), windows (9, 9, 16) and (9, 9, 8),
# groups of 64 and 32, voxel generation 0.2, final layer (9, 9, 4) / 32. Output height 4 -> the
# BEV input has 64 channels.
_base_ = ['../centerpoint/centerpoint_pillar_synthetic-lidar_demo.py']

voxel_size = [0.32, 0.32, 0.25]
channels = 16

model = dict(
    voxel_encoder=dict(feat_channels=[channels, channels], voxel_size=voxel_size),
    backbone_3d=dict(
        _delete_=True, type='LION', in_channels=channels, layer_dims=[channels] * 2,
        depths=[1, 1], layer_down_scales=[[[2, 2, 2]], [[2, 2, 2]]],
        window_shapes=[[9, 9, 16], [9, 9, 8]], group_sizes=[64, 32], direction=['x', 'y'],
        shift=True, diffusion=True, diff_scale=0.2, stage_down_scale=[1, 1, 2],
        out_window_shape=[9, 9, 4], out_group_size=32, operator='mamba',
        operator_cfg=dict(d_state=4, d_conv=4, expand=2, drop_path=0.0)),
    bev_backbone=dict(in_channels=4 * channels),
)

benchmark = dict(input_shape=[20000, 4])
