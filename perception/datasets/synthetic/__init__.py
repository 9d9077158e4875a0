"""Procedural data with known answers, for demos and learning tests."""
from .images import render_texture_image
from .stereo import SyntheticStereoDataset, render_stereo_pair

__all__ = ['SyntheticStereoDataset', 'render_stereo_pair', 'render_texture_image']
