"""Procedural data with known answers, for demos and learning tests."""
from .images import render_texture_image
from .mono3d import render_mono3d_scene, write_synthetic_kitti
from .stereo import SyntheticStereoDataset, render_stereo_pair

__all__ = ['SyntheticStereoDataset', 'render_mono3d_scene', 'render_stereo_pair',
           'render_texture_image', 'write_synthetic_kitti']
