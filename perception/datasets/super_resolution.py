"""Super-resolution datasets: generated pairs, and benchmark folders (``HR`` + ``LR_bicubic/X{s}``).

Each item is ``{'inputs': LR (C, h, w) float32 in [0, 1], 'data_samples': BaseDataElement(gt_img=HR
(C, h*s, w*s), metainfo={'scale', 'name'})}``.
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from mmengine.structures import BaseDataElement
from torch.utils.data import Dataset

from ..engine.errors import DataError
from ..registry import DATASETS
from .synthetic import render_texture_image

IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff')


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """``(H, W, 3)`` uint8 RGB -> ``(3, H, W)`` float32 in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float() / 255.0


def bicubic_downscale(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """Antialiased bicubic downscale by ``scale``, quantised to 8 bits like a saved LR image.

    ``(C, H, W)`` -> ``(C, H / scale, W / scale)``; ``H`` and ``W`` must be multiples of ``scale``.
    """
    if hr.shape[-1] % scale or hr.shape[-2] % scale:
        raise ValueError(f'HR size {tuple(hr.shape[-2:])} is not a multiple of scale {scale}')
    lr = F.interpolate(hr[None], scale_factor=1.0 / scale, mode='bicubic', antialias=True,
                       align_corners=False)[0]
    return (lr.clamp(0, 1) * 255).round() / 255


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as ``(H, W, 3)`` uint8 RGB."""
    image = cv2.imread(os.fspath(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DataError(f'{path}: not a readable image')
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


@DATASETS.register_module()
class SyntheticSRDataset(Dataset):
    """Generated HR images and their bicubic-downscaled LR versions.

    Item ``i`` is a pure function of ``(seed, i)``, so train and validation sets made with
    different seeds never share an image and every run sees the same data.

    Args:
        num_images: length of the dataset.
        hr_size: HR side length; a multiple of ``scale``.
        scale: downscaling factor.
        seed: base seed.
    """

    def __init__(self, num_images: int = 800, hr_size: int = 96, scale: int = 3,
                 seed: int = 0) -> None:
        if hr_size % scale:
            raise ValueError(f'hr_size {hr_size} must be a multiple of scale {scale}')
        self.num_images = num_images
        self.hr_size = hr_size
        self.scale = scale
        self.seed = seed
        self.metainfo = dict(task='super_resolution', scale=scale)

    def __len__(self) -> int:
        return self.num_images

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, index])
        hr = to_tensor(render_texture_image(rng, self.hr_size, self.hr_size))
        sample = BaseDataElement(gt_img=hr, metainfo=dict(scale=self.scale,
                                                          name=f'synthetic_{index:05d}'))
        return {'inputs': bicubic_downscale(hr, self.scale), 'data_samples': sample}


@DATASETS.register_module()
class PairedImageDataset(Dataset):
    """A benchmark folder: ``HR/<name>.png`` beside ``LR_bicubic/X{s}/<name>x{s}.png``.

    HR images whose size is not a multiple of ``scale`` are cropped at the bottom/right to the
    LR size times ``scale``, as the benchmark protocol does.
    """

    def __init__(self, data_root: str, scale: int, hr_dir: str = 'HR',
                 lr_dir: str = 'LR_bicubic/X{scale}', lr_suffix: str = 'x{scale}') -> None:
        self.scale = scale
        root = Path(data_root)
        hr_root = root / hr_dir
        lr_root = root / lr_dir.format(scale=scale)
        for folder in (hr_root, lr_root):
            if not folder.is_dir():
                raise DataError(f'{folder}: folder not found (expected HR and LR_bicubic/X{scale} '
                                f'under {root})')
        self.pairs: list[tuple[Path, Path]] = []
        for hr_path in sorted(p for p in hr_root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            lr_path = lr_root / f'{hr_path.stem}{lr_suffix.format(scale=scale)}{hr_path.suffix}'
            if not lr_path.is_file():
                raise DataError(f'{lr_path}: LR image for {hr_path.name} not found')
            self.pairs.append((hr_path, lr_path))
        if not self.pairs:
            raise DataError(f'{hr_root}: no images ({", ".join(IMAGE_SUFFIXES)})')
        self.metainfo = dict(task='super_resolution', scale=scale)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        hr_path, lr_path = self.pairs[index]
        lr = read_rgb(lr_path)
        hr = read_rgb(hr_path)
        h, w = lr.shape[0] * self.scale, lr.shape[1] * self.scale
        if hr.shape[0] < h or hr.shape[1] < w:
            raise DataError(f'{hr_path}: HR {hr.shape[1]}x{hr.shape[0]} is smaller than LR '
                            f'{lr.shape[1]}x{lr.shape[0]} times scale {self.scale}')
        sample = BaseDataElement(gt_img=to_tensor(hr[:h, :w]),
                                 metainfo=dict(scale=self.scale, name=hr_path.stem))
        return {'inputs': to_tensor(lr), 'data_samples': sample}
