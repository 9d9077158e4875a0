"""tools/convert_ckpt.py: official checkpoints become loadable files, or a clear error."""
from __future__ import annotations

import json

import pytest
import torch

from perception.engine import CheckpointError
from perception.engine.checkpoint import load_checkpoint
from perception.engine.official_checkpoints import (
    CONFIG_ROOT,
    OFFICIAL_FORMATS,
    convert_official_checkpoint,
)
from perception.models.stereo import RAFTStereo

from .conftest import ROOT, run_tool


def _official_raft_file(tmp_path, mutate=None):
    # The official files are DataParallel state dicts: every key starts with ``module.``.
    state = {f'module.{k}': v.clone() for k, v in RAFTStereo().state_dict().items()}
    # ... and the official batch-norm residual blocks store their shortcut norm twice.
    for key in [k for k in state if '.downsample.1.' in k and k.startswith('module.cnet.')]:
        state[key.replace('.downsample.1.', '.norm3.')] = state[key].clone()
    if mutate is not None:
        mutate(state)
    path = tmp_path / 'raftstereo-sceneflow.pth'
    torch.save(state, path)
    return path, state


def test_raft_stereo_conversion_round_trip(tmp_path):
    src, state = _official_raft_file(tmp_path)
    dst = tmp_path / 'out' / 'raft.pth'
    result = run_tool('tools/convert_ckpt.py', 'raft-stereo', src, dst)
    assert result.returncode == 0, result.stderr
    duplicates = sum('.norm3.' in k for k in state)
    assert duplicates == 4 * 5  # layer2..5 of the context encoder, 5 tensors per BatchNorm
    assert f'{len(state) - duplicates} tensors' in result.stdout
    saved = torch.load(dst, weights_only=True)
    assert saved['meta']['kind'] == 'raft-stereo'
    model = RAFTStereo()
    _, report = load_checkpoint(model, dst)
    assert report.ok and report.loaded == len(state) - duplicates
    key = 'update_block.mask.2.weight'
    assert torch.equal(model.state_dict()[key], state[f'module.{key}'])


def test_conversion_refuses_wrong_shapes_and_overwrites(tmp_path):
    def shrink(state):
        state['module.fnet.conv2.weight'] = state['module.fnet.conv2.weight'][:8]

    src, _ = _official_raft_file(tmp_path, shrink)
    dst = tmp_path / 'raft.pth'
    result = run_tool('tools/convert_ckpt.py', 'raft-stereo', src, dst)
    assert result.returncode == 2
    err = result.stderr
    assert err.startswith('error:') and 'fnet.conv2.weight' in err and '(8, 128, 1, 1)' in err
    assert not dst.exists()  # nothing is written unless every key fits

    good, _ = _official_raft_file(tmp_path)
    dst.write_bytes(b'keep me')
    with pytest.raises(CheckpointError, match='--force'):
        convert_official_checkpoint('raft-stereo', good, dst)
    assert dst.read_bytes() == b'keep me'
    convert_official_checkpoint('raft-stereo', good, dst, force=True)
    assert 'state_dict' in torch.load(dst, weights_only=True)


def test_every_kind_has_a_default_config_or_needs_one():
    for kind, fmt in OFFICIAL_FORMATS.items():
        if fmt.default_config is not None:
            assert (CONFIG_ROOT / fmt.default_config).is_file(), kind


def test_stereo_iterations_tool_writes_curve(tmp_path):
    # An untrained model: the numbers are arbitrary, but the tool must score each iteration
    # count separately (the untrained predictions differ between 1 and 3 iterations).
    torch.manual_seed(0)
    model = RAFTStereo(hidden_dims=(32, 32, 32), n_gru_layers=2, n_downsample=3,
                       corr_levels=2, corr_radius=2)
    ckpt = tmp_path / 'tiny.pth'
    torch.save({'state_dict': model.state_dict()}, ckpt)
    result = run_tool('tools/stereo_iterations.py', 'configs/raft-stereo/raft-stereo_tiny_demo.py',
                      ckpt, '--iters', '1', '3', '--num-pairs', '2', '--out-dir', tmp_path)
    assert result.returncode == 0, result.stderr

    curve = json.loads((tmp_path / 'iterations.json').read_text())['raft-stereo_tiny_demo.py']
    assert set(curve) == {'1', '3'}
    assert curve['1']['EPE'] != curve['3']['EPE']
    assert all(0 <= m['D1_all'] <= 100 for m in curve.values())
    assert (tmp_path / 'iterations.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert '| raft-stereo_tiny_demo.py |' in result.stdout


@pytest.mark.parametrize('kind, keys_file, config, state_key', [
    ('igev', 'igev_stereo.json', None, None),
    ('hit-sr', 'hit_sir_x4.json', 'configs/hit-sr/hit-sir_x4_df2k.py', 'params'),
    ('monodetr', 'monodetr.json', None, 'model_state'),
    ('centerpoint', 'centerpoint_pillar_nus.json', None, 'state_dict'),
    ('swinir', 'swinir_light_x4.json', 'configs/swinir/swinir-light_x4_div2k.py', 'params'),
    ('drct', 'drct_x4.json', 'configs/drct/drct_x4_df2k.py', 'params_ema'),
])
def test_official_key_lists_convert_and_load(tmp_path, kind, keys_file, config, state_key):
    # The key -> shape lists were generated from the official module definitions.
    spec = json.loads((ROOT / 'tests/data/official_keys' / keys_file).read_text())
    state = {k: torch.zeros(shape) for k, shape in spec['keys'].items()}
    if kind == 'igev':
        state = {f'module.{k}': v for k, v in state.items()}  # saved from DataParallel
    src = tmp_path / 'official.pth'
    torch.save({state_key: state} if state_key else state, src)
    report = convert_official_checkpoint(kind, src, tmp_path / 'ours.pth',
                                         config and ROOT / config)
    assert report.ok and report.loaded > 0.9 * len(state)
