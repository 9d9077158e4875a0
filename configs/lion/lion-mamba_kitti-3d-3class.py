# LION-Mamba (Liu et al., NeurIPS 2024) as the 3D backbone of a CenterPoint-style detector on KITTI
# (Car, Pedestrian, Cyclist). Backbone, voxels and BEV backbone as the official KITTI model
# (happinesslz/LION tools/cfgs/kitti_models/second_with_lion_mamba_64dim.yaml): 0.2 x 0.2 x 0.125 m
# voxels (a 352 x 400 x 32 grid), DynamicVFE (64, 64) with absolute + cluster + voxel-centre
# features, 64 channels, 4 LION blocks of depth 2 (merging by 2 x 2 x 2 inside a block), windows
# (13, 13, 32/16/8/4) with groups of 4096/2048/1024/512, x and y directions, shifted windows, voxel
# generation on 20 % of the voxels between stages (height halved each time: 32 -> 2), final layer
# with (13, 13, 2) windows and groups of 256; bidirectional Mamba (d_state 16, d_conv 4, expand 2,
# drop path 0.2). BEV: 64 channels x 2 heights = 128, SECOND [5, 5] x [1, 2] + FPN [256, 256]
# as the official BaseBEVBackbone. The official model has an anchor head; ours is CenterHead at
# stride 1 (0.2 m cells).
_base_ = [
    '../_base_/models/centerpoint_kitti.py',
    '../_base_/datasets/kitti-3d-3class.py',
    '../_base_/schedules/cyclic-adamw_80e.py',
    '../_base_/default_runtime.py',
]

point_cloud_range = [0, -40, -3, 70.4, 40, 1]
voxel_size = [0.2, 0.2, 0.125]
channels = 64
operator = 'mamba'
operator_cfg = dict(d_state=16, d_conv=4, expand=2, drop_path=0.2)

model = dict(
    voxel_encoder=dict(
        type='DynamicVFE', in_channels=4, feat_channels=[64, channels], voxel_size=voxel_size,
        point_cloud_range=point_cloud_range, with_cluster_center=True, with_voxel_center=True,
        with_distance=False),
    backbone_3d=dict(
        _delete_=True, type='LION', in_channels=channels, layer_dims=[channels] * 4,
        depths=[2, 2, 2, 2], layer_down_scales=[[[2, 2, 2], [2, 2, 2]]] * 4,
        window_shapes=[[13, 13, 32], [13, 13, 16], [13, 13, 8], [13, 13, 4]],
        group_sizes=[4096, 2048, 1024, 512], direction=['x', 'y'], shift=True, diffusion=True,
        diff_scale=0.2, stage_down_scale=[1, 1, 2], out_window_shape=[13, 13, 2],
        out_group_size=256, operator=operator, operator_cfg=operator_cfg),
    bev_backbone=dict(
        type='SECOND', in_channels=2 * channels, out_channels=[128, 256], layer_nums=[5, 5],
        layer_strides=[1, 2]),
    neck=dict(
        type='SECONDFPN', in_channels=[128, 256], out_channels=[256, 256],
        upsample_strides=[1, 2]),
    head=dict(
        in_channels=512, voxel_size=voxel_size, point_cloud_range=point_cloud_range,
        out_size_factor=1),
)

benchmark = dict(input_shape=[120000, 4])  # one cloud of (x, y, z, intensity) points
