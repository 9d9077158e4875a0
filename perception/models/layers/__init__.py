"""Reusable blocks: deformable attention, ConvGRU, window/group attention, linear RNN ops."""
from .conv_gru import ConvGRU
from .drop import DropPath, drop_path, trunc_normal_
from .fpn import FPN
from .norm import LayerNorm2d
from .window_attention import (
    WindowAttention,
    relative_position_index,
    shifted_window_mask,
    window_partition,
    window_reverse,
)

__all__ = ['FPN', 'ConvGRU', 'DropPath', 'LayerNorm2d', 'WindowAttention', 'drop_path',
           'relative_position_index', 'shifted_window_mask', 'trunc_normal_', 'window_partition',
           'window_reverse']
