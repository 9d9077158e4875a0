"""DIV2K: cut the 2K training images into overlapping sub-images for fast loading.

BasicSR's ``extract_subimages`` protocol: HR sub-images of ``crop`` (480) pixels every ``step``
(240) pixels along each axis; where the remainder after the last regular position exceeds
``thresh`` (48) pixels, one more sub-image is taken flush with the far edge, otherwise the
remainder is dropped. Sub-image ``k`` (1-based, row-major) of ``0001.png`` is ``0001_s{k:03d}.png``.
LR sub-images cover exactly the same area: the window ``crop / s`` at ``position / s`` of
``DIV2K_train_LR_bicubic/X{s}/0001x{s}.png``, or, where that folder is absent, the same window of
a MATLAB-bicubic downscale of the HR image (computed from a neighbourhood of the sub-image, and
bit-identical to cropping MATLAB-made LR files).

Input layout (``--root``)::

    DIV2K_train_HR/0001.png ...
    DIV2K_train_LR_bicubic/X2/0001x2.png ...   (optional, per scale)

Output layout (``--out``), the folders BasicSR's DIV2K configs read::

    DIV2K_train_HR_sub/0001_s001.png ...
    DIV2K_train_LR_bicubic/X2_sub/0001_s001.png ...

Run through ``python tools/create_data.py div2k --root data/DIV2K --out data/DIV2K``.
"""
from __future__ import annotations

import math
import os
import time
from functools import partial
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from mmengine.logging import print_log
from mmengine.utils import track_parallel_progress, track_progress

from ...engine.errors import DataError
from ..super_resolution import IMAGE_SUFFIXES, matlab_downscale_crop
from .io import atomic_write_bytes

__all__ = ['create_div2k_subimages', 'extract_subimages', 'subimage_starts']

HR_DIR = 'DIV2K_train_HR'
LR_DIR = 'DIV2K_train_LR_bicubic/X{scale}'
HR_OUT = 'DIV2K_train_HR_sub'
LR_OUT = 'DIV2K_train_LR_bicubic/X{scale}_sub'
PNG_COMPRESSION = 3  # BasicSR's setting: a fair trade of file size against decoding time


def subimage_starts(length: int, crop: int, step: int, thresh: int) -> list[int]:
    """Start offsets of sub-images along one axis (BasicSR's ``h_space`` / ``w_space``).

    Regular offsets ``0, step, ...`` while a crop fits, plus ``length - crop`` when more than
    ``thresh`` pixels would otherwise be left over. Raises ``ValueError`` if ``length < crop``.
    """
    if length < crop:
        raise ValueError(f'axis of {length} px is shorter than the crop {crop}')
    starts = list(range(0, length - crop + 1, step))
    if length - (starts[-1] + crop) > thresh:
        starts.append(length - crop)
    return starts


def _read(path: Path) -> np.ndarray:
    image = cv2.imread(os.fspath(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise DataError(f'{path}: not a readable image')
    return image


def _write_png(path: Path, image: np.ndarray) -> None:
    ok, encoded = cv2.imencode('.png', np.ascontiguousarray(image),
                               [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION])
    if not ok:
        raise DataError(f'{path}: PNG encoding failed')
    atomic_write_bytes(path, encoded.tobytes(), durable=False)


def extract_subimages(hr_path: str | os.PathLike, out_dir: str | os.PathLike,
                      lr_paths: dict[int, Path | None], crop: int = 480, step: int = 240,
                      thresh: int = 48) -> int:
    """Write the HR and LR sub-images of one image; returns how many sub-images it has.

    Args:
        hr_path: the HR image (``H x W``).
        out_dir: the output root (``DIV2K_train_HR_sub`` etc. below it).
        lr_paths: scale -> its LR image (``H/s x W/s``), or ``None`` to downscale the HR image
            with MATLAB bicubic.
        crop, step, thresh: in HR pixels; multiples of every scale.

    Raises:
        DataError: unreadable images, an image smaller than ``crop``, or an LR image whose size
            times the scale does not match the HR size (up to the HR remainder ``< s``).
    """
    hr_path, out_dir = Path(hr_path), Path(out_dir)
    full = _read(hr_path)
    height, width = full.shape[:2]
    lrs = {}
    for scale, lr_path in lr_paths.items():
        if lr_path is not None:
            lr = _read(lr_path)
            lh, lw = lr.shape[:2]
            if not (0 <= height - lh * scale < scale and 0 <= width - lw * scale < scale):
                raise DataError(f'{lr_path}: LR {lw}x{lh} times scale {scale} does not fit HR '
                                f'{hr_path} ({width}x{height}, width x height)')
            lrs[scale] = lr
    # Sub-image offsets must be whole LR pixels at every scale: drop the HR rows/columns past
    # the last multiple of all scales (none for DIV2K, whose sizes are multiples of 12).
    multiple = math.lcm(*lr_paths) if lr_paths else 1
    hr = full[:height // multiple * multiple, :width // multiple * multiple]
    try:
        ys = subimage_starts(hr.shape[0], crop, step, thresh)
        xs = subimage_starts(hr.shape[1], crop, step, thresh)
    except ValueError as exc:
        raise DataError(f'{hr_path}: image {width}x{height} is too small: {exc}') from None
    index = 0
    for y in ys:
        for x in xs:
            index += 1
            name = f'{hr_path.stem}_s{index:03d}.png'
            _write_png(out_dir / HR_OUT / name, hr[y:y + crop, x:x + crop])
            for scale in lr_paths:
                top, left, size = y // scale, x // scale, crop // scale
                if scale in lrs:
                    lr_sub = lrs[scale][top:top + size, left:left + size]
                else:
                    # The LR image MATLAB would make of the whole (mod-cropped) HR image.
                    base = full[:height // scale * scale, :width // scale * scale]
                    lr_sub = matlab_downscale_crop(base, scale, top, left, size, size)
                _write_png(out_dir / LR_OUT.format(scale=scale) / name, lr_sub)
    return index


def _job(item: tuple[Path, dict[int, Path | None]], out_dir: Path, crop: int, step: int,
         thresh: int) -> int:
    return extract_subimages(item[0], out_dir, item[1], crop, step, thresh)


def create_div2k_subimages(root: str | os.PathLike, out_dir: str | os.PathLike, crop: int = 480,
                           step: int = 240, thresh: int = 48, scales: Sequence[int] = (2, 3, 4),
                           workers: int = 4, force: bool = False) -> dict[str, int]:
    """Cut every ``root/DIV2K_train_HR`` image (and its LR versions) into sub-images.

    Args:
        root: DIV2K root holding ``DIV2K_train_HR/`` and optionally
            ``DIV2K_train_LR_bicubic/X{s}/``; a scale whose LR folder is absent is made with
            MATLAB bicubic from the HR image.
        out_dir: output root (may be ``root``).
        crop, step, thresh: sub-image side, stride and the smallest remainder that earns a
            sub-image flush with the far edge, in HR pixels (multiples of every scale).
        scales: LR scales to cut; empty for HR only.
        workers: processes (1 = in this process).
        force: write into output folders that already hold sub-images (their ``*_s*.png`` files
            are removed first, so no stale sub-image survives); without it such folders stop the
            run before any work.

    Returns:
        ``{'images': n, 'subimages': m}``. Each PNG is written to a temporary name and renamed,
        so an interrupted run leaves no truncated file.
    """
    root, out_dir = Path(root), Path(out_dir)
    scales = tuple(int(s) for s in scales)
    if crop < 1 or step < 1 or thresh < 0:
        raise DataError(f'need crop >= 1, step >= 1, thresh >= 0; got {crop}, {step}, {thresh}')
    for scale in scales:
        if scale < 1 or crop % scale or step % scale or thresh % scale:
            raise DataError(f'crop {crop}, step {step} and thresh {thresh} must be multiples of '
                            f'scale {scale}')
    hr_root = root / HR_DIR
    if not hr_root.is_dir():
        raise DataError(f'{root}: no {HR_DIR}/ folder (expected {HR_DIR}/*.png and optionally '
                        f'{LR_DIR.format(scale="<s>")}/*x<s>.png)')
    hr_paths = sorted(p for p in hr_root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not hr_paths:
        raise DataError(f'{hr_root}: no images ({", ".join(IMAGE_SUFFIXES)})')
    jobs = []
    lr_roots = {s: root / LR_DIR.format(scale=s) for s in scales}
    for hr_path in hr_paths:  # every pair is checked before any work
        lr_paths: dict[int, Path | None] = {}
        for scale, lr_root in lr_roots.items():
            if not lr_root.is_dir():
                lr_paths[scale] = None
                continue
            lr_path = lr_root / f'{hr_path.stem}x{scale}{hr_path.suffix}'
            if not lr_path.is_file():
                raise DataError(f'{lr_path}: LR image for {hr_path} not found')
            lr_paths[scale] = lr_path
        jobs.append((hr_path, lr_paths))

    outputs = [out_dir / HR_OUT, *(out_dir / LR_OUT.format(scale=s) for s in scales)]
    existing = [p for p in outputs if p.is_dir() and any(p.glob('*_s[0-9][0-9][0-9]*.png'))]
    if existing and not force:
        raise DataError(f'{existing[0]} already holds sub-images; pass --force to replace them')
    for folder in existing:
        for stale in folder.glob('*_s[0-9][0-9][0-9]*.png'):
            stale.unlink()
    for folder in outputs:
        folder.mkdir(parents=True, exist_ok=True)

    made = {s: 'LR files' if lr_roots[s].is_dir() else 'MATLAB bicubic' for s in scales}
    print_log(f'DIV2K: {len(jobs)} images from {hr_root}, crop {crop} step {step} thresh '
              f'{thresh}, LR {made or "none"}, {workers} workers', logger='current')
    start = time.perf_counter()
    task = partial(_job, out_dir=out_dir, crop=crop, step=step, thresh=thresh)
    if workers > 1 and len(jobs) > 1:
        counts = track_parallel_progress(task, jobs, nproc=workers)
    else:
        counts = track_progress(task, jobs)
    total = int(sum(counts))
    print_log(f'DIV2K: {total} sub-images of {len(jobs)} images written to {out_dir} in '
              f'{time.perf_counter() - start:.1f} s', logger='current')
    return {'images': len(jobs), 'subimages': total}
