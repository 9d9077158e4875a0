"""ONNX export of RAFT optical flow: onnxruntime gives PyTorch's flow, also through
``inference_flow`` with an ``OnnxModel``."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from perception.apis.inference import inference_flow, init_model
from perception.engine.config import load_config

from .conftest import ROOT

onnx = pytest.importorskip('onnx')
pytest.importorskip('onnxruntime')
from perception.apis.onnx_runtime import OnnxModel, export_onnx, onnx_parity  # noqa: E402

# Measured max |onnxruntime - PyTorch| on seeded random weights, 64x96 pairs, 3 iterations (float32,
# loaded 2-core machine): RAFT-small 5.5e-6 px (seeds 1-3), RAFT 1.3e-6 px (seed 1). Bound 1e-4.
TOL = 1e-4


@pytest.fixture(scope='module', params=['raft-small_things.py', 'raft_things.py'],
                ids=['raft-small', 'raft'])
def exported(request, tmp_path_factory):
    """RAFT-small (bilinear upsampling, ConvGRU) and RAFT (convex upsampling, separable
    ConvGRU) at their published sizes, exported with 3 iterations baked in; export 12 s / 15 s
    on the loaded machine."""
    torch.manual_seed(0)
    model = init_model(load_config(ROOT / 'configs/raft' / request.param))  # random weights
    path = tmp_path_factory.mktemp('onnx') / 'raft.onnx'
    meta = export_onnx(model, path, (3, 64, 96), iters=3)
    return model, OnnxModel(path), meta


def test_onnxruntime_flow_matches_pytorch(exported):
    model, onnx_model, meta = exported
    assert meta['task'] == 'flow' and onnx_model.test_iters == 3
    diffs = onnx_parity(model, onnx_model, seed=1)
    assert set(diffs) == {'flow'}
    assert diffs['flow'] < TOL, diffs
    onnx.checker.check_model(str(onnx_model.path))


def test_flow_api_through_onnx(exported):
    model, onnx_model, _ = exported
    rng = np.random.default_rng(5)
    firsts = [rng.integers(0, 256, (64, 96, 3), dtype=np.uint8) for _ in range(2)]
    seconds = [np.roll(img, (1, -3), axis=(0, 1)) for img in firsts]
    expected = inference_flow(model, firsts, seconds, iters=3)
    got = inference_flow(onnx_model, firsts, seconds)  # exported batch 1: two runs
    assert len(got) == 2
    for e, g in zip(expected, got):
        assert g.shape == (64, 96, 2) and np.abs(e).max() > 0.01  # the flow is not all zero
        assert np.abs(e - g).max() < TOL
    with pytest.raises(ValueError, match='exported with 3 iterations'):
        inference_flow(onnx_model, firsts[0], seconds[0], iters=5)
