"""The training data pipelines of the published optical-flow configs, on tiny fake datasets.

tests/test_configs.py skips the training step of ``configs/raft/*.py`` and ``configs/sea-raft/*.py``
because FlyingChairs, FlyingThings3D, Sintel, KITTI and HD1K are not on the test machines, so
nothing there checks that those configs' datasets, wrappers and augmentation fit together. Here
every leaf dataset of each config's ``train_dataloader.dataset`` (under mmengine's
``ConcatDataset`` / ``RepeatDataset``, nested as configured) gets a copy of its official on-disk
layout holding two to five pairs, written in the real formats (``.ppm`` / ``.png`` frames with
OpenCV; ``.flo``, PFM and KITTI 16-bit PNG flow with ``perception.datasets.flow_io``). The config's
dataset is then built through the registry as the Runner builds it, and the first and last sample
of every leaf go through that leaf's own train pipeline. Checked:

* the readers find exactly the pairs written, and the wrappers' lengths follow the configured
  ``times``;
* each sample comes from the leaf the wrappers' index arithmetic says it should;
* the packed pair and flow have the crop size of that leaf's pipeline (the frames are far smaller
  than every crop, so ``FlowRandomScale`` must raise them to it);
* the written constant flow comes out multiplied by the recorded scale factors and negated by the
  recorded flips, with 0 where invalid;
* sparse ground truth (KITTI, HD1K) stays sparse (its points are moved, not interpolated) while
  dense ground truth stays almost all valid;
* a data root without data fails naming the folder.

The ``*synthetic*`` configs train on generated data in tests/test_learning_flow.py; left out here.
"""
from __future__ import annotations

import inspect
import re
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import ConfigDict
from mmengine.dataset import BaseDataset, ConcatDataset, RepeatDataset
from mmengine.registry import DefaultScope

from perception.datasets.flow_io import write_flo, write_kitti_flow, write_pfm_flow
from perception.engine import DataError, load_config
from perception.registry import DATASETS

from .conftest import ROOT

CONFIGS = sorted(p for folder in ('raft', 'sea-raft')
                 for p in (ROOT / 'configs' / folder).glob('*.py') if 'synthetic' not in p.name)

# (H, W) of every fake frame: far below every published crop, so each pipeline's FlowRandomScale
# has to raise the frames to its crop, and small enough that a sample costs a few milliseconds.
SIZE = (40, 56)
# One constant (u, v) in every flow file: on KITTI's 1/64 px grid so all three formats store it
# exactly, which makes the flow expected after scaling and flipping known exactly.
FLOW = (3.25, -1.5)
_MASKS = np.random.default_rng(0)
# KITTI and HD1K ground truth is sparse: about 30 % valid here (the configs pass sparse=True;
# FlowRandomScale with sparse=None would also move points below half valid).
SPARSE_VALID = _MASKS.random(SIZE) < 0.3
# KITTI's flow_noc: the valid pixels that are not occluded
SPARSE_NOC = SPARSE_VALID & (_MASKS.random(SIZE) < 0.8)

CHAIRS_LABELS = ('1', '2', '1')  # FlyingChairs_train_val.txt: 1 = training, 2 = validation
THINGS_FRAMES = (6, 7, 8)        # one sequence per camera, as FlyingThings3D numbers them
SINTEL_SCENE, SINTEL_FRAMES = 'alley_1', 4
KITTI_PAIRS = ('000000', '000001')
HD1K_FRAMES = 6                  # one sequence; the last frame has no successor


def _image(path: Path) -> None:
    """A random RGB frame (random so the colour jitter and eraser work on real variation)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(zlib.crc32(str(path).encode()))
    assert cv2.imwrite(str(path), rng.integers(0, 256, SIZE + (3,), dtype=np.uint8)), path


def _flow() -> np.ndarray:
    return np.broadcast_to(np.array(FLOW, np.float32), SIZE + (2,)).copy()


def _arg(leaf: ConfigDict, name: str) -> Any:
    """The leaf's argument, or its reader's default (read from the signature, not copied here)."""
    if name in leaf:
        return leaf[name]
    return inspect.signature(DATASETS.get(leaf['type'])).parameters[name].default


# ----------------------------------------------------------------------- fake dataset layouts
# One writer per reader of perception/datasets/flow.py, laid out as its docstring and
# data/README.md say, and the number of pairs a leaf with the given arguments finds in it.

def _write_chairs(root: Path) -> None:
    for i in range(1, len(CHAIRS_LABELS) + 1):
        _image(root / 'data' / f'{i:05d}_img1.ppm')
        _image(root / 'data' / f'{i:05d}_img2.ppm')
        write_flo(root / 'data' / f'{i:05d}_flow.flo', _flow())
    (root / 'FlyingChairs_train_val.txt').write_text('\n'.join(CHAIRS_LABELS) + '\n')


def _chairs_pairs(leaf: ConfigDict) -> int:
    split = _arg(leaf, 'split')
    if split == 'all':
        return len(CHAIRS_LABELS)
    return CHAIRS_LABELS.count('1' if split == 'training' else '2')


def _write_things(root: Path) -> None:
    # Both passes and both cameras: the clean and final leaves of one config share one root.
    sequence = Path('TRAIN', 'A', '0000')
    for cam, suffix in (('left', 'L'), ('right', 'R')):
        for n in THINGS_FRAMES:
            for render_pass in ('cleanpass', 'finalpass'):
                _image(root / f'frames_{render_pass}' / sequence / cam / f'{n:04d}.png')
            for direction, kind in (('into_future', 'Future'), ('into_past', 'Past')):
                write_pfm_flow(root / 'optical_flow' / sequence / direction / cam /
                               f'OpticalFlowInto{kind}_{n:04d}_{suffix}.pfm', _flow())


def _things_pairs(leaf: ConfigDict) -> int:
    assert _arg(leaf, 'split') == 'TRAIN', 'the fake FlyingThings3D copy has only TRAIN'
    return (len(THINGS_FRAMES) - 1) * len(_arg(leaf, 'cameras')) * len(_arg(leaf, 'directions'))


def _write_sintel(root: Path) -> None:
    training = root / 'training'
    for pass_name in ('clean', 'final'):
        for i in range(1, SINTEL_FRAMES + 1):
            _image(training / pass_name / SINTEL_SCENE / f'frame_{i:04d}.png')
    occluded = np.zeros(SIZE, np.uint8)
    occluded[5:10, 8:20] = 255  # 255 = occluded
    invalid = np.zeros(SIZE, np.uint8)
    invalid[0, :4] = 255        # a few pixels without valid flow, as Sintel's invalid/
    for i in range(1, SINTEL_FRAMES):
        write_flo(training / 'flow' / SINTEL_SCENE / f'frame_{i:04d}.flo', _flow())
        for folder, mask in (('occlusions', occluded), ('invalid', invalid)):
            (training / folder / SINTEL_SCENE).mkdir(parents=True, exist_ok=True)
            assert cv2.imwrite(str(training / folder / SINTEL_SCENE / f'frame_{i:04d}.png'), mask)


def _sintel_pairs(leaf: ConfigDict) -> int:
    assert _arg(leaf, 'split') == 'training', 'the fake Sintel copy has only training/'
    scenes = _arg(leaf, 'scenes')
    return SINTEL_FRAMES - 1 if scenes is None or SINTEL_SCENE in scenes else 0


def _write_kitti(root: Path) -> None:
    training = root / 'training'
    for name in KITTI_PAIRS:
        _image(training / 'image_2' / f'{name}_10.png')
        _image(training / 'image_2' / f'{name}_11.png')
        write_kitti_flow(training / 'flow_occ' / f'{name}_10.png', _flow(), SPARSE_VALID)
        write_kitti_flow(training / 'flow_noc' / f'{name}_10.png', _flow(), SPARSE_NOC)


def _kitti_pairs(leaf: ConfigDict) -> int:
    assert _arg(leaf, 'split') == 'training', 'the fake KITTI copy has only training/'
    return len(KITTI_PAIRS)


def _write_hd1k(root: Path) -> None:
    for n in range(HD1K_FRAMES):
        _image(root / 'hd1k_input' / 'image_2' / f'000000_{n:04d}.png')
        write_kitti_flow(root / 'hd1k_flow_gt' / 'flow_occ' / f'000000_{n:04d}.png', _flow(),
                         SPARSE_VALID)


@dataclass(frozen=True)
class FakeData:
    write: Callable[[Path], None]
    pairs: Callable[[ConfigDict], int]
    sparse: bool                        # KITTI-style ground truth: a minority of valid pixels
    noc: Callable[[ConfigDict], bool]   # whether its samples carry a noc_mask


FAKES = {
    'FlyingChairsDataset': FakeData(_write_chairs, _chairs_pairs, False, lambda leaf: False),
    'FlyingThings3DFlowDataset': FakeData(_write_things, _things_pairs, False,
                                          lambda leaf: False),
    'SintelDataset': FakeData(_write_sintel, _sintel_pairs, False, lambda leaf: True),
    'KittiFlowDataset': FakeData(_write_kitti, _kitti_pairs, True,
                                 lambda leaf: _arg(leaf, 'flow_type') == 'occ'),
    'HD1KDataset': FakeData(_write_hd1k, lambda leaf: HD1K_FRAMES - 1, True, lambda leaf: False),
}


# ----------------------------------------------------------------------- the dataset tree

@dataclass(frozen=True)
class Leaf:
    cfg: ConfigDict  # the leaf's config, inside the loaded config (mutated in place)
    pairs: int       # the pairs its reader finds in the fake copy
    times: int       # the product of the enclosing RepeatDataset times
    first: int       # index of its first sample in the whole wrapped dataset
    last: int        # index of its last sample there (its last pair, last repetition)


def _layout(node: ConfigDict) -> tuple[list[Leaf], int]:
    """The leaves of a dataset config in build order, where they sit, and the total length.

    Follows mmengine's index arithmetic: a ConcatDataset puts its parts one after the other, a
    RepeatDataset of size n maps index i to i % n of its dataset.
    """
    kind = node['type']
    if kind == 'ConcatDataset':
        leaves, size = [], 0
        for child in node['datasets']:
            part, part_size = _layout(child)
            leaves += [replace(leaf, first=leaf.first + size, last=leaf.last + size)
                       for leaf in part]
            size += part_size
        return leaves, size
    if kind == 'RepeatDataset':
        times = node['times']
        part, size = _layout(node['dataset'])
        return [replace(leaf, times=leaf.times * times, last=leaf.last + (times - 1) * size)
                for leaf in part], size * times
    assert kind in FAKES, f'no fake copy for dataset type {kind!r}: add a writer to this test'
    pairs = FAKES[kind].pairs(node)
    return [Leaf(node, pairs, 1, 0, pairs - 1)], pairs


def _built_leaves(dataset: BaseDataset) -> Iterator[BaseDataset]:
    """The built leaf datasets in the order ``_layout`` lists their configs."""
    if isinstance(dataset, ConcatDataset):
        for part in dataset.datasets:
            yield from _built_leaves(part)
    elif isinstance(dataset, RepeatDataset):
        yield from _built_leaves(dataset.dataset)
    else:
        yield dataset


def _crop_size(pipeline: list[ConfigDict]) -> tuple[int, int]:
    """``(h, w)`` of the pipeline's crop; the scale step before it must raise frames to it."""
    steps = {step['type']: step for step in pipeline}
    crop = tuple(steps['FlowRandomCrop']['crop_size'])
    assert tuple(steps['FlowRandomScale']['crop_size']) == crop, \
        'FlowRandomScale raises small frames to another size than FlowRandomCrop cuts'
    return crop


def _build(cfg: Any) -> BaseDataset:
    # Under the config's scope, as the Runner builds it: mmengine's wrappers build their parts
    # through the root registry.
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        return DATASETS.build(cfg.train_dataloader.dataset)


def _check_sample(sample: dict, fake: FakeData, leaf: Leaf, crop: tuple[int, int],
                  img_path: str) -> None:
    height, width = crop
    data = sample['data_samples']
    meta = data.metainfo
    where = meta['frame_id']
    assert meta['img_path'] == img_path, 'the wrappers fetched a sample of another dataset'
    assert sample['inputs'].shape == (2, 3, height, width), where
    assert sample['inputs'].dtype == torch.uint8
    flow = data.gt_flow.data
    assert flow.shape == (2, height, width) and flow.dtype == torch.float32, where
    assert torch.isfinite(flow).all(), where
    valid = data.gt_valid.data
    assert valid.shape == (1, height, width) and valid.dtype == torch.bool, where
    valid = valid[0]
    # The written flow, scaled per axis and negated by the flips the sample records.
    scale_x, scale_y = meta['scale_factor']
    sign_u = -1.0 if meta.get('flip_horizontal') else 1.0
    sign_v = -1.0 if meta.get('flip_vertical') else 1.0
    expected = torch.tensor([FLOW[0] * scale_x * sign_u, FLOW[1] * scale_y * sign_v],
                            dtype=torch.float32)
    torch.testing.assert_close(flow[:, valid], expected[:, None].expand(2, int(valid.sum())),
                               rtol=1e-4, atol=1e-4, msg=lambda m: f'{where}: {m}')
    assert (flow[:, ~valid] == 0).all(), f'{where}: flow left at invalid pixels'
    if fake.sparse:
        # Moved point by point: no more valid pixels than the file has (an interpolating
        # upscale by more than 7x would create thousands), and both kinds in the crop.
        assert 0 < int(valid.sum()) <= int(SPARSE_VALID.sum()), where
        assert not valid.all(), where
    else:
        assert valid.float().mean() > 0.9, where
    if fake.noc(leaf.cfg):
        noc = data.noc_mask.data
        assert noc.shape == (1, height, width) and noc.dtype == torch.bool, where
    else:
        assert 'noc_mask' not in data, where


# ----------------------------------------------------------------------------------- tests

def test_flow_configs_found() -> None:
    # Guards the parametrisation below against a moved folder turning it into zero tests.
    assert len(CONFIGS) >= 10, CONFIGS


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: str(p.relative_to(ROOT / 'configs')))
def test_train_pipeline_on_fake_data(path: Path, tmp_path: Path) -> None:
    cfg = load_config(path)
    leaves, total = _layout(cfg.train_dataloader.dataset)
    # One fake copy per configured root: the leaves that share a root (Sintel clean and final,
    # FlyingThings3D clean and final) share it here too, as they share the real folder.
    roots: dict[tuple[str, str], Path] = {}
    for leaf in leaves:
        key = (leaf.cfg['type'], leaf.cfg['data_root'])
        if key not in roots:
            roots[key] = tmp_path / f'{len(roots)}_{key[0]}'
            FAKES[key[0]].write(roots[key])
        leaf.cfg['data_root'] = str(roots[key])
    dataset = _build(cfg)
    built = list(_built_leaves(dataset))
    assert [type(b).__name__ for b in built] == [leaf.cfg['type'] for leaf in leaves]
    assert [len(b) for b in built] == [leaf.pairs for leaf in leaves]
    assert len(dataset) == sum(leaf.pairs * leaf.times for leaf in leaves) == total
    # The crop a file name promises (e.g. sea-raft-m_things-432x960) is the one its data gets.
    named = re.search(r'(\d+)x(\d+)', path.stem)
    np.random.seed(0)  # the transforms draw from NumPy's global generator
    for leaf, leaf_dataset in zip(leaves, built):
        crop = _crop_size(leaf.cfg['pipeline'])
        if FAKES[leaf.cfg['type']].sparse:
            # The official SparseFlowAugmentor (RAFT and SEA-RAFT build KITTI and HD1K with
            # sparse=True): points moved, no stretch, no vertical flip.
            steps = {step['type']: step for step in leaf.cfg['pipeline']}
            scale, flip = steps['FlowRandomScale'], steps.get('FlowRandomFlip', {})
            assert scale.get('sparse') is True and scale.get('stretch_prob') == 0.0, scale
            assert flip.get('vertical_prob', 0.0) == 0.0, flip
        if named:
            assert crop == (int(named.group(1)), int(named.group(2))), leaf.cfg['type']
        for index, local in ((leaf.first, 0), (leaf.last, leaf.pairs - 1)):
            _check_sample(dataset[index], FAKES[leaf.cfg['type']], leaf, crop,
                          leaf_dataset.get_data_info(local)['img_path'])


@pytest.mark.parametrize('name', ['raft/raft_chairs.py', 'raft/raft_sintel.py'])
def test_empty_data_root_names_the_folder(name: str, tmp_path: Path) -> None:
    # A single dataset and nested wrappers: the reader's error reaches the user through them.
    cfg = load_config(ROOT / 'configs' / name)
    empty = tmp_path / 'empty'
    empty.mkdir()
    for leaf in _layout(cfg.train_dataloader.dataset)[0]:
        leaf.cfg['data_root'] = str(empty)
    with pytest.raises(DataError, match='no image pairs found') as err:
        _build(cfg)
    assert str(empty) in str(err.value)
