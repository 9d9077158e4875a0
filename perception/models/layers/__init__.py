"""Reusable blocks: deformable attention, ConvGRU, window/group attention, linear RNN ops."""
