"""Converting the checkpoints that models' authors published into this project's layout.

Each supported source is an :class:`OfficialFormat`: where its converter lives (a pure function
``convert_official_state_dict(state) -> state`` beside the model, taking the official keys with any
DataParallel ``module.`` prefix stripped), the prefix of the network inside our wrapper model
(``network.`` for super-resolution networks wrapped by ``SuperResolver``), and the config whose
model the converted weights must fit. :func:`convert_official_checkpoint` reads the file safely
(``weights_only=True``), converts the keys, builds that model and checks every key and shape
strictly, so a converted file always loads.

    python tools/convert_ckpt.py raft-stereo raftstereo-sceneflow.pth raft-stereo_sceneflow.pth

A new source is one more entry in ``OFFICIAL_FORMATS``.
"""
from __future__ import annotations

import importlib
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from .checkpoint import CheckpointReport, extract_state_dict, load_state_dict, read_checkpoint
from .errors import CheckpointError, ConfigError
from .fileio import atomic_write_bytes

CONFIG_ROOT = Path(__file__).resolve().parents[2] / 'configs'


@dataclass(frozen=True)
class OfficialFormat:
    """One source of published weights.

    Attributes:
        converter: ``'package.module:function'`` mapping official keys to ours (after ``module.``
            is stripped); ``None`` when the official names are already ours.
        default_config: config (relative to ``configs/``) whose model the weights fit, used when
            the caller gives none; ``None`` when the variant must be named (``--config``).
        prefix: where the converted network sits inside the config's model.
        state_keys: where in the file the weights are, in order of preference (BasicSR-style
            files hold ``params`` and ``params_ema``); by default the first of
            ``perception.engine.checkpoint.STATE_DICT_KEYS`` present.
        description: what the official file is, for ``--help``.
    """
    converter: str | None
    default_config: str | None
    prefix: str = ''
    state_keys: tuple[str, ...] = ()
    description: str = ''

    def convert(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.converter is None:
            return dict(state)
        module_name, function_name = self.converter.split(':')
        function: Callable[[Mapping[str, torch.Tensor]], dict[str, torch.Tensor]] = getattr(
            importlib.import_module(module_name), function_name)
        return function(state)


OFFICIAL_FORMATS: dict[str, OfficialFormat] = {
    'raft-stereo': OfficialFormat(
        converter='perception.models.stereo.raft_stereo:convert_official_state_dict',
        default_config='raft-stereo/raft-stereo_sceneflow.py',
        description='princeton-vl/RAFT-Stereo models/*.pth (DataParallel state dict); module '
        'names are the official ones, duplicate shortcut norms are dropped'),
    'igev': OfficialFormat(
        converter='perception.models.stereo.igev_stereo:convert_official_state_dict',
        default_config='igev-stereo/igev-stereo_sceneflow.py',
        description='gangweiX/IGEV IGEV-Stereo pretrained_models/*.pth (DataParallel state '
        'dict); timm backbone blocks and context levels are renamed'),
    'centerpoint': OfficialFormat(
        converter='perception.models.lidar3d.detector:convert_official_state_dict',
        default_config='centerpoint/centerpoint_pillar02_nus-3d.py',
        description='mmdetection3d CenterPoint-pillar (PillarFeatureNet + SECOND + SECONDFPN + '
        'CenterHead), e.g. centerpoint_pillar02_second_secfpn nuScenes (state_dict)'),
    'monodetr': OfficialFormat(
        converter='perception.models.mono3d.monodetr:convert_official_state_dict',
        default_config='monodetr/monodetr_r50_kitti-mono3d.py', state_keys=('model_state',),
        description='ZrrSkywalker/MonoDETR checkpoint_best.pth (model_state); class rows are '
        'reordered to Car, Pedestrian, Cyclist'),
    'hit-sr': OfficialFormat(
        converter='perception.models.super_resolution.hit_sr:convert_official_state_dict',
        default_config=None, prefix='network.', state_keys=('params', 'params_ema'),
        description='XiangZ-0/HiT-SR HiT-{SIR,SNG,SRF} *.pth (BasicSR, params); name the '
        'variant and scale with --config configs/hit-sr/...'),
    'swinir': OfficialFormat(
        converter='perception.models.super_resolution.swinir:convert_official_state_dict',
        default_config=None, prefix='network.', state_keys=('params', 'params_ema'),
        description='JingyunLiang/SwinIR model_zoo/swinir/*.pth (params, as main_test_swinir '
        'loads them); name the variant and scale with --config configs/swinir/...'),
    'drct': OfficialFormat(
        converter='perception.models.super_resolution.drct:convert_official_state_dict',
        default_config=None, prefix='network.', state_keys=('params_ema', 'params'),
        description='ming053l/DRCT DRCT(-L)_SRx{2,3,4}.pth (BasicSR); name the variant and '
        'scale with --config configs/drct/...'),
    'raft': OfficialFormat(
        converter='perception.models.flow.raft:convert_official_state_dict',
        default_config='raft/raft_things.py',
        description='princeton-vl/RAFT models/raft-{chairs,things,sintel,kitti}.pth '
        '(DataParallel state dict); duplicate shortcut norms are dropped; raft-small.pth '
        'with --config configs/raft/raft-small_things.py'),
    'sea-raft': OfficialFormat(
        converter='perception.models.flow.sea_raft:convert_official_state_dict',
        default_config=None,
        description='princeton-vl/SEA-RAFT Tartan-C-T-TSKH-*-{S,M}.pth (train.py saves the '
        "unwrapped model's state dict; .safetensors from the HF hub needs the safetensors "
        'package); name the variant with --config configs/sea-raft/sea-raft-{s,m,l}_...'),
}


def _strip_module_prefix(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {re.sub(r'^module\.', '', k): v for k, v in state.items()}


def read_official_checkpoint(path: str | os.PathLike) -> Any:
    """Read an official file: a PyTorch checkpoint (``weights_only=True``) or, when the
    ``safetensors`` package is installed, a ``.safetensors`` file (the Hugging Face hub format)."""
    if os.fspath(path).endswith('.safetensors'):
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise CheckpointError(
                f'{path}: reading .safetensors files needs the `safetensors` package '
                f'(pip install safetensors); or pass the .pth checkpoint') from None
        if not os.path.isfile(path):
            raise CheckpointError(f'checkpoint not found: {path}')
        try:
            return load_file(os.fspath(path), device='cpu')
        except Exception as err:  # the package raises its own error types
            raise CheckpointError(f'{path} is not a readable .safetensors file: {err}') from err
    return read_checkpoint(path)


def build_model_of_config(config: str | os.PathLike) -> torch.nn.Module:
    """The model a config describes, randomly initialised, on the CPU."""
    from ..registry import MODELS
    from .config import load_config

    cfg = load_config(os.fspath(config))
    if 'model' not in cfg:
        raise ConfigError(f'{config}: no `model` entry')
    return MODELS.build(cfg.model)


def convert_official_checkpoint(kind: str,
                                src: str | os.PathLike,
                                dst: str | os.PathLike,
                                config: str | os.PathLike | None = None,
                                force: bool = False) -> CheckpointReport:
    """Convert ``src`` (an official checkpoint of ``kind``) to ``dst`` in this project's layout.

    The result is ``{'state_dict': ..., 'meta': {...}}`` and loads strictly into the model of
    ``config``. Nothing is written unless every key and shape matches.

    Raises:
        CheckpointError: unreadable file, unknown kind, keys/shapes that do not fit (the
            message lists missing, unexpected and mismatched keys), or ``dst`` exists and
            ``force`` is false.
    """
    if kind not in OFFICIAL_FORMATS:
        raise CheckpointError(f'unknown checkpoint kind {kind!r}; known: '
                              f'{", ".join(sorted(OFFICIAL_FORMATS))}')
    fmt = OFFICIAL_FORMATS[kind]
    dst = Path(dst)
    if dst.exists() and not force:
        raise CheckpointError(f'{dst} already exists; pass --force to overwrite it')
    if config is None:
        if fmt.default_config is None:
            raise ConfigError(f'{kind}: name the model variant with --config (e.g. a config in '
                              f'configs/ for the right scale and size)')
        config = CONFIG_ROOT / fmt.default_config
    checkpoint = read_official_checkpoint(src)
    preferred = [k for k in fmt.state_keys
                 if isinstance(checkpoint, Mapping) and isinstance(checkpoint.get(k), Mapping)]
    official = _strip_module_prefix(checkpoint[preferred[0]] if preferred
                                    else extract_state_dict(checkpoint, os.fspath(src)))
    try:
        converted = fmt.convert(official)
    except KeyError as err:
        raise CheckpointError(f'{src}: not a {kind} checkpoint: key {err} is missing') from err
    converted = {fmt.prefix + k: v for k, v in converted.items()}
    model = build_model_of_config(config)
    report = load_state_dict(model, converted, strict=True, source=os.fspath(src))
    meta: dict[str, Any] = dict(converted_from=os.path.basename(os.fspath(src)), kind=kind,
                                config=os.fspath(config))
    buffer = io.BytesIO()
    torch.save({'state_dict': converted, 'meta': meta}, buffer)
    atomic_write_bytes(dst, buffer.getvalue())
    return report
