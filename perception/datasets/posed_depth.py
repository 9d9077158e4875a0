"""Multi-view (posed image) depth data in the DeMoN layout that UniMatch's depth training reads.

Layout (written by UniMatch's ``dataloader/depth/prepare_demon_{train,test}.py``; file formats in
:mod:`perception.datasets.depth_io`)::

    <data_root>/<split>/<scene>/0000.jpg, 0001.jpg, ...   RGB frames (*.jpg or *.png)
                               /0000.npy, 0001.npy, ...   depth per frame, float32 metres
                               /cam.txt                   3x3 intrinsics (px), one per scene
                               /poses.txt                 one 3x4 pose line per frame

DeMoN's scene folders are named ``<subset>_<split>_<index>`` (``sun3d_train_0.1m_to_0.2m_00012``,
``rgbd_test_00003``, ...); the official loader keeps the scenes whose name contains its ``mode``
(``scene_filter`` here). Its ``poses.txt`` lines are **world-to-camera** ``[R | t]``
(``pose_convention='world_to_camera'``, the default); ``'camera_to_world'`` reads ScanNet-style
camera-to-world poses. With ``depth_format='png_mm'`` the depth of frame ``<stem>`` is read from
``<scene>/depth/<stem>.png`` (16-bit millimetres, ScanNet's encoding) instead of ``<stem>.npy``.

Pairs: ``pairs='official'`` is the official two-view sampling (``sequence_length=2``): every frame
is a reference once, with the previous frame as its source (the first frame takes the second).
``pairs='neighbours'`` uses both neighbours of every frame (twice the pairs). Each pair reaches the
pipeline as a dict:

* ``img_path`` (reference), ``img_src_path`` (source); ``depth_path`` / ``depth_format`` (the
  reference frame's depth, read by ``LoadDepth``).
* ``intrinsics``: 3x3 (nested list, px); ``pose``: 4x4 (nested list) taking reference-camera
  points into the source camera, ``X_src = pose @ X_ref`` (UniMatch's ``pose`` input).
* ``cam_path``, ``pose_path``, ``frame_id`` (``<scene>/<ref stem>_<src stem>``); mmengine sets
  ``sample_idx``.

Errors (:class:`DataError`, naming the file and the field): a root or split folder without scenes,
a scene without ``poses.txt`` or ``cam.txt``, a ``poses.txt`` with another number of rows than
frames or a singular (non-invertible) pose, intrinsics that are not 3x3 or have a focal length
<= 0, and missing depth files. The principal point is checked against the image size when
``LoadPosedPair`` reads the images; pair and depth sizes by ``LoadPosedPair`` / ``LoadDepth``.

Example (synthetic scenes with exact depth and poses; configs get the ``perception`` scope from
the runner, a script sets it as here)::

    from mmengine.registry import DefaultScope
    from perception.datasets.synthetic import write_synthetic_posed_depth
    from perception.registry import DATASETS

    write_synthetic_posed_depth('data/synthetic_demon', num_scenes=4, frames_per_scene=3,
                                height=96, width=128, seed=0)   # 4 x 3 reference frames
    with DefaultScope.overwrite_default_scope('perception'):
        dataset = DATASETS.build(dict(
            type='PosedDepthDataset', data_root='data/synthetic_demon', split='train',
            pipeline=[dict(type='LoadPosedPair'),
                      dict(type='LoadDepth', min_depth=0.5, max_depth=10),
                      dict(type='PackPosedDepthInputs')]))
    packed = dataset[0]  # 'inputs': (2, 3, 96, 128) uint8 [reference, source]
    sample = packed['data_samples']  # .gt_depth, .gt_valid, .metainfo['intrinsics' / 'pose']
"""
from __future__ import annotations

import os.path as osp
from typing import Any, Sequence

from mmengine.dataset import BaseDataset

from ..engine.errors import ConfigError, DataError
from ..registry import DATASETS
from .depth_io import DEPTH_FORMATS, POSE_CONVENTIONS, read_cam_txt, read_poses_txt, relative_pose
from .stereo import _sorted_glob

__all__ = ['PosedDepthDataset', 'official_pair_indices']

_MAX_LISTED = 5
_PAIR_MODES = ('official', 'neighbours')


def official_pair_indices(num_frames: int, mode: str = 'official') -> list[tuple[int, int]]:
    """``(reference, source)`` frame indices of a scene of ``num_frames`` frames.

    ``'official'``: UniMatch's ``DemonDataset`` with ``sequence_length=2``: frame 0 with frame 1,
    every other frame ``i`` with ``i - 1``. ``'neighbours'``: every frame with ``i - 1`` and
    ``i + 1`` where they exist.
    """
    if num_frames < 2:
        return []
    if mode == 'official':
        return [(0, 1)] + [(i, i - 1) for i in range(1, num_frames)]
    if mode == 'neighbours':
        return [(i, j) for i in range(num_frames) for j in (i - 1, i + 1) if 0 <= j < num_frames]
    raise ConfigError(f'pairs must be one of {list(_PAIR_MODES)}, got {mode!r}')


@DATASETS.register_module()
class PosedDepthDataset(BaseDataset):
    """Two-view posed depth pairs from DeMoN-layout scene folders (see the module docstring).

    Args:
        data_root: the folder holding the ``split`` folders (e.g. ``data/demon``).
        split: ``'train'`` or ``'test'`` (DeMoN's two folders), or None: scenes lie directly in
            ``data_root``.
        scene_filter: keep the scenes whose folder name contains this string (the official
            ``mode``: ``'train'``, ``'rgbd_test'``, ``'sun3d_test'``, ``'scenes11_test'``); None
            keeps all.
        pairs: ``'official'`` or ``'neighbours'`` (see :func:`official_pair_indices`).
        depth_format: ``'npy'`` (``<stem>.npy`` beside the image) or ``'png_mm'``
            (``depth/<stem>.png``, 16-bit millimetres).
        pose_convention: ``'world_to_camera'`` (DeMoN, the official layout) or
            ``'camera_to_world'`` (ScanNet-style).
        img_suffixes: the frame file endings.

    Scenes with fewer than two frames are skipped, as the official loader does.
    """

    def __init__(self, data_root: str, split: str | None = 'train',
                 scene_filter: str | None = None, pairs: str = 'official',
                 depth_format: str = 'npy', pose_convention: str = 'world_to_camera',
                 img_suffixes: Sequence[str] = ('.jpg', '.png'), pipeline: Sequence[Any] = (),
                 test_mode: bool = False, **kwargs: Any) -> None:
        if not data_root:
            raise ConfigError('PosedDepthDataset: data_root is required')
        if pairs not in _PAIR_MODES:
            raise ConfigError(f'PosedDepthDataset: pairs must be one of {list(_PAIR_MODES)}, got '
                              f'{pairs!r}')
        if depth_format not in DEPTH_FORMATS:
            raise ConfigError(f'PosedDepthDataset: depth_format must be one of '
                              f'{list(DEPTH_FORMATS)}, got {depth_format!r}')
        if pose_convention not in POSE_CONVENTIONS:
            raise ConfigError(f'PosedDepthDataset: pose_convention must be one of '
                              f'{list(POSE_CONVENTIONS)}, got {pose_convention!r}')
        self.split, self.scene_filter, self.pairs = split, scene_filter, pairs
        self.depth_format, self.pose_convention = depth_format, pose_convention
        self.img_suffixes = tuple(s.lower() for s in img_suffixes)
        super().__init__(data_root=data_root, ann_file='', data_prefix={},
                         pipeline=list(pipeline), test_mode=test_mode, **kwargs)

    def _scene_root(self) -> str:
        return self.data_root if self.split is None else osp.join(self.data_root, self.split)

    def _images(self, scene_dir: str) -> list[str]:
        return sorted(p for p in _sorted_glob(osp.join(scene_dir, '*'))
                      if osp.splitext(p)[1].lower() in self.img_suffixes and osp.isfile(p))

    def _depth_path(self, scene_dir: str, stem: str) -> str:
        if self.depth_format == 'npy':
            return osp.join(scene_dir, f'{stem}.npy')
        return osp.join(scene_dir, 'depth', f'{stem}.png')

    def _scan_scene(self, scene_dir: str, images: list[str]) -> list[dict]:
        scene = osp.basename(scene_dir)
        stems = [osp.splitext(osp.basename(p))[0] for p in images]
        cam_path = osp.join(scene_dir, 'cam.txt')
        pose_path = osp.join(scene_dir, 'poses.txt')
        for path, what in ((pose_path, 'pose'), (cam_path, 'intrinsics')):
            if not osp.isfile(path):
                raise DataError(f'{path}: {what} file not found (scene {scene} has '
                                f'{len(images)} frames; the layout needs cam.txt and poses.txt '
                                'in every scene folder)')
        intrinsics = read_cam_txt(cam_path).tolist()
        poses = read_poses_txt(pose_path, num_frames=len(images),
                               frame_names=[osp.basename(p) for p in images])
        frames = []
        for ref, src in official_pair_indices(len(images), self.pairs):
            pose = relative_pose(poses[ref], poses[src], self.pose_convention)
            frames.append({
                'frame_id': f'{scene}/{stems[ref]}_{stems[src]}',
                'img_path': images[ref], 'img_src_path': images[src],
                'depth_path': self._depth_path(scene_dir, stems[ref]),
                'depth_format': self.depth_format,
                'intrinsics': intrinsics, 'pose': pose.tolist(),
                'cam_path': cam_path, 'pose_path': pose_path})
        return frames

    def load_data_list(self) -> list[dict]:
        root = self._scene_root()
        if not osp.isdir(root):
            raise DataError(f'{root}: PosedDepthDataset scene folder not found (data_root '
                            f'{self.data_root}, split {self.split!r})')
        frames = []
        for scene_dir in _sorted_glob(osp.join(root, '*')):
            name = osp.basename(scene_dir)
            if not osp.isdir(scene_dir) or (self.scene_filter and self.scene_filter not in name):
                continue
            images = self._images(scene_dir)
            if len(images) >= 2:
                frames += self._scan_scene(scene_dir, images)
        if not frames:
            where = f' containing {self.scene_filter!r}' if self.scene_filter else ''
            raise DataError(f'{root}: no scene folders{where} with two or more frames '
                            f'({"/".join(self.img_suffixes)}); see '
                            'perception/datasets/posed_depth.py for the layout')
        missing = sorted({f['depth_path'] for f in frames if not osp.isfile(f['depth_path'])})
        if missing:
            listed = '; '.join(missing[:_MAX_LISTED])
            more = f' (and {len(missing) - _MAX_LISTED} more)' if len(missing) > _MAX_LISTED else ''
            raise DataError(f'{root}: {len(missing)} missing depth file(s) of reference frames '
                            f'(depth_format {self.depth_format!r}): {listed}{more}')
        return frames
