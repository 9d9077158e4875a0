"""Reading fields of data samples the way every metric here accepts them.

A data sample may be a dict (or other mapping) or an mmengine data element, whose data and
metainfo fields are both attributes. Dense maps may be tensors, arrays or ``PixelData``-like
objects holding the array in ``.data``.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch


def sample_field(sample: Any, name: str, default: Any = None) -> Any:
    """``sample[name]`` for mappings, ``sample.name`` otherwise; ``default`` when absent."""
    if isinstance(sample, Mapping):
        return sample.get(name, default)
    return getattr(sample, name, default)


def require_field(sample: Any, name: str, metric: str) -> Any:
    """Like :func:`sample_field`, but a missing (or None) field is a KeyError naming ``metric``."""
    value = sample_field(sample, name)
    if value is None:
        raise KeyError(f'{metric}: data sample has no {name!r}')
    return value


def dense_map(sample: Any, name: str, metric: str, required: bool = True) -> torch.Tensor | None:
    """A field as an ``(H, W)`` tensor: unwraps ``.data`` and a leading singleton channel.

    A missing field is a KeyError when ``required``, else None; other shapes are a ValueError.
    """
    value = sample_field(sample, name)
    if value is None:
        if required:
            raise KeyError(f'{metric}: data sample has no {name!r}')
        return None
    if not isinstance(value, torch.Tensor):
        if not isinstance(value, np.ndarray):  # PixelData-like (ndarrays have a .data too)
            value = value.get('data') if isinstance(value, dict) else getattr(value, 'data', value)
        value = torch.as_tensor(value)
    if value.dim() == 3 and value.shape[0] == 1:
        value = value[0]
    if value.dim() != 2:
        raise ValueError(f'{metric}: {name} must be (H, W) or (1, H, W), got '
                         f'{tuple(value.shape)}')
    return value
