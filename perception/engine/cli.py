"""What ``tools/train.py`` and ``tools/test.py`` share: config preparation and error reporting."""
from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable

import torch
from mmengine.config import Config, DictAction
from mmengine.runner import Runner

from ..registry import UnknownTypeError
from .config import load_config
from .distributed import setup_cpu_distributed
from .errors import PerceptionError
from .fileio import atomic_write_bytes

# Errors that mean "the user's input is wrong": shown as one line, not a traceback.
USER_ERRORS = (PerceptionError, UnknownTypeError, FileNotFoundError)


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every config-driven tool takes: overrides and the launcher."""
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
                        help='override config keys, e.g. train_cfg.max_iters=100; '
                        'a key that does not exist is an error')
    parser.add_argument('--launcher', choices=['none', 'pytorch'], default='none',
                        help='job launcher (pytorch: started by torchrun)')
    # torch.distributed.launch passes --local-rank; torchrun sets LOCAL_RANK instead.
    parser.add_argument('--local-rank', '--local_rank', type=int, default=0,
                        help=argparse.SUPPRESS)


def exits_cleanly_on_user_error(main: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a tool's ``main`` so user errors print ``error: ...`` and exit with status 2.

    ``PERCEPTION_DEBUG=1`` re-raises them with the full traceback.
    """

    @functools.wraps(main)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return main(*args, **kwargs)
        except USER_ERRORS as err:
            if os.environ.get('PERCEPTION_DEBUG'):
                raise
            print(f'error: {err}', file=sys.stderr)
            sys.exit(2)

    return wrapper


def prepare_config(config: str,
                   cfg_options: dict[str, Any] | None,
                   work_dir: str | None,
                   launcher: str = 'none') -> Config:
    """Load ``config`` with overrides and fill in what a run needs: work dir, launcher, backend."""
    cfg = load_config(config, cfg_options)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = str(Path('work_dirs') / Path(config).stem)
    cfg.launcher = launcher
    if not torch.cuda.is_available():
        env_cfg = cfg.get('env_cfg') or {}
        cfg.env_cfg = {**env_cfg, 'dist_cfg': {**env_cfg.get('dist_cfg', {}), 'backend': 'gloo'}}
        setup_cpu_distributed(cfg)
    return cfg


def write_json(path: str | os.PathLike, payload: Any) -> None:
    """Write ``payload`` as JSON atomically (temporary file, then rename)."""
    atomic_write_bytes(path, json.dumps(payload, indent=2, sort_keys=True).encode(),
                       durable=False)


class HideStartupDumps(logging.Filter):
    """Keep mmengine's start-up dumps off the console: the environment (``System environment:``),
    the whole config (``Config:``) and the hook table (``Hooks will be executed``), a few hundred
    lines before the first iteration. The log file in the work dir keeps them."""

    HIDDEN = ('System environment:', 'Config:\n', 'Hooks will be executed',
              'Distributed training is not used')

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage().lstrip('\n-')
        return not message.startswith(self.HIDDEN)


class QuietConsoleRunner(Runner):
    """mmengine's ``Runner`` whose console handler drops :class:`HideStartupDumps`' records."""

    def build_logger(self, *args: Any, **kwargs: Any):
        logger = super().build_logger(*args, **kwargs)
        for handler in logger.handlers:
            # FileHandler is a StreamHandler too: only the console stream is filtered.
            if isinstance(handler, logging.StreamHandler) and not isinstance(
                    handler, logging.FileHandler):
                if not any(isinstance(f, HideStartupDumps) for f in handler.filters):
                    handler.addFilter(HideStartupDumps())
        return logger


def build_runner(cfg: Config) -> Runner:
    """The Runner of ``tools/train.py`` and ``tools/test.py``: ``Runner.from_cfg`` with a quiet
    console (see :class:`HideStartupDumps`)."""
    return QuietConsoleRunner.from_cfg(cfg)
