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
from .transforms.imresize import imresize

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


def augment_pair(lr: np.ndarray, hr: np.ndarray, hflip: bool, vflip: bool,
                 transpose: bool) -> tuple[np.ndarray, np.ndarray]:
    """BasicSR's ``augment``: horizontal flip, vertical flip, then transpose, on both images.

    ``(h, w, C)`` and ``(H, W, C)`` arrays; the three flags together give the 8 dihedral
    transforms (transpose after a flip is a 90 degree rotation).
    """
    def apply(image: np.ndarray) -> np.ndarray:
        if hflip:
            image = image[:, ::-1]
        if vflip:
            image = image[::-1]
        if transpose:
            image = image.transpose(1, 0, 2)
        return np.ascontiguousarray(image)

    return apply(lr), apply(hr)


def matlab_downscale_crop(hr: np.ndarray, scale: int, top: int, left: int, height: int,
                          width: int, margin: int = 4) -> np.ndarray:
    """An LR window of ``imresize(hr, 1 / scale)`` computed from an HR crop, not the whole image.

    Args:
        hr: ``(H, W, C)`` uint8 with ``H`` and ``W`` multiples of ``scale``.
        scale: integer downscaling factor.
        top, left, height, width: the LR window, in LR pixels.
        margin: LR pixels of HR context kept around the window. The MATLAB kernel reaches 2 LR
            pixels to each side, so with ``margin >= 3`` every window pixel sees the same HR
            samples, weights and (at the image border) mirror padding as in the full-image
            resize: the result is bit-identical to cropping ``imresize(hr, 1 / scale)``.

    Returns:
        ``(height, width, C)`` uint8.
    """
    lr_h, lr_w = hr.shape[0] // scale, hr.shape[1] // scale
    if not (0 <= top and top + height <= lr_h and 0 <= left and left + width <= lr_w):
        raise ValueError(f'LR window {top}:{top + height}, {left}:{left + width} outside the '
                         f'{lr_h}x{lr_w} LR image')
    y0, x0 = max(0, top - margin), max(0, left - margin)
    y1, x1 = min(lr_h, top + height + margin), min(lr_w, left + width + margin)
    # Crops aligned to the LR grid keep every sample's sub-pixel phase, hence its weights.
    lr = imresize(hr[y0 * scale:y1 * scale, x0 * scale:x1 * scale], output_shape=(y1 - y0, x1 - x0))
    return lr[top - y0:top - y0 + height, left - x0:left - x0 + width]


def _find_lr(lr_root: Path, hr_path: Path, scale: int) -> Path | None:
    """``<stem>.<ext>`` or ``<stem>x<scale>.<ext>`` in ``lr_root`` (HR extension tried first)."""
    suffixes = (hr_path.suffix, *(s for s in IMAGE_SUFFIXES if s != hr_path.suffix.lower()))
    for name in (hr_path.stem, f'{hr_path.stem}x{scale}'):
        for suffix in suffixes:
            path = lr_root / f'{name}{suffix}'
            if path.is_file():
                return path
    return None


@DATASETS.register_module()
class SRTrainDataset(Dataset):
    """Training pairs from an HR folder (DIV2K / DF2K / sub-images): random aligned crops.

    LR images come from ``lr_dir`` (``<stem>.<ext>`` or ``<stem>x<scale>.<ext>``, as DIV2K's
    ``LR_bicubic/X{s}`` and the sub-images of ``tools/create_data.py div2k``) or, with
    ``lr_dir=None``, are made on the fly with MATLAB bicubic ``imresize`` of the HR image,
    bit-identical to MATLAB-made LR files (only a window around the crop is resized). HR images
    whose size is not a multiple of ``scale`` are cropped at the bottom/right first (``modcrop``).

    Args:
        hr_dir: folder of HR images.
        lr_dir: folder of LR images, or ``None`` for on-the-fly MATLAB bicubic.
        scale: integer upscaling factor.
        patch_size: LR patch side; the HR patch is ``patch_size * scale``. ``None`` returns
            whole images (for validation).
        use_flip: random horizontal flip (BasicSR's ``use_hflip``).
        use_rot: random vertical flip and transpose (with the flip: all 8 rotations/flips).
        repeat: the folder is seen ``repeat`` times per epoch (many crops per image).

    Item: ``{'inputs': LR (3, p, p) float32 in [0, 1], 'data_samples': BaseDataElement(gt_img=HR
    (3, p*s, p*s), metainfo={'scale', 'name'})}``. Randomness comes from NumPy's global generator,
    which mmengine seeds per dataloader worker.

    Raises:
        DataError: missing folders, no images, an HR image without its LR file, a pair whose
            sizes do not fit ``scale``, or an image smaller than the patch.
    """

    def __init__(self, hr_dir: str, lr_dir: str | None = None, scale: int = 4,
                 patch_size: int | None = 48, use_flip: bool = True, use_rot: bool = True,
                 repeat: int = 1) -> None:
        if scale < 1 or (patch_size is not None and patch_size < 1) or repeat < 1:
            raise ValueError(f'SRTrainDataset: scale ({scale}), patch_size ({patch_size}) and '
                             f'repeat ({repeat}) must be positive')
        self.scale, self.patch_size = scale, patch_size
        self.use_flip, self.use_rot, self.repeat = use_flip, use_rot, repeat
        hr_root = Path(hr_dir)
        if not hr_root.is_dir():
            raise DataError(f'{hr_root}: HR folder not found')
        hr_paths = sorted(p for p in hr_root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not hr_paths:
            raise DataError(f'{hr_root}: no images ({", ".join(IMAGE_SUFFIXES)})')
        self.pairs: list[tuple[Path, Path | None]] = []
        lr_root = None if lr_dir is None else Path(lr_dir)
        if lr_root is not None and not lr_root.is_dir():
            raise DataError(f'{lr_root}: LR folder not found (give lr_dir=None to make LR images '
                            'with MATLAB bicubic on the fly)')
        for hr_path in hr_paths:  # every pair is checked here, not in the middle of training
            lr_path = None if lr_root is None else _find_lr(lr_root, hr_path, scale)
            if lr_root is not None and lr_path is None:
                raise DataError(f'{lr_root / hr_path.name}: LR image for {hr_path} not found '
                                f'(also tried {hr_path.stem}x{scale}.*)')
            self.pairs.append((hr_path, lr_path))
        self.metainfo = dict(task='super_resolution', scale=scale)

    def __len__(self) -> int:
        return len(self.pairs) * self.repeat

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray, str]:
        """LR ``(h, w, 3)`` and HR ``(h*s, w*s, 3)`` uint8 of pair ``index``, patch-cropped."""
        hr_path, lr_path = self.pairs[index]
        hr = read_rgb(hr_path)
        s, p = self.scale, self.patch_size
        if lr_path is None:
            h, w = hr.shape[0] // s, hr.shape[1] // s
            hr = hr[:h * s, :w * s]
            if h < 1 or w < 1:
                raise DataError(f'{hr_path}: HR {hr.shape[1]}x{hr.shape[0]} is smaller than the '
                                f'scale {s}')
        else:
            lr = read_rgb(lr_path)
            h, w = lr.shape[:2]
            if not (0 <= hr.shape[0] - h * s < s and 0 <= hr.shape[1] - w * s < s):
                raise DataError(f'{lr_path}: LR {w}x{h} times scale {s} does not fit HR '
                                f'{hr_path} ({hr.shape[1]}x{hr.shape[0]}, width x height)')
            hr = hr[:h * s, :w * s]
        if p is None:
            top, left, ph, pw = 0, 0, h, w
        else:
            if h < p or w < p:
                raise DataError(f'{hr_path}: LR size {w}x{h} is smaller than patch_size {p}')
            top, left = np.random.randint(0, h - p + 1), np.random.randint(0, w - p + 1)
            ph = pw = p
        hr_crop = hr[top * s:(top + ph) * s, left * s:(left + pw) * s]
        if lr_path is None:
            lr_crop = matlab_downscale_crop(hr, s, top, left, ph, pw)
        else:
            lr_crop = lr[top:top + ph, left:left + pw]
        return lr_crop, hr_crop, hr_path.stem

    def __getitem__(self, index: int) -> dict:
        lr, hr, name = self._load(index % len(self.pairs))
        if self.patch_size is not None and (self.use_flip or self.use_rot):
            flips = np.random.rand(3) < 0.5
            lr, hr = augment_pair(lr, hr, self.use_flip and flips[0], self.use_rot and flips[1],
                                  self.use_rot and flips[2])
        sample = BaseDataElement(gt_img=to_tensor(hr), metainfo=dict(scale=self.scale, name=name))
        return {'inputs': to_tensor(lr), 'data_samples': sample}
