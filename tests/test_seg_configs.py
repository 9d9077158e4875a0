"""The segmentation configs load, carry the published recipes, and build their models."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.dataset import pseudo_collate
from mmengine.registry import init_default_scope

from perception.datasets.synthetic.segmentation import (
    SYNTHETIC_SEG_CLASSES,
    write_synthetic_cityscapes,
)
from perception.engine import load_config
from perception.registry import DATASETS, MODELS

from .conftest import ROOT

HEADS = ('segformer', 'upernet', 'mask2former')
CONFIGS = sorted(p for head in HEADS for p in (ROOT / 'configs' / head).glob('*.py'))
BACKBONES = {'r50': ('ResNet', 50), 'swin-t': ('SwinTransformer', 'tiny'),
             'efficientvit-m5': ('EfficientViT', 'm5'), 'r18': ('ResNet', 18)}
HEAD_TYPES = {'segformer': 'SegFormerHead', 'upernet': 'UPerHead',
              'mask2former': 'Mask2FormerHead'}


def _parts(path: Path) -> tuple[str, str, str]:
    """``(head, backbone, dataset)`` from a name like ``upernet_r50_4xb2-80k_cityscapes-...``."""
    head, backbone, _, dataset = path.stem.split('_')
    return head, backbone, dataset.split('-')[0]


def test_every_head_backbone_dataset_combination_exists():
    combos = {_parts(p) for p in CONFIGS}
    for head in HEADS:
        for backbone in ('r50', 'swin-t', 'efficientvit-m5'):
            for dataset in ('cityscapes', 'ade20k'):
                assert (head, backbone, dataset) in combos, (head, backbone, dataset)
        assert (head, 'r18', 'synthetic') in combos, head
    assert len(CONFIGS) == 21


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: p.stem)
def test_config_recipe(path: Path):
    cfg = load_config(path)
    head, backbone, dataset = _parts(path)
    model = cfg.model
    assert model.type == 'EncoderDecoder'
    assert model.decode_head.type == HEAD_TYPES[head]
    backbone_type, arch = BACKBONES[backbone]
    assert model.backbone.type == backbone_type
    assert model.backbone.get('depth', model.backbone.get('arch')) == arch
    num_classes = {'cityscapes': 19, 'ade20k': 150, 'synthetic': 5}[dataset]
    assert model.decode_head.num_classes == num_classes
    if model.get('auxiliary_head'):
        assert model.auxiliary_head.num_classes == num_classes
        assert model.auxiliary_head.loss_decode.loss_weight == 0.4
    loader = cfg.train_dataloader
    classes = loader.dataset.get('metainfo', {}).get('classes')
    if classes is not None:
        assert len(classes) == num_classes
    if dataset == 'synthetic':
        return
    # The published recipes (mmsegmentation / Mask2Former).
    iters = int(path.stem.split('_')[2].split('-')[1][:-1]) * 1000
    assert cfg.train_cfg.max_iters == iters
    assert max(s.get('end', 0) for s in cfg.param_scheduler) == iters
    assert cfg.param_scheduler[-1].type == 'PolyLR'
    gpus, batch = path.stem.split('_')[2].split('-')[0].split('xb')
    assert loader.batch_size == int(batch)
    optimizer = cfg.optim_wrapper.optimizer
    if head == 'mask2former':
        assert (optimizer.type, optimizer.lr, optimizer.weight_decay) == ('AdamW', 1e-4, 0.05)
        assert cfg.optim_wrapper.paramwise_cfg.custom_keys.backbone.lr_mult == 0.1
        assert model.decode_head.num_queries == 100
        assert model.get('auxiliary_head') is None
    elif backbone == 'r50' and head == 'upernet':
        assert (optimizer.type, optimizer.lr, optimizer.momentum) == ('SGD', 0.01, 0.9)
    else:
        assert (optimizer.type, optimizer.lr, optimizer.weight_decay) == ('AdamW', 6e-5, 0.01)
        assert cfg.param_scheduler[0].type == 'LinearLR' and cfg.param_scheduler[0].end == 1500
    if dataset == 'cityscapes':
        assert loader.dataset.type == 'CityscapesDataset'
        crop = next(t for t in loader.dataset.pipeline if t.type == 'RandomCrop')
        assert tuple(crop.crop_size) == (512, 1024)
        if head != 'mask2former':  # Mask2Former's official Cityscapes test is whole-image
            assert model.test_cfg.mode == 'slide'
            assert tuple(model.test_cfg.crop_size) == (512, 1024)
    else:
        assert loader.dataset.type == 'ADE20KDataset'
        crop = next(t for t in loader.dataset.pipeline if t.type == 'RandomCrop')
        assert tuple(crop.crop_size) == (512, 512)
        load = next(t for t in loader.dataset.pipeline if t.type == 'LoadSegAnnotations')
        assert load.reduce_zero_label is True
        # The loader already reduced the labels; the metric must not do it twice.
        assert not cfg.val_evaluator.get('reduce_zero_label', False)


# Every config is built by tests/test_configs.py; here the ones whose size can be checked.
@pytest.mark.parametrize('path', [p for p in CONFIGS if _parts(p)[1] in ('r50', 'r18')],
                         ids=lambda p: p.stem)
def test_config_builds_its_model(path: Path):
    cfg = load_config(path)
    init_default_scope('perception')
    model = MODELS.build(cfg.model)
    _, backbone, dataset = _parts(path)
    # The backbone's published parameter count (no classifier): checks the arch really built.
    expected = {'r50': 23_508_032, 'r18': 11_176_512}.get(backbone)
    if expected is not None:
        assert sum(p.numel() for p in model.backbone.parameters()) == expected
    if dataset == 'synthetic':
        # The demo models are small enough to run: logits for every class at stride 4.
        model.eval()
        with torch.no_grad():
            out = model(torch.zeros(1, 3, 64, 128), mode='tensor')
        if isinstance(out, torch.Tensor):
            assert out.shape == (1, 5, 16, 32)


@pytest.mark.parametrize('path', [p for p in CONFIGS if 'synthetic' in p.name],
                         ids=lambda p: p.stem)
def test_demo_config_trains_a_step_on_generated_data(path: Path, tmp_path: Path):
    cfg = load_config(path)
    init_default_scope('perception')
    write_synthetic_cityscapes(tmp_path, 4, 0, 64, 128, num_classes=5, seed=0)
    dataset = DATASETS.build(dict(cfg.train_dataloader.dataset, data_root=str(tmp_path)))
    assert dataset.metainfo['classes'] == SYNTHETIC_SEG_CLASSES[:5]
    np.random.seed(0)
    torch.manual_seed(0)
    batch = pseudo_collate([dataset[i] for i in range(2)])
    assert all(tuple(x.shape) == (3, 64, 128) for x in batch['inputs'])  # the crop size
    model = MODELS.build(cfg.model)
    model.train()
    losses = model(**model.data_preprocessor(batch, True), mode='loss')
    total = sum(v for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(total)
    total.backward()
    grads = [p.grad for p in model.backbone.parameters() if p.grad is not None]
    assert grads and any(bool(g.abs().sum() > 0) for g in grads)
