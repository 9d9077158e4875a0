"""Optimizer wrappers beyond mmengine's."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from mmengine.optim import OptimWrapper

from ..registry import OPTIM_WRAPPERS


@OPTIM_WRAPPERS.register_module()
class AutocastOptimWrapper(OptimWrapper):
    """Mixed precision through ``torch.autocast`` without loss scaling.

    mmengine's ``AmpOptimWrapper`` refuses to run without a GPU. bfloat16 has float32's exponent
    range, so it needs no loss scaler and works on CPUs; ``tools/train.py --amp`` picks this on a
    CPU and ``AmpOptimWrapper`` (float16 with dynamic loss scaling) on a GPU.

    Args:
        dtype: autocast dtype, ``'bfloat16'`` by default.
        device_type: ``'cpu'`` or ``'cuda'``.
    """

    def __init__(self, dtype: str = 'bfloat16', device_type: str = 'cpu', **kwargs) -> None:
        super().__init__(**kwargs)
        self.cast_dtype = getattr(torch, dtype)
        self.device_type = device_type

    @contextmanager
    def optim_context(self, model: torch.nn.Module) -> Iterator[None]:
        with super().optim_context(model), torch.autocast(self.device_type, dtype=self.cast_dtype):
            yield
