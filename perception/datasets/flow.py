"""Optical-flow datasets read straight from their official folders (layouts in ``data/README.md``).

Every class scans its folders with sorted globbing (the same order on every machine) and hands
each image pair to the pipeline as a dict:

* ``img_path``, ``img_next_path``: the first and second frames (the flow goes from the first).
* ``flow_path``: ground-truth forward flow, or None (test splits); ``flow_format``: ``'flo'``,
  ``'pfm'`` or ``'kitti_png'`` (read by ``LoadFlow``).
* ``noc_path`` / ``noc_format`` when the dataset has one: ``'occlusion_png'`` (Sintel's
  ``occlusions/``, 255 = occluded) or ``'kitti_png'`` (KITTI's ``flow_noc``: non-occluded where
  it has a flow); ``invalid_path`` (Sintel's ``invalid/``, 255 = no valid flow).
* ``frame_id``: the pair's name (mmengine sets ``sample_idx`` to the dataset index).

A root without any pair, and a pair whose second frame or ground truth is missing, raise
:class:`DataError` naming the folder or files.
"""
from __future__ import annotations

import os.path as osp
import re
from typing import Any, Sequence

from mmengine.dataset import BaseDataset

from ..engine.errors import ConfigError, DataError
from ..registry import DATASETS
from .stereo import _sorted_glob

__all__ = ['FlyingChairsDataset', 'FlyingThings3DFlowDataset', 'HD1KDataset',
           'KittiFlowDataset', 'SintelDataset']

_MAX_LISTED = 5
_FILE_KEYS = ('img_next_path', 'flow_path', 'noc_path', 'invalid_path')


def _frame(frame_id: str, img: str, img_next: str, flow: str | None, flow_format: str,
           **extra: str | None) -> dict:
    frame = {'frame_id': frame_id, 'img_path': img, 'img_next_path': img_next,
             'flow_path': flow, 'flow_format': flow_format}
    frame.update({k: v for k, v in extra.items() if v is not None})
    return frame


class _FlowFolderDataset(BaseDataset):
    """Scans ``data_root`` (``_scan``) instead of reading an annotation file."""

    def __init__(self, data_root: str, pipeline: Sequence[Any] = (), test_mode: bool = False,
                 **kwargs: Any) -> None:
        if not data_root:
            raise ConfigError(f'{type(self).__name__}: data_root is required')
        super().__init__(data_root=data_root, ann_file='', data_prefix={},
                         pipeline=list(pipeline), test_mode=test_mode, **kwargs)

    def _scan(self) -> list[dict]:
        raise NotImplementedError

    def _describe(self) -> str:
        return ''

    def load_data_list(self) -> list[dict]:
        if not osp.isdir(self.data_root):
            raise DataError(f'{self.data_root}: {type(self).__name__} root folder not found')
        frames = self._scan()
        if not frames:
            raise DataError(f'{self.data_root}: no image pairs found for {type(self).__name__} '
                            f'({self._describe()}); see data/README.md for the layout')
        missing = [(f['frame_id'], key, f[key]) for f in frames for key in _FILE_KEYS
                   if f.get(key) is not None and not osp.isfile(f[key])]
        if missing:
            listed = '; '.join(f'{frame_id}: {key[:-5]} {path}'
                               for frame_id, key, path in missing[:_MAX_LISTED])
            more = f' (and {len(missing) - _MAX_LISTED} more)' if len(missing) > _MAX_LISTED else ''
            raise DataError(f'{self.data_root}: {len(missing)} missing file(s) of flow pairs: '
                            f'{listed}{more}')
        return frames


@DATASETS.register_module()
class SintelDataset(_FlowFolderDataset):
    """MPI-Sintel: ``<split>/<pass>/<scene>/frame_%04d.png``, consecutive frames as pairs.

    Args:
        data_root: the folder holding ``training/`` and ``test/`` (e.g. ``data/Sintel``).
        pass_name: ``'clean'`` or ``'final'``.
        split: ``'training'`` (``flow/``, ``occlusions/``, ``invalid/``) or ``'test'``.
        scenes: keep only these scene names.

    ``frame_id`` is ``<pass>/<scene>/frame_%04d``. Training pairs carry ``noc_path``
    (``occlusions/``, ``noc_format='occlusion_png'``) and ``invalid_path`` where those exist.
    """

    def __init__(self, data_root: str, pass_name: str = 'clean', split: str = 'training',
                 scenes: Sequence[str] | None = None, **kwargs: Any) -> None:
        if pass_name not in ('clean', 'final'):
            raise ConfigError(f"SintelDataset: pass_name must be 'clean' or 'final', got "
                              f'{pass_name!r}')
        if split not in ('training', 'test'):
            raise ConfigError(f"SintelDataset: split must be 'training' or 'test', got {split!r}")
        self.pass_name, self.split = pass_name, split
        self.scenes = None if scenes is None else set(scenes)
        super().__init__(data_root=data_root, **kwargs)

    def _describe(self) -> str:
        return f'{self.split}/{self.pass_name}/*/frame_*.png'

    def _scan(self) -> list[dict]:
        root = osp.join(self.data_root, self.split)
        frames = []
        for scene_dir in _sorted_glob(osp.join(root, self.pass_name, '*')):
            scene = osp.basename(scene_dir)
            if not osp.isdir(scene_dir) or (self.scenes is not None and scene not in self.scenes):
                continue
            images = _sorted_glob(osp.join(scene_dir, 'frame_*.png'))
            for first, second in zip(images[:-1], images[1:]):
                name = osp.basename(first)[:-len('.png')]
                flow = noc = invalid = None
                if self.split == 'training':
                    flow = osp.join(root, 'flow', scene, f'{name}.flo')
                    noc = osp.join(root, 'occlusions', scene, f'{name}.png')
                    invalid = osp.join(root, 'invalid', scene, f'{name}.png')
                    noc = noc if osp.isfile(noc) else None
                    invalid = invalid if osp.isfile(invalid) else None
                frames.append(_frame(f'{self.pass_name}/{scene}/{name}', first, second, flow,
                                     'flo', noc_path=noc,
                                     noc_format='occlusion_png' if noc else None,
                                     invalid_path=invalid))
        return frames


@DATASETS.register_module()
class FlyingChairsDataset(_FlowFolderDataset):
    """FlyingChairs: ``data/%05d_img1.ppm``, ``%05d_img2.ppm``, ``%05d_flow.flo``.

    Args:
        data_root: the ``FlyingChairs_release`` folder (holding ``data/``).
        split: ``'training'`` (22,232 pairs), ``'validation'`` (640) or ``'all'``.
        split_file: the official ``FlyingChairs_train_val.txt`` (one line per pair: 1 = training,
            2 = validation), relative to ``data_root``; needed unless ``split='all'``.
    """

    def __init__(self, data_root: str, split: str = 'training',
                 split_file: str = 'FlyingChairs_train_val.txt', **kwargs: Any) -> None:
        if split not in ('training', 'validation', 'all'):
            raise ConfigError(f"FlyingChairsDataset: split must be 'training', 'validation' or "
                              f"'all', got {split!r}")
        self.split, self.split_file = split, split_file
        super().__init__(data_root=data_root, **kwargs)

    def _describe(self) -> str:
        return 'data/*_img1.ppm'

    def _scan(self) -> list[dict]:
        firsts = _sorted_glob(osp.join(self.data_root, 'data', '*_img1.ppm'))
        if self.split != 'all' and firsts:
            path = osp.join(self.data_root, self.split_file)
            if not osp.isfile(path):
                raise DataError(f'{path}: FlyingChairs split file not found (needed for split '
                                f"{self.split!r}; use split='all' to read every pair)")
            with open(path) as f:
                labels = f.read().split()
            if len(labels) != len(firsts) or set(labels) - {'1', '2'}:
                raise DataError(f'{path}: expected {len(firsts)} labels 1 (training) or 2 '
                                f'(validation), one per pair, got {len(labels)} '
                                f'({sorted(set(labels))[:5]})')
            wanted = '1' if self.split == 'training' else '2'
            firsts = [f for f, label in zip(firsts, labels) if label == wanted]
        frames = []
        for first in firsts:
            stem = first[:-len('_img1.ppm')]
            frames.append(_frame(osp.basename(stem), first, f'{stem}_img2.ppm',
                                 f'{stem}_flow.flo', 'flo'))
        return frames


@DATASETS.register_module()
class FlyingThings3DFlowDataset(_FlowFolderDataset):
    """FlyingThings3D optical-flow subset: consecutive frames and PFM flows, both directions.

    Layout (as RAFT reads it): ``frames_<pass>/<split>/<letter>/<seq>/<cam>/%04d.png`` and
    ``optical_flow/<split>/<letter>/<seq>/into_future/<cam>/OpticalFlowIntoFuture_%04d_L.pfm``
    (``into_past`` / ``OpticalFlowIntoPast``; ``_R`` for the right camera).

    Args:
        data_root: the folder holding ``frames_cleanpass/``, ``frames_finalpass/``,
            ``optical_flow/``.
        split: ``'TRAIN'`` or ``'TEST'``.
        render_pass: ``'cleanpass'`` or ``'finalpass'``.
        cameras: some of ``'left'``, ``'right'``.
        directions: some of ``'into_future'`` (frame n -> n + 1, flow of frame n) and
            ``'into_past'`` (frame n + 1 -> n, flow of frame n + 1); RAFT uses both.
    """

    def __init__(self, data_root: str, split: str = 'TRAIN', render_pass: str = 'cleanpass',
                 cameras: Sequence[str] = ('left',),
                 directions: Sequence[str] = ('into_future', 'into_past'),
                 **kwargs: Any) -> None:
        if split not in ('TRAIN', 'TEST'):
            raise ConfigError(f"FlyingThings3DFlowDataset: split must be 'TRAIN' or 'TEST', got "
                              f'{split!r}')
        if render_pass not in ('cleanpass', 'finalpass'):
            raise ConfigError("FlyingThings3DFlowDataset: render_pass must be 'cleanpass' or "
                              f"'finalpass', got {render_pass!r}")
        if not cameras or set(cameras) - {'left', 'right'}:
            raise ConfigError(f"FlyingThings3DFlowDataset: cameras must be some of 'left', "
                              f"'right', got {list(cameras)}")
        if not directions or set(directions) - {'into_future', 'into_past'}:
            raise ConfigError("FlyingThings3DFlowDataset: directions must be some of "
                              f"'into_future', 'into_past', got {list(directions)}")
        self.split, self.render_pass = split, render_pass
        self.cameras, self.directions = tuple(cameras), tuple(directions)
        super().__init__(data_root=data_root, **kwargs)

    def _describe(self) -> str:
        return f'frames_{self.render_pass}/{self.split}/*/*/{{{",".join(self.cameras)}}}/*.png'

    def _scan(self) -> list[dict]:
        frames = []
        image_root = osp.join(self.data_root, f'frames_{self.render_pass}', self.split)
        flow_root = osp.join(self.data_root, 'optical_flow', self.split)
        for seq_dir in _sorted_glob(osp.join(image_root, '*', '*')):
            seq = osp.relpath(seq_dir, image_root)
            for cam in self.cameras:
                images = _sorted_glob(osp.join(seq_dir, cam, '*.png'))
                numbers = [int(osp.basename(p)[:-len('.png')]) for p in images]
                suffix = 'L' if cam == 'left' else 'R'
                for direction in self.directions:
                    kind = 'Future' if direction == 'into_future' else 'Past'
                    for i in range(len(images) - 1):
                        if numbers[i + 1] != numbers[i] + 1:
                            continue  # a gap in the sequence: not consecutive frames
                        src, dst = (i, i + 1) if kind == 'Future' else (i + 1, i)
                        flow = osp.join(flow_root, seq, direction, cam,
                                        f'OpticalFlowInto{kind}_{numbers[src]:04d}_{suffix}.pfm')
                        frames.append(_frame(
                            f'{self.split}/{seq.replace(osp.sep, "/")}/{cam}/{direction}/'
                            f'{numbers[src]:04d}', images[src], images[dst], flow, 'pfm'))
        return frames


@DATASETS.register_module()
class KittiFlowDataset(_FlowFolderDataset):
    """KITTI 2015 flow: ``image_2/%06d_10.png`` -> ``%06d_11.png``, 16-bit flow PNGs.

    Args:
        data_root: the folder holding ``training/`` and ``testing/`` (e.g.
            ``data/kitti_flow/2015``).
        split: ``'training'`` (200 pairs with ground truth) or ``'testing'``.
        flow_type: ``'occ'`` (all pixels, ``flow_occ``: the benchmark's Fl-all) or ``'noc'``.
            With ``'occ'`` the ``flow_noc`` map, where present, becomes ``noc_path``.
    """

    def __init__(self, data_root: str, split: str = 'training', flow_type: str = 'occ',
                 **kwargs: Any) -> None:
        if split not in ('training', 'testing'):
            raise ConfigError(f"KittiFlowDataset: split must be 'training' or 'testing', got "
                              f'{split!r}')
        if flow_type not in ('occ', 'noc'):
            raise ConfigError(f"KittiFlowDataset: flow_type must be 'occ' or 'noc', got "
                              f'{flow_type!r}')
        self.split, self.flow_type = split, flow_type
        super().__init__(data_root=data_root, **kwargs)

    def _describe(self) -> str:
        return f'{self.split}/image_2/*_10.png'

    def _scan(self) -> list[dict]:
        root = osp.join(self.data_root, self.split)
        frames = []
        for first in _sorted_glob(osp.join(root, 'image_2', '*_10.png')):
            name = osp.basename(first)
            flow = noc = None
            if self.split == 'training':
                flow = osp.join(root, f'flow_{self.flow_type}', name)
                noc_file = osp.join(root, 'flow_noc', name)
                if self.flow_type == 'occ' and osp.isfile(noc_file):
                    noc = noc_file
            frames.append(_frame(name[:-len('.png')], first,
                                 osp.join(root, 'image_2', name.replace('_10.png', '_11.png')),
                                 flow, 'kitti_png', noc_path=noc,
                                 noc_format='kitti_png' if noc else None))
        return frames


@DATASETS.register_module()
class HD1KDataset(_FlowFolderDataset):
    """HD1K: ``hd1k_input/image_2/%06d_%04d.png`` with ``hd1k_flow_gt/flow_occ/`` KITTI PNGs.

    Consecutive frames of each sequence form the pairs whose first frame has a flow file (as RAFT).

    Args:
        data_root: the folder holding ``hd1k_input/`` and ``hd1k_flow_gt/``.
    """

    _NAME = re.compile(r'^(\d{6})_(\d{4})\.png$')

    def _describe(self) -> str:
        return 'hd1k_flow_gt/flow_occ/*.png'

    def _scan(self) -> list[dict]:
        image_dir = osp.join(self.data_root, 'hd1k_input', 'image_2')
        frames = []
        for flow in _sorted_glob(osp.join(self.data_root, 'hd1k_flow_gt', 'flow_occ', '*.png')):
            match = self._NAME.match(osp.basename(flow))
            if match is None:
                raise DataError(f'{flow}: expected an HD1K name SSSSSS_FFFF.png')
            seq, number = match.group(1), int(match.group(2))
            nxt = osp.join(image_dir, f'{seq}_{number + 1:04d}.png')
            if not osp.isfile(nxt):
                continue  # the last frame of a sequence has no successor
            frames.append(_frame(f'{seq}_{number:04d}', osp.join(image_dir, osp.basename(flow)),
                                 nxt, flow, 'kitti_png'))
        return frames
