"""Multi-process training on CPUs: gloo process group and a DDP wrapper without device ids.

mmengine's PyTorch launcher calls ``torch.cuda.set_device`` and gives DDP ``device_ids``, which
fails on machines without CUDA. ``setup_cpu_distributed`` initialises the gloo group itself
(mmengine then skips its own initialisation) and selects :class:`CPUDistributedDataParallel`.
"""
from __future__ import annotations

import logging
import os
import sys

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


def finish_distributed_run() -> None:
    """End a multi-process run: wait for every rank, destroy the group and exit the process.

    Does nothing in a single-process run. With gloo, a worker process sometimes aborts *after*
    a clean ``destroy_process_group`` with "terminate called without an active exception" while
    the interpreter shuts down (a C++ thread left joinable; seen in 2 of 8 runs on a loaded
    2-core machine), and torchrun then fails the whole job. Everything is written by the
    time this is called, so the process flushes its logs and leaves with ``os._exit(0)``.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    dist.barrier()
    dist.destroy_process_group()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
