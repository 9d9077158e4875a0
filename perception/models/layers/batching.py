"""Batching helpers shared by the data preprocessors of the task models."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor


def stack_same_size(inputs: Tensor | Sequence[Tensor], what: str) -> Tensor:
    """Stack a list of equally shaped tensors into a batch; a tensor passes through.

    ``what`` names the items in the error raised for different shapes (e.g. 'LR images').
    """
    if isinstance(inputs, Tensor):
        return inputs
    shapes = {tuple(t.shape) for t in inputs}
    if len(shapes) > 1:
        raise ValueError(f'cannot batch {what} of different sizes {sorted(shapes)}; '
                         'use batch_size=1 or crop to one size')
    return torch.stack(list(inputs))
