"""Reusable blocks: deformable attention, ConvGRU, window/group attention, linear RNN ops."""
from .drop import DropPath, drop_path, trunc_normal_

__all__ = ['DropPath', 'drop_path', 'trunc_normal_']
