"""Multi-process training on CPUs: gloo process group and a DDP wrapper without device ids.

mmengine's PyTorch launcher calls ``torch.cuda.set_device`` and gives DDP ``device_ids``, which
fails on machines without CUDA. ``setup_cpu_distributed`` initialises the gloo group itself
(mmengine then skips its own initialisation) and selects :class:`CPUDistributedDataParallel`.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from mmengine.config import Config
from mmengine.model import MMDistributedDataParallel

from ..registry import MODEL_WRAPPERS


@MODEL_WRAPPERS.register_module()
class CPUDistributedDataParallel(MMDistributedDataParallel):
    """``MMDistributedDataParallel`` that ignores ``device_ids`` for modules on the CPU."""

    def __init__(self, module: torch.nn.Module, device_ids: list[int] | None = None,
                 **kwargs) -> None:
        on_cpu = all(p.device.type == 'cpu' for p in module.parameters())
        super().__init__(module=module, device_ids=None if on_cpu else device_ids, **kwargs)


def setup_cpu_distributed(cfg: Config) -> None:
    """Prepare a ``launcher='pytorch'`` run on a machine without CUDA (no-op otherwise)."""
    if cfg.get('launcher', 'none') != 'pytorch' or torch.cuda.is_available():
        return
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo')
    if cfg.get('model_wrapper_cfg') is None:
        cfg.model_wrapper_cfg = dict(
            # Scoped name: the Runner looks wrappers up in mmengine's root registry.
            type='perception.CPUDistributedDataParallel',
            find_unused_parameters=cfg.get('find_unused_parameters', False))


def teardown_distributed() -> None:
    """Destroy the process group before exit; a gloo group left alive can abort at shutdown."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
