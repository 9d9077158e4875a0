"""Batching helpers shared by the task models: their data preprocessors and their losses."""
from __future__ import annotations

from typing import Sequence

import torch
from mmengine.structures import BaseDataElement
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


def stack_sample_field(samples: Sequence[BaseDataElement], name: str, owner: str = '',
                       required: bool = True) -> Tensor | None:
    """Stack the ground-truth field ``name`` of every data sample into ``(B, C, H, W)``.

    A field is a ``PixelData`` (its ``.data``) or a tensor, ``(C, H, W)`` or ``(H, W)`` (given a
    channel axis). When a sample lacks it: a ``ValueError`` naming ``owner`` (the model) and the
    field if ``required``, else ``None``.
    """
    values = []
    for sample in samples:
        value = getattr(sample, name, None)
        if value is None:
            if required:
                prefix = f'{owner} ' if owner else ''
                raise ValueError(f"{prefix}mode='loss' needs data samples with {name!r}")
            return None
        value = getattr(value, 'data', value)
        values.append(value if value.dim() == 3 else value[None])
    return torch.stack(values)
