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
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from torch import nn

from ..engine.checkpoint import adapt_state_dict, load_state_dict, read_checkpoint
from ..engine.config import load_config
from ..engine.errors import ConfigError, DataError
from ..engine.fileio import atomic_write_bytes
from ..registry import MODELS, SCOPE, TRANSFORMS
from .onnx_runtime import OnnxModel, model_task, mono3d_raw_outputs

__all__ = ['disparity_to_depth', 'depth_to_points', 'inference_flow', 'inference_lidar3d',
           'inference_mono3d', 'inference_segmentation', 'inference_sr', 'inference_stereo',
           'init_model', 'model_test_pipeline', 'points_loader_columns', 'read_point_cloud',
           'tile_starts', 'warm_up', 'write_ply']

ImageInput = str | os.PathLike | np.ndarray
PointsInput = str | os.PathLike | np.ndarray


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


def _is_batch(value: Any) -> bool:
    """A list / tuple of inputs (a batch), as opposed to one path or array."""
    return isinstance(value, (list, tuple))


def _model_device(model: Any) -> torch.device:
    """Where a model's inputs go: ``model.device`` (``OnnxModel``) or its first parameter's."""
    device = getattr(model, 'device', None)
    if isinstance(device, torch.device):
        return device
    first = next(iter(model.parameters()), None)
    return first.device if first is not None else torch.device('cpu')


def _stack_image_pairs(one: ImageInput | Sequence[ImageInput],
                       two: ImageInput | Sequence[ImageInput], roles: tuple[str, str], task: str,
                       why: str) -> tuple[torch.Tensor, list[str]]:
    """Read one pair (or two equal-length lists of pair members) into ``(B, 2, 3, H, W)`` uint8.

    ``roles`` names the two frames in errors ('left', 'right'); ``task`` and ``why`` word the
    error for a pair of two sizes. Returns the batch and the first frames' names.

    Raises:
        ValueError: one image against a list, lists of different or zero length.
        DataError: unreadable images, a pair of two sizes, pairs of different sizes.
    """
    batch = _is_batch(one)
    ones, twos = (list(one), list(two)) if batch else ([one], [two])
    if _is_batch(two) != batch or len(ones) != len(twos) or not ones:
        raise ValueError(f'{roles[0]} and {roles[1]} must both be one image or two lists of '
                         'equal, non-zero length')
    pairs, names = [], []
    for i, (a, b) in enumerate(zip(ones, twos)):
        suffix = f' {i}' if batch else ''
        img_a, name_a = _read_image(a, roles[0] + suffix)
        img_b, name_b = _read_image(b, roles[1] + suffix)
        if img_a.shape != img_b.shape:
            (ha, wa), (hb, wb) = img_a.shape[:2], img_b.shape[:2]
            raise DataError(f'{task} pair of different sizes: {roles[0]} {name_a} is {wa}x{ha}, '
                            f'{roles[1]} {name_b} is {wb}x{hb} (width x height); {why}')
        pairs.append(np.stack([img_a, img_b]).transpose(0, 3, 1, 2))  # (2, 3, H, W)
        names.append(name_a)
    _check_one_size([p.shape[-2:] for p in pairs], names, f'{task} pairs')
    return torch.from_numpy(np.ascontiguousarray(np.stack(pairs))), names


def inference_stereo(model: nn.Module | OnnxModel, left: ImageInput | Sequence[ImageInput],
                     right: ImageInput | Sequence[ImageInput],
                     iters: int | None = None) -> np.ndarray | list[np.ndarray]:
    """Disparity of a rectified stereo pair, or of a batch of pairs in one forward pass.

    Args:
        model: a stereo model (``RAFTStereo``...) with a ``data_preprocessor`` that scales
            ``(B, 2, 3, H, W)`` 0-255 pairs and a ``predict_disparity(inputs, iters)`` that pads
            to its divisor and crops back; or an ``OnnxModel`` of one.
        left, right: image paths or ``(H, W, 3)`` uint8 RGB arrays of one size; or two lists of
            them (a batch: all pairs must have one size, as they are stacked).
        iters: refinement iterations (default: the model's ``test_iters``).

    Returns:
        ``(H, W)`` float32 disparity of the left image in pixels (``x_left - x_right``); a list of
        them for a batch.

    Raises:
        DataError: unreadable images, left and right of different sizes, or a batch of pairs of
        different sizes.
    """
    batch = _is_batch(left)
    inputs, _ = _stack_image_pairs(left, right, ('left', 'right'), 'stereo',
                                   'a rectified pair must have one size')
    with torch.inference_mode():
        # The preprocessor moves the pair to the model's device and scales it to [-1, 1].
        data = model.data_preprocessor({'inputs': inputs}, False)
        disp = model.predict_disparity(data['inputs'], iters).float().cpu().numpy()
    return list(disp) if batch else disp[0]


def inference_flow(model: nn.Module | OnnxModel, first: ImageInput | Sequence[ImageInput],
                   second: ImageInput | Sequence[ImageInput],
                   iters: int | None = None) -> np.ndarray | list[np.ndarray]:
    """Optical flow from ``first`` to ``second``, or of a batch of pairs in one forward pass.

    Args:
        model: a flow model (``RAFT``, ``SEARAFT``) with a ``data_preprocessor`` that scales
            ``(B, 2, 3, H, W)`` 0-255 pairs and a ``predict_flow(inputs, iters)`` that pads to
            its divisor and crops back; or an ``OnnxModel`` of one.
        first, second: image paths or ``(H, W, 3)`` uint8 RGB arrays of one size; or two lists of
            them (a batch: all pairs must have one size, as they are stacked).
        iters: refinement iterations (default: the model's ``test_iters``).

    Returns:
        ``(H, W, 2)`` float32 flow ``(u, v)`` in pixels: pixel ``(x, y)`` of ``first`` moves to
        ``(x + u, y + v)`` in ``second`` (the layout of ``perception.datasets.flow_io``); a list
        of them for a batch.

    Raises:
        DataError: unreadable images, the two frames of a pair of different sizes, a batch of
        pairs of different sizes, or a model that returns non-finite flow.
    """
    batch = _is_batch(first)
    if iters is not None and iters < 1:
        raise ValueError(f'iters must be >= 1, got {iters}')
    inputs, names = _stack_image_pairs(first, second, ('first', 'second'), 'flow',
                                       'both frames must have one size')
    with torch.inference_mode():
        # The preprocessor moves the pair to the model's device and scales it to [-1, 1].
        data = model.data_preprocessor({'inputs': inputs}, False)
        flow = model.predict_flow(data['inputs'], iters).float().cpu()
    height, width = inputs.shape[-2:]
    if flow.shape != (len(names), 2, height, width):
        raise ValueError(f'{type(model).__name__}.predict_flow returned {tuple(flow.shape)}, '
                         f'expected {(len(names), 2, height, width)}')
    bad = ~torch.isfinite(flow).all(dim=1).flatten(1).all(dim=1)
    if bad.any():
        listed = ', '.join(names[i] for i in torch.nonzero(bad).flatten().tolist())
        raise DataError(f'{type(model).__name__} predicted non-finite flow for {listed}')
    flow = flow.permute(0, 2, 3, 1).contiguous().numpy()  # (B, H, W, 2)
    return list(flow) if batch else flow[0]


def _check_one_size(shapes: Sequence[tuple[int, int]], names: Sequence[str], what: str) -> None:
    if len({tuple(s) for s in shapes}) > 1:
        listed = ', '.join(f'{n}: {w}x{h}' for n, (h, w) in zip(names, shapes))
        raise DataError(f'a batch of {what} must have one size (width x height) to be stacked; '
                        f'got {listed}')


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


def inference_sr(model: nn.Module | OnnxModel, image: ImageInput | Sequence[ImageInput],
                 tile: int | None = None, tile_overlap: int = 32,
                 tile_batch_size: int = 4) -> np.ndarray | list[np.ndarray]:
    """Super-resolve one image (or a list), whole or in overlapping tiles blended together.

    Args:
        model: an SR model with ``upscale(lr)`` (``SuperResolver``, ``OnnxModel``) or
            ``forward(lr, mode='tensor')``, mapping ``(B, 3, h, w)`` in [0, 1] to
            ``(B, 3, s*h, s*w)``. An ``OnnxModel`` has a fixed input size: use ``tile`` equal to
            its exported size for larger images.
        image: path or ``(H, W, 3)`` uint8 RGB array (the LR image); or a list of them. Without
            tiles, a list of images of one size runs as one batch; otherwise image by image.
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
        ``(s*H, s*W, 3)`` uint8 RGB; a list of them for a list input.

    Raises:
        DataError: unreadable image; ValueError: bad tile settings, or an output that is not an
        integer multiple of the input.
    """
    batch = _is_batch(image)
    arrays = [_read_image(item, f'input {i}' if batch else 'input')[0]
              for i, item in enumerate(image if batch else [image])]
    if not arrays:
        raise ValueError('inference_sr: empty list of images')
    if tile is not None and not (tile >= 1 and 0 <= tile_overlap < tile and tile_batch_size >= 1):
        raise ValueError(f'need tile >= 1, 0 <= tile_overlap < tile and tile_batch_size >= 1; got '
                         f'tile={tile}, tile_overlap={tile_overlap}, '
                         f'tile_batch_size={tile_batch_size}')
    device = _model_device(model)
    lrs = [torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))[None].float() / 255
           for a in arrays]
    with torch.inference_mode():
        if tile is None and len({a.shape for a in arrays}) == 1:
            outs = list(_upscale(model, torch.cat(lrs).to(device)))
        elif tile is None:
            outs = [_upscale(model, lr.to(device))[0] for lr in lrs]
        else:
            outs = [_tiled_upscale(model, lr, device, tile, tile_overlap, tile_batch_size)
                    for lr in lrs]
    results = []
    for array, out in zip(arrays, outs):
        height, width = array.shape[:2]
        if out.shape[-2] % height or out.shape[-1] % width or (
                out.shape[-2] // height != out.shape[-1] // width):
            raise ValueError(f'model output {tuple(out.shape[-2:])} is not an integer multiple of '
                             f'the input {height}x{width}')
        results.append((out.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy())
    return results if batch else results[0]


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


# ----------------------------------------------------------------------------- test pipelines
def model_test_pipeline(model: Any) -> list[dict]:
    """The config's test-time pipeline (list of transform dicts) of a model from ``init_model``.

    Taken from ``test_dataloader.dataset.pipeline`` (through dataset wrappers), else from the
    config's ``test_pipeline``; an ``OnnxModel`` carries the one it was exported with. ``[]``
    when there is none.
    """
    stored = getattr(model, 'test_pipeline_cfg', None)
    if stored is not None:
        return list(stored)
    cfg = getattr(model, 'cfg', None)
    if cfg is None:
        return []
    dataset = (cfg.get('test_dataloader') or {}).get('dataset') or {}
    while 'pipeline' not in dataset and isinstance(dataset.get('dataset'), dict):
        dataset = dataset['dataset']
    pipeline = dataset.get('pipeline', cfg.get('test_pipeline'))
    return [dict(t) for t in (pipeline or [])]


def _transform_type(cfg: dict) -> str:
    kind = cfg.get('type')
    name = kind if isinstance(kind, str) else getattr(kind, '__name__', str(kind))
    return name.rsplit('.', 1)[-1]


def _compose(pipeline: Sequence[dict], drop: Sequence[str]) -> list:
    """Build the transforms of ``pipeline`` whose type is not in ``drop`` (the file loaders:
    the API feeds decoded arrays)."""
    with DefaultScope.overwrite_default_scope(SCOPE):
        return [TRANSFORMS.build(dict(t)) for t in pipeline if _transform_type(t) not in drop]


def _apply(transforms: Sequence, results: dict) -> dict:
    for transform in transforms:
        results = transform(results)
        if results is None:
            raise DataError(f'{transform!r} dropped the input (a test pipeline must keep frames)')
    return results


def _chunks(count: int, size: int | None) -> list[slice]:
    if size is not None and size < 1:
        raise ValueError(f'batch_size must be >= 1, got {size}')
    step = size or max(count, 1)
    return [slice(start, start + step) for start in range(0, count, step)]


def _image_results(image: ImageInput, name: str) -> dict:
    """A results dict as the loaders make it: ``img`` (H, W, 3) uint8 RGB and its shapes."""
    array, label = _read_image(image, name)
    results = {'img': array, 'img_shape': array.shape[:2], 'ori_shape': array.shape[:2]}
    if not isinstance(image, np.ndarray):
        results['img_path'] = label
    return results


# ----------------------------------------------------------------------------- segmentation
_SEG_LOADERS = ('LoadSegImage', 'LoadSegAnnotations', 'LoadImage', 'LoadAnnotations')


def inference_segmentation(model: nn.Module | OnnxModel,
                           image: ImageInput | Sequence[ImageInput],
                           batch_size: int | None = None) -> np.ndarray | list[np.ndarray]:
    """Semantic label map(s) of image(s), at the input image size.

    The config's test pipeline runs without its file loaders (e.g. a test-time resize), then the
    model's data preprocessor (normalise, pad the batch), ``model.inference`` (softmax
    probabilities of the padded batch, with the config's slide / flip test modes), and, per image,
    the crop to the resized size, bilinear resize to the input size and argmax (as
    ``EncoderDecoder.predict``).

    Args:
        model: an ``EncoderDecoder`` from ``init_model`` or an ``OnnxModel`` of one (whose
            exported input size must be the preprocessed, padded size).
        image: path or ``(H, W, 3)`` uint8 RGB array, or a list of them (padded into batches).
        batch_size: images per forward pass for a list (default: all at once).

    Returns:
        ``(H, W)`` int64 class indices (into the dataset's ``classes``); a list for a list input.
    """
    from ..models.segmentation.heads import resize

    batch = _is_batch(image)
    items = list(image) if batch else [image]
    transforms = _compose(model_test_pipeline(model), _SEG_LOADERS)
    if not any(type(t).__name__ == 'PackSegInputs' for t in transforms):
        with DefaultScope.overwrite_default_scope(SCOPE):
            transforms.append(TRANSFORMS.build(dict(type='PackSegInputs')))
    align_corners = bool(getattr(model, 'align_corners', False))
    labels: list[np.ndarray] = []
    for part in _chunks(len(items), batch_size):
        packed = [_apply(transforms, _image_results(item, f'image {i}' if batch else 'image'))
                  for i, item in enumerate(items[part], start=part.start)]
        with torch.inference_mode():
            data = model.data_preprocessor({'inputs': [p['inputs'] for p in packed],
                                            'data_samples': [p['data_samples'] for p in packed]},
                                           False)
            probs = model.inference(data['inputs'])
            for sample, prob in zip(data['data_samples'], probs):
                img_h, img_w = sample.metainfo['img_shape'][:2]
                ori = tuple(sample.metainfo['ori_shape'][:2])
                prob = resize(prob[None, :, :img_h, :img_w].float(), ori, align_corners)[0]
                labels.append(prob.argmax(0).cpu().numpy().astype(np.int64))
    return labels if batch else labels[0]


# ----------------------------------------------------------------------------- monocular 3D
_MONO3D_LOADERS = ('LoadImage', 'LoadAnnotations3D')


def _empty_mono3d() -> dict[str, np.ndarray]:
    return {'boxes_3d': np.zeros((0, 7), np.float32), 'scores': np.zeros(0, np.float32),
            'labels': np.zeros(0, np.int64), 'bboxes_2d': np.zeros((0, 4), np.float32)}


def inference_mono3d(model: nn.Module | OnnxModel, image: ImageInput | Sequence[ImageInput],
                     cam2img: np.ndarray | Sequence[np.ndarray],
                     batch_size: int | None = None) -> dict | list[dict]:
    """3D boxes of a MonoDETR-style model in the camera frame of ``cam2img``.

    The image runs through the config's test pipeline without its loaders (``Mono3DResize``:
    resize with the calibration updated, after ``check_mono3d_frame``), the data preprocessor
    (normalise, pad to 32), the network, and the decoding of ``MonoDETR.predict`` (top-k queries,
    ``test_cfg`` score threshold, back-projection with the resized ``cam2img``, the resize undone
    for 2D boxes). With an ``OnnxModel`` the graph gives the raw head outputs and the same
    decoding runs here.

    Args:
        model: a MonoDETR from ``init_model``, or an ``OnnxModel`` of one.
        image: path or ``(H, W, 3)`` uint8 RGB array, or a list of them (one forward per
            ``batch_size`` images; images of other sizes are padded together).
        cam2img: the camera's 3x4 projection (KITTI ``P2``; 3x3 or 4x4 also taken) for the image
            as given: one matrix for every image, or a list with one per image.
        batch_size: images per forward pass for a list (default: all at once).

    Returns:
        per image ``dict`` of NumPy arrays: ``boxes_3d`` ``(N, 7)`` float32 camera boxes
        ``[x, y, z, l, h, w, ry]`` with ``(x, y, z)`` the bottom centre in the (rectified) camera
        frame of ``cam2img`` (x right, y down, z forward; metres, radians); ``scores`` ``(N,)``;
        ``labels`` ``(N,)`` int64 indices into ``model.classes``; ``bboxes_2d`` ``(N, 4)``
        ``x1, y1, x2, y2`` pixels of the input image. A list of them for a list input.

    Raises:
        DataError: a greyscale image, a missing / malformed ``cam2img``, or an image whose size
        disagrees with the calibration (principal point far from the centre).
    """
    from ..datasets.transforms.mono3d import check_mono3d_frame
    from ..models.mono3d.monodetr import cam2img_of, decode_queries, undo_image_transform

    batch = _is_batch(image)
    items = list(image) if batch else [image]
    matrices = list(cam2img) if (batch and _is_batch(cam2img)) else [cam2img] * len(items)
    if len(matrices) != len(items):
        raise ValueError(f'{len(items)} images but {len(matrices)} cam2img matrices')
    transforms = _compose(model_test_pipeline(model), _MONO3D_LOADERS)
    if not any(type(t).__name__ == 'Pack3DDetInputs' for t in transforms):
        with DefaultScope.overwrite_default_scope(SCOPE):
            transforms.append(TRANSFORMS.build(dict(
                type='Pack3DDetInputs', keys=('img',),
                meta_keys=('img_path', 'ori_shape', 'img_shape', 'cam2img', 'scale_factor',
                           'img_affine', 'flip', 'sample_idx'))))
    test_cfg = dict(getattr(model, 'test_cfg', None) or {})
    topk, score_thr = int(test_cfg.get('topk', 50)), float(test_cfg.get('score_thr', 0.0))
    outputs: list[dict] = []
    for part in _chunks(len(items), batch_size):
        packed = []
        for i in range(part.start, min(part.stop, len(items))):
            results = _image_results(items[i], f'image {i}' if batch else 'image')
            results['sample_idx'] = i
            if matrices[i] is not None:  # else check_mono3d_frame says the calibration is missing
                results['cam2img'] = np.asarray(matrices[i], dtype=np.float64)
            check_mono3d_frame(results, 'inference_mono3d')
            packed.append(_apply(transforms, results))
        with torch.inference_mode():
            data = model.data_preprocessor({'inputs': {'img': [p['inputs']['img']
                                                               for p in packed]},
                                            'data_samples': [p['data_samples'] for p in packed]},
                                           False)
            images, samples = data['inputs'], data['data_samples']
            focal = torch.stack([cam2img_of(s, images.device)[0, 0] for s in samples])
            raw = mono3d_raw_outputs(model, images, focal)
            for j, sample in enumerate(samples):
                single = {k: v[j].float().cpu() for k, v in raw.items()}
                det = decode_queries(single, cam2img_of(sample), tuple(images.shape[-2:]), topk,
                                     score_thr)
                det = undo_image_transform(det, sample.metainfo)
                outputs.append({
                    'boxes_3d': det['boxes_3d'].numpy().astype(np.float32),
                    'scores': det['scores'].numpy().astype(np.float32),
                    'labels': det['labels'].numpy().astype(np.int64),
                    'bboxes_2d': det['bboxes'].numpy().astype(np.float32)})
    return outputs if batch else outputs[0]


# ----------------------------------------------------------------------------- LiDAR 3D
_LIDAR_LOADERS = ('LoadPointsFromFile', 'LoadPointsFromMultiSweeps', 'LoadAnnotations3D')


def points_loader_columns(pipeline: Sequence[dict]) -> tuple[int, list[int]]:
    """``num_features`` and ``use_dims`` of the pipeline's ``LoadPointsFromFile`` (KITTI's 4)."""
    for t in pipeline:
        if _transform_type(t) == 'LoadPointsFromFile':
            num = int(t.get('num_features', 4))
            dims = t.get('use_dims', (0, 1, 2, 3))
            return num, list(range(dims)) if isinstance(dims, int) else [int(d) for d in dims]
    return 4, [0, 1, 2, 3]


def read_point_cloud(points: PointsInput, name: str, num_features: int,
                use_dims: Sequence[int]) -> np.ndarray:
    """``(P, len(use_dims))`` float32 points from a ``.bin`` / ``.npy`` path or an array."""
    from ..datasets.points_io import read_points_bin

    if isinstance(points, np.ndarray):
        array, label = points, f'{name} array'
    else:
        label = os.fspath(points)
        array = (np.load(label) if label.endswith('.npy')
                 else read_points_bin(label, num_features=num_features))
    if array.ndim != 2 or array.shape[1] not in (num_features, len(use_dims)):
        other = '' if len(use_dims) == num_features else \
            f' or (P, {len(use_dims)}) with the used columns {list(use_dims)}'
        raise DataError(f'{label}: points must be (P, {num_features}) as stored{other}, got '
                        f'{array.shape}')
    if array.shape[1] == num_features:
        array = array[:, list(use_dims)]
    if not np.isfinite(array).all():
        raise DataError(f'{label}: points contain NaN or inf')
    return np.ascontiguousarray(array, dtype=np.float32)


def inference_lidar3d(model: nn.Module, points: PointsInput | Sequence[PointsInput],
                      batch_size: int | None = None) -> dict | list[dict]:
    """3D boxes of a LiDAR detector in the LiDAR frame of the input cloud.

    The cloud runs through the config's test pipeline without its loaders (e.g.
    ``PointsRangeFilter``), then ``model.test_step({'inputs': {'points': [(P, C), ...]},
    'data_samples': [...]})`` (data preprocessor + ``predict``), whose samples carry
    ``pred_instances_3d`` (``bboxes_3d`` ``LiDARBoxes3D``, ``scores_3d``, ``labels_3d``).

    Args:
        model: a LiDAR detector from ``init_model``.
        points: a ``.bin`` path (float32 rows of the config loader's ``num_features`` columns:
            KITTI 4, nuScenes 5), a ``.npy`` path, or an ``(P, C)`` array with ``C`` either that
            stored width or the loader's ``use_dims`` count; or a list of them (a batch).
        batch_size: clouds per forward pass for a list (default: all at once).

    Returns:
        per cloud ``dict`` of NumPy arrays: ``boxes_3d`` ``(N, 7)`` (or ``(N, 9)`` with
        velocities) float32 LiDAR boxes ``[x, y, z, l, w, h, yaw(, vx, vy)]`` with ``(x, y, z)``
        the bottom centre in the input's LiDAR frame (metres, radians, m/s); ``scores`` ``(N,)``;
        ``labels`` ``(N,)`` int64 indices into the config's classes. A list for a list input.
    """
    from ..structures import Det3DDataSample
    from ..structures.points import Points

    batch = _is_batch(points)
    items = list(points) if batch else [points]
    pipeline = model_test_pipeline(model)
    num_features, use_dims = points_loader_columns(pipeline)
    transforms = _compose(pipeline, _LIDAR_LOADERS)
    outputs: list[dict] = []
    for part in _chunks(len(items), batch_size):
        clouds, samples = [], []
        for i in range(part.start, min(part.stop, len(items))):
            cloud = read_point_cloud(items[i], f'cloud {i}' if batch else 'cloud', num_features,
                                use_dims)
            results = _apply(transforms, {'points': Points(cloud, frame='lidar'),
                                          'sample_idx': i, 'num_pts_feats': cloud.shape[1]})
            if 'inputs' in results:  # packed by the pipeline
                clouds.append(results['inputs']['points'])
                samples.append(results['data_samples'])
            else:
                value = results['points']
                clouds.append(value.tensor if isinstance(value, Points) else torch.as_tensor(value))
                samples.append(Det3DDataSample(metainfo={'sample_idx': i}))
        with torch.inference_mode():
            preds = model.test_step({'inputs': {'points': clouds}, 'data_samples': samples})
        for sample in preds:
            pred = sample.pred_instances_3d
            boxes = pred.bboxes_3d
            boxes = boxes.tensor if hasattr(boxes, 'tensor') else torch.as_tensor(boxes)
            outputs.append({'boxes_3d': boxes.detach().float().cpu().numpy(),
                            'scores': pred.scores_3d.detach().float().cpu().numpy(),
                            'labels': pred.labels_3d.detach().cpu().numpy().astype(np.int64)})
    return outputs if batch else outputs[0]


# ----------------------------------------------------------------------------- warm-up
_INFERENCE = {'seg': inference_segmentation, 'sr': inference_sr, 'stereo': inference_stereo,
              'mono3d': inference_mono3d, 'lidar3d': inference_lidar3d}


def warm_up(model: nn.Module | OnnxModel, example: Any, runs: int = 1) -> list[float]:
    """Run the task's inference function ``runs`` times on ``example`` and return the seconds.

    The first calls of a model are slow (allocator growth, kernel selection, lazy imports); a
    robot warms up once before its first real frame.

    Args:
        example: the arguments after ``model`` of the task's ``inference_*`` function: a tuple
            of them (``(left, right)`` for stereo, ``(image, cam2img)`` for mono3D), or the one
            input of segmentation / SR / LiDAR bare.
        runs: how many calls.

    Returns:
        the wall-clock seconds of each call.
    """
    if runs < 1:
        raise ValueError(f'runs must be >= 1, got {runs}')
    function = _INFERENCE[model_task(model)]
    args = example if isinstance(example, tuple) else (example,)
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        function(model, *args)
        seconds.append(time.perf_counter() - start)
    return seconds

