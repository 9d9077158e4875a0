"""Reusable blocks: deformable attention, ConvGRU, window/group attention, linear RNN ops."""
from .conv_gru import ConvGRU
from .drop import DropPath, drop_path, trunc_normal_
from .fpn import FPN
from .ms_deform_attn import (
    MultiScaleDeformableAttention,
    flatten_levels,
    level_start_index,
    multi_scale_deformable_attention,
)
from .norm import LayerNorm2d
from .padding import reflect_pad_to_multiple
from .transformer import Mlp, init_transformer_weights
from .window_attention import (
    WindowAttention,
    attend_in_windows,
    relative_position_index,
    shifted_window_mask,
    window_partition,
    window_reverse,
)

__all__ = ['FPN', 'ConvGRU', 'DropPath', 'LayerNorm2d', 'Mlp', 'MultiScaleDeformableAttention',
           'WindowAttention', 'attend_in_windows', 'drop_path', 'flatten_levels',
           'init_transformer_weights', 'level_start_index', 'multi_scale_deformable_attention',
           'reflect_pad_to_multiple', 'relative_position_index', 'shifted_window_mask',
           'trunc_normal_', 'window_partition', 'window_reverse']
