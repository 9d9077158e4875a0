"""Reusable blocks: deformable attention, ConvGRU, window/group attention, linear RNNs, sparse
voxel tensors and the LiDAR voxel encoder."""
from .conv_gru import ConvGRU, SepConvGRU
from .drop import DropPath, drop_path, trunc_normal_
from .fpn import FPN
from .linear_rnn import BiMamba, MambaBlock, RetNetBlock, RWKVBlock, build_linear_rnn_block
from .ms_deform_attn import (
    MultiScaleDeformableAttention,
    flatten_levels,
    level_start_index,
    multi_scale_deformable_attention,
)
from .norm import LayerNorm2d
from .padding import reflect_pad_to_multiple
from .positional_encoding import sincos_position_encoding
from .raft_blocks import (
    BottleneckBlock,
    ResidualBlock,
    convex_upsample,
    norm2d,
    scale_image_pairs,
    sequence_loss_weights,
)
from .sparse_voxels import SparseVoxels, make_sparse_voxels, sparse_to_bev
from .transformer import Mlp, init_transformer_weights
from .voxel_encoder import DynamicVFE
from .window_attention import (
    WindowAttention,
    attend_in_windows,
    relative_position_index,
    shifted_window_mask,
    window_partition,
    window_reverse,
)

__all__ = ['FPN', 'BiMamba', 'BottleneckBlock', 'ConvGRU', 'ResidualBlock', 'SepConvGRU',
           'convex_upsample', 'norm2d', 'scale_image_pairs', 'sequence_loss_weights',
           'DropPath', 'DynamicVFE', 'LayerNorm2d', 'MambaBlock',
           'Mlp', 'MultiScaleDeformableAttention', 'RWKVBlock', 'RetNetBlock', 'SparseVoxels',
           'WindowAttention', 'attend_in_windows', 'build_linear_rnn_block', 'drop_path',
           'flatten_levels', 'init_transformer_weights', 'level_start_index',
           'make_sparse_voxels', 'multi_scale_deformable_attention', 'reflect_pad_to_multiple',
           'relative_position_index', 'shifted_window_mask', 'sincos_position_encoding',
           'sparse_to_bev', 'trunc_normal_', 'window_partition', 'window_reverse']
