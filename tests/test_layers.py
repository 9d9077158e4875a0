"""Shared layers: stochastic depth and truncated-normal initialisation."""
from __future__ import annotations

import pytest
import torch

from perception.models.layers import DropPath, trunc_normal_


def test_drop_path_keeps_the_expectation_and_drops_whole_samples():
    torch.manual_seed(0)
    layer = DropPath(0.25).train()
    out = layer(torch.ones(20000, 3, 2))
    per_sample = out.reshape(20000, -1)
    # Each sample is either all zero or all 1 / 0.75.
    values = per_sample.unique()
    assert len(values) == 2 and values[0] == 0 and values[1].item() == pytest.approx(4 / 3)
    assert (per_sample == 0).all(1).float().mean().item() == pytest.approx(0.25, abs=0.01)
    assert out.mean().item() == pytest.approx(1.0, abs=0.02)
    assert torch.equal(layer.eval()(torch.ones(4, 3)), torch.ones(4, 3))


def test_trunc_normal_bounds_and_moments():
    torch.manual_seed(0)
    values = trunc_normal_(torch.empty(200000), std=0.02, a=-0.04, b=0.04)
    assert values.min() >= -0.04 and values.max() <= 0.04
    # Normal truncated at +-2 sigma: std = 0.02 * 0.8796.
    assert values.std().item() == pytest.approx(0.02 * 0.8796, abs=0.0003)
    assert abs(values.mean().item()) < 2e-4

