"""LiDAR 3D detection: voxel front end -> 3D backbone -> BEV -> CenterPoint head.

3D backbones: FlatFormer (flattened window attention), LION (linear group RNN with a Mamba, RWKV
or RetNet operator) and SECOND's sparse-convolution encoder (the baseline). Importing this package
registers them, ``LidarDetector`` and its parts in ``MODELS``.

Each backbone module has its own ``convert_official_state_dict`` (import it from the module).
"""
from .bev_backbone import SECOND, SECONDFPN
from .centerpoint_head import CenterHead, SeparateHead
from .detector import LidarDataPreprocessor, LidarDetector, kitti_annos_from_lidar_boxes
from .flatformer import FlatFormer, flatten_window_groups
from .lion import LION
from .second import SparseEncoder

__all__ = ['LION', 'SECOND', 'SECONDFPN', 'CenterHead', 'FlatFormer', 'LidarDataPreprocessor',
           'LidarDetector', 'SeparateHead', 'SparseEncoder', 'flatten_window_groups',
           'kitti_annos_from_lidar_boxes']
