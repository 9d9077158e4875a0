# Tiny SECOND-encoder CenterPoint for tests and CPU demos: the synthetic-LiDAR CenterPoint demo with
# 0.16 x 0.16 x 0.1 m voxels (40 x 496 x 432, encoded on 41 x 496 x 432) and a SparseEncoder of
# 8, 16, 32, 32 channels (stride 8, 32 x 2 z cells = 64 BEV channels on 62 x 54) between its
# voxel encoder and its BEV backbone; head at stride 8 (1.28 m cells).
_base_ = ['./centerpoint_pillar_synthetic-lidar_demo.py']

voxel_size = [0.16, 0.16, 0.1]
channels = 8

model = dict(
    voxel_encoder=dict(feat_channels=[channels, channels], voxel_size=voxel_size),
    backbone_3d=dict(
        _delete_=True, type='SparseEncoder', in_channels=channels, sparse_shape=[41, 496, 432],
        base_channels=8, output_channels=32, encoder_channels=((8,), (16, 16), (32, 32), (32,)),
        encoder_paddings=((1,), (1, 1), (1, 1), ((0, 1, 1),))),
    bev_backbone=dict(in_channels=64, out_channels=[16, 32], layer_nums=[1, 1],
                      layer_strides=[1, 2]),
    neck=dict(in_channels=[16, 32], out_channels=[16, 16], upsample_strides=[1, 2]),
    head=dict(in_channels=32, voxel_size=voxel_size, out_size_factor=8),
)

benchmark = dict(input_shape=[20000, 4])
