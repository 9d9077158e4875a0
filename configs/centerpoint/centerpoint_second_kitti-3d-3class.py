# CenterPoint with SECOND's sparse-conv 3D encoder on KITTI (Car, Pedestrian, Cyclist): the sparse
# convolution baseline FlatFormer and LION are compared with. 3D part as mmdetection3d's SECOND
# KITTI model (configs/_base_/models/second_hv_secfpn_kitti.py): 0.05 x 0.05 x 0.1 m voxels on
# [0, -40, -3, 70.4, 40, 1] (40 x 1600 x 1408, encoded on mmdetection3d's 41 x 1600 x 1408),
# SparseEncoder (16, 32, 64, 64 channels, stride 8) -> 128 x 2 z cells = 256 BEV channels on
# 200 x 176, SECOND [5, 5] x [1, 2] + SECONDFPN [256, 256]; CenterHead at stride 8. Voxel features:
# a small DynamicVFE (16, 16) in place of SECOND's hard voxelisation + per-voxel mean.
_base_ = [
    '../_base_/models/centerpoint_kitti.py',
    '../_base_/datasets/kitti-3d-3class.py',
    '../_base_/schedules/cyclic-adamw_80e.py',
    '../_base_/default_runtime.py',
]

point_cloud_range = [0, -40, -3, 70.4, 40, 1]
voxel_size = [0.05, 0.05, 0.1]
vfe_channels = 16

model = dict(
    voxel_encoder=dict(
        type='DynamicVFE', in_channels=4, feat_channels=[vfe_channels, vfe_channels],
        voxel_size=voxel_size, point_cloud_range=point_cloud_range, with_cluster_center=True,
        with_voxel_center=True, with_distance=False),
    backbone_3d=dict(
        _delete_=True, type='SparseEncoder', in_channels=vfe_channels,
        sparse_shape=[41, 1600, 1408], order=('conv', 'norm', 'act'),
        encoder_channels=((16,), (32, 32, 32), (64, 64, 64), (64, 64, 64)),
        encoder_paddings=((1,), (1, 1, 1), (1, 1, 1), ((0, 1, 1), 1, 1)),
        block_type='conv_module', output_channels=128),
    bev_backbone=dict(
        type='SECOND', in_channels=256, out_channels=[128, 256], layer_nums=[5, 5],
        layer_strides=[1, 2]),
    neck=dict(
        type='SECONDFPN', in_channels=[128, 256], out_channels=[256, 256],
        upsample_strides=[1, 2]),
    head=dict(
        in_channels=512, voxel_size=voxel_size, point_cloud_range=point_cloud_range,
        out_size_factor=8),
)

benchmark = dict(input_shape=[120000, 4])  # one cloud of (x, y, z, intensity) points
