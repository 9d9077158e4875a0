"""Build a model from a config and a checkpoint, and run it on raw inputs.

These are the functions ``tools/infer.py`` and robotics scripts call: they take file paths or
``uint8`` RGB arrays and return NumPy results, so a caller needs neither a dataloader nor a Runner.

Stereo geometry (``docs/conventions.md``, section 7): for a rectified pair with focal length ``f``
(px), baseline ``B`` (any unit) and principal-point offset ``doffs = cx_right - cx_left`` (px),
``depth = f * B / (d + doffs)`` in the unit of ``B``; a pixel ``(u, v)`` of the left image lies at
``x = (u - cx) * Z / f``, ``y = (v - cy) * Z / f``, ``z = Z`` in the left camera frame (x right,
y down, z forward).
"""
from __future__ import annotations

import os

import numpy as np
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from torch import nn

from ..engine.checkpoint import adapt_state_dict, load_state_dict, read_checkpoint
from ..engine.config import load_config
from ..engine.errors import ConfigError, DataError
from ..engine.fileio import atomic_write_bytes
from ..registry import MODELS, SCOPE

__all__ = ['disparity_to_depth', 'depth_to_points', 'inference_stereo', 'init_model',
           'write_ply']

ImageInput = str | os.PathLike | np.ndarray


def init_model(config: str | os.PathLike | Config, checkpoint: str | os.PathLike | None = None,
               device: str | torch.device = 'cpu') -> nn.Module:
    """Build ``cfg.model`` under the ``perception`` scope, load weights, return it in eval mode.

    Args:
        config: a config file path (loaded and type-checked by ``load_config``) or a ``Config``.
        checkpoint: a ``.pth`` read with ``weights_only=True``; its state dict (found under
            ``state_dict`` / ``params_ema`` / ... , ``module.`` prefixes stripped) must fit the
            model exactly. ``None`` keeps the initial weights.
        device: where the model lives.

    Raises:
        ConfigError: no ``model`` in the config.
        CheckpointError: unreadable checkpoint, or keys / shapes that do not fit.
    """
    cfg = config if isinstance(config, Config) else load_config(config)
    if cfg.get('model') is None:
        raise ConfigError(f'config {getattr(cfg, "filename", None) or config} has no `model`')
    with DefaultScope.overwrite_default_scope(SCOPE):
        model = MODELS.build(cfg.model)
    if checkpoint is not None:
        source = os.fspath(checkpoint)
        state_dict = adapt_state_dict(read_checkpoint(source, 'cpu'), source)
        load_state_dict(model, state_dict, strict=True, source=source)
    model.cfg = cfg  # as mmdet's init_detector: callers may want the test pipeline etc.
    return model.to(device).eval()


def _read_image(image: ImageInput, name: str) -> tuple[np.ndarray, str]:
    """``(H, W, 3)`` uint8 RGB from a path or an array, and a label for messages."""
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise DataError(f'{name} image must be an (H, W, 3) uint8 RGB array, got '
                            f'{image.shape} {image.dtype}')
        return image, f'{name} array'
    from ..datasets.transforms.loading import read_rgb

    path = os.fspath(image)
    return read_rgb(path), path


def inference_stereo(model: nn.Module, left: ImageInput, right: ImageInput,
                     iters: int | None = None) -> np.ndarray:
    """Disparity of a rectified stereo pair.

    Args:
        model: a stereo model (``RAFTStereo``...) with a ``data_preprocessor`` that scales
            ``(B, 2, 3, H, W)`` 0-255 pairs and a ``predict_disparity(inputs, iters)`` that pads
            to its divisor and crops back.
        left, right: image paths or ``(H, W, 3)`` uint8 RGB arrays of one size.
        iters: refinement iterations (default: the model's ``test_iters``).

    Returns:
        ``(H, W)`` float32 disparity of the left image in pixels (``x_left - x_right``).

    Raises:
        DataError: unreadable images, or left and right of different sizes.
    """
    left_img, left_name = _read_image(left, 'left')
    right_img, right_name = _read_image(right, 'right')
    if left_img.shape != right_img.shape:
        (hl, wl), (hr, wr) = left_img.shape[:2], right_img.shape[:2]
        raise DataError(f'stereo pair of different sizes: left {left_name} is {wl}x{hl}, right '
                        f'{right_name} is {wr}x{hr} (width x height); a rectified pair must have '
                        'one size')
    pair = np.stack([left_img, right_img]).transpose(0, 3, 1, 2)  # (2, 3, H, W)
    inputs = torch.from_numpy(np.ascontiguousarray(pair))[None]  # (1, 2, 3, H, W) uint8
    with torch.inference_mode():
        # The preprocessor moves the pair to the model's device and scales it to [-1, 1].
        data = model.data_preprocessor({'inputs': inputs}, False)
        disp = model.predict_disparity(data['inputs'], iters)
    return disp[0].float().cpu().numpy()


def disparity_to_depth(disp: np.ndarray, focal: float, baseline: float,
                       doffs: float = 0.0) -> np.ndarray:
    """``depth = focal * baseline / (disp + doffs)``, ``inf`` where that is not positive.

    Args:
        disp: ``(H, W)`` disparity in pixels.
        focal: focal length in pixels; baseline: in the unit the depth should have.
        doffs: ``cx_right - cx_left`` in pixels (0 for KITTI, non-zero for Middlebury).

    Returns:
        ``(H, W)`` float32 depth; pixels with ``disp <= 0``, non-finite disparity or
        ``disp + doffs <= 0`` are ``inf`` (the PFM "invalid" marker).
    """
    if not (focal > 0 and baseline > 0):
        raise ValueError(f'focal ({focal}) and baseline ({baseline}) must be positive')
    disp = np.asarray(disp, dtype=np.float64)
    denom = disp + doffs
    valid = np.isfinite(disp) & (disp > 0) & (denom > 0)
    depth = np.full(disp.shape, np.inf)
    depth[valid] = focal * baseline / denom[valid]
    return depth.astype(np.float32)


def depth_to_points(depth: np.ndarray, focal: float, cx: float, cy: float,
                    colors: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Back-project the finite pixels of a depth map into the left camera frame.

    Args:
        depth: ``(H, W)``; non-finite or non-positive pixels are skipped.
        focal, cx, cy: left camera intrinsics in pixels (square pixels, as rectified pairs have).
        colors: optional ``(H, W, 3)`` uint8 image, sampled at the kept pixels.

    Returns:
        ``(N, 3)`` float32 points ``(x right, y down, z forward)`` in row-major pixel order, and
        their ``(N, 3)`` uint8 colours (``None`` without ``colors``).
    """
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise ValueError(f'depth must be (H, W), got {depth.shape}')
    if colors is not None and colors.shape != (*depth.shape, 3):
        raise ValueError(f'colors must be {(*depth.shape, 3)}, got {colors.shape}')
    v, u = np.nonzero(np.isfinite(depth) & (depth > 0))
    z = depth[v, u].astype(np.float64)
    points = np.stack([(u - cx) * z / focal, (v - cy) * z / focal, z], axis=1)
    return points.astype(np.float32), (None if colors is None else colors[v, u])


def write_ply(path: str | os.PathLike, points: np.ndarray, colors: np.ndarray) -> None:
    """Write a binary little-endian PLY of ``(N, 3)`` points and ``(N, 3)`` uint8 colours.

    Vertex properties: ``float x, y, z`` and ``uchar red, green, blue``. The file is written to
    a temporary name beside ``path`` and renamed, so readers never see a partial cloud.
    """
    points = np.asarray(points)
    colors = np.asarray(colors)
    if points.ndim != 2 or points.shape[1] != 3 or colors.shape != points.shape:
        raise ValueError(f'write_ply({path}): need (N, 3) points and (N, 3) colours, got '
                         f'{points.shape} and {colors.shape}')
    vertex = np.empty(len(points), dtype=[('x', '<f4'), ('y', '<f4'), ('z', '<f4'),
                                          ('red', 'u1'), ('green', 'u1'), ('blue', 'u1')])
    vertex['x'], vertex['y'], vertex['z'] = points.T
    vertex['red'], vertex['green'], vertex['blue'] = np.clip(colors, 0, 255).T
    header = ('ply\nformat binary_little_endian 1.0\n'
              f'element vertex {len(points)}\n'
              'property float x\nproperty float y\nproperty float z\n'
              'property uchar red\nproperty uchar green\nproperty uchar blue\n'
              'end_header\n').encode('ascii')
    atomic_write_bytes(path, header + vertex.tobytes(), durable=False)
