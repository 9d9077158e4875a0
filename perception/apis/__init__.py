"""init_model / inference functions used by tools and robotics scripts."""
from .inference import (
    depth_to_points,
    disparity_to_depth,
    inference_flow,
    inference_lidar3d,
    inference_mono3d,
    inference_segmentation,
    inference_sr,
    inference_stereo,
    init_model,
    model_test_pipeline,
    tile_starts,
    warm_up,
    write_ply,
)
from .onnx_runtime import OnnxModel, export_onnx, model_task, onnx_parity

__all__ = ['OnnxModel', 'depth_to_points', 'disparity_to_depth', 'export_onnx',
           'inference_flow', 'inference_lidar3d', 'inference_mono3d', 'inference_segmentation',
           'inference_sr', 'inference_stereo', 'init_model', 'model_task', 'model_test_pipeline',
           'onnx_parity', 'tile_starts', 'warm_up', 'write_ply']
