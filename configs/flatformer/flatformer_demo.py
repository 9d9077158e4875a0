# Tiny FlatFormer detector for tests and CPU demos: the synthetic-LiDAR CenterPoint demo with a
# FlatFormer of 32 channels, 4 heads, 2 blocks (of 4 layers: x, x shifted, y, y shifted), 9 x 9
# windows and groups of 16 between its pillar encoder and its BEV backbone.
_base_ = ['../centerpoint/centerpoint_pillar_synthetic-lidar_demo.py']

channels = 32

model = dict(
    voxel_encoder=dict(feat_channels=[channels, channels]),
    backbone_3d=dict(
        _delete_=True, type='FlatFormer', in_channels=channels, num_heads=4, num_blocks=2,
        window_shape=(9, 9), group_size=16),
    bev_backbone=dict(in_channels=channels),
)

benchmark = dict(input_shape=[20000, 4])
