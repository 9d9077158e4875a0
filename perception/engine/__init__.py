"""Training and evaluation plumbing around mmengine's Runner: configs, checkpoints, errors.

Importing this package registers its hooks and optimizer wrappers and routes mmengine's local
checkpoint reading through the ``weights_only=True`` loader.
"""
from .checkpoint import (
    CheckpointReport,
    adapt_state_dict,
    load_checkpoint,
    load_state_dict,
    read_checkpoint,
)
from .config import apply_cfg_options, check_config_types, load_config
from .distributed import (
    CPUDistributedDataParallel,
    finish_distributed_run,
    setup_cpu_distributed,
)
from .errors import CheckpointError, ConfigError, DataError, PerceptionError
from .hooks import SavePredictionsHook
from .optim import AutocastOptimWrapper

__all__ = [
    'CheckpointReport', 'adapt_state_dict', 'load_checkpoint', 'load_state_dict', 'read_checkpoint',
    'apply_cfg_options', 'check_config_types', 'load_config',
    'CPUDistributedDataParallel', 'finish_distributed_run', 'setup_cpu_distributed',
    'CheckpointError', 'ConfigError', 'DataError', 'PerceptionError',
    'SavePredictionsHook', 'AutocastOptimWrapper',
]
