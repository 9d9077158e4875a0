"""Optical-flow file formats: Middlebury ``.flo``, KITTI 16-bit flow PNG, FlyingThings3D PFM.

Flow is ``(H, W, 2)`` float32 ``(u, v)``: the displacement (px) that takes pixel ``(x, y)`` of the
first frame to ``(x + u, y + v)`` in the second.

* ``.flo`` (Middlebury, used by FlyingChairs, Sintel, ...): the float32 ``202021.25`` (the bytes
  ``PIEH``), int32 width, int32 height, then ``H * W * 2`` float32 ``u, v`` interleaved, row by row,
  all little endian. Values with magnitude ``>= 1e9`` mark unknown flow (Middlebury's
  ``UNKNOWN_FLOW_THRESH``).
* KITTI 2015 / HD1K: a 16-bit 3-channel PNG whose (R, G, B) channels (OpenCV reads B, G, R) hold
  ``u * 64 + 2 ** 15``, ``v * 64 + 2 ** 15`` and ``valid`` (0 = no ground truth).
* FlyingThings3D: a 3-channel ``PF`` PFM whose first two channels are ``(u, v)`` (read with
  :func:`perception.datasets.stereo_io.read_pfm`).
"""
from __future__ import annotations

import os

import numpy as np

from ..engine.errors import DataError
from ..engine.fileio import atomic_write_bytes
from .stereo_io import read_pfm, write_pfm

__all__ = ['FLO_MAGIC', 'UNKNOWN_FLOW', 'read_flo', 'read_flow', 'read_kitti_flow',
           'read_pfm_flow', 'write_flo', 'write_kitti_flow', 'write_pfm_flow']

FLO_MAGIC = 202021.25  # the float32 whose little-endian bytes read 'PIEH'
UNKNOWN_FLOW = 1e9     # Middlebury: |u| or |v| >= this means "unknown"
_KITTI_SCALE = 64.0
_KITTI_OFFSET = 2.0 ** 15


def _check_flow_array(flow: np.ndarray, where: str) -> np.ndarray:
    flow = np.asarray(flow)
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f'{where}: expected flow of shape (H, W, 2), got {flow.shape}')
    if np.isnan(flow).any():
        raise ValueError(f'{where}: the flow holds NaN')
    return flow


def _first_nan(flow: np.ndarray, path: str, kind: str) -> None:
    nan = np.isnan(flow)
    if nan.any():
        row, col = np.argwhere(nan)[0][:2]
        raise DataError(f'{path}: {int(nan.sum())} NaN value(s) in the {kind} flow (first at row '
                        f'{row}, column {col}); expected finite (u, v) displacements')


# ----------------------------------------------------------------------------------------- .flo

def read_flo(path: str | os.PathLike) -> np.ndarray:
    """Read a Middlebury ``.flo`` file as ``(H, W, 2)`` float32 ``(u, v)``.

    A wrong magic number, a non-positive size, truncated data or NaN raise :class:`DataError`
    naming the file. Unknown-flow markers (``>= 1e9``) are returned as they are.
    """
    path = os.fspath(path)
    try:
        with open(path, 'rb') as f:
            raw = f.read()
    except FileNotFoundError:
        raise DataError(f'{path}: .flo file not found') from None
    if len(raw) < 12:
        raise DataError(f'{path}: truncated .flo: {len(raw)} bytes, the header alone needs 12 '
                        '(magic, width, height)')
    magic = float(np.frombuffer(raw, '<f4', count=1)[0])
    if magic != FLO_MAGIC:
        raise DataError(f'{path}: not a .flo file: magic number {magic!r} (bytes {raw[:4]!r}), '
                        f"expected {FLO_MAGIC} (bytes b'PIEH')")
    width, height = (int(v) for v in np.frombuffer(raw, '<i4', count=2, offset=4))
    if width <= 0 or height <= 0:
        raise DataError(f'{path}: .flo size {width}x{height} must be positive')
    count = width * height * 2
    if len(raw) - 12 < 4 * count:
        raise DataError(f'{path}: truncated .flo: {width}x{height}x2 float32 need {4 * count} '
                        f'bytes of data, found {len(raw) - 12}')
    flow = np.frombuffer(raw, '<f4', count=count, offset=12).reshape(height, width, 2)
    flow = flow.astype(np.float32)  # native order, writable
    _first_nan(flow, path, '.flo')
    return flow


def write_flo(path: str | os.PathLike, flow: np.ndarray) -> None:
    """Write ``(H, W, 2)`` flow as a Middlebury ``.flo`` (little endian), atomically."""
    flow = _check_flow_array(flow, f'write_flo({path})')
    height, width = flow.shape[:2]
    header = np.array([FLO_MAGIC], '<f4').tobytes() + np.array([width, height], '<i4').tobytes()
    data = np.ascontiguousarray(flow, dtype='<f4').tobytes()
    atomic_write_bytes(path, header + data, durable=False)


# ---------------------------------------------------------------------------------- KITTI PNG

def read_kitti_flow(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read a KITTI / HD1K flow PNG: ``(flow (H, W, 2) float32, valid (H, W) bool)``.

    ``flow = (value - 2 ** 15) / 64`` for the R (u) and G (v) channels; B is the valid flag.
    Flow is 0 where invalid. Anything but a 16-bit 3-channel PNG raises :class:`DataError`.
    """
    import cv2

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(f'{path}: flow PNG not found')
    image = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise DataError(f'{path}: cannot decode the flow image (not a PNG, or truncated)')
    channels = 1 if image.ndim == 2 else image.shape[2]
    if image.dtype != np.uint16 or channels != 3:
        raise DataError(f'{path}: a KITTI flow map must be a 16-bit 3-channel PNG (u, v, valid); '
                        f'found {8 * image.dtype.itemsize}-bit with {channels} channel(s)')
    rgb = image[..., ::-1]  # OpenCV's B, G, R -> u, v, valid
    valid = rgb[..., 2] > 0
    flow = (rgb[..., :2].astype(np.float32) - np.float32(_KITTI_OFFSET)) / np.float32(_KITTI_SCALE)
    flow[~valid] = 0
    return flow, valid


def write_kitti_flow(path: str | os.PathLike, flow: np.ndarray,
                     valid: np.ndarray | None = None) -> None:
    """Write ``(H, W, 2)`` flow as a KITTI 16-bit PNG, atomically.

    ``u * 64 + 2 ** 15`` is rounded and clipped to ``[0, 65535]`` (about +-512 px); pixels that
    are not finite or outside ``valid`` get the valid flag 0 and value 0.
    """
    import cv2

    flow = np.asarray(flow, dtype=np.float64)
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f'write_kitti_flow({path}): expected (H, W, 2), got {flow.shape}')
    ok = np.isfinite(flow).all(axis=2)
    if valid is not None:
        if np.shape(valid) != flow.shape[:2]:
            raise ValueError(f'write_kitti_flow({path}): valid {np.shape(valid)} does not match '
                             f'the flow {flow.shape[:2]}')
        ok &= np.asarray(valid, dtype=bool)
    encoded = np.zeros(flow.shape[:2] + (3,), dtype=np.uint16)
    values = np.clip(np.round(flow[ok] * _KITTI_SCALE + _KITTI_OFFSET), 0, 65535)
    encoded[ok, :2] = values.astype(np.uint16)
    encoded[ok, 2] = 1
    success, png = cv2.imencode('.png', encoded[..., ::-1].copy())  # u, v, valid -> B, G, R
    if not success:
        raise OSError(f'write_kitti_flow({path}): PNG encoding failed')
    atomic_write_bytes(path, png.tobytes(), durable=False)


# ----------------------------------------------------------------------------------------- PFM

def read_pfm_flow(path: str | os.PathLike) -> np.ndarray:
    """Read a FlyingThings3D flow PFM (``PF``, 3 channels) as ``(H, W, 2)`` float32 ``(u, v)``."""
    data = read_pfm(path)
    if data.ndim != 3:
        raise DataError(f'{os.fspath(path)}: a flow PFM must have 3 channels (PF), found 1 (Pf)')
    return np.ascontiguousarray(data[..., :2])


def write_pfm_flow(path: str | os.PathLike, flow: np.ndarray) -> None:
    """Write ``(H, W, 2)`` flow as a 3-channel PFM (third channel 0), as FlyingThings3D."""
    flow = _check_flow_array(flow, f'write_pfm_flow({path})')
    write_pfm(path, np.concatenate([flow, np.zeros_like(flow[..., :1])], axis=2))


# -------------------------------------------------------------------------------------- any

def read_flow(path: str | os.PathLike, flow_format: str | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """Read ``(flow (H, W, 2) float32, valid (H, W) bool)`` from any of the three formats.

    ``flow_format``: ``'flo'``, ``'pfm'`` or ``'kitti_png'``; None picks it from the extension
    (``.flo``, ``.pfm``, ``.png``). For ``.flo`` and PFM, ``valid`` is where both components are
    finite and below Middlebury's unknown marker (``1e9``); flow is 0 where not valid.
    """
    path = os.fspath(path)
    if flow_format is None:
        ext = os.path.splitext(path)[1].lower()
        flow_format = {'.flo': 'flo', '.pfm': 'pfm', '.png': 'kitti_png'}.get(ext)
        if flow_format is None:
            raise DataError(f'{path}: unknown flow file extension {ext!r} (expected .flo, .pfm '
                            'or a KITTI .png)')
    if flow_format == 'kitti_png':
        return read_kitti_flow(path)
    if flow_format == 'flo':
        flow = read_flo(path)
    elif flow_format == 'pfm':
        flow = read_pfm_flow(path)
    else:
        raise DataError(f"{path}: unknown flow_format {flow_format!r} (expected 'flo', 'pfm' or "
                        "'kitti_png')")
    valid = (np.abs(flow) < UNKNOWN_FLOW).all(axis=2)  # inf fails the test too
    flow = np.where(valid[..., None], flow, 0).astype(np.float32)
    return flow, valid
