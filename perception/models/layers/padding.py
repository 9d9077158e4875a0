"""Padding an image tensor up to a size multiple, as windowed-attention networks need."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def reflect_pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Reflect-pad ``x`` ``(B, C, H, W)`` at the bottom/right up to multiples of ``multiple``.

    Where one reflection suffices this is ``F.pad(..., mode='reflect')`` (SwinIR's and DRCT's
    ``check_image_size``, HiT-SR's per-block padding). A reflection can add at most ``size - 1``
    rows, so larger pads reflect the already padded map again (``numpy.pad(mode='reflect')``
    does the same), and a single row is repeated.
    """
    if x.dim() != 4:
        raise ValueError(f'expected (B, C, H, W), got {tuple(x.shape)}')
    for dim in (2, 3):
        missing = (-x.shape[dim]) % multiple
        while missing:
            size = x.shape[dim]
            if size < 2:
                step = missing
                x = torch.cat([x, x.narrow(dim, 0, 1).expand(
                    *[step if d == dim else -1 for d in range(4)])], dim)
            else:
                step = min(missing, size - 1)
                pad = (0, 0, 0, step) if dim == 2 else (0, step, 0, 0)
                x = F.pad(x, pad, mode='reflect')
            missing -= step
    return x
