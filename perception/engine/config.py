"""Loading configs and checking them before anything is built.

mmengine merges any ``--cfg-options`` key silently, so a typo (``optimizer.lrr=0.1``) trains with
the default and nobody notices. ``apply_cfg_options`` accepts a key only if it exists in the
config, or the dict it lands in builds a class whose constructor takes that argument.
``check_config_types`` resolves every ``type='...'``, so an unknown type fails before a Runner is
made, naming its config path and the closest names in the registry its place implies.
"""
from __future__ import annotations

import inspect
import os
from typing import Any, Iterator

from mmengine.config import Config, ConfigDict
from mmengine.registry import Registry

from .. import registry as reg
from ..registry import UnknownTypeError, close_names, unknown_type_message
from .errors import ConfigError

# The registry a ``type`` belongs to, by the nearest enclosing config key.
_REGISTRY_BY_KEY: dict[str, Registry] = {
    'model': reg.MODELS,
    'dataset': reg.DATASETS,
    'datasets': reg.DATASETS,
    'pipeline': reg.TRANSFORMS,
    'transforms': reg.TRANSFORMS,
    'sampler': reg.DATA_SAMPLERS,
    'batch_sampler': reg.DATA_SAMPLERS,
    'collate_fn': reg.FUNCTIONS,
    'val_evaluator': reg.METRICS,
    'test_evaluator': reg.METRICS,
    'metrics': reg.METRICS,
    'optim_wrapper': reg.OPTIM_WRAPPERS,
    'optimizer': reg.OPTIMIZERS,
    'constructor': reg.OPTIM_WRAPPER_CONSTRUCTORS,
    'param_scheduler': reg.PARAM_SCHEDULERS,
    'default_hooks': reg.HOOKS,
    'custom_hooks': reg.HOOKS,
    'visualizer': reg.VISUALIZERS,
    'vis_backends': reg.VISBACKENDS,
    'log_processor': reg.LOG_PROCESSORS,
    'train_cfg': reg.LOOPS,
    'val_cfg': reg.LOOPS,
    'test_cfg': reg.LOOPS,
    'model_wrapper_cfg': reg.MODEL_WRAPPERS,
}
# Inside these, nested dicts keep the enclosing key's registry (a model's losses are models, and
# default_hooks.param_scheduler is a hook).
_STICKY_KEYS = {'model', 'default_hooks', 'custom_hooks'}


def load_config(path: str | os.PathLike, cfg_options: dict[str, Any] | None = None) -> Config:
    """Read a config file, apply overrides and check every ``type`` in it.

    Raises:
        ConfigError: the file is missing or does not parse, or an override names no real key.
        UnknownTypeError: a ``type`` is registered nowhere in reach.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ConfigError(f'config file not found: {path}')
    try:
        cfg = Config.fromfile(path)
    except SyntaxError as err:
        where = err.filename if err.filename and not err.filename.startswith('<') else path
        raise ConfigError(f'config {where}, line {err.lineno}: {err.msg}') from err
    except Exception as err:  # mmengine wraps _base_ errors in several types
        raise ConfigError(f'config {path} could not be read: {err}') from err
    if cfg_options:
        apply_cfg_options(cfg, cfg_options)
    check_config_types(cfg)
    return cfg


def _accepts_argument(obj_type: Any, registry: Registry, name: str) -> bool:
    """Whether the class ``obj_type`` names takes a keyword argument ``name``."""
    cls = registry.get(obj_type) if isinstance(obj_type, str) else obj_type
    if cls is None:
        return False
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return True  # cannot tell: do not block the user
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def apply_cfg_options(cfg: Config, options: dict[str, Any]) -> None:
    """Merge ``--cfg-options`` into ``cfg`` after checking each key path exists.

    A key may be new only where its dict builds a class (has a ``type``) whose constructor takes
    it, or where the dict is a dataloader (``*_dataloader``) and torch's DataLoader takes it.
    """
    from torch.utils.data import DataLoader

    tree = cfg.to_dict()
    for dotted in options:
        parts = dotted.split('.')
        node: Any = tree
        for depth, part in enumerate(parts):
            where = '.'.join(parts[:depth]) or '<top level>'
            last = depth == len(parts) - 1
            if isinstance(node, (list, tuple)):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(f"--cfg-options '{dotted}': '{where}' is a list of "
                                      f"{len(node)}; '{part}' is not an index into it")
                node = node[int(part)]
                continue
            if not isinstance(node, dict):
                raise ConfigError(f"--cfg-options '{dotted}': '{where}' is a "
                                  f"{type(node).__name__}, not a dict with key '{part}'")
            if part in node:
                node = node[part]
                continue
            if last:
                registry = _registry_for(parts[:depth])
                # The type this dict will have once the same overrides have switched it.
                obj_type = options.get('.'.join(parts[:depth] + ['type']), node.get('type'))
                if obj_type is not None and registry is not None and _accepts_argument(
                        obj_type, registry, part):
                    break
                if depth == 1 and parts[0].endswith('_dataloader') and part in inspect.signature(
                        DataLoader).parameters:
                    break
            suggestions = close_names(part, [str(k) for k in node])
            hint = (f"; did you mean {', '.join(repr(s) for s in suggestions)}?"
                    if suggestions else '')
            raise ConfigError(f"--cfg-options '{dotted}': no key '{part}' under '{where}' "
                              f"(keys there: {', '.join(map(str, node)) or 'none'}){hint}")
    cfg.merge_from_dict(options)


def _registry_for(path: list[str]) -> Registry | None:
    """The registry a ``type`` found at config ``path`` belongs to (``None``: no clue)."""
    found = None
    for key in path:
        if key in _REGISTRY_BY_KEY:
            found = _REGISTRY_BY_KEY[key]
            if key in _STICKY_KEYS:
                break
    return found


def _typed_dicts(node: Any, path: list[str]) -> Iterator[tuple[list[str], dict]]:
    if isinstance(node, dict):
        if 'type' in node:
            yield path, node
        for key, value in node.items():
            yield from _typed_dicts(value, path + [str(key)])
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from _typed_dicts(value, path + [str(i)])


def check_config_types(cfg: Config | ConfigDict | dict) -> None:
    """Fail on the first ``type`` string that its registry cannot resolve.

    Raises:
        UnknownTypeError: with the config path, the registry and the closest registered names.
    """
    for path, node in _typed_dicts(dict(cfg), []):
        obj_type = node['type']
        if not isinstance(obj_type, str):
            continue  # a class object (lazy-import configs) needs no lookup
        # Some types sit inside another registry's section (a matcher in a model's train_cfg
        # comes from TASK_UTILS); the builder knows which, so any registry knowing it will do.
        if any(other.get(obj_type) is not None for other in reg.ALL_REGISTRIES.values()):
            continue
        # The section's registry chooses the names to suggest.
        registry = _registry_for([p for p in path if not p.isdigit()])
        if registry is None:  # an unconventional place: models are the usual guess
            registry = reg.MODELS
        raise UnknownTypeError(
            unknown_type_message(obj_type, registry, where='.'.join(path + ['type'])))

