"""Semantic segmentation datasets read straight from their official folders (``data/README.md``).

Each class scans its split with sorted globbing (the same order on every machine) and hands each
image to the pipeline as a dict:

* ``img_path``: the image; ``seg_map_path``: its label PNG (single channel, one class index per
  pixel, ``255`` = ignore after ``reduce_zero_label``);
* ``reduce_zero_label``: whether ``LoadSegAnnotations`` must shift labels down by one (ADE20K's
  0 is "other", not a class); ``seg_fields``: ``[]`` (as mmsegmentation);
* ``frame_id``: the image's name without its suffix (mmengine sets ``sample_idx``).

A root without any image, and images whose label file is missing, raise :class:`DataError` naming
the folder or the files.
"""
from __future__ import annotations

import glob
import os.path as osp
from typing import Any, Sequence

from mmengine.dataset import BaseDataset

from ..engine.errors import ConfigError, DataError
from ..registry import DATASETS

__all__ = ['ADE20K_CLASSES', 'ADE20K_PALETTE', 'ADE20KDataset', 'CITYSCAPES_CLASSES',
           'CITYSCAPES_PALETTE', 'CityscapesDataset']

_MAX_LISTED = 5

# The 19 evaluated Cityscapes classes in trainId order, with the official colours (RGB).
CITYSCAPES_CLASSES = ('road', 'sidewalk', 'building', 'wall', 'fence', 'pole', 'traffic light',
                      'traffic sign', 'vegetation', 'terrain', 'sky', 'person', 'rider', 'car',
                      'truck', 'bus', 'train', 'motorcycle', 'bicycle')
CITYSCAPES_PALETTE = [[128, 64, 128], [244, 35, 232], [70, 70, 70], [102, 102, 156],
                      [190, 153, 153], [153, 153, 153], [250, 170, 30], [220, 220, 0],
                      [107, 142, 35], [152, 251, 152], [70, 130, 180], [220, 20, 60],
                      [255, 0, 0], [0, 0, 142], [0, 0, 70], [0, 60, 100], [0, 80, 100],
                      [0, 0, 230], [119, 11, 32]]

# ADE20K (SceneParsing150) class names in label order 1..150 (label - 1 after reduce_zero_label),
# spelled as mmsegmentation spells them (including the trailing space of 'bed ').
ADE20K_CLASSES = (
    'wall', 'building', 'sky', 'floor', 'tree', 'ceiling', 'road', 'bed ', 'windowpane', 'grass',
    'cabinet', 'sidewalk', 'person', 'earth', 'door', 'table', 'mountain', 'plant', 'curtain',
    'chair', 'car', 'water', 'painting', 'sofa', 'shelf', 'house', 'sea', 'mirror', 'rug', 'field',
    'armchair', 'seat', 'fence', 'desk', 'rock', 'wardrobe', 'lamp', 'bathtub', 'railing',
    'cushion', 'base', 'box', 'column', 'signboard', 'chest of drawers', 'counter', 'sand', 'sink',
    'skyscraper', 'fireplace', 'refrigerator', 'grandstand', 'path', 'stairs', 'runway', 'case',
    'pool table', 'pillow', 'screen door', 'stairway', 'river', 'bridge', 'bookcase', 'blind',
    'coffee table', 'toilet', 'flower', 'book', 'hill', 'bench', 'countertop', 'stove', 'palm',
    'kitchen island', 'computer', 'swivel chair', 'boat', 'bar', 'arcade machine', 'hovel', 'bus',
    'towel', 'light', 'truck', 'tower', 'chandelier', 'awning', 'streetlight', 'booth',
    'television receiver', 'airplane', 'dirt track', 'apparel', 'pole', 'land', 'bannister',
    'escalator', 'ottoman', 'bottle', 'buffet', 'poster', 'stage', 'van', 'ship', 'fountain',
    'conveyer belt', 'canopy', 'washer', 'plaything', 'swimming pool', 'stool', 'barrel', 'basket',
    'waterfall', 'tent', 'bag', 'minibike', 'cradle', 'oven', 'ball', 'food', 'step', 'tank',
    'trade name', 'microwave', 'pot', 'animal', 'bicycle', 'lake', 'dishwasher', 'screen',
    'blanket', 'sculpture', 'hood', 'sconce', 'vase', 'traffic light', 'tray', 'ashcan', 'fan',
    'pier', 'crt screen', 'plate', 'monitor', 'bulletin board', 'shower', 'radiator', 'glass',
    'clock', 'flag')
ADE20K_PALETTE = [
    [120, 120, 120], [180, 120, 120], [6, 230, 230], [80, 50, 50], [4, 200, 3], [120, 120, 80],
    [140, 140, 140], [204, 5, 255], [230, 230, 230], [4, 250, 7], [224, 5, 255], [235, 255, 7],
    [150, 5, 61], [120, 120, 70], [8, 255, 51], [255, 6, 82], [143, 255, 140], [204, 255, 4],
    [255, 51, 7], [204, 70, 3], [0, 102, 200], [61, 230, 250], [255, 6, 51], [11, 102, 255],
    [255, 7, 71], [255, 9, 224], [9, 7, 230], [220, 220, 220], [255, 9, 92], [112, 9, 255],
    [8, 255, 214], [7, 255, 224], [255, 184, 6], [10, 255, 71], [255, 41, 10], [7, 255, 255],
    [224, 255, 8], [102, 8, 255], [255, 61, 6], [255, 194, 7], [255, 122, 8], [0, 255, 20],
    [255, 8, 41], [255, 5, 153], [6, 51, 255], [235, 12, 255], [160, 150, 20], [0, 163, 255],
    [140, 140, 140], [250, 10, 15], [20, 255, 0], [31, 255, 0], [255, 31, 0], [255, 224, 0],
    [153, 255, 0], [0, 0, 255], [255, 71, 0], [0, 235, 255], [0, 173, 255], [31, 0, 255],
    [11, 200, 200], [255, 82, 0], [0, 255, 245], [0, 61, 255], [0, 255, 112], [0, 255, 133],
    [255, 0, 0], [255, 163, 0], [255, 102, 0], [194, 255, 0], [0, 143, 255], [51, 255, 0],
    [0, 82, 255], [0, 255, 41], [0, 255, 173], [10, 0, 255], [173, 255, 0], [0, 255, 153],
    [255, 92, 0], [255, 0, 255], [255, 0, 245], [255, 0, 102], [255, 173, 0], [255, 0, 20],
    [255, 184, 184], [0, 31, 255], [0, 255, 61], [0, 71, 255], [255, 0, 204], [0, 255, 194],
    [0, 255, 82], [0, 10, 255], [0, 112, 255], [51, 0, 255], [0, 194, 255], [0, 122, 255],
    [0, 255, 163], [255, 153, 0], [0, 255, 10], [255, 112, 0], [143, 255, 0], [82, 0, 255],
    [163, 255, 0], [255, 235, 0], [8, 184, 170], [133, 0, 255], [0, 255, 92], [184, 0, 255],
    [255, 0, 31], [0, 184, 255], [0, 214, 255], [255, 0, 112], [92, 255, 0], [0, 224, 255],
    [112, 224, 255], [70, 184, 160], [163, 0, 255], [153, 0, 255], [71, 255, 0], [255, 0, 163],
    [255, 204, 0], [255, 0, 143], [0, 255, 235], [133, 255, 0], [255, 0, 235], [245, 0, 255],
    [255, 0, 122], [255, 245, 0], [10, 190, 212], [214, 255, 0], [0, 204, 255], [20, 0, 255],
    [255, 255, 0], [0, 153, 255], [0, 41, 255], [0, 255, 204], [41, 0, 255], [41, 255, 0],
    [173, 0, 255], [0, 245, 255], [71, 0, 255], [122, 0, 255], [0, 255, 184], [0, 92, 255],
    [184, 255, 0], [0, 133, 255], [255, 214, 0], [25, 194, 194], [102, 255, 0], [92, 0, 255]]


class _SegFolderDataset(BaseDataset):
    """Pairs images with label maps by name instead of reading an annotation file.

    Subclasses set ``img_dir`` / ``seg_dir`` (below ``data_root``), ``img_glob`` (below
    ``img_dir``) and the two suffixes; the label of ``img_dir/<rel><img_suffix>`` is
    ``seg_dir/<rel><seg_map_suffix>``.
    """

    img_suffix = ''
    seg_map_suffix = ''
    img_glob = ''
    reduce_zero_label = False

    def __init__(self, data_root: str, img_dir: str, seg_dir: str,
                 pipeline: Sequence[Any] = (), test_mode: bool = False, **kwargs: Any) -> None:
        if not data_root:
            raise ConfigError(f'{type(self).__name__}: data_root is required')
        self.img_dir, self.seg_dir = img_dir, seg_dir
        super().__init__(data_root=data_root, ann_file='', data_prefix={},
                         pipeline=list(pipeline), test_mode=test_mode, **kwargs)

    def load_data_list(self) -> list[dict]:
        img_root = osp.join(self.data_root, self.img_dir)
        seg_root = osp.join(self.data_root, self.seg_dir)
        if not osp.isdir(img_root):
            raise DataError(f'{img_root}: {type(self).__name__} image folder not found; see '
                            'data/README.md for the layout')
        images = sorted(glob.glob(osp.join(img_root, self.img_glob)))
        if not images:
            raise DataError(f'{img_root}: no images matching {self.img_glob!r} for '
                            f'{type(self).__name__}; see data/README.md for the layout')
        frames, missing = [], []
        for img in images:
            rel = osp.relpath(img, img_root)[:-len(self.img_suffix)]
            seg = osp.join(seg_root, rel + self.seg_map_suffix)
            if not osp.isfile(seg):
                missing.append(seg)
            frames.append({'img_path': img, 'seg_map_path': seg, 'frame_id': osp.basename(rel),
                           'reduce_zero_label': self.reduce_zero_label, 'seg_fields': []})
        if missing:
            listed = '; '.join(missing[:_MAX_LISTED])
            more = f' (and {len(missing) - _MAX_LISTED} more)' if len(missing) > _MAX_LISTED else ''
            raise DataError(f'{seg_root}: {len(missing)} of {len(images)} images have no label '
                            f'file: {listed}{more}{self._missing_hint()}')
        return frames

    def _missing_hint(self) -> str:
        return ''


@DATASETS.register_module()
class CityscapesDataset(_SegFolderDataset):
    """Cityscapes fine annotations: 19 classes by trainId, ``255`` = ignore.

    Args:
        data_root: the folder holding ``leftImg8bit/`` and ``gtFine/`` (``data/cityscapes``).
        split: ``'train'``, ``'val'`` or ``'test'``.

    Pairs ``leftImg8bit/{split}/<city>/<name>_leftImg8bit.png`` with
    ``gtFine/{split}/<city>/<name>_gtFine_labelTrainIds.png`` (made by
    ``tools/create_data.py cityscapes``).
    """

    METAINFO = {'classes': CITYSCAPES_CLASSES, 'palette': CITYSCAPES_PALETTE}
    img_suffix = '_leftImg8bit.png'
    seg_map_suffix = '_gtFine_labelTrainIds.png'
    img_glob = '*/*_leftImg8bit.png'

    def __init__(self, data_root: str, split: str = 'train', **kwargs: Any) -> None:
        if split not in ('train', 'val', 'test'):
            raise ConfigError(f"CityscapesDataset: split must be 'train', 'val' or 'test', "
                              f'got {split!r}')
        self.split = split
        super().__init__(data_root, osp.join('leftImg8bit', split), osp.join('gtFine', split),
                         **kwargs)

    def _missing_hint(self) -> str:
        return (f'; make them with `python tools/create_data.py cityscapes --root-path '
                f'{self.data_root}`')


@DATASETS.register_module()
class ADE20KDataset(_SegFolderDataset):
    """ADE20K (MIT Scene Parsing, ``ADEChallengeData2016``): 150 classes, ``reduce_zero_label``.

    Args:
        data_root: the ``ADEChallengeData2016`` folder.
        split: ``'training'`` or ``'validation'``.

    Pairs ``images/{split}/<name>.jpg`` with ``annotations/{split}/<name>.png``. Label 0 ("other")
    becomes 255 and labels 1..150 become 0..149 when ``LoadSegAnnotations`` reads them.
    """

    METAINFO = {'classes': ADE20K_CLASSES, 'palette': ADE20K_PALETTE}
    img_suffix = '.jpg'
    seg_map_suffix = '.png'
    img_glob = '*.jpg'
    reduce_zero_label = True

    def __init__(self, data_root: str, split: str = 'training', **kwargs: Any) -> None:
        if split not in ('training', 'validation'):
            raise ConfigError(f"ADE20KDataset: split must be 'training' or 'validation', "
                              f'got {split!r}')
        self.split = split
        super().__init__(data_root, osp.join('images', split), osp.join('annotations', split),
                         **kwargs)
