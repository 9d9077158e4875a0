"""Registries of the ``perception`` scope.

Every registry here is a child of the matching mmengine root registry, so configs can say
``type='ESPCN'`` and mmengine's ``Runner`` finds the class once ``default_scope='perception'``.
Each registry names the modules that register into it (``locations``); they are imported on the
first lookup, so no config ever needs ``custom_imports``.

A lookup of an unknown type raises :class:`UnknownTypeError`, whose message lists the registered
names closest to the one asked for.
"""
from __future__ import annotations

import difflib
from typing import Any, Callable, Iterable

from mmengine.registry import DATA_SAMPLERS as MMENGINE_DATA_SAMPLERS
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import EVALUATOR as MMENGINE_EVALUATOR
from mmengine.registry import FUNCTIONS as MMENGINE_FUNCTIONS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import INFERENCERS as MMENGINE_INFERENCERS
from mmengine.registry import LOG_PROCESSORS as MMENGINE_LOG_PROCESSORS
from mmengine.registry import LOOPS as MMENGINE_LOOPS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODEL_WRAPPERS as MMENGINE_MODEL_WRAPPERS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import OPTIM_WRAPPERS as MMENGINE_OPTIM_WRAPPERS
from mmengine.registry import OPTIMIZERS as MMENGINE_OPTIMIZERS
from mmengine.registry import PARAM_SCHEDULERS as MMENGINE_PARAM_SCHEDULERS
from mmengine.registry import RUNNERS as MMENGINE_RUNNERS
from mmengine.registry import TASK_UTILS as MMENGINE_TASK_UTILS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import VISBACKENDS as MMENGINE_VISBACKENDS
from mmengine.registry import VISUALIZERS as MMENGINE_VISUALIZERS
from mmengine.registry import WEIGHT_INITIALIZERS as MMENGINE_WEIGHT_INITIALIZERS
from mmengine.registry import Registry

SCOPE = 'perception'


class UnknownTypeError(KeyError):
    """A config asked for a ``type`` that no registry in reach knows."""

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0])


def registered_names(registry: Registry) -> list[str]:
    """Names a lookup in ``registry`` resolves without a scope prefix (its own and its parents')."""
    registry.import_from_location()
    names: set[str] = set()
    node: Registry | None = registry
    while node is not None:
        names.update(node.module_dict)
        node = node.parent
    return sorted(names)


def close_names(name: str, candidates: Iterable[str], n: int = 5) -> list[str]:
    """Registered names that look like ``name`` (typos, case, a missing suffix), best first."""
    candidates = list(candidates)
    by_lower = {c.lower(): c for c in candidates}
    matches = difflib.get_close_matches(name.lower(), list(by_lower), n=n, cutoff=0.6)
    found = [by_lower[m] for m in matches]
    # A prefix/substring hit ('ESP' -> 'ESPCN') matters more than edit distance for short names.
    found += [c for c in candidates if name.lower() in c.lower() and c not in found]
    return found[:n]


def unknown_type_message(name: str, registry: Registry, where: str | None = None) -> str:
    """One line saying what was asked for, where, and what exists instead."""
    suggestions = close_names(name, registered_names(registry))
    place = f' (at `{where}`)' if where else ''
    hint = (f'; did you mean {", ".join(repr(s) for s in suggestions)}?'
            if suggestions else '; no registered name is close to it')
    return f"unknown type '{name}'{place} in the '{registry.scope}::{registry.name}' registry{hint}"


def _with_suggestions(build_func: Callable) -> Callable:
    """Wrap a registry build function so an unknown ``type`` fails with close names."""

    def build(cfg: Any, registry: Registry, *args: Any, **kwargs: Any) -> Any:
        obj_type = cfg.get('type') if hasattr(cfg, 'get') else None
        if isinstance(obj_type, str) and registry.get(obj_type) is None:
            raise UnknownTypeError(unknown_type_message(obj_type, registry))
        return build_func(cfg, registry, *args, **kwargs)

    return build


def _child(name: str, parent: Registry, locations: list[str]) -> Registry:
    registry = Registry(name, parent=parent, scope=SCOPE, locations=locations)
    registry.build_func = _with_suggestions(registry.build_func)
    return registry


_MODEL_LOCATIONS = ['perception.models']

RUNNERS = _child('runner', MMENGINE_RUNNERS, ['perception.engine'])
LOOPS = _child('loop', MMENGINE_LOOPS, ['perception.engine'])
HOOKS = _child('hook', MMENGINE_HOOKS, ['perception.engine'])
FUNCTIONS = _child('function', MMENGINE_FUNCTIONS, ['perception.datasets'])
DATASETS = _child('dataset', MMENGINE_DATASETS, ['perception.datasets'])
DATA_SAMPLERS = _child('data sampler', MMENGINE_DATA_SAMPLERS, ['perception.datasets'])
TRANSFORMS = _child('transform', MMENGINE_TRANSFORMS, ['perception.datasets.transforms'])
MODELS = _child('model', MMENGINE_MODELS, _MODEL_LOCATIONS)
MODEL_WRAPPERS = _child('model_wrapper', MMENGINE_MODEL_WRAPPERS, ['perception.engine'])
WEIGHT_INITIALIZERS = _child('weight initializer', MMENGINE_WEIGHT_INITIALIZERS, _MODEL_LOCATIONS)
TASK_UTILS = _child('task util', MMENGINE_TASK_UTILS, _MODEL_LOCATIONS)
OPTIMIZERS = _child('optimizer', MMENGINE_OPTIMIZERS, ['perception.engine'])
OPTIM_WRAPPERS = _child('optim_wrapper', MMENGINE_OPTIM_WRAPPERS, ['perception.engine'])
OPTIM_WRAPPER_CONSTRUCTORS = _child('optimizer wrapper constructor',
                                    MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS, ['perception.engine'])
PARAM_SCHEDULERS = _child('parameter scheduler', MMENGINE_PARAM_SCHEDULERS, ['perception.engine'])
METRICS = _child('metric', MMENGINE_METRICS, ['perception.evaluation'])
EVALUATOR = _child('evaluator', MMENGINE_EVALUATOR, ['perception.evaluation'])
VISUALIZERS = _child('visualizer', MMENGINE_VISUALIZERS, ['perception.visualization'])
VISBACKENDS = _child('vis_backend', MMENGINE_VISBACKENDS, ['perception.visualization'])
LOG_PROCESSORS = _child('log_processor', MMENGINE_LOG_PROCESSORS, ['perception.engine'])
INFERENCERS = _child('inferencer', MMENGINE_INFERENCERS, ['perception.apis'])

ALL_REGISTRIES: dict[str, Registry] = {
    r.name: r for r in (RUNNERS, LOOPS, HOOKS, FUNCTIONS, DATASETS, DATA_SAMPLERS, TRANSFORMS,
                        MODELS, MODEL_WRAPPERS, WEIGHT_INITIALIZERS, TASK_UTILS, OPTIMIZERS,
                        OPTIM_WRAPPERS, OPTIM_WRAPPER_CONSTRUCTORS, PARAM_SCHEDULERS, METRICS,
                        EVALUATOR, VISUALIZERS, VISBACKENDS, LOG_PROCESSORS, INFERENCERS)
}
