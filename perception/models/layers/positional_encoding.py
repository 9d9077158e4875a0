"""Fixed sinusoidal encodings of point / voxel positions.

The transformer-style encoding of each coordinate axis with interleaved ``sin`` / ``cos`` pairs,
as DETR's and FlatFormer's positional embeddings use: channel ``2j`` of an axis holds
``sin(p / T^(2j / L))`` and channel ``2j + 1`` holds ``cos`` of the same argument, ``L`` being the
channels given to each axis. Axes are concatenated in the order given.
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ['sincos_position_encoding']


def sincos_position_encoding(positions: Tensor, channels: int,
                             temperature: float = 10000.0) -> Tensor:
    """Encode ``D``-dimensional positions into ``channels`` features.

    Each axis gets ``L = 2 * (channels // (2 * D))`` channels (an even number); the
    ``channels - D * L`` channels left over are zeros, at the end.

    Args:
        positions: (N, D) float positions (any unit: integer voxel indices, metres, radians).
            The encoding is computed in this dtype.
        channels: output width.
        temperature: ``T``, the longest wavelength is ``2 * pi * T``.

    Returns:
        (N, channels) tensor of ``positions``' dtype.
    """
    if positions.dim() != 2:
        raise ValueError(f'positions must be (N, D), got {tuple(positions.shape)}')
    if not positions.dtype.is_floating_point:
        raise TypeError(f'positions must be floating point, got {positions.dtype}')
    num_points, ndim = positions.shape
    per_axis = 2 * (channels // (2 * ndim))
    if per_axis == 0:
        raise ValueError(f'{channels} channels cannot encode {ndim} axes (need >= {2 * ndim})')
    # Both channels of a sin/cos pair share a frequency: exponent 2 * (i // 2) / L.
    pair = torch.arange(per_axis, device=positions.device, dtype=positions.dtype) // 2
    wavelength = temperature ** (2 * pair / per_axis)  # (L,)
    angles = positions[:, :, None] / wavelength  # (N, D, L)
    encoded = torch.stack([angles[..., 0::2].sin(), angles[..., 1::2].cos()], dim=-1)
    encoded = encoded.reshape(num_points, ndim * per_axis)  # sin, cos interleaved, axis by axis
    gap = channels - ndim * per_axis
    if gap:
        encoded = torch.cat([encoded, encoded.new_zeros(num_points, gap)], dim=1)
    return encoded
