import os
import pickle

import pytest
import torch
from mmengine.logging import HistoryBuffer

from perception.engine import CheckpointError, load_checkpoint, load_state_dict, read_checkpoint
from perception.models.super_resolution import ESPCN, SuperResolver


def _espcn(**kwargs) -> ESPCN:
    torch.manual_seed(0)
    return ESPCN(**kwargs)


def test_round_trip_restores_every_tensor(tmp_path):
    source, target = _espcn(scale=3), ESPCN(scale=3)
    path = tmp_path / 'ok.pth'
    torch.save({'state_dict': source.state_dict(), 'meta': {'iter': 5}}, path)
    checkpoint, report = load_checkpoint(target, path)
    assert report.ok and report.loaded == len(source.state_dict())
    assert checkpoint['meta']['iter'] == 5
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match='checkpoint not found: .*absent.pth'):
        read_checkpoint(tmp_path / 'absent.pth')


@pytest.mark.parametrize('content', [b'not a checkpoint at all', b''])
def test_garbage_file(tmp_path, content):
    path = tmp_path / 'garbage.pth'
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match='not a readable PyTorch checkpoint'):
        read_checkpoint(path)


def test_truncated_file(tmp_path):
    path = tmp_path / 'full.pth'
    torch.save(_espcn().state_dict(), path)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointError, match='truncated or corrupt'):
        read_checkpoint(path)


class _RunsCodeWhenUnpickled:

    def __reduce__(self):
        return (os.system, ('touch PWNED',))


class _ReachesForAttributes:

    def __reduce__(self):
        return (getattr, (HistoryBuffer, '__init__'))


@pytest.mark.parametrize('payload', [_RunsCodeWhenUnpickled(), _ReachesForAttributes()])
def test_pickled_code_is_refused(tmp_path, monkeypatch, payload):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'extra': payload}, path)
    with pytest.raises(CheckpointError, match='cannot be loaded safely'):
        read_checkpoint(path)
    assert not (tmp_path / 'PWNED').exists()


def test_mmengine_message_hub_objects_are_allowed(tmp_path):
    buffer = HistoryBuffer()
    buffer.update(1.5)
    path = tmp_path / 'hub.pth'
    torch.save({'message_hub': {'log_scalars': {'loss': buffer}}}, path)
    loaded = read_checkpoint(path)['message_hub']['log_scalars']['loss']
    assert loaded.current() == 1.5 and loaded.mean() == 1.5


def test_one_cycle_scheduler_state_is_allowed(tmp_path):
    # mmengine's OneCycleLR keeps its annealing function in its state dict, so every training
    # checkpoint of a one-cycle schedule (the stereo recipes) pickles getattr(class, name).
    from mmengine.optim import OneCycleLR
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    scheduler = OneCycleLR(optimizer, eta_max=0.1, total_steps=10, anneal_strategy='linear')
    path = tmp_path / 'run.pth'
    torch.save({'state_dict': {}, 'param_schedulers': [scheduler.state_dict()]}, path)
    state = read_checkpoint(path)['param_schedulers'][0]
    assert state['anneal_func'] is scheduler.anneal_func  # a static method of the class
    assert state['total_steps'] == 10


def test_checkpoint_of_another_model_is_a_clear_error(tmp_path):
    other = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    path = tmp_path / 'other.pth'
    torch.save({'state_dict': other.state_dict()}, path)
    model = ESPCN()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(model, path)
    message = str(err.value)
    assert 'does not fit ESPCN' in message and 'another model' in message
    assert '6 missing' in message and '4 unexpected' in message
    for key, value in model.state_dict().items():  # nothing was loaded
        assert torch.equal(value, before[key])


def test_shape_mismatch_is_reported_and_non_strict_loads_the_rest(tmp_path):
    rgb, y = _espcn(scale=3, in_channels=3), ESPCN(scale=3, in_channels=1)
    with pytest.raises(CheckpointError, match=r'convs.0.weight: checkpoint \(64, 3, 5, 5\) vs '
                       r'model \(64, 1, 5, 5\)'):
        load_state_dict(y, rgb.state_dict())
    report = load_state_dict(y, rgb.state_dict(), strict=False)
    assert {k for k, _, _ in report.mismatched} == {'convs.0.weight', 'convs.2.weight',
                                                    'convs.2.bias'}
    assert torch.equal(y.convs[1].weight, rgb.convs[1].weight)


def test_key_remapping_for_official_layouts(tmp_path):
    source = _espcn()
    # A DataParallel checkpoint in BasicSR's layout, with EMA weights preferred over plain ones.
    official = {f'module.{k}': v for k, v in source.state_dict().items()}
    path = tmp_path / 'official.pth'
    torch.save({'params': {k: torch.zeros_like(v) for k, v in official.items()},
                'params_ema': official}, path)
    model = SuperResolver(network=dict(type='ESPCN'))
    _, report = load_checkpoint(model, path, key_mapper=lambda sd: {f'network.{k}': v
                                                                    for k, v in sd.items()})
    assert report.ok
    assert torch.equal(model.network.convs[0].weight, source.convs[0].weight)


def test_a_plain_pickle_without_tensors_is_not_a_state_dict(tmp_path):
    path = tmp_path / 'list.pth'
    with open(path, 'wb') as f:
        pickle.dump([1, 2, 3], f)
    with pytest.raises(CheckpointError):
        load_checkpoint(ESPCN(), path)
