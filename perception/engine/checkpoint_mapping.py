"""Loading ImageNet checkpoints published in other projects' layouts into our backbones.

A backbone declares how each foreign layout names its weights through a class (or instance)
attribute ``CHECKPOINT_LAYOUTS``: a dict from a layout name (``'torchvision'``, ``'timm'``,
``'official'``, ...) to a :class:`CheckpointLayout`. A layout is a list of regex rewrite rules
applied to every key in order, regexes of keys to drop (classifier heads), and regexes of
*optional* keys: parameters that only one side has (BatchNorm's ``num_batches_tracked``, output
norms a classifier does not have). Everything else must match exactly: loading goes through
:func:`perception.engine.checkpoint.load_state_dict` with ``strict=True``, which refuses missing
keys, unexpected keys and shape mismatches and names them.

    model = resnet50()
    load_pretrained(model, 'resnet50-11ad3fa6.pth', layout='torchvision')
    load_pretrained(model, state_dict, layout='auto')   # the layout whose keys fit best
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence, Union

import torch
from mmengine.logging import print_log
from torch import nn

from .checkpoint import (
    CheckpointReport,
    adapt_state_dict,
    load_state_dict,
    read_checkpoint,
)
from .errors import CheckpointError

# A rewrite rule: (pattern, replacement) as ``re.sub`` takes them; the replacement may be a
# function of the match (e.g. to renumber blocks).
Rule = tuple[str, Union[str, Callable[['re.Match[str]'], str]]]

# Keys every layout treats as optional: checkpoints saved before PyTorch 0.4.1 have no
# ``num_batches_tracked`` buffers, and the value only matters for BatchNorm momentum=None.
ALWAYS_OPTIONAL = (r'(^|\.)num_batches_tracked$', )


@dataclass(frozen=True)
class CheckpointLayout:
    """How a foreign checkpoint names the weights of one of our modules.

    Attributes:
        rules: ``(pattern, replacement)`` regex substitutions, applied to every kept key in order
            (each rule sees the result of the previous ones).
        drop: regexes matched (``re.search``) against the *original* keys; matching keys are
            removed before the rules run (classifier heads, auxiliary heads).
        optional: regexes matched against *mapped* keys: such a key is dropped when the model has
            no parameter of that name, and a model parameter of that name the checkpoint lacks
            keeps its initial value.
        convert: optional function applied to the whole mapped state dict last (for tensor
            reshapes a rename cannot express).
    """
    rules: Sequence[Rule] = ()
    drop: Sequence[str] = ()
    optional: Sequence[str] = ()
    convert: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None


IDENTITY = CheckpointLayout()


def map_state_dict(state: Mapping[str, torch.Tensor],
                   rules: Sequence[Rule],
                   drop: Sequence[str] = ()) -> dict[str, torch.Tensor]:
    """Rename the keys of ``state`` by regex rules, leaving out keys that match ``drop``.

    Args:
        state: key -> tensor.
        rules: ``(pattern, replacement)`` pairs applied with ``re.sub`` to every key, in order.
        drop: regexes; a key matching any of them (``re.search`` on the original key) is left out.

    Returns:
        A new dict with the renamed keys, in the original order.

    Raises:
        CheckpointError: two keys map to the same name (the rules are ambiguous).
    """
    compiled = [(re.compile(p), r) for p, r in rules]
    dropped = [re.compile(p) for p in drop]
    out: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    for key, value in state.items():
        if any(d.search(key) for d in dropped):
            continue
        new = key
        for pattern, replacement in compiled:
            new = pattern.sub(replacement, new)
        if new in out:
            raise CheckpointError(f'key mapping sends both {origin[new]!r} and {key!r} to {new!r}')
        out[new] = value
        origin[new] = key
    return out


def checkpoint_layouts(model: nn.Module) -> dict[str, CheckpointLayout]:
    """The layouts ``model`` declares, plus ``'native'`` (our own names, as saved by this project
    or by mmengine with a ``backbone.`` prefix)."""
    layouts = dict(getattr(model, 'CHECKPOINT_LAYOUTS', None) or {})
    layouts.setdefault('native', CheckpointLayout(rules=[(r'^backbone\.', '')]))
    return layouts


def apply_layout(model: nn.Module, state: Mapping[str, torch.Tensor],
                 layout: CheckpointLayout) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Map ``state`` to ``model``'s names by ``layout`` and settle optional keys.

    Returns:
        The state dict to load (complete for ``model`` unless something real is missing) and the
        model keys that keep their initial values because the checkpoint lacks them (optional).
    """
    mapped = map_state_dict(state, layout.rules, layout.drop)
    if layout.convert is not None:
        mapped = layout.convert(mapped)
    optional = [re.compile(p) for p in (*ALWAYS_OPTIONAL, *layout.optional)]
    own = model.state_dict()
    # Optional keys the model does not have are dropped ...
    mapped = {k: v for k, v in mapped.items()
              if k in own or not any(p.search(k) for p in optional)}
    # ... and optional model keys the checkpoint lacks keep the model's values.
    kept = [k for k in own if k not in mapped and any(p.search(k) for p in optional)]
    for key in kept:
        mapped[key] = own[key]
    return mapped, kept


def _fit(model: nn.Module, state: Mapping[str, torch.Tensor], layout: CheckpointLayout) -> float:
    """Fraction of the model's tensors a layout maps onto with the right shape."""
    try:
        mapped, _ = apply_layout(model, state, layout)
    except CheckpointError:
        return 0.0
    own = model.state_dict()
    hits = sum(1 for k, v in mapped.items() if k in own and own[k].shape == v.shape)
    extra = sum(1 for k in mapped if k not in own)
    return (hits - extra) / max(len(own), 1)


def detect_layout(model: nn.Module, state: Mapping[str, torch.Tensor]) -> str:
    """The name of the declared layout under which ``state`` fits ``model`` best."""
    layouts = checkpoint_layouts(model)
    scores = {name: _fit(model, state, layout) for name, layout in layouts.items()}
    return max(scores, key=scores.get)  # type: ignore[arg-type]


def load_pretrained(model: nn.Module,
                    path_or_state: str | os.PathLike | Mapping[str, Any],
                    layout: str = 'auto',
                    strict: bool = True) -> CheckpointReport:
    """Load ImageNet (or other) weights published in a foreign layout into ``model``.

    Args:
        model: a module with ``CHECKPOINT_LAYOUTS`` (every layout also accepts our own names).
        path_or_state: a checkpoint file (read with ``weights_only=True``), a loaded checkpoint
            dict (weights under ``state_dict``/``model``/... or at the top level), or a state dict.
            A DataParallel ``module.`` prefix is stripped.
        layout: a key of ``model.CHECKPOINT_LAYOUTS``, ``'native'``, or ``'auto'`` to pick the
            layout under which the most tensors fit.
        strict: refuse (loading nothing) unless every non-optional key and shape matches.

    Returns:
        The match report of :func:`perception.engine.checkpoint.load_state_dict`.

    Raises:
        CheckpointError: unknown layout, unreadable file, or (strict) a key/shape mismatch; the
            message lists the offending names and shapes.
    """
    if isinstance(path_or_state, (str, os.PathLike)):
        source = os.fspath(path_or_state)
        checkpoint: Any = read_checkpoint(source)
    else:
        source, checkpoint = '<state dict>', path_or_state
    state = adapt_state_dict(checkpoint, source)
    layouts = checkpoint_layouts(model)
    name = detect_layout(model, state) if layout == 'auto' else layout
    if name not in layouts:
        raise CheckpointError(f'{type(model).__name__} knows no checkpoint layout {layout!r}; '
                              f'known: {", ".join(sorted(layouts))} (or "auto")')
    mapped, kept = apply_layout(model, state, layouts[name])
    report = load_state_dict(model, mapped, strict=strict, source=f'{source} ({name} layout)')
    kept = [k for k in kept if not k.endswith('num_batches_tracked')]  # not worth a message
    if kept:
        shown = ', '.join(kept[:5]) + (f', ... ({len(kept) - 5} more)' if len(kept) > 5 else '')
        print_log(f'{type(model).__name__}: {len(kept)} tensors not in {source} keep their '
                  f'initial values: {shown}', logger='current')
    return report
