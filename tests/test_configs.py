"""Every config under configs/ loads, resolves its types, builds its model and takes a step."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from mmengine.dataset import pseudo_collate
from mmengine.registry import DefaultScope

from perception.engine import DataError, load_config
from perception.registry import DATASETS, MODELS

from .conftest import ROOT

CONFIGS = sorted(p for p in (ROOT / 'configs').rglob('*.py') if '_base_' not in p.parts)


def test_there_are_configs():
    assert CONFIGS, 'no configs found'


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: str(p.relative_to(ROOT / 'configs')))
def test_config_builds_and_trains_one_step(path: Path):
    cfg = load_config(path)
    assert cfg.default_scope == 'perception'
    model = MODELS.build(cfg.model)
    assert sum(p.numel() for p in model.parameters()) > 0
    assert 'train_dataloader' in cfg, f'{path.name} has no train_dataloader'
    # One training step on the config's own training data, where it needs no downloaded files.
    try:
        # Under the config's scope, as the Runner builds it: wrappers such as mmengine's
        # ConcatDataset build their parts through the root registry.
        with DefaultScope.overwrite_default_scope(cfg.default_scope):
            dataset = DATASETS.build(cfg.train_dataloader.dataset)
    except (DataError, FileNotFoundError) as err:
        pytest.skip(f'{path.name}: training data not present ({err})')
    batch = pseudo_collate([dataset[i] for i in range(min(2, len(dataset)))])
    model.train()
    losses = model(**model.data_preprocessor(batch, True), mode='loss')
    total = sum(v for k, v in losses.items() if k.startswith('loss'))
    assert math.isfinite(total.detach().item())
    total.backward()
    assert any(p.grad is not None and torch.any(p.grad != 0) for p in model.parameters())
