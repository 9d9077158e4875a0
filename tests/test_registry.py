import subprocess
import sys

import pytest
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import DefaultScope

from perception.registry import (
    ALL_REGISTRIES,
    MODELS,
    SCOPE,
    UnknownTypeError,
    close_names,
    registered_names,
)

from .conftest import ROOT


def test_every_registry_is_a_perception_child_of_mmengine():
    for name, registry in ALL_REGISTRIES.items():
        assert registry.scope == SCOPE, name
        assert registry.parent is not None and registry.parent.scope == 'mmengine', name
    assert MODELS.parent is MMENGINE_MODELS
    assert MMENGINE_MODELS.children[SCOPE] is MODELS


def test_lazy_locations_build_without_manual_imports():
    # A fresh interpreter: only the registry module is imported, then a type is built by name.
    code = ('from perception.registry import MODELS; import sys; '
            "assert 'perception.models' not in sys.modules; "
            "m = MODELS.build(dict(type='ESPCN', scale=2)); print(type(m).__name__, m.scale)")
    out = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ['ESPCN', '2']


def test_mmengine_root_finds_our_types_under_the_default_scope():
    with DefaultScope.overwrite_default_scope(SCOPE):
        model = MMENGINE_MODELS.build(dict(type='SuperResolver', network=dict(type='ESPCN')))
    assert type(model).__name__ == 'SuperResolver'


def test_unknown_type_lists_close_names():
    with pytest.raises(UnknownTypeError) as err:
        MODELS.build(dict(type='ESPCNN'))
    message = str(err.value)
    assert "unknown type 'ESPCNN'" in message and "'ESPCN'" in message
    assert 'perception::model' in message


def test_unknown_type_with_nothing_close_says_so():
    with pytest.raises(UnknownTypeError, match='no registered name is close'):
        MODELS.build(dict(type='Zzzzqqqq'))


def test_close_names_handles_case_and_prefixes():
    names = ['L1Loss', 'MSELoss', 'CharbonnierLoss', 'ESPCN']
    assert close_names('l1loss', names)[0] == 'L1Loss'
    assert close_names('Charbonier', names)[0] == 'CharbonnierLoss'
    assert 'ESPCN' in close_names('ESP', names)


def test_registered_names_include_parents():
    names = registered_names(MODELS)
    assert 'ESPCN' in names  # ours
    assert 'BaseDataPreprocessor' in names  # mmengine's
