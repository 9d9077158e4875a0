# FlatFormer (Liu et al., CVPR 2023) as the 3D backbone of a CenterPoint-style pillar detector on
# KITTI (Car, Pedestrian, Cyclist). Backbone as the official Waymo model
# (mit-han-lab/flatformer configs/flatformer/flatformer_waymo_D1_2x_3class.py): 128 channels,
# 8 heads, 2 blocks of 4 layers, 13 x 13 windows, groups of 144; DynamicVFE (64, 128); SECOND
# [3, 3] x [1, 2] with SECONDFPN [1, 2]; head at the pillar resolution (out_size_factor 1).
#
# Pillars: 0.32 m, the paper's size. With the head at stride 1 the heatmap cell is 0.32 m, the same
# as published KITTI pillar models (PointPillars / CenterPoint-pillar: 0.16 m pillars, head at
# stride 2), and the 13-cell window covers 4.16 m, about one car, as on Waymo. 0.16 m pillars would
# give 4x the pillars, and windows half the size in metres for the same group size.
# KITTI range [0, -40, -3, 70.4, 40, 1] -> a 220 x 250 x 1 grid.
_base_ = [
    '../_base_/models/centerpoint_kitti.py',
    '../_base_/datasets/kitti-3d-3class.py',
    '../_base_/schedules/cyclic-adamw_80e.py',
    '../_base_/default_runtime.py',
]

point_cloud_range = [0, -40, -3, 70.4, 40, 1]
voxel_size = [0.32, 0.32, 4]
channels = 128

model = dict(
    voxel_encoder=dict(
        type='DynamicVFE', in_channels=4, feat_channels=[64, channels], voxel_size=voxel_size,
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
    head=dict(
        in_channels=256, voxel_size=voxel_size, point_cloud_range=point_cloud_range,
        out_size_factor=1),
)

benchmark = dict(input_shape=[120000, 4])  # one cloud of (x, y, z, intensity) points
