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


# ------------------------------------------------------------------ tools/infer.py flow


def _infer_tool():
    """``tools/infer.py`` as a module, to run the cheap error cases in this process."""
    import importlib.util

    from .conftest import ROOT

    spec = importlib.util.spec_from_file_location('infer_tool', ROOT / 'tools' / 'infer.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def small_raft(tmp_path_factory):
    """A RAFT-small config (the published RAFT-things config with ``small=True``) and a
    checkpoint of random weights whose flow head is biased to about (+2, -1) px per iteration,
    so that the flow is clearly non-zero."""
    from perception.apis.inference import init_model

    from .conftest import ROOT

    root = tmp_path_factory.mktemp('small_raft')
    config = root / 'raft_small.py'
    config.write_text(f"_base_ = ['{ROOT / 'configs/raft/raft_things.py'}']\n"
                      'model = dict(small=True, test_iters=2)\n')
    torch.manual_seed(0)
    state = init_model(config).state_dict()
    state['update_block.flow_head.conv2.bias'][:] = torch.tensor([2.0, -1.0])
    checkpoint = root / 'small.pth'
    torch.save({'state_dict': state}, checkpoint)
    return config, checkpoint


def _smooth_pair(folder, h=64, w=96):
    """Two frames of a smooth random texture, the second shifted by 3 px to the left."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    texture = cv2.resize(rng.integers(0, 256, (h // 8, (w + 8) // 8, 3), dtype=np.uint8),
                         (w + 8, h), interpolation=cv2.INTER_CUBIC)
    write_png(folder / 'frame_a.png', np.ascontiguousarray(texture[:, 4:4 + w]))
    write_png(folder / 'frame_b.png', np.ascontiguousarray(texture[:, 1:1 + w]))
    return folder / 'frame_a.png', folder / 'frame_b.png'


def test_infer_flow_tool(small_raft, tmp_path, capsys):
    """The tool end to end (one subprocess run, as a user runs it; ~4 s), then the refusal to
    overwrite, --force and the size check in this process. Measured 4.1 s on one loaded core."""
    import cv2

    from perception.apis.inference import init_model
    from perception.datasets.flow_io import read_flo, read_kitti_flow
    from perception.visualization.flow import flow_to_color

    from .conftest import run_tool

    config, checkpoint = small_raft
    first, second = _smooth_pair(tmp_path)
    out = tmp_path / 'out'
    argv = ['flow', str(config), str(checkpoint), '--first', str(first), '--second',
            str(second), '--out-dir', str(out), '--iters', '2']
    proc = run_tool('tools/infer.py', *argv)
    assert proc.returncode == 0, proc.stderr
    assert 'flow 96x64' in proc.stdout
    assert sorted(p.name for p in out.iterdir()) == [
        'frame_a.flo', 'frame_a_color.png', 'frame_a_kitti.png']

    expected = inference_flow(init_model(config, checkpoint), first, second, iters=2)
    assert np.abs(expected).mean() > 1  # the biased head gives a clearly non-zero flow
    flo = read_flo(out / 'frame_a.flo')
    assert flo.shape == (64, 96, 2) and flo.dtype == np.float32
    # The same float32 model in another process with another thread count: measured max
    # difference 0.0 here; bound 1e-4 px for other kernels / thread counts.
    np.testing.assert_allclose(flo, expected, atol=1e-4)
    kitti, valid = read_kitti_flow(out / 'frame_a_kitti.png')
    assert valid.all()
    # KITTI stores round(u * 64): at most half of 1/64 px off (plus float32 slack)
    assert np.abs(kitti - flo).max() <= 0.5 / 64 + 1e-6
    color = cv2.cvtColor(cv2.imread(str(out / 'frame_a_color.png')), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(color, flow_to_color(flo))

    tool = _infer_tool()
    before = (out / 'frame_a.flo').stat().st_mtime_ns
    with pytest.raises(SystemExit, match='2'):
        tool.main(argv)
    err = capsys.readouterr().err
    assert 'frame_a.flo, frame_a_kitti.png, frame_a_color.png exist(s); pass --force' in err
    assert (out / 'frame_a.flo').stat().st_mtime_ns == before  # nothing was rewritten
    (out / 'frame_a_kitti.png').unlink()
    tool.main(argv + ['--force'])
    np.testing.assert_array_equal(read_flo(out / 'frame_a.flo'), expected)
    assert read_kitti_flow(out / 'frame_a_kitti.png')[1].all()

    _, narrow = _smooth_pair(tmp_path / 'narrow', w=80)
    with pytest.raises(SystemExit, match='2'):
        tool.main(['flow', str(config), str(checkpoint), '--first', str(first), '--second',
                   str(narrow), '--out-dir', str(tmp_path / 'out2')])
    err = capsys.readouterr().err
    assert (f'flow pair of different sizes: first {first} is 96x64, second {narrow} is 80x64'
            in err)
    assert not (tmp_path / 'out2').exists()
