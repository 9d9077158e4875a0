"""inference_flow plumbing (paths / arrays, batches, size errors, ONNX) on a stand-in flow module.

The stand-in's flow is a fixed function of the pair (a 1x1 conv of first - second), so a wrong
layout, order or scaling of the inputs changes the numbers compared here.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from perception.apis import inference_flow
from perception.engine import DataError
from perception.models.stereo.raft_stereo import StereoDataPreprocessor
from perception.visualization.boxes3d import write_png


class _StandIn(nn.Module):
    test_iters = 3

    def __init__(self) -> None:
        super().__init__()
        self.data_preprocessor = StereoDataPreprocessor()
        self.mix = nn.Conv2d(3, 2, 1)

    def predict_flow(self, inputs, iters=None):
        return self.mix(inputs[:, 0] - inputs[:, 1]) * (iters or self.test_iters)


def _images(seed, h=12, w=16):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(2)]


def test_arrays_paths_and_batches_agree(tmp_path):
    torch.manual_seed(0)
    model = _StandIn().eval()
    a, b = _images(0)
    flow = inference_flow(model, a, b)
    assert flow.shape == (12, 16, 2) and flow.dtype == np.float32
    pair = torch.from_numpy(np.stack([a, b]).transpose(0, 3, 1, 2)[None]).double() / 127.5 - 1
    with torch.no_grad():
        expected = model.mix.double()(pair[:, 0] - pair[:, 1])[0].permute(1, 2, 0) * 3
    model.float()
    # float32 vs float64 of a 3-tap conv: measured 5e-7, bound 1e-5
    np.testing.assert_allclose(flow, expected.numpy(), atol=1e-5)
    write_png(tmp_path / 'a.png', a)
    write_png(tmp_path / 'b.png', b)
    np.testing.assert_array_equal(inference_flow(model, tmp_path / 'a.png', tmp_path / 'b.png'),
                                  flow)
    c, d = _images(1)
    batch = inference_flow(model, [a, c], [b, d], iters=1)
    np.testing.assert_allclose(batch[0], flow / 3, atol=1e-5)
    np.testing.assert_allclose(batch[1], inference_flow(model, c, d, iters=1), atol=1e-5)


def test_size_errors_name_the_inputs(tmp_path):
    model = _StandIn().eval()
    a, _ = _images(0)
    b, _ = _images(1, w=17)
    write_png(tmp_path / 'a.png', a)
    write_png(tmp_path / 'b.png', b)
    with pytest.raises(DataError, match=r'first .*a\.png is 16x12, second .*b\.png is 17x12'):
        inference_flow(model, tmp_path / 'a.png', tmp_path / 'b.png')
    with pytest.raises(DataError, match='a batch of flow pairs must have one size'):
        inference_flow(model, [a, b], [a, b])
    with pytest.raises(ValueError, match='equal, non-zero length'):
        inference_flow(model, [a], a)


def test_onnx_flow_parity(tmp_path):
    pytest.importorskip('onnxruntime')
    from perception.apis import OnnxModel, export_onnx, onnx_parity

    torch.manual_seed(0)
    model = _StandIn().eval()
    meta = export_onnx(model, tmp_path / 'flow.onnx', (3, 12, 16), iters=2, dynamo=False)
    assert meta['task'] == 'flow' and meta['iters'] == 2
    onnx_model = OnnxModel(tmp_path / 'flow.onnx')
    # the stand-in has no config, so the graph carries no preprocessor config: give it the one
    onnx_model.data_preprocessor = StereoDataPreprocessor()
    assert onnx_parity(model, onnx_model)['flow'] < 1e-5
    a, b = _images(0)
    np.testing.assert_allclose(inference_flow(onnx_model, a, b), inference_flow(model, a, b, 2),
                               atol=1e-5)
