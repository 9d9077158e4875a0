"""init_model / inference functions used by tools and robotics scripts."""
from .inference import (
    depth_to_points,
    disparity_to_depth,
    inference_sr,
    inference_stereo,
    init_model,
    tile_starts,
    write_ply,
)

__all__ = ['depth_to_points', 'disparity_to_depth', 'inference_sr', 'inference_stereo',
           'init_model', 'tile_starts', 'write_ply']
