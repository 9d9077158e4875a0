from pathlib import Path

import pytest

from perception.engine import ConfigError, load_config
from perception.registry import UnknownTypeError

from .conftest import DEMO_CONFIG


def test_overrides_of_existing_keys_apply():
    cfg = load_config(DEMO_CONFIG, {'train_cfg.max_iters': 7, 'optim_wrapper.optimizer.lr': 0.5})
    assert cfg.train_cfg.max_iters == 7
    assert cfg.optim_wrapper.optimizer.lr == 0.5


def test_typo_in_override_is_an_error_with_a_suggestion():
    with pytest.raises(ConfigError) as err:
        load_config(DEMO_CONFIG, {'optim_wrapper.optimizer.lrr': 0.1})
    message = str(err.value)
    assert "no key 'lrr' under 'optim_wrapper.optimizer'" in message
    assert "did you mean 'lr'" in message


def test_override_below_a_missing_parent_is_an_error():
    with pytest.raises(ConfigError, match="no key 'trian_cfg' under '<top level>'"):
        load_config(DEMO_CONFIG, {'trian_cfg.max_iters': 3})


def test_new_key_allowed_only_where_the_constructor_takes_it():
    # CharbonnierLoss takes eps; switching type and adding eps in one go is fine ...
    cfg = load_config(DEMO_CONFIG, {'model.pixel_loss.type': 'CharbonnierLoss'})
    assert cfg.model.pixel_loss.type == 'CharbonnierLoss'
    # ... but L1Loss has no eps, so adding it to the L1Loss dict is caught.
    with pytest.raises(ConfigError, match="no key 'eps' under 'model.pixel_loss'"):
        load_config(DEMO_CONFIG, {'model.pixel_loss.eps': 1e-6})
    # The check uses the type the same overrides switch to.
    cfg = load_config(DEMO_CONFIG, {'model.pixel_loss.type': 'CharbonnierLoss',
                                    'model.pixel_loss.eps': 1e-6})
    assert cfg.model.pixel_loss.eps == 1e-6
    # A torch DataLoader argument the config leaves at its default.
    cfg = load_config(DEMO_CONFIG, {'train_dataloader.pin_memory': True})
    assert cfg.train_dataloader.pin_memory is True


def test_list_index_overrides_are_checked():
    cfg = load_config(DEMO_CONFIG, {'param_scheduler.0.gamma': 0.5})
    assert cfg.param_scheduler[0].gamma == 0.5
    with pytest.raises(ConfigError, match='is a list of 1'):
        load_config(DEMO_CONFIG, {'param_scheduler.3.gamma': 0.5})


def _write_config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / 'bad_config.py'
    path.write_text(f"_base_ = ['{DEMO_CONFIG}']\n{body}\n")
    return path


def test_unknown_type_names_the_config_path_and_close_names(tmp_path):
    path = _write_config(tmp_path, "model = dict(network=dict(type='ESPNC'))")
    with pytest.raises(UnknownTypeError) as err:
        load_config(path)
    message = str(err.value)
    assert 'model.network.type' in message and "'ESPCN'" in message


def test_unknown_type_in_another_registry_uses_that_registry(tmp_path):
    path = _write_config(tmp_path, "val_evaluator = dict(type='SRMetrc')")
    with pytest.raises(UnknownTypeError, match=r"metric' registry; did you mean 'SRMetric'"):
        load_config(path)


def test_a_type_from_another_registry_inside_a_model_is_accepted(tmp_path):
    # Detectors keep matchers (TASK_UTILS) and the like inside the model dict.
    path = _write_config(tmp_path, "model = dict(train_cfg=dict(helper=dict(type='SRMetric')))")
    assert load_config(path).model.train_cfg.helper.type == 'SRMetric'


def test_missing_and_broken_config_files(tmp_path):
    with pytest.raises(ConfigError, match='config file not found: .*nope.py'):
        load_config(tmp_path / 'nope.py')
    broken = tmp_path / 'broken.py'
    broken.write_text('model = dict(type=\n')
    with pytest.raises(ConfigError, match='broken.py'):
        load_config(broken)
