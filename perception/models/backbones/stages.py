"""What the backbones share about their stages: argument checks and freezing."""
from __future__ import annotations

from typing import Iterable, Sequence

from torch import nn


def check_stage_args(name: str, out_indices: Sequence[int], frozen_stages: int,
                     num_stages: int = 4) -> tuple[int, ...]:
    """Validate ``out_indices`` (a non-empty subset of the stages) and ``frozen_stages``
    (-1 .. ``num_stages``); returns ``out_indices`` as a tuple."""
    out_indices = tuple(out_indices)
    if not out_indices or any(i not in range(num_stages) for i in out_indices):
        raise ValueError(f'{name} out_indices must be a non-empty subset of '
                         f'0..{num_stages - 1}, got {out_indices}')
    if not -1 <= frozen_stages <= num_stages:
        raise ValueError(f'{name} frozen_stages must be in -1..{num_stages}, got {frozen_stages}')
    return out_indices


def freeze_modules(modules: Iterable[nn.Module]) -> None:
    """Put ``modules`` in eval mode (fixed BatchNorm statistics, no dropout / drop path) and
    stop their gradients. Backbones call it after every ``train()``."""
    for module in modules:
        module.eval()
        for param in module.parameters():
            param.requires_grad = False
