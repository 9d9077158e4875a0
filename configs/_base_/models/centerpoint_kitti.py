# CenterPoint-pillar for KITTI, 3 classes (Car, Pedestrian, Cyclist) in one task: dynamic pillar VFE
# (0.16 m pillars), no 3D backbone, SECOND 2D backbone + SECONDFPN (PointPillars' KITTI layout,
# output stride 2), CenterHead with rotated NMS per class.
# Range: PointPillars' [0, -39.68, -3, 69.12, 39.68, 1] gives a 432 x 496 grid, divisible by the
# backbone's total stride 8, so the three FPN branches meet at 216 x 248 (= grid / out_size_factor
# 2). KITTI's base range [0, -40, -3, 70.4, 40, 1] gives 440 x 500: 500 / 8 is not an integer and
# the upsampled branches would not align.
voxel_size = [0.16, 0.16, 4]
model_point_cloud_range = [0, -39.68, -3, 69.12, 39.68, 1]
out_size_factor = 2
# (not 'point_cloud_range': the dataset config owns that name and bases may not share keys)

model = dict(
    type='LidarDetector',
    data_preprocessor=dict(type='LidarDataPreprocessor'),
    voxel_encoder=dict(
        type='DynamicVFE',
        in_channels=4,
        feat_channels=[64],
        voxel_size=voxel_size,
        point_cloud_range=model_point_cloud_range,
        with_cluster_center=True,
        with_voxel_center=True,
        with_distance=False),
    backbone_3d=None,
    bev_backbone=dict(
        type='SECOND',
        in_channels=64,
        out_channels=[64, 128, 256],
        layer_nums=[3, 5, 5],
        layer_strides=[2, 2, 2]),
    neck=dict(
        type='SECONDFPN',
        in_channels=[64, 128, 256],
        out_channels=[128, 128, 128],
        upsample_strides=[1, 2, 4]),
    head=dict(
        type='CenterHead',
        in_channels=384,
        tasks=[dict(num_class=3, class_names=['Car', 'Pedestrian', 'Cyclist'])],
        common_heads=dict(reg=(2, 2), height=(1, 2), dim=(3, 2), rot=(2, 2)),
        share_conv_channel=64,
        voxel_size=voxel_size,
        point_cloud_range=model_point_cloud_range,
        out_size_factor=out_size_factor,
        norm_bbox=True,
        loss_heatmap_weight=1.0,
        loss_bbox_weight=0.25),
    train_cfg=dict(
        max_objs=500,
        dense_reg=1,
        gaussian_overlap=0.1,
        min_radius=2,
        code_weights=[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]),
    test_cfg=dict(
        post_center_limit_range=[-10, -50, -10, 80, 50, 10],
        max_per_img=500,
        max_pool_nms=False,
        score_threshold=0.1,
        nms_type='rotate',
        pre_max_size=1000,
        post_max_size=100,
        nms_thr=0.1))
