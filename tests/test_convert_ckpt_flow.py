"""tools/convert_ckpt.py raft | sea-raft: official-layout files convert, load and give the official
code's flow; wrong shapes, missing and unknown keys give one clear error and write nothing."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from perception.engine import CheckpointError, ConfigError
from perception.engine.checkpoint import load_checkpoint
from perception.engine.official_checkpoints import (
    CONFIG_ROOT,
    build_model_of_config,
    convert_official_checkpoint,
)

from .conftest import ROOT, run_tool
from .raft_parity import PROBE_YX, fill_seeded_, seeded_images
from .test_sea_raft import FIXTURE as SEA_RAFT_FIXTURE
from .test_sea_raft import _official_random_state

RAFT_CONFIG = CONFIG_ROOT / 'raft/raft_things.py'
RAFT_SMALL_CONFIG = CONFIG_ROOT / 'raft/raft-small_things.py'
SEA_RAFT_S_CONFIG = CONFIG_ROOT / 'sea-raft/sea-raft-s_things-432x960.py'


def _official_raft_state(config, seed: int) -> dict[str, torch.Tensor]:
    """The layout princeton-vl/RAFT's train.py saves: ``nn.DataParallel(RAFT(args))``'s state
    dict (``module.`` on every key), whose residual blocks also store each shortcut BatchNorm
    as ``norm3``. Values: the parity fixtures' seeded float64 weights."""
    model = build_model_of_config(config).double()
    fill_seeded_(model, seed)
    state = {f'module.{k}': v.clone() for k, v in model.state_dict().items()}
    for key in [k for k in state if k.startswith('module.cnet.') and '.downsample.1.' in k]:
        state[key.replace('.downsample.1.', '.norm3.')] = state[key].clone()
    return state


@pytest.mark.parametrize('name, config', [('raft', RAFT_CONFIG), ('small', RAFT_SMALL_CONFIG)])
def test_raft_conversion_gives_the_official_flow(tmp_path, name, config):
    """Convert (through the tool), load into the config's model and compare with the figures
    the official RAFT code computed on these weights (``raft_parity_*.npz``). The float64 weights
    reach the model unchanged, so the difference is test_raft.py's (measured there: 1.2e-13 px
    RAFT, 1.8e-13 RAFT-small; bound 1e-9). 14 s (RAFT) / 9 s (small) here, machine loaded."""
    ref = np.load(ROOT / f'tests/data/raft_parity_{name}.npz')
    state = _official_raft_state(config, int(ref['seed']))
    src, dst = tmp_path / f'raft-{name}.pth', tmp_path / 'out' / 'converted.pth'
    torch.save(state, src)
    args = ['tools/convert_ckpt.py', 'raft', src, dst]
    result = run_tool(*args, *(['--config', config] if name == 'small' else []))
    assert result.returncode == 0, result.stderr
    duplicates = sum('.norm3.' in k for k in state)
    # RAFT: the BatchNorm shortcuts of cnet.layer2.0 and layer3.0, 5 tensors each; RAFT-small's
    # context encoder has no norm (and instance norms hold no tensors)
    assert duplicates == (0 if name == 'small' else 2 * 5)
    assert f'{len(state) - duplicates} tensors' in result.stdout

    saved = torch.load(dst, weights_only=True)
    assert saved['meta']['kind'] == 'raft' and not any(k.startswith('module.')
                                                       for k in saved['state_dict'])
    model = build_model_of_config(config).double().eval()
    _, report = load_checkpoint(model, dst)
    assert report.ok
    images = seeded_images(int(ref['seed']), tuple(ref['input_shape']))
    x = 2 * (images / 255.0) - 1.0
    with torch.no_grad():
        flows = torch.stack(model.forward_flow(x[:, 0], x[:, 1], int(ref['iters']))).numpy()
    ys, xs = zip(*PROBE_YX)
    np.testing.assert_allclose(flows[:, :, :, list(ys), list(xs)], ref['probes'], rtol=0,
                               atol=1e-9)
    np.testing.assert_allclose(flows.std(axis=(3, 4)), ref['std'], rtol=0, atol=1e-9)


def test_sea_raft_conversion_gives_the_official_flow(tmp_path):
    """SEA-RAFT's train.py saves ``model.module.state_dict()`` (no prefix). The official-layout
    weights of the parity fixture, converted and loaded into the S config's model, give the
    official code's flow (test_sea_raft.py measured 9e-14 px; bound 1e-9). 5 s, machine loaded."""
    with open(SEA_RAFT_FIXTURE) as f:
        official = json.load(f)
    state = _official_random_state(official['official_shapes'])
    # a trained file also holds the BatchNorm step counters (the fixture's fill leaves them out)
    state.update({k: torch.tensor(1000) for k in official['official_shapes']
                  if k.endswith('num_batches_tracked')})
    src, dst = tmp_path / 'Tartan-C-T-TSKH432x960-S.pth', tmp_path / 'sea-raft-s.pth'
    torch.save(state, src)
    with pytest.raises(ConfigError, match='--config'):
        convert_official_checkpoint('sea-raft', src, dst)
    report = convert_official_checkpoint('sea-raft', src, dst, SEA_RAFT_S_CONFIG)
    assert report.ok and report.loaded == len(torch.load(dst, weights_only=True)['state_dict'])

    model = build_model_of_config(SEA_RAFT_S_CONFIG).double().eval()
    assert load_checkpoint(model, dst)[1].ok
    h, w = official['height'], official['width']
    gen = torch.Generator().manual_seed(1)  # the images of the fixture (see test_sea_raft.py)
    img1 = (torch.rand(1, 3, h, w, generator=gen, dtype=torch.float64) * 255).round()
    img2 = torch.roll(img1, shifts=(2, 3), dims=(2, 3))
    with torch.no_grad():
        flows, _ = model.forward_flow(2 * (img1 / 255.0) - 1, 2 * (img2 / 255.0) - 1, iters=4)
    (r0, rs), (c0, cs) = official['rows'], official['cols']
    flow = torch.stack(flows)[:, 0, :, r0::rs, c0::cs]
    assert (flow - torch.tensor(official['flow'], dtype=torch.float64)).abs().max() < 1e-9

    # The M config's ResNet-34 encoders have more blocks: the missing keys are listed.
    with pytest.raises(CheckpointError, match=r'196 missing in the checkpoint \(cnet\.backbone'):
        convert_official_checkpoint('sea-raft', src, tmp_path / 'm.pth',
                                    CONFIG_ROOT / 'sea-raft/sea-raft-m_things-432x960.py')
    assert not (tmp_path / 'm.pth').exists()


def test_raft_wrong_shape_missing_and_unknown_keys(tmp_path):
    state = _official_raft_state(RAFT_CONFIG, 0)
    key = 'module.update_block.flow_head.conv2.weight'
    expected = tuple(state[key].shape)
    state[key] = state[key][:1]
    src, dst = tmp_path / 'raft-things.pth', tmp_path / 'raft.pth'
    torch.save(state, src)
    result = run_tool('tools/convert_ckpt.py', 'raft', src, dst)
    assert result.returncode == 2
    err = result.stderr
    assert err.startswith('error:') and err.count('\n') == 1, err  # one line, no traceback
    found = (1, *expected[1:])
    assert f'update_block.flow_head.conv2.weight: checkpoint {found} vs model {expected}' in err
    assert not dst.exists()

    state = _official_raft_state(RAFT_CONFIG, 0)
    del state['module.fnet.conv1.weight']
    state['module.update_block.extra.weight'] = torch.zeros(1)
    torch.save(state, src)
    with pytest.raises(CheckpointError, match=r'1 missing in the checkpoint \(fnet\.conv1\.weight'
                       r'\).*1 unexpected \(update_block\.extra\.weight\)'):
        convert_official_checkpoint('raft', src, dst)
    assert not dst.exists()


def test_raft_refuses_overwrite_and_unreadable_sources(tmp_path):
    src, dst = tmp_path / 'raft-things.pth', tmp_path / 'raft.pth'
    torch.save(_official_raft_state(RAFT_CONFIG, 0), src)
    dst.write_bytes(b'keep me')
    with pytest.raises(CheckpointError, match='--force'):
        convert_official_checkpoint('raft', src, dst)
    assert dst.read_bytes() == b'keep me'
    convert_official_checkpoint('raft', src, dst, force=True)
    assert 'state_dict' in torch.load(dst, weights_only=True)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith('.')] == []  # no temp left

    not_a_checkpoint = tmp_path / 'raft-things-broken.pth'
    not_a_checkpoint.write_bytes(b'\x00' * 64)
    with pytest.raises(CheckpointError, match='raft-things-broken.pth'):
        convert_official_checkpoint('raft', not_a_checkpoint, tmp_path / 'x.pth')


def test_sea_raft_safetensors_needs_the_package(tmp_path):
    src = tmp_path / 'model.safetensors'
    src.write_bytes(b'{}')
    try:
        import safetensors.torch  # noqa: F401
    except ImportError:
        with pytest.raises(CheckpointError, match='needs the `safetensors` package'):
            convert_official_checkpoint('sea-raft', src, tmp_path / 'out.pth', SEA_RAFT_S_CONFIG)
    else:
        with pytest.raises(CheckpointError, match='model.safetensors'):
            convert_official_checkpoint('sea-raft', src, tmp_path / 'out.pth', SEA_RAFT_S_CONFIG)
