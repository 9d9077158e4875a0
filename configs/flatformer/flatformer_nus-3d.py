# FlatFormer (Liu et al., CVPR 2023) with a CenterPoint head on nuScenes: 10 classes in
# CenterPoint's 6 tasks, velocity, circle NMS; 10 sweeps (x, y, z, intensity, time lag) as
# configs/_base_/datasets/nus-3d.py. Backbone as the official Waymo model (128 channels, 8 heads,
# 2 blocks of 4 layers, 13 x 13 windows, groups of 144), VFE (64, 128), SECOND [3, 3] x [1, 2],
# SECONDFPN [1, 2], head at the pillar resolution (out_size_factor 1), as the official config.
# Pillars: 0.32 m (the paper's size): range [-51.2, -51.2, -5, 51.2, 51.2, 3] -> a 320 x 320 grid.
_base_ = [
    '../_base_/models/centerpoint_nus.py',
    '../_base_/datasets/nus-3d.py',
    '../_base_/schedules/cyclic-adamw_80e.py',
    '../_base_/default_runtime.py',
]

point_cloud_range = [-51.2, -51.2, -5.0, 51.2, 51.2, 3.0]
voxel_size = [0.32, 0.32, 8.0]
channels = 128

model = dict(
    voxel_encoder=dict(
        type='DynamicVFE', in_channels=5, feat_channels=[64, channels], voxel_size=voxel_size,
        point_cloud_range=point_cloud_range, with_cluster_center=True, with_voxel_center=True,
        with_distance=False),
    backbone_3d=dict(
        _delete_=True, type='FlatFormer', in_channels=channels, num_heads=8, num_blocks=2,
        window_shape=(13, 13), group_size=144, ffn_ratio=2, activation='gelu',
        pos_temperature=10000, normalize_pos=False),
    bev_backbone=dict(
        type='SECOND', in_channels=channels, out_channels=[64, 128], layer_nums=[3, 3],
        layer_strides=[1, 2]),
    neck=dict(
        type='SECONDFPN', in_channels=[64, 128], out_channels=[128, 128],
        upsample_strides=[1, 2]),
    # CenterPoint's six tasks with velocity, circle NMS and velocity code weights 0.2: the base's.
    head=dict(
        in_channels=256, voxel_size=voxel_size, point_cloud_range=point_cloud_range,
        out_size_factor=1),
)

benchmark = dict(input_shape=[300000, 5])  # ten sweeps of (x, y, z, intensity, time lag)
