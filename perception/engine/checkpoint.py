"""Checkpoint reading and loading that never unpickles arbitrary objects.

Every checkpoint is read with ``torch.load(..., weights_only=True)``. mmengine's own checkpoints
carry a few non-tensor objects (its ``HistoryBuffer`` in the message hub, NumPy scalars and arrays
in the logged values); exactly those types are allow-listed, nothing else. Importing this module
also makes mmengine's ``Runner`` (``load_from``, ``--resume``) read local files this way.

``load_checkpoint`` compares the checkpoint with the model before loading anything and reports
missing keys, unexpected keys and shape mismatches; official checkpoints of other projects are
adapted by ``key_mapper`` (a function from state dict to state dict) and ``revise_keys``
(regex substitutions such as stripping DataParallel's ``module.`` prefix).
"""
from __future__ import annotations

import os
import pickle
import re
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from mmengine.logging import HistoryBuffer, print_log
from mmengine.optim.scheduler.param_scheduler import OneCycleParamScheduler
from mmengine.runner.checkpoint import CheckpointLoader

from .errors import CheckpointError

try:  # NumPy >= 2 keeps its pickling helpers in numpy._core
    from numpy._core.multiarray import _reconstruct, scalar
except ImportError:  # pragma: no cover - NumPy 1.x
    from numpy.core.multiarray import _reconstruct, scalar  # type: ignore[no-redef]


# Attributes mmengine pickles by reference (``getattr(owner, name)``): each ``HistoryBuffer``'s
# statistics methods, and the annealing function a one-cycle scheduler's state holds.
_PICKLED_ATTRIBUTES: dict[Any, tuple[str, ...]] = {
    HistoryBuffer: ('min', 'max', 'current', 'mean'),
    OneCycleParamScheduler: ('_annealing_cos', '_annealing_linear'),
}


def _pickled_attribute(owner: Any, name: str) -> Any:
    """Stands in for ``getattr`` while unpickling; only the lookups above are allowed."""
    if name not in _PICKLED_ATTRIBUTES.get(owner, ()):
        raise pickle.UnpicklingError(f'refusing getattr({owner!r}, {name!r}) in a checkpoint')
    return getattr(owner, name)


# Types an mmengine checkpoint legitimately contains besides tensors and Python containers.
_SAFE_GLOBALS: list[Any] = [
    HistoryBuffer, OneCycleParamScheduler, (_pickled_attribute, 'builtins.getattr'), _reconstruct,
    scalar, np.ndarray, np.dtype, Counter,
    np.dtypes.Float64DType, np.dtypes.Float32DType, np.dtypes.Float16DType,
    np.dtypes.Int64DType, np.dtypes.Int32DType, np.dtypes.BoolDType,
]

_REFUSAL_PHRASES = ('unsupported global', 'unrecognized function', 'refusing getattr',
                    'unsupported class', 'is blocked')

# Where official checkpoints keep the weights: mmengine / mmdet ('state_dict'), BasicSR
# ('params_ema' preferred over 'params'), OpenPCDet and MonoDETR ('model_state'), torchvision-style
# ('model').
STATE_DICT_KEYS = ('state_dict', 'params_ema', 'params', 'model_state', 'model')


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = 'cpu') -> Any:
    """Read a checkpoint file with ``weights_only=True``.

    Raises:
        CheckpointError: the file does not exist, is not a PyTorch checkpoint, is truncated, or
            holds objects outside the allow-list.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f'checkpoint not found: {path}')
    try:
        with torch.serialization.safe_globals(_SAFE_GLOBALS):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        # A refused global or call shows as one of these phrases; any other unpickling error
        # means the bytes are not a checkpoint at all.
        refused = [line.strip() for line in str(err).splitlines()
                   if any(p in line.lower() for p in _REFUSAL_PHRASES)]
        if refused:
            reason = refused[0].split('WeightsUnpickler error:')[-1].strip()[:300]
            raise CheckpointError(f'checkpoint {path} cannot be loaded safely (weights_only=True '
                                  f'refuses to unpickle it): {reason}') from err
        raise CheckpointError(f'checkpoint {path} is not a readable PyTorch checkpoint '
                              '(truncated or corrupt?)') from err
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as err:
        raise CheckpointError(
            f'checkpoint {path} is not a readable PyTorch checkpoint (truncated or corrupt?): '
            f'{str(err).splitlines()[0] if str(err) else type(err).__name__}') from err


def extract_state_dict(checkpoint: Any, path: str = '<checkpoint>') -> dict[str, torch.Tensor]:
    """The weights inside a checkpoint, wherever its project chose to keep them."""
    if isinstance(checkpoint, Mapping):
        for key in STATE_DICT_KEYS:
            if isinstance(checkpoint.get(key), Mapping):
                return dict(checkpoint[key])
        if checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
            return dict(checkpoint)
    raise CheckpointError(
        f'checkpoint {path} holds no state dict: expected a dict of tensors or one under '
        f'{", ".join(repr(k) for k in STATE_DICT_KEYS)}')


@dataclass
class CheckpointReport:
    """How a state dict matched a model."""
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    loaded: int = 0

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self, limit: int = 5) -> str:
        """A one-line account, listing at most ``limit`` names of each kind."""

        def some(names: Sequence[str]) -> str:
            more = f', ... ({len(names) - limit} more)' if len(names) > limit else ''
            return ', '.join(names[:limit]) + more

        parts = [f'{self.loaded} tensors match']
        if self.missing:
            parts.append(f'{len(self.missing)} missing in the checkpoint ({some(self.missing)})')
        if self.unexpected:
            parts.append(f'{len(self.unexpected)} unexpected ({some(self.unexpected)})')
        if self.mismatched:
            shapes = [f'{k}: checkpoint {tuple(a)} vs model {tuple(b)}'
                      for k, a, b in self.mismatched]
            parts.append(f'{len(self.mismatched)} of another shape ({some(shapes)})')
        return '; '.join(parts)


def load_state_dict(model: torch.nn.Module,
                    state_dict: Mapping[str, torch.Tensor],
                    strict: bool = True,
                    source: str = '<state dict>') -> CheckpointReport:
    """Compare ``state_dict`` with ``model`` and load the tensors that fit.

    With ``strict=True`` nothing is loaded unless every key and shape matches; otherwise the
    matching tensors are loaded and the rest is reported in the log.
    """
    own = model.state_dict()
    report = CheckpointReport()
    usable: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if key not in own:
            report.unexpected.append(key)
        elif tuple(own[key].shape) != tuple(value.shape):
            report.mismatched.append((key, tuple(value.shape), tuple(own[key].shape)))
        else:
            usable[key] = value
    report.missing = [k for k in own if k not in state_dict]
    report.loaded = len(usable)
    model_name = type(model).__name__
    if strict and not report.ok:
        hint = ''
        if report.loaded < len(own) / 2:
            hint = ' It looks like a checkpoint of another model or config.'
        raise CheckpointError(f'checkpoint {source} does not fit {model_name}: '
                              f'{report.summary()}.{hint}')
    model.load_state_dict(usable, strict=False)
    if not report.ok:
        print_log(f'loaded {source} into {model_name} non-strictly: {report.summary()}',
                  logger='current')
    return report


def adapt_state_dict(checkpoint: Any,
                     source: str = '<checkpoint>',
                     revise_keys: Sequence[tuple[str, str]] = ((r'^module\.', ''), ),
                     key_mapper: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]
                     | None = None) -> dict[str, torch.Tensor]:
    """The weights of a read checkpoint, with keys revised for this project's modules.

    Args:
        checkpoint: what :func:`read_checkpoint` returned.
        source: the file name, for messages.
        revise_keys: ``(pattern, replacement)`` regex substitutions applied to every key in turn.
        key_mapper: applied after ``revise_keys``; converts another project's layout.
    """
    state_dict = extract_state_dict(checkpoint, source)
    for pattern, replacement in revise_keys:
        regex = re.compile(pattern)
        state_dict = {regex.sub(replacement, k): v for k, v in state_dict.items()}
    if key_mapper is not None:
        state_dict = key_mapper(state_dict)
    return state_dict


def load_checkpoint(model: torch.nn.Module,
                    path: str | os.PathLike,
                    map_location: str | torch.device = 'cpu',
                    strict: bool = True,
                    revise_keys: Sequence[tuple[str, str]] = ((r'^module\.', ''), ),
                    key_mapper: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]
                    | None = None) -> tuple[Any, CheckpointReport]:
    """Read ``path`` safely, adapt its keys (:func:`adapt_state_dict`) and load it into ``model``.

    Args:
        strict: fail (loading nothing) unless keys and shapes match exactly.

    Returns:
        The raw checkpoint (for ``meta`` etc.) and the match report.
    """
    path = os.fspath(path)
    checkpoint = read_checkpoint(path, map_location)
    state_dict = adapt_state_dict(checkpoint, path, revise_keys, key_mapper)
    return checkpoint, load_state_dict(model, state_dict, strict=strict, source=path)


def _load_local_weights_only(filename: str, map_location: Any = None) -> Any:
    """mmengine ``CheckpointLoader`` backend for local paths, reading with ``weights_only=True``."""
    return read_checkpoint(os.path.expanduser(filename), map_location or 'cpu')


# mmengine's default local loader calls torch.load without weights_only; route it through ours.
CheckpointLoader.register_scheme(prefixes='', loader=_load_local_weights_only, force=True)
