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

__all__ = ['disparity_to_depth', 'depth_to_points', 'inference_sr', 'inference_stereo',
           'init_model', 'tile_starts', 'write_ply']

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


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of side ``min(tile, length)`` covering ``[0, length)``.

    Tiles step by ``tile - overlap``; the last one is moved back to end at ``length`` (so it may
    overlap its neighbour by more than ``overlap``), and every tile has the same size.
    """
    if length <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    return starts + [length - tile]


def _blend_ramp(size: int, overlap: int, lead: bool, trail: bool) -> torch.Tensor:
    """``(size,)`` blending weights of one tile axis; ``overlap`` is in output pixels.

    On a side shared with a neighbour the weight is 0 over the outer quarter of the overlap
    (where a tile lacks context, so its output is least like the untiled one), rises linearly
    over the middle half and is 1 beyond. The ramp is symmetric about the overlap's centre, so
    two tiles overlapping by exactly ``overlap`` have weights summing to 1 (a cross-fade). Image
    borders (no neighbour) keep weight 1.
    """
    weights = torch.ones(size, dtype=torch.float32)
    ramp = min(overlap, size)
    if ramp > 0:
        centre = torch.arange(ramp, dtype=torch.float32) + 0.5
        rise = ((centre - ramp / 4) / (ramp / 2)).clamp(0, 1)
        if lead:
            weights[:ramp] = torch.minimum(weights[:ramp], rise)
        if trail:
            weights[size - ramp:] = torch.minimum(weights[size - ramp:], rise.flip(0))
    return weights


def _upscale(model: nn.Module, lr: torch.Tensor) -> torch.Tensor:
    """``(B, 3, h, w)`` in [0, 1] -> unclamped ``(B, 3, s*h, s*w)`` on the CPU, float32."""
    upscale = getattr(model, 'upscale', None)
    out = upscale(lr) if upscale is not None else model(lr, mode='tensor')
    return out.float().cpu()


def inference_sr(model: nn.Module, image: ImageInput, tile: int | None = None,
                 tile_overlap: int = 32, tile_batch_size: int = 4) -> np.ndarray:
    """Super-resolve one image, whole or in overlapping tiles blended together.

    Args:
        model: an SR model with ``upscale(lr)`` (``SuperResolver``) or ``forward(lr,
            mode='tensor')``, mapping ``(B, 3, h, w)`` in [0, 1] to ``(B, 3, s*h, s*w)``.
        image: path or ``(H, W, 3)`` uint8 RGB array (the LR image).
        tile: LR tile side; ``None`` runs the whole image at once. Tiles are
            ``min(tile, H) x min(tile, W)``, so all of them have one size and run in batches.
        tile_overlap: LR pixels shared by neighbouring tiles. A tile's output near an inner
            edge differs from the untiled output (the model sees less context there), so the
            outer quarter of every overlap is dropped and the middle half is cross-faded
            linearly. For a model whose receptive field (radius, LR pixels) is at most
            ``tile_overlap / 4`` the result therefore equals the untiled output everywhere; for
            larger ones the differences are confined to the overlaps and damped by the fade.
        tile_batch_size: tiles per forward pass (bounds the memory with ``tile``).

    Returns:
        ``(s*H, s*W, 3)`` uint8 RGB.

    Raises:
        DataError: unreadable image; ValueError: bad tile settings, or an output that is not an
        integer multiple of the input.
    """
    array, _ = _read_image(image, 'input')
    if tile is not None and not (tile >= 1 and 0 <= tile_overlap < tile and tile_batch_size >= 1):
        raise ValueError(f'need tile >= 1, 0 <= tile_overlap < tile and tile_batch_size >= 1; got '
                         f'tile={tile}, tile_overlap={tile_overlap}, '
                         f'tile_batch_size={tile_batch_size}')
    device = next(model.parameters()).device
    lr = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))[None].float() / 255
    height, width = array.shape[:2]
    with torch.inference_mode():
        if tile is None:
            out = _upscale(model, lr.to(device))[0]
        else:
            out = _tiled_upscale(model, lr, device, tile, tile_overlap, tile_batch_size)
    if out.shape[-2] % height or out.shape[-1] % width or (
            out.shape[-2] // height != out.shape[-1] // width):
        raise ValueError(f'model output {tuple(out.shape[-2:])} is not an integer multiple of the '
                         f'input {height}x{width}')
    return (out.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def _tiled_upscale(model: nn.Module, lr: torch.Tensor, device: torch.device, tile: int,
                   overlap: int, batch_size: int) -> torch.Tensor:
    """Blend the outputs of overlapping tiles of ``lr`` ``(1, 3, H, W)`` -> ``(3, sH, sW)``."""
    height, width = lr.shape[-2:]
    tile_h, tile_w = min(tile, height), min(tile, width)
    ys, xs = tile_starts(height, tile, overlap), tile_starts(width, tile, overlap)
    boxes = [(y, x) for y in ys for x in xs]
    out = weight = None
    scale = 0
    for first in range(0, len(boxes), batch_size):
        chunk = boxes[first:first + batch_size]
        batch = torch.cat([lr[..., y:y + tile_h, x:x + tile_w] for y, x in chunk]).to(device)
        result = _upscale(model, batch)  # (b, 3, s*tile_h, s*tile_w)
        if out is None:
            scale = result.shape[-1] // tile_w
            if result.shape[-2:] != (scale * tile_h, scale * tile_w):
                raise ValueError(f'model output {tuple(result.shape[-2:])} is not an integer '
                                 f'multiple of the tile {tile_h}x{tile_w}')
            out = torch.zeros(3, scale * height, scale * width)
            weight = torch.zeros(1, scale * height, scale * width)
        for (y, x), tile_out in zip(chunk, result):
            # Ramps only on sides that have a neighbour: the image border has nothing to blend.
            wy = _blend_ramp(scale * tile_h, scale * overlap, y > 0, y + tile_h < height)
            wx = _blend_ramp(scale * tile_w, scale * overlap, x > 0, x + tile_w < width)
            window = wy[:, None] * wx[None, :]
            rows = slice(scale * y, scale * (y + tile_h))
            cols = slice(scale * x, scale * (x + tile_w))
            out[:, rows, cols] += tile_out * window
            weight[:, rows, cols] += window
    # Every pixel has weight: the first and last tiles have no ramp on their outer sides, and a
    # pixel in a tile's zero band lies >= 3/4 overlap inside the next (or previous) tile.
    return out / weight
