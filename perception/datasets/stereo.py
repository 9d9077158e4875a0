"""Stereo datasets read straight from their official folders (layouts in ``data/README.md``).

Every class scans its folders with sorted globbing (so the order is the same on every machine) and
hands each rectified pair to the pipeline as a dict:

* ``img_path``, ``img_right_path``: left and right images.
* ``disp_path``: left-view ground-truth disparity, or None (test splits); ``disp_format``:
  ``'pfm'`` or ``'kitti_png'`` (read by ``LoadDisparity``).
* ``noc_path`` / ``noc_format`` (when the dataset has one): the non-occlusion mask, either a KITTI
  ``disp_noc`` PNG (``'kitti_png'``: non-occluded where it has a disparity) or a Middlebury / ETH3D
  ``mask0nocc.png`` (``'mask_png'``: non-occluded where it is 255).
* ``calib_path`` when the scene ships one; ``frame_id``: the pair's name (mmengine sets
  ``sample_idx`` to the dataset index).

A root without any pair, and a pair whose right image or disparity is missing, raise
:class:`DataError` naming the folder or file.
"""
from __future__ import annotations

import glob
import os.path as osp
from typing import Any, Sequence

from mmengine.dataset import BaseDataset

from ..engine.errors import ConfigError, DataError
from ..registry import DATASETS

__all__ = ['ETH3DDataset', 'KittiStereoDataset', 'MiddleburyDataset', 'SceneFlowDataset']

_MAX_LISTED = 5


def _sorted_glob(pattern: str) -> list[str]:
    return sorted(glob.glob(pattern))


def _replace_part(path: str, old: str, new: str, root: str) -> str:
    """Replace the whole path component ``old`` (below ``root``) by ``new``, exactly once."""
    parts = osp.relpath(path, root).split(osp.sep)
    if old not in parts:
        raise DataError(f'{path}: expected a {old!r} folder in the path')
    parts[parts.index(old)] = new
    return osp.join(root, *parts)


class _StereoFolderDataset(BaseDataset):
    """Scans ``data_root`` (``_scan``) instead of reading an annotation file."""

    def __init__(self, data_root: str, pipeline: Sequence[Any] = (), test_mode: bool = False,
                 **kwargs: Any) -> None:
        if not data_root:
            raise ConfigError(f'{type(self).__name__}: data_root is required')
        super().__init__(data_root=data_root, ann_file='', data_prefix={},
                         pipeline=list(pipeline), test_mode=test_mode, **kwargs)

    def _scan(self) -> list[dict]:
        raise NotImplementedError

    def load_data_list(self) -> list[dict]:
        if not osp.isdir(self.data_root):
            raise DataError(f'{self.data_root}: {type(self).__name__} root folder not found')
        frames = self._scan()
        if not frames:
            raise DataError(f'{self.data_root}: no stereo pairs found for {type(self).__name__} '
                            f'({self._describe()}); see data/README.md for the layout')
        missing = [(f['frame_id'], key, f[key]) for f in frames
                   for key in ('img_right_path', 'disp_path', 'noc_path')
                   if f.get(key) is not None and not osp.isfile(f[key])]
        if missing:
            listed = '; '.join(f'{frame_id}: {key[:-5]} {path}'
                               for frame_id, key, path in missing[:_MAX_LISTED])
            more = f' (and {len(missing) - _MAX_LISTED} more)' if len(missing) > _MAX_LISTED else ''
            raise DataError(f'{self.data_root}: {len(missing)} missing file(s) of stereo pairs: '
                            f'{listed}{more}')
        return frames

    def _describe(self) -> str:
        return ''

    @staticmethod
    def _frame(frame_id: str, left: str, right: str, disp: str | None, disp_format: str,
               noc: str | None = None, noc_format: str | None = None,
               calib: str | None = None) -> dict:
        frame = {'frame_id': frame_id, 'img_path': left, 'img_right_path': right,
                 'disp_path': disp, 'disp_format': disp_format}
        if noc is not None:
            frame['noc_path'] = noc
            frame['noc_format'] = noc_format
        if calib is not None and osp.isfile(calib):
            frame['calib_path'] = calib
        return frame


@DATASETS.register_module()
class SceneFlowDataset(_StereoFolderDataset):
    """Freiburg SceneFlow: FlyingThings3D, Monkaa, Driving (left-view PFM disparities).

    Args:
        data_root: the folder holding ``FlyingThings3D/``, ``Monkaa/`` and ``Driving/``.
        subsets: which of the three to read. Default: all three for ``split='TRAIN'`` (the usual
            35,454 training pairs), FlyingThings3D alone for ``'TEST'`` (4,370 pairs); Monkaa
            and Driving have no test split.
        split: FlyingThings3D's ``'TRAIN'`` or ``'TEST'``.
        render_pass: ``'finalpass'`` or ``'cleanpass'`` (the ``frames_<pass>`` folder).

    ``frame_id`` is the left image's path below ``data_root`` with the pass folder and ``left``
    removed, e.g. ``FlyingThings3D/TRAIN/A/0000/0006``.
    """

    SUBSETS = ('FlyingThings3D', 'Monkaa', 'Driving')
    # Left images below <subset>/frames_<pass>/ (RAFT-Stereo's and IGEV's globs).
    _LEFT_GLOBS = {'FlyingThings3D': '{split}/*/*/left/*.png', 'Monkaa': '*/left/*.png',
                   'Driving': '*/*/*/left/*.png'}

    def __init__(self, data_root: str, subsets: Sequence[str] | None = None,
                 split: str = 'TRAIN', render_pass: str = 'finalpass', **kwargs: Any) -> None:
        if split not in ('TRAIN', 'TEST'):
            raise ConfigError(f"SceneFlowDataset: split must be 'TRAIN' or 'TEST', got {split!r}")
        if render_pass not in ('finalpass', 'cleanpass'):
            raise ConfigError("SceneFlowDataset: render_pass must be 'finalpass' or 'cleanpass', "
                              f'got {render_pass!r}')
        if subsets is None:
            subsets = self.SUBSETS if split == 'TRAIN' else ('FlyingThings3D',)
        subsets = tuple(subsets)
        unknown = [s for s in subsets if s not in self.SUBSETS]
        if unknown:
            raise ConfigError(f'SceneFlowDataset: unknown subsets {unknown}; expected some of '
                              f'{list(self.SUBSETS)}')
        if split == 'TEST' and set(subsets) - {'FlyingThings3D'}:
            raise ConfigError('SceneFlowDataset: only FlyingThings3D has a TEST split; use '
                              "subsets=('FlyingThings3D',)")
        self.subsets, self.split, self.render_pass = subsets, split, render_pass
        super().__init__(data_root=data_root, **kwargs)

    def _describe(self) -> str:
        return f'subsets {list(self.subsets)}, split {self.split}, frames_{self.render_pass}'

    def _scan(self) -> list[dict]:
        frames = []
        pass_dir = f'frames_{self.render_pass}'
        for subset in self.subsets:
            root = osp.join(self.data_root, subset)
            pattern = osp.join(root, pass_dir, self._LEFT_GLOBS[subset].format(split=self.split))
            for left in _sorted_glob(pattern):
                right = _replace_part(left, 'left', 'right', root)
                disp = _replace_part(left, pass_dir, 'disparity', root)[:-len('.png')] + '.pfm'
                parts = osp.relpath(left, root)[:-len('.png')].split(osp.sep)
                frame_id = '/'.join([subset] + [p for p in parts[1:] if p != 'left'])
                frames.append(self._frame(frame_id, left, right, disp, 'pfm'))
        return frames


@DATASETS.register_module()
class KittiStereoDataset(_StereoFolderDataset):
    """KITTI stereo 2012 / 2015: the ``_10`` frames (16-bit PNG disparities, 0 = invalid).

    Args:
        data_root: the folder holding ``training/`` and ``testing/`` of one year
            (e.g. ``data/kitti_stereo/2015``).
        year: 2012 (``colored_0/1``, ``disp_occ``, ``disp_noc``) or 2015 (``image_2/3``,
            ``disp_occ_0``, ``disp_noc_0``); None detects it from the folders.
        split: ``'training'`` (with ground truth) or ``'testing'`` (``disp_path`` None).
        disp_type: ``'occ'`` (all pixels, the benchmark's D1-all) or ``'noc'``. With ``'occ'`` the
            ``noc`` map, where present, becomes ``noc_path``.
    """

    _FOLDERS = {2012: {'left': 'colored_0', 'right': 'colored_1', 'occ': 'disp_occ',
                       'noc': 'disp_noc', 'calib': 'calib'},
                2015: {'left': 'image_2', 'right': 'image_3', 'occ': 'disp_occ_0',
                       'noc': 'disp_noc_0', 'calib': 'calib_cam_to_cam'}}

    def __init__(self, data_root: str, year: int | None = None, split: str = 'training',
                 disp_type: str = 'occ', **kwargs: Any) -> None:
        if split not in ('training', 'testing'):
            raise ConfigError(f"KittiStereoDataset: split must be 'training' or 'testing', "
                              f'got {split!r}')
        if disp_type not in ('occ', 'noc'):
            raise ConfigError(f"KittiStereoDataset: disp_type must be 'occ' or 'noc', "
                              f'got {disp_type!r}')
        if year is None:
            found = [y for y, f in self._FOLDERS.items()
                     if osp.isdir(osp.join(data_root, split, f['left']))]
            if len(found) != 1:
                raise DataError(f'{osp.join(data_root, split)}: cannot tell the KITTI stereo '
                                'year: expected exactly one of colored_0/ (2012) or image_2/ '
                                '(2015); pass year=')
            year = found[0]
        if year not in self._FOLDERS:
            raise ConfigError(f'KittiStereoDataset: year must be 2012 or 2015, got {year!r}')
        self.year, self.split, self.disp_type = year, split, disp_type
        super().__init__(data_root=data_root, **kwargs)

    def _describe(self) -> str:
        return f'{self.year} {self.split}/{self._FOLDERS[self.year]["left"]}/*_10.png'

    def _scan(self) -> list[dict]:
        folders = self._FOLDERS[self.year]
        root = osp.join(self.data_root, self.split)
        frames = []
        for left in _sorted_glob(osp.join(root, folders['left'], '*_10.png')):
            name = osp.basename(left)
            right = osp.join(root, folders['right'], name)
            disp = noc = None
            if self.split == 'training':
                disp = osp.join(root, folders[self.disp_type], name)
                noc_file = osp.join(root, folders['noc'], name)
                if self.disp_type == 'occ' and osp.isfile(noc_file):
                    noc = noc_file
            calib = osp.join(root, folders['calib'], name.replace('_10.png', '.txt'))
            frames.append(self._frame(name[:-len('.png')], left, right, disp, 'kitti_png', noc,
                                      'kitti_png', calib))
        return frames


@DATASETS.register_module()
class MiddleburyDataset(_StereoFolderDataset):
    """Middlebury: MiddEval3 (``disp0GT.pfm`` + ``mask0nocc.png``) or the 2014 ``-perfect`` scenes.

    Args:
        data_root: the folder holding ``MiddEval3/`` and/or ``2014/`` (e.g. ``data/middlebury``).
        split: ``'trainingF'``, ``'trainingH'``, ``'trainingQ'`` (full, half, quarter
            resolution), ``'testF'``/``'testH'``/``'testQ'`` (no ground truth), or ``'2014'``
            (``2014/<scene>-perfect/``, ``disp0.pfm``, no mask).
        scenes: keep only these scene names (e.g. MiddEval3's ``official_train.txt``).
        right_variants: for ``'2014'``, which right images to pair with ``im0.png``: ``''`` is
            ``im1.png``, ``'E'`` / ``'L'`` the exposure / lighting variants (RAFT-Stereo uses all
            three).
    """

    SPLITS = ('trainingF', 'trainingH', 'trainingQ', 'testF', 'testH', 'testQ', '2014')

    def __init__(self, data_root: str, split: str = 'trainingH',
                 scenes: Sequence[str] | None = None, right_variants: Sequence[str] = ('',),
                 **kwargs: Any) -> None:
        if split not in self.SPLITS:
            raise ConfigError(f'MiddleburyDataset: split must be one of {list(self.SPLITS)}, '
                              f'got {split!r}')
        bad = [v for v in right_variants if v not in ('', 'E', 'L')]
        if bad or not right_variants:
            raise ConfigError(f"MiddleburyDataset: right_variants must be some of '', 'E', 'L', "
                              f'got {list(right_variants)}')
        self.split, self.right_variants = split, tuple(right_variants)
        self.scenes = None if scenes is None else set(scenes)
        super().__init__(data_root=data_root, **kwargs)

    def _describe(self) -> str:
        where = '2014/*-perfect' if self.split == '2014' else f'MiddEval3/{self.split}/*'
        return f'{where}/im0.png' + (f', scenes {sorted(self.scenes)}' if self.scenes else '')

    def _scan(self) -> list[dict]:
        frames = []
        if self.split == '2014':
            for left in _sorted_glob(osp.join(self.data_root, '2014', '*-perfect', 'im0.png')):
                folder = osp.dirname(left)
                scene = osp.basename(folder)
                if self.scenes is not None and scene[:-len('-perfect')] not in self.scenes:
                    continue
                for variant in self.right_variants:
                    frames.append(self._frame(
                        f'{scene}{"/" + variant if variant else ""}', left,
                        osp.join(folder, f'im1{variant}.png'), osp.join(folder, 'disp0.pfm'),
                        'pfm', calib=osp.join(folder, 'calib.txt')))
            return frames
        training = self.split.startswith('training')
        for left in _sorted_glob(osp.join(self.data_root, 'MiddEval3', self.split, '*', 'im0.png')):
            folder = osp.dirname(left)
            scene = osp.basename(folder)
            if self.scenes is not None and scene not in self.scenes:
                continue
            frames.append(self._frame(
                f'{self.split}/{scene}', left, osp.join(folder, 'im1.png'),
                osp.join(folder, 'disp0GT.pfm') if training else None, 'pfm',
                osp.join(folder, 'mask0nocc.png') if training else None, 'mask_png',
                osp.join(folder, 'calib.txt')))
        return frames


@DATASETS.register_module()
class ETH3DDataset(_StereoFolderDataset):
    """ETH3D low-res two-view: ``two_view_<split>/<scene>/im{0,1}.png`` and ``_gt`` PFMs.

    Args:
        data_root: the folder holding ``two_view_training/``, ``two_view_training_gt/`` and
            ``two_view_test/`` (e.g. ``data/eth3d``).
        split: ``'training'`` (``two_view_training_gt/<scene>/disp0GT.pfm``, ``inf`` = invalid,
            and ``mask0nocc.png`` where present) or ``'test'`` (no ground truth).
    """

    def __init__(self, data_root: str, split: str = 'training', **kwargs: Any) -> None:
        if split not in ('training', 'test'):
            raise ConfigError(f"ETH3DDataset: split must be 'training' or 'test', got {split!r}")
        self.split = split
        super().__init__(data_root=data_root, **kwargs)

    def _describe(self) -> str:
        return f'two_view_{self.split}/*/im0.png'

    def _scan(self) -> list[dict]:
        frames = []
        pattern = osp.join(self.data_root, f'two_view_{self.split}', '*', 'im0.png')
        for left in _sorted_glob(pattern):
            folder = osp.dirname(left)
            scene = osp.basename(folder)
            disp = noc = None
            if self.split == 'training':
                gt = osp.join(self.data_root, 'two_view_training_gt', scene)
                disp = osp.join(gt, 'disp0GT.pfm')
                noc = osp.join(gt, 'mask0nocc.png')
                noc = noc if osp.isfile(noc) else None
            frames.append(self._frame(scene, left, osp.join(folder, 'im1.png'), disp, 'pfm', noc,
                                      'mask_png', osp.join(folder, 'calib.txt')))
        return frames
