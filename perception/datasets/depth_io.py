"""File formats of posed multi-view depth data: ``cam.txt``, ``poses.txt``, depth maps.

As the DeMoN layout that UniMatch's depth training reads (its ``prepare_demon_*.py`` write it):

* ``cam.txt``: the 3x3 pinhole intrinsics in pixels, three rows of three numbers
  (``fx 0 cx`` / ``0 fy cy`` / ``0 0 1``), one per scene. Pixel centres are at integer
  coordinates: a camera-frame point ``(X, Y, Z)`` is seen at ``u = fx X / Z + cx``.
* ``poses.txt``: one line per frame (frames in sorted file-name order), the frame's pose as 12
  (3x4) or 16 (4x4) numbers, row major. In DeMoN's files each line is the 3x4 ``[R | t]`` that
  maps **world** points into that **camera** (``X_cam = R X_world + t``, world-to-camera): the
  official loader forms the reference-to-source transform as ``pose_src @ inv(pose_ref)``.
  ScanNet's ``pose/*.txt`` hold camera-to-world 4x4 matrices instead (the official ScanNet loader
  forms ``inv(pose_src) @ pose_ref``); :func:`relative_pose` takes either convention.
* depth of frame ``<stem>``: ``<stem>.npy`` beside the image (DeMoN: ``(H, W)`` float32 metres,
  0 or non-finite = no measurement), or a 16-bit single-channel PNG of millimetres (ScanNet:
  ``depth / 1000``, 0 = no measurement).

Every reader raises :class:`DataError` naming the file and the field that is wrong.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from ..engine.errors import DataError
from ..engine.fileio import atomic_write_bytes

__all__ = ['DEPTH_FORMATS', 'POSE_CONVENTIONS', 'check_principal_point', 'read_cam_txt',
           'read_depth', 'read_poses_txt', 'relative_pose', 'write_cam_txt', 'write_depth',
           'write_poses_txt']

DEPTH_FORMATS = ('npy', 'png_mm')
POSE_CONVENTIONS = ('world_to_camera', 'camera_to_world')
_MM_PER_M = 1000.0


def _numbers(path: str, what: str) -> list[list[float]]:
    """Whitespace-separated numbers of a text file, one list per non-empty line."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise DataError(f'{path}: {what} file not found') from None
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f'{path}: cannot read the {what} file ({error})') from None
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append([float(v) for v in line.split()])
        except ValueError:
            raise DataError(f'{path}, line {number}: {what} values must be numbers, got '
                            f'{line.strip()[:60]!r}') from None
    return rows


# ------------------------------------------------------------------------------------ cam.txt

def read_cam_txt(path: str | os.PathLike) -> np.ndarray:
    """Read a ``cam.txt``: ``(3, 3)`` float64 intrinsics ``[[fx, s, cx], [0, fy, cy], [0, 0, 1]]``.

    Raises :class:`DataError` (naming the file and the field) unless the file holds exactly nine
    finite numbers, ``fx > 0``, ``fy > 0`` and the last row is ``0 0 1``. The principal point
    needs the image size: :func:`check_principal_point`.
    """
    path = os.fspath(path)
    rows = _numbers(path, 'intrinsics (cam.txt)')
    values = [v for row in rows for v in row]
    if len(values) != 9 or any(len(row) != 3 for row in rows):
        shape = 'x'.join(str(len(r)) for r in rows) or 'nothing'
        raise DataError(f'{path}: intrinsics must be a 3x3 matrix (three rows of three numbers: '
                        f'fx 0 cx / 0 fy cy / 0 0 1), found {len(values)} number(s) in rows of '
                        f'{shape}')
    matrix = np.array(values, dtype=np.float64).reshape(3, 3)
    if not np.isfinite(matrix).all():
        raise DataError(f'{path}: intrinsics hold a non-finite value: {matrix.tolist()}')
    for name, value in (('fx', matrix[0, 0]), ('fy', matrix[1, 1])):
        if value <= 0:
            raise DataError(f'{path}: intrinsics focal length {name} = {value:g} must be > 0 '
                            '(pixels)')
    if not np.allclose(matrix[2], (0.0, 0.0, 1.0)) or matrix[1, 0] != 0:
        raise DataError(f'{path}: intrinsics must be upper triangular with last row 0 0 1, got '
                        f'{matrix.tolist()}')
    return matrix


def check_principal_point(intrinsics: np.ndarray, width: int, height: int, cam_path: str,
                          image_path: str) -> None:
    """Raise :class:`DataError` if ``(cx, cy)`` lies outside the ``width x height`` image.

    The image covers ``[-0.5, width - 0.5] x [-0.5, height - 0.5]`` (pixel centres at integers).
    Also re-checks ``fx, fy > 0`` (intrinsics may come from a data info rather than a file).
    """
    k = np.asarray(intrinsics, dtype=np.float64)
    for name, value in (('fx', k[0, 0]), ('fy', k[1, 1])):
        if not value > 0:
            raise DataError(f'{cam_path}: intrinsics focal length {name} = {value:g} must be > 0')
    for name, value, size, axis in (('cx', k[0, 2], width, 'width'),
                                    ('cy', k[1, 2], height, 'height')):
        if not -0.5 <= value <= size - 0.5:
            raise DataError(f'{cam_path}: intrinsics principal point {name} = {value:g} is outside '
                            f'the image {image_path} ({axis} {size} px, so {name} must be in '
                            f'[-0.5, {size - 0.5:g}]); are the intrinsics for another resolution '
                            'or normalised?')


def write_cam_txt(path: str | os.PathLike, intrinsics: np.ndarray) -> None:
    """Write ``(3, 3)`` intrinsics as three rows of three numbers (``%.10e``), atomically."""
    matrix = np.asarray(intrinsics, dtype=np.float64)
    if matrix.shape != (3, 3):
        raise ValueError(f'write_cam_txt({path}): expected (3, 3), got {matrix.shape}')
    buffer = io.StringIO()
    np.savetxt(buffer, matrix, fmt='%.10e')
    atomic_write_bytes(path, buffer.getvalue().encode('ascii'), durable=False)


# ---------------------------------------------------------------------------------- poses.txt

def read_poses_txt(path: str | os.PathLike, num_frames: int | None = None,
                   frame_names: list[str] | None = None) -> np.ndarray:
    """Read a ``poses.txt``: ``(N, 4, 4)`` float64, one pose per line as stored (no inversion).

    Each line holds 12 (3x4, the last row ``0 0 0 1`` implied) or 16 (4x4) numbers, row major.
    Raises :class:`DataError` naming the file (and line / frame) for: a missing file, a line of
    another length, a 4x4 whose last row is not ``0 0 0 1``, a non-finite value, a pose whose 3x3
    block is singular (not invertible), or (with ``num_frames``) another number of lines than
    frames. ``frame_names`` only makes the messages name the frame.
    """
    path = os.fspath(path)
    rows = _numbers(path, 'pose (poses.txt)')
    if num_frames is not None and len(rows) != num_frames:
        raise DataError(f'{path}: {len(rows)} pose row(s) for {num_frames} frame(s); poses.txt '
                        'needs one pose line (3x4 or 4x4, row major) per image, in sorted '
                        'file-name order')
    poses = np.zeros((len(rows), 4, 4))
    for i, row in enumerate(rows):
        frame = f' (frame {frame_names[i]})' if frame_names and i < len(frame_names) else ''
        where = f'{path}, pose row {i + 1}{frame}'
        if len(row) not in (12, 16):
            raise DataError(f'{where}: a pose must have 12 (3x4) or 16 (4x4) numbers, found '
                            f'{len(row)}')
        pose = np.eye(4)
        pose[:len(row) // 4] = np.array(row).reshape(-1, 4)
        if len(row) == 16 and not np.allclose(pose[3], (0.0, 0.0, 0.0, 1.0)):
            raise DataError(f'{where}: the last row of a 4x4 pose must be 0 0 0 1, got '
                            f'{pose[3].tolist()}')
        if not np.isfinite(pose).all():
            raise DataError(f'{where}: the pose holds a non-finite value')
        singular = np.linalg.svd(pose[:3, :3], compute_uv=False)
        if singular[-1] <= 1e-9 * max(1.0, singular[0]):
            raise DataError(f'{where}: the pose is not invertible (its 3x3 rotation block is '
                            f'singular, singular values {np.round(singular, 9).tolist()})')
        poses[i] = pose
    return poses


def relative_pose(pose_ref: np.ndarray, pose_src: np.ndarray,
                  convention: str = 'world_to_camera') -> np.ndarray:
    """The 4x4 transform taking reference-camera points into the source camera.

    ``X_src = T @ X_ref`` with ``T = pose_src @ inv(pose_ref)`` for world-to-camera poses
    (DeMoN's ``poses.txt``), ``T = inv(pose_src) @ pose_ref`` for camera-to-world ones
    (ScanNet's ``pose/*.txt``). General inverses, as the official loaders (the stored rotations
    are only orthonormal to the file's precision).
    """
    pose_ref = np.asarray(pose_ref, dtype=np.float64)
    pose_src = np.asarray(pose_src, dtype=np.float64)
    if convention == 'world_to_camera':
        return pose_src @ np.linalg.inv(pose_ref)
    if convention == 'camera_to_world':
        return np.linalg.inv(pose_src) @ pose_ref
    raise ValueError(f'relative_pose: convention must be one of {POSE_CONVENTIONS}, got '
                     f'{convention!r}')


def write_poses_txt(path: str | os.PathLike, poses: np.ndarray, rows: int = 3) -> None:
    """Write ``(N, 4, 4)`` poses, one line of ``4 * rows`` numbers (``%.10e``) each, atomically.

    ``rows=3`` writes DeMoN's 3x4 lines; ``rows=4`` the full 4x4.
    """
    poses = np.asarray(poses, dtype=np.float64)
    if poses.ndim != 3 or poses.shape[1:] != (4, 4) or rows not in (3, 4):
        raise ValueError(f'write_poses_txt({path}): expected (N, 4, 4) poses and rows 3 or 4, got '
                         f'{poses.shape}, rows={rows}')
    buffer = io.StringIO()
    np.savetxt(buffer, poses[:, :rows].reshape(len(poses), 4 * rows), fmt='%.10e')
    atomic_write_bytes(path, buffer.getvalue().encode('ascii'), durable=False)


# --------------------------------------------------------------------------------- depth maps

def read_depth(path: str | os.PathLike, depth_format: str = 'npy'
               ) -> tuple[np.ndarray, np.ndarray]:
    """Read a depth map: ``(depth (H, W) float32 metres, 0 where unknown; known (H, W) bool)``.

    ``depth_format``: ``'npy'`` (a 2-D float array in metres, DeMoN; non-finite or <= 0 is
    unknown) or ``'png_mm'`` (16-bit single-channel PNG of millimetres, ScanNet; 0 is unknown).
    Anything else, a missing or unreadable file, or a wrong shape / bit depth raises
    :class:`DataError` naming the file.
    """
    path = os.fspath(path)
    if depth_format not in DEPTH_FORMATS:
        raise DataError(f'{path}: unknown depth_format {depth_format!r} (expected one of '
                        f'{list(DEPTH_FORMATS)})')
    if not os.path.isfile(path):
        raise DataError(f'{path}: depth file not found')
    if depth_format == 'npy':
        try:
            depth = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as error:
            raise DataError(f'{path}: cannot read the depth .npy ({error})') from None
        if depth.ndim == 3 and depth.shape[2] == 1:
            depth = depth[..., 0]
        if depth.ndim != 2 or depth.dtype.kind not in 'fiu':
            raise DataError(f'{path}: depth must be a 2-D numeric array (H, W) in metres, got '
                            f'{depth.dtype} {depth.shape}')
        depth = depth.astype(np.float32)
    else:
        import cv2

        image = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        if image is None:
            raise DataError(f'{path}: cannot decode the depth PNG')
        channels = 1 if image.ndim == 2 else image.shape[2]
        if image.dtype != np.uint16 or channels != 1:
            raise DataError(f'{path}: a depth PNG must be 16-bit single-channel (millimetres), '
                            f'found {8 * image.dtype.itemsize}-bit with {channels} channel(s)')
        depth = image.astype(np.float32) / np.float32(_MM_PER_M)
    known = np.isfinite(depth) & (depth > 0)
    return np.where(known, depth, 0).astype(np.float32), known


def write_depth(path: str | os.PathLike, depth: np.ndarray, depth_format: str = 'npy') -> None:
    """Write ``(H, W)`` metres as ``.npy`` float32 or a 16-bit PNG of ``round(mm)``, atomically.

    For the PNG, unknown (non-finite, <= 0) pixels become 0 and values are clipped to
    ``[1, 65535]`` mm.
    """
    depth = np.asarray(depth, dtype=np.float64)
    if depth.ndim != 2:
        raise ValueError(f'write_depth({path}): expected (H, W), got {depth.shape}')
    if depth_format == 'npy':
        buffer = io.BytesIO()
        np.save(buffer, depth.astype(np.float32))
        payload = buffer.getvalue()
    elif depth_format == 'png_mm':
        import cv2

        known = np.isfinite(depth) & (depth > 0)
        encoded = np.zeros(depth.shape, dtype=np.uint16)
        encoded[known] = np.clip(np.round(depth[known] * _MM_PER_M), 1, 65535).astype(np.uint16)
        ok, png = cv2.imencode('.png', encoded)
        if not ok:
            raise OSError(f'write_depth({path}): PNG encoding failed')
        payload = png.tobytes()
    else:
        raise ValueError(f'write_depth({path}): depth_format must be one of {DEPTH_FORMATS}, got '
                         f'{depth_format!r}')
    atomic_write_bytes(path, payload, durable=False)
