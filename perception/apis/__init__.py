"""init_model / inference functions used by tools and robotics scripts."""
from .inference import depth_to_points, disparity_to_depth, inference_stereo, init_model, write_ply

__all__ = ['depth_to_points', 'disparity_to_depth', 'inference_stereo', 'init_model', 'write_ply']
