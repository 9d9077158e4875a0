"""Procedural data with known answers, for demos and learning tests."""
from .flow import render_flow_pair, write_synthetic_flow
from .images import render_texture_image
from .lidar import render_lidar_scene, write_synthetic_kitti_lidar
from .mono3d import render_mono3d_scene, write_synthetic_kitti
from .posed_depth import random_posed_scene, render_posed_frame, write_synthetic_posed_depth
from .segmentation import (
    SYNTHETIC_SEG_CLASSES,
    render_segmentation_sample,
    synthetic_seg_metainfo,
    write_synthetic_cityscapes,
)
from .stereo import SyntheticStereoDataset, render_stereo_pair

__all__ = ['SYNTHETIC_SEG_CLASSES', 'SyntheticStereoDataset', 'render_flow_pair',
           'random_posed_scene', 'render_lidar_scene', 'render_mono3d_scene',
           'render_posed_frame', 'render_segmentation_sample',
           'render_stereo_pair', 'render_texture_image', 'synthetic_seg_metainfo',
           'write_synthetic_cityscapes', 'write_synthetic_flow', 'write_synthetic_kitti',
           'write_synthetic_kitti_lidar', 'write_synthetic_posed_depth']
