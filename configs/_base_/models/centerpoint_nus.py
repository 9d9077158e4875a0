# CenterPoint-pillar for nuScenes (mmdetection3d's centerpoint_pillar02_second_secfpn_nus with the
# dynamic VFE): 0.2 m pillars over [-51.2, 51.2]^2 (512 x 512), SECOND + SECONDFPN (output stride
# 4), six task heads with velocity, circle NMS (CenterPoint's squared-distance thresholds).
# Points carry x, y, z, intensity and the sweep time lag (5 columns).
voxel_size = [0.2, 0.2, 8]
model_point_cloud_range = [-51.2, -51.2, -5.0, 51.2, 51.2, 3.0]
out_size_factor = 4

model = dict(
    type='LidarDetector',
    data_preprocessor=dict(type='LidarDataPreprocessor'),
    voxel_encoder=dict(
        type='DynamicVFE',
        in_channels=5,
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
        upsample_strides=[0.5, 1, 2],
        use_conv_for_no_stride=True),
    head=dict(
        type='CenterHead',
        in_channels=384,
        # Flattened, the tasks' classes are the dataset's label order (configs/_base_/datasets/
        # nus-3d.py).
        tasks=[
            dict(num_class=1, class_names=['car']),
            dict(num_class=2, class_names=['truck', 'construction_vehicle']),
            dict(num_class=2, class_names=['bus', 'trailer']),
            dict(num_class=1, class_names=['barrier']),
            dict(num_class=2, class_names=['motorcycle', 'bicycle']),
            dict(num_class=2, class_names=['pedestrian', 'traffic_cone']),
        ],
        common_heads=dict(reg=(2, 2), height=(1, 2), dim=(3, 2), rot=(2, 2), vel=(2, 2)),
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
        code_weights=[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.2, 0.2]),
    test_cfg=dict(
        post_center_limit_range=[-61.2, -61.2, -10.0, 61.2, 61.2, 10.0],
        max_per_img=500,
        max_pool_nms=False,
        min_radius=[4, 12, 10, 1, 0.85, 0.175],
        score_threshold=0.1,
        nms_type='circle',
        pre_max_size=1000,
        post_max_size=83,
        nms_thr=0.2))
