# LION-Mamba with a CenterPoint head on nuScenes (10 classes in CenterPoint's 6 tasks, velocity,
# circle NMS, 10 sweeps). Backbone and voxels as the official model
# (happinesslz/LION tools/cfgs/lion_models/lion_mamba_nusc_8x_1f_1x_one_stride_128dim.yaml):
# range [-54, -54, -5, 54, 54, 3] with 0.3 x 0.3 x 0.25 m voxels (a 360 x 360 x 32 grid),
# DynamicVFE (128, 128), 128 channels, the same LION layout as KITTI (4 blocks of depth 2, windows
# (13, 13, 32/16/8/4), groups 4096/2048/1024/512, voxel generation 0.2), Mamba d_state 16.
# BEV input 128 x 2 heights = 256 channels. The official model uses a ResNet BEV backbone and a
# TransFusion head; here SECOND [5, 5] x [1, 2] + FPN [256, 256] and CenterHead at stride 1.
# The official checkpoint's backbone loads with perception.models.lidar3d.lion
# .convert_official_state_dict (keys in tests/data/official_keys/lion_mamba_nus.json).
_base_ = [
    '../_base_/models/centerpoint_nus.py',
    '../_base_/datasets/nus-3d.py',
    '../_base_/schedules/cyclic-adamw_80e.py',
    '../_base_/default_runtime.py',
]

point_cloud_range = [-54.0, -54.0, -5.0, 54.0, 54.0, 3.0]
voxel_size = [0.3, 0.3, 0.25]
channels = 128

model = dict(
    voxel_encoder=dict(
        type='DynamicVFE', in_channels=5, feat_channels=[channels, channels],
        voxel_size=voxel_size, point_cloud_range=point_cloud_range, with_cluster_center=True,
        with_voxel_center=True, with_distance=False),
    backbone_3d=dict(
        _delete_=True, type='LION', in_channels=channels, layer_dims=[channels] * 4,
        depths=[2, 2, 2, 2], layer_down_scales=[[[2, 2, 2], [2, 2, 2]]] * 4,
        window_shapes=[[13, 13, 32], [13, 13, 16], [13, 13, 8], [13, 13, 4]],
        group_sizes=[4096, 2048, 1024, 512], direction=['x', 'y'], shift=True, diffusion=True,
        diff_scale=0.2, stage_down_scale=[1, 1, 2], out_window_shape=[13, 13, 2],
        out_group_size=256, operator='mamba',
        operator_cfg=dict(d_state=16, d_conv=4, expand=2, drop_path=0.2)),
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

benchmark = dict(input_shape=[300000, 5])  # ten sweeps of (x, y, z, intensity, time lag)
