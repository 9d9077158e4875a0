"""Monocular 3D detection: MonoDETR (depth-guided DETR) with MonoDGP's geometry-error depth option.

Importing this package registers ``MonoDETR`` and ``MonoDETRDataPreprocessor`` in ``MODELS``.
"""
from .coding import (
    backproject,
    cxcylrtb_to_xyxy,
    decode_heading,
    encode_heading,
    generalized_box_iou,
    geometric_depth,
    lid_bin_index,
    lid_bin_values,
)
from .losses import MonoDETRLoss, depth_map_loss, object_depth_target, sigmoid_focal_loss
from .matcher import HungarianMatcher, matching_cost
from .monodetr import (
    MonoDETR,
    MonoDETRDataPreprocessor,
    build_targets,
    convert_official_state_dict,
    decode_queries,
    undo_image_transform,
)
from .transformer import DepthAwareTransformer, DepthPredictor, sine_position_embedding

__all__ = [
    'DepthAwareTransformer', 'DepthPredictor', 'HungarianMatcher', 'MonoDETR',
    'MonoDETRDataPreprocessor', 'MonoDETRLoss', 'backproject', 'build_targets',
    'convert_official_state_dict', 'cxcylrtb_to_xyxy', 'decode_heading', 'decode_queries',
    'depth_map_loss', 'encode_heading', 'generalized_box_iou', 'geometric_depth', 'lid_bin_index',
    'lid_bin_values', 'matching_cost', 'object_depth_target', 'sigmoid_focal_loss',
    'sine_position_embedding', 'undo_image_transform',
]
