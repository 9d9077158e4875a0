"""Procedural data with known answers, for demos and learning tests."""
from .images import render_texture_image

__all__ = ['render_texture_image']
