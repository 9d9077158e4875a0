"""Disparity file formats: PFM (SceneFlow, Middlebury, ETH3D), KITTI 16-bit PNG, ``calib.txt``.

Conventions (``docs/conventions.md``, section 7):

* PFM: a text header ``PF`` (3 channels) or ``Pf`` (1 channel), ``width height``, and a scale whose
  sign gives the byte order of the float32 data (negative = little endian). Rows are stored from
  the bottom of the image up; :func:`read_pfm` flips them so row 0 is the top row. ``inf`` marks
  pixels without ground truth (ETH3D, Middlebury) and is allowed; NaN is a corrupt file.
* KITTI: a 16-bit single-channel PNG holding ``round(d * 256)``; 0 = no ground truth.
* Middlebury / ETH3D ``calib.txt``: ``key=value`` lines, ``cam0=[f 0 cx; 0 f cy; 0 0 1]``,
  ``doffs`` (``cx1 - cx0``), ``baseline`` (mm), ``width``, ``height``, ``ndisp``, ...; depth is
  ``baseline * f / (d + doffs)``.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..engine.errors import DataError
from ..engine.fileio import atomic_write_bytes

__all__ = ['StereoCalib', 'read_calib_txt', 'read_kitti_disparity', 'read_pfm',
           'write_kitti_disparity', 'write_pfm']

_KITTI_SCALE = 256.0
_PFM_TOKEN = re.compile(rb'\s*(\S+)')


# ----------------------------------------------------------------------------------------- PFM

def _pfm_header(raw: bytes, path: str) -> tuple[list[bytes], int]:
    """The four header tokens (type, width, height, scale) and the offset where data starts.

    Writers put the tokens on three lines (``PF\\nW H\\nS\\n``) but the format only asks for
    whitespace between them, followed by exactly one whitespace byte before the data.
    """
    tokens: list[bytes] = []
    pos = 0
    while len(tokens) < 4:
        match = _PFM_TOKEN.match(raw, pos)
        if match is None:
            raise DataError(f'{path}: not a PFM file (header ended after {len(tokens)} of 4 '
                            'fields: type, width, height, scale)')
        tokens.append(match.group(1))
        pos = match.end()
        if len(tokens) == 1 and tokens[0] not in (b'PF', b'Pf'):
            raise DataError(f"{path}: not a PFM file (header {tokens[0][:8]!r}, expected 'PF' "
                            "or 'Pf')")
    if pos >= len(raw) or raw[pos:pos + 1] not in (b' ', b'\n', b'\r', b'\t'):
        raise DataError(f'{path}: PFM header is not followed by a whitespace byte')
    return tokens, pos + 1


def read_pfm(path: str | os.PathLike) -> np.ndarray:
    """Read a PFM file as ``(H, W)`` (``Pf``) or ``(H, W, 3)`` (``PF``) float32, top row first.

    The byte order follows the sign of the header's scale (negative = little endian); the scale's
    magnitude is not applied (as every stereo benchmark's reader). ``inf`` values are kept (the
    "no ground truth" marker of ETH3D and Middlebury); NaN raises :class:`DataError`.
    """
    path = os.fspath(path)
    try:
        with open(path, 'rb') as f:
            raw = f.read()
    except FileNotFoundError:
        raise DataError(f'{path}: PFM file not found') from None
    tokens, offset = _pfm_header(raw, path)
    channels = 3 if tokens[0] == b'PF' else 1
    try:
        width, height = int(tokens[1]), int(tokens[2])
        scale = float(tokens[3])
    except ValueError:
        raise DataError(f'{path}: malformed PFM header: width {tokens[1]!r}, height '
                        f'{tokens[2]!r}, scale {tokens[3]!r}') from None
    if width <= 0 or height <= 0:
        raise DataError(f'{path}: PFM size {width}x{height} must be positive')
    if scale == 0 or not np.isfinite(scale):
        raise DataError(f'{path}: PFM scale {tokens[3]!r} must be a non-zero number (its sign '
                        'gives the byte order)')
    count = width * height * channels
    if len(raw) - offset < 4 * count:
        raise DataError(f'{path}: truncated PFM: {width}x{height}x{channels} float32 need '
                        f'{4 * count} bytes of data, found {len(raw) - offset}')
    dtype = np.dtype('<f4' if scale < 0 else '>f4')
    data = np.frombuffer(raw, dtype=dtype, count=count, offset=offset)
    shape = (height, width, 3) if channels == 3 else (height, width)
    # Bottom-up rows -> top-down; astype makes a native-order, writable, contiguous copy.
    image = data.reshape(shape)[::-1].astype(np.float32)
    nan = np.isnan(image)
    if nan.any():
        row, col = np.argwhere(nan)[0][:2]
        raise DataError(f'{path}: {int(nan.sum())} NaN value(s) in the PFM (first at row {row}, '
                        f'column {col}); invalid pixels must be inf, not NaN')
    return image


def write_pfm(path: str | os.PathLike, array: np.ndarray, little_endian: bool = True) -> None:
    """Write ``(H, W)`` or ``(H, W, 3)`` values as a float32 PFM (bottom-up rows), atomically.

    ``inf`` is written as is (the invalid marker); NaN is refused with ``ValueError``.
    """
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)):
        raise ValueError(f'write_pfm({path}): expected (H, W) or (H, W, 3), got {array.shape}')
    if np.isnan(array).any():
        raise ValueError(f'write_pfm({path}): the array holds NaN; mark invalid pixels with inf')
    height, width = array.shape[:2]
    kind = 'PF' if array.ndim == 3 else 'Pf'
    scale = '-1.0' if little_endian else '1.0'
    header = f'{kind}\n{width} {height}\n{scale}\n'.encode('ascii')
    data = np.ascontiguousarray(array[::-1], dtype='<f4' if little_endian else '>f4')
    atomic_write_bytes(path, header + data.tobytes(), durable=False)


# --------------------------------------------------------------------------------- KITTI PNG

def read_kitti_disparity(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read a KITTI disparity PNG: ``(disp (H, W) float32 px, valid (H, W) bool)``.

    The file must be a 16-bit single-channel PNG holding ``d * 256``; 0 means no ground truth
    (``disp`` is 0 there). Any other bit depth or channel count raises :class:`DataError`.
    """
    import cv2

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(f'{path}: disparity PNG not found')
    image = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise DataError(f'{path}: cannot decode the disparity image (not a PNG, or truncated)')
    channels = 1 if image.ndim == 2 else image.shape[2]
    if image.dtype != np.uint16 or channels != 1:
        raise DataError(f'{path}: a KITTI disparity map must be a 16-bit single-channel PNG '
                        f'(d * 256); found {8 * image.dtype.itemsize}-bit with {channels} '
                        f'channel(s)')
    valid = image > 0
    return image.astype(np.float32) / _KITTI_SCALE, valid


def write_kitti_disparity(path: str | os.PathLike, disp: np.ndarray,
                          valid: np.ndarray | None = None) -> None:
    """Write ``(H, W)`` disparities as a KITTI 16-bit PNG (``round(d * 256)``), atomically.

    Pixels that are not finite, ``<= 0`` or outside ``valid`` are stored as 0 (invalid). Valid
    values are clipped to ``[1, 65535]`` (1/256 px .. 255.996 px) so that none becomes 0.
    """
    import cv2

    disp = np.asarray(disp, dtype=np.float64)
    if disp.ndim == 3 and disp.shape[2] == 1:
        disp = disp[..., 0]
    if disp.ndim != 2:
        raise ValueError(f'write_kitti_disparity({path}): expected (H, W), got {disp.shape}')
    ok = np.isfinite(disp) & (disp > 0)
    if valid is not None:
        if np.shape(valid) != disp.shape:
            raise ValueError(f'write_kitti_disparity({path}): valid {np.shape(valid)} does not '
                             f'match disp {disp.shape}')
        ok &= np.asarray(valid, dtype=bool)
    encoded = np.zeros(disp.shape, dtype=np.uint16)
    encoded[ok] = np.clip(np.round(disp[ok] * _KITTI_SCALE), 1, 65535).astype(np.uint16)
    success, png = cv2.imencode('.png', encoded)
    if not success:
        raise OSError(f'write_kitti_disparity({path}): PNG encoding failed')
    atomic_write_bytes(path, png.tobytes(), durable=False)


# ------------------------------------------------------------------------------- calib.txt

@dataclass
class StereoCalib:
    """A Middlebury / ETH3D ``calib.txt``.

    ``focal`` (px) is ``cam0[0, 0]``; ``baseline`` is in the file's unit (mm); ``doffs`` (px) is
    the x difference of the principal points, so ``depth = focal * baseline / (d + doffs)``.
    ``extra`` holds the other numeric fields (``isint``, ``vmin``, ``vmax``, ``dyavg``, ...).
    """

    focal: float
    baseline: float
    doffs: float
    cam0: np.ndarray
    cam1: np.ndarray
    width: int | None = None
    height: int | None = None
    ndisp: int | None = None
    extra: dict[str, float] = field(default_factory=dict)


def _parse_matrix(text: str, path: str, key: str) -> np.ndarray:
    rows = [row.split() for row in text.strip().strip('[]').split(';')]
    try:
        matrix = np.array([[float(v) for v in row] for row in rows], dtype=np.float64)
    except ValueError:
        matrix = np.empty(0)
    if matrix.shape != (3, 3):
        raise DataError(f'{path}: {key} must be a 3x3 matrix "[f 0 cx; 0 f cy; 0 0 1]", got '
                        f'{text.strip()!r}')
    return matrix


def read_calib_txt(path: str | os.PathLike) -> StereoCalib:
    """Parse a Middlebury (MiddEval3, 2014) or ETH3D two-view ``calib.txt``.

    ``cam0`` and ``baseline`` are required; ``cam1`` defaults to ``cam0``; ``doffs`` defaults to
    ``cam1[0, 2] - cam0[0, 2]``.
    """
    path = os.fspath(path)
    try:
        lines = Path(path).read_text().splitlines()
    except FileNotFoundError:
        raise DataError(f'{path}: calib.txt not found') from None
    values: dict[str, str] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        key, sep, value = line.partition('=')
        if not sep:
            raise DataError(f'{path}, line {number}: expected key=value, got {line.strip()!r}')
        values[key.strip()] = value.strip()
    for key in ('cam0', 'baseline'):
        if key not in values:
            raise DataError(f'{path}: missing {key}= (found {", ".join(values) or "nothing"})')
    cam0 = _parse_matrix(values.pop('cam0'), path, 'cam0')
    cam1 = _parse_matrix(values.pop('cam1'), path, 'cam1') if 'cam1' in values else cam0.copy()
    numbers: dict[str, float] = {}
    for key, value in values.items():
        try:
            numbers[key] = float(value)
        except ValueError:
            raise DataError(f'{path}: {key} must be a number, got {value!r}') from None
    doffs = numbers.pop('doffs', float(cam1[0, 2] - cam0[0, 2]))
    baseline = numbers.pop('baseline')

    def as_int(key: str) -> int | None:
        return int(numbers.pop(key)) if key in numbers else None

    return StereoCalib(focal=float(cam0[0, 0]), baseline=baseline, doffs=doffs, cam0=cam0,
                       cam1=cam1, width=as_int('width'), height=as_int('height'),
                       ndisp=as_int('ndisp'), extra=numbers)
