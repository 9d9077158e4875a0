"""ONNX export of the image heads: onnxruntime matches PyTorch within 1e-4 (random weights, demo
configs), the OnnxModel path of the inference API gives the PyTorch results, and the tool's CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from perception.apis.inference import (
    inference_mono3d,
    inference_segmentation,
    inference_sr,
    inference_stereo,
    init_model,
)
from perception.engine.config import load_config
from perception.engine.errors import DataError

from .conftest import ROOT, run_tool

onnx = pytest.importorskip('onnx')
pytest.importorskip('onnxruntime')
from perception.apis.onnx_runtime import OnnxModel, export_onnx, onnx_parity  # noqa: E402

SEGFORMER = ROOT / 'configs/segformer/segformer_r18_1xb8-300_synthetic-seg-64x128.py'
UPERNET = ROOT / 'configs/upernet/upernet_r18_1xb8-300_synthetic-seg-64x128.py'
MASK2FORMER = ROOT / 'configs/mask2former/mask2former_r18_1xb8-400_synthetic-seg-64x128.py'
SWINIR = ROOT / 'configs/swinir/swinir-tiny_x3_synthetic-sr.py'
HITSR = ROOT / 'configs/hit-sr/hit-sir-tiny_x3_synthetic-sr.py'
DRCT = ROOT / 'configs/drct/drct-tiny_x3_synthetic-sr.py'
RAFT = ROOT / 'configs/raft-stereo/raft-stereo_tiny_demo.py'
IGEV = ROOT / 'configs/igev-stereo/igev-stereo_tiny_demo.py'
MONODETR = ROOT / 'configs/monodetr/monodetr_tiny_demo.py'
P2 = np.array([[721.54, 0.0, 609.56, 44.857], [0.0, 721.54, 172.85, 0.2164],
               [0.0, 0.0, 1.0, 0.002746]])
TOL = 1e-4


def _model(config, **test_cfg):
    torch.manual_seed(0)
    cfg = load_config(config)
    if test_cfg:
        cfg.model.test_cfg.update(test_cfg)
    return init_model(cfg)


def _export(model, tmp_path_factory, shape, **kwargs):
    path = tmp_path_factory.mktemp('onnx') / 'model.onnx'
    meta = export_onnx(model, path, shape, **kwargs)
    return path, meta


@pytest.fixture(scope='module')
def segformer(tmp_path_factory):
    model = _model(SEGFORMER)
    path, meta = _export(model, tmp_path_factory, (3, 64, 128))
    return model, OnnxModel(path), meta


@pytest.fixture(scope='module')
def swinir(tmp_path_factory):
    model = _model(SWINIR)
    path, meta = _export(model, tmp_path_factory, (3, 32, 32))
    return model, OnnxModel(path), meta


@pytest.fixture(scope='module')
def raft(tmp_path_factory):
    model = _model(RAFT)
    path, meta = _export(model, tmp_path_factory, (3, 64, 128), iters=3)
    return model, OnnxModel(path), meta


@pytest.fixture(scope='module')
def monodetr(tmp_path_factory):
    model = _model(MONODETR, score_thr=0.0, topk=20)
    path, meta = _export(model, tmp_path_factory, (3, 192, 640))
    return model, OnnxModel(path), meta


def _rgb(seed, h, w):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# --------------------------------------------------------------------------- graph parity
@pytest.mark.parametrize('name', ['segformer', 'swinir', 'raft', 'monodetr'])
def test_onnxruntime_matches_pytorch_within_1e_4(name, request):
    model, onnx_model, meta = request.getfixturevalue(name)
    diffs = onnx_parity(model, onnx_model, seed=1)
    assert set(diffs) == {'seg': {'probs'}, 'sr': {'sr'}, 'stereo': {'disparity'},
                          'mono3d': {'logits', 'boxes', 'dims', 'depth', 'heading'}}[meta['task']]
    assert max(diffs.values()) < TOL, diffs
    onnx.checker.check_model(str(onnx_model.path))


@pytest.mark.slow
@pytest.mark.parametrize('config, shape, iters', [
    (UPERNET, (3, 64, 128), None), (MASK2FORMER, (3, 64, 128), None), (HITSR, (3, 32, 32), None),
    (DRCT, (3, 32, 32), None), (IGEV, (3, 64, 128), 3)])
def test_other_heads_match_within_1e_4(config, shape, iters, tmp_path):
    model = _model(config)
    meta = export_onnx(model, tmp_path / 'm.onnx', shape, iters=iters)
    diffs = onnx_parity(model, OnnxModel(tmp_path / 'm.onnx'), seed=2)
    assert max(diffs.values()) < TOL, (config.name, meta['exporter'], diffs)


def test_metadata_records_what_the_api_needs(segformer, raft, monodetr):
    _, seg, meta = segformer
    assert seg.task == 'seg' and meta['input_shape'] == [3, 64, 128]
    assert seg.num_classes == 5 and seg.data_preprocessor is not None
    assert [t['type'] for t in seg.test_pipeline_cfg][-1] == 'PackSegInputs'
    assert raft[1].test_iters == 3 and raft[2]['exporter'] == 'dynamo'
    mono = monodetr[1]
    assert mono.classes == tuple(monodetr[0].classes)
    assert mono.test_cfg['topk'] == 20
    assert mono.input_names == ['images', 'focal']


# --------------------------------------------------------------------------- API through ORT
def test_segmentation_api_gives_the_pytorch_label_map(segformer):
    model, onnx_model, _ = segformer
    images = [_rgb(0, 64, 128), _rgb(1, 64, 128)]
    expected = inference_segmentation(model, images)
    got = inference_segmentation(onnx_model, images)
    for e, g in zip(expected, got):
        assert g.shape == (64, 128) and g.dtype == np.int64
        assert (e == g).mean() > 0.999  # argmax ties aside, identical


def test_segmentation_onnx_refuses_another_size(segformer):
    with pytest.raises(DataError, match=r'exported at'):
        inference_segmentation(segformer[1], _rgb(0, 96, 128))


def test_sr_api_through_onnx_tiles_larger_images(swinir):
    model, onnx_model, _ = swinir
    image = _rgb(3, 32, 32)
    expected = inference_sr(model, image)
    got = inference_sr(onnx_model, image)
    assert got.shape == (96, 96, 3)
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1  # uint8 rounding
    big = _rgb(4, 48, 40)
    tiled = inference_sr(onnx_model, big, tile=32, tile_overlap=8)
    assert tiled.shape == (144, 120, 3)
    ref = inference_sr(model, big, tile=32, tile_overlap=8)
    assert np.abs(tiled.astype(int) - ref.astype(int)).max() <= 1


def test_stereo_api_through_onnx_with_a_batch_in_chunks(raft):
    model, onnx_model, _ = raft
    lefts = [_rgb(5, 64, 128), _rgb(6, 64, 128), _rgb(7, 64, 128)]
    rights = [np.roll(img, -4, axis=1) for img in lefts]
    expected = inference_stereo(model, lefts, rights, iters=3)
    got = inference_stereo(onnx_model, lefts, rights)  # exported batch 1: three runs
    assert len(got) == 3
    for e, g in zip(expected, got):
        assert g.shape == (64, 128) and np.abs(e - g).max() < TOL
    with pytest.raises(ValueError, match='exported with 3 iterations'):
        inference_stereo(onnx_model, lefts[0], rights[0], iters=5)


def test_mono3d_api_through_onnx_decodes_as_pytorch(monodetr):
    model, onnx_model, _ = monodetr
    image = _rgb(8, 375, 1242)
    expected = inference_mono3d(model, image, P2)
    got = inference_mono3d(onnx_model, image, P2)
    assert expected['boxes_3d'].shape == (20, 7)
    np.testing.assert_array_equal(got['labels'], expected['labels'])
    for key in ('boxes_3d', 'scores', 'bboxes_2d'):
        np.testing.assert_allclose(got[key], expected[key], atol=1e-3, rtol=1e-4)


# --------------------------------------------------------------------------- the tool
def test_tool_exports_checks_and_reports_the_difference(tmp_path):
    out = tmp_path / 'sub' / 'swinir.onnx'
    result = run_tool('tools/export_onnx.py', SWINIR, 'none', '--out', out, '--input-shape', '3',
                      '24', '24')
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'max |onnxruntime - pytorch| sr:' in result.stdout
    diff = float(result.stdout.split('sr:')[-1].split()[0])
    assert diff < TOL
    model = onnx.load(str(out))
    meta = json.loads({p.key: p.value for p in model.metadata_props}['perception'])
    assert meta['task'] == 'sr' and meta['input_shape'] == [3, 24, 24]
    assert [p.name for p in tmp_path.joinpath('sub').iterdir()] == ['swinir.onnx']  # no temp left
    again = run_tool('tools/export_onnx.py', SWINIR, 'none', '--out', out)
    assert again.returncode == 2 and '--force' in again.stderr


def test_tool_fails_cleanly_on_a_missing_checkpoint(tmp_path):
    result = run_tool('tools/export_onnx.py', ROOT / 'configs/espcn/espcn_x3_synthetic-sr.py',
                      tmp_path / 'missing.pth', '--out', tmp_path / 'x.onnx')
    assert result.returncode == 2 and 'missing.pth' in result.stderr
    assert not (tmp_path / 'x.onnx').exists()


def test_onnx_model_errors_are_clear(tmp_path):
    with pytest.raises(DataError, match='not found'):
        OnnxModel(tmp_path / 'nothing.onnx')
    (tmp_path / 'bad.onnx').write_bytes(b'not a model')
    with pytest.raises(DataError, match='cannot load'):
        OnnxModel(tmp_path / 'bad.onnx')
